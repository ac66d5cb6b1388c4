"""Import a Dhan scrip master into the catalog: atomic, streamed, guarded.

One transaction does everything:

1. the catalog's current keys, row hashes and expiries are read into memory (one pass);
2. a parser thread streams normalised rows in chunks while this thread classifies each row
   against that index: new rows go straight into ``Instrument``/``Derivative`` (COPY on
   PostgreSQL, batched inserts on SQLite), rows whose content hash changed (or that come back
   after being flagged) go to a staging table for one set-based UPDATE, unchanged rows are not
   written at all. Derivatives get their underlying resolved as they stream;
3. what the index still holds afterwards has left the file: it is deleted, except rows that
   something refers to (positions, orders, derivatives of an index), which are flagged
   ``is_active = false``.

A file that fails validation, has too many bad rows, or would remove too many contracts that
have not expired raises ``ImportFailed`` and the transaction rolls back: the previous catalog
stays as it was; the refusal is logged as a ``failed`` ``CatalogImport`` row. An unchanged file
(same fingerprint as the last import) is reported and nothing is written. Each import's stats
are a ``CatalogImport`` row: the catalog keeps its own history, apart from the trading app.
"""

from __future__ import annotations

import abc
import hashlib
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from instruments.config import CatalogConfig, catalog_config
from instruments.models import CatalogImport, Derivative, Instrument
from instruments.scrip_master import (
    NORMALISER_VERSION,
    SEGMENTS,
    STAGING_COLUMNS,
    ScripMasterError,
    ScripMasterParser,
)
from instruments.source import SourceError, SourceFile, resolve_source

log = logging.getLogger(__name__)

STAGING = "catalog_staging"

# Columns written from parsed rows, per table (the rest is bookkeeping). The parser emits rows in
# exactly this order (after ``kind``), so rows are written without being rearranged.
COMMON_COLUMNS = STAGING_COLUMNS[1:17]  # exchange ... underlying_symbol, row_hash
DERIVATIVE_COLUMNS = STAGING_COLUMNS[1:]  # + expiry_date ... expiry_code

Progress = Callable[[int, int, int], None]  # (bytes read, total bytes, rows read)
# The import's counts, under the same names in its stats and on its CatalogImport row.
_COUNTS = (
    "rows_read",
    "accepted",
    "inserted",
    "updated",
    "unchanged",
    "removed",
    "flagged_inactive",
    "kept_rejected",
)


class ImportFailed(RuntimeError):
    """The import was refused or failed; nothing was changed. The message names the problem."""


@dataclass
class ImportResult:
    status: str  # "imported" or "unchanged"
    stats: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


# -- database dialects --------------------------------------------------------------------------


# Typed on both databases: on SQLite an untyped column has no affinity, and comparing it with the
# catalog's TEXT columns cannot use the staging index (a 250k-row import turned quadratic).
_STAGING_TYPE = {
    "kind": "char(1)",
    "security_id": "bigint",
    "lot_size": "integer",
    "tick_size": "numeric",
    "underlying_security_id": "bigint",
    "expiry_date": "date",
    "expiry_at": "timestamptz",
    "strike": "numeric",
    "expiry_code": "smallint",
}
STAGING_TYPES = ", ".join(f"{c} {_STAGING_TYPE.get(c, 'text')}" for c in STAGING_COLUMNS)


# Index derivatives (OPTIDX, FUTIDX) are written on an index row, stock ones on an equity row.
_UNDERLYING_SEGMENT = "(CASE WHEN s.instrument LIKE '%%IDX' THEN 'I' ELSE 'E' END)"
# Catalog rows that are no longer in the file, by id (written from Python, read by SQL).
MISSING = "catalog_missing"
# Rows per hand-over from the parser thread. At most four chunks are alive at once (two queued,
# one being written, one being filled): 10,000 keeps that near 60 MB of row tuples.
CHUNK_ROWS = 10000
# GIL switch interval while an import runs. The parser thread is CPU-bound; with the default
# 5 ms the writing thread waits that long for the GIL each time it must hand the database the
# next chunk, and the server idles. 0.2 ms cut a fresh 250k-row import from ~8 s to ~6.3 s.
IMPORT_SWITCH_INTERVAL = 0.0002
_TEXT_COLUMNS = frozenset(c for c in STAGING_COLUMNS if c not in _STAGING_TYPE)
# Serialises concurrent imports (a Celery refresh and an operator's run) on PostgreSQL.
_IMPORT_LOCK_ID = 7_420_001
_BOOKKEEPING = ("is_active", "removed_at", "created_at", "updated_at")
INSTRUMENT_INSERT = (*COMMON_COLUMNS, *_BOOKKEEPING, "id")
DERIVATIVE_INSERT = (*DERIVATIVE_COLUMNS, "underlying_id", *_BOOKKEEPING)
# Positions in a parsed row (scrip_master.STAGING_COLUMNS).
_KIND, _EXCHANGE, _SEGMENT, _SEGMENT_ID, _SID, _INSTRUMENT, _SYMBOL = 0, 1, 2, 3, 4, 5, 7
_USID, _USYMBOL, _HASH = 14, 15, 16


