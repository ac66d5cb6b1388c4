"""workers/ticks.py: records, merging, tick stores, event buses, key-value stores.

Redis tests use TEST_REDIS_URL with a unique key prefix per test (nothing else in the database
is touched); the connection-loss and restart tests run a private redis-server so killing its
clients cannot disturb anything else.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from trading.dhan.feed_codec import (
    Disconnect,
    FullTick,
    MarketStatus,
    OpenInterest,
    PrevClose,
    QuoteTick,
    TickerTick,
    decode_frame,
    encode_full,
)
from workers.ticks import (
    IST,
    MemoryEventBus,
    MemoryKeyValueStore,
    MemoryTickStore,
    Realtime,
    RedisEventBus,
    RedisKeyValueStore,
    RedisTickStore,
    StoreUnavailable,
    TickMerger,
    TickRecord,
    _payload_seq,
    encode_depth,
    realtime_from_settings,
)

from .conftest import PrivateRedis  # the private_redis fixture: a server to kill

REPO = Path(__file__).resolve().parents[2]
RECEIVED = datetime(2026, 11, 23, 5, 0, 0, 250000, tzinfo=UTC)
LTT = 1795410000 + 19800  # IST-shifted epoch of 1795410000


def until(condition: Callable[[], object], timeout: float = 10.0) -> bool:
    """Poll ``condition`` until true or ``timeout`` (bounded waits, no timing assertions)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return bool(condition())


def ticker(
    sid: int, ltp: float, ltt: int = LTT, received: datetime | None = RECEIVED
) -> TickerTick:
    return TickerTick(2, 2, sid, ltp, ltt, received)


def quote(sid: int, ltp: float, ltt: int = LTT) -> QuoteTick:
    return QuoteTick(
        4, 2, sid, ltp, 75, ltt, 151.5, 12000, 500, 600, 150.0, 0.0, 155.0, 149.0, RECEIVED
    )


def record(
    key: str = "NSE_FNO:1", seq: int = 1, ltp: float = 100.0, **fields: object
) -> TickRecord:
    return TickRecord(key, seq, ltp, 1795410000.0, 1795410000.5, **fields)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# TickRecord


DEPTH = tuple((10 * i, 20 * i, i, i + 1, 100.0 - i, 100.5 + i) for i in range(1, 6))
NAN = float("nan")
# The version 1 layout written out independently of the module: version, key length, key,
# seq q, ltp/exchange_time/receive_time d, then ltq q, atp d, volume q, oi q, open/high/low/
# close/prev_close d, bid d, bid_qty q, ask d, ask_qty q, then the depth bytes if any.
LAYOUT_AFTER_KEY = "qddd" + "qdqq" + "ddddd" + "dqdq"


def test_a_ticker_record_is_the_documented_binary_layout_with_sentinels() -> None:
    rec = TickRecord("NSE_FNO:55796", 42, 152.35000610351562, 1795410000.0, 1795410000.123456)
    data = rec.to_bytes()
    sentinels = (-1, NAN, -1, -1, NAN, NAN, NAN, NAN, NAN, NAN, -1, NAN, -1)
    assert data == struct.pack(
        "<BB13s" + LAYOUT_AFTER_KEY,
        1,
        13,
        b"NSE_FNO:55796",
        42,
        152.35000610351562,
        1795410000.0,
        1795410000.123456,
        *sentinels,
    )
    assert len(data) == 138 + 13
    assert TickRecord.from_bytes(data) == rec  # exact: float64 on the wire, no rounding


def test_a_quote_record_round_trips_exactly_with_its_none_fields() -> None:
    rec = record(
        "NSE_FNO:9",
        7,
        0.1 + 0.2,  # 0.30000000000000004: every bit survives
        ltq=75,
        atp=151.5,
        volume=4_000_000_000,  # beyond int32, as Dhan's uint32 volume can be
        oi=None,
        open=150.0,
        high=155.0,
        low=149.0,
        close=0.0,
        prev_close=None,
    )
    back = TickRecord.from_bytes(rec.to_bytes())
    assert back == rec and back.ltp == 0.30000000000000004
    assert back.oi is None and back.prev_close is None and back.bid is None and back.depth is None


