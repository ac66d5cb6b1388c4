"""A Redis outage is logged once on entry and once on recovery per component (with the count
of failures meanwhile), never a line (or a traceback) per failed call.

Found by a probe: with Redis unreachable the exit engine logged its market-clock read every
200 ms and a traceback on every heartbeat write.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts import services
from tests.support.trader import database_url
from workers.heartbeat import Heartbeat
from workers.realtime.kv_store import RedisKeyValueStore
from workers.realtime.redis_client import Outage, StoreUnavailable

ROOT = Path(__file__).resolve().parents[2]


def test_an_outage_is_said_on_entry_and_on_recovery_with_the_count(caplog):
    now = [100.0]
    outage = Outage(
        logging.getLogger("test.outage"), "exit engine: market clock", clock=lambda: now[0]
    )
    caplog.set_level(logging.INFO, logger="test.outage")
    outage.recovered()  # nothing was down: nothing said
    for _ in range(50):
        outage.failed(StoreUnavailable("Redis unavailable (reading a value): refused"))
    now[0] = 112.5
    outage.recovered()
    outage.recovered()
    assert [r.getMessage() for r in caplog.records] == [
        "exit engine: market clock: Redis unavailable (reading a value): refused; retrying "
        "until Redis is back",
        "exit engine: market clock: Redis is back after 12.5 s (50 failed call(s) meanwhile)",
    ]
    assert not any(r.exc_info for r in caplog.records)


def test_a_heartbeat_in_an_outage_logs_twice_without_a_traceback(private_redis, caplog):
    caplog.set_level(logging.INFO)
    kv = RedisKeyValueStore(private_redis.url)
    beat = Heartbeat(kv, "exit_engine")
    try:
        beat.beat("running")
        private_redis.stop()
        for _ in range(20):
            beat.beat("running")  # no exception: the caller's loop carries on
        private_redis.start()
        beat.beat("running")
        assert kv.get(beat.key)["state"] == "running"
    finally:
        kv.close()
    lines = [r for r in caplog.records if r.name == "workers.heartbeat"]
    assert len(lines) == 2, [r.getMessage() for r in lines]
    assert lines[0].getMessage().startswith("exit_engine heartbeat: Redis unavailable (writing")
    assert lines[1].getMessage().endswith("(20 failed call(s) meanwhile)")
    assert not any(r.exc_info for r in caplog.records)


@pytest.mark.django_db(transaction=True)
def test_run_exit_engine_with_redis_unreachable_does_not_flood_the_log():
    url = f"redis://127.0.0.1:{services.free_port()}/0"  # nothing listens there
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "run_exit_engine"],
        cwd=ROOT,
        env={**os.environ, "REDIS_URL": url, "DATABASE_URL": database_url()},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(4.0)  # 20 market-clock reads at 200 ms
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert "Traceback" not in out, out
    assert out.count("market clock: Redis unavailable") == 1, out
    assert out.count("heartbeat: Redis unavailable") == 1, out
    assert len(out.splitlines()) < 12, out
