"""Candles from ticks: OHLC per instrument and timeframe (1 and 5 minutes), built incrementally.

PURE: no Django, Redis, network or clock. Ticks and "now" come in as arguments, closed candles go
out as values; the caller (the feed hub) publishes and stores them.

Decisions, each a contract for the callers:

* **LTP only.** Index ticks (``IDX_I``) carry no volume or traded quantity, so a candle is the
  open/high/low/close of the last traded prices and ``ticks`` counts the ticks that built it.
  There is no volume field; chart candles' volume is dropped on purpose (zero for indices).
* **Exchange time.** A tick is bucketed by its exchange time (the true epoch from Dhan's LTT),
  never by when it was received, so a slow socket cannot move a price into the next candle.
  Ticks without an exchange time, and LTPs that are not positive (Dhan sends 0 before the first
  trade), are ignored.
* **Alignment.** Buckets start at 09:15 IST plus whole timeframes. For 60 and 300 s that is the
  same as epoch multiples of the timeframe (09:15 IST = 03:45 UTC = 13 500 s into the UTC day);
  anchoring on 09:15 also gives Dhan's 15/60-minute boundaries if someone asks for them.
  A timeframe must divide a day so that every session starts on a boundary.
* **Open and close by time, not arrival.** Inside a bucket the open is the price of the earliest
  exchange time and the close that of the latest (ties: first arrival opens, last arrival
  closes), so ticks reordered in flight do not corrupt a candle.
* **Closing.** A bucket closes when a tick for a later bucket arrives, or when :meth:`advance`
  says the market clock passed its end plus ``grace`` (a quiet index still gets its candle).
  A tick for a bucket that is already closed is *late*: ignored and counted in ``late_ticks``.
  Lateness is decided across all timeframes at once and a tick goes to every timeframe or to
  none, so the 5-minute series always equals :func:`aggregate` of the 1-minute one.
* **Filled candles.** Whole buckets without ticks between two candles are emitted as *filled*
  candles: flat at the previous close, ``ticks=0``, ``filled=True``, so indicator series have no
  holes. :func:`aggregate` ignores filled candles inside a group that also has real ones.
* **Sessions.** The builder knows nothing of market hours. The caller feeds only session ticks
  (09:15-15:30 IST) and calls :meth:`advance` only during the session; outside it the builder
  would fill flat candles for as long as it is advanced. The one guard: a gap longer than
  ``max_fill`` (default one session, 6 h 15 min) between real candles is a session boundary
  (overnight, weekend, holiday) and is never filled by a tick, so a builder that lives across
  days does not invent a night of flat candles.
* **Seeding.** :meth:`seed` loads history from Dhan's intraday chart (:func:`candles_from_chart`)
  after a restart. Live data wins: a chart candle never replaces a bucket built from ticks; it
  replaces filled candles and fills missing ones. The chart's candle for the *open* bucket only
  lends it its open (the chart saw the bucket from its start, live ticks may have joined midway)
  and widens high/low; close and tick count stay live. Chart candles after the open bucket are
  refused. When the chart is loaded first, its newest candle may still be forming (Dhan returns
  today's candles "up to now"), so a live tick in that bucket continues it instead of being late.

Cost: :meth:`CandleBuilder.on_tick` runs for every index tick; it is O(number of timeframes)
with a handful of comparisons each, plus one Candle per closed bucket.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from trading.rules.market import IST

__all__ = [
    "IST",
    "SESSION_ANCHOR",
    "SESSION_SECONDS",
    "SOURCES",
    "Candle",
    "CandleBuilder",
    "ChartAnswer",
    "aggregate",
    "bucket_start",
    "candles_from_chart",
    "check_timeframe",
]

# 09:15 IST on 1970-01-01 as epoch seconds (03:45 UTC). Buckets are anchored here.
SESSION_ANCHOR = 13_500
# 09:15-15:30 IST: the longest gap that can occur inside one session.
SESSION_SECONDS = 22_500
DAY_SECONDS = 86_400
SOURCES = ("ticks", "chart")


def check_timeframe(timeframe: int) -> int:
    """``timeframe`` (seconds) if it is a positive whole divisor of a day, else ValueError."""
    if isinstance(timeframe, bool) or not isinstance(timeframe, int):
        raise ValueError(f"timeframe: expected whole seconds, got {timeframe!r}")
    if timeframe <= 0 or DAY_SECONDS % timeframe:
        raise ValueError(f"timeframe: {timeframe} s does not divide a day into whole buckets")
    return timeframe


def bucket_start(moment: float, timeframe: int) -> float:
    """Start (epoch s) of the ``timeframe`` bucket holding ``moment``, anchored on 09:15 IST."""
    # Float floor division is exact for epoch seconds (< 2**53); the result is a whole number.
    return (moment - SESSION_ANCHOR) // timeframe * timeframe + SESSION_ANCHOR


@dataclass(frozen=True, slots=True)
class Candle:
    """One closed (or, from :meth:`CandleBuilder.current`, still open) bucket.

    ``start`` is the bucket start in epoch seconds (true UTC epoch), ``timeframe`` its length in
    seconds. ``ticks`` counts the live ticks that built it: 0 for filled candles and for chart
    candles (the chart does not say). ``filled``: no ticks, flat at the previous close.
    ``source``: ``"ticks"`` (built here) or ``"chart"`` (Dhan's intraday chart API).
    """

    key: str
    timeframe: int
    start: float
    open: float
    high: float
    low: float
    close: float
    ticks: int
    filled: bool = False
    source: str = "ticks"

    @property
    def end(self) -> float:
        """Epoch s where the next bucket starts."""
        return self.start + self.timeframe

    @property
    def start_datetime(self) -> datetime:
        """Bucket start as an aware IST datetime."""
        return datetime.fromtimestamp(self.start, IST)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the shape stored in Redis lists and sent in events)."""
        return {
            "key": self.key,
            "timeframe": self.timeframe,
            "start": self.start,
            "open": self.open,
            "high": self.high,
            "low": self.low,
            "close": self.close,
            "ticks": self.ticks,
            "filled": self.filled,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Candle:
        """Inverse of :meth:`as_dict`; ValueError naming the field that does not fit."""
        if not isinstance(data, Mapping):
            raise ValueError(f"candle: expected an object, got {type(data).__name__}")
        key = _field(data, "key")
        if not isinstance(key, str) or not key:
            raise ValueError(f"candle.key: expected a non-empty string, got {key!r}")
        ticks = _field(data, "ticks")
        if isinstance(ticks, bool) or not isinstance(ticks, int) or ticks < 0:
            raise ValueError(f"candle.ticks: expected a count, got {ticks!r}")
        filled = data.get("filled", False)
        if not isinstance(filled, bool):
            raise ValueError(f"candle.filled: expected true or false, got {filled!r}")
        source = data.get("source", "ticks")
        if source not in SOURCES:
            raise ValueError(f"candle.source: expected one of {SOURCES}, got {source!r}")
        try:
            timeframe = check_timeframe(_field(data, "timeframe"))
        except ValueError as err:
            raise ValueError(f"candle.{err}") from None
        return cls(
            key=key,
            timeframe=timeframe,
            start=_number(_field(data, "start"), "candle.start"),
            open=_price(_field(data, "open"), "candle.open"),
            high=_price(_field(data, "high"), "candle.high"),
            low=_price(_field(data, "low"), "candle.low"),
            close=_price(_field(data, "close"), "candle.close"),
            ticks=ticks,
            filled=filled,
            source=source,
        )


def _field(data: Mapping[str, Any], name: str) -> Any:
    if name not in data:
        raise ValueError(f"candle.{name}: missing")
    return data[name]


def _number(value: object, where: str) -> float:
    """A finite number from JSON: int, float, Decimal or numeric text (Dhan sends all four)."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{where}: expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{where}: expected a finite number, got {value!r}")
    return number


def _price(value: object, where: str) -> float:
    number = _number(value, where)
    if number <= 0:
        raise ValueError(f"{where}: expected a positive price, got {value!r}")
    return number


class _Series:
    """The state of one (key, timeframe): the open bucket, the last closed one, the history.

    Plain attributes rather than a Candle for the open bucket: it changes on every tick.
    """

    __slots__ = (
        "close",
        "close_time",
        "high",
        "history",
        "key",
        "last_close",
        "last_real_start",
        "last_start",
        "low",
        "open",
        "open_start",
        "open_time",
        "tail_seeded",
        "tf",
        "ticks",
    )

    def __init__(self, key: str, timeframe: int, maxlen: int) -> None:
        self.key = key
        self.tf = timeframe
        self.history: deque[Candle] = deque(maxlen=maxlen)
        # The open bucket; open_start is None when there is none.
        self.open_start: float | None = None
        self.open = self.high = self.low = self.close = 0.0
        self.open_time = self.close_time = 0.0  # exchange times of the open/close prices
        self.ticks = 0
        # The newest bucket that is no longer open (closed, filled or seeded), None if none.
        self.last_start: float | None = None
        self.last_close = 0.0
        # The newest bucket with real prices (ticks or chart): the reference for max_fill.
        self.last_real_start = 0.0
        # The newest bucket came from the chart and may still be forming: a tick may continue it.
        self.tail_seeded = False

    def is_late(self, start: float) -> bool:
        if self.open_start is not None:
            return start < self.open_start
        if self.last_start is None:
            return False
        return start < self.last_start or (start == self.last_start and not self.tail_seeded)

    def add(self, start: float, ltp: float, at: float, out: list[Candle], max_fill: float) -> None:
        """Apply one tick (already known not to be late) to this series."""
        if start == self.open_start:
            if at < self.open_time:
                self.open_time = at
                self.open = ltp
            if at >= self.close_time:
                self.close_time = at
                self.close = ltp
            if ltp > self.high:
                self.high = ltp
            elif ltp < self.low:
                self.low = ltp
            self.ticks += 1
            return
        if self.open_start is not None:  # a later bucket: the open one is over
            out.append(self.close_bucket())
        if self.last_start is not None and start == self.last_start:
            # Only reachable when tail_seeded (is_late said so): continue the chart's candle.
            tail = self.history.pop()
            self.open_bucket(start, tail.open, start, ltp, at)
            self.high = max(tail.high, ltp)
            self.low = min(tail.low, ltp)
            return
        if self.last_start is not None and start - self.last_real_start <= max_fill:
            self.fill(start, out)
        self.open_bucket(start, ltp, at, ltp, at)

    def open_bucket(
        self, start: float, open_: float, open_time: float, ltp: float, at: float
    ) -> None:
        self.open_start = start
        self.open, self.open_time = open_, open_time
        self.close, self.close_time = ltp, at
        self.high = self.low = ltp
        self.ticks = 1
        self.tail_seeded = False

    def current(self) -> Candle | None:
        if self.open_start is None:
            return None
        return Candle(
            self.key, self.tf, self.open_start, self.open, self.high, self.low, self.close,
            self.ticks,
        )  # fmt: skip

    def close_bucket(self) -> Candle:
        candle = self.current()
        assert candle is not None  # callers check open_start first
        self.history.append(candle)
        self.last_start = self.last_real_start = candle.start
        self.last_close = candle.close
        self.open_start = None
        return candle

    def fill(self, until: float, out: list[Candle]) -> None:
        """Emit filled candles for the buckets after last_start and before ``until``."""
        assert self.last_start is not None
        start = self.last_start + self.tf
        while start < until:
            candle = Candle(
                self.key, self.tf, start, self.last_close, self.last_close, self.last_close,
                self.last_close, 0, filled=True,
            )  # fmt: skip
            self.history.append(candle)
            out.append(candle)
            self.last_start = start
            start += self.tf

    def advance(self, now: float, grace: float, max_fill: float, out: list[Candle]) -> None:
        if self.open_start is not None:
            if self.open_start + self.tf + grace > now:
                return
            out.append(self.close_bucket())
        if self.last_start is None:
            return
        if self.tail_seeded and self.last_start + self.tf + grace <= now:
            self.tail_seeded = False  # the chart's newest candle is over now: later ticks are late
        start = self.last_start + self.tf
        # The fill is bounded by max_fill too, so a caller that keeps advancing outside the
        # session makes at most one session of flat candles (see the module docstring).
        limit = min(now - grace, self.last_real_start + max_fill + self.tf)
        if start + self.tf <= limit:
            self.fill(bucket_start(limit, self.tf), out)

    def seed(self, candle: Candle) -> bool:
        """Take one chart candle; True when it went into the history."""
        if self.open_start is not None:
            if candle.start > self.open_start:
                return False
            if candle.start == self.open_start:
                # The chart saw this bucket from its start; live ticks may have joined midway.
                # Keep the live close and tick count, take the chart's open and extremes.
                self.open, self.open_time = candle.open, candle.start
                self.high = max(self.high, candle.high)
                self.low = min(self.low, candle.low)
                return False
            return self.put_history(candle)
        if self.last_start is None or candle.start > self.last_start:
            self.history.append(candle)
            self.last_start = self.last_real_start = candle.start
            self.last_close = candle.close
            self.tail_seeded = True
            return True
        return self.put_history(candle)

    def put_history(self, candle: Candle) -> bool:
        """Insert or replace a chart candle older than the newest bucket (rare: a list rebuild)."""
        items = list(self.history)
        at = bisect_left(items, candle.start, key=lambda c: c.start)
        if at < len(items) and items[at].start == candle.start:
            old = items[at]
            if old.source == "ticks" and not old.filled:
                return False  # live data wins
            items[at] = candle
        elif at == 0 and len(items) == self.history.maxlen:
            return False  # older than everything kept: it would fall off at once
        else:
            items.insert(at, candle)
        self.history.clear()
        self.history.extend(items)  # the deque's maxlen drops the oldest if one was inserted
        if candle.start == self.last_start:
            self.last_close = candle.close
        self.last_real_start = max(self.last_real_start, candle.start)
        return True


class CandleBuilder:
    """Ticks -> candles for several keys and timeframes. Single-threaded (the hub's dispatcher).

    ``grace``: seconds after a bucket's end before :meth:`advance` closes it, so a tick stamped
    inside the bucket but delivered a little later still counts. ``maxlen``: closed candles kept
    per key and timeframe. ``max_fill``: the longest gap (seconds, between real candles) that is
    filled with flat candles; longer gaps are session boundaries.
    """

    def __init__(
        self,
        timeframes: Sequence[int] = (60, 300),
        *,
        grace: float = 2.0,
        maxlen: int = 500,
        max_fill: float = SESSION_SECONDS,
    ) -> None:
        if not timeframes:
            raise ValueError("timeframes: at least one is needed")
        self.timeframes = tuple(check_timeframe(tf) for tf in timeframes)
        if len(set(self.timeframes)) != len(self.timeframes):
            raise ValueError(f"timeframes: {self.timeframes} repeats one")
        if not grace >= 0:
            raise ValueError(f"grace: expected seconds >= 0, got {grace!r}")
        if maxlen < 1:
            raise ValueError(f"maxlen: expected at least 1, got {maxlen!r}")
        if not max_fill >= 0:
            raise ValueError(f"max_fill: expected seconds >= 0, got {max_fill!r}")
        self.grace = float(grace)
        self.maxlen = maxlen
        self.max_fill = float(max_fill)
        self.late_ticks = 0
        self._index = {tf: i for i, tf in enumerate(self.timeframes)}
        self._series: dict[str, tuple[_Series, ...]] = {}

    def _get(self, key: str) -> tuple[_Series, ...]:
        series = self._series.get(key)
        if series is None:
            series = tuple(_Series(key, tf, self.maxlen) for tf in self.timeframes)
            self._series[key] = series
        return series

    def on_tick(self, key: str, ltp: float, exchange_time: float | None) -> list[Candle]:
        """Apply one tick; return the candles it closed (closed and filled), oldest first per
        timeframe, timeframes in constructor order. Late ticks and ticks without a positive
        LTP or an exchange time return [] (only late ones are counted, in ``late_ticks``)."""
        if not ltp > 0 or exchange_time is None:  # `not >` also rejects NaN
            return []
        series = self._get(key)
        starts = [bucket_start(exchange_time, s.tf) for s in series]
        for s, start in zip(series, starts, strict=True):
            if s.is_late(start):
                self.late_ticks += 1
                return []
        out: list[Candle] = []
        for s, start in zip(series, starts, strict=True):
            s.add(start, ltp, exchange_time, out, self.max_fill)
        return out

    def advance(self, now: float) -> list[Candle]:
        """The market clock reached ``now`` (epoch s): close every open bucket whose end + grace
        <= now and fill the empty buckets that ended (+ grace) since. Returns those candles,
        per key, then per timeframe, oldest first. ``now`` should be on the exchange's clock
        (e.g. wall time from an NTP-synced host); call it only during the session."""
        out: list[Candle] = []
        for series in self._series.values():
            for s in series:
                s.advance(now, self.grace, self.max_fill, out)
        return out

    def seed(self, candles: Iterable[Candle]) -> list[Candle]:
        """Load history (usually from :func:`candles_from_chart`, and :func:`aggregate` of it
        for 5 minutes). Returns the candles that went into the history, oldest first per key
        and timeframe. Refused: buckets after the open one, buckets built from ticks, buckets
        too old for ``maxlen``, timeframes this builder does not build. A candle for the open
        bucket is merged into it (open from the chart, high/low widened) but not returned."""
        accepted: list[Candle] = []
        for candle in sorted(candles, key=lambda c: (c.key, c.timeframe, c.start)):
            index = self._index.get(candle.timeframe)
            if index is None:
                continue
            if self._get(candle.key)[index].seed(candle):
                accepted.append(candle)
        return accepted

    def history(self, key: str, timeframe: int) -> list[Candle]:
        """Closed candles (live, filled and seeded), oldest first, at most ``maxlen``."""
        series = self._series.get(key)
        return list(series[self._position(timeframe)].history) if series else []

    def current(self, key: str, timeframe: int) -> Candle | None:
        """The open bucket as it stands (for a dashboard), or None if there is none."""
        series = self._series.get(key)
        return series[self._position(timeframe)].current() if series else None

    def keys(self) -> list[str]:
        """Keys the builder has seen (ticks or seed)."""
        return list(self._series)

    def _position(self, timeframe: int) -> int:
        index = self._index.get(timeframe)
        if index is None:
            raise ValueError(f"timeframe: this builder makes {self.timeframes}, not {timeframe!r}")
        return index


class ChartBar(Protocol):
    """One bar of the REST client's ``ChartResponse`` (trading.dhan.rest_types.Candle)."""

    @property
    def timestamp(self) -> datetime: ...
    @property
    def open(self) -> Decimal | float: ...
    @property
    def high(self) -> Decimal | float: ...
    @property
    def low(self) -> Decimal | float: ...
    @property
    def close(self) -> Decimal | float: ...


class ChartAnswer(Protocol):
    """What ``DhanRestClient.intraday_chart`` returns (``ChartResponse``): typed bars."""

    @property
    def candles(self) -> Sequence[ChartBar]: ...


_CHART_FIELDS = ("timestamp", "open", "high", "low", "close")


def candles_from_chart(
    key: str, answer: Mapping[str, Any] | ChartAnswer, timeframe: int = 60
) -> list[Candle]:
    """Dhan's intraday chart -> candles with ``source="chart"``, oldest first.

    ``answer`` is the raw answer of ``POST /charts/intraday`` (parallel arrays ``open``,
    ``high``, ``low``, ``close``, ``volume``, ``timestamp``; numbers as ints, floats such as
    ``1.7183409E9``, Decimals or numeric text) or the REST client's ``ChartResponse``.
    ``timestamp`` is the bar start in epoch seconds; ``timeframe`` is the ``interval`` asked
    for, in seconds. ``volume`` is not used (indices have none) but must not be ragged.
    Empty arrays (holiday, unknown id) give []. ValueError naming the field: missing or
    ragged arrays, a value that is not a positive price, a timestamp that is not a bucket start
    or not after the previous one.
    """
    check_timeframe(timeframe)
    where = f"chart answer for {key}"
    if isinstance(answer, Mapping):
        arrays: Mapping[str, Any] = answer
    elif hasattr(answer, "candles"):
        bars = answer.candles
        arrays = {
            "timestamp": [bar.timestamp.timestamp() for bar in bars],
            "open": [bar.open for bar in bars],
            "high": [bar.high for bar in bars],
            "low": [bar.low for bar in bars],
            "close": [bar.close for bar in bars],
        }
    else:
        raise ValueError(f"{where}: expected an object of parallel arrays, got {answer!r:.80}")
    for name in (*_CHART_FIELDS, "volume"):
        if name not in arrays:
            if name == "volume":
                continue
            raise ValueError(f"{where}: '{name}' is missing")
        if not isinstance(arrays[name], list | tuple):
            raise ValueError(f"{where}: '{name}' is not an array: {arrays[name]!r:.80}")
    length = len(arrays["timestamp"])
    for name in (*_CHART_FIELDS, "volume"):
        if name in arrays and len(arrays[name]) != length:
            raise ValueError(
                f"{where}: '{name}' has {len(arrays[name])} values, 'timestamp' has {length}"
            )
    candles: list[Candle] = []
    previous = -math.inf
    for i in range(length):
        start = _number(arrays["timestamp"][i], f"{where}: 'timestamp'[{i}]")
        if bucket_start(start, timeframe) != start:
            raise ValueError(
                f"{where}: 'timestamp'[{i}] = {start:.0f} is not the start of a {timeframe} s "
                "bucket (09:15 IST + whole buckets)"
            )
        if start <= previous:
            raise ValueError(f"{where}: 'timestamp'[{i}] = {start:.0f} is not after the previous")
        previous = start
        open_, high, low, close = (
            _price(arrays[name][i], f"{where}: '{name}'[{i}]") for name in _CHART_FIELDS[1:]
        )
        candles.append(Candle(key, timeframe, start, open_, high, low, close, 0, source="chart"))
    return candles


def aggregate(candles: Sequence[Candle], timeframe: int) -> list[Candle]:
    """Merge candles into ``timeframe`` buckets (1 m -> 5 m), per key, oldest first.

    All inputs must share one timeframe that divides ``timeframe``. Filled candles only count
    when their whole group is filled (they are placeholders, not prices), so the result equals
    what :class:`CandleBuilder` makes from the same ticks. A trailing group with fewer inputs
    (a bucket still forming) is returned as it is. ``source`` is ``"chart"`` only when every
    input of the group is a chart candle.
    """
    check_timeframe(timeframe)
    if not candles:
        return []
    sizes = {c.timeframe for c in candles}
    if len(sizes) > 1:
        raise ValueError(f"aggregate: candles of several timeframes {sorted(sizes)}")
    size = sizes.pop()
    if timeframe % size:
        raise ValueError(f"aggregate: {size} s candles do not divide {timeframe} s buckets")
    # Keys in the order they first appear, buckets oldest first within a key.
    groups: dict[str, dict[float, list[Candle]]] = {c.key: {} for c in candles}
    for candle in sorted(candles, key=lambda c: c.start):
        group = groups[candle.key].setdefault(bucket_start(candle.start, timeframe), [])
        if group and group[-1].start == candle.start:
            raise ValueError(f"aggregate: two candles for {candle.key} at {candle.start:.0f}")
        group.append(candle)
    out: list[Candle] = []
    for key, buckets in groups.items():
        for start, group in buckets.items():
            real = [c for c in group if not c.filled] or group
            out.append(
                Candle(
                    key=key,
                    timeframe=timeframe,
                    start=start,
                    open=real[0].open,
                    high=max(c.high for c in real),
                    low=min(c.low for c in real),
                    close=real[-1].close,
                    ticks=sum(c.ticks for c in group),
                    filled=real[0].filled,
                    source="chart" if all(c.source == "chart" for c in group) else "ticks",
                )
            )
    return out
