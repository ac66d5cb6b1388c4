r"""The exit engine: every open position watched tick by tick and exited by rule, exactly once
(``manage.py run_exit_engine`` in split mode, the ``exit_engine`` component of ``run_trader``).

    ticks (TickSubscription, coalescing) --> rules (trading/rules/exits.py) --> claim + router
                                        \-> PnL cache pnl:{id} (each sweep, batched) + database copy

* **Per tick.** The subscription follows the contracts of the open positions and the indices
  under them; a burst gives the latest tick of each, never a backlog. Every tick of a contract
  evaluates the rules of each position on it; every tick of an index evaluates the positions
  under it (the underlying leg of the danger zone). The day's risk (kill switch, realized +
  open PnL, the loss limit) is gathered once per batch for every position.
* **Sweep, every second.** What needs no tick: the clock exits (expiry day, time exit, time
  stop), the kill switch, the daily loss limit, time in loss while ticks are sparse, and a
  stale feed. A contract whose last tick is older than ``feed.option_stale_seconds`` is
  priced, in live mode, from Dhan's REST quote (rate-limited, workers/orders.py RestQuotes),
  and in paper mode not at all: the price rules wait and the exit order waits for a fresh
  tick to fill (no fill at an old price), while the clock exits still fire on market time.
* **A decision** claims the position (active -> exiting, one conditional update that also
  records the type, the reason, the trigger price, the rule's inputs and the tick's exchange
  time) and routes its exit orders through the router (trading/orders/router.py); the order
  manager then drives it to the last fill (chases, re-places; an exit never gives up). A
  second engine, the API or the admin that claimed first wins; the loser backs off.
* **The stops survive restarts.** The exit state (peak, trough, the protective stop and the
  component that set it, time in loss, the last new high) is written to the position as soon
  as the stop moves and at most a second after anything else moved, and read back on start:
  a restart continues a trailing stop where it was, never from the initial one.
* **The kill switch** flattens every open position and cancels the working entry orders of
  pending ones (entries are halted by the signal engine's gate); **the daily loss limit**
  (realized + open PnL of the day, rupees or % of capital) exits everything with its own type
  and trips the kill switch, saying so. The trading switch only halts entries: not read here.
* **On start**, before any new tick: every exiting position's exit is continued.
* **Threads** (run()): the tick thread evaluates, hands each decision to the router threads
  and applies reloads; the router threads (4 on PostgreSQL, 1 on SQLite) take the decisions
  in the order they were made and claim and route them side by side (an authentication
  failure there stops the engine on the tick thread's next pass); the bookkeeper thread
  writes the PnL marks, the exit states and the last marks of positions that left the open
  set, and reads the open positions every ``reload_interval`` (fetch_open), which the tick
  thread then applies (apply_reload) without a database round trip, and re-reads the config
  when due (the tick thread only reads what is held); it waits while a route is queued or
  running. Without run() (a test driving one pass at a time) the tick thread
  does all of it.
* **Helper processes** (PostgreSQL with Redis, as ``run_exit_engine`` runs): the router
  threads run in the route process (workers/exit_routes.py) and the PnL marks in the marks
  process (workers/exit_marks.py, which reads the prices from Redis itself), so neither takes
  this process's interpreter lock from the tick thread; either one's death stops the engine.
* **Quiet bands.** A tick inside the quiet band of every position on its contract
  (trading/rules/exits.py ``quiet_band``) skips their evaluation; never while a switch is on,
  never for an index move.

Market time is the feed hub's clock followed through kv (workers/market_clock.py); nothing
here reads the wall clock as market time (the wall clock only measures a tick's age).
"""

from __future__ import annotations

import collections
import gc
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import close_old_connections, connections
from django.db.models import Sum

from trading.config.types import AlgoConfig
from trading.dhan.errors import AuthFailure
from trading.models import Order, OrderLeg, PositionStatus, PositionTracker
from trading.orders.journal_sql import ClaimedExit
from trading.orders.router import ExitRefused, OrderRouter
from trading.orders.states import WORKING, JournalStatus
from trading.rules.exits import (
    DayRisk,
    ExitDecision,
    ExitPlan,
    ExitState,
    QuietBand,
    Tick,
    evaluate,
    quiet_band,
)
from trading.rules.market import INDEX_SEGMENT, IST, instrument_key
from trading.rules.pnl import price_decimal
from trading.rules.vocab import ExitType
from workers.broker_auth import clear_auth_failure, report_auth_failure
from workers.exit_marks import MarksProcess
from workers.exit_routes import RouteProcess, RoutesDied
from workers.market_clock import MarketClock
from workers.orders import record_quote
from workers.pnl import (
    PnlMonitor,
    default_exit_charges,
    tick_time,
    update_open_positions,
)
from workers.realtime.keys import MARKET_CLOCK
from workers.realtime.redis_client import Outage, StoreUnavailable
from workers.warm_db import WarmConnection

if TYPE_CHECKING:
    from workers.orders import RestQuotes
    from workers.realtime.record import TickRecord
    from workers.realtime.services import Realtime

logger = logging.getLogger(__name__)

__all__ = ["ExitEngine", "Watched", "exit_engine_from_settings"]

ZERO = Decimal(0)


@dataclass(slots=True)
class Watched:
    """One open position as the engine holds it: the plan (fixed facts and levels), the state
    the rules carry, and what was last written to the database."""

    position_id: int
    key: str  # the contract's instrument key
    index_key: str | None  # the underlying index's instrument key (None: not in the catalog)
    plan: ExitPlan
    state: ExitState
    saved: ExitState  # the state as last persisted
    entry_charges: Decimal  # rupees booked on the entry fills
    claimed: bool = False
    evaluated: int = 0  # rule evaluations so far (the first follows the reload that added it)


@dataclass(slots=True)
class _Fetched:
    """A reload's database half (ExitEngine.fetch_open), handed to the tick thread."""

    prints: dict[int, tuple[Any, ...]]  # every open position's fingerprint
    loaded: dict[int, PositionTracker]  # the full rows of the new and the changed ones
    exits: Any  # the exits config read with them
    # The exit plans of the loaded active positions, built with ``exits`` where the rows
    # were read (an exception: the position has none, said by the tick thread).
    plans: dict[int, ExitPlan | Exception] = field(default_factory=dict)


