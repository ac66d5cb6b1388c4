"""The live gateway against the simulator over real HTTP (no fakes): placement once per journal
row, unknown outcomes resolved by correlation id, rejections with Dhan's code, a 429 burst,
modify/cancel/lookup, positions, the settings gate, and one entry from the router to a TRADED
journal row through the order-update stream.

The simulator runs at a crawl (``speed`` 0.001: one market second lasts over 16 real minutes),
so its book does not move during a test: what a limit crosses, and how much of the shown depth
our own fills used, is known from the quote read before the order. Waits poll a condition
with a generous deadline; nothing asserts on elapsed time.
"""

from __future__ import annotations

import itertools
import logging
import queue
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from instruments.models import Derivative
from tests.support.reconnect import FAST_RECONNECT
from tests.support.rows import make_derivative, make_signal
from tests.support.waiting import wait_until
from trading.config.store import load_algo_config
from trading.dhan.errors import DhanError, Rejected
from trading.dhan.order_updates import OrderUpdateClient
from trading.dhan.ratelimit import InProcessRateLimiter, load_limits
from trading.dhan.rest import DhanRestClient
from trading.dhan.rest_types import OrderByCorrelationIdRequest, OrderByIdRequest
from trading.dhan.sim.server import SimConfig, Simulator, _dh_error
from trading.models import Fill, LedgerEntry, Order, PositionTracker
from trading.orders.events import event_from_update
from trading.orders.gateway import BrokerOrder, OrderEnded
from trading.orders.intent import REJECTED, ROUTED, EntryIntent
from trading.orders.journal import apply_event, journal_entry
from trading.orders.live import (
    SYSTEM_TAG,
    BrokerPosition,
    LiveGateway,
    is_system_order,
    live_gateway_from_settings,
)
from trading.orders.router import OrderRouter
from trading.orders.states import JournalStatus
from trading.rules.market import IST

from .conftest import make_intent, real_charges

pytestmark = pytest.mark.django_db

S = JournalStatus


# -- the simulator, its catalog, a client ----------------------------------------------------


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """A frozen-book simulator with funds for any depth this file takes."""
    simulator = Simulator(
        SimConfig(
            seed=3,
            speed=0.001,
            strikes_each_side=4,
            weeklies=1,
            monthlies=1,
            funds=Decimal("100000000"),
        )
    )
    simulator.start()
    try:
        yield simulator
    finally:
        simulator.stop()


def rest_client(sim: Simulator, **overrides: Any) -> DhanRestClient:
    """A client on the simulator with the repository's rate limits and short waits."""
    kwargs: dict[str, Any] = {
        "base_url": sim.base_url,
        "client_id": sim.client_id,
        "token_provider": lambda: sim.token,
        "limiter": InProcessRateLimiter(load_limits()),
        "backoff_base": 0.01,
        "backoff_cap": 0.05,
        "lookup_delays": (0.05, 0.1),
        **overrides,
    }
    return DhanRestClient(**kwargs)


@pytest.fixture
def gateway(sim: Simulator) -> Iterator[LiveGateway]:
    live = LiveGateway(rest_client(sim), sim.client_id)
    yield live
    live.close()


def make_router(gateway: LiveGateway, sim: Simulator) -> OrderRouter:
    return OrderRouter(
        gateway,
        config_source=load_algo_config,
        clock=lambda: sim.now().timestamp(),
        quote=lambda key: None,  # these tests price their orders themselves
        freeze_quantity=lambda position: 1800,
    )


@pytest.fixture
def contract(sim: Simulator, db: Any) -> Derivative:
    """The simulator's NIFTY call nearest the money, imported into the catalog from the
    simulator's own scrip master."""
    call_command("import_instruments", url=sim.scrip_master_url, verbosity=0)
    spot = Decimal(str(sim.market.index_level("NIFTY", sim.now())))
    calls = Derivative.objects.filter(
        underlying__security_id=13, option_type="CE", exchange_segment="NSE_FNO"
    )
    nearest = calls.order_by("expiry_date").first()
    assert nearest is not None, "the simulator's catalog has no NIFTY call"
    chain = calls.filter(expiry_date=nearest.expiry_date)
    return min(chain, key=lambda row: abs(row.strike - spot))


