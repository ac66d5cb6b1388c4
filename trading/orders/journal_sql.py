"""The journal's writes as single statements on PostgreSQL (trading/orders/journal.py decides
every value; this module only applies them, conditionally, and reads back what it needs).

Why: the order path's latency is database round trips, and a transition that read the order,
locked it, summed its fills and wrote four tables one statement at a time cost 4 to 16 of them
(bench/orders.py). On PostgreSQL each transition here is ONE statement: data-modifying CTEs
(``WITH ... UPDATE ... RETURNING``, ``INSERT ... SELECT ... FROM <the CTE that checked>``),
atomic by itself in autocommit, so it is also its own transaction (no BEGIN, no COMMIT).

An event that books fills needs the order's state to be priced in Python (the charges of the
order's cumulative quantity and turnover, config/charges.yml): the journal passes the state it
predicts (what it knew after the order's last transition in this process) and the statement
applies the new values only when the locked row and the sums of the fills in the database are
exactly that state; otherwise it writes nothing and returns the state as it is, and the journal
prices again from it (a second round trip: after a restart, or the first fill of an order this
process has not seen). So nothing here trusts a cache: the database is checked every time.

SQLite (the embedded default, in-process) has no data-modifying CTEs: the journal applies the
same plan there statement by statement inside one transaction (BEGIN IMMEDIATE), through the
ORM, except a new entry's rows (:func:`insert_entry_in_process`: SQL built once, the ORM's
compile was most of the send path). The one rule written in SQL, when an entry ends with
nothing filled (:func:`settle_sql`), is shared by both.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections, transaction
from django.db.models import Model
from django.utils import timezone

from trading.models import Order, OrderLeg, PositionTracker
from trading.orders.states import WORKING, PositionState, position_sources

logger = logging.getLogger(__name__)

__all__ = [
    "ClaimedExit",
    "LegSums",
    "OrderState",
    "StatementResult",
    "claim_exit_returning",
    "fetch_one_prepared",
    "in_list",
    "insert_entry",
    "insert_entry_in_process",
    "insert_exit_orders",
    "is_postgres",
    "prepared_cursor",
    "run_event",
    "run_final",
    "settle",
    "settle_sql",
    "update_order",
]


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


# A position status no row can have: longer than the column (PositionTracker.status).
_NO_STATUS = "-" * (PositionTracker._meta.get_field("status").max_length + 1)

# psycopg prepares a statement only when asked (``prepare=True``) once this is set on the
# connection: Django leaves ``prepare_threshold`` None (never), and every other statement keeps
# Django's client-side binding, which never prepares.
_ONLY_WHEN_ASKED = 2**31 - 1


# Why this process stopped preparing statements (:func:`fetch_one_prepared`), None while it
# prepares them: set once, for the process's life.
_prepared_lost: str | None = None


def prepared_statements() -> bool:
    """Whether the exit's claim runs as a prepared statement (settings.DB_PREPARED_STATEMENTS,
    env ``DB_PREPARED_STATEMENTS``, default on): off behind a pooler that cannot carry them
    (PgBouncer before 1.21 in transaction mode), and off in a process that found them lost
    on the server (:func:`fetch_one_prepared`)."""
    return _prepared_lost is None and bool(getattr(settings, "DB_PREPARED_STATEMENTS", True))


@contextlib.contextmanager
def prepared_cursor() -> Iterator[Any]:
    """A cursor on this thread's PostgreSQL connection whose statements are prepared on the
    server the first time and only bound and executed after (psycopg's server-side binding,
    ``prepare=True``), wrapped as Django wraps its own (errors as django.db errors, execute
    wrappers; the query log when it is kept, with the statement's text as prepared).

    Why: the exit's claim (:func:`claim_exit_with_orders`) is one statement of several CTEs,
    and PostgreSQL parsed and planned it on every exit: 1.05 ms at the median by the server's
    own log, where binding and executing it once prepared take 0.35 (bench/exit_engine.py,
    bench/RESULTS.md); on two cores shared with the feed, a burst of exits queued behind those
    plans. Its text is the same for every exit with as many orders, so each connection
    prepares it once (psycopg keeps up to 100 a connection)."""
    connection.ensure_connection()
    connection.validate_thread_sharing()
    raw = connection.connection
    if raw.prepare_threshold is None:
        raw.prepare_threshold = _ONLY_WHEN_ASKED
    log = connection.queries_log if connection.queries_logged else None
    with connection.make_cursor(_Preparing(raw, log)) as cursor:
        yield cursor


def fetch_one_prepared(sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
    """Run one statement on a :func:`prepared_cursor` (or a plain one when prepared
    statements are off) and return its first row.

    Two refusals come before anything runs (PostgreSQL checks the statement first), so
    outside a transaction nothing was done: the connection is closed and the statement runs
    once more on a new one. Inside a transaction the error is raised: the rollback clears
    psycopg's prepared statements, and the caller's next attempt runs it again.

    * A statement prepared on this connection before a migration changed the type of a
      column it returns fails with "cached plan must not change result type" (SQLSTATE
      0A000), and again each time it runs on that connection: psycopg keeps it. On the new
      connection it is prepared against the new table.
    * A prepared statement the server does not have (26000), or a name the server has taken
      already (42P05): what a pooler in transaction mode does to them (PgBouncer before
      1.21, or with ``max_prepared_statements = 0``): each transaction may land on another
      server connection. This process then stops preparing (:func:`prepared_statements`),
      says so once at ERROR, and runs the statement as any other: every exit still routed,
      each one planned by the server (about 1 ms more)."""
    if not prepared_statements():
        return _fetch_one(connection.cursor(), sql, params)
    try:
        return _fetch_one(prepared_cursor(), sql, params)
    except DatabaseError as exc:
        lost = _lost_statement(exc)
        if lost is None and not _stale_plan(exc):
            raise
        if lost is not None:
            _stop_preparing(lost)
        if connection.in_atomic_block:
            raise
    connection.close()  # its prepared statements go with it
    if lost is not None:
        return _fetch_one(connection.cursor(), sql, params)
    logger.warning(
        "a prepared statement was planned before a table it reads changed; this connection "
        "was replaced and the statement runs again on a new one"
    )
    return _fetch_one(prepared_cursor(), sql, params)


def _fetch_one(opened: Any, sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
    """``sql`` on the cursor ``opened`` (a context manager), its first row."""
    with opened as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def _lost_statement(exc: BaseException) -> str | None:
    """What the server said when a prepared statement it should have is not there (SQLSTATE
    26000) or its name is taken (42P05), else None."""
    diag = getattr(exc.__cause__, "diag", None)
    if diag is None or diag.sqlstate not in ("26000", "42P05"):
        return None
    return f"SQLSTATE {diag.sqlstate}: {diag.message_primary}"


def _stop_preparing(why: str) -> None:
    """No prepared statement in this process from now on (:func:`fetch_one_prepared`)."""
    global _prepared_lost
    if _prepared_lost is not None:
        return
    _prepared_lost = why
    logger.error(
        "prepared statements do not last on this database connection (%s): is a pooler in "
        "transaction mode between this process and PostgreSQL? This process sends the "
        "exit's claim unprepared from now on (same outcome, about 1 ms more a claim). Set "
        "DB_PREPARED_STATEMENTS=false to start that way, or let the pooler carry prepared "
        "statements (PgBouncer 1.21+: max_prepared_statements)",
        why,
    )


def _stale_plan(exc: BaseException) -> bool:
    """PostgreSQL's "cached plan must not change result type" (by its SQLSTATE and the
    routine that raises it, not the message, which the server may translate)."""
    diag = getattr(exc.__cause__, "diag", None)
    return (
        diag is not None
        and diag.sqlstate == "0A000"
        and diag.source_function == "RevalidateCachedQuery"
    )


class _Preparing(psycopg.Cursor):  # type: ignore[type-arg]
    """psycopg's server-side binding cursor, every statement prepared (prepared_cursor);
    ``log``: Django's query log to append each statement to (its template and its time)."""

    def __init__(self, connection: Any, log: Any = None) -> None:
        super().__init__(connection)
        self.log = log

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        if self.log is None:
            return super().execute(query, params, prepare=True)
        start = time.monotonic()
        try:
            return super().execute(query, params, prepare=True)
        finally:
            self.log.append({"sql": query, "time": f"{time.monotonic() - start:.3f}"})


