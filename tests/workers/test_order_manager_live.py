"""The order manager in live mode against the simulator: Dhan's order-update stream is its
source of order events (``run_once`` passes in the test's hands), its heartbeat says the
stream is connected, and a stream the broker will not let in stops it as an authentication
failure instead of leaving it to poll forever."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import call_command

from instruments.models import Derivative
from tests.support.rows import make_signal
from tests.support.waiting import wait_until
from tests.trading.orders.conftest import make_intent, real_charges
from trading.config.store import load_algo_config
from trading.dhan.order_updates import OrderUpdateClient
from trading.dhan.ratelimit import InProcessRateLimiter, load_limits
from trading.dhan.rest import DhanRestClient
from trading.dhan.sim.server import Simulator
from trading.dhan.ws_support import ReconnectPolicy
from trading.models import Order, PositionTracker
from trading.orders.live import LiveGateway
from trading.orders.router import OrderRouter
from trading.rules.market import IST
from workers.broker_auth import BrokerAuthFailed, auth_failures
from workers.order_manager import OrderManager
from workers.realtime.event_bus import MemoryEventBus
from workers.realtime.kv_store import MemoryKeyValueStore
from workers.realtime.services import Realtime
from workers.realtime.tick_store import MemoryTickStore

pytestmark = pytest.mark.django_db(transaction=True)

_candles = itertools.count()


class LiveDesk:
    """A router on LiveGateway and an order manager on the simulator's order-update stream."""

    def __init__(self, sim: Simulator, token: str | None = None) -> None:
        self.sim = sim
        self.kv = MemoryKeyValueStore()
        realtime = Realtime(ticks=MemoryTickStore(), events=MemoryEventBus(), kv=self.kv)
        rest = DhanRestClient(
            base_url=sim.base_url,
            client_id=sim.client_id,
            token_provider=lambda: sim.token,
            limiter=InProcessRateLimiter(load_limits()),
        )
        self.router = OrderRouter(
            LiveGateway(rest, sim.client_id),
            config_source=load_algo_config,
            clock=lambda: sim.now().timestamp(),
            quote=lambda key: None,  # no re-price: the orders stay where the test put them
            freeze_quantity=lambda position: 1800,
        )
        self.manager = OrderManager(
            realtime,
            self.router,
            config_source=load_algo_config,
            charges=real_charges,
            clock=lambda: sim.now().timestamp(),
            heartbeat_interval=0.0,
        )
        # The network between Dhan and the stream: while ``dropping``, updates are lost.
        self.dropping = False
        self.lost: list[Any] = []
        login = token or sim.token
        self.manager.stream = OrderUpdateClient(
            sim.order_ws_url,
            sim.client_id,
            lambda: login,
            self._deliver,
            policy=ReconnectPolicy(base=0.05, cap=0.2),
            max_login_failures=1,
            poll_interval=0.1,
            close_timeout=1.0,
        )

    def _deliver(self, update: Any) -> None:
        if self.dropping:
            self.lost.append(update)
        else:
            self.manager.on_update(update)

    def started(self) -> Derivative:
        """The catalog imported, the stream logged in, the start-up read-back done (before
        anything is sent); returns the contract of ``contract()``."""
        contract = self.contract()
        self.manager.stream.start()
        wait_until(lambda: self.sim.order_connections() == 1, "the order-update login")
        self.manager.run_once()
        return contract

    def resting_price(self, contract: Derivative) -> Decimal:
        """Half the bid, on the tick: a buy that rests."""
        tick = contract.tick_size
        half_bid = (Decimal(str(self.book(contract).best_bid)) / 2 / tick).to_integral_value()
        return max(tick, half_bid * tick)

    def fill_by_hand(self, order: Order, book: Any) -> Any:
        """Move the order's limit through the book at Dhan (a hand's modify, not the
        system's): it trades. Returns Dhan's order."""
        from trading.dhan.rest_types import ModifyOrderRequest, OrderByIdRequest
        from trading.dhan.vocab import OrderType, Validity

        rest = self.router.gateway.rest
        rest.modify_order(
            ModifyOrderRequest(
                dhanClientId=self.sim.client_id,
                orderId=order.broker_order_id,
                orderType=OrderType.LIMIT,
                quantity=order.quantity,
                price=Decimal(str(book.depth[4].ask_price)) + 20,
                validity=Validity.DAY,
            )
        )
        return rest.order_by_id(OrderByIdRequest(order.broker_order_id)).order

    def contract(self) -> Derivative:
        """The simulator's NIFTY call nearest the money, from its own scrip master."""
        call_command("import_instruments", url=self.sim.scrip_master_url, verbosity=0)
        spot = Decimal(str(self.sim.market.index_level("NIFTY", self.sim.now())))
        calls = Derivative.objects.filter(underlying__security_id=13, option_type="CE")
        expiry = calls.order_by("expiry_date").first().expiry_date
        return min(calls.filter(expiry_date=expiry), key=lambda row: abs(row.strike - spot))

    def enter(self, contract: Derivative, limit: Decimal) -> Order:
        """One lot at ``limit`` through the router (journal, then LiveGateway)."""
        candle = datetime(2026, 1, 5, 9, 15, tzinfo=IST) + timedelta(minutes=5 * next(_candles))
        intent = make_intent(
            make_signal(candle_start=candle).pk,
            orders=(contract.lot_size,),
            exchange_segment=contract.exchange_segment,
            security_id=contract.security_id,
            symbol=contract.trading_symbol,
            expiry=contract.expiry_date,
            strike=contract.strike,
            option_type=contract.option_type,
            lot_size=contract.lot_size,
            tick_size=contract.tick_size,
            lots=1,
            quantity=contract.lot_size,
            reference_price=limit,
            limit_price=limit,
            decided_at=self.sim.now(),
        )
        self.router.place_entry(intent)
        return Order.objects.get(position__signal_id=intent.signal_id)

    def book(self, contract: Derivative) -> Any:
        sim = self.sim
        return sim.market.quote(contract.exchange_segment, contract.security_id, sim.now())

    def until(self, condition: Any, what: str) -> Any:
        """Run passes until ``condition()`` holds (the stream delivers between them)."""

        def passed() -> Any:
            self.manager.run_once()
            return condition()

        return wait_until(passed, what)

    def close(self) -> None:
        self.manager.stream.stop(timeout=5)
        self.router.gateway.close()


