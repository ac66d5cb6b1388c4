"""Market-feed codec: exact byte layouts of PROTOCOL.md section 2, framing, JSON requests.

Pure unit tests: no database, no network. Expected bytes are built field by field from the
offset tables of PROTOCOL.md (int.to_bytes / one float32 at a time), not from the codec's own
struct format strings, so a wrong format string cannot agree with itself.
"""

from __future__ import annotations

import json
import random
import struct
from datetime import UTC, datetime, time, timedelta

import pytest

from trading.dhan import feed_codec as fc
from trading.dhan.feed_codec import (
    IST,
    DepthLevel,
    Disconnect,
    DisconnectRequest,
    FeedMode,
    FeedStats,
    FullTick,
    MarketStatus,
    OpenInterest,
    PrevClose,
    QuoteTick,
    SubscriptionRequest,
    Tick,
    TickerTick,
    decode_frame,
    parse_request,
)

RECEIVED = datetime(2025, 7, 25, 9, 23, 12, 500000, tzinfo=UTC)

# DhanHQ-py issue #90 (NIFTY 31 JUL 2025 24900 PE / CE, Full mode), as logged by `websockets`:
# the first 16 and the last 8 bytes of each 162-byte packet; the log elides the middle ("...").
# PROTOCOL.md 2.4 quotes the PE packet's first 14 and last 8 bytes; its bytes 14-15 (58 9a)
# and the CE packet (the next frame) are from the same issue log.
REAL_PE_HEAD = bytes.fromhex("08a20002f4d90000cd4c18434b00589a")
REAL_PE_TAIL = bytes.fromhex("9a191843cdcc1843")
REAL_CE_HEAD = bytes.fromhex("08a20002f3d90000cdccbf422c01589a")
REAL_CE_TAIL = bytes.fromhex("cd4cbf426666c042")
# The log shows only the low half-word of LTT (58 9a, offsets 14-15). 0x6883 is the high
# half-word that puts the value on 2025-07-25, the day the issue was filed (see the LTT tests).
REAL_LTT = 0x68839A58


def f32(value: float) -> float:
    """What a float becomes after a trip through float32, as on Dhan's wire."""
    return struct.unpack("<f", struct.pack("<f", value))[0]


def u8(value: int) -> bytes:
    return value.to_bytes(1, "little")


def u16(value: int) -> bytes:
    return value.to_bytes(2, "little")


def u32(value: int) -> bytes:
    return value.to_bytes(4, "little")


def fl(value: float) -> bytes:
    return struct.pack("<f", value)


def header(code: int, length: int, segment: int, security_id: int) -> bytes:
    # PROTOCOL.md 2.4: u8 code @0, u16 length @1, u8 segment @3, u32 security id @4.
    return u8(code) + u16(length) + u8(segment) + u32(security_id)


def real_full_packet(head: bytes, tail: bytes, ltt_high: bytes = b"\x00\x00") -> bytes:
    """A 162-byte packet with the logged bytes in place and the elided middle zero-filled."""
    packet = head + ltt_high + bytes(162 - len(head) - 2 - len(tail)) + tail
    assert len(packet) == 162
    return packet


def decode_one(data: bytes) -> fc.Packet:
    stats = FeedStats()
    packets = decode_frame(data, RECEIVED, stats)
    assert len(packets) == 1, stats
    return packets[0]


# ---------------------------------------------------------------------------------------------
# Segments and keys


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("IDX_I", 0),
        ("NSE_EQ", 1),
        ("NSE_FNO", 2),
        ("NSE_CURRENCY", 3),
        ("BSE_EQ", 4),
        ("MCX_COMM", 5),
        ("BSE_CURRENCY", 7),
        ("BSE_FNO", 8),
    ],
)
def test_segment_names_map_to_the_numeric_header_codes_both_ways(name, code):
    assert fc.segment_code(name) == code
    assert fc.segment_code(code) == code
    assert fc.segment_name(code) == name
    assert fc.ExchangeSegment[name] == code
    for encoded in (
        fc.encode_ticker(name, 1, 1.5, REAL_LTT),
        fc.encode_quote(name, 1, ltp=1.5, ltt=REAL_LTT),
        fc.encode_full(name, 1, ltp=1.5, ltt=REAL_LTT),
        fc.encode_oi(name, 1, 10),
    ):
        assert encoded[3] == code
        assert decode_one(encoded).exchange_segment == name