@dataclass(frozen=True, slots=True)
class LegSums:
    """The fills of one leg of a position: units, turnover (rupees), charges (rupees)."""

    units: int = 0
    turnover: Decimal = Decimal(0)
    charges: Decimal = Decimal(0)

    def plus(self, units: int, turnover: Decimal, charges: Decimal) -> LegSums:
        return LegSums(self.units + units, self.turnover + turnover, self.charges + charges)


@dataclass(frozen=True, slots=True)
class OrderState:
    """What applying an event to an order depends on: the row, the turnover of its fills, the
    fills of its position per leg, and which of the event's trade ids are booked already
    (``booked``: at least those; an id not in it is predicted unbooked, and checked)."""

    id: int
    correlation_id: str
    position_id: int
    leg: str
    side: str
    exchange_segment: str
    quantity: int
    status: str
    broker_order_id: str
    filled: int
    charges: Decimal
    turnover: Decimal
    entry: LegSums
    exit: LegSums
    booked: frozenset[str]


@dataclass(frozen=True, slots=True)
class StatementResult:
    """What one event statement found and did. ``state`` is the order before the statement
    (None: no such order); ``verified`` False means the prediction was wrong and nothing was
    written; ``updated`` the order row was written (fills, status or broker id)."""

    state: OrderState | None
    verified: bool
    updated: bool


def in_list(name: str, values: Iterable[str], params: dict[str, Any]) -> str:
    """``(%(name0)s, %(name1)s, ...)`` for ``IN``, its values added to ``params`` (named
    parameters work on both backends; SQLite has no arrays)."""
    names = []
    for i, value in enumerate(values):
        params[f"{name}{i}"] = str(value)
        names.append(f"%({name}{i})s")
    return f"({', '.join(names)})" if names else "(NULL)"


