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
straight from ``struct`` output (no per-packet dicts, no per-field Python code; one class per
packet type so no field needs reordering or padding), a frame holding exactly one packet skips
the walking loop, ticker-only frames take a vectorised path, and the work most consumers never
need is deferred: LTT -> datetime (``exchange_time``, cached per second) and the 5 depth levels
(``depth``, from the raw bytes). ``bench/feed_decode.py`` measures it against the SDK.

Public API: ``decode_frame``, ``FeedStats``, ``Tick`` (= ``TickerTick | QuoteTick | FullTick``),
``OpenInterest``, ``PrevClose``, ``MarketStatus``, ``Disconnect``, ``DepthLevel``; ``encode_*``
and ``encode_packet``; ``subscribe_messages``, ``unsubscribe_messages``,
``disconnect_message``, ``parse_request``; ``ltt_to_datetime`` / ``datetime_to_ltt``; the
segment, request and response code enums and helpers.
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
from operator import add
from typing import NamedTuple, Protocol

from trading.rules.market import IST
from trading.rules.market import instrument_key as market_key

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
    return market_key(SEGMENT_NAMES[segment_code(segment)], _security_id(security_id))


def split_instrument_key(key: str) -> tuple[str, int]:
    """``"NSE_FNO:55796"`` -> ``("NSE_FNO", 55796)``; ValueError naming the problem."""
    seg, sep, sid = key.partition(":")
    if not sep:
        raise ValueError(f"instrument key {key!r} is not of the form SEGMENT:SECURITY_ID")
    return SEGMENT_NAMES[segment_code(seg)], _security_id(sid)


# The packet header carries the security id as a u32: no larger id can be on the feed.
MAX_SECURITY_ID = 0xFFFF_FFFF


def _security_id(security_id: int | str) -> int:
    # The binary header carries the id as a u32, so anything else cannot be on the feed.
    if isinstance(security_id, str):
        if not security_id.isdigit() or not security_id.isascii():
            raise ValueError(f"security id {security_id!r} is not a non-negative integer")
        security_id = int(security_id)
    if isinstance(security_id, bool) or not isinstance(security_id, int):
        raise ValueError(f"security id {security_id!r} is not an integer")
    if not 0 <= security_id <= MAX_SECURITY_ID:
        raise ValueError(f"security id {security_id} does not fit the feed's u32 field")
    return security_id


# ---------------------------------------------------------------------------------------------
# Exchange time

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

    The real packet in PROTOCOL.md (DhanHQ-py issue #90, NIFTY 24900 PE, filed 2025-07-25, a
    Friday) agrees, as far as it goes: the log shows only LTT's low half-word, ``58 9a``
    (0x9A58). If the log was taken the day it was filed, the only reading that lands in the
    09:15-15:30 session is the IST-shifted one: 0x68839A58 = 1753455192 -> 14:53:12 IST.
    Values with those low bits read as a true UTC epoch give 02:10:56 or 20:23:12 IST that day.
    The codec's tests pin this conversion on that value.

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
# Decoded types. NamedTuples built straight from struct output (one C call for the values, one
# for the object) and read by attribute: immutable, hashable, comparable, and far cheaper to
# make than a dataclass on a path every tick takes.


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


_DEPTH_LEVEL = struct.Struct("<IIHHff")  # 20 bytes, 5 of them @62 in a full packet
_DEPTH_CLASSES = (DepthLevel,) * 5
_BEST_QTYS = struct.Struct("<II").unpack_from  # level 1: bid qty, ask qty
_BEST_PRICES = struct.Struct("<12xff").unpack_from  # level 1: bid price, ask price
_new = tuple.__new__


class _HasInstrument(Protocol):
    segment_code: int
    security_id: int


class _HasDepth(Protocol):
    depth_raw: bytes | None


# Shared read-only attributes, attached to every packet class below.
def _exchange_segment(self: _HasInstrument) -> str:
    return _SEGMENT_NAME_TABLE[self.segment_code]


def _key(self: _HasInstrument) -> str:
    return market_key(_SEGMENT_NAME_TABLE[self.segment_code], self.security_id)


def _exchange_time(self: TickerTick | QuoteTick | FullTick) -> datetime | None:
    return ltt_to_datetime(self.ltt)


def _depth(self: _HasDepth) -> tuple[DepthLevel, ...] | None:
    raw = self.depth_raw
    if raw is None:
        return None
    return tuple(map(_new, _DEPTH_CLASSES, _DEPTH_LEVEL.iter_unpack(raw)))


