r"""Live PnL of open positions: a cache per position, a throttled database copy, and the monitor.

    tick (TickSubscription) --> PnlMonitor --> PnlCache   kv "pnl:{id}", every tick (fast, lossy)
                                          \-> PnlDbSync  PositionTracker columns, <= 1 per 5 s

The cache is rebuildable: if it is lost (Redis flushed, process restarted) the next tick
recomputes the figures and the peak/trough continue from the database columns, which are at
most ``interval`` seconds old. Peak and trough are of the GROSS PnL in rupees (net depends on a
charges estimate that can change between ticks; gross does not).

One writer per position is assumed (one PnlMonitor per account): the cache keeps the last
snapshot in memory and carries peak/trough forward from it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from django.db import close_old_connections, connections

from trading.charges import charges_table
from trading.models import PositionStatus, PositionTracker
from trading.rules.charges import exchange_of, order_charges
from trading.rules.market import IST
from trading.rules.pnl import price_decimal, track_extremes, unrealized
from workers.heartbeat import Heartbeat
from workers.realtime.keys import pnl_key
from workers.realtime.kv_store import DbKeyValueStore, MemoryKeyValueStore

if TYPE_CHECKING:
    from workers.realtime.coalescing import TickSubscription
    from workers.realtime.kv_store import KeyValueStore
    from workers.realtime.record import TickRecord
    from workers.realtime.services import Realtime
    from workers.realtime.tick_store import TickStore

logger = logging.getLogger(__name__)

OPEN_STATUSES = (PositionStatus.ACTIVE, PositionStatus.EXITING)
LTP_PLACES = Decimal("0.0001")  # PositionTracker.ltp has 4 decimal places
PNL_COLUMNS = (
    "ltp",
    "unrealized_pnl",
    "unrealized_pnl_net",
    "pnl_percent",
    "peak_pnl",
    "trough_pnl",
    "pnl_updated_at",
)

_DECIMAL_FIELDS = ("gross", "net", "percent", "peak", "trough", "exit_charges")

# (position, ltp, trade date) -> rupees; the date is the tick's market date, never the wall's.
ExitChargesEstimator = Callable[[PositionTracker, float, date], Decimal]


def position_key(position: PositionTracker) -> str:
    """The tick contract's instrument key of the position's contract."""
    return position.key


def tick_time(record: TickRecord) -> float:
    """A record's market time: the exchange's, else when it was received."""
    return record.exchange_time if record.exchange_time is not None else record.receive_time


def default_exit_charges(position: PositionTracker, ltp: float, on: date) -> Decimal:
    """What closing the position now would cost, in rupees: the charges of ONE SELL order of
    the position's quantity at ``ltp`` (trading.rules.charges, rates of config/charges.yml in
    force on ``on``, the market date of the tick), on the exchange of its segment.

    settings.PAPER_CHARGES_PER_ORDER, when set, is an explicit flat override (a paper account
    configured to charge a round figure) and wins. An exit split into several orders (freeze
    quantity) pays brokerage and its GST once per order: this estimate counts one, so it is
    low by one brokerage plus its GST (Rs 23.60 today) per extra order.

    ChargesError / ConfigError (no rates in force, unknown segment, missing or invalid charges
    file) propagate: the monitor logs and skips the position rather than show a net PnL with
    made-up charges."""
    from django.conf import settings

    flat = getattr(settings, "PAPER_CHARGES_PER_ORDER", None)
    if flat is not None:
        return Decimal(flat)
    charges = order_charges(
        exchange_of(position.exchange_segment),
        "SELL",
        int(position.quantity),
        price_decimal(ltp),
        on,
        charges_table(),
    )
    return charges.total


@dataclass(frozen=True, slots=True)
class PnlSnapshot:
    """One position marked at one tick. Rupees are Decimal; times are epoch seconds.

    ``tick_time`` is the tick's exchange time (its receive time when the contract never traded);
    ``updated_at`` is when the snapshot was computed. In as_dict() Decimals are strings, so the
    JSON copy is exact.
    """

    position_id: int
    key: str
    ltp: float
    gross: Decimal
    net: Decimal
    percent: Decimal
    peak: Decimal
    trough: Decimal
    exit_charges: Decimal
    tick_seq: int
    tick_time: float | None
    updated_at: float

    def as_dict(self) -> dict[str, Any]:
        # Field names read once (dataclasses.fields() per call cost as much as the rest).
        out: dict[str, Any] = {}
        for name in _SNAPSHOT_FIELDS:
            value = getattr(self, name)
            out[name] = str(value) if isinstance(value, Decimal) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PnlSnapshot:
        """The inverse of as_dict(); ValueError naming the missing or malformed field."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                raise ValueError(f"PnL snapshot: missing field {f.name!r}")
            raw = data[f.name]
            try:
                if f.name in _DECIMAL_FIELDS:
                    if not isinstance(raw, str | int):
                        raise TypeError(type(raw).__name__)
                    value: Any = Decimal(raw)
                    if not value.is_finite():
                        raise ValueError(raw)
                elif f.name in ("position_id", "tick_seq"):
                    if isinstance(raw, bool) or not isinstance(raw, int):
                        raise TypeError(type(raw).__name__)
                    value = raw
                elif f.name == "key":
                    if not isinstance(raw, str):
                        raise TypeError(type(raw).__name__)
                    value = raw
                elif f.name == "tick_time" and raw is None:
                    value = None
                else:
                    if isinstance(raw, bool) or not isinstance(raw, int | float):
                        raise TypeError(type(raw).__name__)
                    value = float(raw)
            except (TypeError, ValueError, InvalidOperation) as exc:
                raise ValueError(f"PnL snapshot: bad {f.name!r}: {raw!r} ({exc})") from None
            values[f.name] = value
        return cls(**values)

    @property
    def updated_datetime(self) -> datetime:
        return datetime.fromtimestamp(self.updated_at, tz=UTC)


