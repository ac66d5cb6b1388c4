"""The order manager: the one process that owns order events (``manage.py run_order_updates``
in split mode, a component of ``run_trader`` in embedded mode).

Each pass (``handle_*`` methods, one unit of work each, for tests):

1. **Events.** Live: every update Dhan's order-update WebSocket delivered since the last pass
   (the stream's callback only queues them), and, while the stream is down, a REST read of
   every working order every ``poll_interval`` seconds. Paper: the paper broker's matches
   (trading/orders/paper.py) against the latest ticks. Each is applied by
   ``journal.apply_event``: status, fills, the position, the paper ledger.
2. **Chases.** A working order whose limit has stood ``orders.chase_interval_ms`` without
   filling is re-priced from the current book (a modify: the broker keeps the order and its
   fills). An entry gives up after ``orders.max_chases`` re-prices (cancelled; a partly filled
   entry becomes a position of what filled). An exit never gives up: it keeps chasing at the
   last buffer, says so at ERROR, and past the broker's modification budget is cancelled and
   placed again as a new order (a new correlation id) once the cancel is confirmed.
   At start, and every ``resync_interval`` seconds, every working order the broker has is read
   back from it (by correlation id) and applied: an update the stream never delivered (it does
   not replay the past after a reconnect or a restart) is caught up, never lost; and the
   broker's positions are reconciled with the journal's (trading/orders/reconcile.py).
   Sooner for orders whose end the system has asked for: a re-price the broker refuses
   because the order is final there applies the broker's answer at once, and a cancel whose
   final event has not come within ``cancel_grace`` seconds, of market time and of wall
   time both, is read back (every ``cancel_grace`` wall seconds until it ends), so a fill
   the stream missed never waits the 30 s with its position unwatched.
3. **Unknown outcomes.** An order in UNKNOWN is resolved by its correlation id at the broker
   before anything is sent again: found, its state is applied; not found, an exit is sent
   (exits never give up) and an entry is closed (never sent late at a stale price).
4. **Exits.** Every claimed (``exiting``) position is driven to its end: entry orders still
   working are cancelled first, then the exit orders are journaled and sent.

Market time is the feed hub's clock, followed through kv (workers/market_clock.py).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import close_old_connections, connections

from trading.config.types import AlgoConfig
from trading.dhan.errors import AuthFailure, DhanError
from trading.models import Order, OrderLeg, PositionTracker
from trading.orders.gateway import OrderEnded
from trading.orders.journal import OrderEvent, abandon_unsent, apply_event
from trading.orders.router import OrderRouter
from trading.orders.states import WORKING, JournalStatus, PositionState
from trading.rules.market import IST
from workers.broker_auth import clear_auth_failure, report_auth_failure
from workers.heartbeat import Heartbeat
from workers.market_clock import MarketClock
from workers.realtime.keys import MARKET_CLOCK
from workers.realtime.redis_client import StoreUnavailable

logger = logging.getLogger(__name__)

__all__ = ["OrderManager"]

# Dhan allows 25 modifications of one order; the exit re-places a little before that.
MODIFY_BUDGET = 20


class OrderManager:
    """See the module docstring. ``events`` is the paper broker (``step(now) -> events``) or
    None for live, where :meth:`on_update` (the stream's callback) feeds the queue."""

    name = "order_manager"

    def __init__(
        self,
        realtime: Any,
        router: OrderRouter,
        *,
        config_source: Callable[[], AlgoConfig],
        charges: Callable[[str, str, int, Decimal, date], Decimal],
        paper_broker: Any | None = None,
        stream: Any | None = None,
        clock: Callable[[], float] | None = None,
        wall: Callable[[], float] = time.time,
        interval: float = 0.05,
        unknown_grace: float = 15.0,
        cancel_grace: float = 2.0,
        poll_interval: float = 5.0,
        resync_interval: float = 30.0,
        heartbeat_interval: float = 5.0,
    ) -> None:
        self.realtime = realtime
        self.router = router
        self.config_source = config_source
        self.charges = charges
        self.paper_broker = paper_broker
        self.stream = stream  # live: the OrderUpdateClient (its state says if it is up)
        self.clock: Callable[[], float] = clock or MarketClock(wall, name="order manager")
        self.wall = wall
        self.interval = interval
        self.unknown_grace = unknown_grace
        self.cancel_grace = cancel_grace
        self.poll_interval = poll_interval
        self.resync_interval = resync_interval
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat = Heartbeat(realtime.kv, self.name)
        self.updates: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.counters = {"events": 0, "applied": 0, "chases": 0, "resolved": 0, "errors": 0}
        self.last_error: str | None = None
        self._next_clock = 0.0
        self._next_poll = 0.0
        self._next_resync = 0.0
        self._next_beat = 0.0
        self._alerted: set[int] = set()
        self._cancel_reads: dict[int, float] = {}  # order pk -> wall time of its next read

    @property
    def paper(self) -> bool:
        return self.paper_broker is not None

    # -- the component ---------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        clear_auth_failure(self.realtime.kv, self.name)
        if self.stream is not None:
            self.stream.start()
        try:
            while not stop.is_set():
                self.run_once()
                stop.wait(self.interval)
        finally:
            if self.stream is not None:
                self.stream.stop(timeout=2.0)
            self._beat("stopped")
            connections.close_all()  # this thread's (a restarted manager must not leak one)

    def run_once(self) -> None:
        close_old_connections()
        now = self.wall()
        if now >= self._next_clock:
            self._next_clock = now + 1.0
            self.handle_clock()
        self.check_stream()
        if not self.market_time_known():
            return
        try:
            if not self.paper and now >= self._next_resync:
                self._next_resync = now + self.resync_interval
                self.handle_resync()
                self.handle_reconcile()
            self.handle_events()
            self.handle_unknown()
            if not self.paper:
                self.handle_cancels()
            self.handle_exits()
            self.handle_chases()
        except AuthFailure as exc:
            raise report_auth_failure(self.realtime.kv, self.name, "orders", exc) from None
        if now >= self._next_beat:
            self._next_beat = now + self.heartbeat_interval
            self._beat("running")

    def check_stream(self) -> None:
        """The order-update stream stopped for good: the broker refused its login (the
        worker's authentication failure: recorded for /ready, nothing restarts it), or it
        crashed (raised: the supervisor restarts the component with a new stream). Until it
        is up the REST fallback polls working orders; a stream that will never be up again
        is never left to look like a short outage."""
        stream = self.stream
        if stream is None or getattr(stream, "state", None) != "failed":
            return
        error = stream.error
        if isinstance(error, AuthFailure):
            raise report_auth_failure(self.realtime.kv, self.name, "order updates", error)
        raise RuntimeError(f"order-update stream stopped: {error}")

    def on_update(self, update: Any) -> None:
        """The order-update stream's callback (its thread): queue only, never block it."""
        self.updates.put(update)

    # -- market time -----------------------------------------------------------------------

    def handle_clock(self) -> bool:
        clock = self.clock
        if not isinstance(clock, MarketClock):
            return False
        try:
            return clock.follow(self.realtime.kv.get(MARKET_CLOCK))
        except StoreUnavailable as exc:
            logger.warning("order manager: market clock not read: %s", exc)
            return False

    def market_time_known(self) -> bool:
        clock = self.clock
        return clock.synced if isinstance(clock, MarketClock) else True

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), IST)

    # -- 1. events -------------------------------------------------------------------------

    def handle_events(self) -> int:
        """Apply what the broker said since the last pass; the number applied."""
        events: list[OrderEvent] = []
        now = self.now()
        if self.paper_broker is not None:
            events.extend(self.paper_broker.step(now))
        else:
            from trading.orders.events import event_from_update

            while True:
                try:
                    update = self.updates.get_nowait()
                except queue.Empty:
                    break
                event = event_from_update(update, now)
                if event is not None:
                    events.append(event)
            if self._stream_down() and self.wall() >= self._next_poll:
                self._next_poll = self.wall() + self.poll_interval
                events.extend(self._poll(now))
        applied = 0
        for event in events:
            self.counters["events"] += 1
            try:
                applied += apply_event(event, self.charges, paper=self.paper)
            except Exception as exc:
                # One poison event never stops the others (logged with its context).
                self.counters["errors"] += 1
                self.last_error = f"event {event.correlation_id or event.broker_order_id}: {exc}"
                logger.exception("order manager: applying %s failed", event)
        self.counters["applied"] += applied
        return applied

    def _stream_down(self) -> bool:
        stream = self.stream
        if stream is None:
            return True
        stats = stream.stats()
        return not stats.get("connected")

    def _poll(self, now: datetime) -> list[OrderEvent]:
        """The REST fallback while the stream is down: the broker's view of each working
        order that it knows (a broker order id)."""
        events = []
        for order in Order.objects.filter(status__in=WORKING).exclude(broker_order_id=""):
            event = self._read_back(order, now, "read back")
            if event is not None:
                events.append(event)
        return events

    def _read_back(self, order: Order, now: datetime, what: str) -> OrderEvent | None:
        """The broker's view of one order as an event; None when the broker does not have it
        or cannot be read now (logged as ``what``, counted; the next pass tries)."""
        try:
            view = self.router.gateway.lookup(order)
        except AuthFailure:
            raise
        except DhanError as exc:
            self._order_fault(order, what, exc)
            return None
        return None if view is None else view.as_event(order.correlation_id, now)

    def _order_fault(self, order: Order, what: str, exc: Exception) -> None:
        """One order's broker call failed: logged with the order, counted, the pass goes on
        (one poison order never stops the others)."""
        self.counters["errors"] += 1
        self.last_error = f"{order.correlation_id}: {what}: {exc}"
        logger.warning("order manager: %s of %s failed: %s", what, order.correlation_id, exc)

    def handle_resync(self) -> int:
        """Read back every working order the broker has and apply what it says (module
        docstring); the number that changed the journal."""
        now = self.now()
        changed = 0
        for event in self._poll(now):
            try:
                changed += apply_event(event, self.charges, paper=self.paper)
            except Exception as exc:
                self.counters["errors"] += 1
                self.last_error = f"resync {event.correlation_id}: {exc}"
                logger.exception("order manager: resync of %s failed", event.correlation_id)
        if changed:
            logger.warning("order manager: %d order(s) caught up from the broker", changed)
        return changed

    # -- 2. chases -------------------------------------------------------------------------

    def handle_chases(self) -> int:
        """Re-price (or give up on) working orders whose limit has stood a chase interval."""
        config = self.config_source().orders
        now = self.now()
        due = now - timedelta(milliseconds=config.chase_interval_ms)
        chased = 0
        working = Order.objects.filter(
            status__in=(JournalStatus.TRANSIT, JournalStatus.PENDING, JournalStatus.PART_TRADED),
            cancel_requested_at=None,
            priced_at__lte=due,
        ).select_related("position__derivative")
        for order in working:
            try:
                chased += self._chase(order, config)
            except AuthFailure:
                raise
            except DhanError as exc:
                self._order_fault(order, "re-price", exc)
        self.counters["chases"] += chased
        return chased

    def _chase(self, order: Order, config: Any) -> int:
        """One due order: re-price it, or give up (entry) / re-place (exit); 1 if re-priced."""
        if order.leg == OrderLeg.ENTRY:
            if order.attempt >= config.max_chases:
                logger.info(
                    "order %s: unfilled after %d re-prices: cancelled (%d of %d filled)",
                    order.correlation_id,
                    order.attempt,
                    order.filled_quantity,
                    order.quantity,
                )
                self.router.cancel(order)
                return 0
        else:
            if order.attempt >= MODIFY_BUDGET:
                logger.error(
                    "exit order %s: %d re-prices without a fill; cancelled to place it "
                    "again (the position stays exiting)",
                    order.correlation_id,
                    order.attempt,
                )
                self.router.cancel(order)
                return 0
            if order.attempt >= config.max_chases and order.position_id not in self._alerted:
                self._alerted.add(order.position_id)
                logger.error(
                    "EXIT NOT FILLED: position #%d (%s) still exiting after %d re-prices; "
                    "chasing on at the last buffer",
                    order.position_id,
                    order.key,
                    order.attempt,
                )
        try:
            return 0 if self.router.reprice(order) is None else 1
        except OrderEnded as ended:
            # The broker has it final and its event has not come (the stream missed it):
            # applied now from the broker's answer, not re-priced again every chase interval.
            event = ended.view.as_event(order.correlation_id, self.now())
            if apply_event(event, self.charges, paper=self.paper):
                logger.warning(
                    "order manager: order %s is %s at the broker and its event had not come: "
                    "applied from the broker's answer to the re-price",
                    order.correlation_id,
                    ended.view.status,
                )
            return 0

    def handle_reconcile(self) -> int:
        """Live: the broker's positions against the journal's (trading/orders/reconcile.py);
        the number of new mismatches. A broker that cannot answer now is tried next time."""
        from trading.orders.reconcile import reconcile

        positions = getattr(self.router.gateway, "positions", None)
        if positions is None:
            return 0
        try:
            found = reconcile(positions(), self.now())
        except AuthFailure:
            raise
        except DhanError as exc:
            self.counters["errors"] += 1
            self.last_error = f"reconciliation: {exc}"
            logger.warning("order manager: reconciliation not done: %s", exc)
            return 0
        self.counters["mismatches"] = self.counters.get("mismatches", 0) + len(found)
        return len(found)

    # -- 3. unknown outcomes ---------------------------------------------------------------

    def handle_unknown(self) -> int:
        """Resolve orders whose send has no known outcome (see the module docstring)."""
        grace = datetime.fromtimestamp(self.wall() - self.unknown_grace, IST)
        resolved = 0
        now = self.now()
        stale = Order.objects.filter(
            status=JournalStatus.UNKNOWN, updated_at__lt=grace
        ).select_related("position__derivative")
        for order in stale:
            try:
                resolved += self._resolve(order, now)
            except AuthFailure:
                raise
            except DhanError as exc:
                # Not knowing is not "absent": nothing is sent again until a lookup answers.
                self._order_fault(order, "lookup by correlation id", exc)
        self.counters["resolved"] += resolved
        return resolved

    def handle_cancels(self) -> int:
        """Live: working orders whose cancel was asked ``cancel_grace`` seconds ago or more and
        whose final event has not come are read back from the broker and what it says applied
        (module docstring, point 2): a cancel Dhan refuses because the order filled meanwhile
        says nothing else, and the stream may have missed that fill. Each order is read at most
        every ``cancel_grace`` seconds; the number that changed the journal."""
        wall, now = self.wall(), self.now()
        # cancel_requested_at is market time (the router's clock). The stream's event travels
        # in wall time, so the grace must have passed on both clocks: on market time alone a
        # simulated market at 60x would read back nearly every cancel 33 ms after it was
        # asked. Wall time counts from the pass that first saw the cancel, and later reads
        # are paced on it, so a fast simulated market cannot turn them into a storm.
        asked_before = now - timedelta(seconds=self.cancel_grace)
        waiting = (
            Order.objects.filter(status__in=WORKING, cancel_requested_at__isnull=False)
            .exclude(status=JournalStatus.UNKNOWN)
            .exclude(broker_order_id="")
        )
        changed = 0
        due = {}
        for order in waiting:
            next_read = self._cancel_reads.get(order.pk)
            if next_read is None:  # first seen now: its wall grace starts
                next_read = wall + self.cancel_grace
            due[order.pk] = next_read
            if wall < next_read or order.cancel_requested_at > asked_before:
                continue
            due[order.pk] = wall + self.cancel_grace
            event = self._read_back(order, now, "read back after its cancel")
            if event is not None and apply_event(event, self.charges, paper=self.paper):
                changed += 1
                logger.warning(
                    "order manager: order %s is %s at the broker; its event had not come "
                    "%.0f s after the cancel was asked: applied from a read-back",
                    order.correlation_id,
                    event.status,
                    self.cancel_grace,
                )
        self._cancel_reads = due  # orders that ended are let go
        return changed

    def _resolve(self, order: Order, now: datetime) -> int:
        """One UNKNOWN order (module docstring, point 3); 1 when it was resolved."""
        view = self.router.gateway.lookup(order)
        if view is not None:
            found = view.as_event(order.correlation_id, now)
            apply_event(found, self.charges, paper=self.paper)
            logger.warning(
                "order %s: found at the broker by its correlation id (%s)",
                order.correlation_id,
                view.status,
            )
        elif order.leg == OrderLeg.EXIT:
            if order.sent_at is not None:
                # Sent, not at the broker: the send never arrived. Allow one more send.
                Order.objects.filter(
                    pk=order.pk, status=JournalStatus.UNKNOWN, sent_at=order.sent_at
                ).update(sent_at=None)
                order.sent_at = None
            logger.warning("exit order %s: not at the broker; sending it", order.correlation_id)
            self.router.send(order)
        elif order.sent_at is None:
            abandon_unsent(order, "never sent: the sender stopped before the send", now)
            logger.warning(
                "entry order %s was journaled but never sent: closed", order.correlation_id
            )
        else:
            apply_event(
                OrderEvent(
                    JournalStatus.CANCELLED,
                    now,
                    correlation_id=order.correlation_id,
                    reason="the broker never received it",
                ),
                self.charges,
                paper=self.paper,
            )
            logger.warning(
                "entry order %s: the broker never received it: closed", order.correlation_id
            )
        return 1

    # -- 4. exits --------------------------------------------------------------------------

    def handle_exits(self) -> int:
        """Drive every claimed position until its exit orders are out."""
        driven = 0
        for position in PositionTracker.objects.filter(status=PositionState.EXITING).select_related(
            "derivative"
        ):
            try:
                self.router.continue_exit(position)
            except AuthFailure:
                raise
            except DhanError as exc:
                self.counters["errors"] += 1
                self.last_error = f"exit of position #{position.pk}: {exc}"
                logger.warning("order manager: exit of position #%d: %s", position.pk, exc)
                continue
            driven += 1
        return driven

    # -- state -----------------------------------------------------------------------------

    def _beat(self, state: str) -> None:
        try:
            self.heartbeat.beat(
                state,
                mode=self.router.mode,
                counts=dict(self.counters),
                stream_connected=None if self.stream is None else not self._stream_down(),
                last_error=self.last_error,
            )
        except StoreUnavailable as exc:
            logger.warning("order manager: heartbeat not written: %s", exc)