def test_a_full_record_round_trips_with_depth_and_nones_in_between() -> None:
    rec = record(
        ltq=75,
        atp=99.5,
        volume=1000,
        oi=None,
        open=98.0,
        high=101.0,
        low=97.5,
        close=0.0,
        prev_close=None,
        bid=99.0,
        bid_qty=10,
        ask=101.5,
        ask_qty=20,
        depth_raw=encode_depth(DEPTH),
    )
    data = rec.to_bytes()
    assert len(data) == 238 + len("NSE_FNO:1") and data.endswith(rec.depth_raw)
    back = TickRecord.from_bytes(data)
    assert back == rec and back.depth == DEPTH and back.oi is None and back.close == 0.0
    # Any buffer reads the same (a memoryview of a larger receive buffer, say).
    assert TickRecord.from_bytes(memoryview(bytearray(data))) == rec


def test_a_record_without_a_trade_round_trips_its_none_exchange_time() -> None:
    rec = TickRecord("IDX_I:13", 1, 0.0, None, 1795410000.0)
    assert TickRecord.from_bytes(rec.to_bytes()) == rec


def test_a_nan_price_or_negative_quantity_reads_back_as_none() -> None:
    rec = record(atp=NAN, high=float("inf"), low=float("-inf"), ltq=-1, volume=-5, bid_qty=0)
    back = TickRecord.from_bytes(rec.to_bytes())
    assert back.atp is None and back.ltq is None and back.volume is None  # the sentinels
    assert back.high == float("inf") and back.low == float("-inf") and back.bid_qty == 0


def test_a_key_in_utf8_round_trips() -> None:
    rec = record("TEST:é", 3)
    assert TickRecord.from_bytes(rec.to_bytes()).key == "TEST:é"


def _good() -> bytes:
    return record("NSE_FNO:1", 5).to_bytes()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "truncated: 0 bytes"),
        (_good()[:60], "truncated: 60 bytes"),
        (_good()[:-1], "146 bytes; with its 9-byte key it must be 147 or 247"),
        (_good() + b"\0", "148 bytes"),
        (bytes([2]) + _good()[1:], "unknown tick record version 2"),
        (b'["NSE_FNO:1",1,2.0,null,1.0]' + bytes(200), "unknown tick record version 91"),
        (_good()[:1] + bytes([200]) + _good()[2:], "with its 200-byte key"),
        (_good()[:1] + bytes([4]) + _good()[2:], "with its 4-byte key"),
        (b"\x01\x02\xff\xfe" + bytes(136), "key b'\\xff\\xfe' is not UTF-8"),
        ("\x01\x00" + "x" * 136, "must be bytes, got str"),
    ],
    ids=[
        "empty",
        "truncated",
        "one-byte-short",
        "one-byte-long",
        "next-version",
        "old-json-value",
        "key-length-too-big",
        "key-length-too-small",
        "key-not-utf8",
        "text",
    ],
)
def test_from_bytes_names_the_problem(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        TickRecord.from_bytes(data)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"key": "K" * 256}, "256 UTF-8 bytes; at most 255"),
        ({"key": 7}, "'key' must be a str"),
        ({"seq": "1"}, "'seq' has a bad value '1'"),
        ({"ltp": None}, "'ltp' has a bad value None"),
        ({"volume": 2**63}, "'volume' has a bad value"),
        ({"atp": "1.5"}, "'atp' has a bad value '1.5'"),
        ({"depth_raw": b"\0" * 99}, "'depth_raw' is 99 bytes, not 100"),
    ],
)
def test_to_bytes_names_the_field_it_cannot_write(fields: dict[str, object], message: str) -> None:
    rec = record()
    for name, value in fields.items():
        setattr(rec, name, value)
    with pytest.raises(ValueError, match=re.escape(message)):
        rec.to_bytes()


