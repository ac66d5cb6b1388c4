"""workers.heartbeat: heartbeats, the embedded-mode database key-value store, kv_from_settings."""

from __future__ import annotations

import os
import socket
import time
import uuid

import pytest

from trading.models import Setting
from workers.heartbeat import (
    DbKeyValueStore,
    Heartbeat,
    heartbeat_age,
    is_fresh,
    kv_from_settings,
    read_heartbeats,
)
from workers.ticks import MemoryKeyValueStore, RedisKeyValueStore


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db_kv(clock: Clock) -> DbKeyValueStore:
    return DbKeyValueStore(clock=clock)


# -- Heartbeat ----------------------------------------------------------------------------------


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


# -- DbKeyValueStore ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_value_put_in_the_database_reads_back(db_kv):
    db_kv.put("health:feed", {"state": "healthy", "at": 1.5})
    assert db_kv.get("health:feed") == {"state": "healthy", "at": 1.5}
    assert Setting.objects.filter(key="kv:health:feed").exists()


@pytest.mark.django_db
def test_a_value_reads_as_absent_once_its_ttl_has_passed(db_kv, clock):
    db_kv.put("hb:pnl", {"state": "running"}, ttl=15.0)
    clock.now += 14.9
    assert db_kv.get("hb:pnl") == {"state": "running"}
    assert "hb:pnl" in db_kv.get_prefix("hb:")
    clock.now += 0.1
    assert db_kv.get("hb:pnl") is None
    assert db_kv.get_prefix("hb:") == {}


@pytest.mark.django_db
def test_a_heartbeat_in_the_database_expires_after_its_ttl(db_kv, clock):
    Heartbeat(db_kv, "pnl", ttl=15.0, clock=clock).beat("running")
    assert list(read_heartbeats(db_kv)) == ["pnl"]
    clock.now += 16
    assert read_heartbeats(db_kv) == {}


@pytest.mark.django_db
def test_rewriting_a_value_renews_its_ttl(db_kv, clock):
    db_kv.put("hb:pnl", {"n": 1}, ttl=10.0)
    clock.now += 8
    db_kv.put("hb:pnl", {"n": 2}, ttl=10.0)
    clock.now += 8
    assert db_kv.get("hb:pnl") == {"n": 2}
    assert Setting.objects.filter(key="kv:hb:pnl").count() == 1


@pytest.mark.django_db
def test_a_value_without_ttl_never_expires(db_kv, clock):
    db_kv.put("pnl:1", {"gross": "10.00"})
    clock.now += 10 * 365 * 86400
    assert db_kv.get("pnl:1") == {"gross": "10.00"}
    assert db_kv.purge_expired() == 0


@pytest.mark.django_db
def test_get_prefix_matches_the_prefix_exactly_and_skips_lists(db_kv):
    db_kv.put("hb:a", {"n": 1})
    db_kv.put("HB:b", {"n": 2})
    db_kv.put("hbx", {"n": 3})
    db_kv.push_capped("hb:list", {"n": 4}, 5)
    Setting.put("hb:not-kv", {"n": 5})

    assert db_kv.get_prefix("hb:") == {"hb:a": {"n": 1}}


@pytest.mark.django_db
def test_delete_removes_a_value_and_a_missing_name_reads_as_none(db_kv):
    db_kv.put("x", {"n": 1})
    db_kv.delete("x")
    db_kv.delete("never-there")
    assert db_kv.get("x") is None


@pytest.mark.django_db
def test_push_capped_keeps_the_last_maxlen_items_oldest_first(db_kv):
    for n in range(5):
        db_kv.push_capped("candles:IDX_I:13:60", {"n": n}, 3)
    assert db_kv.get_list("candles:IDX_I:13:60") == [{"n": 2}, {"n": 3}, {"n": 4}]
    assert db_kv.get_list("nothing") == []


