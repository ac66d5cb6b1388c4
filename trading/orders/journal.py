"""The order journal: every database write of the order life, each a conditional update.

Who calls what (ARCHITECTURE "exactly once"):

* the router (signal engine, exit engine, API) journals orders before it sends them
  (:func:`journal_entry`, :func:`journal_exit`) and records what the broker answered to its own
  send (:func:`record_ack`, :func:`record_rejection`);
* the process that owns order events (``run_order_updates``, or ``run_trader``'s component)
  applies every broker event (:func:`apply_event`): status moves, fills, the position's life
  and the paper ledger, in one transaction per event.

Every transition is ``UPDATE ... WHERE <the states it may come from>`` checked by its row count
(trading/orders/states.py), so two writers never both move one order or one position, and an
event applied twice changes nothing the second time (a fill is unique per order and trade id).
"""

from __future__ import annotations

import logging
import secrets
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Sum

from trading.dhan.rest_types import CORRELATION_ID_MAX_LEN as CORRELATION_MAX
from trading.models import (
    Fill,
    LedgerEntry,
    LedgerKind,
    Order,
    OrderLeg,
    OrderSide,
    PositionTracker,
)
from trading.orders.intent import EntryIntent
from trading.orders.states import (
    FINAL,
    WORKING,
    JournalStatus,
    PositionState,
    can_move,
    position_sources,
    sources,
)
from trading.rules.market import IST

logger = logging.getLogger(__name__)

__all__ = [
    "ChargesFn",
    "OrderEvent",
    "TradeFill",
    "abandon_unsent",
    "apply_event",
    "claim_exit",
    "claim_send",
    "entry_correlation_id",
    "exit_correlation_id",
    "id_salt",
    "journal_entry",
    "journal_exit",
    "record_ack",
    "record_rejection",
    "record_reprice",
]

PRICE_PLACES = Decimal("0.0001")
SALT_KEY = "orders.id_salt"
_SALT: dict[str, str] = {}

# (segment, side, quantity, turnover, trade date) -> the charges of one executed order of that
# cumulative quantity and turnover, rupees. The journal charges each fill with the difference
# between the order's charges after and before it, so the fills sum to the order's exactly.
ChargesFn = Callable[[str, str, int, Decimal, date], Decimal]


@dataclass(frozen=True, slots=True)
class TradeFill:
    """One trade: ``trade_id`` unique within its order (the broker's, or derived from the
    cumulative quantity when the broker gives none), units, rupees per unit."""

    trade_id: str
    quantity: int
    price: Decimal


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """What the broker (live: the order-update stream or a REST read; paper: the paper broker)
    says about one order. ``status`` is where it is now; ``at`` is market time.

    Fills come one of two ways: ``trades`` (each with its own id: the paper broker, a trade
    book), or ``filled``/``average`` (cumulative units and average price, as Dhan's order
    updates carry them): the journal books the units it has not booked yet as one trade whose
    price makes the order's average come out as the broker's. Re-applying either is a no-op."""

    status: JournalStatus
    at: datetime
    correlation_id: str | None = None
    broker_order_id: str | None = None
    trades: tuple[TradeFill, ...] = ()
    filled: int | None = None
    average: Decimal | None = None
    reason: str = ""


def id_salt() -> str:
    """Three base-36 characters drawn once per database (the Setting ``orders.id_salt``) and
    put in every correlation id: the ids restart with the row ids after a database reset, and
    Dhan accepts a correlation id again, so without it a lookup could find the order of an
    earlier database the same day and take it for ours."""
    cached = _SALT.get("salt")
    if cached is not None:
        return cached
    from trading.models import Setting

    drawn = "".join(secrets.choice(string.digits + string.ascii_lowercase) for _ in range(3))
    row, _ = Setting.objects.get_or_create(key=SALT_KEY, defaults={"value": {"salt": drawn}})
    salt = str(row.value.get("salt", ""))
    if not (len(salt) == 3 and salt.isascii() and salt.isalnum()):
        raise ValueError(f"Setting {SALT_KEY} holds {row.value!r}, not three letters or digits")
    _SALT["salt"] = salt
    return salt


