"""Live mode end to end: ``run_trader`` with PAPER_MODE=false and ENABLE_ORDER=true against a
separately started simulator, given only its printed settings (tests/support/trader.py), and
the split workers (``run_feed_hub``, ``run_signal_engine``, ``run_order_updates``) the same way.

The signal engine decides on the simulator's candles and routes its entry through
``LiveGateway`` (REST); every fill reaches the journal through Dhan's order-update stream; a
manual exit claimed in the database (what ``POST /api/positions/{id}/exit/`` and the admin
do: ``trading.orders.journal.claim_exit``) is sent by the running order manager, and the
journal ends with the position exited, the broker's trades as fills, charges and net PnL.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from tests.support.trader import Desk, assert_exactly_once, desk_for, settled, stop_entries
from trading.models import Fill, Order, PositionTracker
from trading.orders.journal import claim_exit
from trading.rules.vocab import ExitType
from workers.realtime.kv_store import RedisKeyValueStore

# The watchlist rows of the data migration: written by desk_for (seed_watchlist).
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def desk(tmp_path, redis_url, redis_client) -> Iterator[Desk]:
    yield from desk_for(tmp_path, redis_url)


def test_a_live_entry_and_exit_go_through_the_live_gateway_and_the_order_update_stream(desk):
    sim = desk.sim
    trader = desk.start()
    desk.wait(
        lambda: sim.order_connections() >= 1, "the order-update stream's login", trader=trader
    )
    position = desk.wait(
        lambda: PositionTracker.objects.filter(status="active").first(),
        "a signal's entry filled and its position active",
        trader=trader,
    )
    stop_entries()  # the one entry is the test's; nothing new from here
    desk.wait(lambda: settled(sim), "the entries to settle (no order working)", trader=trader)
    position.refresh_from_db()
    entry_orders = list(position.orders.filter(leg="entry"))
    assert entry_orders and all(o.mode == "live" for o in entry_orders)
    assert position.mode == "live" and position.quantity > 0

    assert claim_exit(position.pk, ExitType.MANUAL, "e2e: the manual exit's path")
    desk.wait(
        lambda: PositionTracker.objects.filter(pk=position.pk, status="exited").exists(),
        "the running order manager to send the exit and book its fills",
        trader=trader,
    )
    desk.wait(lambda: settled(sim), "the exit orders to settle", trader=trader)
    kv = RedisKeyValueStore(desk.env["REDIS_URL"], prefix="algo:")
    try:
        beat = desk.wait(
            lambda: (b := kv.get("hb:order_manager")) and b["counts"]["events"] > 0 and b,
            "the order manager's heartbeat counting the stream's events",
            trader=trader,
        )
    finally:
        kv.close()
    trader.stop()

    book = assert_exactly_once(sim)
    position.refresh_from_db()
    exits = list(position.orders.filter(leg="exit").order_by("leg_index"))
    assert exits and {o.status for o in exits} == {"TRADED"}
    assert sum(o.quantity for o in exits) == position.quantity
    # Every order of the journal went to the broker through LiveGateway (paper sends nothing)
    # and every state came from the order-update stream: the manager never looked an order up
    # (a poll, while the stream is down, starts with the correlation id) and says the stream
    # is connected. (A chase that meets an order already traded reads it back by its id.)
    orders = Order.objects.filter(position=position)
    assert {o.correlation_id for o in orders} <= set(book.by_correlation())
    assert beat["mode"] == "live" and beat["stream_connected"] is True
    assert sim.rest_calls["GET order_by_correlation"] == 0, sim.rest_calls
    assert sim.stats["order_alerts_sent"] >= 2 * orders.count()
    # The round trip in the journal: exit price, gross, the charges of every order, net.
    entry_fills = Fill.objects.filter(order__position=position, order__leg="entry")
    exit_fills = Fill.objects.filter(order__position=position, order__leg="exit")
    premium = sum((f.price * f.quantity for f in entry_fills), Decimal(0))
    proceeds = sum((f.price * f.quantity for f in exit_fills), Decimal(0))
    assert position.exit_price == (proceeds / position.quantity).quantize(Decimal("0.0001"))
    assert position.gross_pnl == (proceeds - premium).quantize(Decimal("0.01"))
    charges = sum((o.charges for o in orders), Decimal(0))
    assert charges > 0 and position.charges == charges
    assert position.realized_pnl == position.gross_pnl - charges
    # The broker booked the same round trip: flat, and its realized profit is our gross.
    (at_broker,) = [
        row
        for row in sim.broker.positions(sim.now())
        if int(row["securityId"]) == position.security_id
    ]
    assert at_broker["netQty"] == 0
    # To the paisa of its wire, and the half paisa a unit Dhan's rounded averages leave.
    tolerance = Decimal("0.01") + Decimal("0.005") * 2 * position.quantity
    assert abs(Decimal(str(at_broker["realizedProfit"])) - position.gross_pnl) <= tolerance


def test_the_split_workers_enter_and_exit_in_live_mode(desk):
    sim = desk.sim
    workers = [desk.start(command=command) for command in ("run_feed_hub", "run_order_updates")]
    desk.wait(
        lambda: sim.order_connections() >= 1, "run_order_updates' stream login", trader=workers
    )
    # Entries only once the order manager has made its first pass (its start's read-back of
    # the working orders, by correlation id, then its first heartbeat): an entry sent before
    # it is caught up by that read-back, correctly, but it is not the stream's path tested
    # here (on a loaded machine the signal engine's first entries came first).
    kv = RedisKeyValueStore(desk.env["REDIS_URL"], prefix="algo:")
    try:
        desk.wait(
            lambda: kv.get("hb:order_manager"), "the order manager's first pass", trader=workers
        )
    finally:
        kv.close()
    workers.append(desk.start(command="run_signal_engine"))
    position = desk.wait(
        lambda: PositionTracker.objects.filter(status="active").first(),
        "run_signal_engine's entry, filled as run_order_updates applies the stream",
        trader=workers,
    )
    stop_entries()
    desk.wait(lambda: settled(sim), "the entries to settle", trader=workers)
    assert claim_exit(position.pk, ExitType.MANUAL, "e2e: the manual exit's path")
    desk.wait(
        lambda: PositionTracker.objects.filter(pk=position.pk, status="exited").exists(),
        "run_order_updates to send the exit and book its fills",
        trader=workers,
    )
    desk.wait(lambda: settled(sim), "the exit orders to settle", trader=workers)
    for worker in workers:
        worker.stop()
    book = assert_exactly_once(sim)
    orders = Order.objects.filter(position=position)
    assert {o.mode for o in orders} == {"live"}
    assert {o.correlation_id for o in orders} <= set(book.by_correlation())
    assert sim.rest_calls["GET order_by_correlation"] == 0, sim.rest_calls
