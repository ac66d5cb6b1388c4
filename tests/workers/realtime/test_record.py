"""workers.realtime.record: TickRecord, its binary wire layout, and reading a payload's seq."""

from __future__ import annotations

import json
import re
import struct
from datetime import datetime

import pytest

from trading.rules.market import IST
from workers.realtime.record import TickRecord, encode_depth, payload_seq

from .kit import (
    DEPTH,
    record,
)

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
    assert payload_seq(record("NSE_FNO:55796", 123456789).to_bytes()) == 123456789
    assert payload_seq(b"") == -1
    assert payload_seq(b'["A:1",5,1.0]') == -1  # not this layout: wait() drops it, counted
    assert payload_seq(_good()[:12]) == -1


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