def _bounded(value: str) -> str:
    if len(value) > CORRELATION_MAX:
        raise ValueError(f"correlation id {value!r} is longer than {CORRELATION_MAX}")
    return value


def entry_correlation_id(signal_id: int, leg_index: int, generation: int = 0) -> str:
    """``AS-EN-{salt}{signal}-{leg}-{generation}``: the tag ``AS-`` marks the system's own
    orders at the broker (trading/orders/live.py); a re-price keeps the id (a modify)."""
    return _bounded(f"AS-EN-{id_salt()}{signal_id}-{leg_index}-{generation}")


def exit_correlation_id(position_id: int, leg_index: int, generation: int) -> str:
    """``AS-EX-{salt}{position}-{leg}-{generation}``."""
    return _bounded(f"AS-EX-{id_salt()}{position_id}-{leg_index}-{generation}")


# -- journaling (the router, before a send) ------------------------------------------------------


def journal_entry(intent: EntryIntent, *, mode: str, derivative_id: int) -> PositionTracker:
    """The pending position and its entry orders (status UNKNOWN), in one transaction.
    Idempotent per signal: the same intent handed again returns the position already there."""
    existing = PositionTracker.objects.filter(signal_id=intent.signal_id).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            position = PositionTracker.objects.create(
                derivative_id=derivative_id,
                exchange_segment=intent.exchange_segment,
                security_id=intent.security_id,
                status=PositionState.PENDING,
                quantity=0,
                underlying=intent.index,
                direction=intent.direction,
                signal_id=intent.signal_id,
                config_version=intent.config_version,
                mode=mode,
                opened_at=intent.decided_at,
                underlying_entry=intent.underlying_price,
            )
            Order.objects.bulk_create(
                Order(
                    correlation_id=entry_correlation_id(intent.signal_id, leg),
                    position=position,
                    leg=OrderLeg.ENTRY,
                    leg_index=leg,
                    side=OrderSide.BUY,
                    mode=mode,
                    exchange_segment=intent.exchange_segment,
                    security_id=intent.security_id,
                    quantity=quantity,
                    limit_price=intent.limit_price,
                    placed_at=intent.decided_at,
                    priced_at=intent.decided_at,
                )
                for leg, quantity in enumerate(intent.orders)
            )
    except IntegrityError:
        # Another router journaled this signal first (two engines, one candle).
        return PositionTracker.objects.get(signal_id=intent.signal_id)
    return position


def claim_exit(
    position_id: int,
    exit_type: str,
    reason: str,
    *,
    trigger_price: Decimal | None = None,
    inputs: Mapping[str, Any] | None = None,
    decided_at: datetime | None = None,
    tick_at: datetime | None = None,
) -> bool:
    """active -> exiting, by conditional update: True for the one caller that claimed it.
    The decision (the rule's type and reason, the price and tick it was decided on, what it
    compared, market time) is written by the same update: a claimed position always says why."""
    claimed = PositionTracker.objects.filter(
        pk=position_id, status__in=position_sources(PositionState.EXITING)
    ).update(
        status=PositionState.EXITING,
        exit_type=exit_type,
        exit_reason=reason,
        exit_trigger_price=trigger_price,
        exit_inputs=dict(inputs or {}),
        exit_decided_at=decided_at,
        exit_tick_at=tick_at,
    )
    return claimed == 1