def settle_sql(order: str, position: str, params: dict[str, Any]) -> str:
    """The conditions under which an entry that just ended cancels its position: it is still
    pending, no other entry order of it is working, and no entry unit filled. ``order`` and
    ``position`` are SQL expressions (the CTE's columns on PostgreSQL, parameters on SQLite).
    The one place this rule is written."""
    params["settle_entry"] = OrderLeg.ENTRY.value
    pending = in_list("settle_from", position_sources(PositionState.CANCELLED), params)
    working = in_list("settle_working", sorted(WORKING), params)
    return (
        f"p.id = {position} AND p.status IN {pending}"
        f" AND NOT EXISTS (SELECT 1 FROM trading_order x WHERE x.position_id = {position}"
        f" AND x.leg = %(settle_entry)s AND x.id <> {order} AND x.status IN {working})"
        f" AND COALESCE((SELECT SUM(x.filled_quantity) FROM trading_order x"
        f" WHERE x.position_id = {position} AND x.leg = %(settle_entry)s), 0) = 0"
    )


def settle(order_id: int, position_id: int, at: Any) -> None:
    """:func:`settle_sql` as a statement of its own, after the order's move in the same
    transaction (SQLite; ``at`` as the backend stores it)."""
    params: dict[str, Any] = {
        "order": order_id,
        "position": position_id,
        "cancelled": PositionState.CANCELLED.value,
        "at": at,
    }
    where = settle_sql("%(order)s", "%(position)s", params)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE trading_positiontracker AS p SET status = %(cancelled)s, exited_at = %(at)s"
            f" WHERE {where}",
            params,
        )


def update_order(
    order_id: int,
    values: dict[str, Any],
    *,
    status_in: Iterable[str] | None = None,
    unsent: bool = False,
    no_broker_id: bool = False,
    durable: bool = True,
) -> int:
    """``UPDATE trading_order SET <values> WHERE id = <order_id> AND <conditions>``: the
    row count. The ORM's ``filter().update()`` as one SQL string (the send path runs two
    of these per order; the ORM spends more time compiling them than the database running
    them). ``durable=False``, for a write whose loss a restart recovers from: outside a
    transaction on PostgreSQL, its commit does not wait for the write-ahead log's flush
    (``set_config('synchronous_commit', 'off', true)``: this statement's transaction only;
    atomic and in order all the same, only a server crash may lose it)."""
    params: dict[str, Any] = {"id": order_id}
    sets = []
    for name, value in values.items():
        field = Order._meta.get_field(name)
        params[f"v_{name}"] = field.get_db_prep_save(value, connection)
        sets.append(f"{field.column} = %(v_{name})s")
    where = ["id = %(id)s"]
    if status_in is not None:
        where.append(f"status IN {in_list('s', status_in, params)}")
    if unsent:
        where.append("sent_at IS NULL")
    if no_broker_id:
        where.append("broker_order_id = ''")
    relaxed = ""
    lazy = not durable and not connection.in_atomic_block
    if lazy and connection.vendor == "postgresql":
        relaxed = " FROM (SELECT set_config('synchronous_commit', 'off', true)) AS relaxed"
    with connection.cursor() as cursor:
        sql = f"UPDATE trading_order SET {', '.join(sets)}{relaxed} WHERE {' AND '.join(where)}"
        if lazy and connection.vendor == "sqlite":
            with _sqlite_lazy_commit(cursor):
                cursor.execute(sql, params)
        else:
            cursor.execute(sql, params)
        return cursor.rowcount


@contextlib.contextmanager
def _sqlite_lazy_commit(cursor: Any) -> Iterator[None]:
    """SQLite's nearest to PostgreSQL's per-transaction ``synchronous_commit off``: in WAL
    mode, ``synchronous = NORMAL`` for one autocommit statement (its commit does not wait for
    an fsync; a power cut may lose it, never corrupts the file: SQLite's own guarantee for
    WAL), then the connection's own level again. In any other journal mode it does nothing
    (there NORMAL is not that safe)."""
    raw = connection.connection
    # (the DB-API connection, its journal mode, its synchronous level as opened), read once
    # per connection and kept on Django's wrapper of it
    known = getattr(connection, "_lazy_commit_modes", None)
    if known is None or known[0] is not raw:
        cursor.execute("PRAGMA journal_mode")
        journal = str(cursor.fetchone()[0]).lower()
        cursor.execute("PRAGMA synchronous")
        known = (raw, journal, int(cursor.fetchone()[0]))
        connection._lazy_commit_modes = known
    _, journal, level = known
    if journal != "wal" or level <= 1:
        yield
        return
    cursor.execute("PRAGMA synchronous = NORMAL")
    try:
        yield
    finally:
        cursor.execute(f"PRAGMA synchronous = {level}")


# A new row goes to PostgreSQL as ONE jsonb parameter (``jsonb_populate_record`` turns it into
# the table's row type, PostgreSQL's own input functions converting each value), not one
# parameter per column: a position has 40 columns and an order 24, and with more than 50
# parameters psycopg re-parses the statement on every call and binds each value in Python;
# with one JSON document per row the statement's text is fixed (parsed once) and the values
# are one json.dumps. The columns and their order are the model's, as Django's INSERT has them.
_FIELDS: dict[tuple[type[Model], tuple[str, ...]], tuple[Any, ...]] = {}
_ENTRY_SQL: dict[tuple[bool, int], str] = {}
_JSON_NATIVE = (str, int, float, bool, type(None), dict, list)