class _Dialect(abc.ABC):
    """What differs between PostgreSQL and SQLite: bulk writes, literals, id allocation."""

    ne = "IS DISTINCT FROM"
    temp_suffix = ""
    temp_schema = "temp"
    null: str | None = None  # how an absent value is spelled in rows this dialect writes

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor

    @abc.abstractmethod
    def format_datetime(self, value: datetime) -> str:
        """Each backend stores aware datetimes its own way."""

    def begin(self) -> None:
        """First thing in the import transaction: temp tables (and a lock where needed)."""
        # An earlier import in the same outer transaction may have left them (ON COMMIT DROP
        # only fires at the commit). Schema-qualified: never touch a real table of that name.
        for table in (STAGING, MISSING):
            self.cursor.execute(f"DROP TABLE IF EXISTS {self.temp_schema}.{table}")
        self.cursor.execute(f"CREATE TEMPORARY TABLE {STAGING} ({STAGING_TYPES}){self.temp_suffix}")
        self.cursor.execute(
            f"CREATE TEMPORARY TABLE {MISSING} (kind char(1), id bigint){self.temp_suffix}"
        )

    @abc.abstractmethod
    def insert(self, table: str, columns: tuple[str, ...], rows: list) -> None:
        """Bulk-write rows built by the methods below (or parsed rows into staging)."""

    def pk(self, value: int) -> str | int:
        """A primary key as this dialect's rows spell it."""
        return value

    def set_now(self, now: str) -> None:
        self.now = now

    def instrument_row(self, row: tuple, pk: int) -> Any:
        """A parsed instrument row in INSTRUMENT_INSERT order."""
        return (*row[1:17], 1, None, self.now, self.now, pk)

    def derivative_row(self, row: tuple, usid: Any, uid: Any) -> Any:
        """A parsed derivative row in DERIVATIVE_INSERT order."""
        return (*row[1:14], usid, *row[15:23], uid, 1, None, self.now, self.now)

    def staging_row(self, row: tuple) -> Any:
        return row

    def record(self, *values: str | int) -> Any:
        """Plain values (no NULLs, nothing to escape) as a row for ``insert``."""
        return values

    @abc.abstractmethod
    def allocate_ids(self, model: type, count: int) -> list[int]:
        """``count`` fresh primary keys for ``model`` (ids known before the rows are written)."""

    def analyze(self) -> None:  # noqa: B027 - a hook: SQLite needs nothing here
        """Refresh planner statistics after a bulk load (where the database needs it)."""


class _Postgres(_Dialect):
    temp_suffix = " ON COMMIT DROP"
    temp_schema = "pg_temp"
    null = "\\N"  # COPY text format; the parser escapes the rare value that needs it

    def format_datetime(self, value: datetime) -> str:
        return value.isoformat(sep=" ")

    def begin(self) -> None:
        self.cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_IMPORT_LOCK_ID])
        super().begin()

    def insert(self, table: str, columns: tuple[str, ...], rows: list) -> None:
        if rows:
            with self.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                copy.write("\n".join(rows) + "\n")

    def pk(self, value: int) -> str | int:
        return str(value)

    # COPY text lines straight from the parsed strings: a few C-level joins per row, because
    # Python time (shared by the parser thread and this one) bounds the import.
    def set_now(self, now: str) -> None:
        super().set_now(now)
        self._tail = f"\tt\t\\N\t{now}\t{now}"

    def instrument_row(self, row: tuple, pk: int) -> Any:
        return "\t".join(row[1:17]) + self._tail + "\t" + str(pk)

    def derivative_row(self, row: tuple, usid: Any, uid: Any) -> Any:
        return (
            "\t".join(row[1:14])
            + "\t"
            + usid
            + "\t"
            + "\t".join(row[15:23])
            + "\t"
            + uid
            + self._tail
        )

    def staging_row(self, row: tuple) -> Any:
        return "\t".join(row)

    def record(self, *values: str | int) -> Any:
        return "\t".join(map(str, values))

    def allocate_ids(self, model: type, count: int) -> list[int]:
        if not count:
            return []
        self.cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            [model._meta.db_table, count],
        )
        return [row[0] for row in self.cursor.fetchall()]

    def analyze(self) -> None:
        # Stale statistics (a catalog that just grew from nothing) plan the joins below as
        # nested loops over 250k x 250k rows: minutes instead of a fraction of a second.
        self.cursor.execute(
            f"ANALYZE {STAGING}, {Instrument._meta.db_table}, {Derivative._meta.db_table}"
        )