def test_the_seq_of_a_payload_is_read_without_decoding_it() -> None:
    assert _payload_seq(record("NSE_FNO:55796", 123456789).to_bytes()) == 123456789
    assert _payload_seq(b"") == -1
    assert _payload_seq(b'["A:1",5,1.0]') == -1  # not this layout: wait() drops it, counted
    assert _payload_seq(_good()[:12]) == -1


def test_as_dict_is_strict_json_with_depth_decoded() -> None:
    rec = record("NSE_FNO:9", 4, ltq=75, atp=NAN, bid=99.0, depth_raw=encode_depth(DEPTH))
    shown = rec.as_dict()
    assert json.loads(json.dumps(shown, allow_nan=False)) == shown
    assert shown["key"] == "NSE_FNO:9" and shown["seq"] == 4 and shown["ltp"] == 100.0
    assert shown["exchange_time"] == 1795410000.0 and shown["ltq"] == 75
    assert shown["atp"] is None and shown["oi"] is None and "depth_raw" not in shown
    assert shown["depth"][0] == {
        "bid_qty": 10,
        "ask_qty": 20,
        "bid_orders": 1,
        "ask_orders": 2,
        "bid_price": 99.0,
        "ask_price": 101.5,
    }
    assert len(shown["depth"]) == 5 and record().as_dict()["depth"] is None


def test_record_datetimes_are_aware_ist() -> None:
    rec = record()
    assert rec.exchange_datetime == datetime(2026, 11, 23, 10, 30, tzinfo=IST)
    assert rec.exchange_datetime.utcoffset().total_seconds() == 19800
    assert rec.receive_datetime.timestamp() == 1795410000.5
    assert TickRecord("IDX_I:13", 1, 0.0, None, 1.0).exchange_datetime is None


# ---------------------------------------------------------------------------------------------
# TickMerger


def test_a_ticker_sets_ltp_true_epoch_exchange_time_and_float_receive_time() -> None:
    merger = TickMerger()
    (rec,) = merger.merge([ticker(55796, 152.5)])
    assert rec.key == "NSE_FNO:55796" and rec.seq == 1 and rec.ltp == 152.5
    assert rec.exchange_time == LTT - 19800 == 1795410000
    assert rec.receive_time == RECEIVED.timestamp()


def test_a_zero_ltp_never_overwrites_a_good_one() -> None:
    merger = TickMerger()
    merger.merge([ticker(1, 152.5)])
    (rec,) = merger.merge([ticker(1, 0.0, ltt=LTT + 5)])
    assert rec.ltp == 152.5 and rec.seq == 2 and rec.exchange_time == LTT + 5 - 19800
    (rec,) = merger.merge([quote(1, 0.0)])
    assert rec.ltp == 152.5 and rec.volume == 12000


def test_a_zero_ltt_keeps_the_last_exchange_time() -> None:
    merger = TickMerger()
    merger.merge([ticker(1, 10.0)])
    (rec,) = merger.merge([ticker(1, 11.0, ltt=0)])
    assert rec.ltp == 11.0 and rec.exchange_time == LTT - 19800


def test_a_key_without_a_price_yet_has_ltp_zero_and_no_exchange_time() -> None:
    merger = TickMerger()
    (rec,) = merger.merge([OpenInterest(2, 7, 5000, RECEIVED)])
    assert rec.ltp == 0.0 and rec.exchange_time is None and rec.oi == 5000 and rec.seq == 1


def test_seq_increases_per_key_and_the_same_key_can_appear_twice() -> None:
    merger = TickMerger()
    out = merger.merge([ticker(1, 10.0), ticker(2, 20.0), ticker(1, 11.0)])
    assert [(r.key, r.seq, r.ltp) for r in out] == [
        ("NSE_FNO:1", 1, 10.0),
        ("NSE_FNO:2", 1, 20.0),
        ("NSE_FNO:1", 2, 11.0),
    ]
    assert out[0] is not out[2] and out[0].ltp == 10.0  # handed-out records never change
    assert merger.get("NSE_FNO:1") is out[2]


