"""Fixtures of the worker tests: a simulator, components run in threads, and a real Redis
under a prefix of the test's own (``shared``: what a second process can see)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import time as dtime

import pytest

from tests.support.market import away_from_wall
from trading.dhan.sim.server import SimConfig, Simulator
from workers.realtime.services import Realtime, redis_realtime


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


@pytest.fixture
def shared(redis_url: str) -> Iterator[Realtime]:
    """Redis under a prefix of this test's own, its keys deleted afterwards."""
    prefix = f"test-shared-{uuid.uuid4().hex[:10]}:"
    realtime = redis_realtime(redis_url, prefix=prefix)
    yield realtime
    realtime.close()
    import redis

    client = redis.Redis.from_url(redis_url)
    names = list(client.scan_iter(match=prefix + "*", count=1000))
    if names:
        client.delete(*names)
    client.close()