def _fields(model: type[Model], skip: tuple[str, ...]) -> tuple[Any, ...]:
    """The concrete fields of a new row of ``model``, without the primary key and ``skip``."""
    key = (model, skip)
    fields = _FIELDS.get(key)
    if fields is None:
        fields = tuple(
            field
            for field in model._meta.concrete_fields
            if not field.primary_key and field.attname not in skip
        )
        _FIELDS[key] = fields
    return fields


def _columns(model: type[Model], skip: tuple[str, ...], alias: str = "") -> str:
    quote = connection.ops.quote_name
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + quote(field.column) for field in _fields(model, skip))


def _json_row(model: type[Model], instance: Model, skip: tuple[str, ...]) -> str:
    """The new row's column values as one JSON object, as Django's own INSERT computes them
    (the defaults, ``auto_now``: ``pre_save`` sets them on the instance too). Values JSON has
    no type for go through the field's own database preparation first, then as text in
    PostgreSQL's input format (a Decimal exactly as written, a datetime with its offset)."""
    row: dict[str, Any] = {}
    db = connections[DEFAULT_DB_ALIAS]  # the thread's connection once, not through the proxy
    for field in _fields(model, skip):
        value = field.pre_save(instance, add=True)
        if not isinstance(value, _JSON_NATIVE):
            value = _as_text(field, field.get_db_prep_save(value, db))
        elif isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{model.__name__}.{field.name}: {value!r} is not a finite number")
        row[field.column] = value
    return json.dumps(row, separators=(",", ":"), allow_nan=False)


def _as_text(field: Any, value: Any) -> Any:
    if isinstance(value, _JSON_NATIVE):
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{field.model.__name__}.{field.name}: {value} is not a finite number")
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if hasattr(value, "adapted"):  # psycopg's Jsonb wrapper of a JSONField
        return value.adapted
    raise TypeError(f"{field.model.__name__}.{field.name}: cannot journal a {type(value).__name__}")


def _entry_sql(by_id: bool, orders: int) -> str:
    """The journal of an entry (see :func:`insert_entry`), built once per shape."""
    key = (by_id, orders)
    sql = _ENTRY_SQL.get(key)
    if sql is not None:
        return sql
    if by_id:
        contract = "SELECT id FROM instruments_derivative WHERE id = %s"
    else:
        contract = (
            "SELECT id FROM instruments_derivative WHERE exchange_segment = %s AND security_id = %s"
        )
    position_skip, order_skip = ("derivative_id",), ("position_id",)
    parts = [
        f"d AS ({contract})",
        f"pos AS (INSERT INTO trading_positiontracker (derivative_id,"
        f" {_columns(PositionTracker, position_skip)})"
        f" SELECT d.id, {_columns(PositionTracker, position_skip, 'r')}"
        " FROM d, jsonb_populate_record(NULL::trading_positiontracker, %s::jsonb) AS r"
        " ON CONFLICT (signal_id) WHERE signal_id IS NOT NULL DO NOTHING RETURNING id)",
    ]
    for i in range(orders):
        parts.append(
            f"o{i} AS (INSERT INTO trading_order (position_id, {_columns(Order, order_skip)})"
            f" SELECT pos.id, {_columns(Order, order_skip, 'r')}"
            " FROM pos, jsonb_populate_record(NULL::trading_order, %s::jsonb) AS r"
            " RETURNING id)"
        )
    picks = "".join(f", (SELECT id FROM o{i})" for i in range(orders))
    sql = f"WITH {', '.join(parts)} SELECT d.id, (SELECT id FROM pos){picks} FROM d"
    _ENTRY_SQL[key] = sql
    return sql


def insert_entry(
    position: PositionTracker, orders: Sequence[Order]
) -> tuple[int, int | None, list[int]] | None:
    """Journal a pending position and its entry orders in one statement. Without
    ``position.derivative_id`` the contract is looked up in the same statement by the
    position's segment and security id. Returns the contract's id, the new position's id and
    its orders' ids (in ``orders``' order); the position id None (nothing written) when the
    position's signal is journaled already; None when the catalog has no such contract."""
    by_id = position.derivative_id is not None
    params: list[Any] = (
        [position.derivative_id] if by_id else [position.exchange_segment, position.security_id]
    )
    params.append(_json_row(PositionTracker, position, ("derivative_id",)))
    params += [_json_row(Order, order, ("position_id",)) for order in orders]
    with connection.cursor() as cursor:
        cursor.execute(_entry_sql(by_id, len(orders)), params)
        row = cursor.fetchone()
    if row is None:
        return None
    return row[0], row[1], list(row[2:])


_INSERT_SQL: dict[tuple[type[Model], str], str] = {}


