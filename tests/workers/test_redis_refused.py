"""Redis refusing this process (a wrong or missing password, a DB index it does not have) is
a state that stops the process with one line naming REDIS_URL (password masked), never a
retry storm.

Found by a probe: with a wrong password run_exit_engine and run_trader retried five times a
second with a traceback per heartbeat, for as long as they ran, and exited 0 on SIGTERM.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from scripts import services
from tests.support.trader import database_url
from workers.realtime.kv_store import RedisKeyValueStore
from workers.realtime.redis_client import (
    StoreRefused,
    StoreUnavailable,
    check_redis,
    masked_url,
    on_refused,
    refused,
    reset_refused,
)
from workers.supervisor import Supervisor

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "secret-pw-4711"


class PasswordRedis:
    """A redis-server of the test's own that asks for ``PASSWORD``."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="algo-redis-auth-"))
        self.port = services.free_port()
        self.process = subprocess.Popen(
            [
                services.ensure_redis_server(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--requirepass",
                PASSWORD,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.root),
                "--logfile",
                str(self.root / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
        )
        services._wait_for_port(self.port, "Redis")

    def url(self, password: str | None = PASSWORD, db: int = 0) -> str:
        auth = f":{password}@" if password is not None else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    def change_password(self, new: str) -> None:
        """Set a new password and drop every connection (an operator rotating it)."""
        admin = redis.Redis.from_url(self.url())
        admin.config_set("requirepass", new)
        admin.close()
        admin = redis.Redis.from_url(self.url(new))
        for kind in ("normal", "pubsub"):
            admin.client_kill_filter(_type=kind, skipme=True)
        admin.close()

    def close(self) -> None:
        self.process.kill()
        self.process.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def auth_redis() -> Iterator[PasswordRedis]:
    server = PasswordRedis()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(autouse=True)
def _forget_refusals() -> Iterator[None]:
    reset_refused()  # the refusal is recorded per process: each test starts without one
    yield
    reset_refused()


@pytest.mark.parametrize(
    ("password", "db", "says"),
    [
        ("wrong-pw", 0, "Redis refused the credentials"),
        (None, 0, "Redis requires a password and none was accepted"),
        (PASSWORD, 99, "Redis has no such database"),
    ],
)
def test_a_refusal_at_start_is_one_line_naming_redis_url(auth_redis, password, db, says):
    url = auth_redis.url(password, db)
    with pytest.raises(StoreRefused) as caught:
        check_redis(url)
    message = str(caught.value)
    assert message.startswith(f"REDIS_URL {masked_url(url)}: {says}")
    assert len(message.splitlines()) == 1
    assert "wrong-pw" not in message
    assert PASSWORD not in message


def test_an_unreachable_redis_is_not_a_refusal():
    url = f"redis://127.0.0.1:{services.free_port()}/0"
    assert check_redis(url) is not None  # said, and the caller starts anyway


def test_masked_url_never_shows_the_password():
    assert masked_url("redis://user:pw@host:1/0") == "redis://user:***@host:1/0"
    assert masked_url("redis://:pw@host:1/0") == "redis://:***@host:1/0"
    assert masked_url("redis://host:1/0") == "redis://host:1/0"


def test_a_store_call_refused_raises_store_refused_not_unavailable(auth_redis):
    heard: list[StoreRefused] = []
    forget = on_refused(heard.append)
    kv = RedisKeyValueStore(auth_redis.url("wrong-pw"))
    try:
        with pytest.raises(StoreRefused) as caught:
            kv.get("anything")
        assert not isinstance(caught.value, StoreUnavailable)  # no outage handler retries it
        assert heard == [caught.value]
        assert refused() is caught.value
        with pytest.raises(StoreRefused):
            kv.get("anything")
        assert len(heard) == 1  # the listeners hear the first refusal only
    finally:
        forget()
        kv.close()


def test_a_supervisor_failed_by_a_hook_stops_every_component_and_returns_1():
    supervisor = Supervisor(heartbeat_interval=60.0)
    stopped = threading.Event()

    class Idle:
        name = "idle"

        def run(self, stop: threading.Event) -> None:
            stop.wait()
            stopped.set()

    supervisor.add("idle", Idle)
    timer = threading.Timer(0.3, supervisor.fail, ("redis", "REDIS_URL x: refused"))
    timer.start()
    try:
        assert supervisor.run_forever(install_signals=False, stop_timeout=2.0) == 1
    finally:
        timer.cancel()
    assert stopped.is_set()
    assert supervisor.fatal_error == "redis: REDIS_URL x: refused"


def _worker(url: str, *command: str) -> subprocess.Popen[str]:
    # The test's database (migrated), not the one DATABASE_URL names: the worker reads the
    # config's overrides there before it starts.
    env = {**os.environ, "REDIS_URL": url, "DATABASE_URL": database_url()}
    return subprocess.Popen(
        [sys.executable, "manage.py", *command],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("password", ["wrong-pw", None])
def test_a_split_worker_with_a_wrong_password_exits_1_in_one_line(auth_redis, password):
    proc = _worker(auth_redis.url(password), "run_exit_engine")
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1
    (line,) = err.splitlines()
    assert line.startswith(f"CommandError: REDIS_URL redis://{':***@' if password else ''}127.0.0")
    assert "Traceback" not in out + err
    assert "wrong-pw" not in out + err


@pytest.mark.django_db(transaction=True)
def test_a_password_changed_while_a_worker_runs_stops_it_in_one_line(auth_redis):
    proc = _worker(auth_redis.url(), "run_exit_engine")
    try:
        time.sleep(3.0)  # started, waiting for the market clock (no feed hub runs)
        assert proc.poll() is None
        auth_redis.change_password("rotated-pw")
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 1
    last = err.splitlines()[-1]
    assert last.startswith("CommandError: REDIS_URL redis://:***@127.0.0.1"), err[-2000:]
    assert "Redis refused the credentials" in err
    assert (out + err).count("Traceback") == 0
    assert PASSWORD not in out + err
