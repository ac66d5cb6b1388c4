"""workers.market_clock.MarketClock: market time that follows the feed's exchange times."""

from __future__ import annotations

import logging
from datetime import datetime

import pytest

from trading.rules.market import IST
from workers.market_clock import MarketClock

# 2026-11-30 (a Monday) in IST; the wall clock of these tests is 2026-01-04, a Sunday night,
# so anything that leaked the wall clock into market time would show.
OPEN = datetime(2026, 11, 30, 9, 15, tzinfo=IST).timestamp()
WALL = datetime(2026, 1, 4, 3, 0, tzinfo=IST).timestamp()


class Wall:
    def __init__(self, now: float = WALL) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def feed(clock: MarketClock, wall: Wall, start: float, *, speed: float, ticks: int, every: float):
    """``ticks`` index ticks ``every`` wall seconds, exchange times in whole seconds (LTT)."""
    for n in range(ticks):
        wall.now += every
        clock.observe(float(int(start + n * every * speed)), wall.now)


def test_until_the_feed_shows_market_time_it_is_the_wall_clock():
    wall = Wall()
    clock = MarketClock(wall)
    assert not clock.synced
    assert clock.now() == WALL


def test_one_snapshot_of_an_old_trade_does_not_set_the_clock():
    # Outside the session Dhan answers a subscription with the last trade, hours old.
    wall = Wall()
    clock = MarketClock(wall)
    for _ in range(5):
        wall.now += 1
        clock.observe(OPEN - 3600, wall.now)
    assert not clock.synced
    assert clock.now() == wall.now


def test_it_syncs_after_two_advances_and_the_old_snapshot_plays_no_part_in_the_rate():
    wall = Wall()
    clock = MarketClock(wall)
    clock.observe(OPEN - 18 * 3600, wall.now)  # yesterday's last trade, then the open
    wall.now += 10
    clock.observe(OPEN, wall.now)
    assert not clock.synced
    wall.now += 1
    clock.observe(OPEN + 1, wall.now)
    assert clock.synced and clock.rate == 1.0
    assert clock.now() == pytest.approx(OPEN + 1)


def test_against_a_simulator_at_60x_it_runs_at_the_simulators_speed():
    wall = Wall()
    clock = MarketClock(wall)
    feed(clock, wall, OPEN + 3600, speed=60, ticks=40, every=0.25)
    assert clock.rate == pytest.approx(60, rel=0.02)
    assert clock.datetime().date() == datetime.fromtimestamp(OPEN, IST).date()


def test_a_stalled_feed_does_not_stop_market_time():
    # The feed stalls at 15:14: the 15:15 square-off must still come.
    wall = Wall()
    clock = MarketClock(wall)
    stall = datetime(2026, 11, 30, 15, 14, tzinfo=IST).timestamp()
    feed(clock, wall, stall - 10, speed=1, ticks=10, every=1.0)
    wall.now += 61  # a minute of silence
    assert clock.datetime() >= datetime(2026, 11, 30, 15, 15, tzinfo=IST)


def test_live_the_rate_is_exactly_one_despite_whole_second_exchange_times():
    wall = Wall()
    clock = MarketClock(wall)
    # Ticks at uneven wall intervals, LTT in whole seconds: the raw estimate wobbles near 1.
    moments = [0.0, 0.9, 2.05, 2.95, 4.1, 5.0, 6.02, 7.1, 8.0, 9.03]
    for offset in moments:
        clock.observe(float(int(OPEN + 100 + offset)), WALL + offset)
    wall.now = WALL + 9.03
    assert clock.rate == 1.0


def test_market_time_never_goes_backwards():
    wall = Wall()
    clock = MarketClock(wall)
    feed(clock, wall, OPEN, speed=60, ticks=10, every=0.25)
    wall.now += 0.2
    ahead = clock.now()
    # The next tick's whole-second LTT sits a little behind the extrapolated time.
    clock.observe(float(int(ahead) - 1), wall.now)
    assert clock.now() >= ahead


def test_exchange_times_far_behind_are_ignored_unless_they_persist(caplog):
    wall = Wall()
    clock = MarketClock(wall, rebase_after=5.0)
    feed(clock, wall, OPEN + 3600, speed=1, ticks=5, every=1.0)
    before = clock.now()
    wall.now += 1
    clock.observe(OPEN - 86_400, wall.now)  # one stray stale packet
    assert clock.now() >= before
    # A simulator restarted on an earlier day: only old times for longer than rebase_after.
    earlier = OPEN - 86_400
    with caplog.at_level(logging.WARNING):
        for n in range(8):
            wall.now += 1
            clock.observe(earlier + n, wall.now)
    assert "starting over" in caplog.text
    feed(clock, wall, earlier + 20, speed=1, ticks=3, every=1.0)
    assert clock.synced
    assert clock.now() == pytest.approx(earlier + 22, abs=1)


@pytest.mark.parametrize("garbage", [0.0, -5.0, 12.0, float("nan"), float("inf")])
def test_garbage_exchange_times_are_ignored(garbage):
    wall = Wall()
    clock = MarketClock(wall)
    for _ in range(4):
        wall.now += 1
        clock.observe(garbage, wall.now)
    assert not clock.synced


def test_a_follower_computes_the_same_market_time_from_the_hubs_record():
    wall = Wall()
    hub = MarketClock(wall)
    feed(hub, wall, OPEN + 7200, speed=60, ticks=20, every=0.25)
    follower = MarketClock(wall)
    assert follower.follow(hub.as_record())
    wall.now += 3
    assert follower.now() == pytest.approx(hub.now())
    # The hub goes away: the follower keeps running on the last anchor.
    assert not follower.follow(None)
    wall.now += 10
    assert follower.now() == pytest.approx(hub.now())


@pytest.mark.parametrize(
    "record",
    [
        {},
        {"exchange_time": "x", "wall_time": 1.0, "rate": 1.0},
        {"exchange_time": OPEN, "wall_time": WALL, "rate": 0},
        {"exchange_time": OPEN, "wall_time": WALL, "rate": -1},
        {"exchange_time": 5.0, "wall_time": WALL, "rate": 1},
        {"exchange_time": OPEN, "wall_time": float("nan"), "rate": 1},
        ["not", "a", "mapping"],
    ],
)
def test_a_malformed_record_is_not_followed(record):
    clock = MarketClock(Wall())
    assert not clock.follow(record)
    assert not clock.synced


def test_a_clock_far_from_the_wall_clock_says_so_once(caplog):
    wall = Wall()
    clock = MarketClock(wall)
    with caplog.at_level(logging.INFO):
        feed(clock, wall, OPEN, speed=60, ticks=10, every=0.25)
    assert "synced to the feed at 2026-11-30 09:1" in caplog.text
    assert "ahead of this machine's clock" in caplog.text
