"""Database connections kept open for the threads on an exit's path (the exit engine's routes).

Django closes a connection older than ``CONN_MAX_AGE`` (60 s by default,
``DB_CONN_MAX_AGE``) at the next ``close_old_connections()``, and the next query opens a
new one: a TCP connect, a PostgreSQL backend's start and the session's set-up, 5-20 ms on a
loaded machine. A route thread that called ``close_old_connections()`` before each route paid
that on the first exit of its life and again on the first exit after every minute, which is
most exits of a real day (a few an hour): the exit waited for a connect. Measured with a
trace in the route process (bench/exit_engine.py): each route thread's first route took
10-22 ms where the others took 3 at the median, four of the 300 routes of a 30 s run, enough
by themselves to hold the p99 over 10 ms (bench/RESULTS.md).

A :class:`WarmConnection` is one thread's connection, kept so that a route never opens one:

* :meth:`open` at the thread's start (before the process says it is ready), then ``warm``
  (the router's ``warm_up``: the exit's claim run inert, so the connection's backend has its
  catalog caches and the statement prepared and planned before the first exit);
* :meth:`before_use` before each route: a connection that saw an error is checked (Django's
  own check: ``is_usable``) and closed when it is broken, so the route opens a good one; an
  aged connection is NOT closed here (the route keeps its warm one);
* :meth:`idle` when the thread has had nothing to do for :data:`IDLE_EVERY` seconds: the age
  rule applies (a connection older than ``CONN_MAX_AGE`` is closed) and the connection is
  opened (and warmed) again at once, so the recycling happens between routes, never in one.
  A database that cannot be reached then is said once (WARNING) and once more when it is
  back; the next route meets the same error it would have met anyway and its caller handles
  it.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from typing import Any

from django.db import DEFAULT_DB_ALIAS, DatabaseError, close_old_connections, connections

from config_schema.text import first_line

logger = logging.getLogger(__name__)

IDLE_EVERY = 5.0  # seconds without work before a thread recycles (and reopens) its connection


class WarmConnection:
    """One thread's database connection, open before it is needed (module docstring).
    ``name`` says whose it is in the log lines; ``warm`` runs on each connection it opens."""

    def __init__(
        self,
        name: str,
        *,
        warm: Callable[[], Any] | None = None,
        alias: str = DEFAULT_DB_ALIAS,
    ) -> None:
        self.name = name
        self.warm = warm
        self.alias = alias
        self.down = False  # the last open failed (said once)
        self.opened = 0  # connections opened by open()/idle(): the warm ones

    def open(self) -> bool:
        """Open this thread's connection now when it is not open, and warm it; False (said
        once) when the database cannot be reached."""
        connection = connections[self.alias]
        try:
            if connection.connection is None:
                connection.ensure_connection()
                self.opened += 1
                if self.warm is not None:
                    self.warm()
        except DatabaseError as exc:
            if not self.down:
                self.down = True
                logger.warning(
                    "%s: the database connection could not be opened ahead of use (%s); "
                    "the next use tries again",
                    self.name,
                    first_line(exc),
                )
            return False
        if self.down:
            self.down = False
            logger.info("%s: the database connection is open again", self.name)
        return True

    def before_use(self) -> None:
        """Before a use: close the connection only when an error left it broken (Django's
        ``is_usable`` check), never for its age."""
        connection = connections[self.alias]
        if connection.connection is not None and connection.errors_occurred:
            if connection.is_usable():
                connection.errors_occurred = False
            else:
                connection.close()

    def idle(self) -> None:
        """Between uses: recycle a connection past ``CONN_MAX_AGE`` (or broken) and open the
        next one now."""
        close_old_connections()
        self.open()

    def take(self, work: queue.SimpleQueue[Any]) -> Any:
        """The next item of ``work``, the connection made ready for it (:meth:`before_use`;
        None, a stop, as it is); while nothing comes, :meth:`idle` every :data:`IDLE_EVERY`
        seconds. The loop of a thread that routes what ``work`` hands it."""
        while True:
            try:
                item = work.get(timeout=IDLE_EVERY)
            except queue.Empty:
                self.idle()  # an aged connection is replaced between uses
                continue
            if item is not None:
                self.before_use()
            return item