class _Sqlite(_Dialect):
    ne = "IS NOT"

    def format_datetime(self, value: datetime) -> str:
        # Django's SQLite backend stores aware datetimes as naive UTC text.
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")

    def begin(self) -> None:
        super().begin()
        self.cursor.execute(
            f"CREATE INDEX temp.{STAGING}_key ON {STAGING} (exchange_segment, security_id, kind)"
        )
        self.cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {Instrument._meta.db_table}")
        self._next_id = self.cursor.fetchone()[0] + 1  # the transaction holds the write lock

    def insert(self, table: str, columns: tuple[str, ...], rows: list) -> None:
        if rows:
            marks = ", ".join(["%s"] * len(columns))
            self.cursor.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows
            )

    def allocate_ids(self, model: type, count: int) -> list[int]:
        ids = list(range(self._next_id, self._next_id + count))
        self._next_id += count
        return ids


def _dialect(cursor: Any) -> _Dialect:
    if connection.vendor == "postgresql":
        return _Postgres(cursor)
    if connection.vendor == "sqlite":
        return _Sqlite(cursor)
    raise ImportFailed(
        f"the catalog importer supports PostgreSQL and SQLite, not {connection.vendor}"
    )


# -- the merge: each parsed row is classified against the catalog held in memory ---------------

# A catalog row's identity packed into one int: (kind, exchange segment) code << 40 | security id.
# 250k of these cost a fraction of the memory of (str, str, str) tuples.
_KEY_BASE = {
    (kind, segment): (n + 1) << 40
    for n, (kind, segment) in enumerate(
        (kind, segment) for kind in ("I", "D") for segment in sorted(set(SEGMENTS.values()))
    )
}
_KEY_KIND = {base >> 40: kind for (kind, _), base in _KEY_BASE.items()}
_CatalogKey = int


@dataclass
class _Existing:
    """The catalog before the import: packed key -> (id, row hash, active, expiry ISO or None)."""

    rows: dict[_CatalogKey, tuple[int, str, bool, str | None]]
    active: int

    @classmethod
    def load(cls, cursor: Any) -> _Existing:
        rows: dict[_CatalogKey, tuple[int, str, bool, str | None]] = {}
        for model, kind in ((Instrument, "I"), (Derivative, "D")):
            expiry = "expiry_date" if model is Derivative else "NULL"
            cursor.execute(
                f"SELECT exchange_segment, security_id, id, row_hash, is_active, {expiry} "
                f"FROM {model._meta.db_table}"
            )
            days: dict[Any, str] = {}  # a few hundred distinct expiries: share the strings
            while batch := cursor.fetchmany(20000):
                for segment, sid, pk, digest, active, expiry_date in batch:
                    day = (
                        None
                        if expiry_date is None
                        else days.setdefault(expiry_date, str(expiry_date))
                    )
                    rows[_KEY_BASE[(kind, segment)] | sid] = (pk, digest, bool(active), day)
        return cls(rows, sum(1 for row in rows.values() if row[2]))

    def keep(self, keys: list[tuple[str, int]]) -> int:
        """Take the contracts of rejected rows out of ``rows`` (what left the file): they are
        still in it, only unreadable this time, so they stay as stored, neither removed nor
        updated. Returns how many stored contracts that kept. Called after every chunk was
        merged: a key an accepted row of the file claimed is gone from ``rows`` by then."""
        kept = 0
        pop = self.rows.pop
        for segment, security_id in keys:
            for kind in ("D", "I"):
                base = _KEY_BASE.get((kind, segment))
                if base is not None and pop(base | security_id, None) is not None:
                    kept += 1
                    break
        return kept

    def unexpected_removals(self, today: str) -> int:
        """Rows still in ``rows`` (not in the file) that were active and have not expired."""
        return sum(
            1
            for key, (_, _, active, expiry) in self.rows.items()
            if active and (_KEY_KIND[key >> 40] == "I" or (expiry or "") >= today)
        )


