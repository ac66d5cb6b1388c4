"""workers.realtime.services: a process's three realtime services, built from settings."""

from __future__ import annotations

import uuid

from workers.realtime.event_bus import MemoryEventBus, RedisEventBus
from workers.realtime.kv_store import (
    MemoryKeyValueStore,
    RedisKeyValueStore,
)
from workers.realtime.redis_tick_store import RedisTickStore
from workers.realtime.services import Realtime, realtime_from_settings
from workers.realtime.tick_store import MemoryTickStore


def test_realtime_from_settings_is_in_memory_without_redis_url(settings: object) -> None:
    settings.REDIS_URL = None  # type: ignore[attr-defined]
    realtime = realtime_from_settings()
    assert isinstance(realtime, Realtime) and realtime.redis_url is None
    assert isinstance(realtime.ticks, MemoryTickStore)
    assert isinstance(realtime.events, MemoryEventBus)
    assert isinstance(realtime.kv, MemoryKeyValueStore)
    realtime.close()


def test_realtime_from_settings_uses_redis_when_configured(
    settings: object, redis_url: str
) -> None:
    settings.REDIS_URL = redis_url  # type: ignore[attr-defined]
    realtime = realtime_from_settings(prefix=f"test-ticks-{uuid.uuid4().hex[:10]}:")
    assert realtime.redis_url == redis_url
    assert isinstance(realtime.ticks, RedisTickStore)
    assert isinstance(realtime.events, RedisEventBus)
    assert isinstance(realtime.kv, RedisKeyValueStore)
    realtime.kv.put("x", {"a": 1}, ttl=5)
    assert realtime.kv.get("x") == {"a": 1}
    realtime.kv.delete("x")
    realtime.close()