_SNAPSHOT_FIELDS = tuple(f.name for f in fields(PnlSnapshot))


class PnlCache:
    """Latest PnlSnapshot per position in a KeyValueStore, name ``pnl:{position_id}``, no TTL
    (deleted when the position leaves the open set)."""

    def __init__(self, kv: KeyValueStore) -> None:
        self.kv = kv
        # The last snapshot this process computed per position: peak/trough carry forward from
        # it without a round trip, and survive the store being flushed or briefly unreachable.
        self._last: dict[int, PnlSnapshot] = {}

    @staticmethod
    def name(position_id: int) -> str:
        return pnl_key(position_id)

    def compute(
        self,
        position: PositionTracker,
        ltp: float,
        *,
        tick_seq: int,
        tick_time: float | None,
        exit_charges: Decimal,
        now: float,
    ) -> PnlSnapshot:
        """Mark ``position`` at ``ltp`` without storing it (update() = compute() + store()).

        Peak/trough start from the previous snapshot (in memory, else the store) and from the
        database columns; taking the extremes of both is safe because extremes only grow, and
        it covers a lost cache (the columns are the last synced copy). ValueError when the
        position has no entry price or the inputs are not valid (trading.rules.pnl).
        """
        if position.pk is None:
            raise ValueError("position has no id")
        if position.entry_price is None:
            raise ValueError(f"position #{position.pk} has no entry price")
        figures = unrealized(
            Decimal(position.entry_price), ltp, int(position.quantity), exit_charges
        )
        previous = self._last.get(position.pk) or self._stored(position.pk)
        peak, trough = (previous.peak, previous.trough) if previous else (None, None)
        for column in (position.peak_pnl, position.trough_pnl):
            if column is not None:
                peak, trough = track_extremes(peak, trough, Decimal(column))
        peak, trough = track_extremes(peak, trough, figures.gross)
        snapshot = PnlSnapshot(
            position_id=position.pk,
            key=position_key(position),
            ltp=float(ltp),
            gross=figures.gross,
            net=figures.net,
            percent=figures.percent,
            peak=peak,
            trough=trough,
            exit_charges=exit_charges,
            tick_seq=tick_seq,
            tick_time=tick_time,
            updated_at=now,
        )
        self._last[position.pk] = snapshot
        return snapshot

    def store(self, snapshot: PnlSnapshot) -> None:
        self.kv.put(self.name(snapshot.position_id), snapshot.as_dict())

    def store_many(self, snapshots: list[PnlSnapshot]) -> None:
        """Every snapshot in one write (one Redis round trip)."""
        self.kv.put_many({self.name(s.position_id): s.as_dict() for s in snapshots})

    def update(
        self,
        position: PositionTracker,
        ltp: float,
        *,
        tick_seq: int,
        tick_time: float | None,
        exit_charges: Decimal,
        now: float,
    ) -> PnlSnapshot:
        """Compute the snapshot for this tick, store it, and return it."""
        snapshot = self.compute(
            position,
            ltp,
            tick_seq=tick_seq,
            tick_time=tick_time,
            exit_charges=exit_charges,
            now=now,
        )
        self.store(snapshot)
        return snapshot

    def _stored(self, position_id: int) -> PnlSnapshot | None:
        try:
            return self.get(position_id)
        except Exception:
            # An unreachable store must not stop pricing: the DB columns seed the extremes.
            logger.warning("PnL cache: could not read %s", pnl_key(position_id), exc_info=True)
            return None

    def get(self, position_id: int) -> PnlSnapshot | None:
        """The stored snapshot, or None (absent, or unreadable: logged)."""
        data = self.kv.get(self.name(position_id))
        if data is None:
            return None
        try:
            return PnlSnapshot.from_dict(data)
        except ValueError as exc:
            logger.warning("PnL cache: ignoring %s: %s", pnl_key(position_id), exc)
            return None

    def last(self, position_id: int) -> PnlSnapshot | None:
        """The last snapshot this process computed (memory only)."""
        return self._last.get(position_id)

    def delete(self, position_id: int) -> None:
        self._last.pop(position_id, None)
        self.kv.delete(self.name(position_id))