def journal_exit(
    position: PositionTracker,
    orders: Sequence[int],
    limit_price: Decimal,
    at: datetime,
    *,
    generation: int = 0,
) -> list[Order]:
    """The exit orders (status UNKNOWN) selling ``orders`` units each, for a claimed position.
    Idempotent: orders already journaled for these slots are returned as they are."""
    created = []
    with transaction.atomic():
        for leg, quantity in enumerate(orders):
            order, _ = Order.objects.get_or_create(
                position=position,
                leg=OrderLeg.EXIT,
                leg_index=leg,
                generation=generation,
                defaults={
                    "correlation_id": exit_correlation_id(position.pk, leg, generation),
                    "side": OrderSide.SELL,
                    "mode": position.mode,
                    "exchange_segment": position.exchange_segment,
                    "security_id": position.security_id,
                    "quantity": quantity,
                    "limit_price": limit_price,
                    "placed_at": at,
                    "priced_at": at,
                },
            )
            created.append(order)
    return created


# -- the sender's own answers -------------------------------------------------------------------


def claim_send(order: Order, at: datetime) -> bool:
    """Take the one send of an order: ``sent_at`` goes from empty to ``at`` (conditional), so
    an order is handed to the broker at most once by anyone. An UNKNOWN order with ``sent_at``
    set was sent and its answer lost: only a lookup by correlation id may decide what next."""
    return (
        Order.objects.filter(pk=order.pk, status=JournalStatus.UNKNOWN, sent_at=None).update(
            sent_at=at
        )
        == 1
    )


def record_ack(order: Order, broker_order_id: str, status: str, at: datetime) -> bool:
    """The broker accepted our send: UNKNOWN -> TRANSIT/PENDING with its order id. False when
    the order had moved already (an event got there first); the broker id is kept either way.
    A final state is never taken from an acknowledgement (it would skip the settling of the
    position and the reason): it is recorded as TRANSIT and the event brings the rest."""
    if status in FINAL:
        status = JournalStatus.TRANSIT
    moved = Order.objects.filter(pk=order.pk, status__in=sources(status)).update(
        status=status, broker_order_id=broker_order_id
    )
    if not moved:
        Order.objects.filter(pk=order.pk, broker_order_id="").update(
            broker_order_id=broker_order_id
        )
    return moved == 1


def record_reprice(order: Order, price: Decimal, at: datetime) -> bool:
    """A re-price the broker took: the new limit, one more attempt, the time it was priced
    (the chase clock restarts). Only while the order still works."""
    return (
        Order.objects.filter(pk=order.pk, status__in=WORKING).update(
            limit_price=price, priced_at=at, attempt=F("attempt") + 1
        )
        == 1
    )


def abandon_unsent(order: Order, reason: str, at: datetime) -> bool:
    """An entry order journaled but never sent (its process stopped before the send): it is
    closed as CANCELLED instead of being sent late at a stale price. Conditional on still
    being unsent, so a sender that claims it first wins."""
    with transaction.atomic():
        moved = Order.objects.filter(
            pk=order.pk, status=JournalStatus.UNKNOWN, sent_at=None
        ).update(
            status=JournalStatus.CANCELLED,
            rejection_reason=reason[:2000],
            final_at=at,
            sent_at=at,
        )
        if moved:
            _settle(order.position_id, at)
    return moved == 1


def record_rejection(order: Order, reason: str, at: datetime) -> bool:
    """The broker refused the send (Dhan's reason kept); settles the position if that ended
    its entry."""
    with transaction.atomic():
        moved = Order.objects.filter(
            pk=order.pk, status__in=sources(JournalStatus.REJECTED)
        ).update(status=JournalStatus.REJECTED, rejection_reason=reason[:2000], final_at=at)
        if moved:
            _settle(order.position_id, at)
    return moved == 1


# -- events (the owner of order events) ---------------------------------------------------------


