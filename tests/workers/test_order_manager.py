"""The order manager on paper: the paper broker fills as DOMAIN's paper-fill rules say (ask,
depth walk, consumption, latency, no fill on a stale tick, partial fills, a limit that rests
until crossed), chases re-price and give up, unknown sends are resolved, claimed exits are
sent and booked. One pass at a time (``run_once``), market time and ticks in the test's hands.
"""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import pytest

from tests.support.rows import make_derivative, make_signal
from tests.trading.orders.conftest import T0, Market, make_intent, real_charges
from trading.config.store import load_algo_config
from trading.models import Fill, Order, PositionTracker
from trading.orders.gateway import PaperGateway
from trading.orders.ledger import check_ledger
from trading.orders.paper import PaperBroker
from trading.orders.router import OrderRouter
from workers.order_manager import OrderManager
from workers.realtime.event_bus import MemoryEventBus
from workers.realtime.kv_store import MemoryKeyValueStore
from workers.realtime.record import TickRecord, encode_depth
from workers.realtime.services import Realtime
from workers.realtime.tick_store import MemoryTickStore

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "NSE_FNO:55796"


class Desk:
    """A router and an order manager on the paper broker, over an in-memory tick store."""

    def __init__(self) -> None:
        self.market = Market()
        self.wall = time.time()
        self.realtime = Realtime(
            ticks=MemoryTickStore(), events=MemoryEventBus(), kv=MemoryKeyValueStore()
        )
        self.seq = 0
        self.entries = 0
        self.router = OrderRouter(
            PaperGateway(),
            config_source=load_algo_config,
            clock=self.market.clock,
            quote=self.quote,
            freeze_quantity=lambda position: 1800,
        )
        self.manager = OrderManager(
            self.realtime,
            self.router,
            config_source=load_algo_config,
            charges=real_charges,
            paper_broker=PaperBroker(self.realtime.ticks.get, load_algo_config, lambda: self.wall),
            clock=self.market.clock,
            wall=lambda: self.wall,
            unknown_grace=15.0,
        )
        make_derivative(55796)

    def quote(self, key: str):
        record = self.realtime.ticks.get(key)
        if record is None:
            return None
        money = [None if not v else Decimal(f"{v:.2f}") for v in (record.bid, record.ask)]
        return (money[0], money[1], Decimal(f"{record.ltp:.2f}"))

    def tick(self, asks=(), bids=(), ltp: float = 100.0, age: float = 0.0) -> None:
        """A full tick: up to five (price, quantity) levels each side, best first."""
        self.seq += 1
        asks, bids = list(asks) + [(0.0, 0)] * 5, list(bids) + [(0.0, 0)] * 5
        levels = [
            (bid_qty, ask_qty, int(bid_qty > 0), int(ask_qty > 0), bid, ask)
            for (bid, bid_qty), (ask, ask_qty) in zip(bids[:5], asks[:5], strict=True)
        ]
        self.realtime.ticks.publish(
            [
                TickRecord(
                    key=KEY,
                    seq=self.seq,
                    ltp=ltp,
                    exchange_time=self.market.now,
                    receive_time=self.wall - age,
                    bid=bids[0][0] or None,
                    bid_qty=bids[0][1] or None,
                    ask=asks[0][0] or None,
                    ask_qty=asks[0][1] or None,
                    depth_raw=encode_depth(levels),
                )
            ]
        )

    def advance(self, seconds: float) -> None:
        self.market.now += seconds
        self.wall += seconds

    def enter(self, orders=(195,), limit: str = "102.00"):
        self.entries += 1  # one signal per candle: each entry its own candle
        signal = make_signal(candle_start=T0 - timedelta(minutes=5 * self.entries))
        intent = make_intent(signal.pk, orders=orders, limit_price=Decimal(limit))
        self.router.place_entry(intent)
        return PositionTracker.objects.get(signal_id=intent.signal_id)

    def fills(self) -> list[tuple[int, Decimal]]:
        return list(Fill.objects.order_by("pk").values_list("quantity", "price"))


@pytest.fixture
def desk() -> Desk:
    return Desk()


def test_a_buy_walks_the_ask_levels_after_the_latency(desk):
    position = desk.enter()
    desk.tick(asks=[(100.00, 65), (100.50, 65), (101.00, 650)], bids=[(99.50, 65)])
    desk.manager.run_once()  # confirmed; the 150 ms paper latency has not passed
    assert Order.objects.get().status == "PENDING" and desk.fills() == []
    desk.advance(0.2)
    desk.tick(asks=[(100.00, 65), (100.50, 65), (101.00, 650)], bids=[(99.50, 65)])
    desk.manager.run_once()
    assert desk.fills() == [
        (65, Decimal("100.0000")),
        (65, Decimal("100.5000")),
        (65, Decimal("101.0000")),
    ]
    position.refresh_from_db()
    assert (position.status, position.quantity, position.entry_price) == (
        "active",
        195,
        Decimal("100.5000"),
    )
    assert check_ledger() == []


def test_no_fill_ever_comes_from_a_stale_tick(desk):
    desk.enter()
    desk.advance(0.5)  # past the paper latency, before the first chase
    desk.tick(asks=[(100.00, 650)], age=5.0)  # older than feed.option_stale_seconds (2)
    desk.manager.run_once()
    assert desk.fills() == [] and Order.objects.get().status == "PENDING"
    desk.tick(asks=[(100.00, 650)])
    desk.manager.run_once()
    assert desk.fills() == [(195, Decimal("100.0000"))]