# Rows per statement of update_open_positions: each statement holds its rows' locks until it
# ends, and an exit's claim of one of them waits that long. Measured (bench/exit_engine.py,
# PostgreSQL's log_min_duration_statement): the PnL copy of 2,000 positions in one statement
# took 93-146 ms every 5 s on the bench machine, and the claims that came meanwhile waited for
# it (the route's p99). 100 rows: about 5 ms.
UPDATE_CHUNK = 100


def update_open_positions(
    rows: Mapping[int, Mapping[str, Any]], columns: Sequence[str], chunk: int = UPDATE_CHUNK
) -> int:
    """Set ``columns`` of many positions, each to its own values, only on positions still open
    (active or exiting: one another process exited meanwhile is left alone), ``chunk`` rows a
    statement (:data:`UPDATE_CHUNK`). PostgreSQL: ``UPDATE ... FROM (VALUES ...)`` with every
    value a bound parameter cast to its column's type (Django's bulk_update builds a CASE per
    column and row, whose Python cost at 2,000 rows held the exit engine's GIL for a tenth of
    a second); elsewhere (SQLite, in process) a filtered bulk_update. Returns the rows
    updated."""
    from django.db import connection

    if not rows:
        return 0
    fields = [PositionTracker._meta.get_field(name) for name in columns]
    if connection.vendor != "postgresql":
        objs = [PositionTracker(pk=pk, **values) for pk, values in rows.items()]
        return PositionTracker.objects.filter(status__in=OPEN_STATUSES).bulk_update(
            objs, list(columns), batch_size=chunk
        )
    items = list(rows.items())
    return sum(
        _update_open_chunk(dict(items[start : start + chunk]), fields, connection)
        for start in range(0, len(items), chunk)
    )


def _update_open_chunk(
    rows: Mapping[int, Mapping[str, Any]], fields: list[Any], connection: Any
) -> int:
    casts = [f"%s::{field.db_type(connection)}" for field in fields]
    row_sql = "(%s::bigint, " + ", ".join(casts) + ")"
    params: list[Any] = []
    for pk, values in rows.items():
        params.append(pk)
        params.extend(field.get_db_prep_save(values[field.name], connection) for field in fields)
    table = PositionTracker._meta.db_table
    sets = ", ".join(f"{field.column} = v.{field.column}" for field in fields)
    names = ", ".join(["id"] + [field.column for field in fields])
    # Identifiers from the model's own metadata, every value a bound parameter.
    sql = (
        f"UPDATE {table} AS t SET {sets} FROM (VALUES {', '.join([row_sql] * len(rows))}) "  # noqa: S608
        f"AS v({names}) WHERE t.id = v.id AND t.status = ANY(%s)"
    )
    params.append([str(status) for status in OPEN_STATUSES])
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


# What says an open position changed (a reload reads the full row again): its status, its
# quantity, its entry price, its charges.
FINGERPRINT = ("status", "quantity", "entry_price", "charges")