def test_an_unknown_segment_is_a_clear_value_error():
    with pytest.raises(ValueError, match="unknown exchange segment 'NSE'"):
        fc.segment_code("NSE")
    with pytest.raises(ValueError, match="code 6"):
        fc.segment_code(6)


def test_a_segment_code_dhan_does_not_define_still_gets_a_readable_name():
    assert fc.segment_name(6) == "SEG_6"


def test_instrument_keys_are_segment_colon_security_id():
    assert fc.instrument_key("NSE_FNO", "55796") == "NSE_FNO:55796"
    assert fc.instrument_key(0, 13) == "IDX_I:13"
    assert fc.split_instrument_key("IDX_I:13") == ("IDX_I", 13)


@pytest.mark.parametrize("key", ["NSE_FNO", "NSE:1333", "NSE_EQ:abc", "NSE_EQ:-1", "NSE_EQ:"])
def test_a_malformed_instrument_key_is_a_value_error(key):
    with pytest.raises(ValueError):
        fc.split_instrument_key(key)


# ---------------------------------------------------------------------------------------------
# The real packets


@pytest.mark.parametrize(
    ("head", "tail", "security_id", "ltp", "ltq", "bid5", "ask5"),
    [
        (REAL_PE_HEAD, REAL_PE_TAIL, 55796, 152.30, 75, 152.10, 152.80),
        (REAL_CE_HEAD, REAL_CE_TAIL, 55795, 95.90, 300, 95.65, 96.20),
    ],
    ids=["24900PE", "24900CE"],
)
def test_it_decodes_the_real_full_packet(head, tail, security_id, ltp, ltq, bid5, ask5):
    tick = decode_one(real_full_packet(head, tail))

    assert isinstance(tick, Tick)
    assert tick.kind == 8  # full
    assert tick.segment_code == 2
    assert tick.exchange_segment == "NSE_FNO"
    assert tick.security_id == security_id
    assert tick.key == f"NSE_FNO:{security_id}"
    assert tick.ltp == f32(ltp)
    assert round(tick.ltp, 2) == ltp
    assert tick.ltq == ltq  # one NIFTY lot is 75
    assert tick.ltt & 0xFFFF == 0x9A58  # all the log shows of LTT
    level5 = tick.depth[4]
    assert (level5.bid_price, level5.ask_price) == (f32(bid5), f32(ask5))
    assert tick.receive_time == RECEIVED


def test_the_real_packet_round_trips_byte_for_byte():
    real = real_full_packet(REAL_PE_HEAD, REAL_PE_TAIL, ltt_high=b"\x83\x68")
    assert fc.encode_packet(decode_one(real)) == real


def test_the_real_header_is_little_endian():
    # 0x00a2 = 162 read little-endian; big-endian would be 0xa200 = 41472.
    code, length, segment, security_id = struct.unpack_from("<BHBI", REAL_PE_HEAD)
    assert (code, length, segment, security_id) == (8, 162, 2, 55796)


# ---------------------------------------------------------------------------------------------
# LTT: an IST-shifted epoch


def test_ltt_is_seconds_since_1970_on_the_ist_wall_clock():
    # 2025-07-25 09:15:00 on the IST wall clock, counted as if it were UTC.
    ltt = int((datetime(2025, 7, 25, 9, 15) - datetime(1970, 1, 1)).total_seconds())

    moment = fc.ltt_to_datetime(ltt)

    assert moment == datetime(2025, 7, 25, 9, 15, tzinfo=IST)
    assert moment.utcoffset() == timedelta(hours=5, minutes=30)
    assert moment.tzinfo == IST
    # The true instant is 19800 s earlier than the number read as a UTC epoch.
    assert moment.timestamp() == ltt - 19800
    assert moment.astimezone(UTC) == datetime(2025, 7, 25, 3, 45, tzinfo=UTC)


def test_the_real_packet_ltt_falls_in_market_hours_only_when_read_as_ist_shifted():
    session = (time(9, 15), time(15, 30))

    shifted = fc.ltt_to_datetime(REAL_LTT)
    as_true_utc = datetime.fromtimestamp(REAL_LTT, IST)

    assert shifted == datetime(2025, 7, 25, 14, 53, 12, tzinfo=IST)  # the day of the issue
    assert session[0] <= shifted.time() <= session[1]
    assert as_true_utc.time() == time(20, 23, 12)
    assert not session[0] <= as_true_utc.time() <= session[1]


