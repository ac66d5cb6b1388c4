"""Pure codec for Dhan's live market feed WebSocket v2 (PROTOCOL.md section 2).

No sockets, no Django, no Redis: bytes in, typed values out, and back. The feed hub decodes
with it, the simulator encodes with it, and both read/write the JSON requests with it.

Binary responses (server -> client), all little-endian, offsets 0-based. Every packet starts
with the 8-byte header ``u8 response code, u16 message length (whole packet, header included),
u8 exchange segment, u32 security id``:

====  ==============  ======  ===============================================================
code  type            bytes   body after the header
====  ==============  ======  ===============================================================
2     ticker          16      f32 LTP, u32 LTT
4     quote           50      f32 LTP, u16 LTQ, u32 LTT, f32 ATP, u32 volume, u32 total sell
                              qty, u32 total buy qty, f32 open, f32 close, f32 high, f32 low
5     OI              12      u32 open interest
6     previous close  16      f32 previous close, u32 previous OI
7     market status   >= 8    undocumented (the SDK reads only the header); kept as raw bytes
8     full            162     like quote but u32 OI, OI day high, OI day low before
                              open/close/high/low, then 5 depth levels of 20 bytes:
                              u32 bid qty, u32 ask qty, u16 bid orders, u16 ask orders,
                              f32 bid price, f32 ask price (level 1 first)
50    disconnect      10      u16 reason code (805..814, see DISCONNECT_REASONS)
====  ==============  ======  ===============================================================

Framing: a WebSocket frame may carry several packets back to back (the official SDK only ever
reads the first one, a known bug); ``decode_frame`` walks them by the length field. Bad input is
counted in a caller-owned ``FeedStats`` and skipped, never raised, so one poisoned frame cannot
take the feed loop down:

* fewer than 8 bytes left, or a length field pointing past the end -> ``truncated``; the packets
  before it are still returned.
* a length field below 8 (it cannot even cover its own header, so walking cannot continue), a
  known code with the wrong length (skipped by its length field: the only framing there is),
  or input that is not bytes -> ``garbage``.
* a response code we do not decode (1 index, 3 v1 depth, 0 "heartbeat", anything new) ->
  ``unknown``, skipped by its length field.

Exchange time (LTT) is an IST-shifted epoch: seconds since 1970-01-01 00:00 on the *IST wall
clock*, i.e. true UTC epoch + 19800. See ``ltt_to_datetime``.

Hot path: ``decode_frame`` is what every tick goes through, so ticks are NamedTuples built
straight from ``struct`` output (no per-packet dicts, no per-field Python code), ticker-only
frames take a vectorised fast path, and the LTT -> datetime conversion is lazy (the
``exchange_time`` property) and cached, since most consumers only read ``ltp``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from functools import lru_cache
from itertools import repeat
from operator import add, itemgetter
from typing import NamedTuple
from zoneinfo import ZoneInfo

# ---------------------------------------------------------------------------------------------
# Enumerations


class ExchangeSegment(IntEnum):
    """Numeric exchange segment of the binary header (byte 3); names are the JSON strings."""

    IDX_I = 0
    NSE_EQ = 1
    NSE_FNO = 2
    NSE_CURRENCY = 3
    BSE_EQ = 4
    MCX_COMM = 5
    # 6 is unused by Dhan.
    BSE_CURRENCY = 7
    BSE_FNO = 8


SEGMENT_CODES: dict[str, int] = {seg.name: seg.value for seg in ExchangeSegment}
SEGMENT_NAMES: dict[int, str] = {seg.value: seg.name for seg in ExchangeSegment}
# Indexed by code for the hot path; a code Dhan does not define still gets a readable name
# instead of an IndexError in a consumer.
_SEGMENT_NAME_TABLE: tuple[str, ...] = tuple(SEGMENT_NAMES.get(i, f"SEG_{i}") for i in range(256))


class ResponseCode(IntEnum):
    """Feed response code (byte 0 of every binary packet)."""

    INDEX = 1  # listed in the annexure, no v2 layout documented: not decoded
    TICKER = 2
    MARKET_DEPTH = 3  # v1 only: not decoded
    QUOTE = 4
    OI = 5
    PREV_CLOSE = 6
    MARKET_STATUS = 7
    FULL = 8
    DISCONNECT = 50


class RequestCode(IntEnum):
    """``RequestCode`` of the JSON text frames a client sends."""

    DISCONNECT = 12
    SUBSCRIBE_TICKER = 15
    UNSUBSCRIBE_TICKER = 16
    SUBSCRIBE_QUOTE = 17
    UNSUBSCRIBE_QUOTE = 18
    SUBSCRIBE_FULL = 21
    UNSUBSCRIBE_FULL = 22


class FeedMode(IntEnum):
    """Subscription mode; the value is its subscribe request code, unsubscribe is value + 1."""

    TICKER = 15
    QUOTE = 17
    FULL = 21

    @property
    def subscribe_code(self) -> int:
        return int(self.value)

    @property
    def unsubscribe_code(self) -> int:
        return int(self.value) + 1


MAX_INSTRUMENTS_PER_MESSAGE = 100
MAX_INSTRUMENTS_PER_CONNECTION = 5000
HEADER_SIZE = 8

DISCONNECT_REASONS: dict[int, str] = {
    # Annexure "Data API Error" (PROTOCOL.md 1.2); 805-809 are the ones the SDK's feed
    # disconnect handler names.
    800: "Internal server error",
    804: "Requested number of instruments exceeds limit",
    805: "Too many connections: more than 5 WebSockets, the oldest was dropped",
    806: "Data APIs not subscribed",
    807: "Access token expired",
    808: "Authentication failed: client id or access token invalid",
    809: "Access token invalid",
    810: "Client ID invalid",
    811: "Invalid expiry date",
    812: "Invalid date format",
    813: "Invalid SecurityId",
    814: "Invalid request",
}


def segment_code(segment: str | int) -> int:
    """Numeric code of a segment given by name (``"NSE_FNO"``) or code (``2``)."""
    if isinstance(segment, str):
        try:
            return SEGMENT_CODES[segment]
        except KeyError:
            raise ValueError(
                f"unknown exchange segment {segment!r}; expected one of {', '.join(SEGMENT_CODES)}"
            ) from None
    code = int(segment)
    if code not in SEGMENT_NAMES:
        raise ValueError(f"unknown exchange segment code {code}")
    return code


def segment_name(code: int) -> str:
    """Segment string for a header code; ``SEG_<n>`` for a code Dhan does not define."""
    return _SEGMENT_NAME_TABLE[code]


def instrument_key(segment: str | int, security_id: int | str) -> str:
    """The project-wide instrument key ``"SEG:SID"``, e.g. ``"NSE_FNO:55796"``."""
    return f"{SEGMENT_NAMES[segment_code(segment)]}:{_security_id(security_id)}"


def split_instrument_key(key: str) -> tuple[str, int]:
    """``"NSE_FNO:55796"`` -> ``("NSE_FNO", 55796)``; ValueError naming the problem."""
    seg, sep, sid = key.partition(":")
    if not sep:
        raise ValueError(f"instrument key {key!r} is not of the form SEGMENT:SECURITY_ID")
    return SEGMENT_NAMES[segment_code(seg)], _security_id(sid)


def _security_id(security_id: int | str) -> int:
    # The binary header carries the id as a u32, so anything else cannot be on the feed.
    if isinstance(security_id, str):
        if not security_id.isdigit() or not security_id.isascii():
            raise ValueError(f"security id {security_id!r} is not a non-negative integer")
        security_id = int(security_id)
    if isinstance(security_id, bool) or not isinstance(security_id, int):
        raise ValueError(f"security id {security_id!r} is not an integer")
    if not 0 <= security_id <= 0xFFFFFFFF:
        raise ValueError(f"security id {security_id} does not fit the feed's u32 field")
    return security_id


# ---------------------------------------------------------------------------------------------
# Exchange time

IST = ZoneInfo("Asia/Kolkata")
IST_OFFSET_SECONDS = 19800  # +05:30; India has had no DST since 1945, so this is constant.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@lru_cache(maxsize=8192)
def ltt_to_datetime(ltt: int) -> datetime | None:
    """Dhan's LTT (last trade time) as an aware datetime in Asia/Kolkata; None when it is 0.

    LTT is an *IST-shifted* epoch: the number of seconds from 1970-01-01 00:00 on the IST wall
    clock, not from 1970-01-01 00:00 UTC. In other words LTT = true UTC epoch + 19800, so the
    true instant is ``LTT - 19800``. That is why the official SDK, which renders LTT with
    ``timezone.utc``, prints Indian wall-clock times, and it is what several independent client
    implementers report (PROTOCOL.md 2.4, tagged 3P/UNCONFIRMED officially).

    The real packet in PROTOCOL.md (DhanHQ-py issue #90, NIFTY 24900 PE, posted 2025-07-25)
    agrees: its LTT low half-word is ``58 9a`` (0x9A58). On that day the IST-shifted reading
    0x68839A58 = 1753455192 is 14:53:12 IST, inside the 09:15-15:30 session, whereas reading a
    value with those low bits as a true UTC epoch gives 02:10:56 or 20:23:12 IST that day, both
    outside the session.

    0 means "no trade yet" (after-hours packets for untraded contracts) and gives None.
    Cached because every instrument trading in the same second shares one LTT.
    """
    if not ltt:
        return None
    return (_EPOCH + timedelta(seconds=ltt - IST_OFFSET_SECONDS)).astimezone(IST)


def datetime_to_ltt(moment: datetime) -> int:
    """Inverse of ``ltt_to_datetime`` (whole seconds): an aware datetime -> IST-shifted epoch."""
    if moment.tzinfo is None:
        raise ValueError("datetime_to_ltt needs an aware datetime (naive times are ambiguous)")
    # Floor division keeps whole seconds exact (no float round trip).
    return (moment - _EPOCH) // timedelta(seconds=1) + IST_OFFSET_SECONDS


# ---------------------------------------------------------------------------------------------
# Decoded types. NamedTuples: built from struct output with one C call and read by attribute;
# they are immutable and cheap, which a dataclass (even with slots) is not on this path.


class DepthLevel(NamedTuple):
    """One market-depth level of a full packet, in wire order.

    Empty levels carry whatever Dhan sends: zeros, or a price sentinel of -0.01 (3P reports).
    """

    bid_qty: int
    ask_qty: int
    bid_orders: int
    ask_orders: int
    bid_price: float
    ask_price: float


def _exchange_segment(self: Tick | OpenInterest | PrevClose | MarketStatus | Disconnect) -> str:
    return _SEGMENT_NAME_TABLE[self.segment_code]


def _key(self: Tick | OpenInterest | PrevClose | MarketStatus | Disconnect) -> str:
    return f"{_SEGMENT_NAME_TABLE[self.segment_code]}:{self.security_id}"


class Tick(NamedTuple):
    """A ticker (code 2), quote (code 4) or full (code 8) packet.

    ``kind`` says which; fields a kind does not carry are None (a ticker has only ltp and ltt;
    a quote has no OI and no depth). Prices are float32 on the wire, widened to float (152.30
    arrives as 152.3000030517578): round for display, compare with a tolerance of a tick.
    ``ltt`` is the raw IST-shifted epoch; ``exchange_time`` is the aware datetime.
    ``receive_time`` is whatever the caller passed to ``decode_frame``.

    Depth is kept as the packet's 100 raw bytes (``depth_raw``) and decoded on access
    (``depth``, ``best_bid_price`` ...): building 5 level objects per full packet would cost more
    than the rest of the packet, and most consumers only read ``ltp``.
    """

    kind: int
    segment_code: int
    security_id: int
    ltp: float
    ltt: int
    ltq: int | None = None
    atp: float | None = None
    volume: int | None = None
    total_sell_qty: int | None = None
    total_buy_qty: int | None = None
    open: float | None = None
    close: float | None = None
    high: float | None = None
    low: float | None = None
    oi: int | None = None
    oi_day_high: int | None = None
    oi_day_low: int | None = None
    depth_raw: bytes | None = None
    receive_time: datetime | None = None

    exchange_segment = property(_exchange_segment, doc="Segment string, e.g. 'NSE_FNO'.")
    key = property(_key, doc="Instrument key 'SEG:SID'.")

    @property
    def exchange_time(self) -> datetime | None:
        """LTT as an aware Asia/Kolkata datetime (None when LTT is 0)."""
        return ltt_to_datetime(self.ltt)

    @property
    def depth(self) -> tuple[DepthLevel, ...] | None:
        """The 5 depth levels of a full packet, level 1 first; None for ticker/quote."""
        raw = self.depth_raw
        if raw is None:
            return None
        return tuple(map(_new, _DEPTH_CLASSES, _DEPTH_LEVEL.iter_unpack(raw)))

    @property
    def best_bid_price(self) -> float | None:
        raw = self.depth_raw
        return _BEST_PRICES(raw)[0] if raw is not None else None

    @property
    def best_ask_price(self) -> float | None:
        raw = self.depth_raw
        return _BEST_PRICES(raw)[1] if raw is not None else None

    @property
    def best_bid_qty(self) -> int | None:
        raw = self.depth_raw
        return _BEST_QTYS(raw)[0] if raw is not None else None

    @property
    def best_ask_qty(self) -> int | None:
        raw = self.depth_raw
        return _BEST_QTYS(raw)[1] if raw is not None else None


class OpenInterest(NamedTuple):
    """Code 5: open interest, sent alongside quote packets."""

    segment_code: int
    security_id: int
    oi: int
    receive_time: datetime | None

    exchange_segment = property(_exchange_segment)
    key = property(_key)


class PrevClose(NamedTuple):
    """Code 6: previous day's close and OI (once per instrument after subscribing)."""

    segment_code: int
    security_id: int
    prev_close: float
    prev_oi: int
    receive_time: datetime | None

    exchange_segment = property(_exchange_segment)
    key = property(_key)


class MarketStatus(NamedTuple):
    """Code 7: market status. Dhan documents no body; ``payload`` is whatever follows the header."""

    segment_code: int
    security_id: int
    payload: bytes
    receive_time: datetime | None

    exchange_segment = property(_exchange_segment)
    key = property(_key)


class Disconnect(NamedTuple):
    """Code 50: the server is closing the connection; ``reason_code`` says why (805..814)."""

    segment_code: int
    security_id: int
    reason_code: int
    receive_time: datetime | None

    exchange_segment = property(_exchange_segment)
    key = property(_key)

    @property
    def reason(self) -> str:
        return DISCONNECT_REASONS.get(
            self.reason_code, f"Unknown disconnect reason {self.reason_code}"
        )


Packet = Tick | OpenInterest | PrevClose | MarketStatus | Disconnect


class FeedStats:
    """Counters a decode loop owns and passes to every ``decode_frame`` call.

    ``by_code``: packets decoded per response code; ``unknown`` / ``unknown_codes``: packets
    with a code we do not decode, skipped by their length; ``truncated``: frames that ended in
    the middle of a packet; ``garbage``: bytes that could not be framed or a known code with the
    wrong length; ``skipped_bytes``: every byte not decoded for one of those reasons.
    """

    __slots__ = (
        "by_code",
        "frames",
        "garbage",
        "skipped_bytes",
        "truncated",
        "unknown",
        "unknown_codes",
    )

    def __init__(self) -> None:
        self.frames = 0
        self.by_code: dict[int, int] = dict.fromkeys((2, 4, 5, 6, 7, 8, 50), 0)
        self.unknown = 0
        self.unknown_codes: dict[int, int] = {}
        self.truncated = 0
        self.garbage = 0
        self.skipped_bytes = 0

    @property
    def packets(self) -> int:
        """Packets decoded, all codes together."""
        return sum(self.by_code.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "frames": self.frames,
            "packets": self.packets,
            "by_code": {code: n for code, n in self.by_code.items() if n},
            "unknown": self.unknown,
            "unknown_codes": dict(self.unknown_codes),
            "truncated": self.truncated,
            "garbage": self.garbage,
            "skipped_bytes": self.skipped_bytes,
        }

    def __repr__(self) -> str:
        return f"FeedStats({self.as_dict()})"


# ---------------------------------------------------------------------------------------------
# Wire structs. Decoders skip the u16 length with "xx" (the framing code has read it) and
# the ticker struct's output is exactly the first five Tick fields (kind, segment, sid, ltp,
# ltt), so the hottest packet needs no reordering at all.

_HDR = struct.Struct("<BH")  # code, length: all the framing loop needs
_TICKER = struct.Struct("<BxxBIfI")  # code, segment, sid, ltp, ltt
# code, segment, sid, ltp, ltq, ltt, atp, volume, total sell, total buy, open, close, high, low
_QUOTE = struct.Struct("<BxxBIfHIfIIIffff")
# as quote, with oi, oi day high, oi day low before open; the depth follows @62
_FULL = struct.Struct("<BxxBIfHIfIIIIIIffff")
_DEPTH_LEVEL = struct.Struct("<IIHHff")  # 20 bytes, 5 of them @62
_OI = struct.Struct("<xxxBII")  # segment, sid, oi
_PREV_CLOSE = struct.Struct("<xxxBIfI")  # segment, sid, prev close, prev oi
_HDR_SID = struct.Struct("<xxxBI")  # segment, sid
_DISCONNECT = struct.Struct("<xxxBIH")  # segment, sid, reason

# Full-layout structs for the encoders (exactly the SDK's format strings).
_ENC_HEADER = struct.Struct("<BHBI")
_ENC_TICKER = struct.Struct("<BHBIfI")
_ENC_QUOTE = struct.Struct("<BHBIfHIfIIIffff")
_ENC_FULL = struct.Struct("<BHBIfHIfIIIIIIffff")
_ENC_OI = struct.Struct("<BHBII")
_ENC_PREV_CLOSE = struct.Struct("<BHBIfI")
_ENC_DISCONNECT = struct.Struct("<BHBIH")

TICKER_SIZE = 16
QUOTE_SIZE = 50
OI_SIZE = 12
PREV_CLOSE_SIZE = 16
FULL_SIZE = 162
DISCONNECT_SIZE = 10
_DEPTH_OFFSET = 62

assert _ENC_TICKER.size == TICKER_SIZE and _TICKER.size == TICKER_SIZE
assert _ENC_QUOTE.size == QUOTE_SIZE and _QUOTE.size == QUOTE_SIZE
assert _ENC_FULL.size == _FULL.size == _DEPTH_OFFSET
assert _DEPTH_OFFSET + 5 * _DEPTH_LEVEL.size == FULL_SIZE
assert _ENC_OI.size == OI_SIZE and _ENC_DISCONNECT.size == DISCONNECT_SIZE

_new = tuple.__new__
_DEPTH_CLASSES = (DepthLevel,) * 5
_BEST_QTYS = struct.Struct("<II").unpack_from  # level 1 bid qty, ask qty
_BEST_PRICES = struct.Struct("<12xff").unpack_from  # level 1 bid price, ask price

# Quote and full are unpacked in one call each, then put in Tick order by one itemgetter call
# (LTT before LTQ, OI after OHLC): both are C calls, cheaper than per-field Python code.
_unpack_header = _HDR.unpack_from
_unpack_ticker = _TICKER.unpack_from
_unpack_quote = _QUOTE.unpack_from
_quote_order = itemgetter(0, 1, 2, 3, 5, 4, 6, 7, 8, 9, 10, 11, 12, 13)
_unpack_full = _FULL.unpack_from
_full_order = itemgetter(0, 1, 2, 3, 5, 4, 6, 7, 8, 9, 13, 14, 15, 16, 10, 11, 12)
_iter_tickers = _TICKER.iter_unpack
# Below this many packets the ticker fast path's fixed cost (3 slices, iterators) loses.
_FAST_PATH_MIN_BYTES = 8 * TICKER_SIZE
_TICKER_NONES = (None,) * 13  # Tick fields between ltt and receive_time


def decode_frame(
    data: bytes | bytearray | memoryview,
    receive_time: datetime | None,
    stats: FeedStats | None = None,
) -> list[Packet]:
    """Decode every packet of one binary WebSocket frame, in order.

    Never raises on bad bytes: what cannot be decoded is counted in ``stats`` (when given) and
    skipped, and the packets decoded before a problem are returned (see the module docstring
    for what counts as truncated, garbage and unknown). ``receive_time`` is stored on every
    packet as given.
    """
    if type(data) is not bytes:
        if not isinstance(data, bytes | bytearray | memoryview):
            # A text frame or a caller bug: counted, not raised (and never bytes(int), which
            # would allocate that many zero bytes).
            if stats is not None:
                stats.frames += 1
                stats.garbage += 1
            return []
        data = bytes(data)
    n = len(data)

    if n >= HEADER_SIZE:
        code, length = _unpack_header(data, 0)
        if length == n:
            # One packet in the frame: what Dhan's server sends most of the time (the SDK
            # could not work otherwise), so it skips the walking loop entirely.
            if code == 2 and n == TICKER_SIZE:
                packet: Packet = _new(
                    Tick, (*_unpack_ticker(data, 0), *_TICKER_NONES, receive_time)
                )
            elif code == 4 and n == QUOTE_SIZE:
                packet = _new(
                    Tick,
                    (*_quote_order(_unpack_quote(data, 0)), None, None, None, None, receive_time),
                )
            elif code == 8 and n == FULL_SIZE:
                packet = _new(
                    Tick,
                    (*_full_order(_unpack_full(data, 0)), data[_DEPTH_OFFSET:], receive_time),
                )
            else:
                return _walk(data, n, receive_time, stats)
            if stats is not None:
                stats.frames += 1
                stats.by_code[code] += 1
            return [packet]

        # Fast path: a frame made only of ticker packets (a busy feed in ticker mode, indices)
        # is checked with three C-level slice counts and decoded by iter_unpack with no Python
        # code per packet.
        if n >= _FAST_PATH_MIN_BYTES and not n & 15:
            count = n >> 4
            if (
                data[0::16].count(2) == count
                and data[1::16].count(TICKER_SIZE) == count
                and data[2::16].count(0) == count
            ):
                ticks: list[Packet] = list(
                    map(
                        _new,
                        repeat(Tick, count),
                        map(
                            add, _iter_tickers(data), repeat((*_TICKER_NONES, receive_time), count)
                        ),
                    )
                )
                if stats is not None:
                    stats.frames += 1
                    stats.by_code[2] += count
                return ticks
    return _walk(data, n, receive_time, stats)


def _walk(
    data: bytes, n: int, receive_time: datetime | None, stats: FeedStats | None
) -> list[Packet]:
    """The general case: walk the packets of a frame by their length fields."""
    out: list[Packet] = []
    append = out.append
    ticker_tail = (*_TICKER_NONES, receive_time)
    quote_tail = (None, None, None, None, receive_time)
    n_ticker = n_quote = n_full = 0
    off = 0
    if not n:
        _count_bad(stats, "garbage", 0)  # an empty binary frame is not something Dhan sends
    try:
        while off < n:
            if n - off < HEADER_SIZE:
                _count_bad(stats, "truncated", n - off)
                break
            code, length = _unpack_header(data, off)
            end = off + length
            if length < HEADER_SIZE or end > n:
                # A length below the header size cannot move us forward: nothing after it can
                # be framed. One past the end is a cut-off packet.
                _count_bad(stats, "garbage" if length < HEADER_SIZE else "truncated", n - off)
                break
            if code == 2:
                if length == TICKER_SIZE:
                    append(_new(Tick, _unpack_ticker(data, off) + ticker_tail))
                    n_ticker += 1
                else:
                    _count_bad(stats, "garbage", length)
            elif code == 4:
                if length == QUOTE_SIZE:
                    append(_new(Tick, _quote_order(_unpack_quote(data, off)) + quote_tail))
                    n_quote += 1
                else:
                    _count_bad(stats, "garbage", length)
            elif code == 8:
                if length == FULL_SIZE:
                    append(
                        _new(
                            Tick,
                            (
                                *_full_order(_unpack_full(data, off)),
                                data[off + _DEPTH_OFFSET : end],
                                receive_time,
                            ),
                        )
                    )
                    n_full += 1
                else:
                    _count_bad(stats, "garbage", length)
            else:
                packet = _decode_other(code, length, data, off, receive_time, stats)
                if packet is not None:
                    append(packet)
            off = end
    except (struct.error, TypeError, ValueError):  # pragma: no cover - belt and braces
        # Every read above is bounds-checked first; this only keeps a bug of ours from taking
        # the feed loop down.
        _count_bad(stats, "garbage", n - off)
    if stats is not None:
        stats.frames += 1
        by_code = stats.by_code
        if n_ticker:
            by_code[2] += n_ticker
        if n_quote:
            by_code[4] += n_quote
        if n_full:
            by_code[8] += n_full
    return out


def _decode_other(
    code: int,
    length: int,
    data: bytes,
    off: int,
    receive_time: datetime | None,
    stats: FeedStats | None,
) -> Packet | None:
    """The rare packets (5, 6, 7, 50) and unknown codes; None when nothing was decoded."""
    packet: Packet
    if code == 6 and length == PREV_CLOSE_SIZE:
        seg, sid, prev_close, prev_oi = _PREV_CLOSE.unpack_from(data, off)
        packet = PrevClose(seg, sid, prev_close, prev_oi, receive_time)
    elif code == 5 and length == OI_SIZE:
        seg, sid, oi = _OI.unpack_from(data, off)
        packet = OpenInterest(seg, sid, oi, receive_time)
    elif code == 7:
        seg, sid = _HDR_SID.unpack_from(data, off)
        packet = MarketStatus(seg, sid, data[off + HEADER_SIZE : off + length], receive_time)
    elif code == 50 and length >= DISCONNECT_SIZE:
        # Longer than documented is tolerated: a disconnect reason must never be lost.
        seg, sid, reason = _DISCONNECT.unpack_from(data, off)
        packet = Disconnect(seg, sid, reason, receive_time)
    elif code in (5, 6, 50):
        _count_bad(stats, "garbage", length)
        return None
    else:
        if stats is not None:
            stats.unknown += 1
            stats.unknown_codes[code] = stats.unknown_codes.get(code, 0) + 1
            stats.skipped_bytes += length
        return None
    if stats is not None:
        stats.by_code[code] += 1
    return packet


def _count_bad(stats: FeedStats | None, kind: str, skipped: int) -> None:
    if stats is not None:
        setattr(stats, kind, getattr(stats, kind) + 1)
        stats.skipped_bytes += skipped


# ---------------------------------------------------------------------------------------------
# Encoders (server side: the simulator and the tests). Prices are packed as float32 like Dhan.

LttLike = int | datetime


def _ltt(value: LttLike) -> int:
    return datetime_to_ltt(value) if isinstance(value, datetime) else int(value)


def encode_ticker(segment: str | int, security_id: int | str, ltp: float, ltt: LttLike) -> bytes:
    """Code 2, 16 bytes."""
    return _ENC_TICKER.pack(
        2, TICKER_SIZE, segment_code(segment), _security_id(security_id), ltp, _ltt(ltt)
    )


def encode_quote(
    segment: str | int,
    security_id: int | str,
    *,
    ltp: float,
    ltt: LttLike,
    ltq: int = 0,
    atp: float = 0.0,
    volume: int = 0,
    total_sell_qty: int = 0,
    total_buy_qty: int = 0,
    open: float = 0.0,  # the field's name on Tick
    close: float = 0.0,
    high: float = 0.0,
    low: float = 0.0,
) -> bytes:
    """Code 4, 50 bytes. Note the wire order: open, close, high, low."""
    return _ENC_QUOTE.pack(
        4,
        QUOTE_SIZE,
        segment_code(segment),
        _security_id(security_id),
        ltp,
        ltq,
        _ltt(ltt),
        atp,
        volume,
        total_sell_qty,
        total_buy_qty,
        open,
        close,
        high,
        low,
    )


def encode_full(
    segment: str | int,
    security_id: int | str,
    *,
    ltp: float,
    ltt: LttLike,
    ltq: int = 0,
    atp: float = 0.0,
    volume: int = 0,
    total_sell_qty: int = 0,
    total_buy_qty: int = 0,
    oi: int = 0,
    oi_day_high: int = 0,
    oi_day_low: int = 0,
    open: float = 0.0,  # the field's name on Tick
    close: float = 0.0,
    high: float = 0.0,
    low: float = 0.0,
    depth: Sequence[DepthLevel | Sequence[float]] = (),
) -> bytes:
    """Code 8, 162 bytes. ``depth``: up to 5 levels, level 1 first; missing levels are zeros."""
    if len(depth) > 5:
        raise ValueError(f"a full packet carries 5 depth levels, got {len(depth)}")
    head = _ENC_FULL.pack(
        8,
        FULL_SIZE,
        segment_code(segment),
        _security_id(security_id),
        ltp,
        ltq,
        _ltt(ltt),
        atp,
        volume,
        total_sell_qty,
        total_buy_qty,
        oi,
        oi_day_high,
        oi_day_low,
        open,
        close,
        high,
        low,
    )
    levels = [_DEPTH_LEVEL.pack(*level) for level in depth]
    levels.extend(bytes(_DEPTH_LEVEL.size) for _ in range(5 - len(depth)))
    return head + b"".join(levels)


def encode_oi(segment: str | int, security_id: int | str, oi: int) -> bytes:
    """Code 5, 12 bytes."""
    return _ENC_OI.pack(5, OI_SIZE, segment_code(segment), _security_id(security_id), oi)


def encode_prev_close(
    segment: str | int, security_id: int | str, prev_close: float, prev_oi: int = 0
) -> bytes:
    """Code 6, 16 bytes."""
    return _ENC_PREV_CLOSE.pack(
        6, PREV_CLOSE_SIZE, segment_code(segment), _security_id(security_id), prev_close, prev_oi
    )


def encode_market_status(
    segment: str | int = 0, security_id: int | str = 0, payload: bytes = b""
) -> bytes:
    """Code 7: the header plus an (undocumented) payload."""
    return (
        _ENC_HEADER.pack(
            7, HEADER_SIZE + len(payload), segment_code(segment), _security_id(security_id)
        )
        + payload
    )


def encode_disconnect(
    reason_code: int, segment: str | int = 0, security_id: int | str = 0
) -> bytes:
    """Code 50, 10 bytes: u16 reason code at offset 8."""
    return _ENC_DISCONNECT.pack(
        50, DISCONNECT_SIZE, segment_code(segment), _security_id(security_id), reason_code
    )


def encode_packet(packet: Packet) -> bytes:
    """Encode a decoded packet back to its wire bytes (``decode_frame`` inverse)."""
    if isinstance(packet, Tick):
        if packet.kind == 2:
            return encode_ticker(packet.segment_code, packet.security_id, packet.ltp, packet.ltt)
        fields = {
            name: getattr(packet, name)
            for name in (
                "ltq",
                "atp",
                "volume",
                "total_sell_qty",
                "total_buy_qty",
                "open",
                "close",
                "high",
                "low",
            )
        }
        if packet.kind == 4:
            return encode_quote(
                packet.segment_code, packet.security_id, ltp=packet.ltp, ltt=packet.ltt, **fields
            )
        if packet.kind == 8:
            return encode_full(
                packet.segment_code,
                packet.security_id,
                ltp=packet.ltp,
                ltt=packet.ltt,
                oi=packet.oi,
                oi_day_high=packet.oi_day_high,
                oi_day_low=packet.oi_day_low,
                depth=packet.depth or (),
                **fields,
            )
        raise ValueError(f"Tick.kind must be 2, 4 or 8, got {packet.kind}")
    if isinstance(packet, OpenInterest):
        return encode_oi(packet.segment_code, packet.security_id, packet.oi)
    if isinstance(packet, PrevClose):
        return encode_prev_close(
            packet.segment_code, packet.security_id, packet.prev_close, packet.prev_oi
        )
    if isinstance(packet, MarketStatus):
        return encode_market_status(packet.segment_code, packet.security_id, packet.payload)
    if isinstance(packet, Disconnect):
        return encode_disconnect(packet.reason_code, packet.segment_code, packet.security_id)
    raise TypeError(f"cannot encode {type(packet).__name__}")


# ---------------------------------------------------------------------------------------------
# JSON requests (client -> server text frames)

InstrumentRef = str | tuple[str | int, int | str]


def _mode(mode: FeedMode | str | int) -> FeedMode:
    if isinstance(mode, FeedMode):
        return mode
    if isinstance(mode, str):
        try:
            return FeedMode[mode.upper()]
        except KeyError:
            raise ValueError(
                f"unknown feed mode {mode!r}; expected ticker, quote or full"
            ) from None
    try:
        return FeedMode(mode)
    except ValueError:
        raise ValueError(f"unknown feed mode {mode!r}; expected 15, 17 or 21") from None


def _instrument_pairs(instruments: Iterable[InstrumentRef]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for ref in instruments:
        if isinstance(ref, str):
            seg, sid = split_instrument_key(ref)
        else:
            seg, sid = SEGMENT_NAMES[segment_code(ref[0])], _security_id(ref[1])
        pair = (seg, str(sid))
        if pair not in seen:  # a duplicate would only waste one of the 100 slots
            seen.add(pair)
            pairs.append(pair)
    return pairs


def _list_messages(code: int, pairs: list[tuple[str, str]]) -> list[str]:
    messages = []
    for start in range(0, len(pairs), MAX_INSTRUMENTS_PER_MESSAGE):
        batch = pairs[start : start + MAX_INSTRUMENTS_PER_MESSAGE]
        messages.append(
            json.dumps(
                {
                    "RequestCode": code,
                    "InstrumentCount": len(batch),
                    # Both fields are strings on the wire, the segment by name.
                    "InstrumentList": [
                        {"ExchangeSegment": seg, "SecurityId": sid} for seg, sid in batch
                    ],
                },
                separators=(",", ":"),
            )
        )
    return messages


def subscribe_messages(
    instruments: Iterable[InstrumentRef], mode: FeedMode | str | int
) -> list[str]:
    """JSON texts subscribing ``instruments`` in ``mode``, at most 100 instruments each.

    ``instruments``: keys ``"SEG:SID"`` or ``(segment, security_id)`` pairs; duplicates are
    sent once. ``mode``: FeedMode, "ticker"/"quote"/"full" or its subscribe code 15/17/21.
    No message at all for an empty list.
    """
    return _list_messages(_mode(mode).subscribe_code, _instrument_pairs(instruments))


def unsubscribe_messages(
    instruments: Iterable[InstrumentRef], mode: FeedMode | str | int
) -> list[str]:
    """Like ``subscribe_messages`` with the unsubscribe code (16/18/22)."""
    return _list_messages(_mode(mode).unsubscribe_code, _instrument_pairs(instruments))


def disconnect_message() -> str:
    """``{"RequestCode":12}``: ask the server to close the feed."""
    return json.dumps({"RequestCode": int(RequestCode.DISCONNECT)}, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class SubscriptionRequest:
    """A parsed subscribe/unsubscribe message; ``instruments`` are ``"SEG:SID"`` keys in order."""

    request_code: int
    mode: FeedMode
    subscribe: bool
    instruments: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DisconnectRequest:
    """A parsed ``{"RequestCode":12}``."""

    request_code: int = 12


_LIST_CODES: dict[int, tuple[FeedMode, bool]] = {
    15: (FeedMode.TICKER, True),
    16: (FeedMode.TICKER, False),
    17: (FeedMode.QUOTE, True),
    18: (FeedMode.QUOTE, False),
    21: (FeedMode.FULL, True),
    22: (FeedMode.FULL, False),
}


def parse_request(text: str | bytes) -> SubscriptionRequest | DisconnectRequest:
    """Parse what a client sent on the feed (the simulator's side).

    Raises ValueError naming the problem: not UTF-8 JSON (e.g. the SDK's stray 83-byte binary
    header after a disconnect: a server should log and ignore it), not an object, a missing or
    unsupported RequestCode, a missing/mismatched InstrumentCount, more than 100 instruments,
    an unknown ExchangeSegment string or a SecurityId that is not a string of digits.
    """
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"feed request is not UTF-8 text: {exc}") from None
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"feed request is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError(f"feed request must be a JSON object, got {type(body).__name__}")
    if "RequestCode" not in body:
        raise ValueError("feed request has no RequestCode")
    code = body["RequestCode"]
    if isinstance(code, bool) or not isinstance(code, int):
        raise ValueError(f"RequestCode must be an integer, got {code!r}")
    if code == RequestCode.DISCONNECT:
        return DisconnectRequest()
    if code not in _LIST_CODES:
        raise ValueError(
            f"unsupported RequestCode {code}; expected 12, 15/16 (ticker), 17/18 (quote) "
            "or 21/22 (full)"
        )
    mode, subscribe = _LIST_CODES[code]
    items = body.get("InstrumentList")
    if not isinstance(items, list):
        raise ValueError(f"RequestCode {code} needs an InstrumentList array")
    if not items:
        raise ValueError("InstrumentList is empty")
    if len(items) > MAX_INSTRUMENTS_PER_MESSAGE:
        raise ValueError(
            f"InstrumentList has {len(items)} instruments; at most "
            f"{MAX_INSTRUMENTS_PER_MESSAGE} per message"
        )
    count = body.get("InstrumentCount")
    if isinstance(count, bool) or not isinstance(count, int):
        raise ValueError(f"InstrumentCount must be an integer, got {count!r}")
    if count != len(items):
        raise ValueError(f"InstrumentCount {count} does not match {len(items)} instruments")
    keys = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"InstrumentList[{index}] must be an object")
        seg = item.get("ExchangeSegment")
        if not isinstance(seg, str) or seg not in SEGMENT_CODES:
            raise ValueError(
                f"InstrumentList[{index}].ExchangeSegment {seg!r} is not one of "
                f"{', '.join(SEGMENT_CODES)}"
            )
        sid = item.get("SecurityId")
        # Dhan documents SecurityId as a string; a bare number is a client bug worth naming.
        if not isinstance(sid, str) or not sid.isdigit() or not sid.isascii():
            raise ValueError(
                f"InstrumentList[{index}].SecurityId must be a string of digits, got {sid!r}"
            )
        keys.append(f"{seg}:{_security_id(sid)}")
    return SubscriptionRequest(code, mode, subscribe, tuple(keys))
