"""Fixtures for the realtime core: a simulator, a private Redis that tests may restart."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import time as dtime
from pathlib import Path

import pytest

from tests.support.market import away_from_wall
from trading.dhan.sim.server import SimConfig, Simulator


def wait_until(condition: Callable[[], object], what: str, timeout: float = 15.0) -> object:
    """Poll ``condition`` until truthy (returned) or fail naming ``what``. Bounded, not timed."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def waiter() -> Callable[..., object]:
    return wait_until


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """A started simulator at 60x (a market minute per second), on a trading day and at a
    session time between 10:00 and 14:00 away from the wall clock's (tests/support/market.py),
    so a worker that reads the wall clock for market time fails here at any hour."""
    day, start = away_from_wall(dtime(10, 0), dtime(14, 0))
    simulator = Simulator(
        SimConfig(
            seed=3,
            speed=60.0,
            start=start,
            trading_date=day,
            strikes_each_side=4,
            weeklies=1,
            monthlies=1,
        )
    )
    simulator.start()
    try:
        yield simulator
    finally:
        simulator.stop()


class PrivateRedis:
    """A redis-server of the test's own, on a fixed port, that can be stopped and restarted
    (the shared one from ``make test`` must never be)."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (make test installs it)")
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="algo-redis-private-"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.root),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("private redis-server did not start") from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture
def running() -> Iterator[Callable[..., object]]:
    """``running(component)`` runs ``component.run(stop)`` in a thread until the test ends;
    the component's exception, if any, fails the test at teardown."""
    from .hubkit import Running

    started: list[Running] = []

    def start(component: object) -> Running:
        run = Running(component)
        started.append(run)
        return run

    yield start
    for run in started:
        run.close()
