"""The tick store interface, and its in-process implementation (embedded mode: one process).

A tick store keeps the latest ``TickRecord`` per instrument key and hands published records
to coalescing subscriptions (``coalescing.TickSubscription``). The feed hub ``publish``es; exit
engine, PnL monitor and dashboard subscribe to the keys they care about. The Redis
implementation (split mode) is ``redis_tick_store.RedisTickStore``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from workers.realtime.coalescing import Pending, TickSubscription
from workers.realtime.record import TickRecord

__all__ = ["MemoryTickStore", "TickStore"]


class TickStore(Protocol):
    def publish(self, records: Sequence[TickRecord]) -> None:
        """Store the latest per key and notify subscribers of those keys."""
        ...

    def get(self, key: str) -> TickRecord | None: ...

    def get_many(self, keys: Iterable[str]) -> dict[str, TickRecord]: ...

    def subscribe(
        self,
        keys: Iterable[str] = (),
        *,
        all_keys: bool = False,
        on_ready: Callable[[TickSubscription], object] | None = None,
    ) -> TickSubscription: ...

    def close(self) -> None: ...


class MemoryTickStore:
    """In-process TickStore (embedded mode): a dict plus direct hand-off to subscriptions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, TickRecord] = {}
        self._routes: dict[str, tuple[TickSubscription, ...]] = {}
        self._all: tuple[TickSubscription, ...] = ()

    def publish(self, records: Sequence[TickRecord]) -> None:
        if not records:
            return
        batches: dict[TickSubscription, dict[str, Pending]] = {}
        superseded: dict[TickSubscription, int] = {}
        with self._lock:
            latest = self._latest
            routes = self._routes
            all_subs = self._all
            for record in records:
                key = record.key
                latest[key] = record
                subs = routes.get(key, ())
                if all_subs:
                    subs = subs + all_subs
                for sub in subs:
                    batch = batches.get(sub)
                    if batch is None:
                        batch = batches[sub] = {}
                    if key in batch:
                        superseded[sub] = superseded.get(sub, 0) + 1
                    batch[key] = (record.seq, record)
            # Offered under the store lock so a subscription added concurrently cannot get
            # its initial value after a newer published one.
            for sub, batch in batches.items():
                sub._offer(batch, superseded.get(sub, 0))

    def get(self, key: str) -> TickRecord | None:
        return self._latest.get(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, TickRecord]:
        latest = self._latest
        return {key: latest[key] for key in keys if key in latest}

    def subscribe(
        self,
        keys: Iterable[str] = (),
        *,
        all_keys: bool = False,
        on_ready: Callable[[TickSubscription], object] | None = None,
    ) -> TickSubscription:
        sub = TickSubscription(self, all_keys=all_keys, on_ready=on_ready)
        if all_keys:
            with self._lock:
                self._all = (*self._all, sub)
                sub._offer({key: (r.seq, r) for key, r in self._latest.items()})
        sub.add(keys)
        return sub

    def close(self) -> None:
        with self._lock:
            subs = {s for subs in self._routes.values() for s in subs} | set(self._all)
        for sub in subs:
            sub.close()

    def _sub_add(self, sub: TickSubscription, keys: list[str]) -> None:
        with self._lock:
            current = {}
            for key in keys:
                self._routes[key] = (*self._routes.get(key, ()), sub)
                record = self._latest.get(key)
                if record is not None:
                    current[key] = (record.seq, record)
            if current:
                sub._offer(current)

    def _sub_remove(self, sub: TickSubscription, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                subs = tuple(s for s in self._routes.get(key, ()) if s is not sub)
                if subs:
                    self._routes[key] = subs
                else:
                    self._routes.pop(key, None)

    def _sub_close(self, sub: TickSubscription) -> None:
        if not sub.all_keys:
            self._sub_remove(sub, list(sub._keys))
            return
        with self._lock:
            self._all = tuple(s for s in self._all if s is not sub)
