"""One worker per process (split mode): run a component until SIGTERM or SIGINT.

The handlers only set the stop event (healthchecks' sendalerts model): the component notices at
its next pass and returns after its own shutdown, so a platform restart never cuts a write.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
from collections.abc import Callable
from typing import Any


def run_until_stopped(run: Callable[[threading.Event], None], name: str) -> None:
    """Call ``run(stop)`` with a stop event that SIGTERM and SIGINT set.

    The handler never touches the event itself: it runs on the main thread between two
    bytecodes, possibly inside ``stop.wait()`` while that holds the event's lock (a plain,
    non-reentrant Lock), and ``stop.set()`` there would wait for it forever (seen in CI: a
    worker that logged "SIGTERM received" and never exited). It hands the signal to a watcher
    thread through a ``SimpleQueue``, whose ``put`` is reentrant (safe where a lock is not)."""
    logger = logging.getLogger(f"workers.{name.replace(' ', '_')}")
    stop = threading.Event()
    signals: queue.SimpleQueue[int | None] = queue.SimpleQueue()

    def watch() -> None:
        while (signum := signals.get()) is not None:
            logger.info("%s: %s received, stopping", name, signal.Signals(signum).name)
            stop.set()

    watcher = threading.Thread(target=watch, name=f"{name} signals", daemon=True)
    watcher.start()

    def on_signal(signum: int, frame: object) -> None:
        signals.put(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        run(stop)
    finally:
        signals.put(None)
        watcher.join(timeout=1.0)


def run_split_worker(
    name: str, sees: str, build: Callable[[Any, bool], Any], say: Callable[[str], None]
) -> None:
    """A split-mode worker command's body: the Realtime on Redis (``sees`` says what the
    worker reads from other processes, for the error without REDIS_URL), the trading mode
    said, ``build(realtime, live)``, run until SIGTERM/SIGINT. A configuration error at
    build and credentials the broker refuses end it with one line (CommandError)."""
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management.base import CommandError

    from config_schema import ConfigError
    from trading.mode import trading_mode
    from workers.broker_auth import BrokerAuthFailed
    from workers.realtime.services import realtime_from_settings

    realtime = realtime_from_settings()
    if realtime.redis_url is None:
        realtime.close()
        raise CommandError(
            f"REDIS_URL is not set: the {name} cannot see {sees} from another process (for "
            "one process, use manage.py run_trader)"
        )
    mode = trading_mode()
    say(f"trading mode: {mode.name.upper()} ({mode.reason})")
    try:
        worker = build(realtime, mode.live)
    except (ConfigError, ImproperlyConfigured) as exc:
        realtime.close()
        raise CommandError(str(exc)) from None
    try:
        run_until_stopped(worker.run, name)
    except BrokerAuthFailed as exc:
        raise CommandError(str(exc)) from None
    finally:
        realtime.close()
