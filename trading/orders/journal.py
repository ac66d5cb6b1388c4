"""The order journal: every database write of the order life, each a conditional update.

Who calls what (ARCHITECTURE "exactly once"):

* the router (signal engine, exit engine, API) journals orders before it sends them
  (:func:`journal_entry`, :func:`journal_exit`) and records what the broker answered to its own
  send (:func:`record_ack`, :func:`record_rejection`);
* the process that owns order events (``run_order_updates``, or ``run_trader``'s component)
  applies every broker event (:func:`apply_event`): status moves, fills, the position's life
  and the paper ledger, atomically per event.

Every transition is ``UPDATE ... WHERE <the states it may come from>`` checked by its row count
(trading/orders/states.py), so two writers never both move one order or one position, and an
event applied twice changes nothing the second time (a fill is unique per order and trade id).

The rules live here, in Python: :func:`_plan` decides every value an event writes (fills and
their charges, the order's quantity and average, the position's life, the ledger rows) from
the order's state and the pure state table. On PostgreSQL each transition is then ONE
statement, one round trip (trading/orders/journal_sql.py: it checks the state the plan was
made from and applies it, or writes nothing and returns the state as it is); on SQLite (in
process, no round trips) the ORM applies the same plan statement by statement in one
transaction.
"""

from __future__ import annotations

import logging
import secrets
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, connection, transaction
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
from trading.orders.failpoints import failpoint
from trading.orders.intent import EntryIntent
from trading.orders.journal_sql import (
    ClaimedExit,
    LegSums,
    OrderState,
    claim_exit_returning,
    insert_entry,
    insert_entry_in_process,
    insert_exit_orders,
    is_postgres,
    run_event,
    run_final,
    settle,
    update_order,
)
from trading.orders.journal_sql import claim_exit_with_orders as claim_exit_with_orders_sql
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
    "claim_exit_at_once",
    "claim_send",
    "entry_correlation_id",
    "exit_correlation_id",
    "id_salt",
    "journal_entry",
    "journal_entry_orders",
    "journal_exit",
    "journal_first_exit",
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
    journaled = journal_entry_orders(intent, mode=mode, derivative_id=derivative_id)
    if journaled is None:
        raise ValueError(f"derivative #{derivative_id} is not in the catalog")
    return journaled[0]


def journal_entry_orders(
    intent: EntryIntent,
    *,
    mode: str,
    derivative_id: int | None = None,
    send_at: datetime | None = None,
) -> tuple[PositionTracker, list[Order] | None] | None:
    """:func:`journal_entry`, with the orders it wrote (so the router sends them without
    reading them back); None for the orders when the signal was journaled before (the
    caller reads what is left to send). Without ``derivative_id`` the contract is looked up
    by the intent's segment and security id (on PostgreSQL in the journal's own statement, on
    SQLite in its transaction); None when the catalog does not have it.

    With ``send_at`` the orders are written with their send already claimed (``sent_at``, as
    :func:`claim_send` would set it): the caller sends them next and nobody else may. One
    write before the send instead of two; a crash between this write and the send leaves
    orders that look sent without an answer, which the resolver looks up by correlation id
    (it does so before closing any order), finds absent and closes: the same end as an
    unsent order's, never a send late."""
    position = PositionTracker(
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
    orders = [
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
            sent_at=send_at,
        )
        for leg, quantity in enumerate(intent.orders)
    ]
    # PostgreSQL: one statement (the contract, INSERT ... ON CONFLICT (signal) DO NOTHING, the
    # orders from its row); SQLite: the same rows through SQL built once, one transaction.
    insert = insert_entry if is_postgres() else insert_entry_in_process
    written = insert(position, orders)
    if written is None:
        return None
    derivative, position_id, ids = written
    if position_id is None:  # another router journaled this signal first (or a re-hand)
        return PositionTracker.objects.get(signal_id=intent.signal_id), None
    position.pk, position.derivative_id = position_id, derivative
    position._state.adding = False
    for order, pk in zip(orders, ids, strict=True):
        order.pk, order.position_id = pk, position.pk
        order._state.adding = False
    _remember_new(position, orders)
    return position, orders


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
        **_decision(exit_type, reason, trigger_price, inputs, decided_at, tick_at),
    )
    return claimed == 1