def test_the_tick_exchange_time_is_the_converted_ltt():
    tick = decode_one(fc.encode_ticker("IDX_I", 13, 24850.5, REAL_LTT))
    assert tick.ltt == REAL_LTT
    assert tick.exchange_time == datetime(2025, 7, 25, 14, 53, 12, tzinfo=IST)


def test_an_ltt_of_zero_means_no_trade_yet():
    assert fc.ltt_to_datetime(0) is None
    assert decode_one(fc.encode_ticker("NSE_FNO", 1, 0.0, 0)).exchange_time is None


def test_a_datetime_converts_back_to_the_same_ltt():
    moment = datetime(2025, 7, 25, 14, 53, 12, tzinfo=IST)
    assert fc.datetime_to_ltt(moment) == REAL_LTT
    assert fc.datetime_to_ltt(moment.astimezone(UTC)) == REAL_LTT
    with pytest.raises(ValueError, match="aware"):
        fc.datetime_to_ltt(datetime(2025, 7, 25, 14, 53, 12))


# ---------------------------------------------------------------------------------------------
# Exact layouts and round trips of every packet type

DEPTH = [
    DepthLevel(150, 75, 3, 1, 152.25, 152.5),
    DepthLevel(300, 150, 4, 2, 152.0, 152.75),
    DepthLevel(450, 225, 5, 3, 151.75, 153.0),
    DepthLevel(600, 300, 6, 4, 151.5, 153.25),
    DepthLevel(750, 375, 7, 5, 151.25, 153.5),
]
FULL_FIELDS = {
    "ltp": 152.25,
    "ltq": 75,
    "ltt": REAL_LTT,
    "atp": 149.5,
    "volume": 1_234_500,
    "total_sell_qty": 80_000,
    "total_buy_qty": 90_000,
    "oi": 5_000_000,
    "oi_day_high": 5_100_000,
    "oi_day_low": 4_900_000,
    "open": 140.5,
    "close": 0.0,
    "high": 160.75,
    "low": 130.25,
}
QUOTE_FIELDS = {k: v for k, v in FULL_FIELDS.items() if not k.startswith("oi")}


def expected_ticker() -> bytes:
    return header(2, 16, 2, 55796) + fl(152.25) + u32(REAL_LTT)


def expected_quote() -> bytes:
    q = QUOTE_FIELDS
    body = (
        fl(q["ltp"])  # 8
        + u16(q["ltq"])  # 12
        + u32(q["ltt"])  # 14
        + fl(q["atp"])  # 18
        + u32(q["volume"])  # 22
        + u32(q["total_sell_qty"])  # 26
        + u32(q["total_buy_qty"])  # 30
        + fl(q["open"])  # 34
        + fl(q["close"])  # 38
        + fl(q["high"])  # 42
        + fl(q["low"])  # 46
    )
    return header(4, 50, 2, 55796) + body


def expected_full() -> bytes:
    f = FULL_FIELDS
    body = (
        fl(f["ltp"])  # 8
        + u16(f["ltq"])  # 12
        + u32(f["ltt"])  # 14
        + fl(f["atp"])  # 18
        + u32(f["volume"])  # 22
        + u32(f["total_sell_qty"])  # 26
        + u32(f["total_buy_qty"])  # 30
        + u32(f["oi"])  # 34
        + u32(f["oi_day_high"])  # 38
        + u32(f["oi_day_low"])  # 42
        + fl(f["open"])  # 46
        + fl(f["close"])  # 50
        + fl(f["high"])  # 54
        + fl(f["low"])  # 58
    )
    depth = b"".join(
        u32(d.bid_qty) + u32(d.ask_qty) + u16(d.bid_orders) + u16(d.ask_orders)
        + fl(d.bid_price) + fl(d.ask_price)
        for d in DEPTH
    )  # fmt: skip
    return header(8, 162, 2, 55796) + body + depth


