"""workers.heartbeat: heartbeats written to and read from a key-value store (memory, the
database of embedded mode, Redis). The stores themselves are tested in
tests/workers/realtime/test_kv_store.py."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

from tests.support.waiting import wait_until
from workers.heartbeat import Heartbeat, heartbeat_age, is_fresh, read_heartbeats
from workers.realtime.kv_store import DbKeyValueStore, MemoryKeyValueStore, RedisKeyValueStore

from .realtime.kit import Clock


def test_a_beat_writes_name_pid_host_state_time_ttl_and_the_fields():
    kv = MemoryKeyValueStore()
    record = Heartbeat(kv, "pnl", ttl=15.0, clock=lambda: 1234.5).beat(
        "running", positions=2, last_error=None
    )

    assert record == {
        "name": "pnl",
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "state": "running",
        "at": 1234.5,
        "ttl": 15.0,
        "positions": 2,
        "last_error": None,
    }
    assert kv.get("hb:pnl") == record


def test_a_field_may_not_override_a_reserved_name():
    with pytest.raises(ValueError, match="at"):
        Heartbeat(MemoryKeyValueStore(), "pnl").beat("running", at=0.0)


@pytest.mark.parametrize("name", ["", "a:b"])
def test_a_heartbeat_name_is_non_empty_without_a_colon(name):
    with pytest.raises(ValueError, match="name"):
        Heartbeat(MemoryKeyValueStore(), name)


def test_clear_removes_the_record_so_a_clean_stop_is_absent_not_stale():
    kv = MemoryKeyValueStore()
    beat = Heartbeat(kv, "pnl")
    beat.beat("running")
    beat.clear()
    assert read_heartbeats(kv) == {}


def test_read_heartbeats_returns_every_heartbeat_by_name_and_nothing_else():
    kv = MemoryKeyValueStore()
    Heartbeat(kv, "pnl").beat("running")
    Heartbeat(kv, "feed_hub").beat("connecting", connected=0)
    kv.put("health:feed", {"state": "healthy"})

    beats = read_heartbeats(kv)

    assert sorted(beats) == ["feed_hub", "pnl"]
    assert beats["feed_hub"]["connected"] == 0


def test_a_beat_is_fresh_until_its_own_ttl_has_passed():
    record = {"at": 100.0, "ttl": 15.0}
    assert is_fresh(record, 115.0)
    assert not is_fresh(record, 115.1)
    assert heartbeat_age(record, 110.0) == 10.0


def test_a_beat_without_a_usable_time_is_never_fresh_and_a_missing_ttl_means_15_s():
    assert not is_fresh({"at": "yesterday"}, 100.0)
    assert heartbeat_age({}, 100.0) is None
    assert is_fresh({"at": 100.0}, 114.0)
    assert not is_fresh({"at": 100.0, "ttl": "x"}, 116.0)


@pytest.mark.django_db
def test_a_heartbeat_in_the_database_expires_after_its_ttl():
    clock = Clock()
    db_kv = DbKeyValueStore(clock=clock)
    Heartbeat(db_kv, "pnl", ttl=15.0, clock=clock).beat("running")
    assert list(read_heartbeats(db_kv)) == ["pnl"]
    clock.now += 16
    assert read_heartbeats(db_kv) == {}


def test_a_heartbeat_in_redis_carries_its_ttl_and_disappears_when_it_expires(redis_client):
    prefix = f"test-hb-{uuid.uuid4().hex[:8]}:"
    kv = RedisKeyValueStore(redis_client, prefix=prefix)
    Heartbeat(kv, "pnl", ttl=1.0).beat("running", positions=1)

    assert read_heartbeats(kv)["pnl"]["positions"] == 1
    remaining = redis_client.pttl(f"{prefix}kv:hb:pnl")
    assert 0 < remaining <= 1000
    # Redis expires it by itself; poll with a generous bound (no timing assertion).
    wait_until(lambda: read_heartbeats(kv) == {}, "Redis to expire the heartbeat")