def _fingerprint_sql() -> str:
    """The fingerprints' query: the money columns as text (an exact value to compare, read
    without building a Decimal each), straight from a cursor, not through the ORM's rows."""
    meta = PositionTracker._meta
    columns = []
    for name in FINGERPRINT:
        field = meta.get_field(name)
        money = field.get_internal_type() == "DecimalField"
        columns.append(f"CAST({field.column} AS TEXT)" if money else field.column)
    marks = ", ".join(["%s"] * len(OPEN_STATUSES))
    return (
        f"SELECT {meta.pk.column}, {', '.join(columns)} FROM {meta.db_table}"  # noqa: S608 (column names; values bound)
        f" WHERE {meta.get_field('status').column} IN ({marks})"
    )


_FINGERPRINTS = _fingerprint_sql()


def read_open_positions(
    known: Mapping[int, tuple[Any, ...]], *related: str
) -> tuple[dict[int, tuple[Any, ...]], dict[int, PositionTracker], list[int]]:
    """The open positions, read cheaply enough to do every second at 2,000 of them: one
    narrow query of every open position's fingerprint (:data:`FINGERPRINT`, its money as
    text), then the full rows (with ``related``) of those whose fingerprint is not the one in
    ``known``. Returns the fingerprints, those rows, and the open positions without an entry
    price (left out: nothing can be priced or judged for them). Database errors are the
    caller's."""
    prints: dict[int, tuple[Any, ...]] = {}
    missing: list[int] = []
    # Read raw: at 2,000 positions the ORM's values_list spent about 5 ms of this process's
    # interpreter a second here (Decimals and per-row converters), time the exit engine's
    # tick path waited for (bench/exit_engine.py, bench/RESULTS.md).
    with connections[PositionTracker.objects.db].cursor() as cursor:
        cursor.execute(_FINGERPRINTS, [str(status) for status in OPEN_STATUSES])
        rows = cursor.fetchall()
    for pk, status, quantity, entry_price, charges in rows:
        if entry_price is None:
            missing.append(pk)
        else:
            prints[pk] = (status, quantity, entry_price, charges)
    changed = [pk for pk, fingerprint in prints.items() if known.get(pk) != fingerprint]
    loaded = {
        position.pk: position
        for position in PositionTracker.objects.filter(pk__in=changed).select_related(*related)
    }
    return prints, loaded, missing