def test_quote_full_oi_and_prev_close_fill_their_fields() -> None:
    merger = TickMerger()
    depth = [(10 * i, 20 * i, i, i + 1, 100.0 - i, 100.5 + i) for i in range(1, 6)]
    frame = encode_full(
        "NSE_FNO",
        9,
        ltp=100.25,
        ltt=LTT,
        ltq=50,
        atp=99.0,
        volume=700,
        oi=1234,
        open=98.0,
        close=0.0,
        high=101.0,
        low=97.0,
        depth=depth,
    )
    (full,) = decode_frame(frame, RECEIVED)
    assert isinstance(full, FullTick)
    (rec,) = merger.merge([full])
    assert (rec.ltp, rec.ltq, rec.atp, rec.volume, rec.oi) == (100.25, 50, 99.0, 700, 1234)
    assert (rec.open, rec.high, rec.low, rec.close) == (98.0, 101.0, 97.0, 0.0)
    assert (rec.bid, rec.bid_qty, rec.ask, rec.ask_qty) == (99.0, 10, 101.5, 20)
    assert rec.depth == tuple(depth)
    out = merger.merge([PrevClose(2, 9, 95.5, 1000, RECEIVED), quote(9, 100.5)])
    assert out[0].prev_close == 95.5 and out[0].seq == 2 and out[0].depth == tuple(depth)
    assert out[1].prev_close == 95.5 and out[1].ltq == 75 and out[1].oi == 1234
    assert out[1].seq == 3


def full_tick(sid: int = 9, ltp: float = 100.25, ltt: int = LTT) -> FullTick:
    frame = encode_full(
        "NSE_FNO",
        sid,
        ltp=ltp,
        ltt=ltt,
        ltq=50,
        atp=99.0,
        volume=700,
        oi=1234,
        open=98.0,
        close=0.0,
        high=101.0,
        low=97.0,
        depth=list(DEPTH),
    )
    (packet,) = decode_frame(frame, RECEIVED)
    assert isinstance(packet, FullTick)
    return packet


def test_each_packet_type_carries_over_exactly_the_fields_it_does_not_have() -> None:
    merger = TickMerger()
    merger.merge([PrevClose(2, 9, 95.5, 1000, RECEIVED)])
    (full,) = merger.merge([full_tick()])
    kept = replace(full)
    assert full.prev_close == 95.5 and full.seq == 2 and full.depth == DEPTH
    later = datetime(2026, 11, 23, 5, 0, 1, tzinfo=UTC)
    (after_ticker,) = merger.merge([ticker(9, 101.0, ltt=LTT + 1, received=later)])
    assert after_ticker == replace(
        full, seq=3, ltp=101.0, exchange_time=LTT + 1 - 19800, receive_time=later.timestamp()
    )
    (after_oi,) = merger.merge([OpenInterest(2, 9, 4321, later)])
    assert after_oi == replace(after_ticker, seq=4, oi=4321)
    (after_prev_close,) = merger.merge([PrevClose(2, 9, 96.0, 1000, later)])
    assert after_prev_close == replace(after_oi, seq=5, prev_close=96.0)
    (after_quote,) = merger.merge([quote(9, 102.0)])
    assert after_quote == replace(
        after_prev_close,
        seq=6,
        ltp=102.0,
        exchange_time=LTT - 19800,
        receive_time=RECEIVED.timestamp(),
        ltq=75,
        atp=151.5,
        volume=12000,
        open=150.0,
        close=0.0,
        high=155.0,
        low=149.0,
    )  # best bid/ask and depth stay those of the last full packet
    assert full == kept  # records handed out are never changed


def test_a_full_packet_with_zero_ltp_and_ltt_keeps_the_price_and_time() -> None:
    merger = TickMerger()
    merger.merge([ticker(9, 152.5)])
    (rec,) = merger.merge([full_tick(ltp=0.0, ltt=0)])
    assert rec.ltp == 152.5 and rec.exchange_time == LTT - 19800 and rec.oi == 1234


