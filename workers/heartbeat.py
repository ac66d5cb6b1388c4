"""Worker heartbeats: each long-running component says it is alive, /ready reads them.

A heartbeat is a small record each long-running component rewrites every few seconds with a TTL:
``hb:{name}`` = {"name", "pid", "host", "state", "at" (epoch s), "ttl", **fields}. A record that
expired is gone, so "present" already means "alive recently"; /ready also checks ``at`` against
``ttl`` (clock skew between machines, or a store that does not expire keys).

Where the records live: Redis in split mode (RedisKeyValueStore); in embedded mode the
``Setting`` table (DbKeyValueStore), so a web process started next to ``run_trader`` reads the
trader's heartbeats and feed health without any Redis. Both stores are in
workers/realtime/kv_store.py, the names in workers/realtime/keys.py.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from workers.realtime.keys import HEARTBEAT_PREFIX, heartbeat_key
from workers.realtime.redis_client import Outage, StoreRefused, StoreUnavailable

if TYPE_CHECKING:
    from workers.realtime.kv_store import KeyValueStore

log = logging.getLogger(__name__)

DEFAULT_TTL = 15.0
RESERVED_FIELDS = frozenset({"name", "pid", "host", "state", "at", "ttl"})


class Heartbeat:
    """Writes one component's heartbeat. ``beat()`` is cheap enough to call every few seconds."""

    def __init__(
        self,
        kv: KeyValueStore,
        name: str,
        *,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not name or ":" in name:
            raise ValueError(f"heartbeat name must be non-empty without ':', got {name!r}")
        if ttl <= 0:
            raise ValueError(f"heartbeat ttl must be positive, got {ttl!r}")
        self.kv = kv
        self.name = name
        self.ttl = ttl
        self.clock = clock
        self._pid = os.getpid()
        self._host = socket.gethostname()
        self._outage = Outage(log, f"{name} heartbeat")

    @property
    def key(self) -> str:
        return heartbeat_key(self.name)

    def beat(self, state: str, **fields: Any) -> dict[str, Any]:
        """Write the record (TTL ``ttl``) and return it. ``fields`` are JSON values such as
        connected, last_tick_at, counts, last_error; they may not reuse a reserved name. A
        Redis that refuses this process, or cannot be reached, is not an error here: the
        refusal stops the process; an outage is logged on entry and on recovery."""
        clash = RESERVED_FIELDS.intersection(fields)
        if clash:
            raise ValueError(f"heartbeat fields may not override {sorted(clash)}")
        record: dict[str, Any] = {
            "name": self.name,
            "pid": self._pid,
            "host": self._host,
            "state": state,
            "at": self.clock(),
            "ttl": self.ttl,
            **fields,
        }
        try:
            self.kv.put(self.key, record, ttl=self.ttl)
        except StoreRefused:
            # Redis refused this process: the refusal stops it, said once where it was met
            # (its listeners); a heartbeat has nothing to add, least of all a traceback.
            pass
        except StoreUnavailable as exc:
            # An outage is expected: said once on entry and once on recovery, not every beat
            # (the record is simply absent meanwhile, which /ready reads as not alive).
            self._outage.failed(exc)
        else:
            self._outage.recovered()
        return record

    def clear(self) -> None:
        """Remove the record: a component that stopped cleanly is absent, not stale."""
        self.kv.delete(self.key)


def read_heartbeats(kv: KeyValueStore) -> dict[str, dict[str, Any]]:
    """Every heartbeat present (not expired), by component name."""
    return {
        name.removeprefix(HEARTBEAT_PREFIX): record
        for name, record in kv.get_prefix(HEARTBEAT_PREFIX).items()
    }


def heartbeat_age(record: dict[str, Any], now: float) -> float | None:
    """Seconds since the beat, or None when ``at`` is missing or not a number."""
    at = record.get("at")
    if isinstance(at, bool) or not isinstance(at, int | float):
        return None
    return now - at


def is_fresh(record: dict[str, Any], now: float) -> bool:
    """True when the beat is younger than its own ``ttl`` (DEFAULT_TTL when absent)."""
    age = heartbeat_age(record, now)
    ttl = record.get("ttl", DEFAULT_TTL)
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        ttl = DEFAULT_TTL
    return age is not None and age <= ttl
