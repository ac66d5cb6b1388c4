"""workers.realtime.tick_store: the in-memory tick store."""

from __future__ import annotations

import threading

from workers.realtime.record import TickRecord
from workers.realtime.tick_store import MemoryTickStore

from .kit import (
    record,
)


def test_memory_store_keeps_the_latest_and_delivers_current_values_on_subscribe() -> None:
    store = MemoryTickStore()
    store.publish([record("A:1", 1, 10.0), record("A:2", 1, 20.0), record("A:1", 2, 11.0)])
    assert store.get("A:1").ltp == 11.0 and store.get("B:1") is None
    assert set(store.get_many(["A:1", "A:2", "B:1"])) == {"A:1", "A:2"}
    sub = store.subscribe(["A:1"])
    assert sub.wait(1.0)["A:1"].seq == 2
    assert sub.wait(0.01) == {}
    store.publish([record("A:2", 2, 21.0), record("A:1", 3, 12.0)])
    assert {k: r.seq for k, r in sub.wait(1.0).items()} == {"A:1": 3}


def test_remove_add_all_keys_and_close() -> None:
    store = MemoryTickStore()
    store.publish([record("A:1", 1, 1.0)])
    everything = store.subscribe(all_keys=True)
    assert set(everything.wait(1.0)) == {"A:1"}
    sub = store.subscribe(["A:1", "A:2"])
    sub.wait(1.0)
    sub.remove(["A:1"])
    assert sub.keys() == frozenset({"A:2"})
    store.publish([record("A:1", 2, 2.0), record("A:2", 1, 3.0), record("A:3", 1, 4.0)])
    assert set(sub.wait(1.0)) == {"A:2"}
    assert set(everything.wait(1.0)) == {"A:1", "A:2", "A:3"}
    sub.add(["A:1"])
    assert set(sub.wait(1.0)) == {"A:1"}
    waiter_result: list[object] = []
    waiter = threading.Thread(target=lambda: waiter_result.append(sub.wait(30)))
    waiter.start()
    sub.close()
    waiter.join(10)
    assert waiter_result == [{}]
    store.publish([record("A:2", 2, 5.0)])  # a closed subscription is no longer fed
    assert sub.pending == 0
    store.close()


def test_on_ready_runs_on_the_publishing_thread_when_something_becomes_pending() -> None:
    store = MemoryTickStore()
    seen: list[tuple[str, dict[str, TickRecord]]] = []
    sub = store.subscribe(
        ["NSE_FNO:1"],
        on_ready=lambda s: seen.append((threading.current_thread().name, s.take())),
    )
    store.publish([record("NSE_FNO:1", 1, 10.0), record("NSE_FNO:2", 1, 5.0)])
    store.publish([record("NSE_FNO:1", 2, 11.0)])
    assert [(name, {k: r.seq for k, r in got.items()}) for name, got in seen] == [
        ("MainThread", {"NSE_FNO:1": 1}),
        ("MainThread", {"NSE_FNO:1": 2}),
    ]
    assert sub.take() == {}
