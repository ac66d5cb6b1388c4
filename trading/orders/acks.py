"""The broker's acknowledgements, recorded off the sender's thread.

Once the broker has answered a send, the order is at the broker: what is left is to write its
order id and TRANSIT on the journal row (``record_ack``: one conditional UPDATE, committed
without waiting for the disk). Nothing the sender does next depends on that write, and the
write never decides anything: an order event that gets there first wins (the ack then only
fills in the broker's id), and an ack that is never written (the process died, the database
was away) leaves the order UNKNOWN and sent, which the order manager looks up by correlation
id after its grace (``workers/order_manager.py``, point 3) and settles from what the broker
says. So a long-running sender (the signal engine) hands its acks to an ``AckWriter``: one
thread with its own database connection writes them in the order they were answered, and the
next order (the second of a freeze split, the next index's entry) goes on the wire without
waiting for the last one's write.

Senders that end with their request (the API's manual exit, the admin action) keep writing the
ack themselves (the router's default).
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import close_old_connections, connections

from trading.models import Order
from trading.orders.journal import record_ack

logger = logging.getLogger(__name__)

__all__ = ["AckWriter"]


@dataclass(frozen=True)
class _Ack:
    order: Order
    broker_order_id: str
    status: str
    at: datetime


class AckWriter:
    """See the module docstring. ``put`` never blocks on the database; ``flush`` waits until
    every ack put so far is written (or failed); ``close`` flushes and stops the thread (a
    worker's way out). The thread starts with the first ack; after ``close`` a new ``put``
    starts another (the writer of a component that runs again)."""

    def __init__(self, *, name: str = "order-acks") -> None:
        self.name = name
        self.written = 0
        self.failed = 0  # acks whose write raised: their orders are resolved by lookup
        # The running thread and its own queue (a thread stopped by ``close`` keeps its queue,
        # so it cannot take an ack meant for the next one).
        self._queue: queue.SimpleQueue[_Ack | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self._put = 0
        self._handled = 0

    @property
    def pending(self) -> int:
        with self._lock:
            return self._put - self._handled

    def put(self, order: Order, broker_order_id: str, status: str, at: datetime) -> None:
        with self._lock:
            self._put += 1
            if self._thread is None or not self._thread.is_alive():
                self._queue = queue.SimpleQueue()
                self._thread = threading.Thread(
                    target=self._write, args=(self._queue,), name=self.name, daemon=True
                )
                self._thread.start()
            self._queue.put(_Ack(order, broker_order_id, status, at))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every ack put so far is handled; False when ``timeout`` passed first."""
        with self._done:
            target = self._put
            return self._done.wait_for(lambda: self._handled >= target, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread. What is still queued after
        ``timeout`` (the database is away) is left to the correlation-id lookup, and said."""
        with self._lock:
            thread, acks = self._thread, self._queue
            self._thread = None
        if thread is None:
            return
        acks.put(None)
        thread.join(timeout)
        if thread.is_alive():
            logger.error(
                "%s: %d ack(s) not written within %.0f s; those orders stay UNKNOWN until the "
                "order manager looks them up by correlation id",
                self.name,
                self.pending,
                timeout,
            )

    def _write(self, acks: queue.SimpleQueue[_Ack | None]) -> None:
        try:
            while True:
                ack = acks.get()
                if ack is None:
                    return
                try:
                    close_old_connections()
                    record_ack(ack.order, ack.broker_order_id, ack.status, ack.at)
                    self.written += 1
                except Exception as exc:  # the database is away: the lookup settles it
                    self.failed += 1
                    logger.error(
                        "%s: the ack of order %s (broker id %s) was not written (%s: %s); it "
                        "stays UNKNOWN until the order manager looks it up by correlation id",
                        self.name,
                        ack.order.correlation_id,
                        ack.broker_order_id,
                        type(exc).__name__,
                        exc,
                    )
                finally:
                    with self._done:
                        self._handled += 1
                        self._done.notify_all()
        finally:
            connections.close_all()  # this thread's connection

    def describe(self) -> dict[str, Any]:
        return {"written": self.written, "failed": self.failed, "pending": self.pending}