class PnlDbSync:
    """Copies snapshots to the PositionTracker PnL columns, at most once per ``interval``
    seconds per position while it is open, and unconditionally at exit (sync_final)."""

    def __init__(self, interval: float = 5.0) -> None:
        if interval < 0:
            raise ValueError(f"interval must be >= 0, got {interval!r}")
        self.interval = interval
        self._last_sync: dict[int, float] = {}

    def maybe_sync(self, snapshot: PnlSnapshot, now: float) -> bool:
        """Write when ``interval`` has passed since this position's last write (or there was
        none). True when a row was written. The UPDATE is conditional on the position being
        active or exiting: it never touches a position another process exited meanwhile."""
        last = self._last_sync.get(snapshot.position_id)
        # A clock that went backwards (NTP step, replay restart) counts as "interval passed":
        # otherwise a step back of an hour would stop the copy for an hour.
        if last is not None and 0 <= now - last < self.interval:
            return False
        self._last_sync[snapshot.position_id] = now
        return self._write(snapshot, only_open=True)

    def sync_many(self, snapshots: list[PnlSnapshot], now: float) -> int:
        """:meth:`maybe_sync` for many positions in one batch (update_open_positions: the due
        ones, each at most once per ``interval``), conditional on each being open; returns how
        many were due. A position's first copy is written at once, and its second a fraction
        of the interval later that its id decides (:meth:`_phase`): positions first marked
        together (a start, a reload) then come due spread over the interval, not all together
        every interval."""
        due = []
        for snapshot in snapshots:
            pk = snapshot.position_id
            last = self._last_sync.get(pk)
            if last is not None and 0 <= now - last < self.interval:
                continue
            self._last_sync[pk] = now if last is not None else now - self._phase(pk)
            due.append(snapshot)
        if not due:
            return 0
        update_open_positions(
            {
                snapshot.position_id: {
                    "ltp": Decimal(str(snapshot.ltp)).quantize(LTP_PLACES),
                    "unrealized_pnl": snapshot.gross,
                    "unrealized_pnl_net": snapshot.net,
                    "pnl_percent": snapshot.percent,
                    "peak_pnl": snapshot.peak,
                    "trough_pnl": snapshot.trough,
                    "pnl_updated_at": snapshot.updated_datetime,
                }
                for snapshot in due
            },
            PNL_COLUMNS,
        )
        return len(due)

    def _phase(self, position_id: int) -> float:
        """Seconds in [0, interval), spread evenly over consecutive ids (Knuth's
        multiplicative hash)."""
        return (position_id * 2654435761 % 4096) / 4096 * self.interval

    def sync_final(self, snapshot: PnlSnapshot) -> bool:
        """Write the snapshot whatever the throttle and the status (the last mark of a position
        that is exiting or exited). True when the row exists."""
        self._last_sync.pop(snapshot.position_id, None)
        return self._write(snapshot, only_open=False)

    def forget(self, position_id: int) -> None:
        self._last_sync.pop(position_id, None)

    def _write(self, snapshot: PnlSnapshot, *, only_open: bool) -> bool:
        rows = PositionTracker.objects.filter(pk=snapshot.position_id)
        if only_open:
            rows = rows.filter(status__in=OPEN_STATUSES)
        # queryset.update(): only these columns, so it never overwrites a concurrent status
        # change; `updated_at` (auto_now) is left alone, pnl_updated_at says when this was.
        written = rows.update(
            ltp=Decimal(str(snapshot.ltp)).quantize(LTP_PLACES),
            unrealized_pnl=snapshot.gross,
            unrealized_pnl_net=snapshot.net,
            pnl_percent=snapshot.percent,
            peak_pnl=snapshot.peak,
            trough_pnl=snapshot.trough,
            pnl_updated_at=snapshot.updated_datetime,
        )
        return written == 1


