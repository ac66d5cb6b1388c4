"""The realtime layer: latest tick per instrument, tick notifications, events, small JSON state.

Three services, each with an in-memory implementation (embedded mode: one process, no Redis)
and a Redis one (split mode: the feed hub writes, every other process reads):

* ``TickStore``: the latest ``TickRecord`` per instrument key plus coalescing subscriptions
  (``TickSubscription``). The feed hub turns decoded packets into records with ``TickMerger``
  and ``publish``es them; exit engine, PnL monitor and dashboard subscribe to the keys they
  care about and always get the *latest* value per key, never a backlog.
* ``EventBus``: rare events (candle closed, health changed) as JSON, FIFO per subscription,
  bounded (drop oldest, counted).
* ``KeyValueStore``: small JSON values with TTL (health, heartbeats, PnL snapshots) and capped
  lists (recent candles).

``realtime_from_settings()`` builds all three from ``settings.REDIS_URL``.

Hot path: the hub calls ``TickMerger.merge`` and ``RedisTickStore.publish`` for every tick
(50,000+/s on a busy day), so both avoid per-tick allocations beyond one record and its bytes:
no datetimes, no dict per record, one constructor call per merged packet, a fixed binary value
layout written by one ``struct.pack`` (and read by one ``unpack_from``), one Lua call (SET +
PUBLISH per record) per 2,000 records written as raw RESP on a dedicated connection, batches
pipelined. Subscribers get pub/sub messages through a hand-written RESP reader for the same
reason (redis-py's ``PubSub.get_message`` manages ~25k messages/s here).

Redis layout (``prefix`` defaults to ``"algo:"``): ``{prefix}tick:{key}`` is both the value key
of the latest record and the pub/sub channel it is announced on; ``{prefix}ev:{topic}`` event
channels; ``{prefix}kv:{name}`` key-value entries and lists. Everything in Redis can be lost
and rebuilt (ARCHITECTURE.md): a restarted Redis is refilled by the next ticks.

Tick values are binary (``TickRecord.to_bytes``, layout at ``_WIRE_VERSION``), so
``redis-cli GET algo:tick:NSE_FNO:55796`` shows escaped bytes (only the key is legible). To
read one, decode it in Python and print ``as_dict()``::

    python manage.py shell -c "from django.conf import settings; from workers.ticks import *
    print(RedisTickStore(settings.REDIS_URL).get('NSE_FNO:55796').as_dict())"

Events and key-value entries are JSON text, readable in redis-cli as they are.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from trading.dhan.feed_codec import (
    IST_OFFSET_SECONDS,
    SEGMENT_CODES,
    FullTick,
    OpenInterest,
    Packet,
    PrevClose,
    QuoteTick,
    TickerTick,
    segment_name,
    split_instrument_key,
)

if TYPE_CHECKING:  # redis is only imported where a Redis implementation is built
    import redis

log = logging.getLogger(__name__)

IST = ZoneInfo("Asia/Kolkata")

__all__ = [
    "EventBus",
    "EventSubscription",
    "KeyValueStore",
    "MemoryEventBus",
    "MemoryKeyValueStore",
    "MemoryTickStore",
    "Realtime",
    "RedisEventBus",
    "RedisKeyValueStore",
    "RedisTickStore",
    "StoreUnavailable",
    "TickMerger",
    "TickRecord",
    "TickStore",
    "TickSubscription",
    "realtime_from_settings",
]


class StoreUnavailable(ConnectionError):
    """Redis could not be reached (connection refused, reset or timed out).

    The caller carries on without the store: the feed hub marks feed health stale and keeps
    merging (the next publish reconnects), readers treat their data as unknown. Nothing is
    retried here, so a dead Redis costs one failed round trip per call, not a retry storm.
    """


# ---------------------------------------------------------------------------------------------
# TickRecord


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
_unpack_level = _DEPTH_LEVEL.unpack_from

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


# ---------------------------------------------------------------------------------------------
# TickMerger


_NEVER = datetime(1970, 1, 1, tzinfo=IST)  # a datetime no packet carries (by identity)


def _copy_record(record: TickRecord) -> TickRecord:
    return TickRecord(*_all_fields(record))


class TickMerger:
    """Packets -> merged TickRecords. Keeps the latest record per key in memory.

    Pure and single-threaded (the feed hub's dispatcher thread). Each packet yields a *new*
    record object, built by one constructor call from the packet's fields and the fields it
    does not carry (taken from the previous record), so records already handed out are never
    mutated behind a consumer's back.

    Merge rules: a ticker/quote/full packet updates the fields it carries; ``ltp`` only when the
    packet's LTP is > 0 (a zero or missing LTP never overwrites a good one), ``exchange_time``
    only when LTT is non-zero (``ltt - 19800``, see feed_codec.ltt_to_datetime); full packets
    also set ``oi``, best bid/ask with quantities from depth level 1, and ``depth``. An
    OpenInterest packet sets ``oi``, a PrevClose sets ``prev_close``. Every change sets
    ``receive_time`` from the packet and increments ``seq``. MarketStatus and Disconnect are
    ignored. A key whose first packets carry no LTP yields records with ``ltp`` 0.0.

    ``seq_start(key)`` gives the last seq a previous writer used for a key seen for the first
    time (warm start after a restart, so readers comparing seqs do not take the new writer's
    records for old ones); ``load`` does the same from whole records.
    """

    def __init__(self, seq_start: Callable[[str], int] | None = None) -> None:
        self._seq_start = seq_start
        # Keyed by (segment_code << 32 | security_id): an int key costs no string formatting
        # per packet; the "SEG:SID" string is built once per instrument.
        self._latest: dict[int, TickRecord] = {}
        # Identity cache of the last receive datetime -> epoch float (never None itself).
        self._last_dt: datetime = _NEVER
        self._last_ts = 0.0

    def _new_record(self, segment_code: int, security_id: int) -> TickRecord:
        key = f"{segment_name(segment_code)}:{security_id}"
        seq = self._seq_start(key) if self._seq_start is not None else 0
        return TickRecord(key, int(seq or 0), 0.0, None, 0.0)

    def merge(self, packets: Sequence[Packet]) -> list[TickRecord]:
        """Merge a frame's packets; return the changed records in arrival order (a key may
        appear more than once)."""
        out: list[TickRecord] = []
        append = out.append
        latest = self._latest
        last_dt = self._last_dt
        last_ts = self._last_ts
        offset = IST_OFFSET_SECONDS
        # Each packet is unpacked as the tuple it is (one C step), then the record is built
        # positionally in TickRecord's slot order (checked at import by _EXPECTED_FIELDS).
        # Fields carried over are plain attribute loads: specialised slot reads, ~2x cheaper
        # than an attrgetter tuple splatted into the call.
        for packet in packets:
            kind = type(packet)
            if kind is TickerTick:
                _, segment_code, security_id, ltp, ltt, received = packet  # type: ignore[misc]
            elif kind is FullTick:
                (_, segment_code, security_id, ltp, ltq, ltt, atp, volume, _, _, oi, _, _, open_,
                 close, high, low, raw, received) = packet  # type: ignore[misc]  # fmt: skip
            elif kind is QuoteTick:
                (_, segment_code, security_id, ltp, ltq, ltt, atp, volume, _, _, open_, close,
                 high, low, received) = packet  # type: ignore[misc]  # fmt: skip
            elif kind is OpenInterest:
                segment_code, security_id, oi, received = packet  # type: ignore[misc]
            elif kind is PrevClose:
                segment_code, security_id, prev_close, _, received = packet  # type: ignore[misc]
            else:
                continue  # MarketStatus, Disconnect: not tick data
            code = segment_code << 32 | security_id
            previous = latest.get(code)
            if previous is None:
                previous = self._new_record(segment_code, security_id)
            # Every packet of a frame shares one receive datetime: convert it once.
            if received is last_dt:
                receive_time = last_ts
            elif received is None:
                receive_time = time.time()
            else:
                last_dt = received
                receive_time = last_ts = received.timestamp()
            if kind is TickerTick:
                record = TickRecord(
                    previous.key,
                    previous.seq + 1,
                    ltp if ltp > 0 else previous.ltp,
                    float(ltt - offset) if ltt else previous.exchange_time,
                    receive_time,
                    previous.ltq,
                    previous.atp,
                    previous.volume,
                    previous.oi,
                    previous.open,
                    previous.high,
                    previous.low,
                    previous.close,
                    previous.prev_close,
                    previous.bid,
                    previous.bid_qty,
                    previous.ask,
                    previous.ask_qty,
                    previous.depth_raw,
                )
            elif kind is FullTick:
                bid_qty, ask_qty, _, _, bid, ask = _unpack_level(raw)
                record = TickRecord(
                    previous.key,
                    previous.seq + 1,
                    ltp if ltp > 0 else previous.ltp,
                    float(ltt - offset) if ltt else previous.exchange_time,
                    receive_time,
                    ltq,
                    atp,
                    volume,
                    oi,
                    open_,
                    high,
                    low,
                    close,
                    previous.prev_close,
                    bid,
                    bid_qty,
                    ask,
                    ask_qty,
                    raw,
                )
            elif kind is QuoteTick:
                record = TickRecord(
                    previous.key,
                    previous.seq + 1,
                    ltp if ltp > 0 else previous.ltp,
                    float(ltt - offset) if ltt else previous.exchange_time,
                    receive_time,
                    ltq,
                    atp,
                    volume,
                    previous.oi,
                    open_,
                    high,
                    low,
                    close,
                    previous.prev_close,
                    previous.bid,  # a quote has no depth: best bid/ask and depth stay
                    previous.bid_qty,
                    previous.ask,
                    previous.ask_qty,
                    previous.depth_raw,
                )
            elif kind is OpenInterest:
                record = TickRecord(
                    previous.key,
                    previous.seq + 1,
                    previous.ltp,
                    previous.exchange_time,
                    receive_time,
                    previous.ltq,
                    previous.atp,
                    previous.volume,
                    oi,
                    previous.open,
                    previous.high,
                    previous.low,
                    previous.close,
                    previous.prev_close,
                    previous.bid,
                    previous.bid_qty,
                    previous.ask,
                    previous.ask_qty,
                    previous.depth_raw,
                )
            else:  # PrevClose
                record = TickRecord(
                    previous.key,
                    previous.seq + 1,
                    previous.ltp,
                    previous.exchange_time,
                    receive_time,
                    previous.ltq,
                    previous.atp,
                    previous.volume,
                    previous.oi,
                    previous.open,
                    previous.high,
                    previous.low,
                    previous.close,
                    prev_close,
                    previous.bid,
                    previous.bid_qty,
                    previous.ask,
                    previous.ask_qty,
                    previous.depth_raw,
                )
            latest[code] = record
            append(record)
        self._last_dt = last_dt
        self._last_ts = last_ts
        return out

    def get(self, key: str) -> TickRecord | None:
        try:
            segment, security_id = split_instrument_key(key)
        except ValueError:
            return None
        return self._latest.get(_code(segment, security_id))

    def snapshot(self) -> dict[str, TickRecord]:
        """Latest record per key (the records themselves: they are never mutated)."""
        return {record.key: record for record in self._latest.values()}

    def load(self, records: Iterable[TickRecord]) -> None:
        """Warm start: adopt ``records`` (e.g. ``store.get_many(keys)``) as the latest values,
        so seqs continue and a zero-LTP packet after a restart keeps the stored good LTP."""
        for record in records:
            try:
                segment, security_id = split_instrument_key(record.key)
            except ValueError:
                log.warning("tick record with a bad key %r not loaded", record.key)
                continue
            code = _code(segment, security_id)
            current = self._latest.get(code)
            if current is None or record.seq >= current.seq:
                # A copy: the caller's object may be changed later, ours never is.
                self._latest[code] = _copy_record(record)


def _code(segment: str, security_id: int) -> int:
    return SEGMENT_CODES[segment] << 32 | security_id


# ---------------------------------------------------------------------------------------------
# Subscriptions


class _SubscriptionOwner(Protocol):
    def _sub_add(self, sub: TickSubscription, keys: list[str]) -> None: ...
    def _sub_remove(self, sub: TickSubscription, keys: list[str]) -> None: ...
    def _sub_close(self, sub: TickSubscription) -> None: ...


# A pending entry: (seq, record or its undecoded bytes). Redis subscriptions keep the bytes and
# decode in wait(), so a record superseded before the consumer looks is never parsed.
_Pending = tuple[int, "TickRecord | bytes"]


class TickSubscription:
    """Coalescing: holds at most one (the latest by seq) record per key; memory bounded by
    the number of keys whatever the tick rate. Thread-safe.

    ``wait`` returns what changed since the last call, latest value per key. A consumer that
    falls behind loses intermediate values (counted in ``dropped_superseded``), never the
    latest. A record older (lower seq) than the one pending for its key is ignored
    (``dropped_stale``): after a reconnect the current value read from Redis can race with
    a message. The same record can be delivered twice (a resync after a reconnect, or ``add``
    of a key whose value is already pending): consumers compare ``seq`` when that matters.

    ``on_ready(subscription)``, when given, is called each time the subscription goes from
    nothing pending to something pending, on the thread that delivered the value (Redis: the
    listener thread; memory: the publisher's). It lets a consumer react without a thread hop
    of its own: typically it calls ``take()`` (or hands off). It must be quick: while it runs
    the listener reads nothing, values queue in the socket and then in Redis, and Redis drops
    a pub/sub client that lets its output buffer overflow (the listener then reconnects and
    re-reads current values, so the latest value still arrives). An exception is logged.
    """

    def __init__(
        self,
        owner: _SubscriptionOwner,
        *,
        all_keys: bool = False,
        on_ready: Callable[[TickSubscription], object] | None = None,
    ) -> None:
        self._owner = owner
        self._on_ready = on_ready
        self._cond = threading.Condition(threading.Lock())
        self._pending: dict[str, _Pending] = {}
        self._keys: set[str] = set()
        self.all_keys = all_keys
        self.closed = False
        self.dropped_superseded = 0
        self.dropped_stale = 0
        self.decode_errors = 0

    def add(self, keys: Iterable[str]) -> None:
        """Follow ``keys`` too; their current values (if any) are delivered by the next wait."""
        with self._cond:  # filtered under the lock: two threads adding a key route it once
            if self.closed:
                return
            new = [key for key in dict.fromkeys(keys) if key not in self._keys]
            self._keys.update(new)
        if new and not self.all_keys:  # an all-keys subscription already gets every key
            self._owner._sub_add(self, new)

    def remove(self, keys: Iterable[str]) -> None:
        with self._cond:
            gone = [key for key in dict.fromkeys(keys) if key in self._keys]
            self._keys.difference_update(gone)
            if not self.all_keys:
                for key in gone:
                    self._pending.pop(key, None)
        if gone and not self.all_keys:
            self._owner._sub_remove(self, gone)

    def keys(self) -> frozenset[str]:
        with self._cond:
            return frozenset(self._keys)

    @property
    def pending(self) -> int:
        """Number of keys with a value waiting for ``wait`` (bounded by the number of keys)."""
        return len(self._pending)

    def wait(self, timeout: float | None = None) -> dict[str, TickRecord]:
        """Block until at least one key changed (or ``timeout`` -> ``{}``; a closed
        subscription returns ``{}`` at once); return and clear the latest-per-key values."""
        with self._cond:
            if not self._pending and not self.closed:
                self._cond.wait_for(lambda: self._pending or self.closed, timeout)
            taken = self._pending
            if not taken:
                return {}
            self._pending = {}
        out: dict[str, TickRecord] = {}
        for key, (_seq, item) in taken.items():
            if type(item) is bytes:
                try:
                    out[key] = TickRecord.from_bytes(item)
                except ValueError as exc:
                    self.decode_errors += 1
                    log.warning("undecodable tick record for %s dropped: %s", key, exc)
            else:
                out[key] = item  # type: ignore[assignment]
        return out

    def take(self) -> dict[str, TickRecord]:
        """What is pending now (latest per key), without blocking: for ``on_ready``."""
        return self.wait(0)

    def close(self) -> None:
        if self.closed:
            return
        with self._cond:
            self.closed = True
            self._pending.clear()
            self._cond.notify_all()
        self._owner._sub_close(self)

    def __enter__(self) -> TickSubscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _offer(self, items: dict[str, _Pending], superseded: int = 0) -> None:
        """Store newer values (called by the store's publisher or listener thread)."""
        stale = 0
        with self._cond:
            if self.closed:
                return
            pending = self._pending
            keys = self._keys
            all_keys = self.all_keys
            was_empty = not pending
            for key, entry in items.items():
                if not all_keys and key not in keys:
                    continue  # removed while the message was in flight
                old = pending.get(key)
                if old is None:
                    pending[key] = entry
                elif entry[0] >= old[0]:
                    pending[key] = entry
                    superseded += 1
                else:
                    stale += 1
            self.dropped_superseded += superseded
            self.dropped_stale += stale
            ready = was_empty and pending
            if ready:
                self._cond.notify_all()
        if ready and self._on_ready is not None:
            try:
                self._on_ready(self)
            except Exception:
                log.exception("tick subscription on_ready callback failed")


# ---------------------------------------------------------------------------------------------
# TickStore


class TickStore(Protocol):
    def publish(self, records: Sequence[TickRecord]) -> None:
        """Store the latest per key and notify subscribers of those keys."""
        ...

    def get(self, key: str) -> TickRecord | None: ...

    def get_many(self, keys: Iterable[str]) -> dict[str, TickRecord]: ...

    def subscribe(
        self,
        keys: Iterable[str] = (),
        *,
        all_keys: bool = False,
        on_ready: Callable[[TickSubscription], object] | None = None,
    ) -> TickSubscription: ...

    def close(self) -> None: ...


class MemoryTickStore:
    """In-process TickStore (embedded mode): a dict plus direct hand-off to subscriptions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, TickRecord] = {}
        self._routes: dict[str, tuple[TickSubscription, ...]] = {}
        self._all: tuple[TickSubscription, ...] = ()

    def publish(self, records: Sequence[TickRecord]) -> None:
        if not records:
            return
        batches: dict[TickSubscription, dict[str, _Pending]] = {}
        superseded: dict[TickSubscription, int] = {}
        with self._lock:
            latest = self._latest
            routes = self._routes
            all_subs = self._all
            for record in records:
                key = record.key
                latest[key] = record
                subs = routes.get(key, ())
                if all_subs:
                    subs = subs + all_subs
                for sub in subs:
                    batch = batches.get(sub)
                    if batch is None:
                        batch = batches[sub] = {}
                    if key in batch:
                        superseded[sub] = superseded.get(sub, 0) + 1
                    batch[key] = (record.seq, record)
            # Offered under the store lock so a subscription added concurrently cannot get
            # its initial value after a newer published one.
            for sub, batch in batches.items():
                sub._offer(batch, superseded.get(sub, 0))

    def get(self, key: str) -> TickRecord | None:
        return self._latest.get(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, TickRecord]:
        latest = self._latest
        return {key: latest[key] for key in keys if key in latest}

    def subscribe(
        self,
        keys: Iterable[str] = (),
        *,
        all_keys: bool = False,
        on_ready: Callable[[TickSubscription], object] | None = None,
    ) -> TickSubscription:
        sub = TickSubscription(self, all_keys=all_keys, on_ready=on_ready)
        if all_keys:
            with self._lock:
                self._all = (*self._all, sub)
                sub._offer({key: (r.seq, r) for key, r in self._latest.items()})
        sub.add(keys)
        return sub

    def close(self) -> None:
        with self._lock:
            subs = {s for subs in self._routes.values() for s in subs} | set(self._all)
        for sub in subs:
            sub.close()

    def _sub_add(self, sub: TickSubscription, keys: list[str]) -> None:
        with self._lock:
            current = {}
            for key in keys:
                self._routes[key] = (*self._routes.get(key, ()), sub)
                record = self._latest.get(key)
                if record is not None:
                    current[key] = (record.seq, record)
            if current:
                sub._offer(current)

    def _sub_remove(self, sub: TickSubscription, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                subs = tuple(s for s in self._routes.get(key, ()) if s is not sub)
                if subs:
                    self._routes[key] = subs
                else:
                    self._routes.pop(key, None)

    def _sub_close(self, sub: TickSubscription) -> None:
        if not sub.all_keys:
            self._sub_remove(sub, list(sub._keys))
            return
        with self._lock:
            self._all = tuple(s for s in self._all if s is not sub)


# ---------------------------------------------------------------------------------------------
# Redis plumbing


def _redis_client(url_or_client: str | redis.Redis) -> redis.Redis:
    import redis

    if isinstance(url_or_client, str):
        return redis.Redis.from_url(url_or_client)
    return url_or_client


def _make_connection(client: redis.Redis, **overrides: Any) -> redis.connection.AbstractConnection:
    """A connection of its own, configured like ``client``'s pool (URL, auth, db, TLS)."""
    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, **overrides}
    # Maintenance (push) notifications need RESP3 handling that raw RESP use bypasses; the
    # pool's handler also belongs to pooled connections only.
    kwargs.pop("maint_notifications_pool_handler", None)
    kwargs["maint_notifications_config"] = None
    return pool.connection_class(**kwargs)


def _redis_errors() -> tuple[type[BaseException], ...]:
    """What makes Redis unavailable for our purposes: no connection, a timeout, a replica
    that became read-only in a failover, or a full Redis (maxmemory with noeviction)."""
    import redis

    return (
        redis.ConnectionError,
        redis.TimeoutError,
        redis.exceptions.ReadOnlyError,
        redis.exceptions.OutOfMemoryError,
        OSError,
    )


def _glob_escape(text: str) -> str:
    out = []
    for char in text:
        if char in "*?[]\\":
            out.append("\\")
        out.append(char)
    return "".join(out)


class _Unavailable:
    """Context manager turning Redis connection failures into StoreUnavailable."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if (
            exc is not None
            and isinstance(exc, _redis_errors())
            and not isinstance(exc, StoreUnavailable)
        ):
            raise StoreUnavailable(f"Redis unavailable ({self.what}): {exc}") from exc


class _ListenerHandler(Protocol):
    def _on_messages(self, messages: list[tuple[bytes, bytes, bool]]) -> None: ...
    def _on_subscribed(self, channels: list[bytes], patterns: list[bytes]) -> None: ...


class _PubSubListener:
    """One pub/sub connection read by one daemon thread, with reconnects.

    Reads raw RESP (protocol 2) straight off the socket and hands each chunk's messages to the
    handler as ``(channel, payload, from_pattern)``; subscribe confirmations go to
    ``_on_subscribed`` so the handler can fetch current values once the subscription is live
    (a value read before that could miss a publish in between). On connection loss it
    reconnects with capped backoff (0.1 s doubling to 5 s) and resubscribes everything, which
    triggers those confirmations again. A silent connection is probed with PING every
    ``ping_interval`` s and dropped when the probe gets no answer.
    """

    def __init__(
        self,
        client: redis.Redis,
        handler: _ListenerHandler,
        name: str,
        *,
        ping_interval: float = 5.0,
    ) -> None:
        self._client = client
        self._handler = handler
        self._name = name
        self._ping_interval = ping_interval
        self._lock = threading.Lock()
        self._channels: set[bytes] = set()
        self._patterns: set[bytes] = set()
        self._sock: socket.socket | None = None
        self._conn: Any = None
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()
        # Channels/patterns Redis confirmed on the current connection (guarded by _confirmed).
        self._confirmed = threading.Condition(threading.Lock())
        self._confirmed_names: set[bytes] = set()
        self.reconnects = 0
        self.last_error: str | None = None

    def start(self) -> None:
        with self._lock:
            if self._thread is None and not self._closed.is_set():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def subscribe(self, channels: Iterable[bytes], *, pattern: bool = False) -> None:
        target = self._patterns if pattern else self._channels
        with self._lock:
            new = [c for c in channels if c not in target]
            target.update(new)
            if new:
                self._send(b"PSUBSCRIBE" if pattern else b"SUBSCRIBE", new)
        self.start()

    def wait_subscribed(self, channels: Iterable[bytes], timeout: float) -> bool:
        """Block until Redis confirmed every one of ``channels`` (or ``timeout``)."""
        wanted = set(channels)
        with self._confirmed:
            return self._confirmed.wait_for(lambda: wanted <= self._confirmed_names, timeout)

    def unsubscribe(self, channels: Iterable[bytes], *, pattern: bool = False) -> None:
        target = self._patterns if pattern else self._channels
        with self._lock:
            gone = [c for c in channels if c in target]
            target.difference_update(gone)
            with self._confirmed:
                self._confirmed_names.difference_update(gone)
            if gone:
                self._send(b"PUNSUBSCRIBE" if pattern else b"UNSUBSCRIBE", gone)

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            self._shutdown_socket()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)

    def _send(self, command: bytes, args: Sequence[bytes]) -> None:
        """Write a command if connected (caller holds the lock). A failure is left for the
        reader to notice; the reconnect resubscribes from the sets."""
        if self._sock is None:
            return
        for start in range(0, len(args), 1000):
            chunk = args[start : start + 1000]
            try:
                self._sock.sendall(_pack(command, *chunk))
            except OSError:
                self._shutdown_socket()
                return

    def _shutdown_socket(self) -> None:
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _run(self) -> None:
        backoff = 0.1
        while not self._closed.is_set():
            try:
                self._connect()
                backoff = 0.1
                self._read_loop()
            except Exception as exc:  # the listener must survive anything
                if self._closed.is_set():
                    break
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "%s: pub/sub connection lost (%s); reconnecting in %.1f s",
                    self._name,
                    self.last_error,
                    backoff,
                )
            finally:
                self.connected.clear()
                with self._confirmed:
                    self._confirmed_names.clear()
                with self._lock:
                    self._sock = None
                    conn, self._conn = self._conn, None
                if conn is not None:
                    try:
                        conn.disconnect()
                    except Exception:  # noqa: S110 - already broken
                        pass
            if self._closed.wait(backoff):
                break
            backoff = min(backoff * 2, 5.0)
            self.reconnects += 1

    def _connect(self) -> None:
        # Protocol 2 whatever the client uses: the reader below parses RESP2 pub/sub arrays.
        conn = _make_connection(
            self._client,
            protocol=2,
            # Bounds the connect handshake (a hung Redis accepts TCP and never answers);
            # reads are then bounded by the ping interval below.
            socket_timeout=max(2 * self._ping_interval, 1.0),
            health_check_interval=0,
            # Named for CLIENT LIST; Redis refuses spaces in a client name.
            client_name="".join(c if c.isprintable() and c != " " else "_" for c in self._name),
        )
        self._conn = conn
        conn.connect()
        sock = conn._sock
        sock.settimeout(self._ping_interval)
        with self._lock:
            if self._closed.is_set():
                raise ConnectionError("closed")
            self._sock = sock
            if self._channels:
                self._send(b"SUBSCRIBE", sorted(self._channels))
            if self._patterns:
                self._send(b"PSUBSCRIBE", sorted(self._patterns))
        self.connected.set()

    def _read_loop(self) -> None:
        sock = self._sock
        assert sock is not None
        buffer = b""
        probing = False
        handler = self._handler
        while not self._closed.is_set():
            try:
                data = sock.recv(262144)
            except TimeoutError:
                if probing:
                    raise ConnectionError("no answer to PING") from None
                probing = True
                with self._lock:
                    self._send(b"PING", ())
                continue
            if not data:
                raise ConnectionError("connection closed by Redis")
            probing = False
            buffer = buffer + data if buffer else data
            replies, used = _parse_replies(buffer)
            buffer = buffer[used:]
            if not replies:
                continue
            messages: list[tuple[bytes, bytes, bool]] = []
            channels: list[bytes] = []
            patterns: list[bytes] = []
            for reply in replies:
                kind = reply[0]
                if kind == b"message":
                    messages.append((reply[1], reply[2], False))
                elif kind == b"pmessage":
                    messages.append((reply[2], reply[3], True))
                elif kind == b"subscribe":
                    channels.append(reply[1])
                elif kind == b"psubscribe":
                    patterns.append(reply[1])
            if messages:
                handler._on_messages(messages)
            if channels or patterns:
                handler._on_subscribed(channels, patterns)
                with self._confirmed:
                    self._confirmed_names.update(channels)
                    self._confirmed_names.update(patterns)
                    self._confirmed.notify_all()


def _pack(command: bytes, *args: bytes) -> bytes:
    parts = [b"*%d\r\n$%d\r\n%b\r\n" % (len(args) + 1, len(command), command)]
    parts.extend(b"$%d\r\n%b\r\n" % (len(arg), arg) for arg in args)
    return b"".join(parts)


class _RedisReplyError(ConnectionError):
    pass


def _parse_replies(buf: bytes) -> tuple[list[list[bytes]], int]:
    """Parse complete RESP2 array replies (pub/sub pushes) from ``buf``.

    Returns the replies (each a list of bulk strings; integers as their digits) and how many
    bytes they used; an incomplete tail is left for the next read.
    """
    out: list[list[bytes]] = []
    append = out.append
    find = buf.find
    size = len(buf)
    pos = 0
    while pos < size:
        first = buf[pos]
        end = find(b"\r\n", pos)
        if end < 0:
            break
        if first != 42:  # not '*': an error or a simple string
            if first == 45:  # '-'
                raise _RedisReplyError(buf[pos + 1 : end].decode("utf-8", "replace"))
            pos = end + 2
            continue
        count = int(buf[pos + 1 : end])
        p = end + 2
        items: list[bytes] = []
        complete = True
        for _ in range(count):
            end = find(b"\r\n", p)
            if end < 0:
                complete = False
                break
            if buf[p] == 36:  # '$' bulk string
                length = int(buf[p + 1 : end])
                start = end + 2
                stop = start + length
                if stop + 2 > size:
                    complete = False
                    break
                items.append(buf[start:stop])
                p = stop + 2
            else:  # ':' integer (subscription count)
                items.append(buf[p + 1 : end])
                p = end + 2
        if not complete:
            break
        append(items)
        pos = p
    return out, pos


def _payload_seq(payload: bytes) -> int:
    """The seq of a ``to_bytes`` payload without decoding it all (it follows the key)."""
    try:
        if payload[0] == _WIRE_VERSION:
            return _unpack_seq(payload, 2 + payload[1])[0]
    except (IndexError, struct.error):
        pass
    return -1  # undecodable: wait() reports it


def _decode_stored(key: str, data: bytes) -> TickRecord | None:
    try:
        return TickRecord.from_bytes(data)
    except ValueError as exc:
        log.warning("undecodable tick record for %s in Redis ignored: %s", key, exc)
        return None


_PUBLISH_LUA = """
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i])
  redis.call('PUBLISH', KEYS[i], ARGV[i])
