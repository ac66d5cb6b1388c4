"""Gateways: the one contract between the order router and a broker, paper or live.

Nothing above a gateway can tell paper from live (issue "Two gateways, one contract"): the
same calls, the same answers, the same errors (``trading.dhan.errors``: ``Rejected`` with the
broker's reason, ``UnknownOutcome`` when a placement's answer was lost, ``AuthFailure``,
``Retryable``). Events (PENDING, fills, cancels) never come back through these calls: they
come from the broker's event stream and are applied by the process that owns order events
(``workers/order_manager.py``): live, Dhan's order-update WebSocket; paper, the paper broker
(``trading/orders/paper.py``), which plays the part of Dhan over the journal's own rows.

:class:`PaperGateway` sends nothing anywhere. Placing an order hands it to the paper broker:
the order's journal row, with a paper broker id, IS the paper broker's book, so a paper order
survives a restart exactly as a live one survives at Dhan. A re-price updates the row's limit
(the paper broker reads it on its next match); a cancel marks the row (the paper broker answers
CANCELLED on its next pass), as Dhan answers a cancel request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from trading.models import Order
from trading.orders.journal import OrderEvent
from trading.orders.states import JournalStatus

__all__ = ["Ack", "BrokerOrder", "Gateway", "OrderEnded", "PaperGateway"]


@dataclass(frozen=True, slots=True)
class Ack:
    """The broker took the request: its order id and the state it answered (TRANSIT, or
    PENDING when it confirmed at once)."""

    broker_order_id: str
    status: JournalStatus


@dataclass(frozen=True, slots=True)
class BrokerOrder:
    """An order as the broker knows it (a lookup by correlation id, or a status poll): its
    state, cumulative filled units and their average price (applied as a cumulative event,
    so units the stream already reported are not booked twice)."""

    broker_order_id: str
    status: JournalStatus
    filled_quantity: int
    average_price: Decimal | None
    reason: str = ""

    def as_event(self, correlation_id: str, at: datetime) -> OrderEvent:
        return OrderEvent(
            status=self.status,
            at=at,
            correlation_id=correlation_id,
            broker_order_id=self.broker_order_id,
            filled=self.filled_quantity,
            average=self.average_price,
            reason=self.reason,
        )


class OrderEnded(Exception):
    """A re-price the broker refused because the order is final there already (traded,
    cancelled, rejected, expired): ``view`` is what the broker answered when asked. Its event
    may never come (the order-update stream can miss one: a login race, a dropped frame), so
    the order manager applies ``view`` at once instead of re-pricing the order again every
    chase interval until its next read-back."""

    def __init__(self, view: BrokerOrder) -> None:
        super().__init__(f"order {view.broker_order_id} is {view.status} at the broker")
        self.view = view


class Gateway(Protocol):
    mode: str  # "paper" or "live"

    def place(self, order: Order, at: datetime) -> Ack:
        """Send a journaled order once. Raises Rejected, UnknownOutcome, AuthFailure."""
        ...

    def modify(self, order: Order, price: Decimal, at: datetime) -> bool:
        """Re-price a working order (same broker order, same correlation id). True when the
        broker took it; False when there is nothing to re-price (the order never reached the
        broker, or has ended in the journal). Raises OrderEnded when the broker has it final
        and the journal does not know yet."""
        ...

    def cancel(self, order: Order, at: datetime) -> None:
        """Ask the broker to cancel a working order; the CANCELLED comes as an event."""
        ...

    def lookup(self, order: Order) -> BrokerOrder | None:
        """The broker's view of the order by its correlation id; None when the broker has
        never seen it (then, and only then, may it be sent)."""
        ...


class PaperGateway:
    """See the module docstring."""

    mode = "paper"

    def place(self, order: Order, at: datetime) -> Ack:
        return Ack(f"P{order.pk:011d}", JournalStatus.TRANSIT)

    def modify(self, order: Order, price: Decimal, at: datetime) -> bool:
        """Nothing to send: the router records the new limit on the row, which the paper
        broker reads on its next match (as Dhan takes a modify)."""
        return True

    def cancel(self, order: Order, at: datetime) -> None:
        """Nothing to send: the router records the request on the row, which the paper broker
        answers with CANCELLED on its next pass (as Dhan answers a cancel)."""

    def lookup(self, order: Order) -> BrokerOrder | None:
        row = Order.objects.filter(pk=order.pk).first()
        if row is None or not row.broker_order_id:
            return None
        return BrokerOrder(
            row.broker_order_id,
            JournalStatus(row.status),
            row.filled_quantity,
            row.average_price,
            row.rejection_reason,
        )