class _Merger:
    """Writes chunks of parsed rows: new ones straight into the catalog tables (COPY on
    PostgreSQL), changed or returning ones into staging for one UPDATE at the end, unchanged
    ones nowhere. What is left in ``existing.rows`` afterwards has left the file."""

    def __init__(self, cursor: Any, dialect: _Dialect, existing: _Existing, now: str) -> None:
        self.cursor, self.dialect, self.existing, self.now = cursor, dialect, existing, now
        dialect.set_now(now)
        self.inserted = self.changed = 0
        # (exchange, segment letter, symbol) -> (id, security id) of an underlying instrument.
        self.underlyings: dict[tuple[str, str, str], tuple[int, str]] = {}
        cursor.execute(
            "SELECT exchange, segment, trading_symbol, id, security_id "
            f"FROM {Instrument._meta.db_table} ORDER BY id"
        )
        for exchange, segment, symbol, pk, sid in cursor.fetchall():
            self.underlyings.setdefault((exchange, segment, symbol), (pk, str(sid)))

    def chunk(self, rows: list[tuple]) -> None:
        pop = self.existing.rows.pop
        new_i: list[tuple] = []
        new_d: list[tuple] = []
        changed: list[tuple] = []
        for row in rows:
            hit = pop(_KEY_BASE[(row[_KIND], row[_SEGMENT_ID])] | int(row[_SID]), None)
            if hit is None:
                (new_i if row[_KIND] == "I" else new_d).append(row)
            elif hit[1] != row[_HASH] or not hit[2]:
                changed.append(row)
        dialect = self.dialect
        if new_i:
            out = []
            for row, pk in zip(new_i, dialect.allocate_ids(Instrument, len(new_i)), strict=True):
                out.append(dialect.instrument_row(row, pk))
                key = (row[_EXCHANGE], row[_SEGMENT], row[_SYMBOL])
                self.underlyings.setdefault(key, (pk, row[_SID]))
            dialect.insert(Instrument._meta.db_table, INSTRUMENT_INSERT, out)
        if new_d:
            out = []
            find, null = self.underlyings.get, dialect.null
            for row in new_d:
                letter = "I" if row[_INSTRUMENT].endswith("IDX") else "E"
                found = find((row[_EXCHANGE], letter, row[_USYMBOL]))
                usid, uid = row[_USID], null  # unresolved: _link_underlyings() retries
                if found is not None:
                    uid = dialect.pk(found[0])
                    if usid == null:
                        usid = found[1]
                out.append(dialect.derivative_row(row, usid, uid))
            dialect.insert(Derivative._meta.db_table, DERIVATIVE_INSERT, out)
        if changed:
            dialect.insert(STAGING, STAGING_COLUMNS, [dialect.staging_row(r) for r in changed])
        self.inserted += len(new_i) + len(new_d)
        self.changed += len(changed)

    def apply_changes(self) -> int:
        """One UPDATE per table for every changed or returning row; returns the row count."""
        if not self.changed:
            return 0
        updated = 0
        for model, columns, kind in (
            (Instrument, COMMON_COLUMNS, "I"),
            (Derivative, DERIVATIVE_COLUMNS, "D"),
        ):
            table = model._meta.db_table
            exprs = {c: f"COALESCE(s.{c}, '')" if c in _TEXT_COLUMNS else f"s.{c}" for c in columns}
            source = f"{STAGING} s"
            if model is Derivative:
                exprs["underlying_security_id"] = (
                    "COALESCE(s.underlying_security_id, u.security_id)"
                )
                exprs["underlying_id"] = "u.id"
                source += (
                    " LEFT JOIN (SELECT exchange, segment, trading_symbol, MIN(id) AS id, "
                    f"MIN(security_id) AS security_id FROM {Instrument._meta.db_table} "
                    "GROUP BY exchange, segment, trading_symbol) u ON u.exchange = s.exchange "
                    "AND u.trading_symbol = s.underlying_symbol "
                    f"AND u.segment = {_UNDERLYING_SEGMENT}"
                )
            sets = ", ".join(f"{c} = {e}" for c, e in exprs.items() if c != "security_id")
            self.cursor.execute(
                f"UPDATE {table} AS t SET {sets}, is_active = TRUE, removed_at = NULL, "
                f"updated_at = %s FROM {source} WHERE s.kind = %s "
                "AND t.exchange_segment = s.exchange_segment AND t.security_id = s.security_id",
                [self.now, kind],
            )
            updated += self.cursor.rowcount
        return updated