def _insert_sql(model: type[Model], suffix: str = "") -> str:
    """``INSERT INTO <table> (<every column but the key>) VALUES (...)<suffix>``, built once."""
    key = (model, suffix)
    sql = _INSERT_SQL.get(key)
    if sql is None:
        fields = _fields(model, ())
        marks = ", ".join(["%s"] * len(fields))
        table = connection.ops.quote_name(model._meta.db_table)
        sql = _INSERT_SQL[key] = (
            f"INSERT INTO {table} ({_columns(model, ())}) VALUES ({marks}){suffix}"
        )
    return sql


def _values(model: type[Model], instance: Model) -> list[Any]:
    """A new row's database values, as Django's own INSERT computes them."""
    db = connections[DEFAULT_DB_ALIAS]  # the thread's connection once, not through the proxy
    return [
        field.get_db_prep_save(field.pre_save(instance, add=True), db)
        for field in _fields(model, ())
    ]


def insert_entry_in_process(
    position: PositionTracker, orders: Sequence[Order]
) -> tuple[int, int | None, list[int]] | None:
    """:func:`insert_entry` for SQLite: no round trips to save in process, but the ORM
    compiles every INSERT anew (milliseconds of the send path), so the same rows go through
    SQL built once, in one transaction (BEGIN IMMEDIATE, one commit)."""
    with connection.cursor() as cursor:
        if position.derivative_id is None:
            cursor.execute(
                "SELECT id FROM instruments_derivative"
                " WHERE exchange_segment = %s AND security_id = %s",
                [position.exchange_segment, position.security_id],
            )
            row = cursor.fetchone()
            if row is None:
                return None
            position.derivative_id = row[0]
        with transaction.atomic():
            cursor.execute(
                _insert_sql(
                    PositionTracker,
                    " ON CONFLICT (signal_id) WHERE signal_id IS NOT NULL DO NOTHING",
                ),
                _values(PositionTracker, position),
            )
            if cursor.rowcount == 0:  # the signal's position is journaled already
                return position.derivative_id, None, []
            position_id = cursor.lastrowid
            ids = []
            for order in orders:
                order.position_id = position_id
                cursor.execute(_insert_sql(Order), _values(Order, order))
                ids.append(cursor.lastrowid)
    return position.derivative_id, position_id, ids


@dataclass(frozen=True, slots=True)
class ClaimedExit:
    """What the claim of an exit read back with it: the position's units and contract, and
    whether entry orders of it may still buy (then the exit waits for them: the router's
    ``continue_exit``)."""

    quantity: int
    underlying: str
    mode: str
    exchange_segment: str
    security_id: int
    lot_size: int
    tick_size: Decimal
    entry_working: bool


def _claim_returning(position_id: int, decision: dict[str, Any], params: dict[str, Any]) -> str:
    """The claim of an exit (active -> exiting with the decision's columns, as journal's
    claim_exit writes them) returning what the exit orders need: the units and the contract,
    its lot and tick, and whether entry orders of it may still buy (``entry_working``)."""
    params.update(id=position_id, exiting=PositionState.EXITING.value)
    sets = ["status = %(exiting)s"]
    for name, value in decision.items():
        field = PositionTracker._meta.get_field(name)
        params[f"v_{name}"] = field.get_db_prep_save(value, connection)
        sets.append(f"{field.column} = %(v_{name})s")
    sources = position_sources(PositionState.EXITING)
    params["entry"] = OrderLeg.ENTRY.value
    return (
        f"UPDATE trading_positiontracker p SET {', '.join(sets)} FROM instruments_derivative d"
        f" WHERE p.id = %(id)s AND p.status IN {in_list('from', sources, params)}"
        " AND d.id = p.derivative_id"
        " RETURNING p.quantity, p.underlying, p.mode, p.exchange_segment, p.security_id,"
        " d.lot_size, d.tick_size, EXISTS (SELECT 1 FROM trading_order o"
        " WHERE o.position_id = p.id AND o.leg = %(entry)s"
        f" AND o.status IN {in_list('w', WORKING, params)}"
        " AND o.quantity > o.filled_quantity) AS entry_working"
    )


def claim_exit_returning(position_id: int, decision: dict[str, Any]) -> ClaimedExit | None:
    """active -> exiting with the decision's columns (as journal.claim_exit writes them), and
    what the exit orders need, in one statement; None when the position was not active."""
    params: dict[str, Any] = {}
    sql = _claim_returning(position_id, decision, params)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return None if row is None else ClaimedExit(*row)