class Book:
    """The contract's five ask levels now (the book is frozen, see the module docstring)."""

    def __init__(self, sim: Simulator, contract: Derivative) -> None:
        quote = sim.market.quote(contract.exchange_segment, contract.security_id, sim.now())
        self.asks = [(Decimal(str(d.ask_price)), d.ask_qty) for d in quote.depth if d.ask_qty]
        self.bid = Decimal(str(quote.best_bid))
        self.tick = contract.tick_size
        assert len(self.asks) == 5 and self.bid > 0, "the simulator shows five levels"

    @property
    def ask(self) -> Decimal:
        return self.asks[0][0]

    def resting(self) -> Decimal:
        """A buy limit far below the bid, on the tick: it rests, never fills."""
        return max(self.tick, (self.bid / 2 / self.tick).to_integral_value() * self.tick)

    def deep(self) -> Decimal:
        """A buy limit at the fifth ask: crosses every level shown."""
        return self.asks[-1][0]


_candles = itertools.count()


def entry(
    contract: Derivative,
    limit: Decimal,
    *,
    sim: Simulator,
    quantity: int | None = None,
    orders: tuple[int, ...] | None = None,
) -> EntryIntent:
    """An entry intent for ``contract`` at ``limit`` (one order of one lot unless told), on a
    signal row of its own."""
    orders = orders or (quantity or contract.lot_size,)
    candle = datetime(2026, 1, 5, 9, 15, tzinfo=IST) + timedelta(minutes=5 * next(_candles))
    return make_intent(
        make_signal(candle_start=candle).pk,
        orders=orders,
        exchange_segment=contract.exchange_segment,
        security_id=contract.security_id,
        symbol=contract.trading_symbol,
        expiry=contract.expiry_date,
        strike=contract.strike,
        option_type=contract.option_type,
        lot_size=contract.lot_size,
        tick_size=contract.tick_size,
        lots=sum(orders) // contract.lot_size,
        quantity=sum(orders),
        reference_price=limit,
        limit_price=limit,
        decided_at=sim.now(),
    )


def place(router: OrderRouter, intent: EntryIntent) -> Order:
    result = router.place_entry(intent)
    assert result.status in (ROUTED, REJECTED), result
    (order,) = Order.objects.filter(position__signal_id=intent.signal_id)
    return order


def at_broker(gateway: LiveGateway, correlation_id: str) -> list[Any]:
    """Dhan's order book rows carrying ``correlation_id``."""
    return [o for o in gateway.rest.order_book() if o.correlationId == correlation_id]


# -- placement ---------------------------------------------------------------------------------


def test_place_answers_transit_with_an_order_id_and_dhan_has_it_under_the_correlation_id(
    sim, gateway, contract
):
    book = Book(sim, contract)
    order = place(make_router(gateway, sim), entry(contract, book.resting(), sim=sim))
    assert order.status == S.TRANSIT and order.broker_order_id
    assert order.correlation_id.startswith(SYSTEM_TAG) and is_system_order(order.correlation_id)
    found = gateway.rest.order_by_correlation_id(
        OrderByCorrelationIdRequest(order.correlation_id)
    ).order
    assert found is not None and found.orderId == order.broker_order_id
    assert (found.orderType, found.validity, found.productType) == ("LIMIT", "DAY", "INTRADAY")
    assert (found.transactionType, found.securityId) == ("BUY", str(contract.security_id))
    assert (found.quantity, found.price) == (contract.lot_size, book.resting())
    assert sim.stats["place_order_calls"] == 1


def test_orders_placed_by_hand_are_not_the_systems():
    assert not is_system_order("NA") and not is_system_order(None)
    assert not is_system_order("my-manual-order") and is_system_order("AS-EN-12-0-0")


def test_a_row_without_the_system_tag_is_never_sent(sim, gateway, contract):
    router = make_router(gateway, sim)
    intent = entry(contract, Book(sim, contract).resting(), sim=sim)
    position = journal_entry(intent, mode="live", derivative_id=contract.pk)
    Order.objects.filter(position=position).update(correlation_id="MANUAL-1")
    (order,) = position.orders.all()
    assert router.send(order).startswith("rejected: ")
    order.refresh_from_db()
    assert order.status == S.REJECTED and SYSTEM_TAG in order.rejection_reason
    assert sim.stats["place_order_calls"] == 0