class _ChunkReader(threading.Thread):
    """Parses in a background thread, handing over lists of rows through a small queue.

    The queue holds at most two chunks, so memory stays flat whatever the file size. A parse
    error is handed over and re-raised in the consumer; a consumer that stops early (a database
    error) sets ``stop`` and the parser exits at its next hand-over.
    """

    def __init__(self, parser: ScripMasterParser, fh: BinaryIO, progress: Callable) -> None:
        super().__init__(name="scrip-master-parser", daemon=True)
        self.parser, self.fh, self.progress = parser, fh, progress
        self.queue: queue.Queue = queue.Queue(maxsize=2)
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            chunk: list[tuple] = []
            for row in self.parser.rows(self.fh, self.progress):
                chunk.append(row)
                if len(chunk) >= CHUNK_ROWS:
                    if not self._put(chunk):
                        return
                    chunk = []
            if chunk and not self._put(chunk):
                return
            self._put(None)  # end of file
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(exc)

    def _put(self, item: object) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def chunks(self) -> Iterator[list[tuple]]:
        self.start()
        try:
            while True:
                item = self.queue.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.stop.set()
            self.join()


def _referenced(model: type) -> str:
    """SQL that is true when any row of another table points at this one (any FK, any app)."""
    table = model._meta.db_table
    checks = [
        f"EXISTS (SELECT 1 FROM {rel.related_model._meta.db_table} r "
        f"WHERE r.{rel.field.column} = {table}.id)"
        for rel in model._meta.related_objects
        # The reverse side of a ForeignKey is one_to_many (of a OneToOneField, one_to_one).
        if rel.one_to_many or rel.one_to_one
    ]
    return "(" + " OR ".join(checks) + ")" if checks else "FALSE"


def _remove_missing(cursor: Any, model: type, kind: str, now: str) -> tuple[int, int]:
    """Delete rows that left the file, flag those still referenced: (deleted, flagged)."""
    table = model._meta.db_table
    missing = f"{table}.id IN (SELECT id FROM {MISSING} WHERE kind = '{kind}')"
    referenced = _referenced(model)
    cursor.execute(
        f"UPDATE {table} SET is_active = FALSE, removed_at = %s, updated_at = %s "
        f"WHERE is_active AND {missing} AND {referenced}",
        [now, now],
    )
    flagged = cursor.rowcount
    cursor.execute(f"DELETE FROM {table} WHERE {missing} AND NOT {referenced}")
    return cursor.rowcount, flagged


def _link_underlyings(cursor: Any, ne: str) -> int:
    """Point each derivative at its index (``*IDX``) or stock (``*STK``) on the same exchange.

    By symbol first: the compact file has no underlying id, and the detailed file's id for index
    derivatives is not always the IDX_I security id. By underlying id where the symbol finds
    nothing. Commodities have no instrument row and stay unlinked.
    """
    d, i = Derivative._meta.db_table, Instrument._meta.db_table
    segment = _UNDERLYING_SEGMENT.replace("s.instrument", f"{d}.instrument")
    cursor.execute(
        f"UPDATE {d} SET underlying_id = i.id FROM {i} i "
        f"WHERE i.exchange = {d}.exchange AND i.segment = {segment} "
        f"AND i.trading_symbol = {d}.underlying_symbol AND {d}.underlying_id {ne} i.id",
        [],
    )
    linked = cursor.rowcount
    cursor.execute(
        f"UPDATE {d} SET underlying_id = i.id FROM {i} i "
        f"WHERE {d}.underlying_id IS NULL AND i.exchange = {d}.exchange "
        f"AND i.segment = {segment} AND i.security_id = {d}.underlying_security_id",
        [],
    )
    linked += cursor.rowcount
    cursor.execute(
        f"UPDATE {d} SET underlying_security_id = i.security_id FROM {i} i "
        f"WHERE {d}.underlying_id = i.id AND {d}.underlying_security_id IS NULL",
        [],
    )
    return linked


