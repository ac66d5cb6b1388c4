"""One worker per process (split mode): run a component until SIGTERM or SIGINT.

The handlers only set the stop event (healthchecks' sendalerts model): the component notices at
its next pass and returns after its own shutdown, so a platform restart never cuts a write.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable


def run_until_stopped(run: Callable[[threading.Event], None], name: str) -> None:
    """Call ``run(stop)`` with a stop event that SIGTERM and SIGINT set."""
    logger = logging.getLogger(f"workers.{name.replace(' ', '_')}")
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        logger.info("%s: %s received, stopping", name, signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    run(stop)