LAYOUTS = [
    pytest.param(
        lambda: fc.encode_ticker("NSE_FNO", 55796, 152.25, REAL_LTT),
        expected_ticker(),
        TickerTick(2, 2, 55796, 152.25, REAL_LTT, RECEIVED),
        id="2-ticker",
    ),
    pytest.param(
        lambda: fc.encode_quote("NSE_FNO", 55796, **QUOTE_FIELDS),
        expected_quote(),
        QuoteTick(4, 2, 55796, **QUOTE_FIELDS, receive_time=RECEIVED),
        id="4-quote",
    ),
    pytest.param(
        lambda: fc.encode_oi("NSE_FNO", 55796, 5_000_000),
        header(5, 12, 2, 55796) + u32(5_000_000),
        OpenInterest(2, 55796, 5_000_000, RECEIVED),
        id="5-oi",
    ),
    pytest.param(
        lambda: fc.encode_prev_close("IDX_I", 13, 24850.75, 0),
        header(6, 16, 0, 13) + fl(24850.75) + u32(0),
        PrevClose(0, 13, 24850.75, 0, RECEIVED),
        id="6-prev-close",
    ),
    pytest.param(
        lambda: fc.encode_market_status(),
        header(7, 8, 0, 0),
        MarketStatus(0, 0, b"", RECEIVED),
        id="7-market-status",
    ),
    pytest.param(
        lambda: fc.encode_market_status("NSE_EQ", 0, b"\x01\x00"),
        header(7, 10, 1, 0) + b"\x01\x00",
        MarketStatus(1, 0, b"\x01\x00", RECEIVED),
        id="7-market-status-with-payload",
    ),
    pytest.param(
        lambda: fc.encode_full("NSE_FNO", 55796, **FULL_FIELDS, depth=DEPTH),
        expected_full(),
        FullTick(
            8,
            2,
            55796,
            **FULL_FIELDS,
            depth_raw=expected_full()[62:],
            receive_time=RECEIVED,
        ),
        id="8-full",
    ),
    pytest.param(
        lambda: fc.encode_disconnect(807),
        header(50, 10, 0, 0) + u16(807),
        Disconnect(0, 0, 807, RECEIVED),
        id="50-disconnect",
    ),
]


@pytest.mark.parametrize(("encode", "wire", "decoded"), LAYOUTS)
def test_every_packet_type_has_the_exact_documented_layout(encode, wire, decoded):
    assert encode() == wire


@pytest.mark.parametrize(("encode", "wire", "decoded"), LAYOUTS)
def test_every_packet_type_decodes_to_its_typed_value(encode, wire, decoded):
    stats = FeedStats()

    assert decode_frame(wire, RECEIVED, stats) == [decoded]
    assert type(decode_frame(wire, RECEIVED)[0]) is type(decoded)
    assert stats.by_code[wire[0]] == 1
    assert (stats.unknown, stats.truncated, stats.garbage) == (0, 0, 0)


@pytest.mark.parametrize(("encode", "wire", "decoded"), LAYOUTS)
def test_every_packet_type_round_trips_through_encoder_and_decoder(encode, wire, decoded):
    assert fc.encode_packet(decode_one(wire)) == wire


def test_a_full_tick_exposes_depth_and_best_bid_and_ask():
    tick = decode_one(expected_full())

    assert tick.depth == tuple(DEPTH)
    assert all(type(level) is DepthLevel for level in tick.depth)
    assert (tick.best_bid_price, tick.best_bid_qty) == (152.25, 150)
    assert (tick.best_ask_price, tick.best_ask_qty) == (152.5, 75)
    assert (tick.oi, tick.oi_day_high, tick.oi_day_low) == (5_000_000, 5_100_000, 4_900_000)
    assert (tick.open, tick.close, tick.high, tick.low) == (140.5, 0.0, 160.75, 130.25)


TICK_ATTRIBUTES = (
    "kind",
    "segment_code",
    "exchange_segment",
    "security_id",
    "key",
    "ltp",
    "ltt",
    "exchange_time",
    "receive_time",
    "ltq",
    "atp",
    "volume",
    "total_sell_qty",
    "total_buy_qty",
    "open",
    "close",
    "high",
    "low",
    "oi",
    "oi_day_high",
    "oi_day_low",
    "depth_raw",
    "depth",
    "best_bid_price",
    "best_bid_qty",
    "best_ask_price",
    "best_ask_qty",
)


@pytest.mark.parametrize("wire", [expected_ticker(), expected_quote(), expected_full()])
def test_ticker_quote_and_full_ticks_answer_the_same_attributes(wire):
    tick = decode_one(wire)

    assert isinstance(tick, Tick)
    values = {name: getattr(tick, name) for name in TICK_ATTRIBUTES}
    assert values["key"] == "NSE_FNO:55796"
    assert values["exchange_time"] == datetime(2025, 7, 25, 14, 53, 12, tzinfo=IST)
    assert values["receive_time"] == RECEIVED