def _best_bid_price(self: _HasDepth) -> float | None:
    raw = self.depth_raw
    return None if raw is None else _BEST_PRICES(raw)[0]


def _best_ask_price(self: _HasDepth) -> float | None:
    raw = self.depth_raw
    return None if raw is None else _BEST_PRICES(raw)[1]


def _best_bid_qty(self: _HasDepth) -> int | None:
    raw = self.depth_raw
    return None if raw is None else _BEST_QTYS(raw)[0]


def _best_ask_qty(self: _HasDepth) -> int | None:
    raw = self.depth_raw
    return None if raw is None else _BEST_QTYS(raw)[1]


class TickerTick(NamedTuple):
    """Code 2: LTP and LTT only. One of the three ``Tick`` classes; see ``Tick``."""

    kind: int
    segment_code: int
    security_id: int
    ltp: float
    ltt: int
    receive_time: datetime | None = None

    # Fields a ticker does not carry: None, so every Tick answers the same attributes.
    ltq = atp = volume = total_sell_qty = total_buy_qty = None
    open = close = high = low = None
    oi = oi_day_high = oi_day_low = depth_raw = None

    exchange_segment = property(_exchange_segment, doc="Segment string, e.g. 'NSE_FNO'.")
    key = property(_key, doc="Instrument key 'SEG:SID'.")
    exchange_time = property(_exchange_time, doc="LTT as aware Asia/Kolkata datetime or None.")
    depth = property(_depth)
    best_bid_price = property(_best_bid_price)
    best_ask_price = property(_best_ask_price)
    best_bid_qty = property(_best_bid_qty)
    best_ask_qty = property(_best_ask_qty)


class QuoteTick(NamedTuple):
    """Code 4: trade, volume and day OHLC, no OI (that comes as a code 5 packet), no depth."""

    kind: int
    segment_code: int
    security_id: int
    ltp: float
    ltq: int
    ltt: int
    atp: float
    volume: int
    total_sell_qty: int
    total_buy_qty: int
    open: float
    close: float  # only meaningful after the close, per Dhan's docs
    high: float
    low: float
    receive_time: datetime | None = None

    oi = oi_day_high = oi_day_low = depth_raw = None

    exchange_segment = property(_exchange_segment, doc="Segment string, e.g. 'NSE_FNO'.")
    key = property(_key, doc="Instrument key 'SEG:SID'.")
    exchange_time = property(_exchange_time, doc="LTT as aware Asia/Kolkata datetime or None.")
    depth = property(_depth)
    best_bid_price = property(_best_bid_price)
    best_ask_price = property(_best_ask_price)
    best_bid_qty = property(_best_bid_qty)
    best_ask_qty = property(_best_ask_qty)


class FullTick(NamedTuple):
    """Code 8: quote fields plus OI and 5-level depth.

    Depth stays as the packet's 100 raw bytes (``depth_raw``) and is decoded on access
    (``depth``, ``best_bid_price`` ...): building 5 level objects per packet would cost more
    than the rest of the packet, and most consumers only read ``ltp``.
    """

    kind: int
    segment_code: int
    security_id: int
    ltp: float
    ltq: int
    ltt: int
    atp: float
    volume: int
    total_sell_qty: int
    total_buy_qty: int
    oi: int
    oi_day_high: int
    oi_day_low: int
    open: float
    close: float
    high: float
    low: float
    depth_raw: bytes
    receive_time: datetime | None = None

    exchange_segment = property(_exchange_segment, doc="Segment string, e.g. 'NSE_FNO'.")
    key = property(_key, doc="Instrument key 'SEG:SID'.")
    exchange_time = property(_exchange_time, doc="LTT as aware Asia/Kolkata datetime or None.")
    depth = property(_depth, doc="The 5 DepthLevels, level 1 first.")
    best_bid_price = property(_best_bid_price)
    best_ask_price = property(_best_ask_price)
    best_bid_qty = property(_best_bid_qty)
    best_ask_qty = property(_best_ask_qty)