def catalog_totals() -> dict[str, Any]:
    """Active rows by exchange segment and by instrument code, plus the total."""
    by_segment: dict[str, int] = {}
    by_instrument: dict[str, int] = {}
    with connection.cursor() as cursor:
        for model in (Instrument, Derivative):
            table = model._meta.db_table
            cursor.execute(
                f"SELECT exchange_segment, instrument, count(*) FROM {table} "
                "WHERE is_active GROUP BY exchange_segment, instrument"
            )
            for segment, instrument, count in cursor.fetchall():
                by_segment[segment] = by_segment.get(segment, 0) + count
                by_instrument[instrument] = by_instrument.get(instrument, 0) + count
    return {
        "total": sum(by_segment.values()),
        "by_segment": dict(sorted(by_segment.items())),
        "by_instrument": dict(sorted(by_instrument.items())),
    }


# -- the import ---------------------------------------------------------------------------------


@dataclass
class ImportOptions:
    file: str | Path | None = None
    url: str | None = None
    force: bool = False
    allow_large_removal: bool = False
    max_bad_row_share: float | None = None  # None: the config's value
    progress: Progress | None = None


def file_fingerprint(path: Path, config: CatalogConfig) -> str:
    """Content hash of the file plus everything that changes how it is normalised."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    digest.update(
        f"|normaliser={NORMALISER_VERSION}|exchanges={','.join(config.exchanges)}".encode()
    )
    return digest.hexdigest()


def _catalog_is_empty() -> bool:
    return not (Instrument.objects.exists() or Derivative.objects.exists())


def last_import() -> CatalogImport | None:
    """The latest import that wrote the catalog (a failed run changed nothing), or None."""
    return (
        CatalogImport.objects.filter(outcome=CatalogImport.Outcome.IMPORTED)
        .order_by("-started_at", "-id")
        .first()
    )


def _local_iso(moment: datetime) -> str:
    return timezone.localtime(moment).isoformat()


def import_catalog(
    options: ImportOptions | None = None, config: CatalogConfig | None = None
) -> ImportResult:
    """Import the scrip master named by ``options`` (default: Dhan's URL through the cache).

    A refusal (``ImportFailed``) is logged as a ``failed`` CatalogImport before it propagates.
    """
    options = options or ImportOptions()
    config = config or catalog_config()
    started = time.monotonic()
    started_at = timezone.now()
    default_url = settings.INSTRUMENTS_SCRIP_MASTER_URL or config.url
    # What the failure row names when no file was obtained; replaced once one is.
    wanted = f"file {options.file}" if options.file is not None else options.url or default_url
    fingerprint = ""
    try:
        try:
            source = resolve_source(
                file=options.file,
                url=options.url,
                default_url=default_url,
                cache_dir=settings.INSTRUMENTS_CACHE_DIR,
                max_age_hours=config.cache_max_age_hours,
                timeout=config.download_timeout_seconds,
                refresh=options.force,
            )
        except SourceError as exc:
            raise ImportFailed(str(exc)) from None
        wanted = source.description

        fingerprint = file_fingerprint(source.path, config)
        previous = last_import()
        if (
            not options.force
            and previous is not None
            and previous.fingerprint == fingerprint
            and not _catalog_is_empty()
        ):
            stats = {
                "source": source.description,
                "fingerprint": fingerprint,
                "last_imported_at": _local_iso(previous.started_at),
                "duration_seconds": round(time.monotonic() - started, 3),
                "totals": previous.totals,
            }
            return ImportResult("unchanged", stats, source.warnings)

        try:
            stats = _import_file(source, fingerprint, config, options, started, started_at)
        except ScripMasterError as exc:
            raise ImportFailed(str(exc)) from None
    except ImportFailed as exc:
        _record_failure(exc, started, started_at, wanted, fingerprint)
        raise
    except (DatabaseError, connection.Database.Error) as exc:
        # A value or statement the database refused (psycopg's own errors come straight
        # from COPY, Django's wrapped ones from everything else). The transaction rolled
        # back: the run is a failure like any other, in one line.
        failed = ImportFailed(
            f"{wanted}: the database refused the import ({database_error_text(exc)}); "
            "nothing was changed"
        )
        _record_failure(failed, started, started_at, wanted, fingerprint)
        raise failed from None
    return ImportResult("imported", stats, stats.pop("_warnings"))


def database_error_text(exc: BaseException, limit: int = 400) -> str:
    """A database error on one line: its class and message (PostgreSQL's DETAIL and CONTEXT
    lines joined), cut at ``limit`` characters."""
    cause = exc.__cause__ if isinstance(exc, DatabaseError) and exc.__cause__ else exc
    text = " ".join(str(exc).split()) or "no message"
    text = f"{type(cause).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _record_failure(
    exc: ImportFailed, started: float, started_at: datetime, source: str, fingerprint: str
) -> None:
    """The failed run's CatalogImport row. When the database cannot take even that (it is
    down), the error says so instead of hiding the first failure behind a second one."""
    try:
        CatalogImport.objects.create(
            started_at=started_at,
            finished_at=timezone.now(),
            outcome=CatalogImport.Outcome.FAILED,
            source=source,
            fingerprint=fingerprint,
            duration_seconds=round(time.monotonic() - started, 3),
            error=str(exc),
        )
    except (DatabaseError, connection.Database.Error) as second:
        log.warning("catalog import: the failed run could not be recorded: %s", second)
        exc.args = (f"{exc} (the failed run could not be recorded: {database_error_text(second)})",)


def _import_file(
    source: SourceFile,
    fingerprint: str,
    config: CatalogConfig,
    options: ImportOptions,
    started: float,
    now_dt: datetime,
) -> dict[str, Any]:
    max_bad = (
        config.max_bad_row_share if options.max_bad_row_share is None else options.max_bad_row_share
    )
    phases: dict[str, float] = {}
    mark = time.monotonic()

    def phase(name: str) -> None:
        nonlocal mark
        now_mark = time.monotonic()
        phases[name] = round(now_mark - mark, 3)
        mark = now_mark

    today = timezone.localdate(now_dt).isoformat()
    with transaction.atomic(), connection.cursor() as cursor:
        dialect = _dialect(cursor)
        dialect.begin()
        now = dialect.format_datetime(now_dt)
        parser = ScripMasterParser(
            exchanges=config.exchanges,
            format_datetime=dialect.format_datetime,
            name=source.path.name,
            null=dialect.null,
        )
        total = source.path.stat().st_size
        report_progress = options.progress

        def progress(done: int, rows: int) -> None:
            if report_progress is not None:
                report_progress(done, total, rows)

        existing = _Existing.load(cursor)
        merger = _Merger(cursor, dialect, existing, now)
        phase("load_catalog_index")
        switch_interval = sys.getswitchinterval()
        try:
            sys.setswitchinterval(IMPORT_SWITCH_INTERVAL)
            with source.path.open("rb") as fh:
                # The parser runs in its own thread while this one writes the previous chunk:
                # the database works on the second core instead of waiting for Python.
                for chunk in _ChunkReader(parser, fh, progress).chunks():
                    merger.chunk(chunk)
        finally:
            sys.setswitchinterval(switch_interval)
        progress(total, -1)
        phase("parse_and_write")
        report = parser.report
        if report.rows_read and report.rejected_total / report.rows_read > max_bad:
            shown = "; ".join(f"line {p.line}: {p.reason}: {p.detail}" for p in report.samples)
            raise ImportFailed(
                f"{source.path.name}: {report.rejected_total} of {report.rows_read} rows are "
                f"malformed ({report.rejected_total / report.rows_read:.1%}, the limit is "
                f"{max_bad:.1%}); nothing was imported. First problems: {shown}"
            )
        kept_rejected = existing.keep(report.rejected_keys)
        dialect.analyze()
        updated = merger.apply_changes()
        inserted = merger.inserted
        _link_underlyings(cursor, dialect.ne)
        phase("update_and_link")

        # Whatever the file did not mention has left it. Expired contracts leaving is the
        # normal daily churn; unexpired ones leaving in bulk means a cut-off download.
        unexpected = existing.unexpected_removals(today)
        share = unexpected / existing.active if existing.active else 0.0
        if share > config.max_removal_share and not options.allow_large_removal:
            raise ImportFailed(
                f"{source.path.name}: refusing to remove {unexpected} of {existing.active} "
                f"contracts that have not expired ({share:.1%}, the limit is "
                f"{config.max_removal_share:.0%}); the file looks incomplete. Nothing was "
                "changed. If the removal is intended, re-run with --allow-large-removal"
            )
        dialect.insert(
            MISSING,
            ("kind", "id"),
            [dialect.record(_KEY_KIND[key >> 40], row[0]) for key, row in existing.rows.items()],
        )
        deleted_d, flagged_d = _remove_missing(cursor, Derivative, "D", now)
        deleted_i, flagged_i = _remove_missing(cursor, Instrument, "I", now)
        phase("remove_missing")

        stats: dict[str, Any] = {
            "imported_at": _local_iso(now_dt),
            "duration_seconds": round(time.monotonic() - started, 3),
            "source": source.description,
            "format": f"{report.format} ({report.columns} columns)",
            "fingerprint": fingerprint,
            "rows_read": report.rows_read,
            "accepted": report.accepted,
            "inserted": inserted,
            "updated": updated,
            "unchanged": report.accepted - inserted - updated,
            "removed": deleted_d + deleted_i,
            "flagged_inactive": flagged_d + flagged_i,
            "kept_rejected": kept_rejected,
            "rejected": dict(report.rejected),
            "dropped": dict(report.dropped),
            "rejected_samples": [
                {"line": p.line, "reason": p.reason, "detail": p.detail} for p in report.samples
            ],
            "totals": catalog_totals(),
            "phases_seconds": phases,
        }
        warnings = source.warnings + report.warnings
        CatalogImport.objects.create(
            started_at=now_dt,
            finished_at=timezone.now(),
            outcome=CatalogImport.Outcome.IMPORTED,
            source=stats["source"],
            file_format=stats["format"],
            fingerprint=fingerprint,
            **{name: stats[name] for name in _COUNTS},
            rejected=stats["rejected"],
            dropped=stats["dropped"],
            rejected_samples=stats["rejected_samples"],
            totals=stats["totals"],
            phases_seconds=phases,
            duration_seconds=stats["duration_seconds"],
            warnings=warnings,
        )
    stats["_warnings"] = warnings
    return stats


def clear_catalog() -> dict[str, int]:
    """Delete every contract nothing refers to; flag the rest inactive. Forgets the imports
    (their history describes a catalog that is gone, and the next file must import again)."""
    result = {"deleted": 0, "flagged_inactive": 0}
    with transaction.atomic(), connection.cursor() as cursor:
        now = _dialect(cursor).format_datetime(timezone.now())
        for model in (Derivative, Instrument):
            table, referenced = model._meta.db_table, _referenced(model)
            cursor.execute(
                f"UPDATE {table} SET is_active = FALSE, removed_at = %s "
                f"WHERE is_active AND {referenced}",
                [now],
            )
            result["flagged_inactive"] += cursor.rowcount
            cursor.execute(f"DELETE FROM {table} WHERE NOT {referenced}")
            result["deleted"] += cursor.rowcount
        CatalogImport.objects.all().delete()
    return result


def catalog_status(now: datetime | None = None, max_age_hours: float = 24) -> dict[str, Any]:
    """What ``instruments_status`` prints: last import, its age, staleness and totals, and the
    latest failed run when one came after that import (a refresh that keeps failing)."""
    now = now or timezone.now()
    last = last_import()
    totals = catalog_totals()
    age = None if last is None else (now - last.started_at).total_seconds()
    stale = totals["total"] == 0 or age is None or age > max_age_hours * 3600
    failures = CatalogImport.objects.filter(outcome=CatalogImport.Outcome.FAILED)
    if last is not None:
        failures = failures.filter(started_at__gt=last.started_at)
    failed = failures.order_by("-started_at", "-id").first()
    return {
        "last_imported_at": None if last is None else _local_iso(last.started_at),
        "age_seconds": None if age is None else round(age, 1),
        "stale": stale,
        "total": totals["total"],
        "counts": {"by_segment": totals["by_segment"], "by_instrument": totals["by_instrument"]},
        "last_failure": None
        if failed is None
        else {"at": _local_iso(failed.started_at), "source": failed.source, "error": failed.error},
        "last_import": last,
    }
