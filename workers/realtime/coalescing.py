"""Coalescing tick subscriptions: a consumer gets the latest record per key, never a backlog.

(Not to be confused with ``workers/subscriptions.py``, the instruments the feed hub should
subscribe at Dhan.) A ``TickSubscription`` belongs to a tick store (``tick_store.MemoryTickStore``
or ``redis_tick_store.RedisTickStore``), which routes published records to it; it keeps at most
one pending record per key, so its memory is bounded by the number of keys whatever the rate.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Protocol

from workers.realtime.record import TickRecord

log = logging.getLogger(__name__)

__all__ = ["Pending", "SubscriptionOwner", "TickSubscription"]


class SubscriptionOwner(Protocol):
    """The store a subscription tells which keys it follows (memory or Redis)."""

    def _sub_add(self, sub: TickSubscription, keys: list[str]) -> None: ...
    def _sub_remove(self, sub: TickSubscription, keys: list[str]) -> None: ...
    def _sub_close(self, sub: TickSubscription) -> None: ...


# A pending entry: (seq, record or its undecoded bytes). Redis subscriptions keep the bytes and
# decode in wait(), so a record superseded before the consumer looks is never parsed.
Pending = tuple[int, "TickRecord | bytes"]


class TickSubscription:
    """Coalescing: holds at most one (the latest by seq) record per key; memory bounded by
    the number of keys whatever the tick rate. Thread-safe.

    ``wait`` returns what changed since the last call, latest value per key. A consumer that
    falls behind loses intermediate values (counted in ``dropped_superseded``), never the
    latest. A record older (lower seq) than the one pending for its key is ignored
    (``dropped_stale``): after a reconnect the current value read from Redis can race with
    a message. The same record can be delivered twice (a resync after a reconnect, or ``add``
    of a key whose value is already pending): consumers compare ``seq`` when that matters.

    ``on_ready(subscription)``, when given, is called each time the subscription goes from
    nothing pending to something pending, on the thread that delivered the value (Redis: the
    listener thread; memory: the publisher's). It lets a consumer react without a thread hop
    of its own: typically it calls ``take()`` (or hands off). It must be quick: while it runs
    the listener reads nothing, values queue in the socket and then in Redis, and Redis drops
    a pub/sub client that lets its output buffer overflow (the listener then reconnects and
    re-reads current values, so the latest value still arrives). An exception is logged.
    """

    def __init__(
        self,
        owner: SubscriptionOwner,
        *,
        all_keys: bool = False,
        on_ready: Callable[[TickSubscription], object] | None = None,
    ) -> None:
        self._owner = owner
        self._on_ready = on_ready
        self._cond = threading.Condition(threading.Lock())
        self._pending: dict[str, Pending] = {}
        self._keys: set[str] = set()
        self.all_keys = all_keys
        self.closed = False
        self.dropped_superseded = 0
        self.dropped_stale = 0
        self.decode_errors = 0

    def add(self, keys: Iterable[str]) -> None:
        """Follow ``keys`` too; their current values (if any) are delivered by the next wait."""
        with self._cond:  # filtered under the lock: two threads adding a key route it once
            if self.closed:
                return
            new = [key for key in dict.fromkeys(keys) if key not in self._keys]
            self._keys.update(new)
        if new and not self.all_keys:  # an all-keys subscription already gets every key
            self._owner._sub_add(self, new)

    def remove(self, keys: Iterable[str]) -> None:
        with self._cond:
            gone = [key for key in dict.fromkeys(keys) if key in self._keys]
            self._keys.difference_update(gone)
            if not self.all_keys:
                for key in gone:
                    self._pending.pop(key, None)
        if gone and not self.all_keys:
            self._owner._sub_remove(self, gone)

    def keys(self) -> frozenset[str]:
        with self._cond:
            return frozenset(self._keys)

    @property
    def pending(self) -> int:
        """Number of keys with a value waiting for ``wait`` (bounded by the number of keys)."""
        return len(self._pending)

    def wait(self, timeout: float | None = None) -> dict[str, TickRecord]:
        """Block until at least one key changed (or ``timeout`` -> ``{}``; a closed
        subscription returns ``{}`` at once); return and clear the latest-per-key values."""
        with self._cond:
            if not self._pending and not self.closed:
                self._cond.wait_for(lambda: self._pending or self.closed, timeout)
            taken = self._pending
            if not taken:
                return {}
            self._pending = {}
        out: dict[str, TickRecord] = {}
        for key, (_seq, item) in taken.items():
            if type(item) is bytes:
                try:
                    out[key] = TickRecord.from_bytes(item)
                except ValueError as exc:
                    self.decode_errors += 1
                    log.warning("undecodable tick record for %s dropped: %s", key, exc)
            else:
                out[key] = item  # type: ignore[assignment]
        return out

    def take(self) -> dict[str, TickRecord]:
        """What is pending now (latest per key), without blocking: for ``on_ready``."""
        return self.wait(0)

    def close(self) -> None:
        if self.closed:
            return
        with self._cond:
            self.closed = True
            self._pending.clear()
            self._cond.notify_all()
        self._owner._sub_close(self)

    def __enter__(self) -> TickSubscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _offer(self, items: dict[str, Pending], superseded: int = 0) -> None:
        """Store newer values (called by the store's publisher or listener thread)."""
        stale = 0
        with self._cond:
            if self.closed:
                return
            pending = self._pending
            keys = self._keys
            all_keys = self.all_keys
            was_empty = not pending
            for key, entry in items.items():
                if not all_keys and key not in keys:
                    continue  # removed while the message was in flight
                old = pending.get(key)
                if old is None:
                    pending[key] = entry
                elif entry[0] >= old[0]:
                    pending[key] = entry
                    superseded += 1
                else:
                    stale += 1
            self.dropped_superseded += superseded
            self.dropped_stale += stale
            ready = was_empty and pending
            if ready:
                self._cond.notify_all()
        if ready and self._on_ready is not None:
            try:
                self._on_ready(self)
            except Exception:
                log.exception("tick subscription on_ready callback failed")
