"""A route thread's database connection kept open and warm (workers/warm_db.py), on the test's
real database: opened before use, kept past its age while it is used, replaced (and warmed)
between uses, closed when an error left it broken, and an unreachable database said once."""

from __future__ import annotations

import logging
import time

import pytest
from django.db import DEFAULT_DB_ALIAS, connection, connections

from workers.warm_db import WarmConnection

pytestmark = pytest.mark.django_db(transaction=True)


def backend() -> object:
    """Which connection this thread holds: PostgreSQL's backend pid, SQLite's handle."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return cursor.fetchone()[0]
    connection.ensure_connection()
    return id(connection.connection)


def test_open_opens_the_connection_and_warms_it_once():
    connection.close()
    warmed: list[bool] = []
    warm = WarmConnection("test", warm=lambda: warmed.append(connection.connection is not None))
    assert warm.open() is True
    assert connection.connection is not None and warmed == [True] and warm.opened == 1
    assert warm.open() is True  # already open: nothing opened, nothing warmed again
    assert warmed == [True] and warm.opened == 1


def test_an_aged_connection_is_kept_while_in_use_and_replaced_between_uses():
    """Past CONN_MAX_AGE: before_use keeps it (the route does not wait for a connect);
    idle() closes it and opens (and warms) the next at once."""
    warmed: list[int] = []
    warm = WarmConnection("test", warm=lambda: warmed.append(1))
    warm.open()
    first = backend()
    connection.close_at = time.monotonic() - 1  # as Django sets it from CONN_MAX_AGE
    warm.before_use()
    assert backend() == first
    warm.idle()
    assert connection.connection is not None  # open again before anything asks for it
    assert backend() != first and len(warmed) == 2


def test_idle_keeps_a_connection_that_is_young_and_sound():
    warm = WarmConnection("test")
    warm.open()
    first = backend()
    connection.close_at = time.monotonic() + 60
    warm.idle()
    assert backend() == first


def test_a_connection_an_error_broke_is_closed_before_the_next_use():
    """The server ended the session (a restart, a failover, pg_terminate_backend): the
    statement that met it failed; before the next use the connection is found unusable and
    closed, so that use opens a sound one."""
    if connection.vendor != "postgresql":
        pytest.skip("ending a session from the server is PostgreSQL's")
    from django.db import OperationalError
    from django.db.backends.postgresql.base import DatabaseWrapper

    warm = WarmConnection("test")
    warm.open()
    victim = backend()
    other = DatabaseWrapper(connections.settings[DEFAULT_DB_ALIAS], alias="other")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [victim])
    finally:
        other.close()
    with pytest.raises(OperationalError):
        backend()
    assert connection.errors_occurred
    warm.before_use()
    assert connection.connection is None
    assert backend() != victim


def test_an_error_on_a_sound_connection_keeps_it():
    """A statement's own error (here a bad SQL) leaves the connection usable: kept."""
    from django.db import ProgrammingError

    warm = WarmConnection("test")
    warm.open()
    first = backend()
    with pytest.raises(ProgrammingError), connection.cursor() as cursor:
        cursor.execute("SELECT * FROM no_such_table_here")
    assert connection.errors_occurred
    warm.before_use()
    assert not connection.errors_occurred and backend() == first


def test_an_unreachable_database_is_said_once_and_its_return_once(caplog):
    if connection.vendor != "postgresql":
        pytest.skip("an unreachable server is PostgreSQL's (SQLite is a file)")
    from django.db.backends.postgresql.base import DatabaseWrapper

    from scripts.services import free_port

    alias = "warm_db_unreachable"
    settings = dict(connections.settings[DEFAULT_DB_ALIAS])
    settings.update(HOST="127.0.0.1", PORT=str(free_port()))
    settings["OPTIONS"] = {**settings.get("OPTIONS", {}), "connect_timeout": 2}
    connections[alias] = DatabaseWrapper(settings, alias=alias)  # this thread's, this test's
    try:
        warm = WarmConnection("routes 0", alias=alias)
        with caplog.at_level(logging.INFO, logger="workers.warm_db"):
            assert warm.open() is False
            assert warm.open() is False
            said = [r for r in caplog.records if r.name == "workers.warm_db"]
            assert len(said) == 1 and said[0].levelno == logging.WARNING
            assert "routes 0: the database connection could not be opened" in said[0].message
            assert "\n" not in said[0].message
            connections[alias].settings_dict.update(
                HOST=connections.settings[DEFAULT_DB_ALIAS]["HOST"],
                PORT=connections.settings[DEFAULT_DB_ALIAS]["PORT"],
            )
            assert warm.open() is True
            said = [r for r in caplog.records if r.name == "workers.warm_db"]
            assert [r.levelno for r in said] == [logging.WARNING, logging.INFO]
            assert said[1].message == "routes 0: the database connection is open again"
    finally:
        connections[alias].close()
        del connections[alias]


def test_take_idles_while_nothing_comes_and_hands_the_item_on_a_ready_connection(monkeypatch):
    """The router threads' loop: while the queue is empty the connection is kept (an aged one
    replaced); an item comes back with the connection ready; None (a stop) as it is."""
    import queue
    import threading

    import workers.warm_db as warm_db

    monkeypatch.setattr(warm_db, "IDLE_EVERY", 0.05)
    warm = WarmConnection("test")
    warm.open()
    first = backend()
    connection.close_at = time.monotonic() - 1  # aged: replaced by the first idle pass
    work: queue.SimpleQueue[object] = queue.SimpleQueue()
    threading.Timer(0.3, work.put, args=("route",)).start()
    assert warm.take(work) == "route"
    assert connection.connection is not None and backend() != first
    work.put(None)
    assert warm.take(work) is None