def _decision(
    exit_type: str,
    reason: str,
    trigger_price: Decimal | None = None,
    inputs: Mapping[str, Any] | None = None,
    decided_at: datetime | None = None,
    tick_at: datetime | None = None,
) -> dict[str, Any]:
    """The position's columns a claim writes with it (both claims: the ORM's and SQL's)."""
    return {
        "exit_type": exit_type,
        "exit_reason": reason,
        "exit_trigger_price": trigger_price,
        "exit_inputs": dict(inputs or {}),
        "exit_decided_at": decided_at,
        "exit_tick_at": tick_at,
    }


def claim_exit_at_once(
    position_id: int,
    exit_type: str,
    reason: str,
    *,
    trigger_price: Decimal | None = None,
    inputs: Mapping[str, Any] | None = None,
    decided_at: datetime | None = None,
    tick_at: datetime | None = None,
) -> ClaimedExit | None:
    """:func:`claim_exit` in one PostgreSQL statement that also reads back what the exit
    orders need (the units, the contract's lot and tick, whether entry orders still work);
    None when the position was not active."""
    return claim_exit_returning(
        position_id, _decision(exit_type, reason, trigger_price, inputs, decided_at, tick_at)
    )


def exit_order_rows(
    position_id: int,
    claimed: ClaimedExit,
    orders: Sequence[int],
    limit_price: Decimal,
    at: datetime,
    *,
    send_at: datetime | None = None,
) -> list[Order]:
    """The first exit orders (generation 0, UNKNOWN) of a position, selling ``orders`` units
    each, as unsaved rows: what :func:`journal_first_exit` and :func:`claim_exit_with_orders`
    write."""
    return [
        Order(
            correlation_id=exit_correlation_id(position_id, leg, 0),
            position_id=position_id,
            leg=OrderLeg.EXIT,
            leg_index=leg,
            generation=0,
            side=OrderSide.SELL,
            mode=claimed.mode,
            exchange_segment=claimed.exchange_segment,
            security_id=claimed.security_id,
            quantity=quantity,
            limit_price=limit_price,
            placed_at=at,
            priced_at=at,
            sent_at=send_at,
        )
        for leg, quantity in enumerate(orders)
    ]


def _saved(rows: list[Order], ids: Sequence[int]) -> list[Order]:
    for row, pk in zip(rows, ids, strict=True):
        row.pk = pk
        row._state.adding = False
    return rows


def journal_first_exit(position_id: int, rows: list[Order]) -> list[Order] | None:
    """The first exit orders of a position this caller just claimed (:func:`exit_order_rows`),
    as :func:`journal_exit` writes them, in one PostgreSQL statement; None when a slot was
    taken meanwhile (another driver of the exit journaled first). Rows built with ``send_at``
    are written with their send claimed by this caller (``sent_at``, as
    :func:`journal_entry_orders` does): one round trip less before the send; a crash before
    it leaves UNKNOWN orders "sent", which the order manager looks up by correlation id and,
    not found at the broker, sends (an exit never gives up)."""
    ids = insert_exit_orders(position_id, rows)
    return None if ids is None else _saved(rows, ids)


def claim_exit_with_orders(
    position_id: int,
    exit_type: str,
    reason: str,
    expect: ClaimedExit,
    rows: list[Order],
    *,
    inert: bool = False,
    **decision: Any,
) -> tuple[ClaimedExit | None, list[Order] | None]:
    """:func:`claim_exit_at_once` and :func:`journal_first_exit` in one PostgreSQL statement,
    the orders (:func:`exit_order_rows`) built from the facts the caller expects the position
    to have (``expect``). Returns what the claim read back (None: not active, nothing written)
    and the journaled orders, or None for them when the claim found other facts, an entry
    order still working or a slot taken: the caller goes on from what was read back, as after
    :func:`claim_exit_at_once`. ``decision``: the rule's trigger_price, inputs, decided_at and
    tick_at, as :func:`claim_exit_at_once` takes them. ``inert``: the same statement matching
    no row (journal_sql.claim_exit_with_orders; the router's warm-up)."""
    columns = _decision(exit_type, reason, **decision)
    claimed, ids = claim_exit_with_orders_sql(position_id, columns, expect, rows, inert=inert)
    if claimed is None or any(pk is None for pk in ids):
        return claimed, None
    return claimed, _saved(rows, ids)


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
    unknown = (JournalStatus.UNKNOWN,)
    return update_order(order.pk, {"sent_at": at}, status_in=unknown, unsent=True) == 1


