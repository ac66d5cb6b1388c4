"""Exactly once across crashes: ``run_trader`` in live mode against a simulator that is not the
trader (it lives in the test process: its order book outlives the trader, as Dhan's does),
killed with SIGKILL at each point of an order's life and restarted (tests/support/trader.py).

The first run of each test dies at its point (``ALGO_FAILPOINT``, trading/orders/failpoints.py,
or a SIGKILL from here while the simulator holds the answer); the restart runs without it, and
the checks read the database and the simulator's broker (``assert_exactly_once``): each
correlation id at most once at the broker, every broker fill with its order and position in
the journal, no position with two entry order sets, the journal's fills the broker's trades.
Paper mode's point is the ledger: it equals the fills after a crash between a fill and its
booking. Faults during entries (a 429 burst, DH-905, a placement answered after the read
timeout) lose nothing and double nothing; two callers exiting one position make one exit.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection

from tests.support.trader import (
    BrokerBook,
    Desk,
    assert_exactly_once,
    desk_for,
    settled,
    stop_entries,
)
from trading.config.store import effective_algo_config
from trading.dhan.ratelimit import InProcessRateLimiter, load_limits
from trading.dhan.rest import DhanRestClient
from trading.dhan.sim.broker import BrokerError
from trading.dhan.sim.server import Simulator
from trading.models import Fill, Order, PositionTracker, TradingSignal
from trading.orders.journal import claim_exit
from trading.orders.ledger import check_ledger
from trading.orders.live import LiveGateway
from trading.orders.router import ExitRefused, OrderRouter
from trading.rules.vocab import ExitType

# The watchlist rows of the data migration: written by desk_for (seed_watchlist).
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def desk(tmp_path, redis_url, redis_client) -> Iterator[Desk]:
    yield from desk_for(tmp_path, redis_url)


def active_position() -> PositionTracker | None:
    return PositionTracker.objects.filter(status="active").order_by("pk").first()


def settle_and_stop(desk: Desk, trader: Any, what: str) -> BrokerBook:
    """Wait until nothing works in the journal or at the broker, stop the trader cleanly,
    check exactly once."""
    desk.wait(lambda: settled(desk.sim), what, trader=trader)
    trader.stop()
    return assert_exactly_once(desk.sim)


# -- entries ------------------------------------------------------------------------------------


def test_killed_after_the_journal_write_the_entry_is_closed_never_sent(desk):
    sim = desk.sim
    desk.start("entry:journaled").killed_itself()
    (position,) = PositionTracker.objects.all()
    journaled = list(position.orders.all())
    # The journal claims each send as it writes the order (one write before the wire), so
    # the orders look sent without an answer: the restart must look each up, not send it.
    assert journaled and all(o.status == "UNKNOWN" and o.sent_at is not None for o in journaled)
    assert sim.broker.orders() == []

    trader = desk.start()
    desk.wait(
        lambda: PositionTracker.objects.filter(pk=position.pk, status="cancelled").exists(),
        "the restarted order manager to close the entry it finds journaled and unsent",
        trader=trader,
    )
    # The restarted trader trades on: a later signal is an entry like any other.
    desk.wait(active_position, "a new entry filled after the restart", trader=trader)
    stop_entries()
    book = settle_and_stop(desk, trader, "the restarted trader's orders to settle")
    for order in journaled:
        order.refresh_from_db()
        assert order.status == "CANCELLED" and "never received" in order.rejection_reason
        assert order.correlation_id not in book.by_correlation()  # sent late: never


def test_killed_after_the_send_before_the_answer_the_order_is_found_by_correlation_id(desk):
    sim = desk.sim
    # Dhan takes the order at once and answers a minute later; the trader waits that long.
    sim.faults.place_order_delay = 60.0
    trader = desk.start(DHANHQ_ORDER_READ_TIMEOUT="90")
    placed = desk.wait(sim.broker.orders, "the first placement at the broker", trader=trader)
    trader.kill()
    sim.faults.place_order_delay = 0.0
    (first,) = placed
    order = Order.objects.get(correlation_id=first["correlationId"])
    assert order.sent_at is not None
    # The answer never came. Usually nothing else told the journal either (UNKNOWN, no broker
    # id: the restart finds it by correlation id); but Dhan's order-update stream reports the
    # order as soon as the exchange has it, whatever the HTTP answer does, and may beat the
    # kill by a few milliseconds (then the order carries the stream's state). Either way it
    # is never sent again (below).
    if order.status != "UNKNOWN":
        assert order.broker_order_id == first["orderId"], order
    unsent = list(order.position.orders.exclude(pk=order.pk))

    stop_entries()
    trader = desk.start()
    book = settle_and_stop(desk, trader, "the unanswered order to be found and applied")
    order.refresh_from_db()
    assert order.broker_order_id == first["orderId"]
    assert order.status == book.by_correlation()[order.correlation_id]["orderStatus"]
    assert sim.stats["place_order_calls"] == 1  # found by its correlation id, never sent again
    for other in unsent:  # the rest of the entry was never sent: closed, not sent late
        other.refresh_from_db()
        assert other.status == "CANCELLED" and "never received" in other.rejection_reason
    position = PositionTracker.objects.get(pk=order.position_id)
    assert position.quantity == order.filled_quantity  # what the broker filled, nothing else
    assert position.status == ("active" if order.filled_quantity else "cancelled")


def test_killed_after_a_fill_before_its_booking_the_fill_is_booked_once(desk):
    sim = desk.sim
    desk.start("event:received").killed_itself()
    at_kill = BrokerBook.read(sim)
    assert any(o["filledQty"] for o in at_kill.orders), "the kill came with a fill"
    assert not Fill.objects.exists()  # received, never applied

    stop_entries()
    trader = desk.start()
    book = settle_and_stop(desk, trader, "the fills the broker has to reach the journal")
    assert book.traded and Fill.objects.exists()


@pytest.fixture
def big_desk(tmp_path, redis_url, redis_client) -> Iterator[Desk]:
    """Entries far beyond the book's five levels, in orders of 100 lots: the first orders take
    the shown depth, the rest rest at their limits, and the order manager chases them."""
    yield from desk_for(
        tmp_path,
        redis_url,
        sizing={"risk_per_trade_rupees": 1_000_000, "capital_alloc_pct": 1, "max_lots": 1000},
        nifty={"freeze_quantity": 6500},
        funds=Decimal("100000000"),
    )


def test_killed_during_a_chase_the_order_is_chased_on_and_ends_once(big_desk):
    desk, sim = big_desk, big_desk.sim
    desk.start("chase:modified").killed_itself()
    # Killed between the broker taking a re-price and the journal recording it.
    assert sim.rest_calls["PUT modify"] >= 1 and not Order.objects.filter(attempt__gt=0).exists()

    stop_entries()
    trader = desk.start()
    settle_and_stop(desk, trader, "the chased orders to fill or be cancelled")


def test_a_429_burst_a_dh905_and_a_late_answer_lose_nothing_and_double_nothing(desk):
    sim = desk.sim
    script = ScriptedPlacements(
        sim,
        [
            {0: ["429", "429"]},  # refused at the door twice: the third send is taken
            {leg: ["DH-905"] for leg in range(10)},  # every order of the entry refused
            {0: ["slow"]},  # taken, answered after the read timeout: found by correlation id
            {0: ["429"] * 4},  # refused on every resend: never at the broker
        ],
    )
    trader = desk.start(DHANHQ_ORDER_READ_TIMEOUT="1")
    for number in range(4):
        desk.wait(lambda n=number: len(script.entries) > n, f"entry {number + 1}", trader=trader)
        position = desk.wait(
            lambda n=number: PositionTracker.objects.filter(
                signal_id=script.signal(n), status__in=("active", "cancelled")
            ).first(),
            f"entry {number + 1} to open or end",
            trader=trader,
        )
        if position.status == "active":
            # Exit it so the next signal (most likely the same direction) can enter.
            assert claim_exit(position.pk, ExitType.MANUAL, "e2e: make room for the next entry")
            desk.wait(
                lambda p=position.pk: PositionTracker.objects.filter(
                    pk=p, status="exited"
                ).exists(),
                f"entry {number + 1}'s exit",
                trader=trader,
            )
    stop_entries()
    book = settle_and_stop(desk, trader, "every scripted entry to settle")
    at_broker = book.by_correlation()
    tried = script.tried

    burst = script.orders(0)
    assert tried[burst[0]] == 3 and burst[0] in at_broker  # two refusals, then taken, once
    rejected = script.orders(1)
    for cid in rejected:
        order = Order.objects.get(correlation_id=cid)
        assert order.status == "REJECTED" and order.rejection_reason.startswith("DH-905")
        assert cid not in at_broker
    signal = TradingSignal.objects.get(pk=script.signal(1))
    assert signal.outcome == "rejected" and "DH-905" in signal.block_reason
    assert PositionTracker.objects.get(signal_id=signal.pk).status == "cancelled"
    late = script.orders(2)[0]
    assert tried[late] == 1 and late in at_broker  # found by its correlation id, sent once
    assert Order.objects.get(correlation_id=late).broker_order_id == at_broker[late]["orderId"]
    lost = script.orders(3)[0]
    assert tried[lost] == 4 and lost not in at_broker
    order = Order.objects.get(correlation_id=lost)
    assert order.status == "CANCELLED" and "never received" in order.rejection_reason


class ScriptedPlacements:
    """The simulator's answers to the trader's placements, per entry (in the order the entries
    arrive) and per order of the entry (its freeze slot): each send of that order takes the
    next answer of its list, and is accepted once the list is spent. "429" is Dhan's rate
    limit at the door and "DH-905" its refusal of a bad value (neither reaches the book);
    "slow" is taken at once and answered after ``SLOW`` seconds, past the trader's read
    timeout, so the trader must find it by its correlation id."""

    SLOW = 3.0

    def __init__(self, sim: Simulator, entries: list[dict[int, list[str]]]) -> None:
        self.sim = sim
        self.script = [{leg: deque(answers) for leg, answers in e.items()} for e in entries]
        self.entries: list[str] = []  # signal parts of the correlation ids, in arrival order
        self.tried: dict[str, int] = defaultdict(int)
        self._place = sim.broker.place
        sim.broker.place = self  # the server calls broker.place under its lock

    def __call__(self, body: Any, now: datetime) -> Any:
        cid = str(body.get("correlationId", ""))
        if not cid.startswith("AS-EN-"):
            return self._place(body, now)  # exits go through untouched
        _, _, entry, leg, _ = cid.split("-")
        if entry not in self.entries:
            self.entries.append(entry)
        self.tried[cid] += 1
        number = self.entries.index(entry)
        answers = self.script[number].get(int(leg)) if number < len(self.script) else None
        answer = answers.popleft() if answers else None
        self.sim.faults.place_order_delay = self.SLOW if answer == "slow" else 0.0
        if answer == "429":
            raise BrokerError(429, "Rate_Limit", "DH-904", "Too many requests (scripted)")
        if answer == "DH-905":
            raise BrokerError(400, "Input_Exception", "DH-905", "price: scripted refusal")
        return self._place(body, now)

    def orders(self, number: int) -> list[str]:
        return sorted(cid for cid in self.tried if cid.split("-")[2] == self.entries[number])

    def signal(self, number: int) -> int:
        """The signal row of the ``number``-th entry (its id ends the salted part)."""
        (cid,) = self.orders(number)[:1]
        return Order.objects.get(correlation_id=cid).position.signal_id


# -- exits --------------------------------------------------------------------------------------


def test_killed_with_an_exit_claimed_the_restart_sends_one_exit(desk):
    sim = desk.sim
    trader = desk.start("exit:claimed")
    position = desk.wait(active_position, "an entry filled", trader=trader)
    stop_entries()
    desk.wait(lambda: settled(sim), "the entries to settle", trader=trader)
    assert claim_exit(position.pk, ExitType.MANUAL, "e2e: manual exit")
    trader.killed_itself()
    position.refresh_from_db()
    assert position.status == "exiting" and not position.orders.filter(leg="exit").exists()

    trader = desk.start()
    desk.wait(
        lambda: PositionTracker.objects.filter(pk=position.pk, status="exited").exists(),
        "the restarted order manager to exit the claimed position",
        trader=trader,
    )
    settle_and_stop(desk, trader, "the exit orders to settle")
    position.refresh_from_db()
    exits = Order.objects.filter(position=position, leg="exit")
    assert {o.generation for o in exits} == {0}
    assert sum(o.filled_quantity for o in exits) == position.quantity


def test_killed_after_an_exits_send_before_its_answer_the_exit_is_not_sent_again(desk):
    sim = desk.sim
    trader = desk.start()
    position = desk.wait(active_position, "an entry filled", trader=trader)
    stop_entries()
    desk.wait(lambda: settled(sim), "the entries to settle", trader=trader)
    trader.stop()
    assert claim_exit(position.pk, ExitType.MANUAL, "e2e: manual exit")
    desk.start("send:answered").killed_itself()  # an exit's send, answered, unrecorded
    # The order manager and the exit engine both drive a claimed exit (under the position's
    # lock, each order sent once): another order of the set may have gone out meanwhile.
    sent = list(Order.objects.filter(position=position, leg="exit", sent_at__isnull=False))
    at_broker = BrokerBook.read(sim).by_correlation()
    assert any(o.status == "UNKNOWN" and o.correlation_id in at_broker for o in sent), sent

    trader = desk.start()
    desk.wait(
        lambda: PositionTracker.objects.filter(pk=position.pk, status="exited").exists(),
        "the exit to be resolved by correlation id and completed",
        trader=trader,
    )
    book = settle_and_stop(desk, trader, "the exit orders to settle")
    position.refresh_from_db()
    exits = Order.objects.filter(position=position, leg="exit")
    assert {o.generation for o in exits} == {0}  # no exit placed again
    sold = sum(
        o["filledQty"]
        for o in book.orders
        if o["correlationId"] in {x.correlation_id for x in exits}
    )
    assert sold == position.quantity


def test_two_callers_exiting_one_position_make_one_exit_order_set(desk):
    sim = desk.sim
    trader = desk.start()
    position = desk.wait(active_position, "an entry filled", trader=trader)
    stop_entries()
    desk.wait(lambda: settled(sim), "the entries to settle", trader=trader)
    # Two callers (the exit engine, an operator) on their own connections and their own
    # gateways, at once, while the trader's order manager drives claimed exits too.
    start = threading.Barrier(2)
    results: list[str] = []

    def caller(name: str) -> None:
        router = caller_router(sim)
        try:
            start.wait(10)
            try:
                router.exit_position(position.pk, ExitType.MANUAL, f"e2e: {name}")
                results.append("claimed")
            except ExitRefused:
                results.append("refused")
            while not PositionTracker.objects.filter(pk=position.pk, status="exited").exists():
                router.continue_exit(PositionTracker.objects.get(pk=position.pk))
        finally:
            router.gateway.close()
            connection.close()

    threads = [threading.Thread(target=caller, args=(n,)) for n in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads), "a caller never saw the position exited"
    assert sorted(results) == ["claimed", "refused"]
    settle_and_stop(desk, trader, "the exit orders to settle")
    position.refresh_from_db()
    exits = Order.objects.filter(position=position, leg="exit")
    assert {o.generation for o in exits} == {0}
    assert sum(o.filled_quantity for o in exits) == position.quantity


def caller_router(sim: Simulator) -> OrderRouter:
    """A router on its own live gateway, pricing from the simulator's book."""
    rest = DhanRestClient(
        base_url=sim.base_url,
        client_id=sim.client_id,
        token_provider=lambda: sim.token,
        limiter=InProcessRateLimiter(load_limits()),
    )

    def quote(key: str) -> tuple[Decimal, Decimal, Decimal]:
        segment, security_id = key.split(":")
        book = sim.market.quote(segment, int(security_id), sim.now())
        money = [Decimal(str(v)) for v in (book.best_bid, book.best_ask, book.ltp)]
        return (money[0], money[1], money[2])

    return OrderRouter(
        LiveGateway(rest, sim.client_id),
        config_source=effective_algo_config,
        clock=lambda: sim.now().timestamp(),
        quote=quote,
        freeze_quantity=lambda position: 65,
    )


# -- paper --------------------------------------------------------------------------------------


def test_paper_killed_after_a_fill_before_its_booking_the_ledger_equals_the_fills(desk):
    sim = desk.sim
    desk.start("event:received", PAPER_MODE="true").killed_itself()
    assert not Fill.objects.exists()  # the paper broker's fill was received, never applied
    stop_entries()
    trader = desk.start(PAPER_MODE="true")
    desk.wait(lambda: Fill.objects.exists() and settled(sim), "the entry filled", trader=trader)
    trader.stop()
    assert check_ledger() == []
    assert sim.broker.orders() == []  # paper sends nothing to the broker
    for position in PositionTracker.objects.all():
        entries = position.orders.filter(leg="entry")
        bought = sum(o.filled_quantity for o in entries)
        assert position.quantity == bought
        for order in entries:
            fills = Fill.objects.filter(order=order)
            assert order.filled_quantity == sum(f.quantity for f in fills)
            assert order.charges == sum((f.charges for f in fills), Decimal(0))
