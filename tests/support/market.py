"""A simulated market day that never matches the wall clock.

Market time comes from the market (ARCHITECTURE.md), so the tests that run the simulator pick
a trading day at least a week away from today and a session time far from the wall clock's
time of day: any code that reads the wall clock where market time belongs then sees another
date and another hour, and fails at whatever hour the suite runs, not only at night.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from datetime import time as dtime
from functools import cache
from pathlib import Path

from trading.config.load import load_algo_file
from trading.config.types import MarketConfig
from trading.rules.market import IST

ROOT = Path(__file__).resolve().parents[2]


@cache
def calendar() -> MarketConfig:
    """The project's session and holidays (config/algo.yml, without operator overrides)."""
    return load_algo_file(ROOT / "config" / "algo.yml").market


def away_from_wall(
    earliest: dtime = dtime(10, 0),
    latest: dtime = dtime(14, 0),
    *,
    step_minutes: int = 30,
    weeks: int = 1,
) -> tuple[date, dtime]:
    """``(trading day, market start time)``: the first trading day ``weeks`` weeks or more
    after today, and the time in ``[earliest, latest]`` (every ``step_minutes``) farthest
    around the 24 h dial from the wall clock's time of day in IST. The wall clock is read here
    on purpose, to stay away from it. A test whose outcome depends on the simulated path
    (a flat day's signals) keeps the window narrow, where every candidate gives the outcome."""
    now = datetime.now(IST)
    day = calendar().next_trading_day(now.date() + timedelta(weeks=weeks))
    wall = now.hour * 60 + now.minute
    first = earliest.hour * 60 + earliest.minute
    last = latest.hour * 60 + latest.minute
    candidates = range(first, last + 1, step_minutes)

    def distance(minute: int) -> int:
        gap = abs(minute - wall) % 1440
        return min(gap, 1440 - gap)

    best = max(candidates, key=distance)
    return day, dtime(best // 60, best % 60)
