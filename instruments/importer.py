"""Import a Dhan scrip master into the catalog: atomic, set-based, guarded.

One transaction does everything: the parsed rows stream into a temporary staging table (COPY on
PostgreSQL, batched inserts on SQLite), then a handful of set-based statements merge it into
``Instrument`` and ``Derivative``:

1. upsert each kind, rewriting only rows whose content hash changed (or that come back);
2. link derivatives to their underlying instrument;
3. contracts no longer in the file are deleted, except those something still refers to
   (positions, orders, derivatives of an index): those are flagged ``is_active = false``.

A file that fails validation, has too many bad rows, or would remove too much of the catalog
raises ``ImportFailed`` and the transaction rolls back: the previous catalog stays as it was.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from instruments.config import CatalogConfig, catalog_config
from instruments.models import Derivative, Instrument
from instruments.scrip_master import (
    NORMALISER_VERSION,
    STAGING_COLUMNS,
    ScripMasterError,
    ScripMasterParser,
)
from instruments.source import SourceError, SourceFile, resolve_source
from trading.models import Setting

log = logging.getLogger(__name__)

LAST_IMPORT_KEY = "instruments.last_import"
LAST_IMPORTED_AT_KEY = "instruments.last_imported_at"
STAGING = "catalog_staging"

# Columns written from staging, per target table (all other columns are bookkeeping).
COMMON_COLUMNS = (
    "exchange",
    "segment",
    "exchange_segment",
    "security_id",
    "instrument",
    "instrument_type",
    "trading_symbol",
    "display_name",
    "symbol_name",
    "isin",
    "series",
    "lot_size",
    "tick_size",
    "underlying_security_id",
    "underlying_symbol",
    "row_hash",
)
DERIVATIVE_COLUMNS = (
    *COMMON_COLUMNS,
    "expiry_date",
    "expiry_at",
    "strike",
    "option_type",
    "expiry_flag",
    "expiry_code",
)

Progress = Callable[[int, int, int], None]  # (bytes read, total bytes, rows read)


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
STAGING_TYPES = (
    "kind char(1), exchange text, segment text, exchange_segment text, security_id bigint, "
    "instrument text, instrument_type text, trading_symbol text, display_name text, "
    "symbol_name text, isin text, series text, lot_size integer, tick_size numeric, "
    "underlying_security_id bigint, underlying_symbol text, expiry_date date, "
    "expiry_at timestamptz, strike numeric, option_type text, expiry_flag text, "
    "expiry_code smallint, row_hash text"
)


# Index derivatives (OPTIDX, FUTIDX) are written on an index row, stock ones on an equity row.
_UNDERLYING_SEGMENT = "(CASE WHEN s.instrument LIKE '%%IDX' THEN 'I' ELSE 'E' END)"
# Which catalog rows are no longer in the file (computed once, used by the guard and removal).
MISSING = "catalog_missing"
_TEXT_COLUMNS = frozenset(
    c for c in DERIVATIVE_COLUMNS if c not in {
        "security_id", "lot_size", "tick_size", "underlying_security_id", "expiry_date",
        "expiry_at", "strike", "expiry_code",
    }
)  # fmt: skip
# Serialises concurrent imports (a Celery refresh and an operator's run) on PostgreSQL.
_IMPORT_LOCK_ID = 7_420_001


class _Dialect:
    """What differs between PostgreSQL and SQLite: staging load, datetime text, housekeeping."""

    ne = "IS DISTINCT FROM"
    temp_suffix = ""

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor

    def format_datetime(self, value: datetime) -> str:
        raise NotImplementedError  # each backend stores aware datetimes its own way

    def begin(self) -> None:
        """Called first inside the import transaction."""

    def load(self, rows: Iterable[tuple]) -> None:
        raise NotImplementedError

    def analyze(self) -> None:
        """Refresh planner statistics of the catalog tables (where the database needs it)."""


class _Postgres(_Dialect):
    temp_suffix = " ON COMMIT DROP"

    def format_datetime(self, value: datetime) -> str:
        return value.isoformat(sep=" ")

    def begin(self) -> None:
        self.cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_IMPORT_LOCK_ID])

    def load(self, rows: Iterable[tuple]) -> None:
        self.cursor.execute(f"CREATE TEMPORARY TABLE {STAGING} ({STAGING_TYPES}) ON COMMIT DROP")
        # CSV text through csv.writer in large chunks: several times cheaper than per-row
        # write_row(). None and "" both arrive as NULL; the merge turns NULL text back into "".
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        sql = f"COPY {STAGING} ({', '.join(STAGING_COLUMNS)}) FROM STDIN WITH (FORMAT csv)"
        with self.cursor.copy(sql) as copy:
            for count, row in enumerate(rows, 1):
                writer.writerow(row)
                if count % 4000 == 0:
                    copy.write(buffer.getvalue())
                    buffer.seek(0)
                    buffer.truncate()
            copy.write(buffer.getvalue())
        self.cursor.execute(f"CREATE INDEX ON {STAGING} (exchange_segment, security_id, kind)")
        self.cursor.execute(f"ANALYZE {STAGING}")

    def analyze(self) -> None:
        # The catalog may have just grown from nothing: stale statistics plan the removal
        # anti-joins as nested loops (250k x 250k rows, minutes instead of a second).
        self.cursor.execute(f"ANALYZE {Instrument._meta.db_table}, {Derivative._meta.db_table}")


class _Sqlite(_Dialect):
    ne = "IS NOT"
    batch = 5000

    def format_datetime(self, value: datetime) -> str:
        # Django's SQLite backend stores aware datetimes as naive UTC text.
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")

    def load(self, rows: Iterable[tuple]) -> None:
        self.cursor.execute(f"DROP TABLE IF EXISTS temp.{STAGING}")
        self.cursor.execute(f"DROP TABLE IF EXISTS temp.{MISSING}")
        self.cursor.execute(f"CREATE TEMP TABLE {STAGING} ({STAGING_TYPES})")
        marks = ", ".join(["%s"] * len(STAGING_COLUMNS))
        sql = f"INSERT INTO {STAGING} VALUES ({marks})"
        batch: list[tuple] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= self.batch:
                self.cursor.executemany(sql, batch)
                batch.clear()
        if batch:
            self.cursor.executemany(sql, batch)
        self.cursor.execute(
            f"CREATE INDEX temp.{STAGING}_key ON {STAGING} (exchange_segment, security_id, kind)"
        )


def _dialect(cursor: Any) -> _Dialect:
    if connection.vendor == "postgresql":
        return _Postgres(cursor)
    if connection.vendor == "sqlite":
        return _Sqlite(cursor)
    raise ImportFailed(
        f"the catalog importer supports PostgreSQL and SQLite, not {connection.vendor}"
    )


# -- set-based merge steps (the same SQL on both databases) -------------------------------------


def _merge(
    cursor: Any, model: type, columns: tuple[str, ...], kind: str, now: str
) -> tuple[int, int]:
    """Update rows whose content changed (or that come back), insert new ones: (inserted, updated).

    Two plain statements instead of INSERT .. ON CONFLICT: the anti-join insert avoids
    PostgreSQL's per-row speculative insertion, and unchanged rows are never rewritten.
    """
    table = model._meta.db_table
    exprs = {c: f"COALESCE(s.{c}, '')" if c in _TEXT_COLUMNS else f"s.{c}" for c in columns}
    source = f"{STAGING} s"
    if model is Derivative:
        # Resolve the underlying in the same write: setting it afterwards rewrote every row.
        exprs["underlying_security_id"] = "COALESCE(s.underlying_security_id, u.security_id)"
        exprs["underlying_id"] = "u.id"
        source += (
            " LEFT JOIN (SELECT exchange, segment, trading_symbol, MIN(id) AS id, "
            f"MIN(security_id) AS security_id FROM {Instrument._meta.db_table} "
            "GROUP BY exchange, segment, trading_symbol) u ON u.exchange = s.exchange "
            f"AND u.trading_symbol = s.underlying_symbol AND u.segment = {_UNDERLYING_SEGMENT}"
        )
    sets = ", ".join(f"{c} = {e}" for c, e in exprs.items() if c != "security_id")
    cursor.execute(
        f"UPDATE {table} AS t SET {sets}, is_active = TRUE, removed_at = NULL, updated_at = %s "
        f"FROM {source} WHERE s.kind = %s AND t.exchange_segment = s.exchange_segment "
        "AND t.security_id = s.security_id AND (t.row_hash <> s.row_hash OR NOT t.is_active)",
        [now, kind],
    )
    updated = cursor.rowcount
    cursor.execute(
        f"INSERT INTO {table} ({', '.join(exprs)}, is_active, removed_at, created_at, updated_at) "
        f"SELECT {', '.join(exprs.values())}, TRUE, NULL, %s, %s FROM {source} "
        f"WHERE s.kind = %s AND NOT EXISTS (SELECT 1 FROM {table} x "
        "WHERE x.exchange_segment = s.exchange_segment AND x.security_id = s.security_id)",
        [now, now, kind],
    )
    return cursor.rowcount, updated


def _collect_missing(cursor: Any, dialect: _Dialect) -> None:
    """Catalog rows whose key is not in the file, into a temp table (one anti-join per table)."""
    parts = []
    for model, kind in ((Derivative, "D"), (Instrument, "I")):
        table = model._meta.db_table
        expiry = "t.expiry_date" if model is Derivative else "NULL"
        parts.append(
            f"SELECT '{kind}' AS kind, t.id AS id, t.is_active AS active, {expiry} AS expiry_date "
            f"FROM {table} t WHERE NOT EXISTS (SELECT 1 FROM {STAGING} s WHERE s.kind = '{kind}' "
            "AND s.exchange_segment = t.exchange_segment AND s.security_id = t.security_id)"
        )
    cursor.execute(
        f"CREATE TEMPORARY TABLE {MISSING}{dialect.temp_suffix} AS {' UNION ALL '.join(parts)}"
    )


def _referenced(model: type) -> str:
    """SQL that is true when any row of another table points at this one (any FK, any app)."""
    table = model._meta.db_table
    checks = [
        f"EXISTS (SELECT 1 FROM {rel.related_model._meta.db_table} r "
        f"WHERE r.{rel.field.column} = {table}.id)"
        for rel in model._meta.related_objects
        if rel.many_to_one or rel.one_to_one
    ]
    return "(" + " OR ".join(checks) + ")" if checks else "FALSE"


def _unexpected_removals(cursor: Any, today: str) -> tuple[int, int]:
    """(contracts that would leave the catalog before their expiry, active contracts now)."""
    d, i = Derivative._meta.db_table, Instrument._meta.db_table
    cursor.execute(
        f"SELECT (SELECT count(*) FROM {MISSING} WHERE active AND "
        "(kind = 'I' OR expiry_date >= %s)), "
        f"(SELECT count(*) FROM {d} WHERE is_active) + (SELECT count(*) FROM {i} WHERE is_active)",
        [today],
    )
    unexpected, active = cursor.fetchone()
    return unexpected, active


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


def import_catalog(
    options: ImportOptions | None = None, config: CatalogConfig | None = None
) -> ImportResult:
    """Import the scrip master named by ``options`` (default: Dhan's URL through the cache)."""
    options = options or ImportOptions()
    config = config or catalog_config()
    started = time.monotonic()
    try:
        source = resolve_source(
            file=options.file,
            url=options.url,
            default_url=settings.INSTRUMENTS_SCRIP_MASTER_URL or config.url,
            cache_dir=settings.INSTRUMENTS_CACHE_DIR,
            max_age_hours=config.cache_max_age_hours,
            timeout=config.download_timeout_seconds,
            refresh=options.force,
        )
    except SourceError as exc:
        raise ImportFailed(str(exc)) from None

    fingerprint = file_fingerprint(source.path, config)
    previous = Setting.get(LAST_IMPORT_KEY) or {}
    if not options.force and previous.get("fingerprint") == fingerprint and not _catalog_is_empty():
        stats = {
            "source": source.description,
            "fingerprint": fingerprint,
            "last_imported_at": previous.get("imported_at"),
            "duration_seconds": round(time.monotonic() - started, 3),
            "totals": previous.get("totals", {}),
        }
        return ImportResult("unchanged", stats, source.warnings)

    try:
        stats = _import_file(source, fingerprint, config, options, started)
    except ScripMasterError as exc:
        raise ImportFailed(str(exc)) from None
    return ImportResult("imported", stats, source.warnings + stats.pop("_warnings", []))


def _import_file(
    source: SourceFile,
    fingerprint: str,
    config: CatalogConfig,
    options: ImportOptions,
    started: float,
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

    now_dt = timezone.now()
    today = timezone.localdate().isoformat()
    with transaction.atomic(), connection.cursor() as cursor:
        dialect = _dialect(cursor)
        dialect.begin()
        now = dialect.format_datetime(now_dt)
        parser = ScripMasterParser(
            exchanges=config.exchanges,
            format_datetime=dialect.format_datetime,
            name=source.path.name,
        )
        total = source.path.stat().st_size
        report_progress = options.progress

        def progress(done: int, rows: int) -> None:
            if report_progress is not None:
                report_progress(done, total, rows)

        with source.path.open("rb") as fh:
            dialect.load(parser.rows(fh, progress))
        progress(total, -1)
        phase("parse_and_stage")
        report = parser.report
        if report.rows_read and report.rejected_total / report.rows_read > max_bad:
            shown = "; ".join(f"line {p.line}: {p.reason}: {p.detail}" for p in report.samples)
            raise ImportFailed(
                f"{source.path.name}: {report.rejected_total} of {report.rows_read} rows are "
                f"malformed ({report.rejected_total / report.rows_read:.1%}, the limit is "
                f"{max_bad:.1%}); nothing was imported. First problems: {shown}"
            )

        inserted_i, updated_i = _merge(cursor, Instrument, COMMON_COLUMNS, "I", now)
        inserted_d, updated_d = _merge(cursor, Derivative, DERIVATIVE_COLUMNS, "D", now)
        dialect.analyze()
        phase("merge")
        _link_underlyings(cursor, dialect.ne)
        phase("link_underlyings")
        _collect_missing(cursor, dialect)
        unexpected, active = _unexpected_removals(cursor, today)
        share = unexpected / active if active else 0.0
        if share > config.max_removal_share and not options.allow_large_removal:
            raise ImportFailed(
                f"{source.path.name}: refusing to remove {unexpected} of {active} contracts that "
                f"have not expired ({share:.1%}, the limit is {config.max_removal_share:.0%}); "
                "the file looks incomplete. Nothing was changed. If the removal is intended, "
                "re-run with --allow-large-removal"
            )
        deleted_d, flagged_d = _remove_missing(cursor, Derivative, "D", now)
        deleted_i, flagged_i = _remove_missing(cursor, Instrument, "I", now)
        phase("remove_missing")

        inserted, updated = inserted_i + inserted_d, updated_i + updated_d
        stats: dict[str, Any] = {
            "imported_at": timezone.localtime(now_dt).isoformat(),
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
            "rejected": dict(report.rejected),
            "dropped": dict(report.dropped),
            "rejected_samples": [
                {"line": p.line, "reason": p.reason, "detail": p.detail} for p in report.samples
            ],
            "totals": catalog_totals(),
            "phases_seconds": phases,
        }
        Setting.put(LAST_IMPORT_KEY, stats)
        Setting.put(LAST_IMPORTED_AT_KEY, stats["imported_at"])
    stats["_warnings"] = report.warnings
    return stats


def clear_catalog() -> dict[str, int]:
    """Delete every contract nothing refers to; flag the rest inactive. Forgets the last import."""
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
        Setting.objects.filter(key__in=[LAST_IMPORT_KEY, LAST_IMPORTED_AT_KEY]).delete()
    return result


def catalog_status(now: datetime | None = None, max_age_hours: float = 24) -> dict[str, Any]:
    """What ``instruments_status`` prints: last import, its age, staleness and totals."""
    now = now or timezone.now()
    last = Setting.get(LAST_IMPORTED_AT_KEY)
    totals = catalog_totals()
    age = None
    if last:
        age = (now - datetime.fromisoformat(last)).total_seconds()
    stale = totals["total"] == 0 or age is None or age > max_age_hours * 3600
    return {
        "last_imported_at": last,
        "age_seconds": None if age is None else round(age, 1),
        "stale": stale,
        "total": totals["total"],
        "counts": {"by_segment": totals["by_segment"], "by_instrument": totals["by_instrument"]},
        "last_import": Setting.get(LAST_IMPORT_KEY),
    }
