"""The signal engine: one decision per index candle, recorded, gated, sized, handed over.

The first part calls one ``handle_*``/``decide`` step on a fresh engine with hand-made candles
and ticks (the catalog comes from a real simulator's scrip master). The second part runs the
feed hub and the engine against the simulator over real WebSockets and HTTP, with a real Redis:
a trending day, a flat day and a stalled feed. Every wait is bounded and polls.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from typing import Any

import pytest
from django.test import override_settings

from config_schema import ConfigError
from tests.support.market import away_from_wall
from tests.support.rows import hold
from tests.support.waiting import wait_until
from trading.config.store import load_algo_config
from trading.config.types import AlgoConfig
from trading.dhan.ratelimit import InProcessRateLimiter, load_limits
from trading.dhan.rest import DhanRestClient
from trading.dhan.sim.server import SimConfig, Simulator
from trading.models import SignalOutcome, TradingSignal
from trading.orders.intent import RECORDED, REJECTED, EntryIntent, RouterResult
from trading.orders.journal import entry_correlation_id, id_salt
from trading.switches import set_kill_switch
from workers.candles import IST, Candle
from workers.realtime.keys import FEED_CANDIDATES
from workers.realtime.record import TickRecord
from workers.signal_engine import SignalEngine

from .hubkit import import_sim_catalog, make_hub, memory_realtime, redis_realtime, seed_watchlist

pytestmark = pytest.mark.django_db(transaction=True)

# A fixed Monday that is not an exchange holiday: the entry window gate checks the calendar, so
# the tests must not depend on the day they run.
TRADING_DAY = date(2026, 11, 23)
NIFTY = "IDX_I:13"


class RecordingRouter:
    """The order router's interface, recording what it is handed (the next issue builds the
    real one). ``seen_outcome`` is the signal row's outcome when the intent arrived."""

    def __init__(self, answer: RouterResult | Exception | None = None) -> None:
        self.intents: list[EntryIntent] = []
        self.seen_outcome: list[str] = []
        self.answer = answer or RouterResult(RECORDED, "recorded by the test router")

    def place_entry(self, intent: EntryIntent) -> RouterResult:
        self.intents.append(intent)
        self.seen_outcome.append(TradingSignal.objects.get(pk=intent.signal_id).outcome)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


class Clock:
    """Market time the test moves by hand (epoch seconds)."""

    def __init__(self, moment: datetime) -> None:
        self.now = moment.timestamp()

    def __call__(self) -> float:
        return self.now


def config(**overrides: Any) -> AlgoConfig:
    return load_algo_config(overrides=overrides or None)


@pytest.fixture
def catalog_sim() -> Iterator[Simulator]:
    simulator = Simulator(
        SimConfig(
            seed=3,
            speed=60.0,
            start=dtime(10, 0),
            trading_date=TRADING_DAY,
            strikes_each_side=4,
            weeklies=1,
            monthlies=1,
        )
    )
    simulator.start()
    try:
        import_sim_catalog(simulator)
        yield simulator
    finally:
        simulator.stop()


