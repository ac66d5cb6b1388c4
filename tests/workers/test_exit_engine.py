"""The exit engine on paper against real PostgreSQL: a position entered through the router and
filled by the paper broker, then a scripted price path; the engine exits it on the exact tick
that crosses its rule, with the rule's type, through the same claim and router path as every
exit, and the order manager books the exit. Market time and ticks are in the test's hands
(one engine pass at a time), so the suite behaves the same at any hour.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from instruments.models import Instrument
from tests.support.rows import make_derivative, make_index, make_signal
from tests.trading.orders.conftest import T0, Market, make_intent, real_charges
from trading.config.store import load_algo_config
from trading.models import Order, PositionTracker
from trading.orders.gateway import PaperGateway
from trading.orders.ledger import check_ledger
from trading.orders.paper import PaperBroker
from trading.orders.router import OrderRouter
from trading.rules.exits import ExitPlan
from trading.rules.market import IST
from trading.switches import kill_switch_active, kill_switch_reason, set_kill_switch
from workers.exit_engine import ExitEngine
from workers.order_manager import OrderManager
from workers.realtime.event_bus import MemoryEventBus
from workers.realtime.kv_store import MemoryKeyValueStore
from workers.realtime.record import TickRecord, encode_depth
from workers.realtime.services import Realtime
from workers.realtime.tick_store import MemoryTickStore

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "NSE_FNO:55796"
INDEX = "IDX_I:13"


def make_nifty_index() -> Instrument:
    return make_index("NIFTY", 13, display_name="Nifty 50")


class Desk:
    """The router, the order manager on the paper broker and an exit engine, over one
    in-memory tick store; the market clock and the wall clock move together in the test's
    hands."""

    def __init__(self, config_source: Any = load_algo_config) -> None:
        self.market = Market()
        self.wall = time.time()
        self.config_source = config_source
        self.realtime = Realtime(
            ticks=MemoryTickStore(), events=MemoryEventBus(), kv=MemoryKeyValueStore()
        )
        self.seq = 0
        self.entries = 0
        self.router = self.make_router()
        self.manager = OrderManager(
            self.realtime,
            self.router,
            config_source=config_source,
            charges=real_charges,
            paper_broker=PaperBroker(self.realtime.ticks.get, config_source, lambda: self.wall),
            clock=self.market.clock,
            wall=lambda: self.wall,
        )
        make_derivative(55796)
        make_nifty_index()
        self.engine = self.make_engine()

    def make_router(self) -> OrderRouter:
        return OrderRouter(
            PaperGateway(),
            config_source=self.config_source,
            clock=self.market.clock,
            quote=self.quote,
            freeze_quantity=lambda position: 1800,
        )

    def make_engine(self) -> ExitEngine:
        engine = ExitEngine(
            self.realtime,
            self.make_router(),
            config_source=self.config_source,
            clock=self.market.clock,
            wall=lambda: self.wall,
        )
        engine.subscription = self.realtime.ticks.subscribe()
        return engine

    @contextlib.contextmanager
    def running(self, engine: ExitEngine) -> Iterator[threading.Thread]:
        """``engine.run`` on a thread of its own (its threads started once ``_routers`` is
        set), stopped and joined on the way out; yields that thread."""
        from tests.support.waiting import wait_until

        engine.subscription.close()
        stop = threading.Event()
        runner = threading.Thread(target=engine.run, args=(stop,))
        runner.start()
        try:
            wait_until(lambda: engine._routers, "the engine's threads to start")
            yield runner
        finally:
            stop.set()
            runner.join(10)

    def quote(self, key: str) -> Any:
        record = self.realtime.ticks.get(key)
        if record is None or self.wall - record.receive_time > 2:
            return None
        money = [None if not v else Decimal(f"{v:.2f}") for v in (record.bid, record.ask)]
        return (money[0], money[1], Decimal(f"{record.ltp:.2f}"))

    def tick(self, ltp: float, *, key: str = KEY, age: float = 0.0, depth: int = 6500) -> None:
        """A full tick at ``ltp``: bid 0.05 below, ask 0.05 above, ``depth`` units each."""
        self.seq += 1
        bid, ask = round(ltp - 0.05, 2), round(ltp + 0.05, 2)
        levels = [(depth, depth, 1, 1, bid, ask)] + [(0, 0, 0, 0, 0.0, 0.0)] * 4
        self.realtime.ticks.publish(
            [
                TickRecord(
                    key=key,
                    seq=self.seq,
                    ltp=ltp,
                    exchange_time=self.market.now,
                    receive_time=self.wall - age,
                    bid=bid,
                    bid_qty=depth,
                    ask=ask,
                    ask_qty=depth,
                    depth_raw=encode_depth(levels),
                )
            ]
        )

    def advance(self, seconds: float) -> None:
        self.market.now += seconds
        self.wall += seconds

    def enter(self, *, lots: int = 1, price: float = 100.0, direction: str = "bullish") -> int:
        """An entry filled at ``price`` (ask levels at ``price``), active; returns its id."""
        self.entries += 1
        signal = make_signal(candle_start=T0 - timedelta(minutes=5 * self.entries))
        intent = make_intent(
            signal.pk,
            orders=(65 * lots,),
            limit_price=Decimal(f"{price + 2:.2f}"),
            direction=direction,
            underlying_price=Decimal("26000"),
        )
        self.router.place_entry(intent)
        position = PositionTracker.objects.get(signal_id=intent.signal_id)
        self.advance(0.2)  # past the paper latency
        self.tick(price + 0.05)  # ask at price + 0.10 ... filled at the ask
        self.seq += 1
        self.manager.run_once()
        position.refresh_from_db()
        assert position.status == "active", position.status
        return position.pk

    def step(self, *prices: float, key: str = KEY, seconds: float = 1.0) -> int:
        """One tick per price, an engine pass after each (``seconds`` apart); decisions."""
        decided = 0
        for price in prices:
            self.advance(seconds)
            self.tick(price, key=key)
            decided += self.engine_pass()
        return decided

    def engine_pass(self) -> int:
        engine = self.engine
        if self.wall >= engine._next_reload:
            engine.handle_reload(self.wall)
        records = engine.subscription.wait(0)
        return engine.handle_records(records, self.wall) if records else 0

    def sweep(self) -> int:
        """The ticks waiting, then the sweep; decisions of both."""
        return self.engine_pass() + self.engine.sweep(self.wall)

    def settle(self) -> None:
        """The order manager sends and fills what the engine claimed (a fresh tick)."""
        for _ in range(3):
            self.manager.run_once()
            self.advance(0.2)
            record = self.realtime.ticks.get(KEY)
            self.tick(record.ltp)
        self.manager.run_once()


@pytest.fixture
def desk() -> Desk:
    return Desk()


def status(position_id: int) -> str:
    return PositionTracker.objects.get(pk=position_id).status


def entry_price(position_id: int) -> Decimal:
    return PositionTracker.objects.get(pk=position_id).entry_price


# -- a scripted path per rule ---------------------------------------------------------------------


def test_the_initial_stop_exits_on_the_tick_that_reaches_it_not_one_before(desk):
    pid = desk.enter()
    entry = entry_price(pid)  # 100.10: filled at the ask
    stop = (entry * Decimal("0.88")).quantize(Decimal("0.01"))
    assert desk.step(98.0, float(stop) + 0.05) == 0
    assert status(pid) == "active"
    assert desk.step(float(stop)) == 1
    position = PositionTracker.objects.get(pk=pid)
    assert (position.status, position.exit_type) == ("exiting", "STOP_LOSS")
    assert position.exit_trigger_price == stop
    assert position.exit_tick_at == datetime.fromtimestamp(desk.market.now, IST)
    assert position.exit_decided_at == datetime.fromtimestamp(desk.market.now, IST)
    assert position.exit_inputs["stop_rule"] == "initial"
    assert position.exit_inputs["stop"] == str(stop)
    assert f"initial stop {stop}" in position.exit_reason
    assert Order.objects.filter(position_id=pid, leg="exit").count() == 1
    desk.settle()
    position.refresh_from_db()
    assert position.status == "exited"
    assert position.exit_price is not None and position.realized_pnl < 0
    assert check_ledger() == []


def test_a_trailing_stop_exits_as_trailing_and_survives_a_restart_of_the_engine(desk):
    pid = desk.enter()
    entry = entry_price(pid)
    peak = 120.0  # a 19.9 % gain: break-even and trailing armed
    desk.step(110.0, peak)
    trail = (Decimal(str(peak)) * Decimal("0.90")).quantize(Decimal("0.01"))
    position = PositionTracker.objects.get(pk=pid)
    # The component changed: written at once, before any sweep.
    assert (position.protective_stop, position.stop_rule) == (trail, "trailing")
    assert position.peak_premium == Decimal("120.0000")

    # A new engine (a restart): the stop continues from the database, not from the initial.
    desk.engine = desk.make_engine()
    desk.engine_pass()
    (watched,) = desk.engine.watched.values()
    assert (watched.state.stop, watched.state.stop_rule) == (trail, "trailing")
    assert watched.state.stop > entry * Decimal("0.88")

    assert desk.step(float(trail) + 0.05) == 0
    assert desk.step(float(trail)) == 1
    position.refresh_from_db()
    assert (position.status, position.exit_type) == ("exiting", "TRAILING_STOP")
    assert "trailing stop" in position.exit_reason


def test_the_break_even_stop_is_named_when_it_is_what_the_price_crosses(desk):
    pid = desk.enter()
    entry = entry_price(pid)
    desk.step(float(entry) * 1.09)  # 9 %: break-even armed, trailing (15 %) not
    position = PositionTracker.objects.get(pk=pid)
    assert position.stop_rule == "breakeven" and position.protective_stop > entry
    assert desk.step(float(position.protective_stop)) == 1
    position.refresh_from_db()
    assert position.exit_type == "BREAKEVEN_STOP"


def test_take_profit_fires_at_its_level(desk):
    pid = desk.enter()
    level = (entry_price(pid) * Decimal("1.40")).quantize(Decimal("0.01"))
    # A straight jump: trailing armed on the same tick, take profit not deferred by default.
    assert desk.step(float(level) - 0.05) == 0
    assert desk.step(float(level)) == 1
    assert PositionTracker.objects.get(pk=pid).exit_type == "TAKE_PROFIT"


def test_peak_giveback_fires_when_the_gain_falls_back_below_its_floor(desk):
    pid = desk.enter()
    entry = entry_price(pid)
    # 12 % peak: giveback armed (10 %), break-even armed at entry + charges; trailing not.
    desk.step(float(entry) * 1.12)
    floor = (entry * Decimal("0.98")).quantize(Decimal("0.01"))
    # The break-even stop sits above the floor, so a fall to the floor crosses it first:
    # peak giveback is seen only with break-even off.
    config = load_algo_config()
    assert config.exits.breakeven.enabled
    assert desk.step(float(floor)) == 1
    assert PositionTracker.objects.get(pk=pid).exit_type == "BREAKEVEN_STOP"


def test_the_danger_zone_fires_after_its_seconds_in_loss_and_on_the_underlying(desk):
    pid = desk.enter()
    entry = entry_price(pid)
    deep = float(entry) * 0.93  # 7 % down: in the danger zone (6 %), above the stop (12 %)
    desk.step(deep)  # the first evaluation in loss: 0 s
    for _ in range(12):
        desk.advance(10)
        desk.tick(deep)
        assert desk.sweep() == 0  # 10 s ... 120 s in loss: not MORE than 120
    desk.advance(1)
    desk.tick(deep)
    assert desk.sweep() == 1
    position = PositionTracker.objects.get(pk=pid)
    assert position.exit_type == "DANGER_ZONE"
    assert position.seconds_in_loss == pytest.approx(121.0)

    other = desk.enter()
    desk.step(26000.0, key=INDEX)  # the index at entry
    assert desk.step(25896.05, key=INDEX) == 0  # 0.398 % down
    assert desk.step(25896.0, key=INDEX) == 1  # 0.4 % against a bullish trade
    position = PositionTracker.objects.get(pk=other)
    assert position.exit_type == "DANGER_ZONE" and "underlying moved" in position.exit_reason


def test_premium_stall_fires_when_losing_without_a_new_high_for_its_minutes(desk):
    pid = desk.enter()
    entry = float(entry_price(pid))
    desk.step(entry - 1.0)  # losing a little (not in the danger zone), no new high
    for _ in range(17):  # 170 s more: 3 min since the entry's high not reached yet
        desk.advance(10)
        desk.tick(entry - 1.0)
        assert desk.sweep() == 0
    desk.advance(10)
    desk.tick(entry - 1.0)
    assert desk.sweep() == 1
    assert PositionTracker.objects.get(pk=pid).exit_type == "PREMIUM_STALL"


def test_time_exit_fires_on_market_time_with_no_tick_at_all(desk):
    pid = desk.enter()
    square_off = datetime(2026, 11, 23, 15, 15, tzinfo=IST).timestamp()
    desk.advance(square_off - desk.market.now - 0.5)
    assert desk.sweep() == 0
    desk.advance(0.5)
    assert desk.sweep() == 1
    position = PositionTracker.objects.get(pk=pid)
    assert (position.exit_type, position.exit_trigger_price) == ("TIME_EXIT", None)


# -- the account's switches -----------------------------------------------------------------------


def test_the_kill_switch_flattens_every_open_position_and_cancels_pending_entries(desk):
    first, second = desk.enter(), desk.enter()
    signal = make_signal(candle_start=T0 + timedelta(minutes=30))
    desk.router.place_entry(make_intent(signal.pk, orders=(65,), limit_price=Decimal("50")))
    pending = PositionTracker.objects.get(signal_id=signal.pk)
    desk.manager.run_once()  # the paper broker confirms it (PENDING), nothing crosses 50
    assert desk.sweep() == 0
    set_kill_switch(True, "operator: stop everything")
    assert desk.sweep() == 2
    assert {status(first), status(second)} == {"exiting"}
    assert set(
        PositionTracker.objects.filter(pk__in=[first, second]).values_list("exit_type", flat=True)
    ) == {"KILL_SWITCH"}
    assert Order.objects.get(position=pending).cancel_requested_at is not None
    desk.settle()
    assert {status(first), status(second)} == {"exited"}
    assert status(pending.pk) == "cancelled"
    assert check_ledger() == []


def test_the_daily_loss_limit_exits_everything_and_trips_the_kill_switch(desk):
    # Twenty lots (1,300 units): the day's limit (Rs 10,000 in config/algo.yml, as is 10 % of
    # the Rs 1 lakh seed cash) is reached near a 7.7 % fall, before the 12 % stop.
    limit = Decimal(10000)
    assert load_algo_config().risk.daily_loss_limit.rupees == limit
    pid = desk.enter(lots=20)
    position = PositionTracker.objects.get(pk=pid)
    entry, charges = position.entry_price, position.charges
    # day PnL = (ltp - entry) x 1300 - entry charges <= -limit
    edge = entry - (limit - charges) / 1300
    above = (edge + Decimal("0.05")).quantize(Decimal("0.05"))
    assert desk.step(float(above)) == 0
    assert not kill_switch_active()
    below = (edge - Decimal("0.05")).quantize(Decimal("0.05"))
    assert desk.step(float(below)) == 1
    position.refresh_from_db()
    assert position.exit_type == "DAILY_LOSS_LIMIT"
    assert kill_switch_active()
    assert "daily loss limit" in kill_switch_reason()


def test_a_position_an_operator_exited_by_hand_is_not_exited_again(desk):
    pid = desk.enter()
    desk.engine_pass()
    assert desk.router.exit_position(pid, "MANUAL", "operator").status == "routed"
    desk.step(10.0)  # far below the stop: the engine no longer watches it
    assert PositionTracker.objects.get(pk=pid).exit_type == "MANUAL"
    assert Order.objects.filter(position_id=pid, leg="exit").count() == 1


def test_two_engines_on_one_database_send_one_exit_order_set(desk):
    pid = desk.enter()
    second = desk.make_engine()
    stop = float((entry_price(pid) * Decimal("0.88")).quantize(Decimal("0.01")))
    desk.advance(1)
    desk.tick(stop)
    for engine in (desk.engine, second):
        engine.handle_reload(desk.wall)
        engine.subscription.wait(0)
    desk.tick(stop - 0.05)
    decided = [
        engine.handle_records(engine.subscription.wait(0), desk.wall)
        for engine in (desk.engine, second)
    ]
    assert decided == [1, 1]  # both decided ...
    assert [desk.engine.counters["exits"], second.counters["exits"]] == [1, 0]  # one claimed
    assert second.counters["refused"] == 1
    assert Order.objects.filter(position_id=pid, leg="exit").count() == 1


def test_on_start_an_exit_claimed_but_never_sent_is_sent_once(desk):
    pid = desk.enter()
    from trading.orders.journal import claim_exit

    assert claim_exit(pid, "STOP_LOSS", "claimed, then the process died")
    assert not Order.objects.filter(position_id=pid, leg="exit").exists()
    desk.engine = desk.make_engine()
    assert desk.engine.resume() == 1
    assert desk.make_engine().resume() == 1  # a second start: nothing more is sent
    assert Order.objects.filter(position_id=pid, leg="exit").count() == 1


# -- a stale feed ---------------------------------------------------------------------------------


def test_a_stale_feed_in_paper_prices_nothing_but_the_time_exit_fires_and_waits_to_fill(desk):
    pid = desk.enter()
    entry = float(entry_price(pid))
    desk.advance(1)
    desk.tick(entry * 0.5, age=5.0)  # a crash far below the stop, but 5 s old: not traded on
    desk.engine_pass()
    assert desk.sweep() == 0 and status(pid) == "active"
    assert desk.engine.counters["stale"] >= 1
    desk.advance(datetime(2026, 11, 23, 15, 15, tzinfo=IST).timestamp() - desk.market.now)
    assert desk.sweep() == 1
    assert PositionTracker.objects.get(pk=pid).exit_type == "TIME_EXIT"
    desk.manager.run_once()  # no fresh tick: no price for the exit order, nothing filled
    assert status(pid) == "exiting"
    assert not Order.objects.filter(position_id=pid, leg="exit", filled_quantity__gt=0).exists()
    desk.tick(entry)  # a fresh tick: the exit fills at its bid
    desk.settle()
    assert status(pid) == "exited"


def test_a_stale_feed_in_live_prices_from_the_rest_quote(desk):
    pid = desk.enter()
    stop = (entry_price(pid) * Decimal("0.88")).quantize(Decimal("0.01"))
    asked: list[str] = []

    def rest_quote(key: str) -> Any:
        asked.append(key)
        return (stop - Decimal("0.05"), stop + Decimal("0.05"), stop)

    desk.engine.rest_quotes = rest_quote
    desk.advance(1)
    desk.tick(float(entry_price(pid)), age=5.0)  # stale
    assert desk.sweep() == 1
    assert asked == [KEY]
    position = PositionTracker.objects.get(pk=pid)
    assert (position.exit_type, position.exit_trigger_price) == ("STOP_LOSS", stop)


def test_the_engine_keeps_the_pnl_cache_of_open_positions(desk):
    pid = desk.enter()
    desk.step(110.0)
    assert desk.engine.cache.get(pid) is None  # the tick path never waits for the cache
    desk.sweep()
    snapshot = desk.engine.cache.get(pid)
    assert snapshot is not None and snapshot.ltp == 110.0
    assert snapshot.gross == (Decimal("110") - entry_price(pid)) * 65

    row = PositionTracker.objects.get(pk=pid)  # the database copy, in the same sweep
    assert (row.ltp, row.unrealized_pnl) == (Decimal("110.0000"), snapshot.gross)


def test_the_running_engine_keeps_its_books_in_its_own_thread_and_exits_on_the_tick(desk):

    from tests.support.waiting import wait_until

    pid = desk.enter()
    engine = desk.make_engine()
    with desk.running(engine) as runner:
        assert engine.watched  # read before the threads start
        assert engine._books is not None and engine._books.is_alive()
        assert len(engine._routers) == 4 and all(t.is_alive() for t in engine._routers)
        # A position opened while it runs: read by the bookkeeper, applied by the tick thread.
        later = desk.enter()
        desk.advance(1.5)
        wait_until(lambda: later in engine.watched, "the bookkeeper's read of the open set")
        desk.advance(1)
        desk.tick(121.0)  # trailing armed: the bookkeeper writes it at once
        wait_until(
            lambda: PositionTracker.objects.get(pk=pid).stop_rule == "trailing",
            "the trailing stop written by the bookkeeper",
        )
        wait_until(lambda: engine.cache.get(pid) is not None, "the PnL mark of the sweep")
        desk.advance(1)
        desk.tick(100.0)  # through the trailing stop (108.90)
        wait_until(
            lambda: PositionTracker.objects.get(pk=pid).status == "exiting",
            "the exit decided on the tick",
        )
        wait_until(lambda: engine.counters["exits"] >= 1, "the router thread's route")
        # Once the position leaves the open set its PnL key goes, by the bookkeeper (a
        # Redis and a database round trip the tick thread does not wait for).
        assert engine.cache.get(pid) is not None
        PositionTracker.objects.filter(pk=pid).update(status="exited")
        desk.advance(1.5)  # the next reload
        wait_until(lambda: engine.cache.get(pid) is None, "the bookkeeper's last mark")
        assert not engine._finishing
    assert not runner.is_alive() and engine._books is None and engine._routers == []
    position = PositionTracker.objects.get(pk=pid)
    assert position.exit_type == "TRAILING_STOP"
    # Routed by the router thread: its exit order was journaled and sent.
    (sent,) = position.orders.filter(leg="exit")
    assert sent.status == "TRANSIT" and engine.counters["exits"] >= 1
    assert position.peak_premium == Decimal("121.0000")  # the state at the decision, written


def test_the_bookkeeper_woken_for_one_row_writes_it_and_leaves_the_marks_to_their_interval(desk):
    """A decision or a new stop wakes the bookkeeper for one row; the PnL marks of the whole
    book wait for their interval (marking on every wake made each exit start a burst of
    work the tick thread waited behind)."""
    pid = desk.enter()
    engine = desk.engine
    desk.step(103.0)
    engine.keep_books(desk.wall)  # due: marked
    marked = engine.updates
    assert marked == 1 and engine.cache.get(pid) is not None
    desk.advance(0.2)
    desk.tick(121.0)  # a new high: trailing armed, its row asked for at once
    records = engine.subscription.wait(0)
    engine.handle_records(records, desk.wall)
    watched = engine.watched[pid]
    engine._urgent[pid] = watched  # what _persist_soon leaves for the running bookkeeper
    engine.keep_books(desk.wall)
    assert PositionTracker.objects.get(pk=pid).stop_rule == "trailing"  # the row: written
    assert engine.updates == marked  # the marks: not yet
    desk.advance(1.0)
    engine.keep_books(desk.wall)
    assert engine.updates == marked + 1


def test_rows_asked_for_together_are_written_in_one_statement(desk):
    """A burst of decisions or new stops asks the bookkeeper for several rows: their exit
    states go in one statement (an ORM update each was milliseconds of the interpreter the
    tick path waited for, just when exits come together); an unmoved state is not written."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    pids = [desk.enter(), desk.enter(), desk.enter()]
    engine = desk.engine
    desk.step(103.0)
    engine.keep_books(desk.wall)  # the marks of the interval: out of the way
    engine._books = threading.current_thread()  # as when the bookkeeper runs: rows wait for it
    try:
        desk.advance(0.2)
        desk.tick(121.0)  # a new high for all three: trailing armed, each row asked for
        engine.handle_records(engine.subscription.wait(0), desk.wall)
        assert set(engine._urgent) == set(pids)
        assert set(
            PositionTracker.objects.filter(pk__in=pids).values_list("stop_rule", flat=True)
        ) == {"initial"}
        with CaptureQueriesContext(connection) as queries:
            engine.keep_books(desk.wall)
        writes = [q for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
        assert len(writes) == 1 or connection.vendor != "postgresql"
        assert set(
            PositionTracker.objects.filter(pk__in=pids).values_list("stop_rule", flat=True)
        ) == {"trailing"}
        for pid in pids:
            engine._urgent[pid] = engine.watched[pid]  # asked again, nothing moved since
        with CaptureQueriesContext(connection) as queries:
            engine.keep_books(desk.wall)
        assert not [q for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    finally:
        engine._books = None


def test_with_a_bookkeeper_the_sweep_reads_no_database_and_a_kill_switch_sweeps_at_once(desk):
    """The day's realized PnL and the kill switch are read by the bookkeeper (refresh_risk),
    not by the tick thread's sweep; a kill switch it finds on brings the next sweep forward
    to the tick thread's next pass."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    pid = desk.enter()
    engine = desk.engine
    desk.step(103.0)
    engine._books = threading.current_thread()  # as when the bookkeeper runs: it reads
    try:
        engine.day_risk(engine.market_now())  # the first read of the day is the caller's
        with CaptureQueriesContext(connection) as queries:
            assert engine.sweep(desk.wall) == 0
        assert not queries.captured_queries
        engine._next_sweep = desk.wall + 1.0
        set_kill_switch(True, "test: flatten")
        desk.advance(1.0)
        engine.keep_books(desk.wall)
        assert engine._kill_switch and engine._next_sweep == 0.0
        assert engine.sweep(desk.wall) == 1  # the tick thread's next pass
    finally:
        engine._books = None
    assert PositionTracker.objects.get(pk=pid).exit_type == "KILL_SWITCH"


def test_many_positions_get_their_own_values_in_one_statement_only_while_open(desk):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from workers.pnl import update_open_positions

    first, second = desk.enter(), desk.enter()
    PositionTracker.objects.filter(pk=second).update(status="exited")
    moment = datetime(2026, 11, 23, 11, 0, 5, tzinfo=IST)
    values = {
        first: {
            "protective_stop": Decimal("91.2500"),
            "stop_rule": "trailing:2",
            "seconds_in_loss": 12.5,
            "in_loss_at": moment,
        },
        second: {
            "protective_stop": Decimal("1.0000"),
            "stop_rule": "initial",
            "seconds_in_loss": 0.0,
            "in_loss_at": None,
        },
    }
    columns = ("protective_stop", "stop_rule", "seconds_in_loss", "in_loss_at")
    with CaptureQueriesContext(connection) as queries:
        assert update_open_positions(values, columns) == 1  # the exited one is left alone
    # PostgreSQL: one statement; SQLite (in process): one transaction of bulk_update.
    assert len(queries) == 1 or connection.vendor != "postgresql"
    row = PositionTracker.objects.get(pk=first)
    assert (row.protective_stop, row.stop_rule, row.seconds_in_loss, row.in_loss_at) == (
        Decimal("91.2500"),
        "trailing:2",
        12.5,
        moment,
    )
    assert PositionTracker.objects.get(pk=second).stop_rule != "initial"
    assert update_open_positions({}, columns) == 0
    # Many rows go a chunk a statement (each holds its rows' locks only while it runs).
    third, fourth = desk.enter(), desk.enter()
    many = {pk: {**values[first], "stop_rule": f"tier:{pk}"} for pk in (first, third, fourth)}
    with CaptureQueriesContext(connection) as queries:
        assert update_open_positions(many, columns, chunk=2) == 3
    assert len(queries) == 2 or connection.vendor != "postgresql"
    assert dict(
        PositionTracker.objects.filter(pk__in=many).values_list("pk", "stop_rule")
    ) == {pk: f"tier:{pk}" for pk in many}


def test_more_entry_fills_rebuild_the_plan_on_the_new_quantity_and_average(desk):
    pid = desk.enter()
    desk.engine_pass()
    (watched,) = desk.engine.watched.values()
    assert watched.plan.quantity == 65
    # A later entry fill (a freeze-split entry's second order): 130 units at a new average.
    PositionTracker.objects.filter(pk=pid).update(quantity=130, entry_price=Decimal("101.00"))
    desk.advance(1.5)  # past the reload interval
    desk.engine_pass()
    (watched,) = desk.engine.watched.values()
    assert (watched.plan.quantity, watched.plan.entry_price) == (130, Decimal("101.00"))
    assert watched.state.stop == (Decimal("101.00") * Decimal("0.88")).quantize(Decimal("0.01"))
    desk.advance(1.5)
    desk.engine_pass()
    assert desk.engine.watched[pid] is watched  # unchanged rows are not rebuilt


# -- the quiet band: ticks that cannot move a position skip its rules -----------------------------


def test_ticks_inside_the_quiet_band_skip_the_rules_and_the_exit_still_comes_on_its_tick(desk):
    pid = desk.enter()
    entry = entry_price(pid)
    engine = desk.engine
    desk.step(103.0, 99.0)  # peak 103, trough 99: the band (stop 88.09, time exit 15:15)
    evaluations = engine.counters["evaluations"]
    desk.step(101.0, 99.0, 103.0, 100.5, 102.25)
    assert engine.counters["evaluations"] == evaluations  # inside the band: no rule ran
    assert engine.counters["quiet"] == 5
    # The day's open PnL still follows every quiet tick (the loss limit reads it).
    charges = PositionTracker.objects.get(pk=pid).charges
    assert engine._open_pnl == (Decimal("102.25") - entry) * 65 - charges
    # Out of the band below the trough: evaluated (a new trough), then the stop on its tick.
    stop = (entry * Decimal("0.88")).quantize(Decimal("0.01"))
    assert desk.step(95.0, float(stop) + 0.05) == 0
    assert engine.counters["evaluations"] == evaluations + 2
    assert desk.step(float(stop)) == 1
    position = PositionTracker.objects.get(pk=pid)
    assert (position.status, position.exit_type) == ("exiting", "STOP_LOSS")
    assert position.exit_trigger_price == stop


def test_a_reload_drops_the_quiet_band_of_the_contracts_it_changed_only(desk):
    """A position opened on another contract leaves this contract's band as it was (its
    next quiet tick runs no rule); one opened on this contract drops it (the next tick
    runs the rules of both, and the band is computed again)."""
    pid = desk.enter()
    engine = desk.engine
    desk.step(103.0, 99.0)
    assert engine._bands.get(KEY) is not None
    elsewhere = make_derivative(55797)
    row = PositionTracker.objects.filter(pk=pid).values()[0]
    other_signal = make_signal(candle_start=T0 - timedelta(hours=2))
    row.update(id=None, derivative_id=elsewhere.pk, security_id=55797, signal_id=other_signal.pk)
    PositionTracker.objects.create(**row)
    evaluations = engine.counters["evaluations"]
    desk.advance(1.5)
    engine.handle_reload(desk.wall)  # the other contract's position comes in
    assert len(engine.watched) == 2 and engine._bands.get(KEY) is not None
    desk.step(101.0)
    assert engine.counters["evaluations"] == evaluations  # still quiet: no rule ran
    second = desk.enter()
    desk.advance(1.5)
    engine.handle_reload(desk.wall)
    assert second in engine.watched and KEY not in engine._bands
    desk.step(101.0)
    assert engine.counters["evaluations"] == evaluations + 2  # both, once
    assert engine._bands.get(KEY) is not None


def test_a_reload_builds_the_new_plans_where_it_reads_the_rows_not_on_the_tick_thread(desk, caplog):
    """The open set's read (the bookkeeper's, ``fetch_open``) also builds the exit plans of
    the new active positions; the tick thread's apply only takes them in. A position whose
    plan cannot be built (a row without an entry time) is not watched and is said, as
    before."""
    first = desk.enter()
    engine = desk.engine
    engine.handle_reload(desk.wall)
    assert first in engine.watched
    second = desk.enter()
    broken = desk.enter()
    # A row that has lost its entry time (bad data): no plan can be built for it.
    PositionTracker.objects.filter(pk=broken).update(entry_at=None, opened_at=None)
    desk.advance(1.5)
    fetched = engine.fetch_open(desk.wall)
    assert set(fetched.loaded) == {second, broken}
    assert isinstance(fetched.plans[second], ExitPlan)
    assert fetched.plans[second].entry_price == entry_price(second)
    assert str(fetched.plans[broken]) == "no entry time"

    def not_here(*_: Any) -> Any:
        raise AssertionError("a plan built on the tick thread")

    engine.plan_of = not_here  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="workers"):
        assert engine.apply_reload(fetched)
    assert set(engine.watched) == {first, second}
    assert engine.watched[second].plan is fetched.plans[second]
    assert engine.last_error == f"plan #{broken}: no entry time"
    assert any(
        f"#{broken}" in r.getMessage() and "has no exit plan" in r.getMessage()
        for r in caplog.records
    )
    # The new position is judged on its plan: its stop on the tick that reaches it.
    stop = (entry_price(second) * Decimal("0.88")).quantize(Decimal("0.01"))
    assert desk.step(float(stop)) == 2  # both positions of the contract: same entry


def test_a_reload_of_the_changes_only_leaves_the_engine_as_the_whole_rebuild_does(desk):
    """Two engines on one book, one reloading the changes only, the other rebuilding
    everything each time (what a config change does), given the same random opens, exits,
    changed rows (more fills), claims and prices on three contracts: after every reload
    they hold the same watched set, groups, index groups, exposure and open PnL."""
    import random

    rng = random.Random(20261205)
    changes, rebuilds = desk.engine, desk.make_engine()
    engines = (changes, rebuilds)
    first = desk.enter()
    template = PositionTracker.objects.filter(pk=first).values()[0]
    contracts = {
        55796: PositionTracker.objects.get(pk=first).derivative,
        55797: make_derivative(55797),
        55798: make_derivative(55798),
    }
    made = [0]

    def open_one() -> None:
        made[0] += 1
        security = rng.choice(list(contracts))
        row = dict(template)
        row.update(
            id=None,
            derivative_id=contracts[security].pk,
            security_id=security,
            signal_id=make_signal(candle_start=T0 - timedelta(hours=made[0])).pk,
            entry_price=Decimal(rng.choice(["99.50", "100.00", "100.25"])),
            charges=Decimal(rng.choice(["20.00", "25.13"])),
        )
        PositionTracker.objects.create(**row)

    def state(engine: ExitEngine) -> tuple[Any, ...]:
        return (
            sorted(engine.watched),
            {k: sorted(w.position_id for w in g) for k, g in engine.on_key.items()},
            {k: sorted(w.position_id for w in g) for k, g in engine.on_index.items()},
            {k: sorted(v) for k, v in engine.by_key.items()},
            dict(engine._exposure),
            engine._open_pnl,
            sorted(engine._prices),
        )

    def reload() -> None:
        for engine in engines:
            fetched = engine.fetch_open(desk.wall)
            if engine is rebuilds and (
                fetched.loaded or set(engine.positions) - set(fetched.prints)
            ):
                engine._exits = None  # a reload with changes rebuilds everything
            engine.apply_reload(fetched)

    calls = [0]
    original = changes._apply_changes

    def counting(*args: Any) -> bool:
        calls[0] += 1
        return original(*args)

    changes._apply_changes = counting

    for _ in range(6):
        open_one()
    reload()
    priced = 0
    for step in range(40):
        for _ in range(rng.randint(1, 3)):
            action = rng.choice(["open", "exit", "change", "claim", "price"])
            active = PositionTracker.objects.filter(status="active")
            open_ids = list(active.values_list("pk", flat=True))
            if action == "open" or not open_ids:
                open_one()
            elif action == "exit":
                PositionTracker.objects.filter(pk=rng.choice(open_ids)).update(status="exited")
            elif action == "change":
                PositionTracker.objects.filter(pk=rng.choice(open_ids)).update(
                    quantity=130, entry_price=Decimal("100.10")
                )
            elif action == "claim":  # a decision: the watched position leaves the open PnL
                pid = rng.choice(open_ids)
                for engine in engines:
                    watched = engine.watched.get(pid)
                    if watched is not None and not watched.claimed:
                        watched.claimed = True
                        engine._unexpose(watched)
            else:  # inside every rule's reach: no decision, only prices and states
                key = f"NSE_FNO:{rng.choice(list(contracts))}"
                desk.tick(round(rng.uniform(99.0, 101.0), 1), key=key)
                for engine in engines:
                    records = engine.subscription.wait(0)
                    assert engine.handle_records(records, desk.wall) == 0
        desk.advance(1.5)
        reload()
        assert state(changes) == state(rebuilds), f"step {step}"
        priced += bool(changes._prices) and changes._open_pnl != 0
    assert calls[0] >= 30  # the changes-only path did the reloads
    assert priced >= 10  # and the open PnL was compared with prices in it


def test_the_clock_ends_the_band_the_time_exit_fires_on_the_first_tick_after_it(desk):
    pid = desk.enter()  # at 100.10
    desk.step(101.0, 100.5)  # never below the entry: no premium stall; the time exit ends it
    (watched,) = desk.engine.watched.values()
    band = desk.engine._bands[watched.key]
    assert band is not None and band.until == watched.plan.time_exit_at
    desk.market.now = band.until.timestamp() - 2  # 15:14:58
    quiet = desk.engine.counters["quiet"]
    assert desk.step(100.5, 100.5, seconds=0.5) == 0  # quiet up to 15:14:59
    assert desk.engine.counters["quiet"] == quiet + 2
    assert desk.step(100.5, seconds=1.0) == 1  # 15:15:00: the same price, the clock's tick
    position = PositionTracker.objects.get(pk=pid)
    assert position.exit_type == "TIME_EXIT"
    assert position.exit_tick_at == band.until


def test_a_loss_booked_elsewhere_exits_a_quiet_position_by_the_daily_loss_limit(desk):
    pid, other = desk.enter(), desk.enter()
    closed = PositionTracker.objects.filter(pk=other)
    closed.update(status="exited", exited_at=datetime.fromtimestamp(desk.market.now, IST))
    desk.step(102.0, 100.5, 101.0)
    assert desk.engine.counters["quiet"] >= 1
    assert desk.sweep() == 0
    quiet = desk.engine.counters["quiet"]
    assert desk.sweep() == 0 and desk.engine.counters["quiet"] == quiet + 1  # quiet there too
    # The day's books now hold a loss past the limit (Rs 10,000): the open set is the same,
    # the band is not (it leaves the account's switches to the engine).
    closed.update(realized_pnl=Decimal("-12000"))
    assert desk.sweep() == 1
    position = PositionTracker.objects.get(pk=pid)
    assert position.exit_type == "DAILY_LOSS_LIMIT"


def test_an_authentication_failure_on_the_router_thread_stops_the_engine_loudly(desk):
    import threading

    from tests.support.waiting import wait_until
    from trading.dhan.errors import AuthFailure
    from workers.broker_auth import BrokerAuthFailed, auth_failures

    pid = desk.enter()
    engine = desk.make_engine()
    engine.subscription.close()

    def refused(*args, **kwargs):
        raise AuthFailure("token expired", code="DH-901")

    engine.router.exit_position = refused
    stop = threading.Event()
    raised: list[BaseException] = []

    def run() -> None:
        try:
            engine.run(stop)
        except BaseException as exc:  # the thread's end, kept for the test
            raised.append(exc)

    runner = threading.Thread(target=run)
    runner.start()
    try:
        wait_until(lambda: engine.watched, "the engine to watch the position")
        desk.advance(1)
        desk.tick(80.0)  # through the initial stop: a decision the router cannot send
        runner.join(10)
    finally:
        stop.set()
        runner.join(10)
    assert not runner.is_alive()
    assert raised and isinstance(raised[0], BrokerAuthFailed)
    assert auth_failures(desk.realtime.kv)["exit_engine"]["state"] == "failed"  # /ready says so
    assert status(pid) == "active"  # nothing was claimed


def test_the_route_processs_answers_count_as_the_router_threads_do(desk):
    """With ``route_process`` the routes' outcomes come back from workers/exit_routes.py (its
    own test runs the process): counted and timed as the threads' are, and an authentication
    failure there stops the engine on its next pass as it does here."""
    from trading.dhan.errors import AuthFailure
    from workers.exit_routes import RoutesDied

    pid = desk.enter()
    engine = desk.make_engine()
    engine.handle_reload(desk.wall)
    (watched,) = engine.watched.values()
    assert watched.position_id == pid
    decision = SimpleNamespace(exit_type="STOP_LOSS", reason="ltp under the stop")
    engine._routed = [0]
    engine._remote_pending = {7: (watched, decision, 100.0, 100.004)}
    engine._remote_done(7, "exit", "exit orders: sent", 100.009)
    assert engine.counters["exits"] == 1 and engine._routed == [1]
    assert engine.tick_to_send[-1] == pytest.approx(0.009)
    assert engine.tick_to_act[-1] == pytest.approx(0.004)
    engine._remote_done(8, "refused", "position #1 is exiting, not active", 100.02)
    assert engine._routed == [2]  # an answer without its decision here is still counted
    engine._remote_done(9, "auth", "DH-901: token expired", 100.03)
    with pytest.raises(AuthFailure, match="token expired"):
        engine.run_once()
    engine._route_failure = None
    engine._helper_died(RoutesDied("the exit engine's route process died (exit code 1)"))
    with pytest.raises(RoutesDied, match="exit code 1"):
        engine.run_once()


def test_the_kill_switch_exits_a_burst_on_the_router_threads_each_position_once(desk):

    from tests.support.waiting import wait_until

    positions = [desk.enter() for _ in range(6)]
    engine = desk.make_engine()
    with desk.running(engine) as runner:
        set_kill_switch(True, "operator: flatten")
        desk.advance(1.5)  # the next sweep
        wait_until(lambda: engine.counters["exits"] == 6, "six exits routed")
    assert not runner.is_alive()
    rows = PositionTracker.objects.filter(pk__in=positions)
    assert {(row.status, row.exit_type) for row in rows} == {("exiting", "KILL_SWITCH")}
    for pid in positions:  # one exit order set each, sent
        (order,) = Order.objects.filter(position_id=pid, leg="exit")
        assert order.status == "TRANSIT"
    assert engine.counters["refused"] == 0 and engine.errors == 0


def test_the_engine_hands_the_router_the_facts_it_judged(desk):
    """What the router builds the exit orders from before the claim (the claim checks them,
    trading/orders/router.py): the watched position's units, contract, lot and tick, as the
    reload read them, never a database read on the tick thread."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from trading.orders.journal_sql import ClaimedExit

    pid = desk.enter()
    engine = desk.make_engine()
    engine.handle_reload(desk.wall)
    (watched,) = engine.watched.values()
    row = PositionTracker.objects.select_related("derivative").get(pk=pid)
    with CaptureQueriesContext(connection) as queries:
        facts = engine._expect(watched)
    assert not queries.captured_queries
    assert facts == ClaimedExit(
        quantity=65,
        underlying="NIFTY",
        mode="paper",
        exchange_segment="NSE_FNO",
        security_id=55796,
        lot_size=row.derivative.lot_size,
        tick_size=row.derivative.tick_size,
        entry_working=False,
    )
    engine.positions[pid] = PositionTracker.objects.get(pk=pid)  # read without its contract
    with CaptureQueriesContext(connection) as queries:
        assert engine._expect(watched) is None
    assert not queries.captured_queries


def test_while_the_engine_runs_its_config_is_re_read_by_the_bookkeeper_never_the_tick_thread(
    desk,
):
    """A re-read of the config (file + overrides) is milliseconds of interpreter and a round
    trip: while the engine runs, its bookkeeper does it; the tick thread reads what is held."""
    from tests.support.waiting import wait_until
    from workers.orders import ReloadingConfig

    config = ReloadingConfig(interval=0.05)
    readers: list[str] = []
    read = config._read

    def reading() -> Any:
        readers.append(threading.current_thread().name)
        return read()

    config._read = reading  # type: ignore[method-assign]
    engine = ExitEngine(
        desk.realtime,
        desk.make_router(),
        config_source=config,
        clock=desk.market.clock,
        wall=lambda: desk.wall,
    )
    engine.sweep_interval = 0.05
    engine.subscription = desk.realtime.ticks.subscribe()
    with desk.running(engine):
        for _ in range(5):
            desk.tick(101.0)  # batches on the tick thread, each asking for the config
            time.sleep(0.06)
        wait_until(lambda: len(readers) >= 3, "a few re-reads")
        assert config._elsewhere
    assert set(readers) == {"exit-engine-books"}, readers
    assert not config._elsewhere  # stopped: a caller re-reads again