def test_the_router_sends_each_journal_row_once_over_http(sim, gateway, contract):
    """Dhan (and the simulator) would take a second POST with the same correlation id as a
    second order; what prevents it is the journal's claimed send."""
    router = make_router(gateway, sim)
    book = Book(sim, contract)
    intent = entry(contract, book.resting(), orders=(contract.lot_size, contract.lot_size), sim=sim)
    router.place_entry(intent)
    router.place_entry(intent)  # the same intent handed again (a restart, a second engine)
    orders = list(Order.objects.filter(position__signal_id=intent.signal_id))
    assert len(orders) == 2
    for order in orders:
        assert router.send(order) == "already sent"  # a blind retry
        assert len(at_broker(gateway, order.correlation_id)) == 1
    assert sim.stats["place_order_calls"] == 2


def test_a_placement_answered_after_the_read_timeout_is_found_by_correlation_id(sim, contract):
    gateway = LiveGateway(rest_client(sim, order_read_timeout=0.2), sim.client_id)
    try:
        sim.faults.place_order_delay = 1.0  # the order is taken at once, the answer is late
        order = place(
            make_router(gateway, sim), entry(contract, Book(sim, contract).resting(), sim=sim)
        )
        sim.faults.place_order_delay = 0.0
        assert order.status == S.PENDING and order.broker_order_id  # as the lookup found it
        assert sim.stats["place_order_calls"] == 1
        (found,) = at_broker(gateway, order.correlation_id)
        assert found.orderId == order.broker_order_id
    finally:
        gateway.close()


def test_a_late_answer_for_an_order_dhan_rejected_leaves_the_rejection_to_its_event(sim, contract):
    """The REST client resolves a lost answer by correlation id and may find the order ended
    already; the acknowledgement still says TRANSIT, and the rejection (with its reason, and
    the position it ends) comes as the event it is."""
    gateway = LiveGateway(rest_client(sim, order_read_timeout=0.2), sim.client_id)
    try:
        book = Book(sim, contract)
        too_many = contract.lot_size * (
            int(Decimal("1e8") / book.resting() / contract.lot_size) + 1
        )
        sim.faults.place_order_delay = 1.0
        order = place(
            make_router(gateway, sim), entry(contract, book.resting(), quantity=too_many, sim=sim)
        )
        sim.faults.place_order_delay = 0.0
        assert order.status == S.TRANSIT and order.broker_order_id
        view = gateway.lookup(order)
        assert view is not None and view.status == S.REJECTED
        assert "Insufficient funds" in view.reason
        apply_event(view.as_event(order.correlation_id, sim.now()), real_charges, paper=False)
        order.refresh_from_db()
        assert order.status == S.REJECTED and "Insufficient funds" in order.rejection_reason
        assert order.position.status == "cancelled"
    finally:
        gateway.close()


def test_a_placement_whose_answer_and_lookups_are_lost_stays_unknown_until_found(sim, contract):
    gateway = LiveGateway(
        rest_client(sim, order_read_timeout=0.2, read_timeout=0.2, lookup_delays=(0.0, 0.0)),
        sim.client_id,
    )
    try:
        # Every call waits longer than the client does: the placement's answer and both
        # look-ups by correlation id time out, though the simulator takes the order.
        sim.faults.latency, sim.faults.place_order_delay = 0.5, 0.5
        router = make_router(gateway, sim)
        intent = entry(contract, Book(sim, contract).resting(), sim=sim)
        result = router.place_entry(intent)
        assert result.status == ROUTED and "without an answer" in result.detail
        (order,) = Order.objects.filter(position__signal_id=intent.signal_id)
        assert order.status == S.UNKNOWN and order.sent_at is not None
        assert not order.broker_order_id
        sim.faults.latency = sim.faults.place_order_delay = 0.0

        wait_until(lambda: at_broker(gateway, order.correlation_id), "the late order at Dhan")
        assert router.send(order) == "already sent"  # nothing re-sends it blindly
        view = gateway.lookup(order)  # what the order manager does with an UNKNOWN row
        assert view is not None and view.status == S.PENDING
        apply_event(view.as_event(order.correlation_id, sim.now()), real_charges, paper=False)
        order.refresh_from_db()
        assert (order.status, order.broker_order_id) == (S.PENDING, view.broker_order_id)
        assert sim.stats["place_order_calls"] == 1
        assert len(at_broker(gateway, order.correlation_id)) == 1
    finally:
        gateway.close()