def at(hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime.combine(TRADING_DAY, dtime(hh, mm, ss), IST)


def trending_candles(end_close: float, count: int, end: datetime, step: float = 0.0008) -> list:
    """``count`` one-minute NIFTY candles closing at ``end`` and at ``end_close``: a steady
    rise (``step`` per candle, log) with a small wiggle, so Supertrend is up and ADX high."""
    out = []
    for i in range(count):
        back = count - 1 - i
        close = end_close * math.exp(-step * back) * (1 + 0.0002 * math.sin(i))
        start = end - timedelta(minutes=back + 1)
        out.append(
            Candle(
                NIFTY,
                60,
                start.timestamp(),
                close * 0.9996,
                close * 1.0004,
                close * 0.9994,
                close,
                30,
            )
        )
    return out


def flat_candles(level: float, count: int, end: datetime) -> list:
    out = []
    for i in range(count):
        back = count - 1 - i
        close = level * (1 + 0.0015 * (-1) ** i)  # zig-zag: no direction, low ADX
        start = end - timedelta(minutes=back + 1)
        out.append(
            Candle(NIFTY, 60, start.timestamp(), level, level * 1.002, level * 0.998, close, 30)
        )
    return out


def tick(
    key: str,
    ltp: float,
    *,
    bid: float | None = None,
    ask: float | None = None,
    oi: int | None = None,
    age: float = 0.0,
) -> TickRecord:
    now = time.time()
    return TickRecord(
        key=key,
        seq=1,
        ltp=ltp,
        exchange_time=now - age,
        receive_time=now - age,
        bid=bid,
        ask=ask,
        oi=oi,
    )


def nifty_level(sim: Simulator) -> float:
    return sim.market.index_level(13)


class Bench:
    """One engine on in-memory realtime stores, NIFTY only, the market clock in the test's hands."""

    def __init__(
        self,
        sim: Simulator,
        *,
        router: RecordingRouter | None = None,
        clock_at: datetime | None = None,
        **overrides: Any,
    ) -> None:
        overrides.setdefault(
            "indices",
            {
                "BANKNIFTY": {"enabled": False},
                "FINNIFTY": {"enabled": False},
                "SENSEX": {"enabled": False},
            },
        )
        self.config = config(**overrides)
        self.realtime = memory_realtime()
        self.router = router or RecordingRouter()
        self.clock = Clock(clock_at or at(10, 30, 1))
        self.sim = sim
        self.engine = self.new_engine()

    def new_engine(self) -> SignalEngine:
        return SignalEngine(
            self.realtime,
            router=self.router,
            config_source=lambda: self.config,
            clock=self.clock,
        )

    def warm(self, candles: list) -> None:
        """The hub's candle history, then the engine's start (which warms from it)."""
        self.realtime.kv.replace_list(f"candles:{NIFTY}:60", [c.as_dict() for c in candles], 500)
        self.engine.start()

    def healthy_market(self, spot: float, *, option_age: float = 0.0, spread: float = 0.2) -> None:
        """A fresh index tick, healthy feed, and a liquid quote on every candidate contract."""
        self.realtime.kv.put("health:feed", {"state": "healthy"}, ttl=60)
        records = [tick(NIFTY, spot)]
        for runtime in self.engine.indices.values():
            for contract in runtime.contracts:
                records.append(
                    tick(
                        contract.key,
                        100.0,
                        bid=100.0 - spread / 2,
                        ask=100.0 + spread / 2,
                        oi=50_000,
                        age=option_age,
                    )
                )
        self.realtime.ticks.publish(records)

    def trending(self, *, option_age: float = 0.0) -> Candle:
        """Warm NIFTY with a rising history ending at the simulator's level, make the market
        healthy, and return the next (rising) candle with the clock just after its close."""
        self.history = trending_candles(nifty_level(self.sim), 40, at(10, 30))
        self.warm(self.history)
        self.healthy_market(self.history[-1].close, option_age=option_age)
        candle = self.next_candle(self.history[-1])
        self.clock.now = candle.end + 1
        return candle

    def next_candle(self, last: Candle, close_pct: float = 0.0008) -> Candle:
        close = last.close * (1 + close_pct)
        return Candle(
            NIFTY, 60, last.start + 60, last.close, close * 1.0003, last.close * 0.9998, close, 30
        )


# -- one step at a time --------------------------------------------------------------------------


def test_history_warms_the_indicators_without_deciding_anything(catalog_sim):
    bench = Bench(catalog_sim)
    bench.warm(trending_candles(nifty_level(catalog_sim), 40, at(10, 30)))
    runtime = bench.engine.indices[NIFTY]
    assert runtime.states[60].warm
    assert runtime.states[60].candles == 40
    assert TradingSignal.objects.count() == 0


def test_a_trending_candle_becomes_a_recorded_sized_intent_handed_to_the_router(catalog_sim):
    bench = Bench(catalog_sim)
    candle = bench.trending()

    assert bench.engine.handle_candles([candle]) == 1

    row = TradingSignal.objects.get()
    assert (row.index, row.timeframe, row.direction) == ("NIFTY", 60, "bullish")
    assert row.candle_start == datetime.fromtimestamp(candle.start, IST)
    assert row.config_version == bench.config.version
    assert 0 < row.confidence <= 1
    assert {"supertrend", "adx"} <= {k.split("_")[0] for k in row.indicators}
    assert row.outcome == SignalOutcome.INTENT, (row.gate, row.block_reason)
    (intent,) = bench.router.intents
    assert intent.signal_id == row.pk and intent.option_type == "CE"
    assert intent.lots >= 1 and intent.quantity == intent.lots * intent.lot_size
    assert sum(intent.orders) == intent.quantity
    assert intent.limit_price >= intent.reference_price == Decimal("100.10")
    assert entry_correlation_id(row.pk, 0) == f"AS-EN-{id_salt()}{row.pk}-0-0"
    size = row.intent["size"]
    assert intent.lots == min(
        size["risk_lots"], size["allocation_lots"], size["affordable_lots"], size["max_lots"]
    )
    assert row.intent["key"] == intent.key and row.intent["quantity"] == intent.quantity


def test_the_intent_is_on_the_row_before_the_router_sees_it(catalog_sim):
    bench = Bench(catalog_sim)
    candle = bench.trending()
    bench.engine.handle_candles([candle])
    assert bench.router.seen_outcome == [SignalOutcome.INTENT]


@pytest.mark.parametrize(
    ("answer", "detail"),
    [
        (RouterResult(REJECTED, "broker said no: DH-906"), "broker said no: DH-906"),
        (RuntimeError("journal unavailable"), "order router error: journal unavailable"),
    ],
    ids=["rejected", "raised"],
)
def test_a_router_rejection_or_error_is_recorded_on_the_signal(catalog_sim, answer, detail):
    bench = Bench(catalog_sim, router=RecordingRouter(answer))
    candle = bench.trending()
    bench.engine.handle_candles([candle])
    row = TradingSignal.objects.get()
    assert (row.outcome, row.block_reason) == (SignalOutcome.REJECTED, detail)
    assert row.intent is not None  # the journal kept what was attempted


def test_a_candle_is_decided_at_most_once_even_by_a_restarted_engine(catalog_sim):
    bench = Bench(catalog_sim)
    candle = bench.trending()
    bench.engine.handle_candles([candle])

    restarted = bench.new_engine()  # same database, fresh memory: what a restart looks like
    restarted.start()
    restarted.handle_candles([candle])
    bench.engine.handle_candles([candle])  # and the same event delivered twice

    assert TradingSignal.objects.count() == 1
    assert len(bench.router.intents) == 1
    assert restarted.counters.duplicates == 1


def test_a_flat_series_is_recorded_as_avoid_and_nothing_is_handed_over(catalog_sim):
    bench = Bench(catalog_sim)
    history = flat_candles(nifty_level(catalog_sim), 40, at(10, 30))
    bench.warm(history)
    bench.healthy_market(history[-1].close)
    last = history[-1]
    candle = Candle(
        NIFTY, 60, last.start + 60, last.close, last.open * 1.002, last.open * 0.998, last.open, 30
    )
    bench.clock.now = candle.end + 1
    bench.engine.handle_candles([candle])
    row = TradingSignal.objects.get()
    assert (row.direction, row.outcome, row.confidence) == ("avoid", SignalOutcome.AVOID, 0.0)
    assert "ADX" in row.reason
    assert bench.router.intents == []


@pytest.mark.parametrize(
    ("setup", "gate", "words"),
    [
        (lambda b: set_kill_switch(True, "test"), "kill_switch", "kill switch"),
        (
            lambda b: b.realtime.kv.put("health:feed", {"state": "stale"}, ttl=60),
            "feed_stale",
            "stale",
        ),
        (lambda b: b.realtime.ticks.publish([tick(NIFTY, 1.0, age=30)]), "feed_stale", "tick"),
        (lambda b: setattr(b.clock, "now", at(15, 1).timestamp()), "entry_window", "window"),
    ],
    ids=["kill-switch", "feed-health-stale", "index-tick-old", "after-the-entry-window"],
)
def test_a_blocking_gate_is_recorded_with_its_reason(catalog_sim, setup, gate, words):
    bench = Bench(catalog_sim)
    candle = bench.trending()
    setup(bench)
    if gate == "entry_window":  # the candle must still be fresh at that market time
        candle = Candle(
            NIFTY, 60, bench.clock.now - 61, candle.open, candle.high, candle.low, candle.close, 30
        )
    bench.engine.handle_candles([candle])
    row = TradingSignal.objects.get()
    assert (row.outcome, row.gate) == (SignalOutcome.BLOCKED, gate)
    assert words in row.block_reason.lower()
    assert bench.router.intents == []


def test_an_old_option_tick_blocks_at_the_strike_choice(catalog_sim):
    bench = Bench(catalog_sim)
    candle = bench.trending(option_age=10.0)
    bench.engine.handle_candles([candle])
    row = TradingSignal.objects.get()
    assert (row.outcome, row.gate) == (SignalOutcome.BLOCKED, "strike")
    assert "old" in row.block_reason


def test_no_averaging_into_a_contract_already_held(catalog_sim):
    # A bearish open position elsewhere on NIFTY is fine for the direction gate, but the
    # contract the rules pick is the one already held: blocked by no_averaging.
    bench = Bench(
        catalog_sim,
        indices={
            "NIFTY": {"max_concurrent": 2},
            "BANKNIFTY": {"enabled": False},
            "FINNIFTY": {"enabled": False},
            "SENSEX": {"enabled": False},
        },
    )
    candle = bench.trending()
    bench.engine.handle_candles([candle])
    picked = TradingSignal.objects.get().intent
    from instruments.models import Derivative

    held = Derivative.objects.get(security_id=picked["security_id"])
    hold(held, status="active", entry_price="100", underlying="NIFTY", direction="bearish")
    second = bench.next_candle(candle)
    bench.clock.now = second.end + 1
    bench.healthy_market(bench.history[-1].close)  # same spot: the rules pick the same contract
    bench.engine.handle_candles([second])
    row = TradingSignal.objects.latest("candle_start")
    assert (row.outcome, row.gate) == (SignalOutcome.BLOCKED, "no_averaging")


def test_cash_below_one_lot_blocks_at_sizing(catalog_sim):
    bench = Bench(catalog_sim)
    candle = bench.trending()
    with override_settings(PAPER_SEED_CASH=Decimal("1000")):
        bench.engine.handle_candles([candle])
    row = TradingSignal.objects.get()
    assert (row.outcome, row.gate) == (SignalOutcome.BLOCKED, "sizing")
    assert bench.router.intents == []


def test_a_candle_seen_too_late_is_recorded_stale_and_never_traded(catalog_sim):
    bench = Bench(catalog_sim)
    candle = bench.trending()
    bench.clock.now = candle.end + bench.config.signals.max_candle_age_seconds + 5
    bench.engine.handle_candles([candle])
    row = TradingSignal.objects.get()
    assert row.outcome == SignalOutcome.STALE and "after the candle closed" in row.block_reason
    assert bench.router.intents == []


def test_candles_whose_events_were_lost_are_caught_up_from_the_hubs_history(catalog_sim):
    bench = Bench(catalog_sim)
    first = bench.trending()
    second = bench.next_candle(first)
    bench.realtime.kv.push_capped(f"candles:{NIFTY}:60", first.as_dict(), 500)
    bench.realtime.kv.push_capped(f"candles:{NIFTY}:60", second.as_dict(), 500)
    bench.clock.now = second.end + 1

    assert bench.engine.handle_catchup() == 0  # just closed: their events may be on the way
    assert not TradingSignal.objects.exists()
    assert bench.engine.handle_catchup() == 2  # still unfed a pass later: lost

    rows = list(TradingSignal.objects.order_by("candle_start"))
    assert [r.candle_start.timestamp() for r in rows] == [first.start, second.start]
    assert rows[0].outcome == SignalOutcome.STALE or rows[0].outcome == SignalOutcome.INTENT
    assert bench.engine.handle_catchup() == 0  # nothing fed twice


def test_a_candle_whose_event_comes_after_a_catch_up_pass_is_fed_once_and_not_called_lost(
    catalog_sim, caplog
):
    bench = Bench(catalog_sim)
    candle = bench.trending()
    bench.realtime.kv.push_capped(f"candles:{NIFTY}:60", candle.as_dict(), 500)  # the hub's
    bench.clock.now = candle.end + 1
    with caplog.at_level(logging.WARNING, logger="workers.signal_engine"):
        assert bench.engine.handle_catchup() == 0  # the pass came between history and event
        assert bench.engine.handle_candles([candle]) == 1  # the event
        assert bench.engine.handle_catchup() == 0
    assert TradingSignal.objects.count() == 1
    assert "caught up" not in caplog.text


def test_a_confirmation_timeframe_that_disagrees_makes_the_signal_avoid(catalog_sim):
    bench = Bench(catalog_sim, signals={"confirm_timeframe_minutes": 5})
    level = nifty_level(catalog_sim)
    history = trending_candles(level, 40, at(10, 30))
    falling = [
        Candle(
            NIFTY,
            300,
            (at(10, 30) - timedelta(minutes=5 * (40 - i))).timestamp(),
            level * (1.2 - 0.004 * i) * 1.001,
            level * (1.2 - 0.004 * i) * 1.002,
            level * (1.2 - 0.004 * i) * 0.997,
            level * (1.2 - 0.004 * i) * 0.998,
            150,
        )
        for i in range(40)
    ]
    bench.realtime.kv.replace_list(f"candles:{NIFTY}:300", [c.as_dict() for c in falling], 500)
    bench.warm(history)
    assert bench.engine.indices[NIFTY].states[300].last.direction == "bearish"
    bench.healthy_market(history[-1].close)
    candle = bench.next_candle(history[-1])
    bench.clock.now = candle.end + 1
    bench.engine.handle_candles([candle])
    row = TradingSignal.objects.get()
    assert (row.direction, row.outcome) == ("avoid", SignalOutcome.AVOID)
    assert "5m" in row.reason or "confirmation" in row.reason


def test_candidate_contracts_around_the_money_are_published_for_the_hub(catalog_sim):
    bench = Bench(catalog_sim)
    history = trending_candles(nifty_level(catalog_sim), 40, at(10, 30))
    bench.warm(history)
    record = bench.realtime.kv.get(FEED_CANDIDATES)
    width = bench.config.strikes.subscribe_width
    assert record is not None and len(record["keys"]) == 2 * (2 * width + 1)
    contracts = {c.key: c for c in bench.engine.indices[NIFTY].contracts}
    assert {contracts[k].option_type for k in record["keys"]} == {"CE", "PE"}
    assert len({contracts[k].expiry for k in record["keys"]}) == 1


def test_strikes_come_from_the_catalog_50_apart_on_nse_nifty_and_100_on_bse_sensex(catalog_sim):
    bench = Bench(
        catalog_sim, indices={"BANKNIFTY": {"enabled": False}, "FINNIFTY": {"enabled": False}}
    )
    sensex_level = catalog_sim.market.index_level(51)
    bench.realtime.ticks.publish(
        [tick(NIFTY, nifty_level(catalog_sim)), tick("IDX_I:51", sensex_level)]
    )
    bench.engine.start()
    steps = {}
    for runtime in bench.engine.indices.values():
        strikes_seen = sorted({c.strike for c in runtime.contracts if c.key in runtime.candidates})
        steps[runtime.config.key] = {b - a for a, b in itertools.pairwise(strikes_seen)}
        assert {c.exchange_segment for c in runtime.contracts} == {
            "NIFTY": {"NSE_FNO"},
            "SENSEX": {"BSE_FNO"},
        }[runtime.config.key]
    assert steps == {"NIFTY": {Decimal(50)}, "SENSEX": {Decimal(100)}}


def test_an_invalid_config_change_keeps_the_last_good_config(catalog_sim):
    bench = Bench(catalog_sim)
    bench.warm(trending_candles(nifty_level(catalog_sim), 40, at(10, 30)))
    good = bench.config.version

    def broken() -> AlgoConfig:
        raise ConfigError("algo.yml: risk.max_lots: expected a whole number, got 'x'")

    bench.engine.config_source = broken
    assert bench.engine.handle_config() is False
    assert bench.engine.config.version == good
    assert "risk.max_lots" in bench.engine.last_error

    changed = config(
        risk={"max_trades_per_day": 5},
        indices={
            "BANKNIFTY": {"enabled": False},
            "FINNIFTY": {"enabled": False},
            "SENSEX": {"enabled": False},
        },
    )
    bench.engine.config_source = lambda: changed
    assert bench.engine.handle_config() is True
    assert bench.engine.config.version == changed.version != good
    assert bench.engine.indices[NIFTY].states[60].warm  # same signals: indicators kept


def test_live_sizing_uses_the_brokers_funds_and_a_failed_read_blocks_safely(catalog_sim):
    bench = Bench(catalog_sim)
    candle = bench.trending()
    engine = bench.engine
    engine.live = True
    engine.rest = DhanRestClient(
        base_url=catalog_sim.base_url,
        client_id=catalog_sim.client_id,
        token_provider=lambda: catalog_sim.token,
        limiter=InProcessRateLimiter(load_limits()),
        max_attempts=1,
    )
    day = at(0, 0)
    assert engine.available_cash() == Decimal(
        str(catalog_sim.broker.fund_limit()["availabelBalance"])
    )
    known = engine.capital(day)
    assert known > 0

    catalog_sim.faults.rest_error, catalog_sim.faults.rest_error_share = "500", 1.0
    assert engine.capital(day) == known  # the start-of-day limit read earlier today serves
    assert engine.capital(day + timedelta(days=1)) == 0  # never read that day: fail safe
    engine.handle_candles([candle])
    row = TradingSignal.objects.get()
    assert (row.outcome, row.gate) == (SignalOutcome.BLOCKED, "sizing")
    assert row.block_reason.startswith("cash unknown: fund limit unreadable")


# -- against the simulator -----------------------------------------------------------------------


def sim_rest(sim: Simulator) -> DhanRestClient:
    return DhanRestClient(
        base_url=sim.base_url,
        client_id=sim.client_id,
        token_provider=lambda: sim.token,
        limiter=InProcessRateLimiter(load_limits()),
    )


def start_day(regime: str, seed: int) -> Simulator:
    # A day and a session time away from the wall clock's: the engine follows the hub's
    # market clock, which follows the simulator's feed (tests/support/market.py). The window
    # is narrow because the flat day's outcome depends on the path: every start from 10:00 to
    # 10:45 gives a flat, ADX-below-minimum morning for seed 5 (11:00 already does not).
    day, start = away_from_wall(dtime(10, 0), dtime(10, 45), step_minutes=15)
    simulator = Simulator(
        SimConfig(
            seed=seed,
            speed=60.0,
            start=start,
            trading_date=day,
            regime=regime,
            strikes_each_side=6,
            weeklies=1,
            monthlies=1,
        )
    )
    simulator.start()
    return simulator


class Day:
    """The simulator, the feed hub and the signal engine on one Redis, each running."""

    def __init__(self, regime: str, redis_url: str, running: Any, *, seed: int = 5) -> None:
        self.sim = start_day(regime, seed)
        seed_watchlist()
        import_sim_catalog(self.sim)
        prefix = f"test-se-{regime}-{time.monotonic_ns()}:"
        self.realtime = redis_realtime(redis_url, prefix)
        self.hub = make_hub(self.sim, self.realtime, stale_after=1.0)
        self.router = RecordingRouter()
        self.engine = SignalEngine(
            self.realtime,
            rest=sim_rest(self.sim),
            router=self.router,
            config_source=load_algo_config,
            wait_timeout=0.05,
        )
        self.runs = [running(self.hub)]
        wait_until(lambda: self.realtime.ticks.get(NIFTY), "the first NIFTY tick")
        self.runs.append(running(self.engine))

    def rows(self, **filters: Any) -> list[TradingSignal]:
        return list(TradingSignal.objects.filter(**filters).order_by("candle_start", "index"))

    def close(self) -> None:
        for run in reversed(self.runs):  # the engine, then the hub, then what they use
            run.close()
        self.sim.stop()
        self.realtime.close()


@pytest.fixture
def day(redis_url: str, running: Any) -> Iterator[Any]:
    opened: list[Day] = []

    def open_day(regime: str, **kwargs: Any) -> Day:
        d = Day(regime, redis_url, running, **kwargs)
        opened.append(d)
        return d

    yield open_day
    for d in opened:
        d.close()


def test_a_trending_simulated_day_produces_signals_and_sized_intents(day):
    d = day("trend")
    wait_until(lambda: len(d.router.intents) >= 2, "two sized intents", timeout=40)
    rows = d.rows()
    assert {r.index for r in rows} >= {"NIFTY"}
    directional = [r for r in rows if r.direction != "avoid"]
    assert directional, "a trending day gave no directional signal"
    for intent in d.router.intents:
        row = TradingSignal.objects.get(pk=intent.signal_id)
        assert row.outcome == SignalOutcome.INTENT and row.intent["quantity"] == intent.quantity
        assert intent.quantity == intent.lots * intent.lot_size and intent.lots >= 1
        assert intent.option_type == ("CE" if intent.direction == "bullish" else "PE")
        assert all(q % intent.lot_size == 0 for q in intent.orders)
    # Each index decided each candle once.
    keys = [(r.index, r.candle_start) for r in rows]
    assert len(keys) == len(set(keys))


def test_a_flat_simulated_day_produces_avoid_signals(day):
    d = day("flat")
    wait_until(lambda: len(d.rows()) >= 16, "16 signals", timeout=40)
    rows = d.rows()
    avoid = [r for r in rows if r.direction == "avoid"]
    assert len(avoid) >= len(rows) * 3 // 4, [(r.index, r.direction, r.reason) for r in rows]
    assert all(r.outcome == SignalOutcome.AVOID for r in avoid)
    assert all("ADX" in r.reason for r in avoid if not r.reason.startswith("warming"))


def test_a_stalled_feed_blocks_entries_with_the_recorded_reason(day):
    d = day("trend")
    wait_until(lambda: d.rows(), "the first decision")
    d.sim.faults.stall = True
    since = d.sim.now() + timedelta(seconds=60)
    wait_until(
        lambda: d.rows(gate="feed_stale", candle_start__gte=since),
        "a signal blocked by the stale feed",
        timeout=40,
    )
    blocked = d.rows(gate="feed_stale")[-1]
    assert blocked.outcome == SignalOutcome.BLOCKED and "stale" in blocked.block_reason
    # Entries stopped while the feed was stale: no intent for a candle after the stall began.
    stalled_at = blocked.candle_start
    assert not d.rows(outcome=SignalOutcome.INTENT, candle_start__gte=stalled_at)