def claim_exit_with_orders(
    position_id: int,
    decision: dict[str, Any],
    expect: ClaimedExit,
    orders: Sequence[Order],
    *,
    inert: bool = False,
) -> tuple[ClaimedExit | None, list[int | None]]:
    """:func:`claim_exit_returning` and :func:`insert_exit_orders` in ONE statement, for a
    caller that knows the position's facts before the claim (``expect``: the exit engine holds
    the row it judged) and built the exit orders from them. The orders are written only when
    the claim read back exactly those facts with no entry order working, and only into free
    slots. Returns what the claim read back (None: the position was not active, nothing
    written) and each order's id (None where it was not written: facts that differ, an entry
    still working, a slot taken; the caller then goes the two-statement way from what was read
    back). The position's row is locked by the claim before any slot is taken, the order every
    other driver of an exit locks in (see insert_exit_orders). ``inert``: the statement as it
    is, with statuses no row can have (the exit path's warm-up: nothing matches, nothing is
    written)."""
    params: dict[str, Any] = {}
    claim = _claim_returning(position_id, decision, params)
    if inert:
        # The same statement (its text, so its prepared plan), matching no row: no stored
        # status is longer than the column (PositionTracker.status: max_length).
        for name in [key for key in params if key.startswith("from")]:
            params[name] = _NO_STATUS
    facts = ("quantity", "underlying", "mode", "exchange_segment", "security_id")
    facts += ("lot_size", "tick_size")
    for name in facts:
        params[f"e_{name}"] = getattr(expect, name)
    same = " AND ".join(f"{name} = %(e_{name})s" for name in facts)
    parts = [f"c AS ({claim})", f"k AS (SELECT 1 FROM c WHERE NOT entry_working AND {same})"]
    for i, order in enumerate(orders):
        params[f"o{i}"] = _json_row(Order, order, ())
        parts.append(
            f"o{i} AS (INSERT INTO trading_order ({_columns(Order, ())})"
            f" SELECT {_columns(Order, (), 'r')}"
            f" FROM k, jsonb_populate_record(NULL::trading_order, %(o{i})s::jsonb) AS r"
            " ON CONFLICT (position_id, leg, leg_index, generation) DO NOTHING RETURNING id)"
        )
    picks = "".join(f", (SELECT id FROM o{i})" for i in range(len(orders)))
    sql = f"WITH {', '.join(parts)} SELECT c.*{picks} FROM c"
    row = fetch_one_prepared(sql, params)
    if row is None:
        return None, [None] * len(orders)
    return ClaimedExit(*row[:8]), list(row[8:])


_EXIT_SQL: dict[int, str] = {}


def insert_exit_orders(position_id: int, orders: Sequence[Order]) -> list[int] | None:
    """The first exit orders of a position just claimed, in one statement: written only while
    it is exiting and only into free slots (position, leg, index, generation); their ids, or
    None when any slot was taken (another driver journaled first: the caller reads what is
    there instead).

    The position's row is locked first (``FOR UPDATE``), as every other driver of an exit
    does (the router's ``continue_exit``, the journal booking an exit fill): without it this
    statement took an order slot, then waited for the position's row (the foreign key's
    check) that a driver held while it waited for the same slot, and PostgreSQL broke the
    deadlock by failing one of them."""
    sql = _EXIT_SQL.get(len(orders))
    if sql is None:
        parts = [
            "p AS (SELECT id FROM trading_positiontracker WHERE id = %s AND status = %s"
            " FOR UPDATE)"
        ]
        parts += [
            f"o{i} AS (INSERT INTO trading_order ({_columns(Order, ())})"
            f" SELECT {_columns(Order, (), 'r')}"
            " FROM p, jsonb_populate_record(NULL::trading_order, %s::jsonb) AS r"
            " ON CONFLICT (position_id, leg, leg_index, generation) DO NOTHING RETURNING id)"
            for i in range(len(orders))
        ]
        picks = ", ".join(f"(SELECT id FROM o{i})" for i in range(len(orders)))
        sql = _EXIT_SQL[len(orders)] = f"WITH {', '.join(parts)} SELECT {picks}"
    params: list[Any] = [position_id, PositionState.EXITING.value]
    params += [_json_row(Order, order, ()) for order in orders]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        ids = list(cursor.fetchone())
    return None if any(pk is None for pk in ids) else ids


# -- events ---------------------------------------------------------------------------------------

_LOCK = """cur AS (
    SELECT o.id, o.correlation_id, o.position_id, o.leg, o.side, o.exchange_segment,
           o.quantity, o.status, o.broker_order_id, o.filled_quantity, o.charges
    FROM trading_order o
    WHERE o.id = (
        SELECT k.id FROM (
            SELECT id, 0 AS pref, placed_at, leg_index FROM trading_order
            WHERE correlation_id = %(cid)s
            UNION ALL
            SELECT id, 1, placed_at, leg_index FROM trading_order WHERE broker_order_id = %(bid)s
        ) k ORDER BY k.pref, k.placed_at, k.leg_index, k.id LIMIT 1)
    FOR UPDATE
), sums AS (
    SELECT
        COALESCE(SUM(f.price * f.quantity) FILTER (WHERE f.order_id = cur.id), 0),
        COALESCE(SUM(f.quantity) FILTER (WHERE x.leg = %(entry)s), 0),
        COALESCE(SUM(f.price * f.quantity) FILTER (WHERE x.leg = %(entry)s), 0),
        COALESCE(SUM(f.charges) FILTER (WHERE x.leg = %(entry)s), 0),
        COALESCE(SUM(f.quantity) FILTER (WHERE x.leg = %(exit)s), 0),
        COALESCE(SUM(f.price * f.quantity) FILTER (WHERE x.leg = %(exit)s), 0),
        COALESCE(SUM(f.charges) FILTER (WHERE x.leg = %(exit)s), 0),
        COALESCE(array_agg(f.trade_id::text) FILTER (
            WHERE f.order_id = cur.id AND f.trade_id = ANY(%(ids)s::text[])), '{}'::text[])
    FROM cur
    JOIN trading_order x ON x.position_id = cur.position_id
    JOIN trading_fill f ON f.order_id = x.id
)"""
# sums' columns: turnover, entry units/turnover/charges, exit units/turnover/charges, booked