def test_a_dh905_rejection_is_recorded_with_its_code(sim, gateway, contract):
    book = Book(sim, contract)
    off_tick = book.resting() + book.tick / 5  # e.g. 41.01 on a 0.05 tick
    order = place(make_router(gateway, sim), entry(contract, off_tick, sim=sim))
    assert order.status == S.REJECTED
    assert order.rejection_reason.startswith("DH-905: price")
    assert order.position.status == "cancelled"
    assert sim.stats["place_order_calls"] == 1 and not at_broker(gateway, order.correlation_id)


def test_an_unknown_security_is_rejected_with_dhans_code(sim, gateway, contract):
    stranger = make_derivative(99_999_999)  # in our catalog, not at the broker
    intent = make_intent(make_signal().pk, security_id=stranger.security_id, decided_at=sim.now())
    router = make_router(gateway, sim)
    result = router.place_entry(intent)
    assert result.status == REJECTED and "DH-905" in result.detail
    (order,) = Order.objects.filter(position__signal_id=intent.signal_id)
    assert order.status == S.REJECTED and "securityId" in order.rejection_reason


def test_a_429_burst_sends_nothing_and_doubles_nothing(sim, gateway, contract):
    router = make_router(gateway, sim)
    book = Book(sim, contract)
    sim.faults.rest_error, sim.faults.rest_error_share = "429", 1.0
    throttled = place(router, entry(contract, book.resting(), sim=sim))
    sim.faults.rest_error_share = 0.0
    # Refused at the door every time: the router recorded "not sent", the row stays UNKNOWN
    # with its send claimed, and nothing may send it again (the order manager resolves it by
    # correlation id: Dhan never saw it).
    assert throttled.status == S.UNKNOWN and throttled.sent_at is not None
    assert sim.stats["place_order_calls"] == 0 and sim.stats["rest_faults"] >= 4
    assert router.send(throttled) == "already sent"
    assert gateway.lookup(throttled) is None
    later = place(router, entry(contract, book.resting(), sim=sim))
    assert later.status == S.TRANSIT
    assert sim.stats["place_order_calls"] == 1
    assert [o.orderId for o in gateway.rest.order_book()] == [later.broker_order_id]


# -- modify, cancel, lookup --------------------------------------------------------------------


def test_modify_moves_the_limit_and_keeps_the_order_id_and_its_fills(sim, gateway, contract):
    book = Book(sim, contract)
    (first_price, first_shown), (second_price, _) = book.asks[0], book.asks[1]
    # One lot more than the first level shows, at its price: that level fills, a lot rests.
    units = first_shown + contract.lot_size
    order = place(make_router(gateway, sim), entry(contract, first_price, quantity=units, sim=sim))
    view = gateway.lookup(order)
    assert view == BrokerOrder(order.broker_order_id, S.PART_TRADED, first_shown, first_price)

    lower = book.resting()
    assert gateway.modify(order, lower, sim.now()) is True  # the router records it then
    at_dhan = gateway.rest.order_by_id(OrderByIdRequest(order.broker_order_id)).order
    assert (at_dhan.orderId, at_dhan.price, at_dhan.filledQty) == (
        order.broker_order_id,
        lower,
        first_shown,
    )
    assert at_dhan.orderStatus == "PART_TRADED" and at_dhan.quantity == units

    assert gateway.modify(order, book.deep(), sim.now()) is True  # crosses the second level
    view = gateway.lookup(order)
    average = (first_price * first_shown + second_price * contract.lot_size) / units
    assert (view.broker_order_id, view.status, view.filled_quantity) == (
        order.broker_order_id,
        S.TRADED,
        units,
    )
    assert abs(view.average_price - average) < Decimal("0.01")  # Dhan rounds to the paisa
    assert len(at_broker(gateway, order.correlation_id)) == 1


