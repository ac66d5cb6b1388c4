"""``manage.py run_feed_hub`` as its own process (split mode) against the simulator and Redis,
then ``replay_feed`` on what it recorded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import time as dtime
from pathlib import Path

import pytest

from tests.support.market import away_from_wall
from trading.dhan.sim.server import SimConfig, Simulator
from workers.realtime.kv_store import RedisKeyValueStore
from workers.realtime.redis_tick_store import RedisTickStore

ROOT = Path(__file__).resolve().parents[2]
INDICES = ["IDX_I:13", "IDX_I:25", "IDX_I:27", "IDX_I:51"]


@pytest.fixture
def sim():
    # A day and a session time away from the wall clock's (tests/support/market.py): the hub
    # must take market time from the feed, or its seeding misses the simulator's day.
    day, start = away_from_wall(dtime(11, 0), dtime(14, 0))
    simulator = Simulator(
        SimConfig(
            seed=5,
            speed=60.0,
            start=start,
            trading_date=day,
            strikes_each_side=3,
            weeklies=1,
        )
    ).start()
    yield simulator
    simulator.stop()


def hub_env(tmp_path: Path, sim: Simulator, redis_url: str, **extra: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    environ.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'hub.sqlite3'}",
        REDIS_URL=redis_url,
        DJANGO_DEBUG="true",
        **dict(line.split("=", 1) for line in sim.settings_lines()),
        **extra,
    )
    return environ


def test_a_malformed_watchlist_stops_the_hub_at_start_naming_the_entry(tmp_path, sim, redis_url):
    env = hub_env(tmp_path, sim, redis_url, DHANHQ_WS_WATCHLIST="IDX_I:13;NSE_FNO:12a")
    done = subprocess.run(
        [sys.executable, "manage.py", "run_feed_hub"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "entry 2 'NSE_FNO:12a': security id '12a' is not a positive integer" in done.stderr


def test_the_hub_process_fills_redis_records_frames_and_stops_on_sigterm(
    tmp_path, sim, redis_url
):
    env = hub_env(tmp_path, sim, redis_url)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True
    )  # the migration seeds the four index watchlist rows
    record = tmp_path / "frames"
    log = (tmp_path / "hub.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "run_feed_hub", "--record", str(record)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    ticks = RedisTickStore(redis_url, prefix="algo:")
    kv = RedisKeyValueStore(redis_url, prefix="algo:")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, Path(log.name).read_text()
            health = kv.get("health:feed")
            seeded = len(kv.get_list("candles:IDX_I:13:60"))
            if (
                len(ticks.get_many(INDICES)) == 4
                and health
                and health["state"] == "healthy"
                and seeded >= 100  # seeded 09:15 -> 11:00 or later, once market time is known
            ):
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"no ticks/health/candles in Redis:\n{Path(log.name).read_text()}")
        beat = kv.get("hb:feed_hub")
        assert beat["state"] == "running" and beat["counts"]["subscriptions"] == 4
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ticks.close()
        kv.close()
    output = Path(log.name).read_text()
    assert code == 0, output
    assert "Traceback" not in output, output
    assert list(record.glob("feed-*.bin.gz")), "nothing recorded"

    replay_env = {**env, "REDIS_URL": ""}  # replay into memory: prints what it saw
    replay_env.pop("REDIS_URL")
    done = subprocess.run(
        [sys.executable, "manage.py", "replay_feed", str(record)],
        cwd=ROOT,
        env=replay_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "instruments" in done.stdout and "IDX_I:13: ltp" in done.stdout
