"""A worker's helper process: spawned, told apart from its parent by a pipe, and bound to it.

The exit engine runs two (workers/exit_routes.py, the routes; workers/exit_marks.py, the PnL
marks): work that would otherwise take the engine's interpreter lock from its tick thread.
What they share is here:

* **start**: a fresh interpreter (``spawn``: no inherited database or Redis connection); the
  child says ``("ready",)`` or ``("failed", detail)`` within :data:`READY_TIMEOUT`, and a
  child that does not is killed and reported as the ``died`` error;
* **messages**: the parent sends Python objects down the pipe (:meth:`ChildProcess.send`); a
  reader thread hands each message the child sends to ``on_message``;
* **death**: the child's end of the pipe closes with it, so a crash or a kill is the reader's
  end of file, reported once to ``on_died`` as the ``died`` error (the worker then stops: its
  supervisor starts it again); a send to a dead child raises it;
* **the parent's end**: the child reads its pipe until ``None`` (a stop) or its end (the
  parent is gone, a SIGKILL included) and then finishes and exits: no orphan keeps its
  database connections.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

READY_TIMEOUT = 60.0  # seconds for a child to set Django up and say it is ready


class ChildProcess:
    """The parent's side of one child (module docstring). ``what`` names it in errors and
    logs ("route process"); ``died`` is the error its death is reported as."""

    what = "child process"
    died: type[RuntimeError] = RuntimeError

    def __init__(
        self,
        target: Callable[..., None],
        args: tuple[Any, ...],
        *,
        name: str,
        on_message: Callable[[Any], None],
        on_died: Callable[[RuntimeError], None],
    ) -> None:
        self.target = target
        self.args = args
        self.name = name
        self.on_message = on_message
        self.on_died = on_died
        self.process: Any = None
        self._conn: Any = None
        self._reader: threading.Thread | None = None
        self._send = threading.Lock()
        self._stopping = False

    def start(self) -> None:
        ctx = mp.get_context("spawn")  # a fresh interpreter: no inherited connections
        ours, theirs = ctx.Pipe()
        process = ctx.Process(
            target=self.target, args=(theirs, *self.args), name=self.name, daemon=True
        )
        process.start()
        theirs.close()  # only the child holds its end: its death is our end of file
        try:
            if not ours.poll(READY_TIMEOUT):
                process.kill()
                raise self.died(f"the {self.what} did not start within {READY_TIMEOUT:.0f} s")
            first = ours.recv()
        except (EOFError, OSError):
            first = None
        if not (isinstance(first, tuple) and first[:1] == ("ready",)):
            process.join(5)
            if process.is_alive():
                process.kill()
            detail = first[1] if isinstance(first, tuple) and len(first) > 1 else "no answer"
            raise self.died(
                f"the {self.what} failed to start (exit code {process.exitcode}): {detail}"
            )
        self.process, self._conn = process, ours
        self._reader = threading.Thread(
            target=self._read, name=f"{self.name}-reader", daemon=True
        )
        self._reader.start()

    def send(self, message: Any) -> None:
        """One message down the pipe; the ``died`` error when the child is gone."""
        try:
            with self._send:
                self._conn.send(message)
        except (OSError, EOFError, ValueError) as exc:
            raise self.died(f"the {self.what} is gone: {exc}") from exc

    def _read(self) -> None:
        conn = self._conn
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            try:
                self.on_message(message)
            except Exception:
                logger.exception("%s: a message from the %s was not handled", self.name, self.what)
        if self._stopping:
            return
        process = self.process
        process.join(1.0)
        code = process.exitcode
        how = (
            f"killed by signal {-code}"
            if code is not None and code < 0
            else f"exit code {code}"
            if code is not None
            else "its pipe closed"
        )
        self.on_died(self.died(f"the {self.what} died ({how})"))

    def stop(self, timeout: float = 30.0) -> None:
        """Tell the child to finish (``None``), wait for it, kill it if it does not end."""
        if self.process is None:
            return
        self._stopping = True
        try:
            with self._send:
                self._conn.send(None)
        except (OSError, EOFError, ValueError):
            pass
        self.process.join(timeout)
        if self.process.is_alive():
            logger.error("%s: the %s did not end in %.0f s: killed", self.name, self.what, timeout)
            self.process.kill()
            self.process.join(5)
        if self._reader is not None:
            self._reader.join(5)
        self._conn.close()
        self.process = None


def setup_django(database: dict[str, Any] | None) -> None:
    """In a spawned child: Django, on the parent's database (its settings, with the parent's
    NAME: the test database under pytest)."""
    import django

    django.setup()
    if database:
        from django.conf import settings

        settings.DATABASES["default"].update(database)


def say_failed(conn: Any, exc: BaseException) -> None:
    """The child's setup failed: say why (the parent raises it) and close the pipe."""
    try:
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
    except (OSError, EOFError, ValueError):
        pass
    finally:
        conn.close()
