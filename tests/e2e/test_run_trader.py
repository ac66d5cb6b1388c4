"""``manage.py run_trader --sim`` as a real process: a minute of market time, then SIGTERM.

Embedded mode as a laptop user runs it: its own SQLite file, no Redis, the simulator in the
same process. The test reads the heartbeats the trader writes to the database (the same rows
``/ready`` reads), never its memory.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.support.market import away_from_wall
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
DAY, START = away_from_wall()


def read_kv(db: Path, name: str) -> dict | None:
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            row = conn.execute("SELECT value FROM trading_setting WHERE key = ?", (f"kv:{name}",))
            found = row.fetchone()
    except sqlite3.OperationalError:  # the table does not exist yet
        return None
    return json.loads(found[0])["value"] if found else None


def signal_rows(db: Path) -> list[tuple[str, str, str]]:
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute(
                "SELECT `index`, direction, outcome FROM trading_tradingsignal"
            ).fetchall()
    except sqlite3.OperationalError:
        return []


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    environ.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'trader.sqlite3'}",
        DJANGO_DEBUG="true",
        PAPER_MODE="true",
        LOG_LEVEL="INFO",
    )
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=environ, check=True
    )
    return environ


def test_run_trader_sim_runs_a_market_minute_with_every_component_and_stops_on_sigterm(
    tmp_path, env
):
    log = (tmp_path / "trader.log").open("w+")
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "run_trader",
            "--sim",
            "--sim-speed",
            "60",
            # A trading day and time away from the wall clock's: every component takes
            # market time from the feed (tests/support/market.py).
            "--sim-date",
            DAY.isoformat(),
            "--sim-start",
            START.strftime("%H:%M"),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    db = tmp_path / "trader.sqlite3"
    try:
        deadline = time.monotonic() + 90
        first_market_time = None
        beat = hub = None
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"run_trader exited early:\n{Path(log.name).read_text()}"
            beat = read_kv(db, "hb:run_trader")
            hub = read_kv(db, "hb:feed_hub")
            if beat and hub and all(c["state"] == "running" for c in beat["components"].values()):
                market = datetime.fromisoformat(beat["market_time"])
                first_market_time = first_market_time or market
                minute_passed = (market - first_market_time).total_seconds() >= 60
                if minute_passed and hub["counts"]["ticks"] > 0 and hub["health"] == "healthy":
                    break
            time.sleep(0.2)
        else:
            pytest.fail(f"no healthy market minute; last beat {beat}, hub {hub}")
        assert set(beat["components"]) == {
            "feed_hub",
            "signal_engine",
            "exit_engine",
            "scheduled_jobs",
            "order_manager",
        }
        assert all(c["restarts"] == 0 for c in beat["components"].values())
        health = read_kv(db, "health:feed")
        assert health and health["state"] == "healthy"
        # The signal engine decided at least one index candle and recorded it.
        rows = wait_until(lambda: signal_rows(db), "a TradingSignal recorded", interval=0.2)
        assert {r[0] for r in rows} <= {"NIFTY", "BANKNIFTY", "FINNIFTY", "SENSEX"}
        assert read_kv(db, "hb:signal_engine")["state"] == "running"

        proc.send_signal(signal.SIGTERM)
        # The shutdown bound is a promise of the command (SIGTERM -> exit in 5 s), not a speed.
        code = proc.wait(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = Path(log.name).read_text()
    assert code == 0, output
    assert "Traceback" not in output, output
    assert "signal SIGTERM received: stopping" in output
    assert "all components stopped" in output
    assert read_kv(db, "hb:run_trader")["state"] == "stopped"


def query(db: Path, sql: str) -> list[tuple]:
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:  # the tables do not exist yet
        return []


def test_thirty_market_minutes_of_run_trader_sim_open_and_close_positions_by_themselves(
    tmp_path, env
):
    # A trending day from the entry window on; 60x: thirty market minutes in thirty seconds.
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "run_trader",
            "--sim",
            "--sim-speed",
            "60",
            "--sim-regime",
            "trend",
            "--sim-seed",
            "7",
            "--sim-date",
            DAY.isoformat(),
            "--sim-start",
            "10:00",
        ],
        cwd=ROOT,
        env=env,
        stdout=(tmp_path / "trader.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    db = tmp_path / "trader.sqlite3"
    try:
        deadline = time.monotonic() + 240
        market_minutes = 0.0
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "trader.log").read_text()
            beat = read_kv(db, "hb:run_trader")
            if beat and beat.get("market_time"):
                moment = datetime.fromisoformat(beat["market_time"])
                market_minutes = (moment.hour * 60 + moment.minute) - 600
            if market_minutes >= 30:
                break
            time.sleep(0.5)
        else:
            log = (tmp_path / "trader.log").read_text()
            pytest.fail(f"thirty market minutes did not pass:\n{log}")
        positions = query(
            db,
            "SELECT underlying, status, exit_type, exit_reason, realized_pnl, exited_at "
            "FROM trading_positiontracker",
        )
        routed = query(
            db, "SELECT `index`, candle_start FROM trading_tradingsignal WHERE outcome = 'intent'"
        )
        capped = query(
            db,
            "SELECT `index`, gate FROM trading_tradingsignal WHERE outcome = 'blocked' AND gate IN "
            "('concurrent_cap', 'same_direction_open', 'daily_trade_cap', 'cooldown', "
            "'loss_streak')",
        )
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = (tmp_path / "trader.log").read_text()
    assert routed, f"no entry routed in thirty market minutes:\n{log[-3000:]}"
    # Entries became positions (filled by the paper broker) and the exit engine closed some
    # of them by rule, with a type, a reason, a market time and the money.
    exited = [row for row in positions if row[1] == "exited"]
    assert exited, positions
    for _index, _status, exit_type, reason, realized, exited_at in exited:
        assert exit_type and exit_type != "MANUAL" and reason, exited
        assert realized is not None and exited_at, exited
    # While an index holds a position (or just closed one), its later signals are stopped by
    # the caps and the cooldowns.
    assert {index for index, *_ in positions} & {index for index, _ in capped}, (
        positions,
        capped,
    )
    assert "Traceback" not in log, log[-3000:]