def test_a_modify_refused_for_another_reason_is_raised(sim, gateway, contract):
    book = Book(sim, contract)
    order = place(make_router(gateway, sim), entry(contract, book.resting(), sim=sim))
    with pytest.raises(Rejected) as refused:
        gateway.modify(order, book.resting() + book.tick / 5, sim.now())  # off the tick
    assert refused.value.code == "DH-905"
    order.refresh_from_db()
    assert (order.limit_price, order.attempt) == (book.resting(), 0)


def test_cancel_cancels_at_dhan(sim, gateway, contract):
    order = place(
        make_router(gateway, sim), entry(contract, Book(sim, contract).resting(), sim=sim)
    )
    gateway.cancel(order, sim.now())
    view = gateway.lookup(order)
    assert (view.status, view.filled_quantity, view.average_price) == (S.CANCELLED, 0, None)


def test_lookup_of_a_correlation_id_dhan_never_saw_is_none(sim, gateway, contract):
    intent = entry(contract, Book(sim, contract).resting(), sim=sim)
    position = journal_entry(intent, mode="live", derivative_id=contract.pk)  # never sent
    (order,) = position.orders.all()
    assert gateway.lookup(order) is None


def test_lookup_of_a_filled_order_gives_traded_the_quantity_and_the_average(sim, gateway, contract):
    book = Book(sim, contract)
    order = place(make_router(gateway, sim), entry(contract, book.deep(), sim=sim))
    view = gateway.lookup(order)
    assert view is not None
    assert (view.broker_order_id, view.status) == (order.broker_order_id, S.TRADED)
    assert (view.filled_quantity, view.average_price, view.reason) == (
        contract.lot_size,
        book.ask,  # one lot takes the first level, at its price
        "",
    )
    event = view.as_event(order.correlation_id, sim.now())
    assert (event.filled, event.average, event.status) == (contract.lot_size, book.ask, S.TRADED)


def test_modify_and_cancel_of_a_traded_order_are_quiet(sim, gateway, contract, caplog):
    caplog.set_level(logging.INFO, logger="trading.orders.live")
    book = Book(sim, contract)
    order = place(make_router(gateway, sim), entry(contract, book.deep(), sim=sim))
    with pytest.raises(OrderEnded) as ended:  # final at Dhan: what Dhan says comes with it
        gateway.modify(order, book.resting(), sim.now())
    view = ended.value.view
    assert (view.status, view.broker_order_id) == (S.TRADED, order.broker_order_id)
    assert view.filled_quantity == order.quantity and view.average_price is not None
    gateway.cancel(order, sim.now())
    order.refresh_from_db()
    assert (order.limit_price, order.attempt) == (book.deep(), 0)  # the journal kept its price
    mine = [r for r in caplog.records if r.name == "trading.orders.live"]
    assert [r.levelno for r in mine] == [logging.INFO, logging.INFO]
    assert all("not needed, the order is TRADED" in r.getMessage() for r in mine)


def test_lookup_falls_back_to_the_order_id_when_the_correlation_lookup_fails(
    sim, gateway, contract, monkeypatch
):
    order = place(
        make_router(gateway, sim), entry(contract, Book(sim, contract).resting(), sim=sim)
    )

    def broken(*args: Any) -> Any:
        raise _dh_error("DH-908")  # Dhan's internal error, on this endpoint only

    routes = [
        (method, pattern, broken if fn.__name__ == "_order_by_correlation" else fn)
        for method, pattern, fn in sim._routes
    ]
    monkeypatch.setattr(sim, "_routes", routes)
    view = gateway.lookup(order)
    assert view is not None and (view.broker_order_id, view.status) == (
        order.broker_order_id,
        S.PENDING,
    )
    assert sim.rest_calls["GET order_by_id"] == 1


def test_lookup_never_adopts_another_order_under_the_same_correlation_id(sim, gateway, contract):
    """The journal's correlation id naming a different order at Dhan (a database reset within
    the day starts the signal ids again): a failure, never that order's state or fills."""
    book = Book(sim, contract)
    sent = place(make_router(gateway, sim), entry(contract, book.resting(), sim=sim))
    intent = entry(contract, book.resting(), quantity=2 * contract.lot_size, sim=sim)
    (journaled,) = journal_entry(intent, mode="live", derivative_id=contract.pk).orders.all()
    reused = sent.correlation_id
    Order.objects.filter(pk=sent.pk).update(correlation_id="AS-EN-moved")
    Order.objects.filter(pk=journaled.pk).update(correlation_id=reused)
    journaled.refresh_from_db()
    with pytest.raises(
        DhanError, match=f"quantity {contract.lot_size}, not {2 * contract.lot_size}"
    ):
        gateway.lookup(journaled)


