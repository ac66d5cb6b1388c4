"""Fixtures for the realtime package's Redis tests: a key prefix of the test's own, a store."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from workers.realtime.redis_tick_store import RedisTickStore


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    import redis

    value = f"test-ticks-{uuid.uuid4().hex[:10]}:"
    yield value
    client = redis.Redis.from_url(redis_url)
    names = list(client.scan_iter(match=value + "*", count=1000))
    if names:
        client.delete(*names)
    client.close()


@pytest.fixture
def tick_store(redis_url: str, prefix: str) -> Iterator[RedisTickStore]:
    store = RedisTickStore(redis_url, prefix=prefix)
    yield store
    store.close()