Tick = TickerTick | QuoteTick | FullTick
"""A ticker, quote or full packet: what a consumer of prices handles.

All three answer the same attributes (kind, segment_code, exchange_segment, security_id, key,
ltp, ltt, exchange_time, receive_time, ltq, atp, volume, total_sell_qty, total_buy_qty, open,
close, high, low, oi, oi_day_high, oi_day_low, depth_raw, depth, best bid/ask price and qty);
those a packet does not carry are None. ``isinstance(packet, Tick)`` works. Three classes
rather than one with padding because each is then built from its struct output as is, with no
reordering and no Nones to fill: this is the hottest path of the system.

Prices are float32 on the wire, widened to float (152.30 arrives as 152.3000030517578): round
for display, compare with a tolerance below the tick size. ``ltt`` is the raw IST-shifted
epoch, ``exchange_time`` the aware datetime (computed on access, cached per second).
``receive_time`` is whatever the caller passed to ``decode_frame``.
"""


class OpenInterest(NamedTuple):
    """Code 5: open interest, sent alongside quote packets."""

    segment_code: int
    security_id: int
    oi: int
    receive_time: datetime | None = None

    exchange_segment = property(_exchange_segment)
    key = property(_key)


class PrevClose(NamedTuple):
    """Code 6: previous day's close and OI (once per instrument after subscribing)."""

    segment_code: int
    security_id: int
    prev_close: float
    prev_oi: int
    receive_time: datetime | None = None

    exchange_segment = property(_exchange_segment)
    key = property(_key)


class MarketStatus(NamedTuple):
    """Code 7: market status. Dhan documents no body; ``payload`` is whatever follows the header."""

    segment_code: int
    security_id: int
    payload: bytes
    receive_time: datetime | None = None

    exchange_segment = property(_exchange_segment)
    key = property(_key)


class Disconnect(NamedTuple):
    """Code 50: the server is closing the connection; ``reason_code`` says why (805..814)."""

    segment_code: int
    security_id: int
    reason_code: int
    receive_time: datetime | None = None

    exchange_segment = property(_exchange_segment)
    key = property(_key)

    @property
    def reason(self) -> str:
        return DISCONNECT_REASONS.get(
            self.reason_code, f"Unknown disconnect reason {self.reason_code}"
        )


Packet = TickerTick | QuoteTick | FullTick | OpenInterest | PrevClose | MarketStatus | Disconnect

_COUNTER_BY_CODE = {
    2: "ticker",
    4: "quote",
    5: "oi",
    6: "prev_close",
    7: "market_status",
    8: "full",
    50: "disconnect",
}


class FeedStats:
    """Counters a decode loop owns and passes to every ``decode_frame`` call.

    Decoded packets per type (``ticker``, ``quote``, ``oi``, ``prev_close``, ``market_status``,
    ``full``, ``disconnect``; ``by_code`` gives them keyed by response code); ``unknown`` /
    ``unknown_codes``: packets with a code we do not decode, skipped by their length;
    ``truncated``: frames that ended in the middle of a packet; ``garbage``: bytes that could
    not be framed, a known code with the wrong length, or a frame that is not bytes;
    ``skipped_bytes``: every byte not decoded for one of those reasons.
    """

    # Plain slots, not a dict keyed by code: an attribute increment is the cheapest counter
    # there is, and it runs once per frame.
    __slots__ = (
        "disconnect",
        "frames",
        "full",
        "garbage",
        "market_status",
        "oi",
        "prev_close",
        "quote",
        "skipped_bytes",
        "ticker",
        "truncated",
        "unknown",
        "unknown_codes",
    )

    def __init__(self) -> None:
        self.frames = 0
        self.ticker = self.quote = self.full = 0
        self.oi = self.prev_close = self.market_status = self.disconnect = 0
        self.unknown = 0
        self.unknown_codes: dict[int, int] = {}
        self.truncated = 0
        self.garbage = 0
        self.skipped_bytes = 0

    @property
    def by_code(self) -> dict[int, int]:
        """Packets decoded per response code (all seven decoded codes, zeros included)."""
        return {code: getattr(self, name) for code, name in _COUNTER_BY_CODE.items()}

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
# Wire structs. Decoders skip the u16 length with "xx" (the framing code has read it), so each
# struct's output is exactly its class's fields up to receive_time.

_HDR = struct.Struct("<BH")  # code, length: all the framing loop needs
_TICKER = struct.Struct("<BxxBIfI")  # code, segment, sid, ltp, ltt
# code, segment, sid, ltp, ltq, ltt, atp, volume, total sell, total buy, open, close, high, low
_QUOTE = struct.Struct("<BxxBIfHIfIIIffff")
# as quote, with oi, oi day high, oi day low before open; the depth follows @62
_FULL = struct.Struct("<BxxBIfHIfIIIIIIffff")
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
assert len(TickerTick._fields) == len(_TICKER.unpack(bytes(TICKER_SIZE))) + 1
assert len(QuoteTick._fields) == len(_QUOTE.unpack(bytes(QUOTE_SIZE))) + 1
assert len(FullTick._fields) == len(_FULL.unpack(bytes(_DEPTH_OFFSET))) + 2