def apply_event(event: OrderEvent, charges: ChargesFn, *, paper: bool) -> bool:
    """Apply one broker event in one transaction: the new trades (fills, their charges, the
    order's filled quantity and average, the position's quantity and prices, the paper
    ledger), then the status move. Returns True when anything changed. A late or repeated
    event changes nothing and is logged."""
    with transaction.atomic():
        order = _find(event)
        if order is None:
            logger.warning(
                "order event for an order the journal does not know: %s %s",
                event.correlation_id or event.broker_order_id,
                event.status,
            )
            return False
        changed = False
        for trade in (*event.trades, *_cumulative_trade(order, event)):
            changed |= _apply_trade(order, trade, event.at, charges, paper=paper)
        if event.broker_order_id and not order.broker_order_id:
            Order.objects.filter(pk=order.pk).update(broker_order_id=event.broker_order_id)
        new = JournalStatus(event.status)
        if new == order.status:
            return changed
        if not can_move(order.status, new):
            logger.info(
                "order %s: %s after %s ignored (an order never moves back)",
                order.correlation_id,
                new,
                order.status,
            )
            return changed
        fields: dict[str, Any] = {"status": new}
        if new in FINAL:
            fields["final_at"] = event.at
        if new in FINAL and event.reason:
            # Why it ended, whatever the end: Dhan's rejection, the session's close, a lookup
            # that found the broker never received it.
            fields["rejection_reason"] = event.reason[:2000]
        moved = Order.objects.filter(pk=order.pk, status__in=sources(new)).update(**fields)
        if moved and new in FINAL:
            _settle(order.position_id, event.at)
        return changed or moved == 1


def _find(event: OrderEvent) -> Order | None:
    query = Order.objects.select_for_update()
    if event.correlation_id:
        order = query.filter(correlation_id=event.correlation_id).first()
        if order is not None:
            return order
    if event.broker_order_id:
        return query.filter(broker_order_id=event.broker_order_id).first()
    return None


def _cumulative_trade(order: Order, event: OrderEvent) -> tuple[TradeFill, ...]:
    """The units of a cumulative report not booked yet, as one trade (see OrderEvent)."""
    if event.filled is None or event.filled <= order.filled_quantity or not event.average:
        return ()
    units = event.filled - order.filled_quantity
    booked = _turnover(order)
    price = ((event.average * event.filled - booked) / units).quantize(PRICE_PLACES)
    if price <= 0:  # the broker's average is rounded; never book a free or negative trade
        price = event.average
    return (TradeFill(f"cum-{event.filled}", units, price),)


def _apply_trade(
    order: Order, trade: TradeFill, at: datetime, charges: ChargesFn, *, paper: bool
) -> bool:
    if trade.quantity <= 0:
        return False
    if Fill.objects.filter(order=order, trade_id=trade.trade_id).exists():
        return False  # applied before (the same update twice, or the REST read after the WS)
    filled_before = order.filled_quantity
    filled = filled_before + trade.quantity
    if filled > order.quantity:
        logger.error(
            "order %s: trade %s of %d units would fill %d of %d: ignored",
            order.correlation_id,
            trade.trade_id,
            trade.quantity,
            filled,
            order.quantity,
        )
        return False
    turnover_before = _turnover(order)
    turnover = turnover_before + trade.price * trade.quantity
    day = at.astimezone(IST).date()
    total = charges(order.exchange_segment, order.side, filled, turnover, day)
    fill_charges = total - order.charges
    fill = Fill.objects.create(
        order=order,
        trade_id=trade.trade_id,
        quantity=trade.quantity,
        price=trade.price,
        charges=fill_charges,
        traded_at=at,
    )
    average = (turnover / filled).quantize(PRICE_PLACES)
    moved = Order.objects.filter(pk=order.pk, filled_quantity=filled_before).update(
        filled_quantity=filled, average_price=average, charges=total
    )
    if moved != 1:  # cannot happen under select_for_update; never book a fill twice
        raise IntegrityError(f"order {order.correlation_id} changed under its fill")
    order.filled_quantity, order.average_price, order.charges = filled, average, total
    if paper:
        _book(fill, order, at)
    if order.leg == OrderLeg.ENTRY:
        _entry_filled(order, at)
    else:
        _exit_filled(order, at)
    return True


def _turnover(order: Order) -> Decimal:
    total = Decimal(0)
    for quantity, price in Fill.objects.filter(order=order).values_list("quantity", "price"):
        total += price * quantity
    return total