def test_a_ticker_carries_only_ltp_and_ltt():
    tick = decode_one(expected_ticker())

    assert (tick.ltp, tick.ltt) == (152.25, REAL_LTT)
    assert tick.ltq is None and tick.volume is None and tick.oi is None
    assert tick.depth is None and tick.best_bid_price is None and tick.best_ask_qty is None


def test_a_quote_has_no_oi_and_no_depth():
    tick = decode_one(expected_quote())

    assert (tick.ltq, tick.atp, tick.volume) == (75, 149.5, 1_234_500)
    assert (tick.total_sell_qty, tick.total_buy_qty) == (80_000, 90_000)
    assert tick.oi is None and tick.depth is None


def test_a_full_packet_pads_missing_depth_levels_with_zeros():
    packet = fc.encode_full("NSE_FNO", 1, ltp=1.5, ltt=REAL_LTT, depth=DEPTH[:1])
    tick = decode_one(packet)
    assert tick.depth[0] == DEPTH[0]
    assert tick.depth[1:] == (DepthLevel(0, 0, 0, 0, 0.0, 0.0),) * 4
    with pytest.raises(ValueError, match="5 depth levels"):
        fc.encode_full("NSE_FNO", 1, ltp=1.5, ltt=REAL_LTT, depth=DEPTH + DEPTH[:1])


def test_encoders_take_an_aware_datetime_for_ltt():
    moment = datetime(2025, 7, 25, 14, 53, 12, tzinfo=IST)
    assert fc.encode_ticker("NSE_FNO", 55796, 152.25, moment) == expected_ticker()


@pytest.mark.parametrize(
    "encode",
    [
        lambda: fc.encode_quote("NSE_FNO", 1, ltp=1.5, ltt=REAL_LTT, ltq=70_000),  # u16
        lambda: fc.encode_full("NSE_FNO", 1, ltp=1.5, ltt=REAL_LTT, volume=-1),
        lambda: fc.encode_ticker("NSE_FNO", 1, 1.5, 2**32),
        lambda: fc.encode_disconnect(70_000),
        lambda: fc.encode_ticker("NSE_FNO", 2**32, 1.5, REAL_LTT),
    ],
)
def test_a_value_that_does_not_fit_its_wire_field_is_a_value_error(encode):
    with pytest.raises(ValueError):
        encode()


@pytest.mark.parametrize(
    ("reason_code", "text"),
    [
        (805, "Too many connections"),
        (806, "Data APIs not subscribed"),
        (807, "Access token expired"),
        (808, "Authentication failed"),
        (809, "Access token invalid"),
        (999, "Unknown disconnect reason 999"),
    ],
)
def test_a_disconnect_names_its_reason(reason_code, text):
    packet = decode_one(fc.encode_disconnect(reason_code))
    assert packet.reason_code == reason_code
    assert text in packet.reason


def test_a_longer_disconnect_packet_still_yields_its_reason():
    # A reason code must never be lost, so extra trailing bytes are tolerated.
    packet = decode_one(header(50, 12, 0, 0) + u16(807) + b"\x00\x00")
    assert packet == Disconnect(0, 0, 807, RECEIVED)


def test_it_accepts_bytearray_and_memoryview_frames():
    wire = expected_quote()
    assert decode_frame(bytearray(wire), RECEIVED) == decode_frame(wire, RECEIVED)
    assert decode_frame(memoryview(wire), RECEIVED) == decode_frame(wire, RECEIVED)


# ---------------------------------------------------------------------------------------------
# Frames with several packets, and bad frames


def mixed_packets() -> list[bytes]:
    return [
        expected_ticker(),
        expected_quote(),
        fc.encode_oi("NSE_FNO", 55796, 5_000_000),
        expected_full(),
        fc.encode_prev_close("IDX_I", 13, 24850.75),
        fc.encode_market_status(),
        fc.encode_ticker("IDX_I", 13, 24850.5, REAL_LTT),
        fc.encode_disconnect(805),
    ]


def test_it_walks_several_packets_in_one_frame_in_order():
    packets = mixed_packets()
    stats = FeedStats()

    decoded = decode_frame(b"".join(packets), RECEIVED, stats)

    assert decoded == [decode_one(p) for p in packets]
    assert [fc.encode_packet(p) for p in decoded] == packets
    assert {k: v for k, v in stats.by_code.items() if v} == {
        2: 2,
        4: 1,
        5: 1,
        6: 1,
        7: 1,
        8: 1,
        50: 1,
    }
    assert stats.packets == 8
    assert stats.frames == 1
    assert (stats.unknown, stats.truncated, stats.garbage, stats.skipped_bytes) == (0, 0, 0, 0)