class ExitEngine(PnlMonitor):
    """See the module docstring. ``clock`` is market time (epoch seconds; a MarketClock that
    follows the feed hub's clock through kv when it is one); ``wall`` measures tick ages and
    intervals only. ``rest_quotes``: live mode's REST quote for a stale feed (None: paper)."""

    name = "exit_engine"

    def __init__(
        self,
        realtime: Realtime,
        router: OrderRouter,
        *,
        config_source: Callable[[], AlgoConfig],
        clock: Callable[[], float] | None = None,
        wall: Callable[[], float] = time.time,
        live: bool = False,
        rest: Any | None = None,
        rest_quotes: RestQuotes | None = None,
        sweep_interval: float = 1.0,
        persist_interval: float = 1.0,
        reload_interval: float = 1.0,
        wait_timeout: float = 0.2,
        heartbeat_interval: float = 5.0,
        seed_cash: Callable[[], Decimal] | None = None,
        router_threads: int | None = None,
        route_process: bool = False,
        marks_process: bool = False,
    ) -> None:
        super().__init__(
            realtime,
            reload_interval=reload_interval,
            wait_timeout=wait_timeout,
            heartbeat_interval=heartbeat_interval,
            clock=wall,
        )
        self.realtime = realtime
        self.router = router
        self.config_source = config_source
        self.market: Callable[[], float] = clock or MarketClock(wall, name="exit engine")
        self._clock_outage = Outage(logger, "exit engine: market clock")
        self.live = live
        self.rest = rest
        self.rest_quotes = rest_quotes
        self.sweep_interval = sweep_interval
        self.persist_interval = persist_interval
        self.seed_cash = seed_cash or _seed_cash(config_source)
        self.watched: dict[int, Watched] = {}
        self.on_key: dict[str, list[Watched]] = {}
        self.on_index: dict[str, list[Watched]] = {}
        self.last_ticks: dict[str, TickRecord] = {}
        self.underlying: dict[str, Decimal] = {}
        # evaluations: positions the rules ran for; quiet: positions a tick (or the sweep)
        # found inside their quiet band, where the rules are known to hold (rules.exits).
        self.counters = {
            "evaluations": 0,
            "quiet": 0,
            "decisions": 0,
            "exits": 0,
            "refused": 0,
            "stale": 0,
        }
        self.tick_to_send: list[float] = []  # seconds, tick receive -> exit sent (bench)
        self.tick_to_act: list[float] = []  # seconds, tick receive -> its decision acted on
        # The bench's split: True where the decision came on the position's first evaluation
        # (its deciding tick may have waited for the reload that added the position).
        self.first_look: list[bool] = []
        self._next_sweep = 0.0
        self._next_marks = 0.0  # the bookkeeper's next PnL marks of the book
        self._next_clock = 0.0
        self._next_persist = 0.0
        self._unmarked: set[int] = set()
        self._realized_today: tuple[date, Decimal] | None = None
        self._capital: tuple[date, Decimal] | None = None
        self._kill_switch = False
        self._tripped_by_loss = False
        self._index_keys: dict[str, str | None] = {}
        self._index_subscribed: set[str] = set()
        # The bookkeeper thread (run()): PnL marks and exit-state writes, off the tick path.
        # While it runs it is the only writer of exit states; without it (tests driving one
        # pass at a time) the sweep keeps the books itself.
        self._books: threading.Thread | None = None
        self._wake_books = threading.Event()
        self._books_stop = threading.Event()
        self._urgent: dict[int, Watched] = {}  # exit states to write at once
        self._finishing: collections.deque[int] = collections.deque()  # left the open set
        # While the bookkeeper runs it also reads the open positions (fetch_open) every
        # reload_interval and leaves them here; the tick thread applies them (apply_reload).
        self._fetched: _Fetched | None = None
        self._next_fetch = 0.0
        # The router threads (run()): claim and route the decisions, taken in the order they
        # were made; without them (tests driving one pass at a time) act() routes inline.
        # While a route is queued or running the bookkeeper yields (_yield_to_routes).
        self.router_threads = router_threads
        # route_process (run_exit_engine on PostgreSQL and Redis): the router threads run in
        # a process of their own (workers/exit_routes.py), the decisions sent down a pipe.
        self.route_process = route_process
        self._remote: RouteProcess | None = None
        self._remote_pending: dict[int, tuple[Watched, ExitDecision, float, float]] = {}
        self._remote_seq = 0
        self._routers: list[threading.Thread] = []
        self._routes: queue.SimpleQueue[Any] | None = None
        # Decisions handed over (written by the tick thread) and routed (one slot per router
        # thread, each its only writer): they differ while a route is queued or running.
        self._queued = 0
        self._routed: list[int] = []
        self._route_failure: Exception | None = None
        # marks_process (with route_process): the PnL marks of the book, and the last marks of
        # positions that left it, in a process of their own (workers/exit_marks.py); its
        # counters (updates, errors, the last error) come back for the heartbeat.
        self.marks_process = marks_process
        self._marks: MarksProcess | None = None
        self._marks_counts: tuple[int, int, str | None] = (0, 0, None)
        # Open PnL of the watched, unclaimed positions (gross at their contract's last price
        # less the entry charges), kept up to date per contract by _set_price (its units and
        # cost in _exposure) and by the claims, recomputed at each reload.
        self._open_pnl = ZERO
        self._prices: dict[str, tuple[float | None, Decimal]] = {}  # key -> (feed float, price)
        self._exposure: dict[str, tuple[int, Decimal]] = {}  # key -> (units, entry cost)
        # key -> the quiet band of its unclaimed positions (rules.exits.quiet_band, met); a
        # tick inside it skips their evaluations. Absent: evaluate, then compute it.
        self._bands: dict[str, QuietBand | None] = {}
        self._prints: dict[int, tuple[Any, ...]] = {}  # position -> fingerprint last loaded
        self._exits: Any = None  # the exits config the plans were built with

    # -- the loop --------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        clear_auth_failure(self.realtime.kv, self.name)
        self.subscription = self.ticks.subscribe()
        try:
            self._wait_for_market_time(stop)
            if stop.is_set():
                return
            resumed = self.resume()
            self.handle_reload(self.clock())  # the open set before the first tick
            self._start_marks()
            self._start_books(stop)
            self._start_routes()
            # Everything the start built (Django, the catalog's plans, the open book) moves
            # out of the cyclic collector's reach: its full collections then scan what was
            # made since, not the whole process. Measured (bench/exit_engine.py): a full
            # collection stopped every thread of this process for up to 100 ms, about every
            # 6 s at a full feed. Freed by reference counting as before; only a cycle among
            # these objects would stay (none is made again: they are the process's own).
            gc.freeze()
            logger.info(
                "exit engine: running at market time %s; %d claimed exit(s) resumed",
                f"{self.market_now():%Y-%m-%d %H:%M:%S}",
                resumed,
            )
            while not stop.is_set():
                self.run_once()
        except AuthFailure as exc:
            raise report_auth_failure(self.realtime.kv, self.name, "exits", exc) from None
        finally:
            self._stop_routes()
            self._stop_books()
            self._stop_marks()
            while self._finishing:
                self._finish(self._finishing.popleft())
            self.persist(force=True)
            self.subscription.close()
            self.subscription = None
            try:
                self.heartbeat.beat("stopped", **self._beat_fields())
            except Exception:
                logger.warning("exit engine: could not write its last heartbeat", exc_info=True)
            connections.close_all()

    def _start_books(self, stop: threading.Event) -> None:
        self._books_stop = threading.Event()
        # The config is re-read here, never on the tick thread (workers/orders.py
        # ReloadingConfig: a re-read is milliseconds of interpreter and a round trip).
        refresh = getattr(self.config_source, "refresh", None)
        if refresh is not None:
            self.config_source.refresh_elsewhere()  # type: ignore[attr-defined]

        def keep(books_stop: threading.Event = self._books_stop) -> None:
            try:
                while not books_stop.is_set() and not stop.is_set():
                    self._wake_books.wait(self.sweep_interval)
                    self._wake_books.clear()
                    close_old_connections()
                    if refresh is not None:
                        refresh()
                    now = self.clock()
                    self._yield_to_routes()
                    if now >= self._next_fetch and self._fetched is None:
                        # The open set read here, applied by the tick thread (its next pass).
                        self._next_fetch = now + self.reload_interval
                        self._fetched = self.fetch_open(now)
                    try:
                        self.keep_books(now)
                    except Exception as exc:  # the books wait; the rules go on
                        self._record_error(f"books: {type(exc).__name__}: {exc}")
                        logger.exception("exit engine: PnL marks or exit states not written")
            finally:
                connections.close_all()  # this thread's connections

        self._books = threading.Thread(target=keep, name="exit-engine-books", daemon=True)
        self._books.start()

    def _stop_books(self) -> None:
        books = self._books
        if books is None:
            return
        self._books_stop.set()
        self._wake_books.set()
        books.join(timeout=10.0)
        self._books = None
        if hasattr(self.config_source, "refresh_elsewhere"):
            self.config_source.refresh_elsewhere(False)

    def keep_books(self, now: float) -> None:
        """The PnL marks of the positions that ticked, and the exit states when due (or
        asked for: a new stop component, a decision). Woken early for what was asked, it
        writes that only: the marks of the whole book (about 2,000 snapshots, tens of
        milliseconds of the interpreter) wait for their interval, or every decision would
        start a burst that the tick thread waits behind, just when exits come in a row."""
        urgent, self._urgent = self._urgent, {}
        if urgent:  # a new stop component, a decision: those rows, in one statement
            self._persist_rows(list(urgent.values()))
        while self._finishing:  # the last PnL marks of positions that left the open set
            self._finish(self._finishing.popleft())
        if now < self._next_marks:
            return
        self._next_marks = now + self.sweep_interval
        try:
            self.refresh_risk(self.market_now())
        except Exception as exc:  # the sweep keeps the last read; the marks still go
            self._record_error(f"risk: {type(exc).__name__}")
            logger.warning("exit engine: the day's PnL and kill switch not read: %s", exc)
        if self._marks is None:  # else the marks process marks the book
            self._yield_to_routes()
            self.mark_pnl(now)
        if now >= self._next_persist:
            self._next_persist = now + self.persist_interval
            self._yield_to_routes()
            self.persist()

    def _yield_to_routes(self, limit: float = 0.05) -> None:
        """The bookkeeper's work waits while an exit is being routed (at most ``limit`` s at
        a time): in one process the threads share one interpreter lock, and a route's round
        trips would otherwise wait for it behind a second's worth of PnL marks."""
        deadline = None
        while self._queued != sum(self._routed):
            now = time.monotonic()
            if deadline is None:
                deadline = now + limit
            elif now >= deadline:
                return
            time.sleep(0.0005)

    def _persist_soon(self, watched: Watched, *, wake: bool = True) -> None:
        """Write this position's exit state now: by the bookkeeper when it runs (the one
        writer; woken at once, or by the caller when ``wake`` is False), else inline."""
        if self._books is not None:
            self._urgent[watched.position_id] = watched
            if wake:
                self._wake_books.set()
        else:
            self._persist_rows([watched])

    def _wait_for_market_time(self, stop: threading.Event) -> None:
        """No rule runs before market time is known: a clock exit judged on the wall clock
        could flatten a book at 03:00 on a Sunday."""
        while not stop.is_set() and not self.follow_clock():
            self.handle_heartbeat(self.clock(), force=False)
            stop.wait(0.2)

    def follow_clock(self) -> bool:
        market = self.market
        if not isinstance(market, MarketClock):
            return True
        try:
            market.follow(self.realtime.kv.get(MARKET_CLOCK))
        except StoreUnavailable as exc:
            self._clock_outage.failed(exc)  # read every 200 ms while waiting: said once
        else:
            self._clock_outage.recovered()
        return market.synced

    def market_now(self) -> datetime:
        return datetime.fromtimestamp(self.market(), IST)

    def run_once(self) -> int:
        """One pass: reload when due, wait for ticks, evaluate, sweep when due, persist,
        beat. Returns the number of decisions."""
        if self._route_failure is not None:
            # A router thread's (an authentication failure), or a helper process's death:
            # trading stops loudly.
            raise self._route_failure
        close_old_connections()
        now = self.clock()
        if now >= self._next_clock:
            self._next_clock = now + 1.0
            self.follow_clock()
        if self._books is not None:
            fetched = self._fetched
            if fetched is not None:  # read by the bookkeeper: applied here, off the database
                self.apply_reload(fetched)
                self._fetched = None
            due = self._next_sweep - now
        else:
            if now >= self._next_reload:
                self.handle_reload(now)
            due = min(self._next_reload, self._next_sweep) - now
        records = self.wait_for_ticks(max(0.0, min(self.wait_timeout, due)))
        decided = self.handle_records(records, self.clock()) if records else 0
        now = self.clock()
        if now >= self._next_sweep:
            self._next_sweep = now + self.sweep_interval
            decided += self.sweep(now)
        self.handle_heartbeat(now)
        return decided

    # -- positions -------------------------------------------------------------------------

    def resume(self) -> int:
        """Continue every claimed exit (exiting positions) before any new tick: a restart
        between a claim and its send sends it now (the router decides under the position's
        row lock, so an exit already sent is never sent again). Returns how many."""
        resumed = 0
        for position in PositionTracker.objects.filter(status=PositionStatus.EXITING).order_by(
            "pk"
        ):
            try:
                result = self.router.continue_exit(position)
            except AuthFailure:
                raise
            except Exception as exc:
                self._record_error(f"resume #{position.pk}: {exc}")
                logger.exception("exit engine: resuming the exit of #%d failed", position.pk)
                continue
            resumed += 1
            logger.warning(
                "exit engine: resumed the exit of position #%d (%s): %s",
                position.pk,
                position.exit_type,
                result.detail,
            )
        return resumed

    def handle_reload(self, now: float) -> bool:
        """Follow the open positions: a cheap read of every open position's fingerprint
        (status, quantity, entry price, charges) and full rows only for the new and the
        changed ones, so a reload of 2,000 unchanged positions costs one narrow query, not
        2,000 model instances on the tick thread. Active positions get a plan (rebuilt when
        their entry facts or the config change) and a state (the persisted one; carried over
        when only the config changed); the subscription follows their contracts and the
        indices under them. True when the open set changed."""
        self._next_reload = now + self.reload_interval
        fetched = self.fetch_open(now)
        return fetched is not None and self.apply_reload(fetched)

    def fetch_open(self, now: float) -> _Fetched | None:
        """The database half of a reload: the open positions' fingerprints, the full rows
        of the new and the changed ones, and the exit plans of those that are active. Run by
        the bookkeeper while the engine runs (the tick thread only applies it); None when the
        database cannot be read (reported once until it can again).

        The plans are built here, not on the tick thread: about 0.1 ms of interpreter each
        (the charges of the exit at the entry price, the plan's levels), which a tick arriving
        during the apply waited for, tens of positions at a time when entries come together
        (bench/RESULTS.md, "Exit engine: where the last tail waits"). Between two plans this
        thread lets the interpreter go (``time.sleep(0)``): a thread waiting for it (the
        subscription's reader, the tick thread) gets it there, not after a switch interval
        (5 ms) of plans."""
        exits = self.config_source().exits
        read = self.read_open(now, self._prints, "derivative")
        if read is None:
            return None
        prints, loaded = read
        plans: dict[int, ExitPlan | Exception] = {}
        for pk, position in loaded.items():
            if position.status != PositionStatus.ACTIVE:
                continue
            plans[pk] = self._plan_or_error(position, exits)  # an error: said by the apply
            time.sleep(0)
        return _Fetched(prints, loaded, exits, plans)

    def apply_reload(self, fetched: _Fetched) -> bool:
        """The tick thread's half of a reload: the open set, the plans, the subscription.
        True when the open set changed."""
        before = set(self.positions)
        prints, loaded, exits = fetched.prints, fetched.loaded, fetched.exits
        plans = fetched.plans
        config_changed = exits != self._exits
        gone = set(self.positions) - set(prints)
        if not loaded and not gone and not config_changed:
            return False
        if not config_changed and self.positions:
            return self._apply_changes(prints, loaded, gone, exits, plans)
        for position_id in sorted(gone):
            self._let_go(position_id)
        positions = {pk: p for pk, p in self.positions.items() if pk not in gone}
        positions.update(loaded)
        for pk in loaded:
            self._prints[pk] = prints[pk]
        old_keys = set(self.by_key)
        by_key: dict[str, list[int]] = {}
        for position in positions.values():
            by_key.setdefault(position.key, []).append(position.pk)
        self.positions, self.by_key = positions, by_key
        self._exits = exits

        fresh: dict[int, Watched] = {}
        for position_id, position in positions.items():
            if position.status != PositionStatus.ACTIVE:
                continue  # exiting: the order manager drives it; only its PnL is marked
            known = self.watched.get(position_id)
            if known is not None and known.claimed:
                continue
            if known is not None and position_id not in loaded and not config_changed:
                fresh[position_id] = known
                continue
            watched = self._watch(position, exits, known, plans.get(position_id))
            if watched is not None:
                fresh[position_id] = watched
        self.watched = fresh
        self.on_key, self.on_index = {}, {}
        for watched in fresh.values():
            self.on_key.setdefault(watched.key, []).append(watched)
            if watched.index_key is not None:
                self.on_index.setdefault(watched.index_key, []).append(watched)
        self._count_exposure()
        # Only a config change or the first load rebuilds (_apply_changes does the rest):
        # every band is computed again on its contract's next tick.
        self._bands = {}
        self._resubscribe(old_keys)
        return bool(gone) or bool(set(loaded) - before) or config_changed

    def _apply_changes(
        self,
        prints: dict[int, tuple[Any, ...]],
        loaded: dict[int, PositionTracker],
        gone: set[int],
        exits: Any,
        plans: Mapping[int, ExitPlan | Exception],
    ) -> bool:
        """:meth:`apply_reload` when the config is the same: only the positions that came,
        went or changed, and the contracts they are on, are touched (their groups, quiet
        bands, exposure, subscription), to the same result as the whole rebuild, which took
        15-25 ms of the tick thread for 2,000 positions once a second (a tick arriving
        meanwhile waited). What is still a pass over the book is a dictionary lookup per
        position: the watched that were claimed leave (their positions come back the next
        reload if they are still active, as in the rebuild) and the active positions not
        watched are watched again."""
        changed_keys: set[str] = set()
        changed_indices: set[str | None] = set()
        keys_before = set(self.by_key)
        for position_id in sorted(gone):
            self._let_go(position_id)
            position = self.positions.pop(position_id)
            self._leave_key(position.key, position_id)
        for pk, position in loaded.items():
            old = self.positions.get(pk)
            if old is not None and old.key != position.key:
                self._leave_key(old.key, pk)
            if old is None or old.key != position.key:
                self.by_key.setdefault(position.key, []).append(pk)
            self.positions[pk] = position
            self._prints[pk] = prints[pk]
        before = self.watched
        watched = dict(before)

        def drop(pk: int) -> None:
            left = watched.pop(pk, None)
            if left is not None:
                changed_keys.add(left.key)
                changed_indices.add(left.index_key)

        def add(pk: int, new: Watched | None) -> None:
            if new is not None:
                watched[pk] = new
                changed_keys.add(new.key)
                changed_indices.add(new.index_key)

        for pk in gone:
            drop(pk)
        for pk in [pk for pk, known in before.items() if known.claimed]:
            drop(pk)
        for pk, position in loaded.items():
            known = before.get(pk)
            drop(pk)
            if position.status != PositionStatus.ACTIVE or (known is not None and known.claimed):
                continue
            add(pk, self._watch(position, exits, known, plans.get(pk)))
        for pk, position in self.positions.items():
            if pk in watched or pk in loaded or position.status != PositionStatus.ACTIVE:
                continue
            known = before.get(pk)
            if known is not None and known.claimed:
                continue  # claimed: back at the next reload if it is still active
            add(pk, self._watch(position, exits, None))
        groups_before = {key: self.on_key.get(key, []) for key in changed_keys}
        on_key = dict(self.on_key)
        for key in changed_keys:
            group = [watched[pk] for pk in self.by_key.get(key, ()) if pk in watched]
            if group:
                on_key[key] = group
            else:
                on_key.pop(key, None)
        on_index = dict(self.on_index)
        for index_key in changed_indices - {None}:
            members = [w for w in watched.values() if w.index_key == index_key]
            if members:
                on_index[index_key] = members
            else:
                on_index.pop(index_key, None)
        self.watched, self.on_key, self.on_index = watched, on_key, on_index
        for key in changed_keys:
            self._expose_again(key, groups_before[key])
            self._bands.pop(key, None)
        self._resubscribe(keys_before)
        return bool(gone) or any(pk not in before for pk in loaded)

    def _let_go(self, position_id: int) -> None:
        """A position left the open set: its last PnL mark and its cache key (database and
        Redis work, done by the bookkeeper when it runs: a round trip each, off the tick
        thread)."""
        if self._marks is not None:
            pass  # the marks process finishes it (it follows the open set itself)
        elif self._books is not None:
            self._finishing.append(position_id)
            self._wake_books.set()
        else:
            self._finish(position_id)
        self._prints.pop(position_id, None)

    def _resubscribe(self, keys_before: set[str]) -> None:
        """The subscription follows the contracts of the open set (``by_key``, which was
        ``keys_before``) and the indices under the watched positions."""
        if self.subscription is None:
            return
        keys = set(self.by_key)
        removed, added = keys_before - keys, keys - keys_before
        if removed:
            self.subscription.remove(removed - self._index_subscribed)
        if added:
            self.subscription.add(added)  # also delivers each one's current tick
        wanted = set(self.on_index)
        if wanted - self._index_subscribed:
            self.subscription.add(wanted - self._index_subscribed)
        stale = self._index_subscribed - wanted - keys
        if stale:
            self.subscription.remove(stale)
        self._index_subscribed = wanted

    def _leave_key(self, key: str, position_id: int) -> None:
        ids = self.by_key.get(key)
        if ids is not None and position_id in ids:
            ids = [pk for pk in ids if pk != position_id]
            if ids:
                self.by_key[key] = ids
            else:
                del self.by_key[key]

    def _expose_again(self, key: str, was: list[Watched]) -> None:
        """One contract's units and entry cost from its unclaimed watched positions now, the
        day's open PnL moved by the difference (what :meth:`_count_exposure` does for all)."""
        price = self._prices.get(key)
        units, cost = self._exposure.get(key, (0, ZERO))
        if price is not None:
            self._open_pnl -= price[1] * units - cost
        self._open_pnl += _unclaimed(was)[2]
        group = self.on_key.get(key)
        if group is None:
            self._exposure.pop(key, None)
            self._prices.pop(key, None)
            return
        units, cost, charges = _unclaimed(group)
        self._exposure[key] = (units, cost)
        if price is not None:
            self._open_pnl += price[1] * units - cost
        self._open_pnl -= charges

    def _watch(
        self,
        position: PositionTracker,
        exits: Any,
        known: Watched | None,
        plan: ExitPlan | Exception | None = None,
    ) -> Watched | None:
        """``plan``: built with ``exits`` by :meth:`fetch_open` (an exception: none could
        be); None: built here."""
        if plan is None:
            plan = self._plan_or_error(position, exits)
        if isinstance(plan, Exception):
            self._log_position_error(
                position.pk, self.clock(), f"has no exit plan ({plan}): its rules cannot run"
            )
            self._record_error(f"plan #{position.pk}: {plan}")
            return None
        same_entry = known is not None and (
            known.plan.entry_price,
            known.plan.quantity,
        ) == (plan.entry_price, plan.quantity)
        if known is not None and same_entry:
            # A config change: the new plan, the state carried over (its stop never lowered).
            state = plan.restore_state(
                peak=known.state.peak,
                trough=known.state.trough,
                stop=known.state.stop,
                stop_rule=known.state.stop_rule,
                seconds_in_loss=known.state.seconds_in_loss,
                in_loss_at=known.state.in_loss_at,
                high_at=known.state.high_at,
            )
            saved = known.saved
        else:
            # New, or its entry changed (more entry fills: quantity and average price): the
            # state as persisted, checked against the new entry.
            state = self.restored_state(position, plan)
            saved = state
        return Watched(
            position_id=position.pk,
            key=position.key,
            index_key=self.index_key(position.underlying),
            plan=plan,
            state=state,
            saved=saved,
            entry_charges=Decimal(position.charges or 0),
        )

    def plan_of(self, position: PositionTracker, exits: Any) -> ExitPlan:
        """The position's exit plan; ValueError naming what is missing or bad."""
        if position.entry_price is None:
            raise ValueError("no entry price")
        entry_at = position.entry_at or position.opened_at
        if entry_at is None:
            raise ValueError("no entry time")
        entry = Decimal(position.entry_price)
        quantity = int(position.quantity)
        derivative = position.derivative
        expiry = derivative.expiry_at.astimezone(IST).date() if derivative.expiry_at else None
        if expiry is None:
            raise ValueError("its contract has no expiry")
        # Round trip per unit: the entry's booked charges and a sell at the entry price.
        exit_charges = default_exit_charges(position, float(entry), entry_at.astimezone(IST).date())
        per_unit = (Decimal(position.charges or 0) + exit_charges) / quantity
        return ExitPlan.build(
            entry_price=entry,
            quantity=quantity,
            entry_at=entry_at,
            direction=position.direction,
            expiry=expiry,
            underlying_entry=(
                Decimal(position.underlying_entry) if position.underlying_entry else None
            ),
            charges_per_unit=per_unit,
            config=exits,
        )

    def _plan_or_error(self, position: PositionTracker, exits: Any) -> ExitPlan | Exception:
        """:meth:`plan_of`, or the exception that says why the position has none."""
        try:
            return self.plan_of(position, exits)
        except Exception as exc:
            return exc

    def restored_state(self, position: PositionTracker, plan: ExitPlan) -> ExitState:
        """The persisted state (so a trailing stop continues where it was), or the state at
        the entry for a position never evaluated. A persisted state that does not hold
        together is reported and replaced by the entry's, keeping the higher stop."""
        if position.peak_premium is None or position.trough_premium is None:
            return plan.open_state()
        try:
            return plan.restore_state(
                peak=Decimal(position.peak_premium),
                trough=Decimal(position.trough_premium),
                stop=(
                    Decimal(position.protective_stop)
                    if position.protective_stop is not None
                    else None
                ),
                stop_rule=position.stop_rule or "",
                seconds_in_loss=float(position.seconds_in_loss or 0.0),
                in_loss_at=position.in_loss_at,
                high_at=position.premium_high_at or plan.entry_at,
            )
        except ValueError as exc:
            logger.error(
                "exit engine: position #%d's saved exit state is inconsistent (%s); "
                "starting from the entry's",
                position.pk,
                exc,
            )
            return plan.open_state()

    def index_key(self, underlying: str) -> str | None:
        if underlying not in self._index_keys:
            from instruments import catalog

            try:
                found = catalog.index_by_name(underlying)
                self._index_keys[underlying] = instrument_key(INDEX_SEGMENT, found.security_id)
            except Exception as exc:
                logger.warning("exit engine: no index %s in the catalog: %s", underlying, exc)
                self._index_keys[underlying] = None
        return self._index_keys[underlying]

    # -- ticks -----------------------------------------------------------------------------

    def handle_records(self, records: Mapping[str, TickRecord], now: float) -> int:
        """Evaluate the rules of every position on each changed contract or index (latest
        tick of each), acting on a contract's decisions as soon as its positions are judged,
        then mark the PnL of what is due. The prices of the whole batch are taken first, so
        the day's open PnL the loss limit reads is the batch's. A tick already older than
        ``feed.option_stale_seconds`` when it arrives (a backlog after a stall) is not traded
        on: its contract is evaluated without it."""
        stale_after = self.config_source().feed.option_stale_seconds
        contracts: list[tuple[str, list[Watched], TickRecord, bool]] = []
        indices: list[tuple[list[Watched], float]] = []
        for key, record in records.items():
            ltp = record.ltp
            if ltp <= 0:
                continue
            self.last_ticks[key] = record
            self.last_tick_at = record.receive_time
            on_contract = self.on_key.get(key)
            if on_contract:
                fresh = now - record.receive_time <= stale_after
                if fresh:
                    self._price_key(key, ltp)
                else:
                    self.counters["stale"] += 1
                contracts.append((key, on_contract, record, fresh))
            on_index = self.on_index.get(key)
            if on_index:
                self.underlying[key] = price_decimal(ltp)
                indices.append((on_index, record.receive_time))
        decisions: list[tuple[Watched, ExitDecision, float]] = []  # one group's
        decided = 0
        if contracts or indices:
            market_now = self.market_now()
            risk = self.day_risk(market_now)
            bands = self._usable_bands(risk)
            for key, group, record, fresh in contracts:
                received = record.receive_time
                if not fresh:  # not traded on: the clock rules only
                    for watched in group:
                        self._evaluate(watched, None, market_now, risk, received, decisions)
                    decided += self._act_on(decisions)
                    continue
                band = bands.get(key)
                if band is not None and band.holds(record.ltp, market_now):
                    self.counters["quiet"] += len(group)
                    continue
                tick = _tick(record)
                for watched in group:
                    self._evaluate(watched, tick, market_now, risk, received, decisions)
                self._bands[key] = self._band_of(group, market_now)
                decided += self._act_on(decisions)
            # The index level moved: every position under it, whatever its band says (the
            # bands do not cover the underlying leg of the danger zone).
            for group, received in indices:
                for watched in group:
                    self._evaluate(watched, None, market_now, risk, received, decisions)
                decided += self._act_on(decisions)
        self._mark_due(records, now)
        return decided

    def _act_on(self, decisions: list[tuple[Watched, ExitDecision, float]]) -> int:
        """Act on a group's decisions as soon as it is judged (an exit does not wait for the
        rest of the batch to be evaluated) and empty the list; how many there were."""
        count = len(decisions)
        if count:
            self.act_all(decisions)
            decisions.clear()
        return count

    def _usable_bands(self, risk: DayRisk) -> Mapping[str, QuietBand | None]:
        """The bands, or none while the kill switch is on or the loss limit is reached (the
        bands leave the account's switches to the caller)."""
        return {} if risk.kill_switch or risk.limit_reached else self._bands

    def _band_of(self, group: list[Watched], now: datetime) -> QuietBand | None:
        """The band where no unclaimed position of ``group`` moves or fires (None: one of
        them has none, e.g. it is in loss; or none is left to watch)."""
        band = None
        for watched in group:
            if watched.claimed:
                continue
            own = quiet_band(watched.plan, watched.state, now)
            if own is None:
                return None
            band = own if band is None else band.meet(own)
        return band

    def _price_key(self, key: str, ltp: float) -> None:
        """The contract's price from a fresh tick's float (converted once per change)."""
        last = self._prices.get(key)
        if last is None or last[0] != ltp:
            self._set_price(key, price_decimal(ltp), ltp)

    def _set_price(self, key: str, price: Decimal, ltp: float | None) -> None:
        """The contract at ``price``: the day's open PnL moves by its unclaimed units times
        the change (a running total: summing every position on every batch was work on the
        tick path that grew with the book). ``ltp``: the feed's float it came from (None: a
        REST quote)."""
        last = self._prices.get(key)
        exposure = self._exposure.get(key)
        if exposure is not None:
            units, cost = exposure
            if last is None:
                self._open_pnl += price * units - cost
            else:
                self._open_pnl += (price - last[1]) * units
        self._prices[key] = (ltp, price)

    def _gross(self, watched: Watched) -> Decimal:
        """(the contract's last price - entry) x quantity; 0 before its first price."""
        price = self._prices.get(watched.key)
        if price is None:
            return ZERO
        return (price[1] - watched.plan.entry_price) * watched.plan.quantity

    def _count_exposure(self) -> None:
        """Units and entry cost of the unclaimed positions per contract, and the open PnL
        from scratch (each reload); prices of contracts no longer watched are let go."""
        exposure: dict[str, tuple[int, Decimal]] = {}
        open_pnl = ZERO
        for key, group in self.on_key.items():
            units, cost, charges = _unclaimed(group)
            open_pnl -= charges
            exposure[key] = (units, cost)
            price = self._prices.get(key)
            if price is not None:
                open_pnl += price[1] * units - cost
        self._exposure = exposure
        self._prices = {key: p for key, p in self._prices.items() if key in exposure}
        self._open_pnl = open_pnl

    def _unexpose(self, watched: Watched) -> None:
        """A claimed position leaves the open PnL and its contract's units."""
        self._open_pnl -= self._gross(watched) - watched.entry_charges
        exposure = self._exposure.get(watched.key)
        if exposure is not None:
            quantity = watched.plan.quantity
            self._exposure[watched.key] = (
                exposure[0] - quantity,
                exposure[1] - watched.plan.entry_price * quantity,
            )
        self._bands.pop(watched.key, None)

    def _evaluate(
        self,
        watched: Watched,
        tick: Tick | None,
        now: datetime,
        risk: DayRisk,
        received: float,
        decisions: list[tuple[Watched, ExitDecision, float]],
    ) -> None:
        """``received``: the deciding tick's receive time (0: the sweep's, nothing to time)."""
        if watched.claimed:
            return
        underlying = self.underlying.get(watched.index_key) if watched.index_key else None
        self.counters["evaluations"] += 1
        watched.evaluated += 1
        decision, state = evaluate(watched.plan, watched.state, tick, underlying, now, risk)
        if state is not watched.state:
            watched.state = state
            self._bands.pop(watched.key, None)
            saved = watched.saved
            if (state.stop_component, state.stop_tier) != (saved.stop_component, saved.stop_tier):
                # A stop armed by a new component (break-even, trailing, a tighter tier) is
                # written at once; its level moving within one is written by the sweep (at
                # most persist_interval old), so a trailing stop never restarts as the initial.
                self._persist_soon(watched)
        if decision is not None:
            watched.claimed = True  # one decision per position, whatever follows
            self._unexpose(watched)
            decisions.append((watched, decision, received))

    def _mark_due(self, records: Mapping[str, TickRecord], now: float) -> None:
        """Note the positions whose contract ticked: the sweep marks their PnL in one batch.
        Nothing on the tick path waits for the PnL cache or its database copy: the rules
        ran on every tick; pnl:{id} is for people and the gates, at most a sweep old."""
        if self._marks is not None:
            return  # the marks process reads the prices itself
        for key in records:
            self._unmarked.update(self.by_key.get(key, ()))

    def mark_pnl(self, now: float) -> int:
        """The PnL of every position whose contract ticked since the last sweep, marked in
        one batch (PnlMonitor.mark_batch), giving way to routes and the tick thread every 16
        positions. Returns how many were marked."""
        pending, self._unmarked = self._unmarked, set()

        def pause() -> None:
            self._yield_to_routes()
            time.sleep(0)  # the interpreter lock to the tick thread, if it waits for it

        return self.mark_batch(pending, self.last_ticks, now, pause)

    # -- the sweep -------------------------------------------------------------------------

    def sweep(self, now: float) -> int:
        """Every ``sweep_interval`` seconds: the rules of every watched position on market
        time (with the last tick when it is fresh, the REST quote in live mode when it is
        not), the kill switch's pending entries, the PnL marks left behind by throttling, the
        exit states. Returns the number of decisions."""
        market_now = self.market_now()
        # The database's part read here only when no bookkeeper reads it (refresh_risk).
        risk = self.day_risk(market_now, refresh=self._books is None)
        stale_after = self.config_source().feed.option_stale_seconds
        decisions: list[tuple[Watched, ExitDecision, float]] = []
        bands = self._usable_bands(risk)
        for key, group in list(self.on_key.items()):
            if all(watched.claimed for watched in group):
                continue
            record = self.last_ticks.get(key)
            tick = None
            if record is not None and now - record.receive_time <= stale_after:
                band = bands.get(key)
                if band is not None and band.holds(record.ltp, market_now):
                    self.counters["quiet"] += len(group)
                    continue  # the last tick, now: inside the band (its clock rules too)
                tick = _tick(record)
            elif self.rest_quotes is not None:
                tick = self._rest_tick(key, market_now)
                if tick is not None:
                    self._set_price(key, tick.ltp, None)
            else:
                self.counters["stale"] += 1
            for watched in group:
                self._evaluate(watched, tick, market_now, risk, 0.0, decisions)
            if tick is not None:
                self._bands[key] = self._band_of(group, market_now)
        if decisions:
            self.act_all(decisions)  # the kill switch's: every open position in one message
        if risk.kill_switch:
            self.cancel_pending_entries()
        if self._books is None:
            self.keep_books(now)
        return len(decisions)

    def _rest_tick(self, key: str, market_now: datetime) -> Tick | None:
        quote = self.rest_quotes(key) if self.rest_quotes is not None else None
        if quote is None or not quote[2]:
            self.counters["stale"] += 1
            return None
        return Tick(Decimal(quote[2]), market_now)

    def cancel_pending_entries(self) -> int:
        """Kill switch: the working entry orders of positions not yet filled are cancelled
        (a fill that beats the cancel makes the position active; the next sweep exits it)."""
        cancelled = 0
        for order in Order.objects.filter(
            leg=OrderLeg.ENTRY,
            status__in=WORKING,
            cancel_requested_at=None,
            position__status=PositionStatus.PENDING,
        ).exclude(status=JournalStatus.UNKNOWN):
            try:
                self.router.cancel(order)
            except AuthFailure:
                raise
            except Exception as exc:
                self._record_error(f"cancel {order.correlation_id}: {exc}")
                logger.warning("exit engine: cancel of %s failed: %s", order.correlation_id, exc)
                continue
            cancelled += 1
            logger.warning(
                "exit engine: kill switch: entry order %s of position #%d cancelled",
                order.correlation_id,
                order.position_id,
            )
        return cancelled

    # -- the day's risk --------------------------------------------------------------------

    def day_risk(self, now: datetime, *, refresh: bool = False) -> DayRisk:
        """Kill switch, realized + open PnL of the market day, and the loss limit in rupees.
        The database parts are read on the sweep (``refresh``) and kept between; the open
        PnL is this engine's own, from the last price of each position (net of its entry
        charges; the exit's are not known until it fills)."""
        day = now.date()
        if refresh or self._realized_today is None or self._realized_today[0] != day:
            self.refresh_risk(now)
        open_pnl = self._open_pnl
        config = self.config_source()
        limit = config.risk.daily_loss_limit.limit(self.capital(now))
        return DayRisk(
            kill_switch=self._kill_switch,
            day_pnl=self._realized_today[1] + open_pnl,
            loss_limit=limit if limit is not None and limit > 0 else None,
        )

    def refresh_risk(self, now: datetime) -> None:
        """The database parts of :meth:`day_risk`: the day's realized PnL and the kill
        switch. While the bookkeeper runs it reads them (every ``sweep_interval``), not the
        tick thread's sweep: two round trips that held up every tick behind them for about
        15 ms a second (bench/exit_engine.py). A kill switch found on makes the tick
        thread's next pass a sweep, so the flattening starts within one read, not two."""
        from trading.switches import kill_switch_active

        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        realized = (
            PositionTracker.objects.filter(
                status=PositionStatus.EXITED, exited_at__gte=day_start
            ).aggregate(total=Sum("realized_pnl"))["total"]
            or ZERO
        )
        self._realized_today = (now.date(), Decimal(realized))
        was, self._kill_switch = self._kill_switch, kill_switch_active()
        if self._kill_switch and not was:
            self._next_sweep = 0.0

    def capital(self, now: datetime) -> Decimal:
        """What a percentage loss limit is of: paper, the seed cash plus the net PnL booked
        before today; live, the broker's start-of-day limit (read once a day; 0 until read,
        which makes a percentage limit trip at once: fail safe)."""
        day = now.date()
        if self._capital is not None and self._capital[0] == day:
            return self._capital[1]
        if self.live:
            try:
                funds = self.rest.fund_limit() if self.rest is not None else None
            except AuthFailure:
                raise
            except Exception as exc:
                logger.warning("exit engine: fund limit unreadable: %s", exc)
                funds = None
            if funds is None:
                return ZERO
            value = Decimal(funds.sodLimit or funds.availabelBalance)
        else:
            day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
            booked = PositionTracker.objects.filter(
                status=PositionStatus.EXITED, exited_at__lt=day_start
            ).aggregate(total=Sum("realized_pnl"))["total"]
            value = self.seed_cash() + (booked or ZERO)
        self._capital = (day, value)
        return value

    # -- acting ----------------------------------------------------------------------------

    def act_all(self, decisions: list[tuple[Watched, ExitDecision, float]]) -> None:
        """Act on decisions (one contract's, a batch's): each position's state as it was at
        the decision is written first (the claimed position keeps its peak and stop), a
        daily-loss decision trips the kill switch, then the claim and the route: in the
        route process or on the router threads while the engine runs (the tick thread goes
        straight back to the ticks), inline when a test drives one pass at a time. To the
        route process they go in one message and the bookkeeper is woken once, after: a
        write and a wake per decision each let another thread take the interpreter lock
        from the tick thread, for up to a switch interval (5 ms) each, in the bursts of
        exits that come together."""
        remote = self._remote
        handed: list[tuple[int, int, str, str, dict[str, Any]]] = []
        for watched, decision, received in decisions:
            acting = self.clock()
            self.counters["decisions"] += 1
            self._persist_soon(watched, wake=False)
            if decision.exit_type == ExitType.DAILY_LOSS_LIMIT:
                self.trip_kill_switch(decision)
            if remote is not None:
                self._remote_seq += 1
                self._remote_pending[self._remote_seq] = (watched, decision, received, acting)
                self._queued += 1
                fields = {
                    "quote": self._quote(watched),
                    "expect": self._expect(watched),
                    **self._decision_fields(decision),
                }
                handed.append(
                    (
                        self._remote_seq,
                        watched.position_id,
                        str(decision.exit_type),
                        decision.reason,
                        fields,
                    )
                )
            elif self._routes is not None:
                self._queued += 1
                self._routes.put((watched, decision, received, acting))
            else:
                self.route(watched, decision, received, acting)
        if self._books is not None:
            self._wake_books.set()
        if handed and remote is not None:
            try:
                remote.put_many(handed)
            except RoutesDied as exc:
                self._route_failure = exc
                raise

    def _quote(self, watched: Watched) -> Any:
        """The contract's (bid, ask, ltp) from its last tick when that is fresh (the router
        then prices the exit without reading it again); None: the router reads its own."""
        record = self.last_ticks.get(watched.key)
        if record is None:
            return None
        stale = self.config_source().feed.option_stale_seconds
        return record_quote(record, stale, self.clock())

    def _expect(self, watched: Watched) -> ClaimedExit | None:
        """The position's facts as this engine judged it (its units, contract, lot and tick):
        the router builds the exit orders from them before the claim and journals them in the
        claim's statement, which checks them (OrderRouter.exit_position). None when the row
        was read without its contract (never by fetch_open): the router reads them then."""
        position = self.positions.get(watched.position_id)
        if position is None or not PositionTracker.derivative.is_cached(position):
            return None
        derivative = position.derivative
        if derivative is None:
            return None
        return ClaimedExit(
            quantity=int(position.quantity),
            underlying=position.underlying,
            mode=position.mode,
            exchange_segment=position.exchange_segment,
            security_id=int(position.security_id),
            lot_size=int(derivative.lot_size),
            tick_size=Decimal(derivative.tick_size),
            entry_working=False,
        )

    @staticmethod
    def _decision_fields(decision: ExitDecision) -> dict[str, Any]:
        return {
            "trigger_price": decision.trigger_price,
            "inputs": dict(decision.inputs),
            "decided_at": decision.decided_at,
            "tick_at": decision.tick_at,
        }

    def route(
        self, watched: Watched, decision: ExitDecision, received: float, acting: float
    ) -> bool:
        """Claim and route one decision; True when this engine claimed it."""
        try:
            result = self.router.exit_position(
                watched.position_id,
                decision.exit_type,
                decision.reason,
                quote=self._quote(watched),
                expect=self._expect(watched),
                **self._decision_fields(decision),
            )
        except ExitRefused as exc:
            return self._routed_as(watched, decision, received, acting, "refused", str(exc))
        except AuthFailure:
            raise
        except Exception as exc:
            # Claimed or not, the order manager drives any claimed exit to its end.
            logger.exception("exit engine: routing the exit of #%d failed", watched.position_id)
            return self._routed_as(watched, decision, received, acting, "error", str(exc))
        return self._routed_as(watched, decision, received, acting, "exit", result.detail)

    def _routed_as(
        self,
        watched: Watched,
        decision: ExitDecision,
        received: float,
        acting: float,
        outcome: str,
        detail: str,
        finished: float | None = None,
    ) -> bool:
        """Count and log one route's outcome (here, or from the route process); True when
        this engine claimed and routed it."""
        if outcome == "refused":
            self.counters["refused"] += 1
            logger.info("exit engine: %s: %s (another exit has it)", decision.exit_type, detail)
            return False
        if outcome != "exit":
            self._record_error(f"exit #{watched.position_id}: {detail}")
            return False
        self.counters["exits"] += 1
        if received:
            self.tick_to_send.append((finished or self.clock()) - received)
            self.tick_to_act.append(acting - received)
            self.first_look.append(watched.evaluated == 1)
        logger.warning(
            "exit engine: position #%d %s: %s -> %s",
            watched.position_id,
            decision.exit_type,
            decision.reason,
            detail,
        )
        return True

    def _remote_done(self, seq: int, outcome: str, detail: str, finished: float) -> None:
        """The route process's answer (its reader thread)."""
        try:
            item = self._remote_pending.pop(seq, None)
            if outcome == "auth":
                self._route_failure = AuthFailure(detail)
            # An "error" was logged by the route process with its traceback; it is counted.
            if item is not None:
                self._routed_as(*item, outcome, detail, finished)
        finally:
            self._routed[0] += 1

    def _helper_died(self, exc: RuntimeError) -> None:
        """The route or the marks process died: the engine stops (its supervisor starts it
        again, and its start continues every claimed exit)."""
        logger.critical("exit engine: %s; it stops (its start continues claimed exits)", exc)
        self._route_failure = exc

    def _start_routes(self) -> None:
        """The router threads: they take the decisions in the order they were made and
        route them, each on its own database connection, so no tick waits for an exit's
        round trips and a burst of exits (the kill switch, a gap through many stops) is
        routed side by side. ``router_threads`` of them: 4 on PostgreSQL, 1 on SQLite (one
        writer at a time there). An authentication failure stops its thread; the tick thread
        raises it on its next pass (trading stops loudly, /ready says why). With
        ``route_process`` the same threads run in the route process (workers/exit_routes.py),
        whose round trips then never wait for this process's interpreter lock."""
        from django.db import DEFAULT_DB_ALIAS

        count = self.router_threads
        if count is None:
            count = 1 if connections[DEFAULT_DB_ALIAS].vendor == "sqlite" else 4
        self._queued = 0
        if self.route_process:
            self._routed = [0]  # written by the route process's reader thread only
            remote = RouteProcess(
                live=self.live,
                on_done=self._remote_done,
                on_died=self._helper_died,
                threads=count,
                **self._shared("route_process"),
            )
            remote.start()
            self._remote = remote
            return
        routes: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._routed = [0] * count

        def drain(slot: int) -> None:
            warm = WarmConnection(f"exit engine (router {slot})", warm=self.router.warm_up)
            try:
                warm.open()  # no route opens a connection or pays the first passes
                while True:
                    item = warm.take(routes)
                    if item is None:
                        return
                    try:
                        self.route(*item)
                    except AuthFailure as exc:
                        self._route_failure = exc
                        return
                    finally:
                        self._routed[slot] += 1
            finally:
                connections.close_all()  # this thread's connections

        self._routes = routes
        routers = [
            threading.Thread(
                target=drain, args=(slot,), name=f"exit-engine-router-{slot}", daemon=True
            )
            for slot in range(count)
        ]
        for thread in routers:
            thread.start()
        self._routers = routers  # set once every thread runs (what a watcher may wait for)

    def _stop_routes(self) -> None:
        """Route what is queued, then stop the router threads (or the route process)."""
        remote, self._remote = self._remote, None
        if remote is not None:
            remote.stop()
            return
        routers, routes = self._routers, self._routes
        if not routers or routes is None:
            return
        for _ in routers:
            routes.put(None)
        for thread in routers:
            thread.join(timeout=30.0)
        self._routers, self._routes = [], None

    def _start_marks(self) -> None:
        """The marks process (``marks_process``): the PnL marks of the book off this
        process's interpreter (workers/exit_marks.py)."""
        if not self.marks_process:
            return
        marks = MarksProcess(
            on_counts=self._marks_counted,
            on_died=self._helper_died,
            interval=self.sweep_interval,
            **self._shared("marks_process"),
        )
        marks.start()
        self._marks = marks

    def _shared(self, what: str) -> dict[str, Any]:
        """What a helper process needs to share this engine's state: Redis (its URL and
        prefix) and the database (this process's NAME: the test database under pytest)."""
        from django.db import DEFAULT_DB_ALIAS

        if self.realtime.redis_url is None:
            raise ValueError(f"{what} needs Redis (another process cannot see memory)")
        return {
            "redis_url": self.realtime.redis_url,
            "prefix": self.realtime.prefix,
            "database": {"NAME": connections[DEFAULT_DB_ALIAS].settings_dict["NAME"]},
        }

    def _marks_counted(self, updates: int, errors: int, last_error: str | None) -> None:
        self._marks_counts = (updates, errors, last_error)

    def _stop_marks(self) -> None:
        marks, self._marks = self._marks, None
        if marks is not None:
            marks.stop()

    def trip_kill_switch(self, decision: ExitDecision) -> None:
        from trading.switches import kill_switch_active, set_kill_switch

        if self._tripped_by_loss or kill_switch_active():
            self._kill_switch = True
            return
        reason = f"tripped by the daily loss limit: {decision.reason}"
        set_kill_switch(True, reason)
        self._kill_switch = self._tripped_by_loss = True
        logger.error("exit engine: KILL SWITCH ON, %s; every open position is exited", reason)

    # -- persistence -----------------------------------------------------------------------

    def persist(self, *, force: bool = False) -> int:
        """Write every exit state that moved since it was last written, in one statement
        (conditional on the position being open). A failure keeps them in memory for the
        next sweep."""
        return self._persist_rows(list(self.watched.values()))

    def _persist_rows(self, watched: list[Watched]) -> int:
        """:meth:`persist` for these positions: the states that moved, one statement (100
        rows a statement), not an ORM update each: a burst of decisions wrote one row at a
        time, milliseconds of this process's interpreter that the tick path waited for just
        when exits come together (bench/exit_engine.py)."""
        moved = [(w, w.state) for w in watched if w.state is not w.saved]
        if not moved:
            return 0
        try:
            update_open_positions(
                {w.position_id: _state_columns(state) for w, state in moved}, EXIT_STATE_COLUMNS
            )
        except Exception as exc:
            self._record_error(f"persist: {type(exc).__name__}")
            logger.exception("exit engine: exit states not written (kept in memory)")
            return 0
        for watched, state in moved:
            watched.saved = state  # what was written (a newer state is written next time)
        return len(moved)

    # -- heartbeat -------------------------------------------------------------------------

    def handle_heartbeat(self, now: float, *, force: bool = False) -> bool:
        if not force and now < self._next_beat:
            return False
        self._next_beat = now + self.heartbeat_interval
        try:
            self.heartbeat.beat("running", **self._beat_fields())
        except Exception:
            logger.warning("exit engine: heartbeat write failed", exc_info=True)
            return False
        return True

    def _beat_fields(self) -> dict[str, Any]:
        # updates: PnL marks written (by the marks process when it runs); errors and the last
        # one: this process's and the marks process's.
        marked, marks_errors, marks_error = self._marks_counts
        return {
            "positions": len(self.positions),
            "watched": len(self.watched),
            "keys": len(self.by_key),
            "updates": self.updates + marked,
            "errors": self.errors + marks_errors,
            "last_tick_at": self.last_tick_at,
            "last_error": self.last_error or marks_error,
            "marks": (
                f"process {self._marks.process.pid}"
                if self._marks is not None and self._marks.process is not None
                else "engine"
            ),
            "kill_switch": self._kill_switch,
            # Where the exits are routed: the route process's pid, or the engine's threads;
            # routing: decisions handed over and not yet answered.
            "routes": (
                f"process {self._remote.process.pid}"
                if self._remote is not None and self._remote.process is not None
                else "threads"
            ),
            "routing": self._queued - sum(self._routed),
            **self.counters,
        }


