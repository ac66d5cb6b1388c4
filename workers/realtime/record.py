"""The tick record: the merged latest state of one instrument, and its binary wire layout.

``TickRecord`` is what the realtime layer passes around (the merger builds it, the tick stores
keep and deliver it). In Redis its value is ``TickRecord.to_bytes()``: a fixed binary layout
written by one ``struct.pack`` and read by one ``unpack_from`` (layout at ``_WIRE_VERSION``), so
``redis-cli GET algo:tick:NSE_FNO:55796`` shows escaped bytes (only the key is legible). To read
one, decode it in Python and print ``as_dict()``::

    python manage.py shell -c "from django.conf import settings
    from workers.realtime.redis_tick_store import RedisTickStore
    print(RedisTickStore(settings.REDIS_URL).get('NSE_FNO:55796').as_dict())"

Hot path: the hub builds and packs one record per tick (50,000+/s on a busy day), so the record
avoids per-tick allocations beyond itself and its bytes: no datetimes, no dict per record.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any

from trading.rules.market import IST

__all__ = ["TickRecord", "copy_record", "encode_depth", "payload_seq", "unpack_depth_level"]


@dataclass(slots=True)
class TickRecord:
    """The merged latest state of one instrument, as the realtime layer passes it around.

    Times are float epoch seconds (true UTC epoch). ``seq`` increases by one per change of this
    key for one writer (the feed hub); readers compare it to tell newer from older. ``ltp`` is
    the last good (non-zero) LTP: 0.0 only while no packet with a price has been seen. Prices
    are the packet's float32 widened to float (152.3 arrives as 152.3000030517578): round for
    display. ``to_bytes`` carries every float as an exact float64 and every int as an int64, so
    a record read back equals the one written, except that an optional field holding NaN (or,
    for the int fields, a negative number) reads back as None: those are the wire's "no value"
    sentinels (see the layout below). Records are never mutated once handed out.
    """

    key: str
    seq: int
    ltp: float
    exchange_time: float | None
    receive_time: float
    ltq: int | None = None
    atp: float | None = None
    volume: int | None = None
    oi: int | None = None
    open: float | None = None
    high: float | None = None
    low: float | None = None
    close: float | None = None
    prev_close: float | None = None
    bid: float | None = None
    bid_qty: int | None = None
    ask: float | None = None
    ask_qty: int | None = None
    # A full packet's 5 depth levels as the packet's own 100 bytes (Dhan's wire layout,
    # little-endian, level 1 first): decoding 30 numbers per tick would cost more than the
    # rest of the record together, and most consumers only read best bid/ask (``bid``,
    # ``ask`` ...). ``depth`` decodes it on access; ``encode_depth`` builds it.
    depth_raw: bytes | None = None

    @property
    def depth(self) -> tuple[tuple[int, int, int, int, float, float], ...] | None:
        """The 5 levels, level 1 first, each (bid_qty, ask_qty, bid_orders, ask_orders,
        bid_price, ask_price); None when no full packet was seen."""
        raw = self.depth_raw
        return None if raw is None else tuple(_iter_depth(raw))

    def to_bytes(self) -> bytes:
        """The record as stored in Redis: one ``struct.pack`` into the binary layout described
        at ``_WIRE_VERSION`` (138 bytes plus the key, 100 more with depth).

        ValueError naming the field when one has the wrong type or does not fit (an int beyond
        int64, a key over 255 UTF-8 bytes, ``depth_raw`` not 100 bytes).
        """
        (ltq, atp, volume, oi, open_, high, low, close, prev_close, bid, bid_qty, ask, ask_qty,
         depth) = _optional_fields(self)  # fmt: skip
        et = self.exchange_time
        try:
            key = self.key.encode()
            if depth is None:
                pack = _PLAIN_PACKERS.get(len(key)) or _packer(len(key), False)
                depth = b""
            else:
                if len(depth) != _DEPTH_BYTES:
                    raise ValueError(
                        f"tick record field 'depth_raw' is {len(depth)} bytes, not {_DEPTH_BYTES}"
                    )
                pack = _DEPTH_PACKERS.get(len(key)) or _packer(len(key), True)
            # Sentinels for None, inline: a conditional expression per field is cheaper than
            # any generic pass over the 13 optional fields.
            return pack(
                _WIRE_VERSION,
                len(key),
                key,
                self.seq,
                self.ltp,
                _NAN if et is None else et,
                self.receive_time,
                -1 if ltq is None else ltq,
                _NAN if atp is None else atp,
                -1 if volume is None else volume,
                -1 if oi is None else oi,
                _NAN if open_ is None else open_,
                _NAN if high is None else high,
                _NAN if low is None else low,
                _NAN if close is None else close,
                _NAN if prev_close is None else prev_close,
                _NAN if bid is None else bid,
                -1 if bid_qty is None else bid_qty,
                _NAN if ask is None else ask,
                -1 if ask_qty is None else ask_qty,
                depth,
            )
        except (struct.error, AttributeError, TypeError):
            raise ValueError(_bad_field(self)) from None

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> TickRecord:
        """Parse ``to_bytes`` output with one ``unpack_from``; ValueError naming the problem
        (not bytes, truncated, an unknown layout version, a length that does not fit the key
        length, a key that is not UTF-8). NaN / negative optional fields read as None."""
        size = len(data)
        if size < _MIN_SIZE or data[0] != _WIRE_VERSION:
            raise ValueError(_bad_header(data))
        key_len = data[1]
        extra = size - _MIN_SIZE - key_len
        if extra == 0:
            unpack = _PLAIN_UNPACKERS.get(key_len) or _unpacker(key_len, False)
        elif extra == _DEPTH_BYTES:
            unpack = _DEPTH_UNPACKERS.get(key_len) or _unpacker(key_len, True)
        else:
            raise ValueError(
                f"tick record is {size} bytes; with its {key_len}-byte key it must be "
                f"{_MIN_SIZE + key_len} or {_MIN_SIZE + key_len + _DEPTH_BYTES} (truncated "
                "or not a tick record)"
            )
        (_, _, key, seq, ltp, et, rt, ltq, atp, volume, oi, open_, high, low, close, prev_close,
         bid, bid_qty, ask, ask_qty, depth) = unpack(data)  # fmt: skip
        try:
            text = key.decode()
        except UnicodeDecodeError:
            raise ValueError(f"tick record key {key!r} is not UTF-8") from None
        # x != x is the cheapest NaN test.
        return cls(
            text,
            seq,
            ltp,
            None if et != et else et,
            rt,
            None if ltq < 0 else ltq,
            None if atp != atp else atp,
            None if volume < 0 else volume,
            None if oi < 0 else oi,
            None if open_ != open_ else open_,
            None if high != high else high,
            None if low != low else low,
            None if close != close else close,
            None if prev_close != prev_close else prev_close,
            None if bid != bid else bid,
            None if bid_qty < 0 else bid_qty,
            None if ask != ask else ask,
            None if ask_qty < 0 else ask_qty,
            depth or None,
        )

    def as_dict(self) -> dict[str, Any]:
        """The record as plain JSON-serialisable values, for people and the dashboard.

        Every field by name (times as epoch seconds) except ``depth_raw``, which becomes
        ``depth``: a list of 5 dicts (bid_qty, ask_qty, bid_orders, ask_orders, bid_price,
        ask_price), level 1 first, or None. NaN and infinite floats (float32 garbage) are None
        there, as JSON has no such numbers. Not for the hot path.
        """
        out: dict[str, Any] = {
            name: _finite(value)
            for name, value in zip(_FIELD_NAMES[:-1], _all_fields(self)[:-1], strict=True)
        }
        depth = self.depth
        out["depth"] = (
            None
            if depth is None
            else [
                {name: _finite(value) for name, value in zip(_DEPTH_NAMES, level, strict=True)}
                for level in depth
            ]
        )
        return out

    @property
    def exchange_datetime(self) -> datetime | None:
        """``exchange_time`` as an aware Asia/Kolkata datetime (None if never traded)."""
        if self.exchange_time is None:
            return None
        return datetime.fromtimestamp(self.exchange_time, IST)

    @property
    def receive_datetime(self) -> datetime:
        """``receive_time`` as an aware Asia/Kolkata datetime."""
        return datetime.fromtimestamp(self.receive_time, IST)


_FIELD_NAMES: tuple[str, ...] = TickRecord.__slots__  # type: ignore[assignment]
# TickMerger.merge and the wire layout below build records positionally (one constructor call
# is the point): a reordered or added field must be noticed there, not silently misplaced.
_EXPECTED_FIELDS = (
    "key", "seq", "ltp", "exchange_time", "receive_time", "ltq", "atp", "volume", "oi", "open",
    "high", "low", "close", "prev_close", "bid", "bid_qty", "ask", "ask_qty", "depth_raw",
)  # fmt: skip
if _FIELD_NAMES != _EXPECTED_FIELDS:
    raise RuntimeError("TickRecord's fields changed: update the wire layout and TickMerger")
_INT_FIELDS = frozenset({"seq", "ltq", "volume", "oi", "bid_qty", "ask_qty"})
_REQUIRED_FIELDS = frozenset({"key", "seq", "ltp", "receive_time"})
_all_fields = attrgetter(*_FIELD_NAMES)
_optional_fields = attrgetter(*_FIELD_NAMES[5:])  # ltq .. depth_raw
_NAN = float("nan")

# The 5 depth levels of a full packet, each already in the record's tuple order.
_DEPTH_LEVEL = struct.Struct("<IIHHff")
_DEPTH_BYTES = 5 * _DEPTH_LEVEL.size
_DEPTH_NAMES = ("bid_qty", "ask_qty", "bid_orders", "ask_orders", "bid_price", "ask_price")
_iter_depth = _DEPTH_LEVEL.iter_unpack
unpack_depth_level = _DEPTH_LEVEL.unpack_from  # one level: the merger's best bid/ask

# Wire layout of a tick value, little-endian, written by one struct.pack and read by one
# unpack_from (the key length picks the cached Struct):
#
#   B    version (_WIRE_VERSION; a later layout gets a new number, an unknown one is refused)
#   B    key length n (UTF-8 bytes, at most 255), then n bytes of key
#   q    seq
#   d    ltp, exchange_time, receive_time
#   q/d  the optional fields in slot order: ltq q, atp d, volume q, oi q, open d, high d,
#        low d, close d, prev_close d, bid d, bid_qty q, ask d, ask_qty q
#   100s depth_raw, only when present: the value is then 100 bytes longer
#
# None is written as NaN (float fields) or -1 (int fields). Reading maps any NaN and any
# negative int in an optional field back to None, so a NaN price read back is None.
# 138 + n bytes without depth, 238 + n with: fixed widths cost more bytes than JSON for a
# ticker-only record (151 vs ~57 for NSE_FNO:55796) but no per-field formatting or parsing.
_WIRE_VERSION = 1
_FIELD_CODES = "".join("q" if name in _INT_FIELDS else "d" for name in _FIELD_NAMES[1:-1])
_FIXED_SIZE = struct.calcsize("<" + _FIELD_CODES)
_MIN_SIZE = 2 + _FIXED_SIZE  # version, key length, the fixed fields: an empty key, no depth
_MAX_KEY = 255
# Key length -> Struct method; at most 256 of each (keys are ~15 bytes in practice).
_PLAIN_PACKERS: dict[int, Callable[..., bytes]] = {}
_DEPTH_PACKERS: dict[int, Callable[..., bytes]] = {}
_PLAIN_UNPACKERS: dict[int, Callable[..., tuple[Any, ...]]] = {}
_DEPTH_UNPACKERS: dict[int, Callable[..., tuple[Any, ...]]] = {}
_unpack_seq = struct.Struct("<q").unpack_from


def _wire_struct(key_len: int, with_depth: bool) -> struct.Struct:
    # "0s" without depth: both shapes then take and give the same number of values.
    tail = f"{_DEPTH_BYTES}s" if with_depth else "0s"
    return struct.Struct(f"<BB{key_len}s{_FIELD_CODES}{tail}")


def _packer(key_len: int, with_depth: bool) -> Callable[..., bytes]:
    if key_len > _MAX_KEY:
        raise ValueError(f"tick record key is {key_len} UTF-8 bytes; at most {_MAX_KEY} fit")
    pack = _wire_struct(key_len, with_depth).pack
    (_DEPTH_PACKERS if with_depth else _PLAIN_PACKERS)[key_len] = pack
    return pack


def _unpacker(key_len: int, with_depth: bool) -> Callable[..., tuple[Any, ...]]:
    unpack = _wire_struct(key_len, with_depth).unpack_from
    (_DEPTH_UNPACKERS if with_depth else _PLAIN_UNPACKERS)[key_len] = unpack
    return unpack


def _bad_header(data: object) -> str:
    if not isinstance(data, bytes | bytearray | memoryview):
        return f"tick record must be bytes, got {type(data).__name__}"
    if len(data) and data[0] != _WIRE_VERSION:
        return f"unknown tick record version {data[0]} (this code reads version {_WIRE_VERSION})"
    return f"tick record is truncated: {len(data)} bytes, at least {_MIN_SIZE} needed"


def _bad_field(record: TickRecord) -> str:
    """Why ``to_bytes`` could not pack ``record`` (the slow path: one field at a time)."""
    if not isinstance(record.key, str):
        return f"tick record field 'key' must be a str, got {record.key!r}"
    for name in _FIELD_NAMES[1:]:
        value = getattr(record, name)
        if value is None and name not in _REQUIRED_FIELDS:
            continue
        code = f"{_DEPTH_BYTES}s" if name == "depth_raw" else "q" if name in _INT_FIELDS else "d"
        try:
            struct.pack("<" + code, value)
        except struct.error as exc:
            return f"tick record field {name!r} has a bad value {value!r} ({exc})"
    return "tick record could not be packed"


def _finite(value: object) -> object:
    return None if type(value) is float and not math.isfinite(value) else value


def encode_depth(levels: Iterable[tuple[int, int, int, int, float, float]]) -> bytes:
    """5 levels (bid_qty, ask_qty, bid_orders, ask_orders, bid_price, ask_price) -> the
    100-byte ``depth_raw`` of a TickRecord (what a full packet carries)."""
    raw = b"".join(_DEPTH_LEVEL.pack(*level) for level in levels)
    if len(raw) != _DEPTH_BYTES:
        raise ValueError(f"depth needs 5 levels, got {len(raw) // _DEPTH_LEVEL.size}")
    return raw


def copy_record(record: TickRecord) -> TickRecord:
    """A new record with the same fields (one positional constructor call)."""
    return TickRecord(*_all_fields(record))


def payload_seq(payload: bytes) -> int:
    """The seq of a ``to_bytes`` payload without decoding it all (it follows the key); -1 when
    the payload is not a record this code reads (``TickRecord.from_bytes`` then says why)."""
    try:
        if payload[0] == _WIRE_VERSION:
            return _unpack_seq(payload, 2 + payload[1])[0]
    except (IndexError, struct.error):
        pass
    return -1
