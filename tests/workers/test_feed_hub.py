"""The feed hub against the simulator over real WebSockets, with a real Redis where it says so.

Every wait is bounded and polls (``wait_until``); nothing asserts on how fast.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from datetime import time as dtime
from typing import Any

import pytest

from instruments.models import Derivative
from tests.support.market import away_from_wall
from tests.support.rows import hold
from tests.support.waiting import wait_until
from trading.dhan.feed_codec import (
    FeedMode,
    QuoteTick,
    TickerTick,
    datetime_to_ltt,
)
from trading.dhan.sim.server import SimConfig, Simulator
from trading.models import PositionTracker, WatchlistItem
from trading.rules.market import IST
from workers.feed_hub import FeedHub, HubConfig
from workers.health import HEALTHY, STALE
from workers.realtime.kv_store import RedisKeyValueStore
from workers.realtime.redis_tick_store import RedisTickStore
from workers.realtime.services import Realtime
from workers.recorder import FrameRecorder, iter_frames
from workers.subscriptions import WatchlistError

from .hubkit import (
    INDICES,
    an_option,
    import_sim_catalog,
    make_hub,
    memory_realtime,
    redis_realtime,
    seed_watchlist,
    sim_subscriptions,
)

pytestmark = pytest.mark.django_db(transaction=True)

# -- ticks in the cache -----------------------------------------------------------------------


def test_ticks_for_the_watchlist_indices_appear_in_redis(sim, redis_url, running):
    seed_watchlist()
    prefix = f"t-wl-{uuid.uuid4().hex[:8]}:"  # nothing left by an earlier run can answer
    realtime = redis_realtime(redis_url, prefix)
    run = running(make_hub(sim, realtime))
    reader = RedisTickStore(redis_url, prefix=prefix)
    got = wait_until(
        lambda: (r := reader.get_many(INDICES)) and len(r) == 4 and r, "ticks for the 4 indices"
    )
    for key, record in got.items():
        assert record.ltp > 0, key
        assert record.exchange_time is not None and record.receive_time > 0
        assert record.seq >= 1
    assert set(run.hub.subscribed) == set(INDICES)
    assert all(mode == FeedMode.TICKER for mode in run.hub.subscribed.values())
    # The hub publishes its subscription set and health for other processes.
    subscriptions = realtime.kv.get("feed:subscriptions")
    assert subscriptions is not None and set(subscriptions["instruments"]) == set(INDICES)
    wait_until(
        lambda: (
            (h := RedisKeyValueStore(redis_url, prefix=prefix).get("health:feed"))
            and h["state"] == HEALTHY
        ),
        "health healthy in redis",
    )
    reader.close()


def test_a_consumer_in_the_subscription_is_woken_with_the_latest_tick(sim, running):
    seed_watchlist()
    realtime = memory_realtime()
    subscription = realtime.ticks.subscribe(["IDX_I:13"])
    running(make_hub(sim, realtime))
    first = wait_until(lambda: subscription.wait(0.2), "a NIFTY tick")
    second = wait_until(lambda: subscription.wait(0.2), "another NIFTY tick")
    assert set(first) == set(second) == {"IDX_I:13"}
    assert second["IDX_I:13"].seq > first["IDX_I:13"].seq


# -- live subscriptions -----------------------------------------------------------------------


def test_a_position_opened_is_subscribed_on_the_next_refresh_and_closing_removes_it(sim):
    seed_watchlist()
    import_sim_catalog(sim)
    hub = make_hub(sim, memory_realtime())
    hub.start()
    try:
        option = an_option(sim)
        key = f"{option.exchange_segment}:{option.security_id}"
        assert key not in hub.subscribed
        position = hold(option, status="active", entry_price="100")
        # One refresh (every 0.5 s in production, HubConfig.refresh_interval) applies it.
        assert hub.refresh_subscriptions()
        assert hub.subscribed[key] == FeedMode.FULL
        wait_until(lambda: sim_subscriptions(sim).get(key), "the simulator to see it")
        wait_until(lambda: hub.merger.get(key), "a tick for the option")
        PositionTracker.objects.filter(pk=position.pk).update(status="exited")
        assert hub.refresh_subscriptions()
        assert key not in hub.subscribed
        wait_until(lambda: key not in sim_subscriptions(sim), "the unsubscribe at the sim")
        assert set(hub.subscribed) == set(INDICES)
    finally:
        hub.shutdown()


def test_the_signal_engines_candidate_contracts_are_subscribed_in_full_mode_until_dropped(sim):
    seed_watchlist()
    import_sim_catalog(sim)
    realtime = memory_realtime()
    hub = make_hub(sim, realtime)
    hub.start()
    try:
        option = an_option(sim)
        key = f"{option.exchange_segment}:{option.security_id}"
        realtime.kv.put("feed:candidates", {"keys": [key], "at": 0}, ttl=60)
        assert hub.refresh_subscriptions()
        assert hub.subscribed[key] == FeedMode.FULL
        wait_until(lambda: hub.merger.get(key), "a tick for the candidate")
        realtime.kv.delete("feed:candidates")  # the TTL ran out: the engine stopped
        assert hub.refresh_subscriptions()
        assert set(hub.subscribed) == set(INDICES)
    finally:
        hub.shutdown()


def test_a_watchlisted_contract_stays_subscribed_when_its_position_closes(sim):
    seed_watchlist()
    import_sim_catalog(sim)
    option = an_option(sim)
    key = f"{option.exchange_segment}:{option.security_id}"
    WatchlistItem.objects.create(
        exchange_segment=option.exchange_segment, security_id=option.security_id
    )
    hub = make_hub(sim, memory_realtime())
    hub.start()
    try:
        position = hold(option, status="pending", entry_price="100")
        hub.refresh_subscriptions()
        assert hub.subscribed[key] == FeedMode.FULL
        PositionTracker.objects.filter(pk=position.pk).update(status="cancelled")
        hub.refresh_subscriptions()
        assert hub.subscribed[key] == FeedMode.FULL
        assert key in hub.watched
    finally:
        hub.shutdown()


def test_the_running_hub_follows_database_changes_by_itself(sim, running):
    seed_watchlist()
    import_sim_catalog(sim)
    run = running(make_hub(sim, memory_realtime()))
    option = an_option(sim)
    key = f"{option.exchange_segment}:{option.security_id}"
    position = hold(option, status="active", entry_price="100")
    wait_until(lambda: key in sim_subscriptions(sim), "the position's contract subscribed")
    WatchlistItem.objects.filter(security_id=27).update(active=False)
    PositionTracker.objects.filter(pk=position.pk).update(status="exited")
    wait_until(
        lambda: key not in sim_subscriptions(sim) and "IDX_I:27" not in sim_subscriptions(sim),
        "the contract and the deactivated index unsubscribed",
    )
    assert set(run.hub.subscribed) == set(INDICES) - {"IDX_I:27"}


def test_a_malformed_watchlist_entry_stops_the_hub_at_start_naming_it(sim):
    with pytest.raises(WatchlistError, match="entry 2 'NSE_FUT:12'"):
        make_hub(sim, memory_realtime(), env_watchlist=["IDX_I:13", "NSE_FUT:12"])
    with pytest.raises(WatchlistError, match="'IDX_I:x1'"):
        make_hub(sim, memory_realtime(), env_watchlist=["IDX_I:x1"])


def test_environment_watchlist_entries_are_subscribed_with_the_rest(sim):
    hub = make_hub(sim, memory_realtime(), env_watchlist=["IDX_I:442"])
    hub.start()
    try:
        assert "IDX_I:442" in hub.subscribed and "IDX_I:442" in hub.watched
    finally:
        hub.shutdown()


# -- merging ----------------------------------------------------------------------------------


def test_a_zero_ltp_tick_never_clobbers_a_good_price_in_the_store(sim):
    realtime = memory_realtime()
    hub = make_hub(sim, realtime)
    when = datetime(2026, 11, 23, 10, 0, 5, tzinfo=UTC)
    ltt = datetime_to_ltt(when)
    hub._on_packets([TickerTick(2, 0, 13, 24000.5, ltt, when)])
    hub._on_packets([TickerTick(2, 0, 13, 0.0, 0, when)])
    hub.flush()
    record = realtime.ticks.get("IDX_I:13")
    assert record.ltp == 24000.5
    assert record.exchange_time == when.timestamp()
    assert record.seq == 2  # the second packet was seen (fresh), its zero price ignored


# -- candles ----------------------------------------------------------------------------------


def test_index_candles_close_by_exchange_time_including_a_minute_with_no_ticks(sim):
    realtime = memory_realtime()
    events = realtime.events.subscribe(["candle"])
    hub = make_hub(sim, realtime)
    base = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)  # 09:30 IST

    def tick(seconds: int, ltp: float) -> None:
        moment = datetime.fromtimestamp(base.timestamp() + seconds, UTC)
        packet = QuoteTick(
            4, 0, 13, ltp, 0, datetime_to_ltt(moment), 0, 0, 0, 0, 0, 0, 0, 0, moment
        )
        hub._on_packets([packet])

    # 09:30: 100, 103, 99, 101 | 09:31: 102, 104 | 09:32: no ticks | 09:33: 98 ... 09:35 closes
    for seconds, ltp in [(1, 100), (20, 103), (40, 99), (59, 101), (61, 102), (90, 104), (185, 98)]:
        tick(seconds, ltp)
    tick(301, 97)  # 09:35:01 closes 09:34 (filled) and the 09:30 five-minute bar
    hub.flush()
    got = []
    while (event := events.get(0.1)) is not None:
        got.append(event[1])
    one_minute = [
        (c["start"] - base.timestamp(), c["open"], c["high"], c["low"], c["close"], c["filled"])
        for c in got
        if c["timeframe"] == 60
    ]
    assert one_minute == [
        (0, 100, 103, 99, 101, False),
        (60, 102, 104, 102, 104, False),
        (120, 104, 104, 104, 104, True),  # no ticks: flat at the previous close
        (180, 98, 98, 98, 98, False),
        (240, 98, 98, 98, 98, True),
    ]
    five = [
        (c["start"] - base.timestamp(), c["open"], c["high"], c["low"], c["close"])
        for c in got
        if c["timeframe"] == 300
    ]
    assert five == [(0, 100, 104, 98, 98)]
    history = realtime.kv.get_list("candles:IDX_I:13:60")
    assert [c["close"] for c in history] == [101, 104, 104, 98, 98]


def test_candles_are_seeded_from_the_intraday_chart_api_at_start(sim):
    from trading.dhan.ratelimit import InProcessRateLimiter, load_limits
    from trading.dhan.rest import DhanRestClient

    seed_watchlist()
    rest = DhanRestClient(
        base_url=sim.base_url,
        client_id=sim.client_id,
        token_provider=lambda: sim.token,
        limiter=InProcessRateLimiter(load_limits()),
    )
    realtime = memory_realtime()
    hub = make_hub(sim, realtime, seed_candles=True)
    hub.rest = rest
    hub.start()
    try:
        # Seeding waits for market time from the feed (the simulator's day, not the wall's).
        history = wait_until(
            lambda: (hub.step(), realtime.kv.get_list("candles:IDX_I:13:60"))[1],
            "candles seeded from the chart API",
        )
        assert len(history) >= 40  # 09:15 to 10:00 or later market time
        assert all(c["source"] == "chart" for c in history)
        five = realtime.kv.get_list("candles:IDX_I:13:300")
        assert len(five) >= 8
    finally:
        hub.shutdown()
        rest.close()


# -- faults -----------------------------------------------------------------------------------


def health_states(realtime: Realtime) -> tuple[Any, list[str]]:
    subscription = realtime.events.subscribe(["feed_health"])
    seen: list[str] = []

    def poll() -> list[str]:
        while (event := subscription.get(0)) is not None:
            seen.append(event[1]["state"])
        return seen

    return poll, seen


def test_after_a_dropped_connection_health_goes_stale_then_healthy(sim, running):
    seed_watchlist()
    realtime = memory_realtime()
    poll, seen = health_states(realtime)
    run = running(make_hub(sim, realtime))
    wait_until(lambda: HEALTHY in poll(), "healthy")
    sim.drop_connections()
    wait_until(lambda: STALE in poll()[poll().index(HEALTHY) :], "stale after the drop")
    wait_until(lambda: poll()[-1] == HEALTHY and seen.count(HEALTHY) >= 2, "healthy again")
    assert run.hub.feed.stats().reconnects >= 1


def test_after_a_stall_health_goes_stale_then_healthy(sim, running):
    seed_watchlist()
    realtime = memory_realtime()
    poll, _seen = health_states(realtime)
    running(make_hub(sim, realtime))
    wait_until(lambda: HEALTHY in poll(), "healthy")
    sim.faults.stall = True
    wait_until(lambda: poll()[-1] == STALE, "stale during the stall")
    assert "no tick" in realtime.kv.get("health:feed")["reason"]
    sim.faults.stall = False
    wait_until(lambda: poll()[-1] == HEALTHY, "healthy after the stall")


def test_a_garbage_frame_is_counted_and_the_feed_stays_healthy(sim, running):
    seed_watchlist()
    realtime = memory_realtime()
    run = running(make_hub(sim, realtime))
    wait_until(lambda: run.hub.health.state == HEALTHY, "healthy")
    sim.inject_garbage()
    wait_until(lambda: run.hub.feed.stats().bad_packets >= 1, "the garbage counted")
    before = run.hub.counters.ticks
    wait_until(lambda: run.hub.counters.ticks > before + 8, "ticks after the garbage")
    assert run.hub.health.state == HEALTHY


def test_a_redis_restart_is_survived_and_the_cache_rebuilt(sim, running, private_redis):
    seed_watchlist()
    realtime = redis_realtime(private_redis.url, "t-rr:")
    run = running(make_hub(sim, realtime))
    reader = RedisTickStore(private_redis.url, prefix="t-rr:")
    wait_until(lambda: len(reader.get_many(INDICES)) == 4, "ticks in redis")
    wait_until(lambda: run.hub.health.state == HEALTHY, "healthy")
    private_redis.stop()
    wait_until(lambda: run.hub.health.state == STALE, "stale while redis is down")
    assert "tick store unavailable" in run.hub.health.reason
    private_redis.start()  # empty: no persistence
    wait_until(lambda: run.hub.health.state == HEALTHY, "healthy after redis is back")
    wait_until(lambda: len(reader.get_many(INDICES)) == 4, "the cache rebuilt")
    check = RedisKeyValueStore(private_redis.url, prefix="t-rr:")
    wait_until(lambda: check.get("feed:subscriptions"), "the subscription set rewritten")
    assert run.hub.counters.store_errors >= 1
    reader.close()


# -- memory -----------------------------------------------------------------------------------


def test_a_slow_consumer_does_not_make_memory_grow(sim, running):
    seed_watchlist()
    import_sim_catalog(sim)
    for option in Derivative.objects.filter(option_type__in=("CE", "PE"))[:40]:
        WatchlistItem.objects.create(
            exchange_segment=option.exchange_segment, security_id=option.security_id
        )
    realtime = memory_realtime()
    never_drained = realtime.ticks.subscribe(all_keys=True)
    run = running(make_hub(sim, realtime))
    wait_until(lambda: run.hub.counters.ticks > 2000, "2,000 ticks")
    keys = len(run.hub.subscribed)
    assert never_drained.pending <= keys
    assert len(run.hub._pending) <= keys
    assert never_drained.dropped_superseded > 0


# -- record and replay ------------------------------------------------------------------------


def test_the_record_file_replays_into_the_same_ticks(sim, running, tmp_path):
    seed_watchlist()
    recorder = FrameRecorder(tmp_path, flush_interval=0.1)
    recorder.start()
    realtime = memory_realtime()
    run = running(make_hub(sim, realtime, recorder=recorder))
    wait_until(lambda: run.hub.counters.ticks > 60, "some ticks")
    run.close()
    live = run.hub.merger.snapshot()
    files = sorted(tmp_path.glob("feed-*.bin.gz"))
    assert files, "no record file written"

    replay = FeedHub(memory_realtime(), feed_factory=lambda *a, **k: None, config=HubConfig())
    frames = 0
    for received, data in iter_frames(tmp_path):
        replay.ingest_frame(data, received)
        frames += 1
    assert frames >= run.hub.feed.stats().frames
    assert replay.merger.snapshot() == live


def test_candles_are_seeded_again_after_a_gap_in_the_feed(sim, running):
    from trading.dhan.ratelimit import InProcessRateLimiter, load_limits
    from trading.dhan.rest import DhanRestClient

    seed_watchlist()
    rest = DhanRestClient(
        base_url=sim.base_url,
        client_id=sim.client_id,
        token_provider=lambda: sim.token,
        limiter=InProcessRateLimiter(load_limits()),
    )
    hub = make_hub(sim, memory_realtime(), seed_candles=True)
    hub.rest = rest
    run = running(hub)
    try:
        wait_until(lambda: sim.rest_calls["POST intraday"] >= 4, "the start-up seeding")
        wait_until(lambda: run.hub.health.state == HEALTHY, "healthy")
        seeded = sim.rest_calls["POST intraday"]
        sim.drop_connections()  # the gap: minutes the feed may have missed
        wait_until(lambda: sim.rest_calls["POST intraday"] >= seeded + 4, "seeding after the gap")
    finally:
        run.close()
        rest.close()


def test_the_heartbeat_line_names_rate_subscriptions_and_lag(sim, caplog):
    hub = make_hub(sim, memory_realtime())
    hub.subscribed = dict.fromkeys(INDICES, FeedMode.TICKER)
    hub._log_mark = (100.0, 0)
    hub.counters.ticks = 600
    hub.counters.lag_sum, hub.counters.lag_n, hub.counters.lag_max = 0.006, 3, 0.004
    caplog.set_level("INFO", logger="workers.feed_hub")
    hub._log_line(130.0)
    (message,) = [r.getMessage() for r in caplog.records]
    assert "20 ticks/s, 4 subscriptions, lag avg 2.0 ms max 4.0 ms" in message
    assert hub.counters.lag_n == 0  # each line covers the interval since the last one


def test_a_hub_started_before_the_open_seeds_once_the_session_has_started():
    from trading.dhan.ratelimit import InProcessRateLimiter, load_limits
    from trading.dhan.rest import DhanRestClient

    day, _ = away_from_wall()
    early = Simulator(
        SimConfig(
            seed=3,
            speed=60.0,
            start=dtime(9, 13),
            trading_date=day,
            strikes_each_side=2,
            weeklies=1,
            monthlies=1,
        )
    ).start()
    seed_watchlist()
    rest = DhanRestClient(
        base_url=early.base_url,
        client_id=early.client_id,
        token_provider=lambda: early.token,
        limiter=InProcessRateLimiter(load_limits()),
    )
    asked: list[tuple[datetime, datetime]] = []
    chart = rest.intraday_chart

    def spy(request):
        asked.append((early.now(), request.fromDate))
        return chart(request)

    rest.intraday_chart = spy
    realtime = memory_realtime()
    hub = make_hub(early, realtime, seed_candles=True)
    hub.rest = rest
    hub.start()
    try:
        # Before the open the simulator's index LTTs sit at 09:15:00 and do not move, as
        # Dhan's do outside the session: no market time yet, nothing seeded.
        for _ in range(5):
            hub.step()
            time.sleep(0.05)
        assert not hub.market_clock.synced and not asked
        wait_until(lambda: (hub.step(), asked)[1], "seeding once the session has started")
        opened = datetime.combine(day, dtime(9, 15), tzinfo=IST)
        assert all(moment >= opened for moment, _ in asked)
        assert {start for _, start in asked} == {opened}
        assert hub.market_clock.datetime().date() == day
    finally:
        hub.shutdown()
        rest.close()
        early.stop()
