"""The simulator as a fixture: a real fake Dhan on loopback for every I/O test of the adapter."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from trading.dhan.sim.server import SimConfig, Simulator


@pytest.fixture
def dhan_sim() -> Iterator[Simulator]:
    """A started simulator (seed 0, speed 60, market from the open), stopped after the test."""
    sim = Simulator(SimConfig(seed=0, speed=60.0, strikes_each_side=10, weeklies=2, monthlies=1))
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()