def record_ack(order: Order, broker_order_id: str, status: str, at: datetime) -> bool:
    """The broker accepted our send: UNKNOWN -> TRANSIT/PENDING with its order id. False when
    the order had moved already (an event got there first); the broker id is kept either way.
    A final state is never taken from an acknowledgement (it would skip the settling of the
    position and the reason): it is recorded as TRANSIT and the event brings the rest."""
    if status in FINAL:
        status = JournalStatus.TRANSIT
    # Committed without waiting for the write-ahead log's flush (PostgreSQL's per-transaction
    # synchronous_commit off): the write that must be durable is the journal's, before the
    # send. A server crash that loses this one leaves the order UNKNOWN and sent, which the
    # resolver looks up by correlation id and applies: nothing is sent twice.
    moved = update_order(
        order.pk,
        {"status": status, "broker_order_id": broker_order_id},
        status_in=sources(status),
        durable=False,
    )
    if not moved:
        update_order(
            order.pk, {"broker_order_id": broker_order_id}, no_broker_id=True, durable=False
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
    fields = {"rejection_reason": reason[:2000], "final_at": at, "sent_at": at}
    if is_postgres():
        unknown = (JournalStatus.UNKNOWN,)
        return run_final(order.pk, JournalStatus.CANCELLED, unknown, fields, at, unsent_only=True)
    with transaction.atomic():
        moved = Order.objects.filter(
            pk=order.pk, status=JournalStatus.UNKNOWN, sent_at=None
        ).update(status=JournalStatus.CANCELLED, **fields)
        if moved:
            _settle(order.pk, order.position_id, at)
    return moved == 1


def record_rejection(order: Order, reason: str, at: datetime) -> bool:
    """The broker refused the send (Dhan's reason kept); settles the position if that ended
    its entry."""
    fields = {"rejection_reason": reason[:2000], "final_at": at}
    status_from = sources(JournalStatus.REJECTED)
    if is_postgres():
        return run_final(order.pk, JournalStatus.REJECTED, status_from, fields, at)
    with transaction.atomic():
        moved = Order.objects.filter(pk=order.pk, status__in=status_from).update(
            status=JournalStatus.REJECTED, **fields
        )
        if moved:
            _settle(order.pk, order.position_id, at)
    return moved == 1


# -- events (the owner of order events) ---------------------------------------------------------


def apply_event(event: OrderEvent, charges: ChargesFn, *, paper: bool) -> bool:
    """Apply one broker event atomically: the new trades (fills, their charges, the order's
    filled quantity and average, the position's quantity and prices, the paper ledger), then
    the status move. Returns True when anything changed. A late or repeated event changes
    nothing and is logged.

    The values are decided here (:func:`_plan`, from the order's state and the pure state
    table); on PostgreSQL one statement applies them (trading/orders/journal_sql.py), on
    SQLite the ORM does, statement by statement in one transaction."""
    if event.trades or event.filled:
        # Every path that books a fill comes here (the order-update stream, the REST
        # read-backs, a resync, a lookup by correlation id), so the crash point is here too.
        failpoint("event:received")
    if is_postgres():
        return _apply_postgres(event, charges, paper=paper)
    with transaction.atomic():
        state = _read_state(event)
        if state is None:
            _unknown(event)
            return False
        plan = _plan(state, event, charges, paper=paper)
        return _apply_orm(state, plan, event)


# At most this many orders' states are remembered (the orders of a day are far fewer).
_KNOWN_MAX = 4096
_known: dict[str, OrderState] = {}  # correlation id -> the order's state after its last write
_broker_ids: dict[str, str] = {}  # broker order id -> correlation id
_positions: dict[int, tuple[LegSums, LegSums]] = {}  # position -> (entry, exit) fills


def _remember(state: OrderState) -> None:
    """Keep what this process last wrote or read of an order: the prediction the next event
    statement checks (never trusted: a wrong one costs a second round trip, nothing else)."""
    if len(_known) >= _KNOWN_MAX:
        _known.clear()
        _broker_ids.clear()
        _positions.clear()
    _known[state.correlation_id] = state
    if state.broker_order_id:
        _broker_ids[state.broker_order_id] = state.correlation_id
    _positions[state.position_id] = (state.entry, state.exit)


def _remember_new(position: PositionTracker, orders: Sequence[Order]) -> None:
    if not is_postgres():
        return
    for order in orders:
        _remember(
            OrderState(
                id=order.pk,
                correlation_id=order.correlation_id,
                position_id=position.pk,
                leg=order.leg,
                side=order.side,
                exchange_segment=order.exchange_segment,
                quantity=order.quantity,
                status=order.status,
                broker_order_id=order.broker_order_id,
                filled=0,
                charges=Decimal(0),
                turnover=Decimal(0),
                entry=LegSums(),
                exit=LegSums(),
                booked=frozenset(),
            )
        )


def _predicted(event: OrderEvent) -> OrderState | None:
    cid = event.correlation_id or _broker_ids.get(event.broker_order_id or "")
    state = _known.get(cid or "")
    if state is None:
        return None
    entry, exit_ = _positions.get(state.position_id, (state.entry, state.exit))
    return replace(state, entry=entry, exit=exit_)


def _needs_state(event: OrderEvent) -> bool:
    """Whether the event's effect depends on the order's fills (it carries trades, or a
    cumulative filled quantity); a bare status move does not."""
    return bool(event.trades) or bool(event.filled and event.average)


def _apply_postgres(event: OrderEvent, charges: ChargesFn, *, paper: bool) -> bool:
    trade_ids = [trade.trade_id for trade in event.trades]
    if event.filled:
        trade_ids.append(f"cum-{event.filled}")
    needs = _needs_state(event)
    predicted = _predicted(event) if needs else None
    for _attempt in range(4):
        if needs and predicted is None:
            plan = None  # a probe: the state, nothing written
        else:
            plan = _plan(predicted, event, charges, paper=paper)
        try:
            result = run_event(
                correlation_id=event.correlation_id,
                broker_order_id=event.broker_order_id,
                trade_ids=trade_ids,
                predicted=predicted,
                plan=plan,
            )
        except IntegrityError:
            # A trade booked meanwhile by another writer: price again from the database.
            if connection.in_atomic_block:
                raise
            predicted = None
            continue
        if result.state is None:
            _unknown(event)
            return False
        if plan is None or not result.verified:
            predicted = result.state
            continue
        return _settled(result, plan, event)
    raise RuntimeError(
        f"order {event.correlation_id or event.broker_order_id}: its state kept changing "
        "under the event (another process books its fills?)"
    )


def _settled(result: Any, plan: _Plan, event: OrderEvent) -> bool:
    """What the statement did, as the ORM path reports it; the state remembered."""
    before = result.state
    moved = result.updated and before.status in plan.status_from
    after = plan.after if plan.after is not None else before
    _remember(
        replace(
            after,
            status=plan.status if moved else before.status,
            broker_order_id=before.broker_order_id or event.broker_order_id or "",
        )
    )
    if not moved and plan.status != before.status:
        _late(before, plan.status)
    return bool(plan.fills) or moved


def _unknown(event: OrderEvent) -> None:
    logger.warning(
        "order event for an order the journal does not know: %s %s",
        event.correlation_id or event.broker_order_id,
        event.status,
    )


def _late(state: OrderState, new: str) -> None:
    logger.info(
        "order %s: %s after %s ignored (an order never moves back)",
        state.correlation_id,
        new,
        state.status,
    )


@dataclass(frozen=True, slots=True)
class _NewFill:
    trade_id: str
    quantity: int
    price: Decimal
    charges: Decimal
    ledger: tuple[tuple[str, Decimal], ...]  # paper: (kind, signed amount) rows


@dataclass(frozen=True, slots=True)
class _Plan:
    """Everything one event changes, decided from the order's state before it. The writers
    (journal_sql on PostgreSQL, :func:`_apply_orm` on SQLite) apply it and decide nothing."""

    at: datetime
    fills: tuple[_NewFill, ...]
    filled: int  # the order after its new fills
    average: Decimal | None
    charges: Decimal
    position: dict[str, Any]  # set on the position with the fills
    activate: bool  # pending -> active (entry_at = at), when it is pending
    exited: dict[str, Any] | None  # exiting -> exited with these, when it is exiting
    status: str  # the event's status: applied only from status_from
    status_from: tuple[str, ...]
    final: dict[str, Any]  # set with a move to a final status
    settle: bool  # a move to a final status with no new fill: may cancel the position
    after: OrderState | None  # the state after (None: the plan did not read it)


def _plan(state: OrderState | None, event: OrderEvent, charges: ChargesFn, *, paper: bool) -> _Plan:
    """The rules of one event (the module docstring; states.py for the status). ``state``
    may be None only for an event without trades (a bare status move)."""
    fills: list[_NewFill] = []
    position: dict[str, Any] = {}
    activate, exited = False, None
    after = state
    if state is not None:
        filled, turnover, total = state.filled, state.turnover, state.charges
        entry, exit_ = state.entry, state.exit
        booked = set(state.booked)
        day = event.at.astimezone(IST).date()
        for trade in (*event.trades, *_cumulative_trade(state, event)):
            if trade.quantity <= 0 or trade.trade_id in booked:
                continue  # applied before (the same update twice, the REST read after the WS)
            if filled + trade.quantity > state.quantity:
                logger.error(
                    "order %s: trade %s of %d units would fill %d of %d: ignored",
                    state.correlation_id,
                    trade.trade_id,
                    trade.quantity,
                    filled + trade.quantity,
                    state.quantity,
                )
                continue
            value = trade.price * trade.quantity
            filled, turnover = filled + trade.quantity, turnover + value
            new_total = charges(state.exchange_segment, state.side, filled, turnover, day)
            fill_charges, total = new_total - total, new_total
            booked.add(trade.trade_id)
            fills.append(
                _NewFill(
                    trade.trade_id,
                    trade.quantity,
                    trade.price,
                    fill_charges,
                    _ledger(state.side, value, fill_charges) if paper else (),
                )
            )
            if state.leg == OrderLeg.ENTRY:
                # pending -> active on the first entry fill; the quantity and the entry
                # price follow the entry fills (their average).
                entry = entry.plus(trade.quantity, value, fill_charges)
                activate = True
                position = {
                    "quantity": entry.units,
                    "entry_price": (entry.turnover / entry.units).quantize(PRICE_PLACES),
                    "charges": entry.charges + exit_.charges,
                }
            else:
                # The last exit unit: exited, with exit price, gross, charges and net PnL.
                exit_ = exit_.plus(trade.quantity, value, fill_charges)
                position = {"charges": entry.charges + exit_.charges}
                if exit_.units >= entry.units and exited is None:
                    gross = (exit_.turnover - entry.turnover).quantize(Decimal("0.01"))
                    exited = {
                        "exited_at": event.at,
                        "exit_price": (exit_.turnover / exit_.units).quantize(PRICE_PLACES),
                        "gross_pnl": gross,
                        "realized_pnl": gross - position["charges"],
                    }
        after = replace(
            state,
            filled=filled,
            turnover=turnover,
            charges=total,
            entry=entry,
            exit=exit_,
            booked=frozenset(booked),
        )
    elif _needs_state(event):
        raise ValueError("an event with trades needs the order's state")
    new = JournalStatus(event.status)
    final: dict[str, Any] = {}
    if new in FINAL:
        final["final_at"] = event.at
        if event.reason:
            # Why it ended, whatever the end: Dhan's rejection, the session's close, a lookup
            # that found the broker never received it.
            final["rejection_reason"] = event.reason[:2000]
    return _Plan(
        at=event.at,
        fills=tuple(fills),
        filled=after.filled if after is not None else 0,
        average=(after.turnover / after.filled).quantize(PRICE_PLACES) if fills else None,
        charges=after.charges if after is not None else Decimal(0),
        position=position,
        activate=activate,
        exited=exited,
        status=new,
        status_from=sources(new),
        final=final,
        settle=new in FINAL and not fills,
        after=after,
    )


def _ledger(side: str, value: Decimal, fill_charges: Decimal) -> tuple[tuple[str, Decimal], ...]:
    """The paper ledger of one fill: premium out (buy) or proceeds in (sell), the charges."""
    money = value.quantize(Decimal("0.01"))
    rows = [
        (LedgerKind.PREMIUM.value, -money)
        if side == OrderSide.BUY
        else (LedgerKind.PROCEEDS.value, money)
    ]
    if fill_charges:
        rows.append((LedgerKind.CHARGES.value, -fill_charges))
    return tuple(rows)


def _cumulative_trade(state: OrderState, event: OrderEvent) -> tuple[TradeFill, ...]:
    """The units of a cumulative report not booked yet, as one trade (see OrderEvent)."""
    if event.filled is None or event.filled <= state.filled or not event.average:
        return ()
    units = event.filled - state.filled
    price = ((event.average * event.filled - state.turnover) / units).quantize(PRICE_PLACES)
    if price <= 0:  # the broker's average is rounded; never book a free or negative trade
        price = event.average
    return (TradeFill(f"cum-{event.filled}", units, price),)


# -- SQLite: the same plan, statement by statement in one transaction ----------------------------


def _read_state(event: OrderEvent) -> OrderState | None:
    """The order (locked where the database locks rows) and the fills of its position."""
    query = Order.objects.select_for_update()
    order = None
    if event.correlation_id:
        order = query.filter(correlation_id=event.correlation_id).first()
    if order is None and event.broker_order_id:
        order = query.filter(broker_order_id=event.broker_order_id).first()
    if order is None:
        return None
    legs = {OrderLeg.ENTRY: LegSums(), OrderLeg.EXIT: LegSums()}
    turnover = Decimal(0)
    wanted = {trade.trade_id for trade in event.trades}
    if event.filled:
        wanted.add(f"cum-{event.filled}")
    booked = set()
    for order_id, leg, trade_id, quantity, price, fill_charges in Fill.objects.filter(
        order__position_id=order.position_id
    ).values_list("order_id", "order__leg", "trade_id", "quantity", "price", "charges"):
        legs[leg] = legs[leg].plus(quantity, price * quantity, fill_charges)
        if order_id == order.pk:
            turnover += price * quantity
            if trade_id in wanted:
                booked.add(trade_id)
    return OrderState(
        id=order.pk,
        correlation_id=order.correlation_id,
        position_id=order.position_id,
        leg=order.leg,
        side=order.side,
        exchange_segment=order.exchange_segment,
        quantity=order.quantity,
        status=order.status,
        broker_order_id=order.broker_order_id,
        filled=order.filled_quantity,
        charges=order.charges,
        turnover=turnover,
        entry=legs[OrderLeg.ENTRY],
        exit=legs[OrderLeg.EXIT],
        booked=frozenset(booked),
    )


def _apply_orm(state: OrderState, plan: _Plan, event: OrderEvent) -> bool:
    for new in plan.fills:
        fill = Fill.objects.create(
            order_id=state.id,
            trade_id=new.trade_id,
            quantity=new.quantity,
            price=new.price,
            charges=new.charges,
            traded_at=plan.at,
        )
        LedgerEntry.objects.bulk_create(
            LedgerEntry(kind=k, amount=a, fill=fill, position_id=state.position_id, at=plan.at)
            for k, a in new.ledger
        )
    positions = PositionTracker.objects.filter(pk=state.position_id)
    if plan.fills:
        moved = Order.objects.filter(pk=state.id, filled_quantity=state.filled).update(
            filled_quantity=plan.filled, average_price=plan.average, charges=plan.charges
        )
        if moved != 1:  # cannot happen under the transaction's lock; never book a fill twice
            raise IntegrityError(f"order {state.correlation_id} changed under its fill")
        if plan.activate:
            positions.filter(status__in=position_sources(PositionState.ACTIVE)).update(
                status=PositionState.ACTIVE, entry_at=plan.at
            )
        positions.update(**plan.position)
        if plan.exited is not None:
            positions.filter(status__in=position_sources(PositionState.EXITED)).update(
                status=PositionState.EXITED, **plan.exited
            )
    if event.broker_order_id and not state.broker_order_id:
        Order.objects.filter(pk=state.id).update(broker_order_id=event.broker_order_id)
    changed = bool(plan.fills)
    if plan.status == state.status:
        return changed
    if not can_move(state.status, plan.status):
        _late(state, plan.status)
        return changed
    moved = Order.objects.filter(pk=state.id, status__in=plan.status_from).update(
        status=plan.status, **plan.final
    )
    if moved and plan.status in FINAL:
        _settle(state.id, state.position_id, plan.at)
    return changed or moved == 1


def _settle(order_id: int, position_id: int, at: datetime) -> None:
    """After an order became final (SQLite; PostgreSQL does it in the same statement): an
    entry whose orders are all final with no unit filled is cancelled (the position never
    existed at the broker)."""
    settle(order_id, position_id, connection.ops.adapt_datetimefield_value(at))


def open_entry_quantity(position_id: int) -> int:
    """Units the working entry orders of a position may still buy."""
    rows = Order.objects.filter(
        position_id=position_id, leg=OrderLeg.ENTRY, status__in=WORKING
    ).aggregate(left=Sum(F("quantity") - F("filled_quantity")))
    return rows["left"] or 0
