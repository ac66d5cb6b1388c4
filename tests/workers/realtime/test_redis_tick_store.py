"""workers.realtime.redis_tick_store: the tick store over Redis.

Redis tests use TEST_REDIS_URL with a unique key prefix per test (nothing else in the database
is touched); the connection-loss and restart tests run a private redis-server so killing its
clients cannot disturb anything else.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from scripts.services import free_port
from tests.support.redis import PrivateRedis  # the private_redis fixture: a server to kill
from tests.support.waiting import wait_until
from workers.realtime.record import TickRecord, encode_depth
from workers.realtime.redis_client import StoreUnavailable
from workers.realtime.redis_tick_store import RedisTickStore

from .kit import REPO, record, wait_for


def test_redis_store_round_trips_records_and_values_are_the_binary_layout(
    tick_store: RedisTickStore, redis_url: str, prefix: str
) -> None:
    import redis

    depth = tuple((1, 2, 3, 4, 99.5, 100.5) for _ in range(5))
    tick_store.publish(
        [record("NSE_FNO:1", 1, 10.0), record("NSE_FNO:2", 7, 20.0, depth_raw=encode_depth(depth))]
    )
    assert tick_store.get("NSE_FNO:1").ltp == 10.0
    assert tick_store.get("NSE_FNO:9") is None
    many = tick_store.get_many(["NSE_FNO:1", "NSE_FNO:2", "NSE_FNO:9"])
    assert set(many) == {"NSE_FNO:1", "NSE_FNO:2"} and many["NSE_FNO:2"].depth == depth
    raw = redis.Redis.from_url(redis_url).get(f"{prefix}tick:NSE_FNO:1")
    assert raw == record("NSE_FNO:1", 1, 10.0).to_bytes()  # the binary layout, as documented
    assert TickRecord.from_bytes(raw).as_dict()["ltp"] == 10.0  # how a person reads it


def test_an_undecodable_stored_value_reads_as_missing(
    tick_store: RedisTickStore, redis_url: str, prefix: str
) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    # What a deploy finds in Redis: a value in the old JSON layout.
    client.set(f"{prefix}tick:NSE_FNO:1", b'["NSE_FNO:1",3,10.0,null,1795410000.5]')
    tick_store.publish([record("NSE_FNO:2", 1, 20.0)])
    assert tick_store.get("NSE_FNO:1") is None
    assert set(tick_store.get_many(["NSE_FNO:1", "NSE_FNO:2"])) == {"NSE_FNO:2"}
    sub = tick_store.subscribe(["NSE_FNO:1"])
    wait_until(lambda: sub.wait(0.05) == {} and sub.decode_errors == 1, "the bad value counted")
    tick_store.publish([record("NSE_FNO:1", 4, 11.0)])  # the next tick replaces it
    rec = wait_for(sub, "NSE_FNO:1", 4)
    assert rec.ltp == 11.0
    client.close()


def test_a_big_publish_is_split_into_several_lua_calls(tick_store: RedisTickStore) -> None:
    records = [record(f"NSE_FNO:{i}", 1, float(i + 1)) for i in range(4500)]
    tick_store.publish(records)
    got = tick_store.get_many(r.key for r in records)
    assert len(got) == 4500 and got["NSE_FNO:4499"].ltp == 4500.0


def test_publish_reloads_the_script_after_a_script_flush(
    tick_store: RedisTickStore, redis_url: str
) -> None:
    import redis

    tick_store.publish([record("A:1", 1, 1.0)])
    redis.Redis.from_url(redis_url).script_flush()
    tick_store.publish([record("A:1", 2, 2.0)])
    assert tick_store.get("A:1").seq == 2
    # Several pipelined Lua calls that all find the script gone are all resent.
    redis.Redis.from_url(redis_url).script_flush()
    tick_store.publish([record(f"B:{i}", 3, 3.0) for i in range(4500)])
    got = tick_store.get_many(f"B:{i}" for i in range(4500))
    assert len(got) == 4500 and {r.seq for r in got.values()} == {3}


def test_a_redis_subscription_gets_current_values_then_published_ones(
    tick_store: RedisTickStore,
) -> None:
    tick_store.publish([record("A:1", 1, 1.0)])
    sub = tick_store.subscribe(["A:1", "A:2"])
    wait_for(sub, "A:1", 1)
    # The subscription is live once its current value arrived; a new value follows.
    tick_store.publish([record("A:2", 1, 2.0), record("B:1", 1, 3.0)])
    rec = wait_for(sub, "A:2", 1)
    assert rec.ltp == 2.0
    assert "B:1" not in sub.wait(0.2)
    second = tick_store.subscribe(["A:1"])  # channel already subscribed: value read at once
    wait_for(second, "A:1", 1)
    sub.remove(["A:2"])
    tick_store.publish([record("A:2", 2, 4.0), record("A:1", 2, 5.0)])
    wait_for(sub, "A:1", 2)
    assert "A:2" not in sub.wait(0.2)


def test_an_all_keys_redis_subscription_sees_every_key_once(tick_store: RedisTickStore) -> None:
    tick_store.publish([record("A:1", 1, 1.0)])
    everything = tick_store.subscribe(["A:1"], all_keys=True)
    wait_for(everything, "A:1", 1)
    tick_store.publish([record("Z:9", 1, 9.0)])
    wait_for(everything, "Z:9", 1)
    second = tick_store.subscribe(all_keys=True)  # pattern already live: values read at once
    assert set(second.wait(5.0)) == {"A:1", "Z:9"}
    tick_store.publish([record("A:1", 2, 2.0)])
    wait_for(everything, "A:1", 2)
    assert everything.dropped_superseded == 0  # not delivered twice (pattern and channel)


def test_a_redis_consumer_that_never_waits_stays_bounded_and_gets_the_latest(
    tick_store: RedisTickStore,
) -> None:
    keys = [f"NSE_FNO:{i}" for i in range(10)]
    sub = tick_store.subscribe(keys)
    tick_store.publish([record(key, 0, 1.0) for key in keys])
    wait_until(lambda: sub.pending == 10, "ten pending records")
    max_pending = 0
    total = 200_000
    for start in range(0, total, 2000):
        tick_store.publish(
            [record(keys[i % 10], i // 10 + 1, float(i)) for i in range(start, start + 2000)]
        )
        max_pending = max(max_pending, sub.pending)
    last_seq = total // 10
    # The listener drains the socket into the coalescing dict: no backlog anywhere.
    wait_until(
        lambda: sub.dropped_superseded + sub.dropped_stale >= total - 10,
        "all but the last ten records superseded",
    )
    assert max_pending <= 10 and sub.pending <= 10
    got = sub.wait(1.0)
    assert len(got) == 10 and {r.seq for r in got.values()} == {last_seq}
    assert tick_store.listener_reconnects == 0


def test_publish_raises_store_unavailable_when_redis_is_unreachable() -> None:
    store = RedisTickStore(f"redis://127.0.0.1:{free_port()}/0", prefix="x:")
    with pytest.raises(StoreUnavailable) as caught:
        store.publish([record()])
    assert isinstance(caught.value, ConnectionError)
    with pytest.raises(StoreUnavailable):
        store.get("A:1")
    store.close()


def test_publish_works_again_once_redis_is_back(private_redis: PrivateRedis) -> None:
    store = RedisTickStore(private_redis.url, prefix="p:")
    sub = store.subscribe(["A:1"])
    store.publish([record("A:1", 1, 1.0)])
    wait_for(sub, "A:1", 1)
    private_redis.stop()
    with pytest.raises(StoreUnavailable):
        store.publish([record("A:1", 2, 2.0)])
    private_redis.start()  # empty: no persistence
    store.publish([record("A:1", 3, 3.0)])
    assert store.get("A:1").seq == 3
    # The listener reconnected and resubscribed on its own.
    wait_until(lambda: store.listener_reconnects >= 1, "a listener reconnect")
    store.publish([record("A:1", 4, 4.0)])
    wait_for(sub, "A:1", 4)
    store.close()


def test_a_full_redis_is_store_unavailable_too(private_redis: PrivateRedis) -> None:
    import redis

    admin = redis.Redis.from_url(private_redis.url)
    store = RedisTickStore(private_redis.url, prefix="m:")
    store.publish([record("A:1", 1, 1.0)])
    admin.config_set("maxmemory", 1)
    admin.config_set("maxmemory-policy", "noeviction")
    try:
        with pytest.raises(StoreUnavailable, match="maxmemory"):
            store.publish([record("A:1", 2, 2.0)])
    finally:
        admin.config_set("maxmemory", 0)
    store.publish([record("A:1", 3, 3.0)])
    assert store.get("A:1").seq == 3
    store.close()
    admin.close()


def test_redis_on_ready_runs_on_the_listener_thread(tick_store: RedisTickStore) -> None:
    got: list[tuple[str, int]] = []
    arrived = threading.Event()

    def ready(sub: object) -> None:
        for rec in sub.take().values():  # type: ignore[attr-defined]
            got.append((threading.current_thread().name, rec.seq))
        arrived.set()

    tick_store.subscribe(["NSE_FNO:7"], on_ready=ready)
    tick_store.publish([record("NSE_FNO:7", 3, 10.0)])
    assert arrived.wait(10)
    assert got[-1][1] == 3
    assert got[-1][0].startswith("ticks-listener")


def test_another_process_receives_published_ticks(
    tick_store: RedisTickStore, redis_url: str, prefix: str
) -> None:
    code = (
        "import sys, time\n"
        "from workers.realtime.redis_tick_store import RedisTickStore\n"
        f"store = RedisTickStore({redis_url!r}, prefix={prefix!r})\n"
        "sub = store.subscribe(['NSE_FNO:7'])\n"
        "print('ready', flush=True)\n"
        "deadline = time.monotonic() + 20\n"
        "while time.monotonic() < deadline:\n"
        "    rec = sub.wait(0.2).get('NSE_FNO:7')\n"
        "    if rec is not None and rec.seq >= 3:\n"
        "        print('got', rec.seq, rec.ltp, flush=True)\n"
        "        break\n"
        "store.close()\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "algo_scalper.settings"}
    child = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        seq = 0
        out = ""

        def publish_until_done() -> None:
            nonlocal seq
            while child.poll() is None and seq < 10_000:
                seq += 1
                tick_store.publish([record("NSE_FNO:7", seq, 100.0 + seq)])
                time.sleep(0.05)

        publisher = threading.Thread(target=publish_until_done)
        publisher.start()
        out = child.stdout.read()
        child.wait(30)
        publisher.join(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    words = out.split()
    assert words[0] == "got" and int(words[1]) >= 3 and float(words[2]) == 100.0 + int(words[1])
