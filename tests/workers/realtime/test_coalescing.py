"""workers.realtime.coalescing: a subscription holds the latest record per key, never a backlog
(driven through the in-memory tick store; the Redis side is in test_redis_tick_store.py)."""

from __future__ import annotations

import pytest

from workers.realtime.tick_store import MemoryTickStore

from .kit import (
    record,
)


def test_a_memory_subscription_nobody_drains_stays_bounded_by_its_keys() -> None:
    store = MemoryTickStore()
    keys = [f"NSE_FNO:{i}" for i in range(10)]
    sub = store.subscribe(keys)
    batch = [record(keys[i % 10], i // 10 + 1, float(i)) for i in range(100_000)]
    for start in range(0, len(batch), 1000):
        store.publish(batch[start : start + 1000])
    assert sub.pending == 10
    assert sub.dropped_superseded == 100_000 - 10
    got = sub.wait(0)
    assert {r.seq for r in got.values()} == {10_000}


def test_an_older_record_does_not_replace_a_newer_pending_one() -> None:
    store = MemoryTickStore()
    sub = store.subscribe(["A:1"])
    store.publish([record("A:1", 5, 5.0)])
    store.publish([record("A:1", 4, 4.0)])
    assert sub.wait(1.0)["A:1"].seq == 5 and sub.dropped_stale == 1


def test_on_ready_is_called_once_until_the_consumer_takes_and_a_failure_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryTickStore()
    calls: list[int] = []

    def ready(sub: object) -> None:
        calls.append(1)
        raise RuntimeError("consumer bug")

    sub = store.subscribe(["NSE_FNO:1"], on_ready=ready)
    store.publish([record("NSE_FNO:1", 1, 10.0)])
    store.publish([record("NSE_FNO:1", 2, 11.0)])  # still pending: coalesced, no new call
    assert len(calls) == 1
    assert sub.take()["NSE_FNO:1"].seq == 2
    assert "on_ready callback failed" in caplog.text