# Bound once: a method lookup per packet is measurable here.
_unpack_header = _HDR.unpack_from
_unpack_ticker = _TICKER.unpack_from
_unpack_ticker_word = struct.Struct("<IIfI").unpack  # code|length|segment as one u32, sid...
_unpack_quote = _QUOTE.unpack_from
_unpack_full = _FULL.unpack_from
_iter_tickers = _TICKER.iter_unpack
# Below this many packets the ticker fast path's fixed cost (3 slices, iterators) loses.
_FAST_PATH_MIN_BYTES = 8 * TICKER_SIZE


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

    # One packet per frame is what Dhan's server sends most of the time (the SDK could not work
    # otherwise), so a frame of exactly one ticker, quote or full packet skips the walking
    # loop: one unpack, the length checked byte by byte (u16 LE at offsets 1-2), one object.
    # Sizes are literals here (a constant load is cheaper than a global lookup): 16 ticker,
    # 50 quote, 162 full, 62 depth offset.
    if n == 16:
        # The hottest case: bytes 0-3 read as one u32 check code 2 and length 16 in a single
        # comparison, and its top byte is the segment.
        head, security_id, ltp, ltt = _unpack_ticker_word(data)
        if head & 0xFFFFFF == 0x001002:
            if stats is not None:
                stats.frames += 1
                stats.ticker += 1
            return [_new(TickerTick, (2, head >> 24, security_id, ltp, ltt, receive_time))]
    elif n == 50:
        values = _unpack_quote(data, 0)
        if values[0] == 4 and data[1] == 50 and data[2] == 0:
            if stats is not None:
                stats.frames += 1
                stats.quote += 1
            return [_new(QuoteTick, (*values, receive_time))]
    elif n == 162:
        values = _unpack_full(data, 0)
        if values[0] == 8 and data[1] == 162 and data[2] == 0:
            if stats is not None:
                stats.frames += 1
                stats.full += 1
            return [_new(FullTick, (*values, data[62:], receive_time))]
    elif n >= _FAST_PATH_MIN_BYTES and not n & 15:
        # A frame made only of ticker packets (a busy feed in ticker mode, indices) is
        # checked with three C-level slice counts and decoded by iter_unpack with no
        # Python code per packet.
        count = n >> 4
        if (
            data[0::16].count(2) == count
            and data[1::16].count(TICKER_SIZE) == count
            and data[2::16].count(0) == count
        ):
            ticks: list[Packet] = list(
                map(
                    _new,
                    repeat(TickerTick, count),
                    map(add, _iter_tickers(data), repeat((receive_time,), count)),
                )
            )
            if stats is not None:
                stats.frames += 1
                stats.ticker += count
            return ticks
    return _walk(data, n, receive_time, stats)


def _walk(
    data: bytes, n: int, receive_time: datetime | None, stats: FeedStats | None
) -> list[Packet]:
    """The general case: walk the packets of a frame by their length fields."""
    out: list[Packet] = []
    append = out.append
    received = (receive_time,)
    n_ticker = n_quote = n_full = 0
    off = 0
    if not n:
        _count_bad(stats, "garbage", 0)  # an empty binary frame is not something Dhan sends
    try:
        while off < n:
            # Fewer than 3 bytes left raise struct.error here; fewer than 8 are caught below
            # by `end > n` since length >= 8 is required: one bounds check per packet.
            code, length = _unpack_header(data, off)
            end = off + length
            if length < HEADER_SIZE or end > n:
                if n - off < HEADER_SIZE or length >= HEADER_SIZE:
                    _count_bad(stats, "truncated", n - off)  # cut-off header or packet
                else:
                    # A length below the header size cannot move us forward: nothing after
                    # it can be framed.
                    _count_bad(stats, "garbage", n - off)
                break
            if code == 2:
                if length == TICKER_SIZE:
                    append(_new(TickerTick, _unpack_ticker(data, off) + received))
                    n_ticker += 1
                else:
                    _count_bad(stats, "garbage", length)
            elif code == 4:
                if length == QUOTE_SIZE:
                    append(_new(QuoteTick, _unpack_quote(data, off) + received))
                    n_quote += 1
                else:
                    _count_bad(stats, "garbage", length)
            elif code == 8:
                if length == FULL_SIZE:
                    depth = data[off + _DEPTH_OFFSET : end]
                    append(_new(FullTick, (*_unpack_full(data, off), depth, receive_time)))
                    n_full += 1
                else:
                    _count_bad(stats, "garbage", length)
            else:
                packet = _decode_other(code, length, data, off, receive_time, stats)
                if packet is not None:
                    append(packet)
            off = end
    except struct.error:
        # Only the header read can hit the end: 1 or 2 bytes left.
        _count_bad(stats, "truncated", n - off)
    except (TypeError, ValueError):  # pragma: no cover - belt and braces
        # Every body read above is bounds-checked first; this only keeps a bug of ours from
        # taking the feed loop down.
        _count_bad(stats, "garbage", n - off)
    if stats is not None:
        stats.frames += 1
        stats.ticker += n_ticker
        stats.quote += n_quote
        stats.full += n_full
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
        name = _COUNTER_BY_CODE[code]
        setattr(stats, name, getattr(stats, name) + 1)
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