def _state(row: Sequence[Any]) -> OrderState:
    return OrderState(
        id=row[0],
        correlation_id=row[1],
        position_id=row[2],
        leg=row[3],
        side=row[4],
        exchange_segment=row[5],
        quantity=row[6],
        status=row[7],
        broker_order_id=row[8],
        filled=row[9],
        charges=row[10],
        turnover=row[11],
        entry=LegSums(row[12], row[13], row[14]),
        exit=LegSums(row[15], row[16], row[17]),
        booked=frozenset(row[18]),
    )


def _cases(column: str, condition: str, values: dict[str, Any], params: dict[str, Any]) -> list:
    """``SET`` items applied only when ``condition`` holds on the old row."""
    items = []
    for field, value in values.items():
        params[f"{column}_{field}"] = value
        items.append(f"{field} = CASE WHEN {condition} THEN %({column}_{field})s ELSE {field} END")
    return items


def run_event(
    *,
    correlation_id: str | None,
    broker_order_id: str | None,
    trade_ids: Sequence[str],
    predicted: OrderState | None,
    plan: Any,
) -> StatementResult:
    """Apply one event's plan (trading/orders/journal.py ``_Plan``) in one statement. With
    ``predicted`` the statement writes only when the order and its position are exactly in
    that state; ``plan`` None reads the state and writes nothing (a probe)."""
    params: dict[str, Any] = {
        "cid": correlation_id or None,
        "bid": broker_order_id or None,
        "ids": list(trade_ids),
        "entry": OrderLeg.ENTRY.value,
        "exit": OrderLeg.EXIT.value,
    }
    parts = [_LOCK]
    if plan is None:
        parts.append("ok AS (SELECT cur.id, cur.position_id FROM cur WHERE FALSE)")
    elif predicted is None:
        parts.append("ok AS (SELECT cur.id, cur.position_id FROM cur)")
    else:
        p = predicted
        params.update(
            p_id=p.id,
            p_position=p.position_id,
            p_leg=p.leg,
            p_side=p.side,
            p_segment=p.exchange_segment,
            p_quantity=p.quantity,
            p_filled=p.filled,
            p_charges=p.charges,
            p_turnover=p.turnover,
            p_eu=p.entry.units,
            p_et=p.entry.turnover,
            p_ec=p.entry.charges,
            p_xu=p.exit.units,
            p_xt=p.exit.turnover,
            p_xc=p.exit.charges,
            p_booked=sorted(p.booked & set(trade_ids)),
            p_nbooked=len(p.booked & set(trade_ids)),
        )
        parts.append(
            "ok AS (SELECT cur.id, cur.position_id FROM cur, sums s(t, eu, et, ec, xu, xt, xc, b)"
            " WHERE cur.id = %(p_id)s AND cur.position_id = %(p_position)s"
            " AND cur.leg = %(p_leg)s AND cur.side = %(p_side)s"
            " AND cur.exchange_segment = %(p_segment)s AND cur.quantity = %(p_quantity)s"
            " AND cur.filled_quantity = %(p_filled)s AND cur.charges = %(p_charges)s"
            " AND s.t = %(p_turnover)s AND s.eu = %(p_eu)s AND s.et = %(p_et)s"
            " AND s.ec = %(p_ec)s AND s.xu = %(p_xu)s AND s.xt = %(p_xt)s AND s.xc = %(p_xc)s"
            " AND cardinality(s.b) = %(p_nbooked)s AND s.b @> %(p_booked)s::text[])"
        )
    updated = "SELECT 0"
    if plan is not None:
        params["at"] = plan.at
        params["now"] = timezone.now()
        if plan.fills:
            # One INSERT for the event's trades, in their order (the rows' ids follow it, as
            # one INSERT per trade would give them), then their ledger rows, in order too.
            fills, ledger = [], []
            for i, fill in enumerate(plan.fills):
                params.update(
                    {
                        f"f{i}_trade": fill.trade_id,
                        f"f{i}_qty": fill.quantity,
                        f"f{i}_price": fill.price,
                        f"f{i}_charges": fill.charges,
                    }
                )
                fills.append(
                    f"({i}, %(f{i}_trade)s, %(f{i}_qty)s::integer, %(f{i}_price)s::numeric,"
                    f" %(f{i}_charges)s::numeric)"
                )
                for j, (kind, amount) in enumerate(fill.ledger):
                    params[f"l{i}_{j}_kind"], params[f"l{i}_{j}_amount"] = kind, amount
                    ledger.append(
                        f"({i}, {j}, %(f{i}_trade)s, %(l{i}_{j}_kind)s,"
                        f" %(l{i}_{j}_amount)s::numeric)"
                    )
            parts.append(
                "fi AS (INSERT INTO trading_fill"
                " (order_id, trade_id, quantity, price, charges, traded_at, created_at)"
                " SELECT ok.id, v.trade_id, v.quantity, v.price, v.charges, %(at)s, %(now)s"
                f" FROM ok, (VALUES {', '.join(fills)}) AS v(n, trade_id, quantity, price,"
                " charges) ORDER BY v.n RETURNING id, trade_id)"
            )
            if ledger:
                parts.append(
                    "li AS (INSERT INTO trading_ledgerentry"
                    " (kind, amount, fill_id, position_id, at, created_at)"
                    " SELECT v.kind, v.amount, fi.id, ok.position_id, %(at)s, %(now)s"
                    f" FROM ok, fi JOIN (VALUES {', '.join(ledger)})"
                    " AS v(n, j, trade_id, kind, amount) ON v.trade_id = fi.trade_id"
                    " ORDER BY v.n, v.j)"
                )
        moving = f"o.status IN {in_list('from', plan.status_from, params)}"
        params["status"] = plan.status
        sets = [f"status = CASE WHEN {moving} THEN %(status)s ELSE o.status END"]
        sets += _cases("o", moving, plan.final, params)
        changes = [moving]
        if plan.fills:
            params.update(filled=plan.filled, average=plan.average, o_charges=plan.charges)
            sets += [
                "filled_quantity = %(filled)s",
                "average_price = %(average)s",
                "charges = %(o_charges)s",
            ]
            changes.append("TRUE")
        if broker_order_id:
            sets.append(
                "broker_order_id = CASE WHEN o.broker_order_id = '' THEN %(bid)s"
                " ELSE o.broker_order_id END"
            )
            changes.append("o.broker_order_id = ''")
        parts.append(
            f"ou AS (UPDATE trading_order o SET {', '.join(sets)} FROM ok"
            f" WHERE o.id = ok.id AND ({' OR '.join(changes)}) RETURNING o.id)"
        )
        updated = "SELECT count(*) FROM ou"
        if plan.fills:
            position_sets = []
            for field, value in plan.position.items():
                params[f"pos_{field}"] = value
                position_sets.append(f"{field} = %(pos_{field})s")
            if plan.activate:
                active = in_list("act_from", position_sources(PositionState.ACTIVE), params)
                position_sets.append(
                    f"status = CASE WHEN p.status IN {active} THEN 'active' ELSE p.status END"
                )
                entry_at = {"entry_at": plan.at}
                position_sets += _cases("act", f"p.status IN {active}", entry_at, params)
            if plan.exited is not None:
                done = in_list("exd_from", position_sources(PositionState.EXITED), params)
                position_sets.append(
                    f"status = CASE WHEN p.status IN {done} THEN 'exited' ELSE p.status END"
                )
                position_sets += _cases("exd", f"p.status IN {done}", plan.exited, params)
            parts.append(
                f"pu AS (UPDATE trading_positiontracker p SET {', '.join(position_sets)}"
                " FROM ok WHERE p.id = ok.position_id RETURNING p.id)"
            )
        elif plan.settle:
            params["cancelled"] = PositionState.CANCELLED.value
            parts.append(
                "st AS (UPDATE trading_positiontracker p SET status = %(cancelled)s,"
                " exited_at = %(at)s FROM cur JOIN ou ON ou.id = cur.id"
                " WHERE cur.status IN "
                f"{in_list('from', plan.status_from, params)}"
                f" AND {settle_sql('cur.id', 'cur.position_id', params)} RETURNING p.id)"
            )
    sql = (
        f"WITH {', '.join(parts)} SELECT cur.*, s.*, (SELECT count(*) FROM ok), ({updated})"
        " FROM cur, sums s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return StatementResult(None, False, False)
    return StatementResult(_state(row), bool(row[19]), bool(row[20]))


def run_final(
    order_id: int,
    status: str,
    sources: Sequence[str],
    fields: dict[str, Any],
    at: datetime,
    *,
    unsent_only: bool = False,
) -> bool:
    """Move an order from ``sources`` to the final ``status`` with ``fields`` (a rejection of
    our send; with ``unsent_only``, an entry journaled and never sent, abandoned) and settle
    its position (:func:`settle_sql`), in one statement. True when the order moved."""
    params: dict[str, Any] = {
        "id": order_id,
        "status": status,
        "at": at,
        "cancelled": PositionState.CANCELLED.value,
    }
    sets = ["status = %(status)s"]
    for field, value in fields.items():
        params[f"v_{field}"] = value
        sets.append(f"{field} = %(v_{field})s")
    unsent = " AND o.sent_at IS NULL" if unsent_only else ""
    sql = (
        f"WITH ou AS (UPDATE trading_order o SET {', '.join(sets)}"
        f" WHERE o.id = %(id)s AND o.status IN {in_list('from', sources, params)}{unsent}"
        " RETURNING o.id, o.position_id),"
        " st AS (UPDATE trading_positiontracker p SET status = %(cancelled)s, exited_at = %(at)s"
        f" FROM ou WHERE {settle_sql('ou.id', 'ou.position_id', params)} RETURNING p.id)"
        " SELECT count(*) FROM ou"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0] == 1
