"""What a process gets: its three realtime services (tick store, event bus, key-value
store), built together from settings.

``realtime_from_settings()`` builds the Redis implementations when ``settings.REDIS_URL`` is
set (split mode: the feed hub writes, every other process reads) and the in-memory ones
otherwise (embedded mode: one process, no Redis).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from workers.realtime.event_bus import EventBus, MemoryEventBus, RedisEventBus
from workers.realtime.keys import DEFAULT_PREFIX
from workers.realtime.kv_store import KeyValueStore, MemoryKeyValueStore, RedisKeyValueStore
from workers.realtime.redis_client import client_for
from workers.realtime.redis_tick_store import RedisTickStore
from workers.realtime.tick_store import MemoryTickStore, TickStore

log = logging.getLogger(__name__)

__all__ = ["Realtime", "realtime_from_settings", "redis_realtime"]


@dataclass
class Realtime:
    """The three realtime services of one process, built together."""

    ticks: TickStore
    events: EventBus
    kv: KeyValueStore
    redis_url: str | None = None
    prefix: str = DEFAULT_PREFIX  # of every Redis key (the Redis implementations)

    def close(self) -> None:
        for service in (self.ticks, self.events, self.kv):
            closer = getattr(service, "close", None)
            if closer is not None:
                try:
                    closer()
                except Exception:
                    log.exception("closing %s failed", type(service).__name__)


def realtime_from_settings(*, prefix: str = DEFAULT_PREFIX) -> Realtime:
    """Redis implementations when ``settings.REDIS_URL`` is set (split mode), in-memory ones
    otherwise (embedded mode: every component must then live in this process)."""
    from django.conf import settings

    url = getattr(settings, "REDIS_URL", None) or None
    if not url:
        return Realtime(MemoryTickStore(), MemoryEventBus(), MemoryKeyValueStore(), None)
    return redis_realtime(url, prefix=prefix)


def redis_realtime(url: str, *, prefix: str = DEFAULT_PREFIX) -> Realtime:
    """The Redis implementations on ``url`` (what another process of the same deployment, the
    exit engine's route process, builds from its parent's URL and prefix)."""
    client = client_for(url)
    return Realtime(
        RedisTickStore(client, prefix=prefix),
        RedisEventBus(client, prefix=prefix),
        RedisKeyValueStore(client, prefix=prefix),
        url,
        prefix,
    )