def _pack(layout: struct.Struct, *values: float) -> bytes:
    # struct.error is not a ValueError; the simulator should see one clear error type when a
    # value does not fit its wire field (e.g. an LTQ above 65535 or a negative volume).
    try:
        return layout.pack(*values)
    except struct.error as exc:
        raise ValueError(f"cannot encode feed packet {values[:4]}...: {exc}") from None


def encode_ticker(segment: str | int, security_id: int | str, ltp: float, ltt: LttLike) -> bytes:
    """Code 2, 16 bytes."""
    return _pack(
        _ENC_TICKER,
        2,
        TICKER_SIZE,
        segment_code(segment),
        _security_id(security_id),
        ltp,
        _ltt(ltt),
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
    return _pack(
        _ENC_QUOTE,
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
    head = _pack(
        _ENC_FULL,
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
    levels = [_pack(_DEPTH_LEVEL, *level) for level in depth]
    levels.extend(bytes(_DEPTH_LEVEL.size) for _ in range(5 - len(depth)))
    return head + b"".join(levels)


def encode_oi(segment: str | int, security_id: int | str, oi: int) -> bytes:
    """Code 5, 12 bytes."""
    return _pack(_ENC_OI, 5, OI_SIZE, segment_code(segment), _security_id(security_id), oi)


def encode_prev_close(
    segment: str | int, security_id: int | str, prev_close: float, prev_oi: int = 0
) -> bytes:
    """Code 6, 16 bytes."""
    return _pack(
        _ENC_PREV_CLOSE,
        6,
        PREV_CLOSE_SIZE,
        segment_code(segment),
        _security_id(security_id),
        prev_close,
        prev_oi,
    )


def encode_market_status(
    segment: str | int = 0, security_id: int | str = 0, payload: bytes = b""
) -> bytes:
    """Code 7: the header plus an (undocumented) payload."""
    return (
        _pack(
            _ENC_HEADER,
            7,
            HEADER_SIZE + len(payload),
            segment_code(segment),
            _security_id(security_id),
        )
        + payload
    )


def encode_disconnect(
    reason_code: int, segment: str | int = 0, security_id: int | str = 0
) -> bytes:
    """Code 50, 10 bytes: u16 reason code at offset 8."""
    return _pack(
        _ENC_DISCONNECT,
        50,
        DISCONNECT_SIZE,
        segment_code(segment),
        _security_id(security_id),
        reason_code,
    )


def encode_packet(packet: Packet) -> bytes:
    """Encode a decoded packet back to its wire bytes (``decode_frame`` inverse)."""
    if isinstance(packet, TickerTick):
        return encode_ticker(packet.segment_code, packet.security_id, packet.ltp, packet.ltt)
    if isinstance(packet, QuoteTick | FullTick):
        fields = packet._asdict()
        for name in ("kind", "segment_code", "security_id", "receive_time", "depth_raw"):
            fields.pop(name, None)
        if isinstance(packet, QuoteTick):
            return encode_quote(packet.segment_code, packet.security_id, **fields)
        depth = packet.depth or ()
        return encode_full(packet.segment_code, packet.security_id, depth=depth, **fields)
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
        keys.append(market_key(seg, _security_id(sid)))
    return SubscriptionRequest(code, mode, subscribe, tuple(keys))