def test_packets_of_one_frame_with_different_receive_times_keep_their_own() -> None:
    later = RECEIVED + timedelta(milliseconds=5)
    merger = TickMerger()
    out = merger.merge([ticker(1, 1.0), ticker(2, 2.0, received=later), ticker(3, 3.0)])
    assert [r.receive_time for r in out] == [
        RECEIVED.timestamp(),
        later.timestamp(),
        RECEIVED.timestamp(),
    ]
    (rec,) = merger.merge([ticker(1, 1.5, received=later)])  # the cache spans frames too
    assert rec.receive_time == later.timestamp()


def test_market_status_and_disconnect_packets_are_ignored() -> None:
    merger = TickMerger()
    assert merger.merge([MarketStatus(0, 0, b"", RECEIVED), Disconnect(0, 0, 807, RECEIVED)]) == []
    assert merger.snapshot() == {}


def test_seq_start_and_load_continue_a_previous_writers_seqs() -> None:
    merger = TickMerger(seq_start=lambda key: 100 if key == "NSE_FNO:1" else 0)
    assert [r.seq for r in merger.merge([ticker(1, 1.0), ticker(2, 2.0)])] == [101, 1]
    other = TickMerger()
    other.load([record("NSE_FNO:5", seq=41, ltp=77.0)])
    (rec,) = other.merge([ticker(5, 0.0)])
    assert rec.seq == 42 and rec.ltp == 77.0
    assert set(other.snapshot()) == {"NSE_FNO:5"}


def test_a_packet_without_receive_time_gets_the_wall_clock() -> None:
    before = time.time()
    (rec,) = TickMerger().merge([ticker(1, 1.0, received=None)])
    assert before <= rec.receive_time <= time.time()


# ---------------------------------------------------------------------------------------------
# MemoryTickStore


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


