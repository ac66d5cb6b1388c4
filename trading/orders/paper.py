"""The paper broker: plays Dhan for paper orders, with the one fill model the simulator's
broker uses (trading/rules/fills.py), so paper and live against the simulator fill alike.

Its order book is the journal: every paper order in TRANSIT, PENDING or PART_TRADED. Each pass
(:meth:`PaperBroker.step`, called by the process that owns order events) answers, in time
priority (the order of the journal rows), what Dhan would:

* TRANSIT -> PENDING: the order is confirmed (Dhan answers a placement with TRANSIT, then
  confirms it);
* a cancel asked for (``cancel_requested_at``) -> CANCELLED, keeping what filled;
* at or after the session's close (config/algo.yml ``market``) -> EXPIRED, keeping what filled;
* otherwise the latest tick of the contract is matched: only a tick no older than
  ``feed.option_stale_seconds`` (never a fill at an old price), only from ``paper.latency_ms``
  after the order (or its last re-price), buying at the ask and selling at the bid, walking
  the five depth levels for a large order, the displayed quantity our own earlier fills took
  from the same tick not available again; a limit the book does not cross stays open and fills
  on a later tick that crosses it; ``paper.slippage_bps`` only when no depth is known at all.
  Each fill becomes a trade of the event (PART_TRADED or TRADED), whose id is derived from the
  order's cumulative filled quantity: re-applying an event books nothing twice.

An order "arrives" at the book (incoming: it takes the book's prices level by level) on its
first tick at or after its latency, and again after each re-price; from then on it rests
(fills at its own limit once crossed), as at an exchange.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from trading.config.types import AlgoConfig
from trading.models import Order, TradingMode
from trading.orders.journal import OrderEvent, TradeFill
from trading.orders.states import JournalStatus
from trading.rules.fills import (
    NOTHING_TAKEN,
    Book,
    FillRules,
    LimitOrder,
    NoFill,
    Taken,
    match,
)
from trading.rules.market import session_close_at

logger = logging.getLogger(__name__)

__all__ = ["PaperBroker"]

_BOOK = (JournalStatus.TRANSIT, JournalStatus.PENDING, JournalStatus.PART_TRADED)
# Reasons a tick did not reach the order: it has not arrived at the book yet.
_NOT_ARRIVED = frozenset({NoFill.STALE, NoFill.TOO_EARLY, NoFill.NO_PRICE})


class PaperBroker:
    """See the module docstring. ``tick(key)`` is the latest tick record of a contract (the
    tick store's), ``config_source()`` the effective config, ``wall()`` the real clock the
    ticks' receive times are on."""

    def __init__(
        self,
        tick: Callable[[str], Any],
        config_source: Callable[[], AlgoConfig],
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.tick = tick
        self.config_source = config_source
        self.wall = wall
        self._rested: set[tuple[int, int]] = set()  # (order id, attempt) that reached the book

    def step(self, now: datetime) -> list[OrderEvent]:
        """The events of one pass at market time ``now`` (applied by the caller)."""
        config = self.config_source()
        rules = FillRules.paper(config.paper, config.feed)
        close = session_close_at(config.market, now.date())
        taken: dict[tuple[str, int], Taken] = {}
        books: dict[tuple[str, int], Book] = {}  # one per tick, shared by its orders
        events: list[OrderEvent] = []
        orders = list(
            Order.objects.filter(mode=TradingMode.PAPER, status__in=_BOOK)
            .select_related("position__derivative")
            .order_by("priced_at", "pk")
        )
        for order in orders:
            events.extend(self._one(order, now, close, rules, taken, books))
        # Forget orders that left the book (the set stays as small as the book).
        open_ids = {order.pk for order in orders}
        self._rested = {rested for rested in self._rested if rested[0] in open_ids}
        return events

    def _one(
        self,
        order: Order,
        now: datetime,
        close: datetime,
        rules: FillRules,
        taken: dict[tuple[str, int], Taken],
        books: dict[tuple[str, int], Book],
    ) -> list[OrderEvent]:
        out: list[OrderEvent] = []
        cid = order.correlation_id
        if order.status == JournalStatus.TRANSIT:
            out.append(OrderEvent(JournalStatus.PENDING, now, correlation_id=cid))
        if order.cancel_requested_at is not None:
            out.append(OrderEvent(JournalStatus.CANCELLED, now, correlation_id=cid))
            return out
        if now >= close:
            out.append(
                OrderEvent(
                    JournalStatus.EXPIRED,
                    now,
                    correlation_id=cid,
                    reason="the session closed with the order open",
                )
            )
            return out
        record = self.tick(order.key)
        if record is None or not record.ltp:
            return out
        derivative = order.position.derivative
        snapshot = (order.key, record.seq)
        book = books.get(snapshot)
        if book is None:
            age = max(0.0, self.wall() - record.receive_time)
            book = books[snapshot] = Book.from_depth(
                _depth_rows(record),
                ltp=record.ltp,
                at=now - timedelta(seconds=age),
                age_seconds=age,
                tick=derivative.tick_size,
            )
        arrived = (order.pk, order.attempt)
        remaining = order.quantity - order.filled_quantity
        if remaining <= 0:
            return out
        result = match(
            LimitOrder(
                side=order.side,
                limit=order.limit_price,
                remaining=remaining,
                lot_size=derivative.lot_size,
                tick_size=derivative.tick_size,
                incoming=arrived not in self._rested,
                placed_at=order.priced_at,
            ),
            book,
            taken.get(snapshot, NOTHING_TAKEN),
            rules,
        )
        taken[snapshot] = result.taken
        if result.reason not in _NOT_ARRIVED:
            self._rested.add(arrived)
        if not result.fills:
            return out
        trades = []
        filled = order.filled_quantity
        for fill in result.fills:
            filled += fill.quantity
            trades.append(TradeFill(f"P{filled}", fill.quantity, Decimal(fill.price)))
        status = JournalStatus.TRADED if filled == order.quantity else JournalStatus.PART_TRADED
        out.append(OrderEvent(status, now, correlation_id=cid, trades=tuple(trades)))
        return out


def _depth_rows(record: Any) -> Any:
    """The record's five levels, or its best bid/ask as one level (a quote-mode tick), or None
    when no book is known (then only the LTP, with slippage, can fill)."""
    depth = record.depth
    if depth is not None:
        return depth
    if record.bid or record.ask:
        return (
            (
                record.bid_qty or 0,
                record.ask_qty or 0,
                0,
                0,
                record.bid or 0.0,
                record.ask or 0.0,
            ),
        )
    return None