@pytest.mark.parametrize("count", [1, 2, 7, 8, 9, 64, 500])
def test_a_frame_of_only_tickers_decodes_like_the_general_walk(count):
    packets = [
        fc.encode_ticker(i % 9 if i % 9 != 6 else 0, i, 100 + i / 4, REAL_LTT + i)
        for i in range(count)
    ]
    stats = FeedStats()

    decoded = decode_frame(b"".join(packets), RECEIVED, stats)

    assert decoded == [decode_one(p) for p in packets]
    assert all(type(t) is TickerTick for t in decoded)
    assert stats.by_code[2] == count and stats.frames == 1


def test_a_ticker_frame_with_one_other_packet_in_it_is_still_walked_correctly():
    tickers = [fc.encode_ticker("NSE_FNO", i, 1.5, REAL_LTT) for i in range(10)]
    # A prev-close packet is also 16 bytes: the ticker fast path must not take it for a ticker.
    frame = b"".join(tickers[:5]) + fc.encode_prev_close("NSE_FNO", 99, 2.5) + b"".join(tickers[5:])

    decoded = decode_frame(frame, RECEIVED)

    assert [type(p).__name__ for p in decoded] == ["TickerTick"] * 5 + ["PrevClose"] + [
        "TickerTick"
    ] * 5
    assert decoded[5] == PrevClose(2, 99, 2.5, 0, RECEIVED)


def test_a_truncated_last_packet_is_counted_and_earlier_packets_are_returned():
    frame = expected_ticker() + expected_quote() + expected_full()[:100]
    stats = FeedStats()

    decoded = decode_frame(frame, RECEIVED, stats)

    assert decoded == [decode_one(expected_ticker()), decode_one(expected_quote())]
    assert stats.truncated == 1
    assert stats.skipped_bytes == 100
    assert stats.garbage == 0


@pytest.mark.parametrize("tail", [b"\x02", b"\x02\x10", b"\x02\x10\x00\x02\x01", bytes(7)])
def test_a_short_header_at_the_end_is_counted_as_truncated(tail):
    stats = FeedStats()

    decoded = decode_frame(expected_ticker() + tail, RECEIVED, stats)

    assert decoded == [decode_one(expected_ticker())]
    assert stats.truncated == 1
    assert stats.skipped_bytes == len(tail)


def test_a_length_field_pointing_past_the_end_is_counted_as_truncated():
    lying = header(2, 300, 2, 1) + fl(1.5) + u32(REAL_LTT)
    stats = FeedStats()

    decoded = decode_frame(expected_quote() + lying, RECEIVED, stats)

    assert decoded == [decode_one(expected_quote())]
    assert stats.truncated == 1


@pytest.mark.parametrize("length", [0, 1, 7])
def test_a_length_field_below_the_header_size_stops_the_walk_as_garbage(length):
    bad = header(2, length, 2, 1) + fl(1.5) + u32(REAL_LTT)
    stats = FeedStats()

    decoded = decode_frame(expected_ticker() + bad + expected_ticker(), RECEIVED, stats)

    # Nothing after a length that cannot cover its own header can be framed.
    assert decoded == [decode_one(expected_ticker())]
    assert stats.garbage == 1
    assert stats.skipped_bytes == len(bad) + 16


def test_an_empty_frame_decodes_to_nothing_and_is_counted():
    stats = FeedStats()
    assert decode_frame(b"", RECEIVED, stats) == []
    assert stats.garbage == 1 and stats.frames == 1


@pytest.mark.parametrize("code", [0, 1, 3, 9, 41, 51, 255])
def test_an_unknown_response_code_is_skipped_by_its_length_field(code):
    unknown = header(code, 20, 0, 13) + bytes(12)
    stats = FeedStats()

    decoded = decode_frame(expected_ticker() + unknown + expected_quote(), RECEIVED, stats)

    assert decoded == [decode_one(expected_ticker()), decode_one(expected_quote())]
    assert stats.unknown == 1
    assert stats.unknown_codes == {code: 1}
    assert stats.skipped_bytes == 20


