"""workers.realtime.event_bus: the in-memory and Redis event buses."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.support.waiting import wait_until
from workers.realtime.event_bus import MemoryEventBus, RedisEventBus


def test_memory_events_are_fifo_per_topic_and_bounded() -> None:
    bus = MemoryEventBus()
    sub = bus.subscribe(["candle", "health"], maxlen=3)
    other = bus.subscribe(["health"])
    for i in range(5):
        bus.publish("candle", {"i": i})
    bus.publish("unrelated", {"x": 1})
    assert sub.dropped == 2
    assert [sub.get(0) for _ in range(3)] == [("candle", {"i": i}) for i in (2, 3, 4)]
    assert sub.get(0.01) is None and other.get(0) is None
    payload = {"state": "stale"}
    bus.publish("health", payload)
    got = other.get(1.0)
    assert got == ("health", payload) and got[1] is not payload  # a copy, as over Redis
    with pytest.raises(ValueError, match="not JSON"):
        bus.publish("health", {"at": datetime.now(UTC)})
    sub.close()
    bus.publish("candle", {"i": 9})
    assert sub.get(0) is None
    bus.close()


def test_redis_events_cross_the_bus(redis_url: str, prefix: str) -> None:
    bus = RedisEventBus(redis_url, prefix=prefix)
    sub = bus.subscribe(["candle"])  # returns once Redis confirmed the subscription
    for n in range(1, 4):
        bus.publish("candle", {"n": n})
    assert [sub.get(5) for _ in range(3)] == [("candle", {"n": n}) for n in (1, 2, 3)]
    bus.publish("other", {"n": 9})
    assert sub.get(0.2) is None
    bus.close()


def test_a_redis_event_subscription_is_bounded(redis_url: str, prefix: str) -> None:
    bus = RedisEventBus(redis_url, prefix=prefix)
    sub = bus.subscribe(["e"], maxlen=2)
    for n in range(5):
        bus.publish("e", {"n": n})
    wait_until(lambda: sub.dropped == 3, "three events dropped")
    assert [sub.get(1), sub.get(1)] == [("e", {"n": 3}), ("e", {"n": 4})]
    bus.close()