class PnlMonitor:
    """Supervisor component: keeps the PnL cache of every open position current.

    Each pass of run(): close_old_connections(); every ``reload_interval`` s reload the ACTIVE
    and EXITING positions and adjust the tick subscription to their keys; wait up to
    ``wait_timeout`` s for ticks; mark every position on a changed key (PnlCache + throttled
    PnlDbSync); beat the heartbeat ``hb:pnl`` every ``heartbeat_interval`` s. A position that
    leaves the open set gets its last mark written (sync_final) and its cache entry deleted.

    One bad position (no entry price, a failing charges estimate) is logged and skipped; it
    never stops the others. The handle_*() methods are the unit-testable pieces of one pass.

    ``PnlMonitor(ticks, kv)`` or ``PnlMonitor(realtime)`` (a workers.realtime.services.Realtime). In
    embedded mode pass a kv the web process can read (DbKeyValueStore) for the heartbeat to
    show on /ready; the pnl:{id} snapshots then stay in memory (see below) unless ``cache``
    says otherwise. With Redis they go to the same kv as the heartbeat.
    """

    name = "pnl"

    def __init__(
        self,
        ticks: TickStore | Realtime,
        kv: KeyValueStore | None = None,
        *,
        cache: PnlCache | None = None,
        db_sync: PnlDbSync | None = None,
        estimate_exit_charges: ExitChargesEstimator = default_exit_charges,
        reload_interval: float = 1.0,
        wait_timeout: float = 0.5,
        heartbeat: Heartbeat | None = None,
        heartbeat_interval: float = 5.0,
        log_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if kv is None:
            # PnlMonitor(realtime): the process's Realtime bundle (run_trader's one-line add).
            realtime = ticks
            if not hasattr(realtime, "ticks") or not hasattr(realtime, "kv"):
                raise TypeError("PnlMonitor(ticks, kv) or PnlMonitor(realtime)")
            ticks, kv = realtime.ticks, realtime.kv
        self.ticks: TickStore = ticks  # type: ignore[assignment]
        self.kv: KeyValueStore = kv
        if cache is None:
            cache = PnlCache(kv)
            if isinstance(kv, DbKeyValueStore):
                # Embedded mode: a Setting row rewritten on every tick would be a second,
                # unthrottled database copy competing with order writes on SQLite. Snapshots
                # stay in memory; other processes read the PositionTracker columns (<= 5 s old).
                cache = PnlCache(MemoryKeyValueStore())
        self.cache = cache
        self.db_sync = db_sync if db_sync is not None else PnlDbSync()
        self.estimate_exit_charges = estimate_exit_charges
        self.reload_interval = reload_interval
        self.wait_timeout = wait_timeout
        self.heartbeat = heartbeat if heartbeat is not None else Heartbeat(kv, self.name)
        self.heartbeat_interval = heartbeat_interval
        self.log_interval = log_interval
        self.clock = clock

        self.positions: dict[int, PositionTracker] = {}
        self.by_key: dict[str, list[int]] = {}
        self.updates = 0
        self.errors = 0
        self.last_tick_at: float | None = None
        self.last_error: str | None = None
        self.subscription: TickSubscription | None = None
        self._dirty: set[int] = set()  # marked since their last database write
        self._next_reload = 0.0
        self._next_beat = 0.0
        self._next_log = 0.0
        self._reload_failing = False
        self._error_logged_at: dict[int, float] = {}

    # -- the loop -------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Blocks until ``stop`` is set (checked at least every ``wait_timeout`` s)."""
        self.subscription = self.ticks.subscribe()
        try:
            while not stop.is_set():
                self.run_once()
        finally:
            self.subscription.close()
            self.subscription = None
            try:
                self.heartbeat.clear()
            except Exception:
                logger.warning("PnL monitor: could not clear its heartbeat", exc_info=True)
            # This thread's connections: the thread is about to end, nobody else will close them.
            connections.close_all()

    def run_once(self) -> int:
        """One pass; returns the number of positions marked."""
        close_old_connections()
        now = self.clock()
        if now >= self._next_reload:
            self.handle_reload(now)
        records = self.wait_for_ticks(max(0.0, min(self.wait_timeout, self._next_reload - now)))
        now = self.clock()
        marked = self.handle_records(records, now) if records else 0
        self.handle_heartbeat(now)
        return marked

    def wait_for_ticks(self, timeout: float) -> dict[str, TickRecord]:
        """The one blocking call of a pass (tests replace it)."""
        if self.subscription is None:
            return {}
        return self.subscription.wait(timeout)

    # -- one pass, piece by piece ---------------------------------------------------------------

    def handle_reload(self, now: float) -> bool:
        """Reload the open positions; True when the set of positions changed. A database error
        keeps the previous set (pricing goes on) and is logged once until it recovers."""
        self._next_reload = now + self.reload_interval
        try:
            rows = list(PositionTracker.objects.filter(status__in=OPEN_STATUSES).order_by("pk"))
        except Exception as exc:
            self._record_error(f"reload: {type(exc).__name__}")
            if not self._reload_failing:
                logger.exception("PnL monitor: could not load the open positions")
            self._reload_failing = True
            return False
        if self._reload_failing:
            logger.info("PnL monitor: loading positions works again")
            self._reload_failing = False

        fresh: dict[int, PositionTracker] = {}
        for position in rows:
            if position.entry_price is None:
                self._log_position_error(position.pk, now, "is open without an entry price")
                continue
            fresh[position.pk] = position
        gone = set(self.positions) - set(fresh)
        changed = bool(gone) or set(fresh) != set(self.positions)
        for position_id in sorted(gone):
            self._finish(position_id)

        old_keys = set(self.by_key)
        by_key: dict[str, list[int]] = {}
        for position in fresh.values():
            by_key.setdefault(position_key(position), []).append(position.pk)
        self.positions = fresh
        self.by_key = by_key
        if self.subscription is not None:
            removed, added = old_keys - set(by_key), set(by_key) - old_keys
            if removed:
                self.subscription.remove(removed)
            if added:
                # add() also delivers the current tick: a new position is marked at once.
                self.subscription.add(added)
        return changed

    def handle_records(self, records: Mapping[str, TickRecord], now: float) -> int:
        """Mark every position on each changed key; returns how many were marked."""
        marked = 0
        for key, record in records.items():
            position_ids = self.by_key.get(key)
            if not position_ids or record.ltp <= 0:
                continue  # not ours (any more), or no good price yet
            self.last_tick_at = record.receive_time
            for position_id in position_ids:
                if self._mark(self.positions[position_id], record, tick_time(record), now):
                    marked += 1
        self.updates += marked
        return marked

    def handle_heartbeat(self, now: float, *, force: bool = False) -> bool:
        """Beat when due (or ``force``); True when a beat was written."""
        if not force and now < self._next_beat:
            return False
        self._next_beat = now + self.heartbeat_interval
        fields: dict[str, Any] = {
            "positions": len(self.positions),
            "keys": len(self.by_key),
            "updates": self.updates,
            "errors": self.errors,
            "last_tick_at": self.last_tick_at,
            "last_error": self.last_error,
        }
        if now >= self._next_log:
            # A periodic line with the state, so a silent hang shows in the log too.
            self._next_log = now + self.log_interval
            logger.info(
                "PnL monitor: %d positions on %d keys, %d updates, %d errors",
                fields["positions"],
                fields["keys"],
                fields["updates"],
                fields["errors"],
            )
        try:
            self.heartbeat.beat("running", **fields)
        except Exception:
            logger.warning("PnL monitor: heartbeat write failed", exc_info=True)
            return False
        return True

    # -- internals ------------------------------------------------------------------------------

    def read_open(
        self, now: float, known: Mapping[int, tuple[Any, ...]], *related: str
    ) -> tuple[dict[int, tuple[Any, ...]], dict[int, PositionTracker]] | None:
        """:func:`read_open_positions` (fingerprints, and the rows not as ``known``), its
        positions without an entry price logged; None when the database cannot be read
        (logged once until it can again)."""
        try:
            prints, loaded, missing = read_open_positions(known, *related)
        except Exception as exc:
            self._record_error(f"reload: {type(exc).__name__}")
            if not self._reload_failing:
                logger.exception("%s: could not load the open positions", self.name)
            self._reload_failing = True
            return None
        if self._reload_failing:
            logger.info("%s: loading positions works again", self.name)
            self._reload_failing = False
        for pk in missing:
            self._log_position_error(pk, now, "is open without an entry price")
        return prints, loaded

    def mark_batch(
        self,
        position_ids: Iterable[int],
        records: Mapping[str, TickRecord],
        now: float,
        pause: Callable[[], None] | None = None,
    ) -> int:
        """Mark these positions, each at its contract's record in ``records``: computed, then
        written in one batch (one kv round trip; the database copy, each position at most
        every ``db_sync.interval``, in one statement). ``pause`` is called every 16 positions
        (the exit engine lets its other threads run). Returns how many were marked."""
        snapshots = []
        for count, position_id in enumerate(sorted(position_ids)):
            if pause is not None and count % 16 == 15:
                pause()
            position = self.positions.get(position_id)
            record = records.get(position_key(position)) if position is not None else None
            if record is None:
                continue
            snapshot = self._snapshot(position, record, tick_time(record), now)
            if snapshot is not None:
                snapshots.append(snapshot)
                self._dirty.add(position_id)
        if not snapshots:
            return 0
        try:
            self.cache.store_many(snapshots)
        except Exception as exc:  # the store is down: the database copy still goes
            self._record_error(f"pnl cache: {type(exc).__name__}")
            logger.warning("%s: PnL cache write failed: %s", self.name, exc)
        try:
            self.db_sync.sync_many(snapshots, now)
        except Exception as exc:
            self._record_error(f"db sync: {type(exc).__name__}")
            logger.warning("%s: PnL database copy failed: %s", self.name, exc)
        self.updates += len(snapshots)
        return len(snapshots)

    def _snapshot(
        self, position: PositionTracker, record: TickRecord, tick_time: float, now: float
    ) -> PnlSnapshot | None:
        """The position marked at the record's LTP (not stored), or None: a failure is
        counted and logged (at most once per position per log interval)."""
        try:
            day = datetime.fromtimestamp(tick_time, IST).date()
            charges = self.estimate_exit_charges(position, record.ltp, day)
            return self.cache.compute(
                position,
                record.ltp,
                tick_seq=record.seq,
                tick_time=tick_time,
                exit_charges=charges,
                now=now,
            )
        except Exception as exc:
            self._record_error(f"position #{position.pk}: {type(exc).__name__}: {exc}")
            self._log_position_error(position.pk, now, "could not be marked", exc_info=True)
            return None

    def _mark(
        self, position: PositionTracker, record: TickRecord, tick_time: float, now: float
    ) -> bool:
        snapshot = self._snapshot(position, record, tick_time, now)
        if snapshot is None:
            return False
        self._dirty.add(position.pk)
        try:
            self.cache.store(snapshot)
        except Exception as exc:
            # Store down: keep going, the database copy below still gets written.
            self._record_error(f"pnl cache: {type(exc).__name__}")
            self._log_position_error(position.pk, now, "PnL cache write failed", exc_info=True)
        try:
            if self.db_sync.maybe_sync(snapshot, now):
                self._dirty.discard(position.pk)
        except Exception as exc:
            self._record_error(f"db sync: {type(exc).__name__}")
            self._log_position_error(position.pk, now, "database copy failed", exc_info=True)
        return True

    def _finish(self, position_id: int) -> None:
        """The position left the open set: write its last mark if not yet written, drop it."""
        snapshot = self.cache.last(position_id)
        try:
            if snapshot is not None and position_id in self._dirty:
                self.db_sync.sync_final(snapshot)
        except Exception as exc:
            self._record_error(f"final sync #{position_id}: {type(exc).__name__}")
            logger.exception("PnL monitor: final PnL copy of position #%s failed", position_id)
        self._dirty.discard(position_id)
        self.db_sync.forget(position_id)
        self._error_logged_at.pop(position_id, None)
        try:
            self.cache.delete(position_id)
        except Exception as exc:
            self._record_error(f"pnl cache: {type(exc).__name__}")
            logger.warning("PnL monitor: could not delete %s", pnl_key(position_id), exc_info=True)

    def _record_error(self, message: str) -> None:
        self.errors += 1
        self.last_error = message

    def _log_position_error(
        self, position_id: int, now: float, what: str, *, exc_info: bool = False
    ) -> None:
        # At most one line per position per log_interval: a poison position must not flood
        # the log at tick rate.
        last = self._error_logged_at.get(position_id)
        if last is not None and 0 <= now - last < self.log_interval:
            return
        self._error_logged_at[position_id] = now
        logger.error("PnL monitor: position #%s %s", position_id, what, exc_info=exc_info)


class BookMarks(PnlMonitor):
    """The marks of the open book on an interval, prices read from the tick store: what the
    exit engine's marks process runs (workers/exit_marks.py, whose docstring says why).
    ``mark_once(now)`` is one round: the unit the tests drive. Needs no subscription: the
    latest tick of each contract is read in one ``get_many`` a round."""

    name = "exit engine marks"

    def __init__(self, realtime: Any, **kwargs: Any) -> None:
        super().__init__(realtime, **kwargs)
        self._prints: dict[int, tuple[Any, ...]] = {}
        self._marked: dict[int, int] = {}  # position -> the tick seq it was last marked at

    def reload(self, now: float) -> None:
        """Follow the open set: the new and the changed rows read, the gone finished."""
        read = self.read_open(now, self._prints)
        if read is None:
            return
        prints, loaded = read
        for pk in sorted(set(self.positions) - set(prints)):
            self._finish(pk)
            del self.positions[pk]
            self._prints.pop(pk, None)
            self._marked.pop(pk, None)
        for pk, position in loaded.items():
            self.positions[pk] = position
            self._prints[pk] = prints[pk]
            self._marked.pop(pk, None)  # changed (a fill, its charges): marked again
        if loaded or len(self.positions) != sum(map(len, self.by_key.values())):
            by_key: dict[str, list[int]] = {}
            for pk, position in self.positions.items():
                by_key.setdefault(position.key, []).append(pk)
            self.by_key = by_key

    def mark_once(self, now: float) -> int:
        """One round: reload, read the contracts' latest ticks, mark what moved. Returns
        how many positions were marked."""
        self.reload(now)
        if not self.by_key:
            return 0
        try:
            records = self.ticks.get_many(self.by_key)
        except Exception as exc:  # Redis down: the next round tries again
            self._record_error(f"ticks: {type(exc).__name__}")
            logger.warning("%s: the latest ticks not read: %s", self.name, exc)
            return 0
        due = []
        for key, record in records.items():
            if record.ltp <= 0:
                continue
            self.last_tick_at = record.receive_time
            for pk in self.by_key.get(key, ()):
                if self._marked.get(pk) != record.seq:
                    self._marked[pk] = record.seq
                    due.append(pk)
        return self.mark_batch(due, records, now)