# ---------------------------------------------------------------------------------------------
# Redis fixtures


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(sub: object, key: str, seq: int, timeout: float = 10.0) -> TickRecord | None:
    """Drain ``sub`` until ``key`` arrives with at least ``seq``; the record or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = sub.wait(0.2)  # type: ignore[attr-defined]
        rec = got.get(key)
        if rec is not None and rec.seq >= seq:
            return rec
    return None


# ---------------------------------------------------------------------------------------------
# RedisTickStore


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
    assert until(lambda: sub.wait(0.05) == {} and sub.decode_errors == 1)
    tick_store.publish([record("NSE_FNO:1", 4, 11.0)])  # the next tick replaces it
    rec = wait_for(sub, "NSE_FNO:1", 4)
    assert rec is not None and rec.ltp == 11.0
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
    assert wait_for(sub, "A:1", 1) is not None
    # The subscription is live once its current value arrived; a new value follows.
    tick_store.publish([record("A:2", 1, 2.0), record("B:1", 1, 3.0)])
    rec = wait_for(sub, "A:2", 1)
    assert rec is not None and rec.ltp == 2.0
    assert "B:1" not in sub.wait(0.2)
    second = tick_store.subscribe(["A:1"])  # channel already subscribed: value read at once
    assert wait_for(second, "A:1", 1) is not None
    sub.remove(["A:2"])
    tick_store.publish([record("A:2", 2, 4.0), record("A:1", 2, 5.0)])
    assert wait_for(sub, "A:1", 2) is not None
    assert "A:2" not in sub.wait(0.2)


def test_an_all_keys_redis_subscription_sees_every_key_once(tick_store: RedisTickStore) -> None:
    tick_store.publish([record("A:1", 1, 1.0)])
    everything = tick_store.subscribe(["A:1"], all_keys=True)
    assert wait_for(everything, "A:1", 1) is not None
    tick_store.publish([record("Z:9", 1, 9.0)])
    assert wait_for(everything, "Z:9", 1) is not None
    second = tick_store.subscribe(all_keys=True)  # pattern already live: values read at once
    assert set(second.wait(5.0)) == {"A:1", "Z:9"}
    tick_store.publish([record("A:1", 2, 2.0)])
    assert wait_for(everything, "A:1", 2) is not None
    assert everything.dropped_superseded == 0  # not delivered twice (pattern and channel)


def test_a_redis_consumer_that_never_waits_stays_bounded_and_gets_the_latest(
    tick_store: RedisTickStore,
) -> None:
    keys = [f"NSE_FNO:{i}" for i in range(10)]
    sub = tick_store.subscribe(keys)
    tick_store.publish([record(key, 0, 1.0) for key in keys])
    assert until(lambda: sub.pending == 10)
    max_pending = 0
    total = 200_000
    for start in range(0, total, 2000):
        tick_store.publish(
            [record(keys[i % 10], i // 10 + 1, float(i)) for i in range(start, start + 2000)]
        )
        max_pending = max(max_pending, sub.pending)
    last_seq = total // 10
    # The listener drains the socket into the coalescing dict: no backlog anywhere.
    assert until(lambda: sub.dropped_superseded + sub.dropped_stale >= total - 10, 30)
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
    assert wait_for(sub, "A:1", 1) is not None
    private_redis.stop()
    with pytest.raises(StoreUnavailable):
        store.publish([record("A:1", 2, 2.0)])
    private_redis.start()  # empty: no persistence
    store.publish([record("A:1", 3, 3.0)])
    assert store.get("A:1").seq == 3
    # The listener reconnected and resubscribed on its own.
    assert until(lambda: store.listener_reconnects >= 1)
    store.publish([record("A:1", 4, 4.0)])
    assert wait_for(sub, "A:1", 4) is not None
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


def test_a_killed_listener_connection_resubscribes_and_resyncs(
    private_redis: PrivateRedis,
) -> None:
    import redis

    admin = redis.Redis.from_url(private_redis.url)
    store = RedisTickStore(private_redis.url, prefix="k:")
    sub = store.subscribe(["A:1", "A:2"])
    store.publish([record("A:1", 1, 1.0)])
    assert wait_for(sub, "A:1", 1) is not None
    # Changed without a PUBLISH, so only the resync after the reconnect can bring it. Set
    # before the kill: set after it, a fast reconnect could resync first and never see it.
    admin.set("k:tick:A:2", record("A:2", 9, 9.0).to_bytes())
    assert admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 1
    rec = wait_for(sub, "A:2", 9)
    assert rec is not None and rec.ltp == 9.0
    assert store.listener_reconnects >= 1
    store.publish([record("A:1", 2, 2.0)])
    assert wait_for(sub, "A:1", 2) is not None
    store.close()
    admin.close()


def test_a_hung_redis_is_detected_by_ping_and_the_listener_comes_back(
    private_redis: PrivateRedis,
) -> None:
    import signal

    store = RedisTickStore(private_redis.url, prefix="h:", ping_interval=0.2)
    sub = store.subscribe(["A:1"])
    store.publish([record("A:1", 1, 1.0)])
    assert wait_for(sub, "A:1", 1) is not None
    assert private_redis.process is not None
    private_redis.process.send_signal(signal.SIGSTOP)  # accepts TCP, answers nothing
    try:
        assert until(lambda: store.listener_reconnects >= 1, 10)
    finally:
        private_redis.process.send_signal(signal.SIGCONT)
    store.publish([record("A:1", 2, 2.0)])
    assert wait_for(sub, "A:1", 2) is not None
    store.close()


def test_another_process_receives_published_ticks(
    tick_store: RedisTickStore, redis_url: str, prefix: str
) -> None:
    code = (
        "import sys, time\n"
        "from workers.ticks import RedisTickStore\n"
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


# ---------------------------------------------------------------------------------------------
# EventBus


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
    assert until(lambda: sub.dropped == 3)
    assert [sub.get(1), sub.get(1)] == [("e", {"n": 3}), ("e", {"n": 4})]
    bus.close()


# ---------------------------------------------------------------------------------------------
# KeyValueStore


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_memory_kv_values_expire_on_read() -> None:
    clock = FakeClock()
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
    assert until(lambda: kv.get("health:feed") is None)
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


# ---------------------------------------------------------------------------------------------
# Wiring


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