def test_a_limit_the_book_does_not_cross_rests_and_fills_at_its_limit_later(desk):
    desk.enter(orders=(65,), limit="99.00")
    desk.advance(0.5)  # past the paper latency, before the first chase
    desk.tick(asks=[(100.00, 650)])
    desk.manager.run_once()
    assert desk.fills() == []
    desk.tick(asks=[(98.50, 650)])  # the ask comes down through the resting limit
    desk.manager.run_once()
    assert desk.fills() == [(65, Decimal("99.0000"))]


def test_short_depth_fills_partly_and_the_rest_fills_on_a_later_tick(desk):
    desk.enter(orders=(195,))
    desk.advance(0.5)  # past the paper latency, before the first chase
    desk.tick(asks=[(100.00, 65)])
    desk.manager.run_once()
    order = Order.objects.get()
    assert (order.status, order.filled_quantity) == ("PART_TRADED", 65)
    assert PositionTracker.objects.get().status == "active"
    desk.tick(asks=[(100.00, 650)])
    desk.manager.run_once()
    order.refresh_from_db()
    assert (order.status, order.filled_quantity) == ("TRADED", 195)


def test_two_orders_on_one_tick_do_not_take_the_same_displayed_quantity(desk):
    desk.enter(orders=(65,))
    desk.enter(orders=(65,))
    desk.advance(0.5)  # past the paper latency, before the first chase
    desk.tick(asks=[(100.00, 65), (100.50, 65)])
    desk.manager.run_once()
    assert desk.fills() == [(65, Decimal("100.0000")), (65, Decimal("100.5000"))]


def test_an_unfilled_entry_is_re_priced_then_cancelled_after_the_last_chase(desk):
    config = load_algo_config().orders
    interval = config.chase_interval_ms / 1000
    position = desk.enter(orders=(65,), limit="99.00")
    ask = 101.0
    desk.advance(0.5)
    desk.tick(asks=[(ask, 650)])
    desk.manager.run_once()
    limits = []
    for _ in range(config.max_chases):
        desk.advance(interval)
        desk.manager.run_once()  # no fill at the old limit; then re-priced from the ask
        limits.append(Order.objects.get().limit_price)
        ask = round(ask * 1.1, 1)  # the market runs away faster than the 2 % buffer
        desk.tick(asks=[(ask, 650)])
    assert limits == [Decimal("103.05"), Decimal("113.35"), Decimal("124.65")]
    desk.advance(interval)
    desk.manager.run_once()  # the last chase is spent: the cancel is asked for
    desk.manager.run_once()  # and the paper broker answers CANCELLED
    order = Order.objects.get()
    position.refresh_from_db()
    assert (order.attempt, order.status, order.filled_quantity) == (3, "CANCELLED", 0)
    assert position.status == "cancelled" and desk.fills() == []


def test_a_re_price_follows_the_ask_plus_the_buffer_and_keeps_the_order(desk):
    config = load_algo_config().orders
    desk.enter(orders=(65,), limit="99.00")
    order = Order.objects.get()
    desk.advance(config.chase_interval_ms / 1000)
    desk.tick(asks=[(120.00, 650)])
    desk.manager.run_once()
    order.refresh_from_db()
    assert order.attempt == 1 and order.correlation_id.endswith("-0-0")
    assert order.limit_price == Decimal("122.40")  # 120 x 1.02, up to the tick


def test_an_entry_journaled_but_never_sent_is_closed_not_sent_late(desk):
    intent = make_intent(make_signal().pk, orders=(65,))
    from trading.orders.journal import journal_entry

    position = journal_entry(intent, mode="paper", derivative_id=position_derivative())
    Order.objects.update(updated_at=T0 - timedelta(minutes=1))  # long before the grace
    desk.manager.run_once()
    order = Order.objects.get()
    position.refresh_from_db()
    assert order.status == "CANCELLED" and "never sent" in order.rejection_reason
    assert position.status == "cancelled"


def position_derivative() -> int:
    from instruments.models import Derivative

    return Derivative.objects.get(security_id=55796).pk


def test_a_claimed_exit_is_sent_filled_at_the_bid_and_booked(desk):
    position = desk.enter(orders=(130,))
    desk.advance(0.5)  # past the paper latency, before the first chase
    desk.tick(asks=[(100.00, 650)], bids=[(99.50, 650)])
    desk.manager.run_once()
    desk.advance(60)
    desk.tick(asks=[(110.50, 650)], bids=[(110.00, 65), (109.90, 650)])
    desk.router.exit_position(position.pk, "MANUAL", "test")
    desk.advance(0.5)  # past the paper latency, before the first chase
    desk.tick(asks=[(110.50, 650)], bids=[(110.00, 65), (109.90, 650)])
    desk.manager.run_once()
    position.refresh_from_db()
    assert position.status == "exited"
    exit_fills = list(
        Fill.objects.filter(order__leg="exit").order_by("pk").values_list("quantity", "price")
    )
    assert exit_fills == [(65, Decimal("110.0000")), (65, Decimal("109.9000"))]
    assert position.exit_price == Decimal("109.9500")
    assert position.gross_pnl == Decimal("1293.50")  # 130 x (109.95 - 100.00)
    assert position.realized_pnl == position.gross_pnl - position.charges
    assert check_ledger() == []


def test_an_open_order_expires_at_the_close_keeping_what_filled(desk):
    desk.enter(orders=(130,), limit="99.00")
    desk.advance(0.5)  # past the paper latency, before the first chase
    desk.tick(asks=[(100.00, 650)])
    desk.manager.run_once()
    close = T0.replace(hour=15, minute=30)
    desk.market.now = close.timestamp()
    desk.manager.run_once()
    order = Order.objects.get()
    assert order.status == "EXPIRED" and "session closed" in order.rejection_reason
    assert PositionTracker.objects.get().status == "cancelled"