def _book(fill: Fill, order: Order, at: datetime) -> None:
    """The paper ledger: premium out (buy) or proceeds in (sell), and the charges."""
    value = (fill.price * fill.quantity).quantize(Decimal("0.01"))
    LedgerEntry.objects.create(
        kind=LedgerKind.PREMIUM if order.side == OrderSide.BUY else LedgerKind.PROCEEDS,
        amount=-value if order.side == OrderSide.BUY else value,
        fill=fill,
        position_id=order.position_id,
        at=at,
    )
    if fill.charges:
        LedgerEntry.objects.create(
            kind=LedgerKind.CHARGES,
            amount=-fill.charges,
            fill=fill,
            position_id=order.position_id,
            at=at,
        )


def _leg_totals(position_id: int, leg: str) -> tuple[int, Decimal, Decimal]:
    """(units, turnover, charges) of the fills of one leg of a position."""
    units, turnover, charges = 0, Decimal(0), Decimal(0)
    for quantity, price, fill_charges in Fill.objects.filter(
        order__position_id=position_id, order__leg=leg
    ).values_list("quantity", "price", "charges"):
        units += quantity
        turnover += price * quantity
        charges += fill_charges
    return units, turnover, charges


def _entry_filled(order: Order, at: datetime) -> None:
    """pending -> active on the first entry fill; the quantity and the entry price follow the
    entry fills (their average)."""
    units, turnover, charges = _leg_totals(order.position_id, OrderLeg.ENTRY)
    entry_price = (turnover / units).quantize(PRICE_PLACES)
    PositionTracker.objects.filter(pk=order.position_id, status=PositionState.PENDING).update(
        status=PositionState.ACTIVE, entry_at=at
    )
    PositionTracker.objects.filter(pk=order.position_id).update(
        quantity=units,
        entry_price=entry_price,
        charges=charges + _leg_totals(order.position_id, OrderLeg.EXIT)[2],
    )


def _exit_filled(order: Order, at: datetime) -> None:
    """The last exit unit: exited, with exit price, gross, charges and net PnL."""
    position = PositionTracker.objects.select_for_update().get(pk=order.position_id)
    sold, proceeds, exit_charges = _leg_totals(position.pk, OrderLeg.EXIT)
    bought, premium, entry_charges = _leg_totals(position.pk, OrderLeg.ENTRY)
    charges = entry_charges + exit_charges
    PositionTracker.objects.filter(pk=position.pk).update(charges=charges)
    if sold < bought:
        return
    gross = (proceeds - premium).quantize(Decimal("0.01"))
    PositionTracker.objects.filter(
        pk=position.pk, status__in=position_sources(PositionState.EXITED)
    ).update(
        status=PositionState.EXITED,
        exited_at=at,
        exit_price=(proceeds / sold).quantize(PRICE_PLACES),
        gross_pnl=gross,
        realized_pnl=gross - charges,
    )


def _settle(position_id: int, at: datetime) -> None:
    """After an order became final: an entry whose orders are all final with no unit filled
    is cancelled (the position never existed at the broker)."""
    orders = Order.objects.filter(position_id=position_id, leg=OrderLeg.ENTRY)
    if orders.filter(status__in=WORKING).exists():
        return
    filled = orders.aggregate(total=Sum("filled_quantity"))["total"] or 0
    if filled == 0:
        PositionTracker.objects.filter(
            pk=position_id, status__in=position_sources(PositionState.CANCELLED)
        ).update(status=PositionState.CANCELLED, exited_at=at)


def open_entry_quantity(position_id: int) -> int:
    """Units the working entry orders of a position may still buy."""
    rows = Order.objects.filter(
        position_id=position_id, leg=OrderLeg.ENTRY, status__in=WORKING
    ).aggregate(left=Sum(F("quantity") - F("filled_quantity")))
    return rows["left"] or 0