end
return #KEYS
"""
_PUBLISH_BATCH = 2000  # records per EVALSHA: keeps each Lua call (which blocks Redis) short


class RedisTickStore:
    """TickStore over Redis: ``{prefix}tick:{key}`` holds the latest record's bytes and is
    also the channel each record is PUBLISHed on.

    ``publish`` runs one Lua EVALSHA per call (per 2,000 records) doing SET + PUBLISH for each
    record, written as raw RESP on a dedicated connection (~4x a redis-py pipeline). A Redis
    failure raises StoreUnavailable; the next call reconnects. Subscriptions share one
    listener thread and one pub/sub connection per store; see ``_PubSubListener`` and
    ``TickSubscription``. ``ping_interval``: seconds of silence after which the listener
    probes its connection with PING (and drops it after as long again without an answer).
    """

    def __init__(
        self,
        url_or_client: str | redis.Redis,
        *,
        prefix: str = "algo:",
        ping_interval: float = 5.0,
    ) -> None:
        self._client = _redis_client(url_or_client)
        self.prefix = prefix
        self._key_prefix = f"{prefix}tick:"
        self._channel_prefix = self._key_prefix.encode()
        self._publish_lock = threading.Lock()
        self._publish_conn: Any = None
        self._sha = b""
        self._key_frags: dict[str, bytes] = {}
        self._sub_lock = threading.Lock()
        self._routes: dict[bytes, tuple[str, tuple[TickSubscription, ...]]] = {}
        self._all: tuple[TickSubscription, ...] = ()
        self._channel_keys: dict[bytes, str] = {}
        self._pattern = _glob_escape(self._key_prefix).encode() + b"*"
        self._listener = _PubSubListener(
            self._client, self, f"ticks-listener[{prefix}]", ping_interval=ping_interval
        )

    # -- writing

    def publish(self, records: Sequence[TickRecord]) -> None:
        if not records:
            return
        with self._publish_lock, _Unavailable("publishing ticks"):
            if self._publish_conn is None:
                self._publish_conn = _make_connection(self._client)
            conn = self._publish_conn
            try:
                if not self._sha:
                    self._load_script()
                # Batches are pipelined: batch n+1 is encoded while Redis runs batch n.
                bodies = []
                for start in range(0, len(records), _PUBLISH_BATCH):
                    body = self._encode_batch(records[start : start + _PUBLISH_BATCH])
                    conn.send_packed_command([self._evalsha_head(body[0]) + body[1]], False)
                    bodies.append(body)
                failed = self._read_replies(len(bodies))
                if failed:
                    # NOSCRIPT (Redis restarted or SCRIPT FLUSH): load it and resend those.
                    self._load_script()
                    for index in failed:
                        count, body = bodies[index]
                        conn.send_packed_command([self._evalsha_head(count) + body], False)
                    if self._read_replies(len(failed)):
                        raise RuntimeError("publish script vanished again right after loading")
            except Exception as exc:
                if isinstance(exc, _redis_errors()):
                    conn.disconnect()  # unknown state: the next call starts afresh
                raise

    def _encode_batch(self, records: Sequence[TickRecord]) -> tuple[int, bytes]:
        """The KEYS and ARGV of one EVALSHA as RESP bulk strings."""
        frags = self._key_frags
        keys = []
        values = []
        for record in records:
            frag = frags.get(record.key)
            if frag is None:
                name = (self._key_prefix + record.key).encode()
                frag = frags[record.key] = b"$%d\r\n%b\r\n" % (len(name), name)
            keys.append(frag)
            value = record.to_bytes()
            values.append(b"$%d\r\n%b\r\n" % (len(value), value))
        return len(records), b"".join(keys) + b"".join(values)

    def _evalsha_head(self, count: int) -> bytes:
        digits = b"%d" % count
        return b"*%d\r\n$7\r\nEVALSHA\r\n$40\r\n%b\r\n$%d\r\n%b\r\n" % (
            2 * count + 3,
            self._sha,
            len(digits),
            digits,
        )

    def _read_replies(self, count: int) -> list[int]:
        """Read ``count`` EVALSHA replies (all of them, so the connection stays in step);
        the indexes that failed with NOSCRIPT. Any other error is raised after reading."""
        import redis

        failed: list[int] = []
        error: Exception | None = None
        for index in range(count):
            try:
                self._publish_conn.read_response()
            except redis.exceptions.NoScriptError:
                failed.append(index)
            except redis.ResponseError as exc:
                error = error or exc
        if error is not None:
            raise error
        return failed

    def _load_script(self) -> None:
        conn = self._publish_conn
        conn.send_command("SCRIPT", "LOAD", _PUBLISH_LUA, check_health=False)
        sha = conn.read_response()
        self._sha = sha if isinstance(sha, bytes) else str(sha).encode()

    # -- reading

    def get(self, key: str) -> TickRecord | None:
        """The latest record of ``key``; None when there is none or it is undecodable."""
        with _Unavailable("reading a tick"):
            data = self._client.get(self._key_prefix + key)
        return None if data is None else _decode_stored(key, data)

    def get_many(self, keys: Iterable[str]) -> dict[str, TickRecord]:
        """The latest records of those ``keys`` that have one; undecodable values are left
        out with a warning (a value written by an older layout, say, right after a deploy:
        the feed hub's warm start must not fail on it, and the next tick overwrites it)."""
        keys = list(dict.fromkeys(keys))
        out: dict[str, TickRecord] = {}
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            with _Unavailable("reading ticks"):
                values = self._client.mget([self._key_prefix + key for key in chunk])
            for key, data in zip(chunk, values, strict=True):
                if data is not None:
                    record = _decode_stored(key, data)
                    if record is not None:
                        out[key] = record
        return out

    def subscribe(
        self,
        keys: Iterable[str] = (),
        *,
        all_keys: bool = False,
        on_ready: Callable[[TickSubscription], object] | None = None,
    ) -> TickSubscription:
        sub = TickSubscription(self, all_keys=all_keys, on_ready=on_ready)
        if all_keys:
            # (Un)subscribing under _sub_lock keeps Redis's subscription set in step with the
            # routes when one subscription comes as another goes (lock order: _sub_lock, then
            # the listener's; the listener thread never takes _sub_lock).
            with self._sub_lock:
                first = not self._all
                self._all = (*self._all, sub)
                if first:
                    # Current values follow the PSUBSCRIBE confirmation (_on_subscribed).
                    self._listener.subscribe([self._pattern], pattern=True)
            if not first:
                try:
                    self._deliver_all([sub])
                except StoreUnavailable:
                    pass  # the listener's reconnect resync delivers them
        sub.add(keys)
        return sub

    def close(self) -> None:
        with self._sub_lock:
            subs = {s for _, subs in self._routes.values() for s in subs} | set(self._all)
        for sub in subs:
            sub.close()
        self._listener.close()
        with self._publish_lock:
            if self._publish_conn is not None:
                self._publish_conn.disconnect()
                self._publish_conn = None

    @property
    def listener_reconnects(self) -> int:
        return self._listener.reconnects

    # -- subscription plumbing (called by TickSubscription and the listener thread)

    def _channel(self, key: str) -> bytes:
        return self._channel_prefix + key.encode()

    def _sub_add(self, sub: TickSubscription, keys: list[str]) -> None:
        new_channels = []
        known = []
        with self._sub_lock:
            for key in keys:
                channel = self._channel(key)
                route = self._routes.get(channel)
                if route is None:
                    self._routes[channel] = (key, (sub,))
                    new_channels.append(channel)
                else:
                    self._routes[channel] = (key, (*route[1], sub))
                    known.append(key)
            if new_channels:
                # Current values are fetched once Redis confirms the subscription.
                self._listener.subscribe(new_channels)
        if known:
            # Already subscribed: reading the value now cannot miss a publish.
            try:
                self._deliver([self._channel(key) for key in known], [sub])
            except StoreUnavailable:
                pass  # the listener's reconnect resync delivers them

    def _sub_remove(self, sub: TickSubscription, keys: list[str]) -> None:
        gone = []
        with self._sub_lock:
            for key in keys:
                channel = self._channel(key)
                route = self._routes.get(channel)
                if route is None:
                    continue
                subs = tuple(s for s in route[1] if s is not sub)
                if subs:
                    self._routes[channel] = (key, subs)
                else:
                    del self._routes[channel]
                    gone.append(channel)
            if gone:
                self._listener.unsubscribe(gone)

    def _sub_close(self, sub: TickSubscription) -> None:
        if not sub.all_keys:
            self._sub_remove(sub, list(sub._keys))
            return
        with self._sub_lock:
            self._all = tuple(s for s in self._all if s is not sub)
            if not self._all:
                self._listener.unsubscribe([self._pattern], pattern=True)

    def _on_messages(self, messages: list[tuple[bytes, bytes, bool]]) -> None:
        """Listener thread: coalesce a chunk's messages, then one lock per subscription."""
        direct: dict[bytes, bytes] = {}
        patterned: dict[bytes, bytes] = {}
        dup_direct: dict[bytes, int] = {}
        dup_pattern = 0
        for channel, payload, from_pattern in messages:
            target = patterned if from_pattern else direct
            size = len(target)
            target[channel] = payload
            if len(target) == size:
                if from_pattern:
                    dup_pattern += 1
                else:
                    dup_direct[channel] = dup_direct.get(channel, 0) + 1
        routes = self._routes
        if direct:
            batches: dict[TickSubscription, dict[str, _Pending]] = {}
            superseded: dict[TickSubscription, int] = {}
            for channel, payload in direct.items():
                route = routes.get(channel)
                if route is None:
                    continue
                key, subs = route
                entry = (_payload_seq(payload), payload)
                dups = dup_direct.get(channel, 0)
                for sub in subs:
                    batch = batches.get(sub)
                    if batch is None:
                        batch = batches[sub] = {}
                    batch[key] = entry
                    if dups:
                        superseded[sub] = superseded.get(sub, 0) + dups
            for sub, batch in batches.items():
                sub._offer(batch, superseded.get(sub, 0))
        if patterned and self._all:
            channel_keys = self._channel_keys
            cut = len(self._channel_prefix)
            items: dict[str, _Pending] = {}
            for channel, payload in patterned.items():
                key = channel_keys.get(channel)
                if key is None:
                    key = channel[cut:].decode("utf-8", "replace")
                    if len(channel_keys) < 200_000:  # bounded even with garbage channels
                        channel_keys[channel] = key
                items[key] = (_payload_seq(payload), payload)
            for sub in self._all:
                sub._offer(items, dup_pattern)

    def _on_subscribed(self, channels: list[bytes], patterns: list[bytes]) -> None:
        """Listener thread: a subscription is live, deliver the current values."""
        if channels:
            routes = self._routes
            subs_by_channel = {c: routes[c][1] for c in channels if c in routes}
            # Group channels by their subscriber tuples to MGET each key once.
            self._deliver_routed(subs_by_channel)
        if patterns and self._all:
            self._deliver_all(self._all)

    def _deliver_routed(self, subs_by_channel: dict[bytes, tuple[TickSubscription, ...]]) -> None:
        channels = list(subs_by_channel)
        for start in range(0, len(channels), 1000):
            chunk = channels[start : start + 1000]
            with _Unavailable("reading ticks"):
                values = self._client.mget(chunk)
            batches: dict[TickSubscription, dict[str, _Pending]] = {}
            for channel, data in zip(chunk, values, strict=True):
                if data is None:
                    continue
                key = channel[len(self._channel_prefix) :].decode()
                entry = (_payload_seq(data), data)
                for sub in subs_by_channel[channel]:
                    batches.setdefault(sub, {})[key] = entry
            for sub, batch in batches.items():
                sub._offer(batch)

    def _deliver(self, channels: list[bytes], subs: Sequence[TickSubscription]) -> None:
        self._deliver_routed(dict.fromkeys(channels, tuple(subs)))

    def _deliver_all(self, subs: Sequence[TickSubscription]) -> None:
        with _Unavailable("scanning ticks"):
            names = list(self._client.scan_iter(match=self._pattern, count=1000))
        self._deliver(names, subs)


# ---------------------------------------------------------------------------------------------
# EventBus


class EventSubscription:
    """FIFO of ``(topic, payload)`` for the subscribed topics; bounded: when ``maxlen`` events
    are waiting the oldest is dropped and counted in ``dropped``. Thread-safe."""

    def __init__(self, topics: Iterable[str], maxlen: int, on_close: Callable[[], None]) -> None:
        self.topics = frozenset(topics)
        self._queue: deque[tuple[str, dict]] = deque()
        self._maxlen = maxlen
        self._cond = threading.Condition(threading.Lock())
        self._on_close = on_close
        self.closed = False
        self.dropped = 0

    def get(self, timeout: float | None = None) -> tuple[str, dict] | None:
        """The oldest waiting event, blocking up to ``timeout`` s; None on timeout or close."""
        with self._cond:
            if not self._queue and not self.closed:
                self._cond.wait_for(lambda: self._queue or self.closed, timeout)
            if not self._queue:
                return None
            return self._queue.popleft()

    def close(self) -> None:
        if self.closed:
            return
        with self._cond:
            self.closed = True
            self._queue.clear()
            self._cond.notify_all()
        self._on_close()

    def __enter__(self) -> EventSubscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _put(self, topic: str, payload: dict) -> None:
        with self._cond:
            if self.closed:
                return
            if len(self._queue) >= self._maxlen:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append((topic, payload))
            self._cond.notify()


class EventBus(Protocol):
    def publish(self, topic: str, payload: dict) -> None: ...

    def subscribe(self, topics: Iterable[str], maxlen: int = 10_000) -> EventSubscription: ...

    def close(self) -> None: ...


def _json_text(value: object, what: str) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not JSON-serialisable: {exc}") from None


class _EventRoutes:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: dict[str, tuple[EventSubscription, ...]] = {}

    def add(self, sub: EventSubscription) -> list[str]:
        """Register; return the topics nobody was subscribed to before."""
        new = []
        with self._lock:
            for topic in sub.topics:
                subs = self._subs.get(topic, ())
                if not subs:
                    new.append(topic)
                self._subs[topic] = (*subs, sub)
        return new

    def remove(self, sub: EventSubscription) -> list[str]:
        """Unregister; return the topics nobody is subscribed to any more."""
        gone = []
        with self._lock:
            for topic in sub.topics:
                subs = tuple(s for s in self._subs.get(topic, ()) if s is not sub)
                if subs:
                    self._subs[topic] = subs
                else:
                    self._subs.pop(topic, None)
                    gone.append(topic)
        return gone

    def get(self, topic: str) -> tuple[EventSubscription, ...]:
        return self._subs.get(topic, ())

    def all(self) -> set[EventSubscription]:
        with self._lock:
            return {s for subs in self._subs.values() for s in subs}


class MemoryEventBus:
    """In-process EventBus. Payloads go through JSON like on Redis, so a payload that would
    fail in split mode fails in embedded mode too, and subscribers get their own copies."""

    def __init__(self) -> None:
        self._routes = _EventRoutes()

    def publish(self, topic: str, payload: dict) -> None:
        text = _json_text(payload, f"event {topic!r}")
        for sub in self._routes.get(topic):
            sub._put(topic, json.loads(text))

    def subscribe(self, topics: Iterable[str], maxlen: int = 10_000) -> EventSubscription:
        sub = EventSubscription(topics, maxlen, lambda: self._routes.remove(sub))
        self._routes.add(sub)
        return sub

    def close(self) -> None:
        for sub in self._routes.all():
            sub.close()


class RedisEventBus:
    """EventBus over Redis pub/sub: channel ``{prefix}ev:{topic}``, JSON payload.

    At most once: events published while a subscriber is disconnected are lost (the listener
    reconnects and resubscribes). Events are signals to re-read state, never the only copy.
    ``subscribe`` returns once Redis confirmed the subscription (up to ``subscribe_timeout``
    s; when Redis is down it returns after that and the listener subscribes on reconnect), so
    an event published after it returns reaches the subscriber.
    """

    subscribe_timeout = 5.0

    def __init__(
        self,
        url_or_client: str | redis.Redis,
        *,
        prefix: str = "algo:",
        ping_interval: float = 5.0,
    ) -> None:
        self._client = _redis_client(url_or_client)
        self.prefix = prefix
        self._channel_prefix = f"{prefix}ev:"
        self._routes = _EventRoutes()
        self._listener = _PubSubListener(
            self._client, self, f"events-listener[{prefix}]", ping_interval=ping_interval
        )

    def publish(self, topic: str, payload: dict) -> None:
        text = _json_text(payload, f"event {topic!r}")
        with _Unavailable("publishing an event"):
            self._client.publish(self._channel_prefix + topic, text)

    def subscribe(self, topics: Iterable[str], maxlen: int = 10_000) -> EventSubscription:
        sub = EventSubscription(topics, maxlen, lambda: self._unsubscribe(sub))
        new = self._routes.add(sub)
        if new:
            self._listener.subscribe([(self._channel_prefix + t).encode() for t in new])
        channels = [(self._channel_prefix + t).encode() for t in sub.topics]
        self._listener.wait_subscribed(channels, self.subscribe_timeout)
        return sub

    def close(self) -> None:
        for sub in self._routes.all():
            sub.close()
        self._listener.close()

    def _unsubscribe(self, sub: EventSubscription) -> None:
        gone = self._routes.remove(sub)
        if gone:
            self._listener.unsubscribe([(self._channel_prefix + t).encode() for t in gone])

    def _on_messages(self, messages: list[tuple[bytes, bytes, bool]]) -> None:
        cut = len(self._channel_prefix.encode())
        for channel, payload, _pattern in messages:
            topic = channel[cut:].decode("utf-8", "replace")
            subs = self._routes.get(topic)
            if not subs:
                continue
            try:
                value = json.loads(payload)
            except ValueError:
                log.warning("event on %r is not JSON; dropped", topic)
                continue
            for sub in subs:
                sub._put(topic, value if len(subs) == 1 else json.loads(payload))

    def _on_subscribed(self, channels: list[bytes], patterns: list[bytes]) -> None:
        return None


# ---------------------------------------------------------------------------------------------
# KeyValueStore


class KeyValueStore(Protocol):
    def put(self, name: str, value: dict, ttl: float | None = None) -> None: ...

    def get(self, name: str) -> dict | None: ...

    def get_prefix(self, prefix: str) -> dict[str, dict]: ...

    def delete(self, name: str) -> None: ...

    def push_capped(self, name: str, value: dict, maxlen: int) -> None: ...

    def replace_list(self, name: str, values: Sequence[dict], maxlen: int) -> None:
        """Make the list exactly the last ``maxlen`` of ``values``, in one round trip."""
        ...

    def get_list(self, name: str) -> list[dict]: ...


def _check_ttl(ttl: float | None) -> None:
    if ttl is not None and not ttl > 0:
        raise ValueError(f"ttl must be a positive number of seconds or None, got {ttl!r}")


class MemoryKeyValueStore:
    """In-process KeyValueStore. Values are stored as JSON text (copies, and the same
    serialisability rules as Redis); TTL expires on read by ``clock`` (monotonic seconds)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._values: dict[str, tuple[str, float | None]] = {}
        self._lists: dict[str, deque[str]] = {}

    def put(self, name: str, value: dict, ttl: float | None = None) -> None:
        _check_ttl(ttl)
        text = _json_text(value, f"value for {name!r}")
        expires = None if ttl is None else self._clock() + ttl
        with self._lock:
            self._values[name] = (text, expires)

    def get(self, name: str) -> dict | None:
        with self._lock:
            entry = self._values.get(name)
            if entry is None:
                return None
            if entry[1] is not None and self._clock() >= entry[1]:
                del self._values[name]
                return None
        return json.loads(entry[0])

    def get_prefix(self, prefix: str) -> dict[str, dict]:
        now = self._clock()
        with self._lock:
            live = {}
            for name, (text, expires) in list(self._values.items()):
                if expires is not None and now >= expires:
                    del self._values[name]
                elif name.startswith(prefix):
                    live[name] = text
        return {name: json.loads(text) for name, text in live.items()}

    def delete(self, name: str) -> None:
        with self._lock:
            self._values.pop(name, None)
            self._lists.pop(name, None)

    def push_capped(self, name: str, value: dict, maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen must be at least 1, got {maxlen}")
        text = _json_text(value, f"list item for {name!r}")
        with self._lock:
            items = self._lists.get(name)
            if items is None or items.maxlen != maxlen:
                items = self._lists[name] = deque(items or (), maxlen=maxlen)
            items.append(text)

    def replace_list(self, name: str, values: Sequence[dict], maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen must be at least 1, got {maxlen}")
        texts = [_json_text(value, f"list item for {name!r}") for value in values]
        with self._lock:
            self._lists[name] = deque(texts, maxlen=maxlen)

    def get_list(self, name: str) -> list[dict]:
        with self._lock:
            texts = list(self._lists.get(name, ()))
        return [json.loads(text) for text in texts]

    def close(self) -> None:
        return None


class RedisKeyValueStore:
    """KeyValueStore over Redis: key ``{prefix}kv:{name}``, JSON text, TTL as PX."""

    def __init__(self, url_or_client: str | redis.Redis, *, prefix: str = "algo:") -> None:
        self._client = _redis_client(url_or_client)
        self.prefix = prefix
        self._key_prefix = f"{prefix}kv:"

    def put(self, name: str, value: dict, ttl: float | None = None) -> None:
        _check_ttl(ttl)
        text = _json_text(value, f"value for {name!r}")
        px = None if ttl is None else max(1, round(ttl * 1000))
        with _Unavailable("writing a value"):
            self._client.set(self._key_prefix + name, text, px=px)

    def get(self, name: str) -> dict | None:
        with _Unavailable("reading a value"):
            data = self._client.get(self._key_prefix + name)
        return None if data is None else json.loads(data)

    def get_prefix(self, prefix: str) -> dict[str, dict]:
        match = _glob_escape(self._key_prefix + prefix) + "*"
        cut = len(self._key_prefix)
        out: dict[str, dict] = {}
        with _Unavailable("reading values"):
            names = list(dict.fromkeys(self._client.scan_iter(match=match, count=1000)))
            for start in range(0, len(names), 1000):
                chunk = names[start : start + 1000]
                # A list under the same name reads as nil in MGET; an expired key too.
                for name, data in zip(chunk, self._client.mget(chunk), strict=True):
                    if data is not None:
                        out[name[cut:].decode()] = json.loads(data)
        return out

    def delete(self, name: str) -> None:
        with _Unavailable("deleting a value"):
            self._client.delete(self._key_prefix + name)

    def push_capped(self, name: str, value: dict, maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen must be at least 1, got {maxlen}")
        text = _json_text(value, f"list item for {name!r}")
        key = self._key_prefix + name
        with _Unavailable("appending to a list"):
            pipe = self._client.pipeline(transaction=True)
            pipe.rpush(key, text)
            pipe.ltrim(key, -maxlen, -1)
            pipe.execute()

    def replace_list(self, name: str, values: Sequence[dict], maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen must be at least 1, got {maxlen}")
        texts = [_json_text(value, f"list item for {name!r}") for value in values[-maxlen:]]
        key = self._key_prefix + name
        with _Unavailable("replacing a list"):
            pipe = self._client.pipeline(transaction=True)  # readers never see it half-built
            pipe.delete(key)
            if texts:
                pipe.rpush(key, *texts)
            pipe.execute()

    def get_list(self, name: str) -> list[dict]:
        with _Unavailable("reading a list"):
            items = self._client.lrange(self._key_prefix + name, 0, -1)
        return [json.loads(item) for item in items]

    def close(self) -> None:
        self._client.close()


# ---------------------------------------------------------------------------------------------
# Wiring


@dataclass
class Realtime:
    """The three realtime services of one process, built together."""

    ticks: TickStore
    events: EventBus
    kv: KeyValueStore
    redis_url: str | None = None

    def close(self) -> None:
        for service in (self.ticks, self.events, self.kv):
            closer = getattr(service, "close", None)
            if closer is not None:
                try:
                    closer()
                except Exception:
                    log.exception("closing %s failed", type(service).__name__)


def realtime_from_settings(*, prefix: str = "algo:") -> Realtime:
    """Redis implementations when ``settings.REDIS_URL`` is set (split mode), in-memory ones
    otherwise (embedded mode: every component must then live in this process)."""
    from django.conf import settings

    url = getattr(settings, "REDIS_URL", None) or None
    if not url:
        return Realtime(MemoryTickStore(), MemoryEventBus(), MemoryKeyValueStore(), None)
    client = _redis_client(url)
    return Realtime(
        RedisTickStore(client, prefix=prefix),
        RedisEventBus(client, prefix=prefix),
        RedisKeyValueStore(client, prefix=prefix),
        url,
    )