EXIT_STATE_COLUMNS = (
    "peak_premium",
    "trough_premium",
    "protective_stop",
    "stop_rule",
    "seconds_in_loss",
    "in_loss_at",
    "premium_high_at",
)


def _state_columns(state: ExitState) -> dict[str, Any]:
    return {
        "peak_premium": state.peak,
        "trough_premium": state.trough,
        "protective_stop": state.stop,
        "stop_rule": state.stop_rule,
        "seconds_in_loss": state.seconds_in_loss,
        "in_loss_at": state.in_loss_at,
        "premium_high_at": state.high_at,
    }


def _unclaimed(group: list[Watched]) -> tuple[int, Decimal, Decimal]:
    """Units, entry cost and entry charges of a contract's unclaimed watched positions."""
    units, cost, charges = 0, ZERO, ZERO
    for watched in group:
        if not watched.claimed:
            units += watched.plan.quantity
            cost += watched.plan.entry_price * watched.plan.quantity
            charges += watched.entry_charges
    return units, cost, charges


def _tick(record: Any) -> Tick:
    return Tick(price_decimal(record.ltp), datetime.fromtimestamp(tick_time(record), IST))


def _seed_cash(config_source: Callable[[], AlgoConfig]) -> Callable[[], Decimal]:
    def seed() -> Decimal:
        from django.conf import settings

        from_env = getattr(settings, "PAPER_SEED_CASH", None)
        return Decimal(from_env) if from_env is not None else config_source().paper.seed_cash

    return seed