@pytest.mark.parametrize(("code", "length"), [(2, 20), (4, 16), (8, 50), (5, 16), (6, 12), (50, 8)])
def test_a_known_code_with_the_wrong_length_is_garbage_skipped_by_its_length(code, length):
    bad = header(code, length, 2, 1) + bytes(length - 8)
    stats = FeedStats()

    decoded = decode_frame(bad + expected_ticker(), RECEIVED, stats)

    assert decoded == [decode_one(expected_ticker())]
    assert stats.garbage == 1
    assert stats.packets == 1  # only the ticker after it


@pytest.mark.parametrize("frame", ["not bytes", None, 12345, [2, 16, 0]])
def test_input_that_is_not_bytes_is_counted_as_garbage_not_raised(frame):
    stats = FeedStats()
    assert decode_frame(frame, RECEIVED, stats) == []
    assert stats.garbage == 1


def test_random_garbage_and_mutated_frames_never_raise():
    rng = random.Random(20250725)
    valid = b"".join(mixed_packets())
    stats = FeedStats()
    for _ in range(3000):
        if rng.random() < 0.5:
            frame = rng.randbytes(rng.randrange(0, 400))
        else:
            mutated = bytearray(valid[: rng.randrange(0, len(valid) + 1)])
            for _ in range(rng.randrange(1, 6)):
                if mutated:
                    mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            frame = bytes(mutated)
        decoded = decode_frame(frame, RECEIVED, stats)
        assert isinstance(decoded, list)
    assert stats.frames == 3000
    assert stats.garbage + stats.truncated + stats.unknown > 0


def test_the_stats_can_be_read_as_a_dict():
    stats = FeedStats()
    decode_frame(expected_ticker() + b"\x02", RECEIVED, stats)
    assert stats.as_dict() == {
        "frames": 1,
        "packets": 1,
        "by_code": {2: 1},
        "unknown": 0,
        "unknown_codes": {},
        "truncated": 1,
        "garbage": 0,
        "skipped_bytes": 1,
    }
    assert "truncated" in repr(stats)


def test_decoding_without_stats_still_skips_bad_bytes():
    assert decode_frame(expected_ticker() + b"\xff" * 5, RECEIVED) == [
        decode_one(expected_ticker())
    ]


# ---------------------------------------------------------------------------------------------
# JSON requests


@pytest.mark.parametrize(
    ("mode", "subscribe", "unsubscribe"),
    [
        (FeedMode.TICKER, 15, 16),
        ("quote", 17, 18),
        (21, 21, 22),
        ("FULL", 21, 22),
    ],
)
def test_each_mode_uses_its_request_codes(mode, subscribe, unsubscribe):
    [sub] = fc.subscribe_messages(["NSE_EQ:1333"], mode)
    [unsub] = fc.unsubscribe_messages(["NSE_EQ:1333"], mode)
    assert json.loads(sub)["RequestCode"] == subscribe
    assert json.loads(unsub)["RequestCode"] == unsubscribe


def test_a_subscribe_message_has_the_documented_field_names_and_string_values():
    [message] = fc.subscribe_messages(["NSE_EQ:1333", ("BSE_EQ", 532540)], "ticker")

    assert json.loads(message) == {
        "RequestCode": 15,
        "InstrumentCount": 2,
        "InstrumentList": [
            {"ExchangeSegment": "NSE_EQ", "SecurityId": "1333"},
            {"ExchangeSegment": "BSE_EQ", "SecurityId": "532540"},
        ],
    }


def test_250_instruments_are_chunked_into_3_subscribe_messages():
    keys = [f"NSE_FNO:{40000 + i}" for i in range(250)]

    messages = [json.loads(m) for m in fc.subscribe_messages(keys, FeedMode.FULL)]

    assert [m["InstrumentCount"] for m in messages] == [100, 100, 50]
    assert [len(m["InstrumentList"]) for m in messages] == [100, 100, 50]
    assert all(m["RequestCode"] == 21 for m in messages)
    sent = [
        f"{i['ExchangeSegment']}:{i['SecurityId']}" for m in messages for i in m["InstrumentList"]
    ]
    assert sent == keys


def test_duplicates_are_sent_once_and_an_empty_list_sends_nothing():
    messages = fc.subscribe_messages(["IDX_I:13", ("IDX_I", "13"), (0, 13), "IDX_I:25"], "ticker")
    assert json.loads(messages[0])["InstrumentCount"] == 2
    assert fc.subscribe_messages([], "ticker") == []


