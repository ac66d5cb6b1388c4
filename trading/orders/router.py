"""The order router: one interface for entries (the signal engine) and exits (the exit engine,
the manual exit of the API and the admin).

It journals first and sends second (trading/orders/journal.py), through the gateway of the
current mode (trading/orders/gateway.py), and prices every order as a marketable limit from
the current book (``orders.limit_buffer_pct`` of config/algo.yml, rounded to the tick in the
order's favour of filling). Re-pricing an unfilled order and resolving an order whose send had
no answer are the order manager's (workers/order_manager.py): it calls :meth:`reprice`,
:meth:`cancel` and :meth:`send` here, so every send of the system goes through this one class.

Sends never repeat blindly: :meth:`send` sends only an order in UNKNOWN, and records what the
broker answered: an acknowledgement (TRANSIT with the broker's order id), a rejection with
Dhan's reason (the order and, when it was the entry's last, the position end there), or
nothing when the answer was lost (``UnknownOutcome``: the order stays UNKNOWN and the manager
looks it up by correlation id before anything is sent again).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, NoReturn

from django.db import transaction

from trading.config.types import AlgoConfig
from trading.dhan.errors import AuthFailure, DhanError, Rejected, Retryable, UnknownOutcome
from trading.models import Order, OrderLeg, OrderSide, PositionTracker
from trading.orders.acks import AckWriter
from trading.orders.failpoints import failpoint
from trading.orders.gateway import Gateway, OrderEnded
from trading.orders.intent import (
    REJECTED,
    ROUTED,
    EntryIntent,
    RouterResult,
    marketable_limit,
    marketable_sell_limit,
)
from trading.orders.journal import (
    claim_exit,
    claim_exit_at_once,
    claim_exit_with_orders,
    claim_send,
    exit_order_rows,
    journal_entry_orders,
    journal_exit,
    journal_first_exit,
    open_entry_quantity,
    record_ack,
    record_rejection,
    record_reprice,
)
from trading.orders.journal_sql import ClaimedExit, is_postgres
from trading.orders.states import WORKING, JournalStatus, PositionState
from trading.rules.market import IST
from trading.rules.sizing import split_for_freeze

logger = logging.getLogger(__name__)

__all__ = ["ExitRefused", "OrderRouter", "Quote"]

# (bid, ask, ltp) of a contract now, rupees; None when nothing fresh is known. The router
# prices from it; it never prices from an old tick (the caller decides what fresh means).
Quoted = tuple[Decimal | None, Decimal | None, Decimal | None]  # (bid, ask, ltp)
Quote = Callable[[str], "Quoted | None"]


# Runs of the warm-up's claim: PostgreSQL plans a prepared statement for its parameters five
# times before it weighs one generic plan (plan_cache_mode auto).
WARM_RUNS = 6


class ExitRefused(Exception):
    """The position cannot be exited now: not active (already exiting, exited, still
    pending), or unknown. The API answers 409 (404 for unknown)."""


class OrderRouter:
    """See the module docstring. ``clock()`` is market time (epoch seconds)."""

    def __init__(
        self,
        gateway: Gateway,
        *,
        config_source: Callable[[], AlgoConfig],
        clock: Callable[[], float],
        quote: Quote,
        freeze_quantity: Callable[[PositionTracker], int],
        acks: AckWriter | None = None,
    ) -> None:
        self.gateway = gateway
        # Where the broker's acknowledgements are written: on the sender's thread (None), or
        # off it by a long-running sender's writer (trading/orders/acks.py).
        self.acks = acks
        self.config_source = config_source
        self.clock = clock
        self.quote = quote
        self.freeze_quantity = freeze_quantity

    @property
    def mode(self) -> str:
        return self.gateway.mode

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), IST)

    # -- entries ---------------------------------------------------------------------------

    def place_entry(self, intent: EntryIntent) -> RouterResult:
        """Journal the pending position and its orders, send each unsent one. Idempotent per
        signal: a re-handed intent sends nothing already sent."""
        now = self.now()
        journaled_entry = journal_entry_orders(intent, mode=self.mode, send_at=now)
        if journaled_entry is None:
            return RouterResult(REJECTED, f"{intent.key} is not in the catalog")
        position, journaled = journaled_entry
        failpoint("entry:journaled")
        if journaled is not None:
            # Just written, every one UNKNOWN with its send claimed for this call: send them.
            outcomes = [self.send(order, claimed_at=now) for order in journaled]
        else:
            # Journaled before: only orders written without a claim (none since the journal
            # claims as it writes) may be sent; the rest belong to their first sender.
            unsent = position.orders.filter(
                leg=OrderLeg.ENTRY, status=JournalStatus.UNKNOWN, sent_at=None
            )
            outcomes = [self.send(order) for order in unsent]
        refused = [text for text in outcomes if text.startswith("rejected")]
        if outcomes and len(refused) == len(outcomes):
            return RouterResult(REJECTED, "; ".join(refused))
        sent = sum(1 for text in outcomes if text == "sent")
        detail = f"position #{position.pk}: {sent} of {len(outcomes)} order(s) sent"
        if sent + len(refused) < len(outcomes):
            detail += f"; {len(outcomes) - sent - len(refused)} without an answer yet"
        return RouterResult(ROUTED, detail)

    # -- exits -----------------------------------------------------------------------------

    def exit_position(
        self,
        position_id: int,
        exit_type: str,
        reason: str,
        *,
        quote: Quoted | None = None,
        expect: ClaimedExit | None = None,
        **decision: Any,
    ) -> RouterResult:
        """Claim an active position (active -> exiting, one caller wins) and send its exit.
        ``decision``: the rule's trigger_price, inputs, decided_at, tick_at (journal.claim_exit
        records them with the claim). ``quote``: the contract's fresh (bid, ask, ltp) the
        caller holds (the exit engine's deciding tick), instead of reading it again.
        ``expect``: the position's facts as the caller holds them (units, contract, lot and
        tick; ``entry_working`` False), from which the exit orders are built before the
        claim and journaled in the claim's own statement on PostgreSQL; the claim checks them.
        ExitRefused when it is not active (another exit has it, or it is not open)."""
        if is_postgres():
            return self._exit_at_once(position_id, exit_type, reason, decision, quote, expect)
        if not claim_exit(position_id, exit_type, reason, **decision):
            self._refuse(position_id)
        logger.warning("position #%d: exit %s claimed: %s", position_id, exit_type, reason)
        position = PositionTracker.objects.get(pk=position_id)
        return self.continue_exit(position, quote=quote)

    def warm_up(self) -> bool:
        """Run the exit's claim as for a real decision, but inert: for position -1 (no id the
        database hands out) and with statuses no row can have (journal_sql's ``inert``), so
        it matches nothing, writes nothing and sends nothing, whatever the table holds. What
        it warms is what a thread's first exits paid otherwise (10-20 ms more than the next
        ones, measured in the exit engine's route process): the PostgreSQL backend's catalog
        caches for the claim's tables, the statement prepared on this connection and past
        PostgreSQL's first five custom plans (:data:`WARM_RUNS` runs), and this interpreter's
        first pass through the building of the exit orders. PostgreSQL only (the
        one-statement claim); True when it ran, else False (SQLite, no index configured, or a
        failure, logged at DEBUG: the first exits then pay it, as before)."""
        if not is_postgres():
            return False
        config = self.config_source()
        if not config.indices:
            return False
        facts = ClaimedExit(
            quantity=1,
            underlying=config.indices[0].key,
            mode=self.mode,
            exchange_segment="NSE_FNO",
            security_id=0,
            lot_size=1,
            tick_size=Decimal("0.05"),
            entry_working=False,
        )
        price = Decimal("100")
        now = self.now()
        try:
            planned = self._first_exit(-1, facts, (price, price, price))
            if planned is None:
                return False
            rows = exit_order_rows(-1, facts, *planned, now, send_at=now)
            for _ in range(WARM_RUNS):
                claimed, _orders = claim_exit_with_orders(
                    -1,
                    "MANUAL",
                    "warm-up",
                    facts,
                    rows,
                    inert=True,
                    trigger_price=price,
                    inputs={"warm_up": True},
                    decided_at=now,
                    tick_at=now,
                )
                if claimed is not None:  # cannot be (inert): never go on with it
                    logger.error("exit path warm-up: the inert claim matched a row")
                    return False
        except Exception as exc:  # a warm-up never stops a worker
            logger.debug("exit path warm-up skipped: %s: %s", type(exc).__name__, exc)
            return False
        return True

    def _refuse(self, position_id: int) -> NoReturn:
        status = (
            PositionTracker.objects.filter(pk=position_id).values_list("status", flat=True).first()
        )
        if status is None:
            raise ExitRefused(f"position #{position_id} does not exist")
        raise ExitRefused(f"position #{position_id} is {status}, not active")

    def _first_exit(
        self, position_id: int, facts: ClaimedExit, quote: Quoted | None
    ) -> tuple[list[int], Decimal] | None:
        """The first exit orders' units and limit price for a position of these facts; None
        when they cannot be built now (entry orders working, no units, no fresh price)."""
        if facts.entry_working or facts.quantity <= 0:
            return None
        key = f"{facts.exchange_segment}:{facts.security_id}"
        price = self._sell_limit(key, facts.tick_size, quote)
        if price is None:
            return None
        position = PositionTracker(
            pk=position_id, underlying=facts.underlying, quantity=facts.quantity
        )
        quantities = split_for_freeze(
            facts.quantity, facts.lot_size, self.freeze_quantity(position)
        )
        return quantities, price

    def _exit_at_once(
        self,
        position_id: int,
        exit_type: str,
        reason: str,
        decision: dict[str, Any],
        quote: Quoted | None = None,
        expect: ClaimedExit | None = None,
    ) -> RouterResult:
        """:meth:`exit_position` on PostgreSQL, in the fewest round trips that keep each step
        recoverable. With ``expect`` (the facts the caller holds) and a price: the claim and
        the first exit orders with their send claimed in ONE statement, then the send. Else,
        or when the claim read back other facts: the claim reading back the units and the
        contract (one statement), the first exit orders with their send claimed (one), then
        the send (the request, the ack; the ack by the AckWriter when the router has one).
        ``quote``: see exit_position. Anything unusual (entry orders still working, a slot
        another driver took, no price) goes the general way, :meth:`continue_exit`, which the
        order manager also drives."""
        planned = None
        if expect is not None:
            try:
                planned = self._first_exit(position_id, expect, quote)
            except ValueError:  # facts that make no orders (units not whole lots): the row's
                planned = None
        orders = None
        if planned is not None:
            now = self.now()
            rows = exit_order_rows(position_id, expect, *planned, now, send_at=now)
            claimed, orders = claim_exit_with_orders(
                position_id, exit_type, reason, expect, rows, **decision
            )
        else:
            claimed = claim_exit_at_once(position_id, exit_type, reason, **decision)
        if claimed is None:
            self._refuse(position_id)
        logger.warning("position #%d: exit %s claimed: %s", position_id, exit_type, reason)
        failpoint("exit:claimed")
        if orders is None:
            planned = self._first_exit(position_id, claimed, quote)
            if planned is not None:
                now = self.now()
                rows = exit_order_rows(position_id, claimed, *planned, now, send_at=now)
                orders = journal_first_exit(position_id, rows)
        if orders is None:
            return self.continue_exit(PositionTracker.objects.get(pk=position_id))
        outcomes = [self.send(order, claimed_at=now) for order in orders]
        return RouterResult(ROUTED, f"exit orders: {', '.join(outcomes)}")

    def continue_exit(
        self, position: PositionTracker, *, quote: Quoted | None = None
    ) -> RouterResult:
        """Drive a claimed (exiting) position: cancel entry orders still working first (they
        could buy more than the exit sells), then journal the exit orders for the units held
        and send every unsent one. Called again by the order manager until it is done."""
        if open_entry_quantity(position.pk):
            for order in position.orders.filter(leg=OrderLeg.ENTRY, status__in=WORKING):
                if order.cancel_requested_at is None and order.status != JournalStatus.UNKNOWN:
                    self.cancel(order)
            return RouterResult(ROUTED, "waiting for the entry orders to end")
        with transaction.atomic():
            # One driver at a time decides the next exit orders of a position (the order
            # manager, the exit engine, a manual exit may all drive one): the row lock, which
            # the journal also takes to book an exit fill, makes the units sold and the orders
            # still working one consistent view. Read without it, a fill booked between the
            # two reads looks like "nothing sold, nothing working" and the position is sold
            # twice.
            position = (
                PositionTracker.objects.select_for_update()
                .select_related("derivative")
                .get(pk=position.pk)
            )
            if position.status != PositionState.EXITING:
                return RouterResult(ROUTED, f"position is {position.status}")
            exits = position.orders.filter(leg=OrderLeg.EXIT)
            sold = sum(exits.values_list("filled_quantity", flat=True))
            left = position.quantity - sold
            if left > 0 and not exits.filter(status__in=WORKING).exists():
                # The first exit, or the next generation after every working exit order ended
                # (cancelled to re-place past the broker's modification budget, expired).
                price = self._exit_price(position, quote)
                if price is None:
                    return RouterResult(ROUTED, "no price for the exit yet")
                generation = max(exits.values_list("generation", flat=True), default=-1) + 1
                lot = position.derivative.lot_size
                quantities = split_for_freeze(left, lot, self.freeze_quantity(position))
                if generation == 0:
                    # Here, not in exit_position: the order manager drives every claimed exit
                    # (the API and the admin only claim), so this is where a crash meets it.
                    failpoint("exit:claimed")
                journal_exit(position, quantities, price, self.now(), generation=generation)
        unsent = exits.filter(status=JournalStatus.UNKNOWN, sent_at=None)
        outcomes = [self.send(order) for order in unsent]
        return RouterResult(ROUTED, f"exit orders: {', '.join(outcomes) or 'working'}")

    def _exit_price(self, position: PositionTracker, quote: Quoted | None = None) -> Decimal | None:
        return self._sell_limit(position.key, position.derivative.tick_size, quote)

    def _sell_limit(self, key: str, tick: Decimal, quote: Quoted | None = None) -> Decimal | None:
        """A marketable sell limit from the contract's fresh bid (its last price without one);
        None when nothing fresh is known. ``quote``: one the caller holds, fresh."""
        if quote is None:
            quote = self.quote(key)
        if quote is None:
            return None
        bid, _ask, ltp = quote
        reference = bid if bid else ltp
        if not reference:
            return None
        return marketable_sell_limit(reference, self.config_source().orders.limit_buffer_pct, tick)

    # -- sending ---------------------------------------------------------------------------

    def send(self, order: Order, *, claimed_at: datetime | None = None) -> str:
        """Send a journaled, never-sent order once and record the answer; returns "sent",
        "rejected: ...", "unanswered" (the outcome is unknown: resolved by correlation id
        later), "not sent: ..." (a fault, e.g. a 429 burst, before the broker took it: the
        resolver looks it up like an unanswered one) or "already sent" (another sender, or an
        earlier attempt, has it). ``claimed_at``: the caller journaled the order with its
        send claimed at that time (journal_entry_orders' ``send_at``), so it is not claimed
        again. AuthFailure propagates: nothing more can be sent."""
        if claimed_at is not None:
            now = claimed_at
        else:
            now = self.now()
            if not claim_send(order, now):
                return "already sent"
        try:
            ack = self.gateway.place(order, now)
        except Rejected as exc:
            reason = f"{exc.code or 'rejected'}: {exc.message}"
            record_rejection(order, reason, now)
            logger.warning("order %s rejected by the broker: %s", order.correlation_id, reason)
            return f"rejected: {reason}"
        except UnknownOutcome as exc:
            logger.warning(
                "order %s: the send's answer was lost (%s); it is resolved by its correlation "
                "id before anything is sent again",
                order.correlation_id,
                exc,
            )
            return "unanswered"
        except AuthFailure:
            raise
        except (Retryable, DhanError) as exc:
            logger.warning("order %s not sent: %s", order.correlation_id, exc)
            return f"not sent: {exc}"
        failpoint("send:answered")
        if self.acks is not None:
            self.acks.put(order, ack.broker_order_id, ack.status, now)
        else:
            record_ack(order, ack.broker_order_id, ack.status, now)
        return "sent"

    # -- chasing (the order manager) -------------------------------------------------------

    def reprice(self, order: Order) -> Decimal | None:
        """Move a working order's limit to the current book plus the buffer (a buy from the
        ask, a sell from the bid); None when there is no fresh price. The broker keeps the
        order (a modify), so its filled units stay filled. Raises OrderEnded when the broker
        has the order final already (trading/orders/gateway.py)."""
        quote = self.quote(order.key)
        if quote is None:
            return None
        bid, ask, ltp = quote
        config = self.config_source().orders
        tick = order.position.derivative.tick_size
        buy = order.side == OrderSide.BUY
        reference = (ask if buy else bid) or ltp
        if not reference:
            return None
        limit = marketable_limit if buy else marketable_sell_limit
        price = limit(reference, config.limit_buffer_pct, tick)
        now = self.now()
        try:
            taken = self.gateway.modify(order, price, now)
        except OrderEnded:
            # Final at the broker: the caller (the order manager) applies what the broker said.
            Order.objects.filter(pk=order.pk, status__in=WORKING).update(priced_at=now)
            raise
        if not taken:
            # Nothing to re-price (never reached the broker, or ended in the journal): wait a
            # chase interval rather than spend the order rate budget on it every pass.
            Order.objects.filter(pk=order.pk, status__in=WORKING).update(priced_at=now)
            return None
        failpoint("chase:modified")
        record_reprice(order, price, now)
        return price

    def cancel(self, order: Order) -> None:
        """Ask the broker to cancel a working order and note the request on the row (the
        CANCELLED, or the fill that beat it, comes back as an event)."""
        now = self.now()
        self.gateway.cancel(order, now)
        Order.objects.filter(pk=order.pk, status__in=WORKING, cancel_requested_at=None).update(
            cancel_requested_at=now
        )

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode}
