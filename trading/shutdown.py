"""A process's stop on SIGTERM and SIGINT, shared by the workers (workers/process.py) and
the simulator command (``manage.py dhan_sim``); here, in the lowest layer both may import.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading


class SignalStop:
    """A stop event that SIGTERM and SIGINT set, for a process's main loop.

    The handler never touches the event itself: it runs on the main thread between two
    bytecodes, possibly inside ``event.wait()`` while that holds the event's lock (a plain,
    non-reentrant Lock), and ``event.set()`` there would wait for it forever (seen in CI: a
    worker that logged "SIGTERM received" and never exited). It hands the signal to a watcher
    thread through a ``SimpleQueue``, whose ``put`` is reentrant (safe where a lock is not).
    ``close()`` ends the watcher."""

    def __init__(self, name: str, logger: logging.Logger) -> None:
        self.event = threading.Event()
        self._signals: queue.SimpleQueue[int | None] = queue.SimpleQueue()

        def watch() -> None:
            while (signum := self._signals.get()) is not None:
                logger.info("%s: %s received, stopping", name, signal.Signals(signum).name)
                self.event.set()

        self._watcher = threading.Thread(target=watch, name=f"{name} signals", daemon=True)
        self._watcher.start()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda signum, frame: self._signals.put(signum))

    def close(self) -> None:
        self._signals.put(None)
        self._watcher.join(timeout=1.0)