# -- positions, settings ---------------------------------------------------------------------


def test_positions_lists_the_open_positions_at_dhan(sim, gateway, contract):
    assert gateway.positions() == []
    place(make_router(gateway, sim), entry(contract, Book(sim, contract).deep(), sim=sim))
    assert gateway.positions() == [
        BrokerPosition(
            exchange_segment="NSE_FNO",
            security_id=contract.security_id,
            net_quantity=contract.lot_size,
            product_type="INTRADAY",
            trading_symbol=contract.trading_symbol,
        )
    ]


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({}, "PAPER_MODE is true"),
        ({"PAPER_MODE": False}, "ENABLE_ORDER is not true"),
        ({"PAPER_MODE": False, "ENABLE_ORDER": True, "DHANHQ_ACCESS_TOKEN": ""}, "ACCESS_TOKEN"),
    ],
)
def test_a_paper_system_never_builds_a_live_gateway(settings, overrides, why):
    settings.PAPER_MODE, settings.ENABLE_ORDER = True, False
    settings.DHANHQ_CLIENT_ID, settings.DHANHQ_ACCESS_TOKEN = "1000000001", "token"
    for name, value in overrides.items():
        setattr(settings, name, value)
    with pytest.raises(ImproperlyConfigured, match=why):
        live_gateway_from_settings()


def test_live_mode_builds_the_gateway_from_the_simulators_settings(sim, settings):
    for line in sim.settings_lines():
        name, value = line.split("=", 1)
        setattr(settings, name, value)
    settings.PAPER_MODE, settings.ENABLE_ORDER = False, True
    live = live_gateway_from_settings()
    try:
        assert live.mode == "live" and live.rest.base_url == sim.base_url
        assert live.positions() == []
        assert sim.client_id not in repr(live)
    finally:
        live.close()


# -- the journal, end to end ------------------------------------------------------------------


def test_an_entry_ends_traded_in_the_journal_from_the_order_update_stream(sim, gateway, contract):
    updates: queue.SimpleQueue[Any] = queue.SimpleQueue()
    stream = OrderUpdateClient(
        sim.order_ws_url,
        sim.client_id,
        lambda: sim.token,
        updates.put,
        policy=FAST_RECONNECT,
        poll_interval=0.1,
        close_timeout=1.0,
    )
    stream.start()
    try:
        wait_until(lambda: sim.order_connections() >= 1, "the order-update login")
        book = Book(sim, contract)
        units = 2 * contract.lot_size
        order = place(
            make_router(gateway, sim), entry(contract, book.deep(), quantity=units, sim=sim)
        )
        assert order.status == S.TRANSIT

        def traded() -> bool:
            # The test thread applies what the stream delivered, as the order manager does.
            while True:
                try:
                    update = updates.get_nowait()
                except queue.Empty:
                    break
                event = event_from_update(update, sim.now())
                if event is not None:
                    apply_event(event, real_charges, paper=False)
            order.refresh_from_db()
            return order.status == S.TRADED

        wait_until(traded, "the TRADED update")
    finally:
        stream.stop(timeout=5)
    at_dhan = gateway.rest.order_by_id(OrderByIdRequest(order.broker_order_id)).order
    assert order.filled_quantity == at_dhan.filledQty == units
    assert abs(order.average_price - at_dhan.averageTradedPrice) < Decimal("0.01")
    fills = list(Fill.objects.filter(order=order))
    assert sum(f.quantity for f in fills) == units
    turnover = sum(f.price * f.quantity for f in fills)
    expected = real_charges(contract.exchange_segment, "BUY", units, turnover, sim.now().date())
    assert order.charges == expected == sum(f.charges for f in fills) and expected > 0
    position = PositionTracker.objects.get(pk=order.position_id)
    assert (position.status, position.quantity, position.mode) == ("active", units, "live")
    assert position.entry_price == order.average_price
    assert not LedgerEntry.objects.filter(position_id=position.pk).exists()  # paper only