@pytest.mark.parametrize(
    ("instruments", "mode", "message"),
    [
        (["NSE:1333"], "ticker", "unknown exchange segment"),
        (["NSE_EQ-1333"], "ticker", "SEGMENT:SECURITY_ID"),
        ([("NSE_EQ", "13a")], "ticker", "security id"),
        (["NSE_EQ:1333"], "depth", "unknown feed mode"),
        (["NSE_EQ:1333"], 19, "unknown feed mode"),
    ],
)
def test_bad_subscription_input_is_a_value_error(instruments, mode, message):
    with pytest.raises(ValueError, match=message):
        fc.subscribe_messages(instruments, mode)


def test_the_disconnect_message_is_request_code_12():
    assert json.loads(fc.disconnect_message()) == {"RequestCode": 12}
    assert parse_request(fc.disconnect_message()) == DisconnectRequest()


def test_parse_request_reads_back_what_the_builders_send():
    keys = [f"NSE_FNO:{40000 + i}" for i in range(150)]

    parsed = [parse_request(m) for m in fc.unsubscribe_messages(keys, "quote")]

    assert parsed == [
        SubscriptionRequest(18, FeedMode.QUOTE, False, tuple(keys[:100])),
        SubscriptionRequest(18, FeedMode.QUOTE, False, tuple(keys[100:])),
    ]
    assert parse_request(fc.subscribe_messages(keys[:1], "full")[0].encode()) == (
        SubscriptionRequest(21, FeedMode.FULL, True, (keys[0],))
    )


def request(code: object = 15, count: object = None, items: object = None, **extra: object) -> str:
    items = [{"ExchangeSegment": "NSE_EQ", "SecurityId": "1333"}] if items is None else items
    body = {"RequestCode": code, "InstrumentCount": len(items) if count is None else count}
    body["InstrumentList"] = items
    body.update(extra)
    return json.dumps(body)


# The SDK's disconnect() sends this legacy binary header after {"RequestCode":12}.
SDK_STRAY_HEADER = struct.pack("<bH30s50s", 12, 83, b"1000000001", b"\0" * 50)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        (SDK_STRAY_HEADER, "not valid JSON|not UTF-8"),
        (b"\xff\xfe", "not UTF-8"),
        ("[15]", "must be a JSON object"),
        ('{"InstrumentCount": 1}', "no RequestCode"),
        (request(code="15"), "RequestCode must be an integer"),
        (request(code=True), "RequestCode must be an integer"),
        (request(code=19), "unsupported RequestCode 19"),
        (request(code=23), "unsupported RequestCode 23"),
        ('{"RequestCode": 15, "InstrumentCount": 1}', "needs an InstrumentList array"),
        (request(items=[]), "InstrumentList is empty"),
        (request(items=[{"ExchangeSegment": "NSE_EQ", "SecurityId": str(i)} for i in range(101)]),
         "101 instruments; at most 100"),
        (request(count=2), "InstrumentCount 2 does not match 1 instruments"),
        (request(count="1"), "InstrumentCount must be an integer"),
        (json.dumps({"RequestCode": 15, "InstrumentList": [{"ExchangeSegment": "NSE_EQ",
                                                            "SecurityId": "1"}]}),
         "InstrumentCount must be an integer"),
        (request(items=["NSE_EQ:1333"]), r"InstrumentList\[0\] must be an object"),
        (request(items=[{"ExchangeSegment": "NSE", "SecurityId": "1333"}]),
         r"InstrumentList\[0\].ExchangeSegment 'NSE'"),
        (request(items=[{"ExchangeSegment": 1, "SecurityId": "1333"}]), "ExchangeSegment 1"),
        (request(items=[{"SecurityId": "1333"}]), "ExchangeSegment None"),
        (request(items=[{"ExchangeSegment": "NSE_EQ", "SecurityId": 1333}]),
         "SecurityId must be a string of digits, got 1333"),
        (request(items=[{"ExchangeSegment": "NSE_EQ", "SecurityId": "13x"}]),
         "SecurityId must be a string of digits"),
        (request(items=[{"ExchangeSegment": "NSE_EQ"}]), "SecurityId must be a string of digits"),
    ],
)  # fmt: skip
def test_parse_request_names_the_problem(text, message):
    with pytest.raises(ValueError, match=message):
        parse_request(text)