def exit_engine_from_settings(
    realtime: Realtime,
    *,
    live: bool,
    route_process: bool | None = None,
    marks_process: bool | None = None,
) -> ExitEngine:
    """The exit engine as run_exit_engine and run_trader build it: the router of this process
    (paper, or the live gateway with REST quotes for a stale feed), market time followed from
    the feed hub. ``route_process`` (default: on PostgreSQL with Redis, which a second
    process can share) routes the exits from a process of their own (workers/exit_routes.py),
    and ``marks_process`` (the same default) marks the book's PnL from another
    (workers/exit_marks.py); the embedded default (SQLite, the in-memory bus) does both in
    this process's threads."""
    from django.db import connection

    from workers.orders import RestQuotes, reloading_config, router_for

    config_source = reloading_config()
    clock = MarketClock(name="exit engine")
    rest = None
    rest_quotes = None
    gateway = None
    if live:
        from trading.orders.live import live_gateway_from_settings

        gateway = live_gateway_from_settings()
        rest = gateway.rest
        rest_quotes = RestQuotes(rest)
    router = router_for(
        realtime,
        live=live,
        clock=clock,
        config_source=config_source,
        gateway=gateway,
        rest_quotes=rest_quotes,
    )
    shared = realtime.redis_url is not None and connection.vendor == "postgresql"
    if route_process is None:
        route_process = shared
    if marks_process is None:
        marks_process = shared
    return ExitEngine(
        realtime,
        router,
        config_source=config_source,
        clock=clock,
        live=live,
        rest=rest,
        rest_quotes=rest_quotes,
        route_process=route_process,
        marks_process=marks_process,
    )
