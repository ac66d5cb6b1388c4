"""workers.realtime.kv_store: the in-memory, Redis and database key-value stores, and
kv_from_settings."""

from __future__ import annotations

import pytest

from scripts.services import free_port
from tests.support.waiting import wait_until
from trading.models import Setting
from workers.realtime.kv_store import (
    DbKeyValueStore,
    MemoryKeyValueStore,
    RedisKeyValueStore,
    kv_from_settings,
)
from workers.realtime.redis_client import StoreUnavailable

from .kit import Clock


def test_memory_kv_values_expire_on_read() -> None:
    clock = Clock(1000.0)
    kv = MemoryKeyValueStore(clock=clock)
    kv.put("health:feed", {"state": "healthy"}, ttl=10)
    kv.put("hb:hub", {"state": "running"})
    kv.put("hb:exit", {"state": "running"}, ttl=5)
    assert kv.get("health:feed") == {"state": "healthy"}
    assert set(kv.get_prefix("hb:")) == {"hb:hub", "hb:exit"}
    clock.now += 5
    assert set(kv.get_prefix("hb:")) == {"hb:hub"}
    clock.now += 5
    assert kv.get("health:feed") is None and kv.get("hb:hub") == {"state": "running"}
    kv.delete("hb:hub")
    assert kv.get("hb:hub") is None
    with pytest.raises(ValueError, match="ttl"):
        kv.put("x", {}, ttl=0)


def test_memory_kv_capped_lists_keep_the_newest() -> None:
    kv = MemoryKeyValueStore()
    for i in range(5):
        kv.push_capped("candles:IDX_I:13:60", {"i": i}, maxlen=3)
    assert kv.get_list("candles:IDX_I:13:60") == [{"i": 2}, {"i": 3}, {"i": 4}]
    assert kv.get_list("nothing") == []
    value = {"a": [1]}
    kv.put("v", value)
    value["a"].append(2)
    assert kv.get("v") == {"a": [1]}  # stored as JSON, not by reference


def test_redis_kv_put_get_prefix_ttl_and_lists(redis_url: str, prefix: str) -> None:
    import redis

    kv = RedisKeyValueStore(redis_url, prefix=prefix)
    kv.put("hb:hub", {"state": "running", "n": 1})
    kv.put("hb:exit", {"state": "running"}, ttl=30)
    kv.put("hb*odd", {"glob": True})
    kv.put("health:feed", {"state": "stale"}, ttl=0.05)
    assert kv.get("hb:hub") == {"state": "running", "n": 1}
    assert set(kv.get_prefix("hb:")) == {"hb:hub", "hb:exit"}
    assert set(kv.get_prefix("hb*")) == {"hb*odd"}  # glob characters are literal
    ttl = redis.Redis.from_url(redis_url).pttl(f"{prefix}kv:hb:exit")
    assert 0 < ttl <= 30_000
    wait_until(lambda: kv.get("health:feed") is None, "health:feed to expire")
    kv.delete("hb:hub")
    assert kv.get("hb:hub") is None
    for i in range(5):
        kv.push_capped("candles", {"i": i}, maxlen=3)
    assert kv.get_list("candles") == [{"i": 2}, {"i": 3}, {"i": 4}]
    assert "candles" not in kv.get_prefix("")  # lists are not values
    kv.close()


def test_redis_kv_raises_store_unavailable_when_redis_is_unreachable() -> None:
    kv = RedisKeyValueStore(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(StoreUnavailable):
        kv.put("x", {"a": 1})
    with pytest.raises(StoreUnavailable):
        kv.get_prefix("x")


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_replace_list_keeps_exactly_the_last_maxlen_values(
    store: str, redis_url: str, prefix: str
) -> None:
    kv = (
        MemoryKeyValueStore() if store == "memory" else RedisKeyValueStore(redis_url, prefix=prefix)
    )
    kv.push_capped("candles", {"i": -1}, 10)
    kv.replace_list("candles", [{"i": i} for i in range(5)], 3)
    assert kv.get_list("candles") == [{"i": 2}, {"i": 3}, {"i": 4}]
    kv.push_capped("candles", {"i": 5}, 3)
    assert kv.get_list("candles") == [{"i": 3}, {"i": 4}, {"i": 5}]
    kv.replace_list("candles", [], 3)
    assert kv.get_list("candles") == []
    kv.close()


def check_put_many(kv: object) -> None:
    kv.put("pnl:1", {"gross": "1"})
    kv.put_many({f"pnl:{i}": {"gross": str(i * 10)} for i in range(1, 4)})
    kv.put_many({})
    values = [kv.get(f"pnl:{i}") for i in range(1, 4)]
    assert values == [{"gross": "10"}, {"gross": "20"}, {"gross": "30"}]
    with pytest.raises(ValueError):
        kv.put_many({"pnl:9": {"bad": float("nan")}})


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_put_many_writes_every_value_and_refuses_what_json_cannot_carry(
    store: str, redis_url: str, prefix: str
) -> None:
    kv = (
        MemoryKeyValueStore() if store == "memory" else RedisKeyValueStore(redis_url, prefix=prefix)
    )
    check_put_many(kv)
    kv.close()


# -- DbKeyValueStore (embedded mode) --------------------------------------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db_kv(clock: Clock) -> DbKeyValueStore:
    return DbKeyValueStore(clock=clock)


@pytest.mark.django_db
def test_put_many_in_the_database_writes_every_value(db_kv):
    check_put_many(db_kv)


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


@pytest.mark.django_db
def test_db_replace_list_keeps_exactly_the_last_maxlen_values(db_kv: DbKeyValueStore) -> None:
    db_kv.push_capped("candles", {"i": -1}, 10)
    db_kv.replace_list("candles", [{"i": i} for i in range(5)], 3)
    assert db_kv.get_list("candles") == [{"i": 2}, {"i": 3}, {"i": 4}]
    db_kv.push_capped("candles", {"i": 5}, 3)
    assert db_kv.get_list("candles") == [{"i": 3}, {"i": 4}, {"i": 5}]


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
