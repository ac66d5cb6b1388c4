"""``manage.py run_signal_engine`` as its own process (split mode): beside a ``run_feed_hub``
process, against the simulator, sharing Redis and a database file, as on Railway."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import time as dtime
from pathlib import Path

import pytest

from tests.support.market import away_from_wall
from trading.dhan.sim.server import SimConfig, Simulator
from workers.realtime.kv_store import RedisKeyValueStore

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sim():
    # A trading day and session time away from the wall clock's: both processes must take
    # market time from the feed (tests/support/market.py).
    day, start = away_from_wall(dtime(11, 0), dtime(14, 0))
    simulator = Simulator(
        SimConfig(
            seed=5,
            speed=60.0,
            start=start,
            trading_date=day,
            regime="trend",
            strikes_each_side=4,
            weeklies=1,
            monthlies=1,
        )
    ).start()
    yield simulator
    simulator.stop()


def worker_env(tmp_path: Path, sim: Simulator, redis_url: str | None, **extra: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    environ.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'split.sqlite3'}",
        DJANGO_DEBUG="true",
        **dict(line.split("=", 1) for line in sim.settings_lines()),
        **extra,
    )
    if redis_url:
        environ["REDIS_URL"] = redis_url
    return environ


def manage(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def signals(db: Path) -> list[tuple]:
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute(
                "SELECT `index`, direction, outcome, gate FROM trading_tradingsignal"
            ).fetchall()
    except sqlite3.OperationalError:
        return []


def test_without_redis_it_refuses_to_start_and_says_why(tmp_path, sim):
    done = manage(worker_env(tmp_path, sim, None), "run_signal_engine")
    assert done.returncode == 1
    assert "REDIS_URL is not set" in done.stderr


def test_an_invalid_algo_config_stops_it_at_start_naming_the_key(tmp_path, sim, redis_url):
    config_dir = tmp_path / "config"
    shutil.copytree(ROOT / "config", config_dir)
    algo = config_dir / "algo.yml"
    algo.write_text(algo.read_text().replace("max_lots: 10", "max_lots: ten", 1))
    env = worker_env(tmp_path, sim, redis_url, ALGO_CONFIG_DIR=str(config_dir))
    assert manage(env, "migrate", "-v0").returncode == 0
    done = manage(env, "run_signal_engine")
    assert done.returncode == 1
    assert "risk.sizing.max_lots" in done.stderr and "'ten'" in done.stderr


def test_the_engine_process_decides_the_hubs_candles_and_stops_on_sigterm(
    tmp_path, sim, redis_url, redis_client
):
    env = worker_env(tmp_path, sim, redis_url)
    assert manage(env, "migrate", "-v0").returncode == 0
    imported = manage(env, "import_instruments", "--url", sim.scrip_master_url)
    assert imported.returncode == 0, imported.stderr
    db = tmp_path / "split.sqlite3"
    logs = {name: (tmp_path / f"{name}.log").open("w+") for name in ("hub", "engine")}
    procs = {
        "hub": subprocess.Popen(
            [sys.executable, "manage.py", "run_feed_hub"],
            cwd=ROOT,
            env=env,
            stdout=logs["hub"],
            stderr=subprocess.STDOUT,
        ),
        "engine": subprocess.Popen(
            [sys.executable, "manage.py", "run_signal_engine"],
            cwd=ROOT,
            env=env,
            stdout=logs["engine"],
            stderr=subprocess.STDOUT,
        ),
    }
    kv = RedisKeyValueStore(redis_url, prefix="algo:")

    def output(name: str) -> str:
        return Path(logs[name].name).read_text()

    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for name, proc in procs.items():
                assert proc.poll() is None, f"{name} exited early:\n{output(name)}"
            if len({row[0] for row in signals(db)}) == 4:  # every index decided a candle
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"no decisions for all 4 indices:\n{output('engine')}")
        beat = kv.get("hb:signal_engine")
        assert beat and beat["state"] == "running"
        assert set(beat["indices"]) == {"NIFTY", "BANKNIFTY", "FINNIFTY", "SENSEX"}
        assert all(i["warm"] for i in beat["indices"].values())  # warmed from the chart API
        # The engine republishes its candidates on every candle and the hub re-reads them
        # every 0.5 s: wait for one hub pass after the latest publication.
        deadline = time.monotonic() + 10
        while True:
            candidates = kv.get("feed:candidates")
            subscribed = kv.get("feed:subscriptions")["instruments"]
            if candidates and set(candidates["keys"]) <= set(subscribed):
                break
            assert time.monotonic() < deadline, (candidates, sorted(subscribed))
            time.sleep(0.1)
        assert candidates["keys"]
        assert {subscribed[k] for k in candidates["keys"]} == {"full"}  # the hub took them

        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        codes = {name: proc.wait(timeout=10) for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        kv.close()
    assert codes == {"hub": 0, "engine": 0}, output("engine")
    assert "Traceback" not in output("engine"), output("engine")
    assert "signal engine stopped" in output("engine")
    # A clean stop leaves no decision half-made.
    assert all(outcome != "pending" for _, _, outcome, _ in signals(db))
