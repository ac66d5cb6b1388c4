"""The acks written off the sender's thread (trading/orders/acks.py): against the simulator over
HTTP and the real database. The writer's thread has its own connection, so these tests commit
(``transaction=True``): it must see what the sender's thread wrote."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.support.rows import make_signal
from trading.models import Order
from trading.orders.acks import AckWriter
from trading.orders.intent import ROUTED
from trading.orders.journal import OrderEvent, apply_event, journal_entry
from trading.orders.states import JournalStatus as S
from trading.rules.market import IST

from .conftest import make_intent, real_charges
from .test_live_gateway import Book, at_broker, contract, entry, gateway, make_router, sim

pytestmark = pytest.mark.django_db(transaction=True)

__all__ = ["contract", "gateway", "sim"]  # the fixtures, used by name
T0 = datetime(2026, 11, 23, 9, 15, tzinfo=IST)


def test_the_router_sends_every_order_and_the_writer_records_each_ack(sim, gateway, contract):
    writer = AckWriter(name="test-acks")
    router = make_router(gateway, sim)
    router.acks = writer
    seen: list[str] = []
    record = writer._write

    def watched(*args: Any) -> None:  # which thread writes the acks
        seen.append(threading.current_thread().name)
        record(*args)

    writer._write = watched  # type: ignore[method-assign]
    try:
        book = Book(sim, contract)
        lots = (contract.lot_size, contract.lot_size, contract.lot_size)
        intent = entry(contract, book.resting(), orders=lots, sim=sim)
        result = router.place_entry(intent)
        assert result.status == ROUTED and "3 of 3 order(s) sent" in result.detail
        assert writer.flush(5.0)
    finally:
        writer.close()
    assert seen == ["test-acks"]  # one thread wrote them, not the sender's
    orders = list(Order.objects.filter(position__signal_id=intent.signal_id).order_by("leg_index"))
    assert [o.status for o in orders] == [S.TRANSIT] * 3
    for order in orders:
        (at_dhan,) = at_broker(gateway, order.correlation_id)
        assert order.broker_order_id == at_dhan.orderId
    assert writer.describe() == {"written": 3, "failed": 0, "pending": 0}


def journaled(derivative: Any, count: int) -> list[Order]:
    """``count`` entries of one order each, journaled for live (each on a candle of its own)."""
    rows = []
    for n in range(count):
        signal = make_signal(candle_start=T0 + timedelta(minutes=5 * n))
        position = journal_entry(make_intent(signal.pk), mode="live", derivative_id=derivative.pk)
        rows.append(position.orders.get())
    return rows


def test_an_event_that_got_there_first_keeps_its_state_and_the_ack_adds_the_broker_id(derivative):
    (order,) = journaled(derivative, 1)
    Order.objects.filter(pk=order.pk).update(sent_at=order.created_at)
    # The order-update stream was quicker than the ack's write: PENDING, no broker id yet.
    event = OrderEvent(correlation_id=order.correlation_id, status=S.PENDING, at=order.created_at)
    apply_event(event, real_charges, paper=False)
    writer = AckWriter()
    writer.put(order, "5201234", S.TRANSIT, order.created_at)
    writer.close()
    order.refresh_from_db()
    assert (order.status, order.broker_order_id) == (S.PENDING, "5201234")
    assert writer.written == 1


def test_an_ack_the_database_refuses_is_said_and_left_to_the_lookup_and_the_next_is_written(
    derivative, caplog
):
    rows = journaled(derivative, 2)
    writer = AckWriter(name="test-acks")
    with caplog.at_level(logging.ERROR, logger="trading.orders.acks"):
        # 41 characters: longer than the column, the database refuses the whole UPDATE.
        writer.put(rows[0], "9" * 41, S.TRANSIT, rows[0].created_at)
        writer.put(rows[1], "5201235", S.TRANSIT, rows[1].created_at)
        assert writer.flush(5.0)
    writer.close()
    first, second = (Order.objects.get(pk=o.pk) for o in rows)
    assert (first.status, first.broker_order_id) == (S.UNKNOWN, "")
    assert (second.status, second.broker_order_id) == (S.TRANSIT, "5201235")
    assert writer.describe() == {"written": 1, "failed": 1, "pending": 0}
    (said,) = [r.getMessage() for r in caplog.records if r.name == "trading.orders.acks"]
    assert rows[0].correlation_id in said and "stays UNKNOWN" in said


def test_close_writes_what_is_queued_and_a_later_put_starts_a_new_thread(derivative):
    rows = journaled(derivative, 5)
    writer = AckWriter()
    for n, order in enumerate(rows[:4]):
        writer.put(order, f"52000{n}", S.TRANSIT, order.created_at)
    writer.close()  # no flush before: close writes them
    assert writer.written == 4 and writer.pending == 0
    assert Order.objects.filter(status=S.TRANSIT).count() == 4
    writer.put(rows[4], "520009", S.TRANSIT, rows[4].created_at)
    assert writer.flush(5.0)
    writer.close()
    assert Order.objects.get(pk=rows[4].pk).broker_order_id == "520009"
    assert writer.written == 5
