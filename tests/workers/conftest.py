"""Fixtures of the worker tests: a simulator, and components run in threads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import time as dtime

import pytest

from tests.support.market import away_from_wall
from trading.dhan.sim.server import SimConfig, Simulator


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
