"""Broker events in the journal's terms: Dhan's order update (live) -> :class:`OrderEvent`.

One update per order transition (and per trade): its status, the cumulative traded quantity
and average price. The journal books the units it has not booked yet (cumulative form), so an
update seen twice, or the WebSocket's update after the REST poll's read, books nothing twice.
"""

from __future__ import annotations

from datetime import datetime

from trading.dhan.order_update_codec import OrderUpdate
from trading.orders.journal import OrderEvent
from trading.orders.states import JournalStatus

__all__ = ["event_from_update"]


def event_from_update(update: OrderUpdate, at: datetime) -> OrderEvent | None:
    """The journal event for one order update; None for an update the journal does not act
    on (a super order's own states, an unknown status). ``at`` is market time now (the
    update's exchange time when it carries one)."""
    try:
        status = JournalStatus(str(update.status))
    except ValueError:
        return None
    return OrderEvent(
        status=status,
        at=update.exchange_time or at,
        correlation_id=update.correlation_id or None,
        broker_order_id=update.order_id or None,
        filled=update.traded_quantity,
        average=update.avg_traded_price or update.traded_price,
        reason=update.reason if status == JournalStatus.REJECTED and update.reason else "",
    )