@pytest.fixture
def live(sim: Simulator) -> Iterator[LiveDesk]:
    desk = LiveDesk(sim)
    yield desk
    desk.close()


def test_the_streams_updates_reach_the_journal_and_the_heartbeat_says_connected(live):
    contract = live.contract()
    live.manager.stream.start()
    wait_until(lambda: live.sim.order_connections() == 1, "the order-update login")
    live.manager.run_once()  # the start-up read-back and reconciliation, with nothing to read
    tick = contract.tick_size
    bid = Decimal(str(live.book(contract).best_bid))
    resting = live.enter(contract, max(tick, (bid / 2 / tick).to_integral_value() * tick))
    filled = live.enter(contract, Decimal(str(live.book(contract).depth[4].ask_price)))
    assert resting.status == filled.status == "TRANSIT"  # the router's record of the answer

    live.until(
        lambda: (
            Order.objects.filter(pk=resting.pk, status="PENDING").exists()
            and Order.objects.filter(pk=filled.pk, status="TRADED").exists()
        ),
        "the stream's PENDING and TRADED in the journal",
    )
    position = PositionTracker.objects.get(pk=filled.position_id)
    assert (position.status, position.quantity) == ("active", contract.lot_size)
    # From the stream alone: no order was looked up (the REST fallback polls only while the
    # stream is down), and the heartbeat says so.
    assert live.sim.rest_calls["GET order_by_correlation"] == 0, live.sim.rest_calls
    beat = live.kv.get("hb:order_manager")
    assert beat["state"] == "running" and beat["mode"] == "live"
    assert beat["stream_connected"] is True and beat["counts"]["events"] >= 4


def test_a_stream_the_broker_will_not_let_in_stops_the_manager_as_an_auth_failure(sim):
    sim.set_token("rotated-token")  # the manager's stream logs in with the old one
    desk = LiveDesk(sim, token="sim-token")
    try:
        desk.manager.stream.start()
        wait_until(lambda: desk.manager.stream.state == "failed", "the stream's rejected login")
        with pytest.raises(BrokerAuthFailed, match="order_manager \\(order updates\\)"):
            desk.manager.run_once()
    finally:
        desk.close()
    assert auth_failures(desk.kv)["order_manager"]["during"] == "order updates"