@pytest.mark.django_db
def test_a_name_is_either_a_value_or_a_list(db_kv):
    db_kv.put("v", {"n": 1})
    db_kv.push_capped("l", {"n": 1}, 3)
    with pytest.raises(TypeError, match="list"):
        db_kv.get("l")
    with pytest.raises(TypeError, match="value"):
        db_kv.get_list("v")
    with pytest.raises(TypeError, match="value"):
        db_kv.push_capped("v", {"n": 2}, 3)


@pytest.mark.django_db
def test_purge_deletes_only_expired_values(db_kv, clock):
    db_kv.put("old", {"n": 1}, ttl=5)
    db_kv.put("young", {"n": 2}, ttl=50)
    db_kv.put("forever", {"n": 3})
    db_kv.push_capped("list", {"n": 4}, 3)
    clock.now += 10

    assert db_kv.purge_expired() == 1
    assert set(Setting.objects.values_list("key", flat=True)) == {
        "kv:young",
        "kv:forever",
        "kv:list",
    }


@pytest.mark.django_db
def test_put_sweeps_expired_rows_at_most_once_a_minute(db_kv, clock):
    db_kv.put("old", {"n": 1}, ttl=1)  # first put sweeps (nothing expired yet)
    clock.now += 2
    db_kv.put("other", {"n": 2})  # within the minute: no sweep
    assert Setting.objects.filter(key="kv:old").exists()
    clock.now += 60
    db_kv.put("other", {"n": 3})
    assert not Setting.objects.filter(key="kv:old").exists()


@pytest.mark.django_db
def test_a_name_too_long_for_the_setting_key_is_refused(db_kv):
    with pytest.raises(ValueError, match="kv name"):
        db_kv.put("x" * 200, {"n": 1})


@pytest.mark.parametrize("ttl", [0, -1])
def test_a_ttl_must_be_positive(db_kv, ttl):
    with pytest.raises(ValueError, match="ttl"):
        db_kv.put("x", {}, ttl=ttl)


# -- Redis --------------------------------------------------------------------------------------


def test_a_heartbeat_in_redis_carries_its_ttl_and_disappears_when_it_expires(redis_client):
    prefix = f"test-hb-{uuid.uuid4().hex[:8]}:"
    kv = RedisKeyValueStore(redis_client, prefix=prefix)
    Heartbeat(kv, "pnl", ttl=1.0).beat("running", positions=1)

    assert read_heartbeats(kv)["pnl"]["positions"] == 1
    remaining = redis_client.pttl(f"{prefix}kv:hb:pnl")
    assert 0 < remaining <= 1000
    # Redis expires it by itself; poll with a generous deadline (no timing assertion).
    deadline = time.monotonic() + 10
    while read_heartbeats(kv) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert read_heartbeats(kv) == {}


# -- kv_from_settings ---------------------------------------------------------------------------


def test_without_redis_url_the_store_is_the_database(settings):
    settings.REDIS_URL = None
    assert isinstance(kv_from_settings(), DbKeyValueStore)


def test_with_redis_url_the_store_is_redis(settings, redis_url, redis_client):
    settings.REDIS_URL = redis_url
    kv = kv_from_settings()
    assert isinstance(kv, RedisKeyValueStore)
    kv.put("hb:probe", {"state": "running"}, ttl=5)
    assert kv.get("hb:probe") == {"state": "running"}
    kv.delete("hb:probe")


@pytest.mark.django_db
def test_db_replace_list_keeps_exactly_the_last_maxlen_values(db_kv: DbKeyValueStore) -> None:
    db_kv.push_capped("candles", {"i": -1}, 10)
    db_kv.replace_list("candles", [{"i": i} for i in range(5)], 3)
    assert db_kv.get_list("candles") == [{"i": 2}, {"i": 3}, {"i": 4}]
    db_kv.push_capped("candles", {"i": 5}, 3)
    assert db_kv.get_list("candles") == [{"i": 3}, {"i": 4}, {"i": 5}]
