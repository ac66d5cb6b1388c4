"""The exit engine's PnL marks in a process of their own (split mode, ``run_exit_engine``).

Why a process: the marks of the open book (every position whose contract ticked, once a
second: the exit-charges estimate, the PnL, the snapshot's JSON) are about 50 microseconds of
interpreter each, a tenth of a second a second at 2,000 positions, in one burst. In the
engine's process the tick thread waited for the interpreter lock behind that burst: measured
(bench/exit_engine.py, "Exit engine: the marks in their own process"), the deciding tick of an
exit waited 22-25 ms at p99 before its batch was taken, and 9 ms with no marks in the process.
Here they have an interpreter to themselves; the engine's process is left with the rules.

What it does, every ``interval`` seconds (1, the engine's sweep):

* reads the open positions as the engine's reload does (a narrow fingerprint of each, the full
  rows of the new and the changed only: ``workers.pnl.read_open_positions``);
* reads the latest tick of each of their contracts from Redis in one MGET (the feed hub keeps
  them there; the marks are at most an interval old, as they were in the engine);
* marks each position whose contract's tick changed since its last mark, and each new one:
  ``pnl:{id}`` in one write, the database copy at most every 5 s per position in one
  statement (``PnlMonitor.mark_batch``, the engine's own code; ``workers.pnl.BookMarks``);
* a position that left the open set: its last mark copied to the database and its ``pnl:{id}``
  deleted;
* tells the engine what it marked and its errors (``("marks", updates, errors, last_error)``),
  which the engine's heartbeat carries.

Lifetime (workers/child_process.py): it ends at the end of its pipe (the engine stopped or
died); its death is :class:`MarksDied` for the engine, which then stops (its supervisor starts
it again). Nothing it does decides an exit: the rules run in the engine, on every tick.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from workers.child_process import ChildProcess, say_failed, setup_django

logger = logging.getLogger(__name__)


class MarksDied(RuntimeError):
    """The exit engine's marks process is gone: the PnL marks stop, and so does the engine."""


class MarksProcess(ChildProcess):
    """The engine's side: start the process, get its counters (``on_counts(updates, errors,
    last_error)``), notice its death (``on_died(MarksDied)``)."""

    what = "marks process"
    died = MarksDied

    def __init__(
        self,
        *,
        on_counts: Callable[[int, int, str | None], None],
        on_died: Callable[[MarksDied], None],
        redis_url: str,
        prefix: str,
        interval: float = 1.0,
        database: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            serve,
            (redis_url, prefix, interval, database),
            name="exit-engine-marks",
            on_message=self._counts,
            on_died=on_died,  # type: ignore[arg-type]
        )
        self.on_counts = on_counts

    def start(self) -> None:
        super().start()
        logger.info("exit engine: PnL marks in process %d", self.process.pid)

    def _counts(self, message: Any) -> None:
        if message[:1] == ("marks",):
            _, updates, errors, last_error = message
            self.on_counts(updates, errors, last_error)


def serve(
    conn: Any, redis_url: str, prefix: str, interval: float, database: dict[str, Any] | None
) -> None:
    """The marks process's body (module docstring)."""
    try:
        setup_django(database)
        from workers.pnl import BookMarks
        from workers.realtime.services import redis_realtime

        marks = BookMarks(redis_realtime(redis_url, prefix=prefix))
    except BaseException as exc:  # said to the engine, which raises it
        say_failed(conn, exc)
        return
    from django.db import close_old_connections, connections

    conn.send(("ready",))
    next_round = time.monotonic()
    try:
        while True:
            wait = next_round - time.monotonic()
            try:
                if wait > 0 and conn.poll(wait):
                    if conn.recv() is None:
                        break  # stopped
                    continue
            except (EOFError, OSError):
                break  # the engine is gone
            next_round = time.monotonic() + interval
            close_old_connections()
            try:
                marks.mark_once(time.time())
            except Exception as exc:  # the next round tries again; the engine hears of it
                marks._record_error(f"marks: {type(exc).__name__}: {exc}")
                logger.exception("exit engine (marks): a round of PnL marks failed")
            try:
                conn.send(("marks", marks.updates, marks.errors, marks.last_error))
            except (OSError, EOFError, ValueError):
                break
    finally:
        connections.close_all()
        conn.close()