def test_an_order_traded_whose_update_the_stream_lost_is_applied_on_its_next_chase(sim):
    """The stream can miss an update (a fill that came while it logged in, a dropped frame).
    The chase that finds the order final at Dhan applies what Dhan answered, once, instead of
    sending a modify every chase interval until the next read-back (seen in the crash e2e:
    245 refused modifies in 57 s)."""
    desk = LiveDesk(sim)
    try:
        contract = desk.started()
        book = desk.book(contract)
        bid = Decimal(str(book.best_bid))
        order = desk.enter(contract, desk.resting_price(contract))
        desk.until(lambda: Order.objects.filter(pk=order.pk, status="PENDING").exists(), "PENDING")
        # Filled at Dhan (a limit moved through the book by hand), its updates lost.
        desk.dropping = True
        at_dhan = desk.fill_by_hand(order, book)
        wait_until(lambda: desk.lost, "the lost update")
        assert at_dhan.orderStatus == "TRADED"
        # The chase is due, and the book has a price for it.
        Order.objects.filter(pk=order.pk).update(priced_at=sim.now() - timedelta(minutes=5))
        desk.router.quote = lambda key: (bid, Decimal(str(book.best_ask)), bid)
        modifies = sim.rest_calls["PUT modify"]

        assert desk.manager.handle_chases() == 0
        order.refresh_from_db()
        assert (order.status, order.filled_quantity) == ("TRADED", contract.lot_size)
        assert abs(order.average_price - Decimal(str(at_dhan.averageTradedPrice))) < Decimal("0.01")
        position = PositionTracker.objects.get(pk=order.position_id)
        assert (position.status, position.quantity) == ("active", contract.lot_size)
        assert sim.rest_calls["PUT modify"] == modifies + 1  # the one that found it traded
        Order.objects.filter(pk=order.pk).update(priced_at=sim.now() - timedelta(minutes=5))
        assert desk.manager.handle_chases() == 0
        assert sim.rest_calls["PUT modify"] == modifies + 1  # final in the journal: no more
    finally:
        desk.close()


def test_a_cancel_refused_because_the_order_filled_is_settled_by_a_paced_read_back(sim):
    """The exit engine's kill switch cancels a working entry; Dhan refuses (it has just filled)
    and the stream missed the fill. The order is read back once the cancel has waited
    ``cancel_grace`` and the fill applied, not left for the 30 s read-back; an order whose
    cancel is still pending at Dhan is read at most every ``cancel_grace`` wall seconds."""
    desk = LiveDesk(sim)
    try:
        contract = desk.started()
        book = desk.book(contract)
        filled = desk.enter(contract, desk.resting_price(contract))
        resting = desk.enter(contract, desk.resting_price(contract))
        desk.until(
            lambda: (
                Order.objects.filter(pk__in=(filled.pk, resting.pk), status="PENDING").count() == 2
            ),
            "both PENDING",
        )
        desk.dropping = True
        at_dhan = desk.fill_by_hand(filled, book)
        assert at_dhan.orderStatus == "TRADED"
        desk.router.cancel(filled)  # refused by Dhan (traded): quiet, as for the exit engine
        filled.refresh_from_db()
        assert filled.status == "PENDING" and filled.cancel_requested_at is not None
        # The other order's cancel request never reached Dhan: still working there.
        asked = sim.now() - timedelta(minutes=1)
        Order.objects.filter(pk__in=(filled.pk, resting.pk)).update(cancel_requested_at=asked)

        def reads():
            return sum(n for k, n in sim.rest_calls.items() if k.startswith("GET order_by"))

        before = reads()
        t0 = time.time()
        # A minute of market time has passed, but the pass that first sees the cancels starts
        # their wall grace: the stream's event travels in wall time (at 60x, a market-time
        # grace alone would read back nearly every cancel).
        assert desk.manager.handle_cancels() == 0 and reads() == before
        desk.manager.wall = lambda: t0 + desk.manager.cancel_grace + 0.1
        assert desk.manager.handle_cancels() == 1
        filled.refresh_from_db()
        assert (filled.status, filled.filled_quantity) == ("TRADED", contract.lot_size)
        position = PositionTracker.objects.get(pk=filled.position_id)
        assert (position.status, position.quantity) == ("active", contract.lot_size)
        after_first = reads()
        assert after_first == before + 2  # one read of each order

        assert desk.manager.handle_cancels() == 0  # the resting one: not again so soon
        assert reads() == after_first
        desk.manager.wall = lambda: t0 + 2 * desk.manager.cancel_grace + 0.2
        assert desk.manager.handle_cancels() == 0  # read again: still PENDING at Dhan
        assert reads() == after_first + 1
        # Wall time alone is not enough either: a cancel asked just now in market time waits.
        desk.manager.now = lambda: asked + timedelta(seconds=1)
        desk.manager.wall = lambda: t0 + 10 * desk.manager.cancel_grace
        assert desk.manager.handle_cancels() == 0 and reads() == after_first + 1
        assert Order.objects.get(pk=resting.pk).status == "PENDING"
    finally:
        desk.close()
