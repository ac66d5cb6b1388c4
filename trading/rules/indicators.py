"""Technical indicators on candle series: full-series functions and incremental classes.

Pure: floats in, floats out; standard library only, no numpy (the engine updates a few states
per candle, where plain floats are faster than array set-up).

Two forms of every indicator, which must agree (the tests prove it over long random series):

* a full-series function over sequences (``sma(values, 20)``), returning one entry per input
  candle, ``None`` until the indicator is warm;
* an incremental class (``SMA(20).update(value)``), O(1) per candle, returning the latest value
  (``None`` until warm). The signal engine keeps one per index and timeframe.

The two forms perform the same floating-point operations in the same order, so they agree
exactly, not just closely; the tests still allow 1e-9 relative so that a harmless reordering
does not fail them.

Warm-up: candle counts below are 1-based ("warm after N candles" = index N-1 is the first
non-None value).

=====================  ===========================  ===========================================
indicator              warm after                   definition
=====================  ===========================  ===========================================
true range             1 candle                     first TR = high - low (no previous close)
SMA(n)                 n candles                    mean of the last n values
EMA(n)                 n candles                    seeded with the SMA of the first n values,
                                                    then ``prev + 2/(n+1) * (x - prev)``
RMA(n) (Wilder)        n candles                    seeded with the SMA of the first n values,
                                                    then ``(prev * (n-1) + x) / n``
ATR(n)                 n candles                    RMA(n) of the true range (the first TR is
                                                    high - low, as in StockCharts' ATR table)
RSI(n) (Wilder)        n + 1 candles                average gain/loss = mean of the first n
                                                    close-to-close changes, then Wilder RMA
MACD(f, s, g)          line: s candles              EMA(f) - EMA(s); signal = EMA(g) of the
                       signal, hist: s + g - 1      line, seeded over its first g values
+DI/-DI(n) (Wilder)    n + 1 candles                Wilder sums of +DM, -DM, TR over n moves
ADX(n) (Wilder)        2n candles                   mean of the first n DX, then Wilder RMA
Supertrend(n, m)       n candles                    ATR(n) bands around (high + low) / 2
=====================  ===========================  ===========================================

Conventions where sources differ (chosen to match Wilder 1978 and StockCharts ChartSchool):

* RSI = 100 * avg_gain / (avg_gain + avg_loss), the same as ``100 - 100 / (1 + RS)``; 100 when
  there are gains and no losses, 50 when there is no movement at all (both averages zero).
* ADX's true range starts at the second candle (a directional move needs a previous candle),
  while ATR's includes the first candle's high - low; both as in the ChartSchool tables.
* +DM = up move when it is positive and larger than the down move, else 0 (and mirrored for
  -DM); equal moves give 0 to both. DI is 0 when the smoothed TR is 0; DX is 0 when both DI are.
* Supertrend's first warm candle starts an up-trend (+1), as in the original formulation and
  its popular Pine (marketcalls "Supertrend V1.0") and pandas-ta versions; the direction then
  only changes when a close crosses the final band, so with enough history (the engine seeds
  several days) the starting choice has washed out long before trading.

Inputs are finite floats; sequences of one call must have equal lengths (ValueError if not).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from trading.config.types import HolyGrailParams

UP = 1
DOWN = -1
NEUTRAL = 0  # holy grail: components disagree or the trend is too weak


def _check_period(period: int, name: str = "period") -> None:
    if isinstance(period, bool) or not isinstance(period, int) or period < 1:
        raise ValueError(f"{name} must be a positive int, got {period!r}")


def _check_ohlc(high: Sequence[float], low: Sequence[float], close: Sequence[float]) -> int:
    if not len(high) == len(low) == len(close):
        raise ValueError(
            f"high, low and close must have equal lengths, got {len(high)}, {len(low)}, "
            f"{len(close)}"
        )
    return len(close)


def _check_macd(fast: int, slow: int, signal: int) -> None:
    _check_period(fast, "fast")
    _check_period(slow, "slow")
    _check_period(signal, "signal")
    if fast >= slow:
        raise ValueError(f"MACD fast period must be below the slow one, got {fast} >= {slow}")


def _tr(high: float, low: float, prev_close: float) -> float:
    # Wilder's true range: the candle's range extended to the previous close (gaps count).
    return max(high - low, abs(high - prev_close), abs(low - prev_close))


# -- full-series functions ------------------------------------------------------------------------


def true_range(high: Sequence[float], low: Sequence[float], close: Sequence[float]) -> list[float]:
    """Wilder's true range per candle; the first, with no previous close, is high - low."""
    n = _check_ohlc(high, low, close)
    if n == 0:
        return []
    out = [high[0] - low[0]]
    for i in range(1, n):
        out.append(_tr(high[i], low[i], close[i - 1]))
    return out


def sma(values: Sequence[float], period: int) -> list[float | None]:
    """Simple moving average over ``period`` values; None for the first ``period - 1``.

    Kept as a running sum (O(1) per value, like the incremental class) that is recomputed
    exactly with ``math.fsum`` every ``period`` values, so rounding drift cannot accumulate
    over a long session.
    """
    _check_period(period)
    out: list[float | None] = []
    total = 0.0
    since_resync = 0
    for i, value in enumerate(values):
        total += value
        if i >= period:
            total -= values[i - period]
        if i < period - 1:
            out.append(None)
            continue
        since_resync += 1
        if since_resync == period:
            total = math.fsum(values[i - period + 1 : i + 1])
            since_resync = 0
        out.append(total / period)
    return out


def ema(values: Sequence[float], period: int) -> list[float | None]:
    """Exponential moving average, alpha = 2 / (period + 1), seeded with the SMA of the first
    ``period`` values (so the first value is at index period - 1)."""
    _check_period(period)
    alpha = 2.0 / (period + 1)
    out: list[float | None] = [None] * min(period - 1, len(values))
    if len(values) < period:
        return out
    prev = math.fsum(values[:period]) / period
    out.append(prev)
    for value in values[period:]:
        prev = prev + alpha * (value - prev)
        out.append(prev)
    return out


def rma(values: Sequence[float], period: int) -> list[float | None]:
    """Wilder's smoothing (a.k.a. RMA, SMMA): seeded with the SMA of the first ``period`` values,
    then ``(prev * (period - 1) + value) / period``."""
    _check_period(period)
    out: list[float | None] = [None] * min(period - 1, len(values))
    if len(values) < period:
        return out
    prev = math.fsum(values[:period]) / period
    out.append(prev)
    keep = period - 1
    for value in values[period:]:
        prev = (prev * keep + value) / period
        out.append(prev)
    return out


def atr(
    high: Sequence[float], low: Sequence[float], close: Sequence[float], period: int
) -> list[float | None]:
    """Wilder's average true range: RMA(period) of the true range (first at index period - 1)."""
    _check_period(period)
    return rma(true_range(high, low, close), period)


def rsi(close: Sequence[float], period: int) -> list[float | None]:
    """Wilder's RSI; first value at index ``period`` (it needs ``period`` changes)."""
    _check_period(period)
    n = len(close)
    out: list[float | None] = [None] * min(period, n)
    if n <= period:
        return out
    gains = [0.0]
    losses = [0.0]
    for i in range(1, n):
        change = close[i] - close[i - 1]
        gains.append(change if change > 0 else 0.0)
        losses.append(-change if change < 0 else 0.0)
    avg_gain = math.fsum(gains[1 : period + 1]) / period
    avg_loss = math.fsum(losses[1 : period + 1]) / period
    out.append(_rsi_value(avg_gain, avg_loss))
    keep = period - 1
    for i in range(period + 1, n):
        avg_gain = (avg_gain * keep + gains[i]) / period
        avg_loss = (avg_loss * keep + losses[i]) / period
        out.append(_rsi_value(avg_gain, avg_loss))
    return out


def _rsi_value(avg_gain: float, avg_loss: float) -> float:
    total = avg_gain + avg_loss
    if total == 0.0:
        return 50.0  # no movement at all: neither side has strength
    return 100.0 * avg_gain / total


def macd(
    close: Sequence[float], fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[list[float | None], list[float | None], list[float | None]]:
    """(MACD line, signal line, histogram). Line = EMA(fast) - EMA(slow), from index slow - 1;
    signal = EMA(signal) of the line seeded over its first ``signal`` values, so signal and
    histogram start at index slow + signal - 2."""
    _check_macd(fast, slow, signal)
    fast_ema = ema(close, fast)
    slow_ema = ema(close, slow)
    line: list[float | None] = []
    for f, s in zip(fast_ema, slow_ema, strict=True):
        line.append(None if f is None or s is None else f - s)
    start = slow - 1
    warm_line = [value for value in line[start:] if value is not None]
    signal_tail = ema(warm_line, signal)
    signal_line: list[float | None] = [None] * min(start, len(line)) + signal_tail
    hist: list[float | None] = []
    for m, s in zip(line, signal_line, strict=True):
        hist.append(None if m is None or s is None else m - s)
    return line, signal_line, hist


def _directional_moves(
    high: float, low: float, prev_high: float, prev_low: float
) -> tuple[float, float]:
    up = high - prev_high
    down = prev_low - low
    plus_dm = up if up > down and up > 0.0 else 0.0
    minus_dm = down if down > up and down > 0.0 else 0.0
    return plus_dm, minus_dm


def _di_dx(sum_tr: float, sum_plus: float, sum_minus: float) -> tuple[float, float, float]:
    if sum_tr > 0.0:
        plus_di = 100.0 * sum_plus / sum_tr
        minus_di = 100.0 * sum_minus / sum_tr
    else:
        plus_di = minus_di = 0.0
    di_sum = plus_di + minus_di
    dx = 100.0 * abs(plus_di - minus_di) / di_sum if di_sum > 0.0 else 0.0
    return plus_di, minus_di, dx


def adx(
    high: Sequence[float], low: Sequence[float], close: Sequence[float], period: int = 14
) -> tuple[list[float | None], list[float | None], list[float | None]]:
    """Wilder's directional movement: (+DI, -DI, ADX).

    From the second candle, +DM/-DM and TR (with the previous close). Their first Wilder sums are
    plain sums of the first ``period`` moves (candles 2..period+1), then
    ``sum - sum / period + current``; DI = 100 * DM sum / TR sum, first at index ``period``.
    DX = 100 * |+DI - -DI| / (+DI + -DI); ADX = mean of the first ``period`` DX (first at index
    2 * period - 1), then Wilder's RMA of DX.
    """
    _check_period(period)
    n = _check_ohlc(high, low, close)
    plus_out: list[float | None] = [None] * min(period, n)
    minus_out: list[float | None] = [None] * min(period, n)
    adx_out: list[float | None] = [None] * min(2 * period - 1, n)
    if n <= period:
        return plus_out, minus_out, adx_out
    trs = [0.0]
    plus_dms = [0.0]
    minus_dms = [0.0]
    for i in range(1, n):
        plus_dm, minus_dm = _directional_moves(high[i], low[i], high[i - 1], low[i - 1])
        plus_dms.append(plus_dm)
        minus_dms.append(minus_dm)
        trs.append(_tr(high[i], low[i], close[i - 1]))
    dxs: list[float] = []
    sum_tr = sum_plus = sum_minus = 0.0
    adx_value: float | None = None
    keep = period - 1
    for i in range(period, n):
        if i == period:
            sum_tr = math.fsum(trs[1 : period + 1])
            sum_plus = math.fsum(plus_dms[1 : period + 1])
            sum_minus = math.fsum(minus_dms[1 : period + 1])
        else:
            sum_tr = sum_tr - sum_tr / period + trs[i]
            sum_plus = sum_plus - sum_plus / period + plus_dms[i]
            sum_minus = sum_minus - sum_minus / period + minus_dms[i]
        plus_di, minus_di, dx = _di_dx(sum_tr, sum_plus, sum_minus)
        plus_out.append(plus_di)
        minus_out.append(minus_di)
        if adx_value is None:
            dxs.append(dx)
            if len(dxs) == period:
                adx_value = math.fsum(dxs) / period
                adx_out.append(adx_value)
        else:
            adx_value = (adx_value * keep + dx) / period
            adx_out.append(adx_value)
    return plus_out, minus_out, adx_out


@dataclass(frozen=True, slots=True)
class SupertrendSeries:
    """Per candle, None until ATR(period) is warm: ``atr``; final ``upper`` and ``lower`` bands;
    ``direction`` +1 (up-trend, the line is the lower band) or -1 (down-trend, the upper band);
    ``line`` the Supertrend value itself."""

    atr: list[float | None]
    upper: list[float | None]
    lower: list[float | None]
    direction: list[int | None]
    line: list[float | None]


def supertrend(
    high: Sequence[float],
    low: Sequence[float],
    close: Sequence[float],
    period: int = 10,
    multiplier: float = 2.0,
) -> SupertrendSeries:
    """Supertrend(period, multiplier).

    Basic bands: hl2 +/- multiplier * ATR(period), hl2 = (high + low) / 2. Final bands ratchet:
    the upper band takes the basic one only if that is lower, or if the previous close broke
    above the previous final upper band (else it stays); the lower band mirrors it. So while
    the trend is up the lower band can only rise, and while down the upper band only falls.
    Direction flips down when a close falls below the final lower band, up when a close rises
    above the final upper band. The first warm candle starts an up-trend (module docstring).
    """
    _check_period(period)
    if not multiplier > 0:
        raise ValueError(f"multiplier must be positive, got {multiplier!r}")
    n = _check_ohlc(high, low, close)
    atrs = atr(high, low, close, period)
    upper_out: list[float | None] = []
    lower_out: list[float | None] = []
    dir_out: list[int | None] = []
    line_out: list[float | None] = []
    upper = lower = 0.0
    direction: int | None = None
    for i in range(n):
        a = atrs[i]
        if a is None:
            upper_out.append(None)
            lower_out.append(None)
            dir_out.append(None)
            line_out.append(None)
            continue
        hl2 = (high[i] + low[i]) / 2.0
        basic_upper = hl2 + multiplier * a
        basic_lower = hl2 - multiplier * a
        if direction is None:
            upper, lower, direction = basic_upper, basic_lower, UP
        else:
            prev_close = close[i - 1]
            if basic_upper < upper or prev_close > upper:
                upper = basic_upper
            if basic_lower > lower or prev_close < lower:
                lower = basic_lower
            if direction == UP and close[i] < lower:
                direction = DOWN
            elif direction == DOWN and close[i] > upper:
                direction = UP
        upper_out.append(upper)
        lower_out.append(lower)
        dir_out.append(direction)
        line_out.append(lower if direction == UP else upper)
    return SupertrendSeries(atrs, upper_out, lower_out, dir_out, line_out)


def holy_grail_needed(params: HolyGrailParams, adx_period: int) -> int:
    """Candles after which every holy grail component is warm."""
    return max(
        params.sma_period,
        params.ema_period,
        params.macd_slow + params.macd_signal - 1,
        params.rsi_period + 1,
        2 * adx_period,
    )


def _bias(close: float, sma_value: float, ema_value: float) -> int:
    if close > sma_value and close > ema_value:
        return UP
    if close < sma_value and close < ema_value:
        return DOWN
    return NEUTRAL


def _momentum(macd_value: float, signal_value: float, rsi_value: float, midline: float) -> int:
    if macd_value > signal_value and rsi_value > midline:
        return UP
    if macd_value < signal_value and rsi_value < midline:
        return DOWN
    return NEUTRAL


def _holy_grail_direction(bias: int, momentum: int, adx_value: float, adx_min: float) -> int:
    if bias != NEUTRAL and bias == momentum and adx_value >= adx_min:
        return bias
    return NEUTRAL


@dataclass(frozen=True, slots=True)
class HolyGrailSeries:
    """The holy grail components per candle. ``bias``: +1 close above both SMA and EMA, -1 below
    both, 0 between; ``momentum``: +1 MACD above its signal and RSI above the midline, -1 both
    below, 0 mixed; ``direction``: bias when bias and momentum agree (non-zero) and ADX >= the
    minimum, else 0. The three are None until every component is warm."""

    sma: list[float | None]
    ema: list[float | None]
    macd: list[float | None]
    macd_signal: list[float | None]
    macd_hist: list[float | None]
    rsi: list[float | None]
    plus_di: list[float | None]
    minus_di: list[float | None]
    adx: list[float | None]
    bias: list[int | None]
    momentum: list[int | None]
    direction: list[int | None]


def holy_grail(
    high: Sequence[float],
    low: Sequence[float],
    close: Sequence[float],
    params: HolyGrailParams,
    adx_period: int = 14,
) -> HolyGrailSeries:
    """The holy grail composite: SMA/EMA bias, MACD and RSI momentum, ADX strength."""
    n = _check_ohlc(high, low, close)
    sma_s = sma(close, params.sma_period)
    ema_s = ema(close, params.ema_period)
    line, signal_line, hist = macd(close, params.macd_fast, params.macd_slow, params.macd_signal)
    rsi_s = rsi(close, params.rsi_period)
    plus_di, minus_di, adx_s = adx(high, low, close, adx_period)
    first = holy_grail_needed(params, adx_period) - 1
    bias: list[int | None] = []
    momentum: list[int | None] = []
    direction: list[int | None] = []
    for i in range(n):
        if i < first:
            bias.append(None)
            momentum.append(None)
            direction.append(None)
            continue
        b = _bias(close[i], sma_s[i], ema_s[i])
        m = _momentum(line[i], signal_line[i], rsi_s[i], params.rsi_midline)
        bias.append(b)
        momentum.append(m)
        direction.append(_holy_grail_direction(b, m, adx_s[i], params.adx_min))
    return HolyGrailSeries(
        sma=sma_s,
        ema=ema_s,
        macd=line,
        macd_signal=signal_line,
        macd_hist=hist,
        rsi=rsi_s,
        plus_di=plus_di,
        minus_di=minus_di,
        adx=adx_s,
        bias=bias,
        momentum=momentum,
        direction=direction,
    )


# -- incremental classes --------------------------------------------------------------------------


class TrueRange:
    """Incremental true range; ``update`` returns the candle's TR (the first is high - low)."""

    __slots__ = ("prev_close",)

    def __init__(self) -> None:
        self.prev_close: float | None = None

    def update(self, high: float, low: float, close: float) -> float:
        prev = self.prev_close
        self.prev_close = close
        if prev is None:
            return high - low
        return _tr(high, low, prev)


class SMA:
    """Incremental simple moving average (running sum, exact ``fsum`` resync every period)."""

    __slots__ = ("_since_resync", "_total", "_window", "period", "value")

    def __init__(self, period: int) -> None:
        _check_period(period)
        self.period = period
        self._window: deque[float] = deque(maxlen=period)
        self._total = 0.0
        self._since_resync = 0
        self.value: float | None = None

    def update(self, value: float) -> float | None:
        window = self._window
        period = self.period
        self._total += value
        if len(window) == period:
            self._total -= window[0]  # the value the append below pushes out
        window.append(value)
        if len(window) < period:
            return None
        self._since_resync += 1
        if self._since_resync == period:
            self._total = math.fsum(window)
            self._since_resync = 0
        self.value = self._total / period
        return self.value


class _SeededAverage:
    """Base of the incremental averages seeded with the SMA of their first ``period`` values.

    Holds ``period``, ``value`` and the seed; ``_warm_up`` is the path until warm only: each
    subclass keeps its per-candle step inline in ``update`` (the hot path, no extra call).
    """

    __slots__ = ("_seed", "period", "value")

    def __init__(self, period: int) -> None:
        _check_period(period)
        self.period = period
        self._seed: list[float] | None = []
        self.value: float | None = None

    def _warm_up(self, value: float) -> float | None:
        seed = self._seed
        seed.append(value)
        if len(seed) < self.period:
            return None
        self.value = math.fsum(seed) / self.period
        self._seed = None
        return self.value


class EMA(_SeededAverage):
    """Incremental EMA, seeded with the SMA of the first ``period`` values."""

    __slots__ = ("_alpha",)

    def __init__(self, period: int) -> None:
        super().__init__(period)
        self._alpha = 2.0 / (period + 1)

    def update(self, value: float) -> float | None:
        prev = self.value
        if prev is not None:
            prev = prev + self._alpha * (value - prev)
            self.value = prev
            return prev
        return self._warm_up(value)


class RMA(_SeededAverage):
    """Incremental Wilder smoothing, seeded with the SMA of the first ``period`` values."""

    __slots__ = ("_keep",)

    def __init__(self, period: int) -> None:
        super().__init__(period)
        self._keep = period - 1

    def update(self, value: float) -> float | None:
        prev = self.value
        if prev is not None:
            prev = (prev * self._keep + value) / self.period
            self.value = prev
            return prev
        return self._warm_up(value)


class ATR:
    """Incremental Wilder ATR."""

    __slots__ = ("_rma", "_tr", "period")

    def __init__(self, period: int) -> None:
        _check_period(period)
        self.period = period
        self._tr = TrueRange()
        self._rma = RMA(period)

    @property
    def value(self) -> float | None:
        return self._rma.value

    def update(self, high: float, low: float, close: float) -> float | None:
        return self._rma.update(self._tr.update(high, low, close))


class RSI:
    """Incremental Wilder RSI; ``update(close)``; warm after period + 1 closes."""

    __slots__ = ("_avg_gain", "_avg_loss", "_gains", "_keep", "_losses", "_prev", "period", "value")

    def __init__(self, period: int) -> None:
        _check_period(period)
        self.period = period
        self._keep = period - 1
        self._prev: float | None = None
        self._gains: list[float] = []
        self._losses: list[float] = []
        self._avg_gain = 0.0
        self._avg_loss = 0.0
        self.value: float | None = None

    def update(self, close: float) -> float | None:
        prev = self._prev
        self._prev = close
        if prev is None:
            return None
        change = close - prev
        gain = change if change > 0 else 0.0
        loss = -change if change < 0 else 0.0
        if self.value is not None:
            self._avg_gain = (self._avg_gain * self._keep + gain) / self.period
            self._avg_loss = (self._avg_loss * self._keep + loss) / self.period
        else:
            self._gains.append(gain)
            self._losses.append(loss)
            if len(self._gains) < self.period:
                return None
            self._avg_gain = math.fsum(self._gains) / self.period
            self._avg_loss = math.fsum(self._losses) / self.period
            self._gains = self._losses = []
        self.value = _rsi_value(self._avg_gain, self._avg_loss)
        return self.value


class MACD:
    """Incremental MACD; ``update(close)`` returns (line, signal, histogram), parts None until
    warm (line after ``slow`` closes, signal and histogram after ``slow + signal - 1``)."""

    __slots__ = ("_fast", "_signal", "_slow", "hist", "line", "signal")

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9) -> None:
        _check_macd(fast, slow, signal)
        self._fast = EMA(fast)
        self._slow = EMA(slow)
        self._signal = EMA(signal)
        self.line: float | None = None
        self.signal: float | None = None
        self.hist: float | None = None

    def update(self, close: float) -> tuple[float | None, float | None, float | None]:
        f = self._fast.update(close)
        s = self._slow.update(close)
        if f is None or s is None:
            return None, None, None
        line = f - s
        self.line = line
        sig = self._signal.update(line)
        if sig is None:
            return line, None, None
        self.signal = sig
        self.hist = line - sig
        return line, sig, self.hist


class ADX:
    """Incremental Wilder +DI/-DI/ADX; ``update`` returns (+DI, -DI, ADX), parts None until
    warm (DI after period + 1 candles, ADX after 2 * period)."""

    __slots__ = (
        "_dxs",
        "_keep",
        "_moves",
        "_prev",
        "_sum_minus",
        "_sum_plus",
        "_sum_tr",
        "adx",
        "minus_di",
        "period",
        "plus_di",
    )

    def __init__(self, period: int = 14) -> None:
        _check_period(period)
        self.period = period
        self._keep = period - 1
        self._prev: tuple[float, float, float] | None = None
        self._moves: list[tuple[float, float, float]] | None = []  # (tr, +dm, -dm) until warm
        self._sum_tr = self._sum_plus = self._sum_minus = 0.0
        self._dxs: list[float] | None = []
        self.plus_di: float | None = None
        self.minus_di: float | None = None
        self.adx: float | None = None

    def update(
        self, high: float, low: float, close: float
    ) -> tuple[float | None, float | None, float | None]:
        prev = self._prev
        self._prev = (high, low, close)
        if prev is None:
            return None, None, None
        prev_high, prev_low, prev_close = prev
        plus_dm, minus_dm = _directional_moves(high, low, prev_high, prev_low)
        tr = _tr(high, low, prev_close)
        period = self.period
        moves = self._moves
        if moves is None:
            self._sum_tr = self._sum_tr - self._sum_tr / period + tr
            self._sum_plus = self._sum_plus - self._sum_plus / period + plus_dm
            self._sum_minus = self._sum_minus - self._sum_minus / period + minus_dm
        else:
            moves.append((tr, plus_dm, minus_dm))
            if len(moves) < period:
                return None, None, None
            self._sum_tr = math.fsum(m[0] for m in moves)
            self._sum_plus = math.fsum(m[1] for m in moves)
            self._sum_minus = math.fsum(m[2] for m in moves)
            self._moves = None
        plus_di, minus_di, dx = _di_dx(self._sum_tr, self._sum_plus, self._sum_minus)
        self.plus_di = plus_di
        self.minus_di = minus_di
        adx_value = self.adx
        if adx_value is not None:
            adx_value = (adx_value * self._keep + dx) / period
            self.adx = adx_value
        else:
            dxs = self._dxs
            dxs.append(dx)
            if len(dxs) == period:
                self.adx = adx_value = math.fsum(dxs) / period
                self._dxs = None
        return plus_di, minus_di, adx_value


class Supertrend:
    """Incremental Supertrend; ``update`` returns the line (None until ATR is warm); the latest
    ``direction`` (+1/-1), ``upper`` and ``lower`` final bands and ``atr`` are attributes."""

    __slots__ = ("_atr", "_prev_close", "atr", "direction", "line", "lower", "multiplier", "upper")

    def __init__(self, period: int = 10, multiplier: float = 2.0) -> None:
        _check_period(period)
        if not multiplier > 0:
            raise ValueError(f"multiplier must be positive, got {multiplier!r}")
        self.multiplier = multiplier
        self._atr = ATR(period)
        self._prev_close: float | None = None
        self.atr: float | None = None
        self.upper: float | None = None
        self.lower: float | None = None
        self.direction: int | None = None
        self.line: float | None = None

    def update(self, high: float, low: float, close: float) -> float | None:
        a = self._atr.update(high, low, close)
        prev_close = self._prev_close
        self._prev_close = close
        if a is None:
            return None
        self.atr = a
        hl2 = (high + low) / 2.0
        basic_upper = hl2 + self.multiplier * a
        basic_lower = hl2 - self.multiplier * a
        direction = self.direction
        if direction is None:
            upper, lower, direction = basic_upper, basic_lower, UP
        else:
            upper = self.upper
            lower = self.lower
            if basic_upper < upper or prev_close > upper:
                upper = basic_upper
            if basic_lower > lower or prev_close < lower:
                lower = basic_lower
            if direction == UP and close < lower:
                direction = DOWN
            elif direction == DOWN and close > upper:
                direction = UP
        self.upper = upper
        self.lower = lower
        self.direction = direction
        self.line = lower if direction == UP else upper
        return self.line


class HolyGrail:
    """Incremental holy grail composite; ``update`` returns the direction (+1, -1, or 0 when the
    components disagree or ADX is below the minimum), None until every component is warm.
    Component values are attributes (``sma``, ``ema``, ``macd``, ``rsi``, ``adx`` ...)."""

    __slots__ = (
        "_adx",
        "_ema",
        "_macd",
        "_rsi",
        "_sma",
        "adx",
        "bias",
        "candles",
        "direction",
        "ema",
        "macd",
        "macd_hist",
        "macd_signal",
        "minus_di",
        "momentum",
        "needed",
        "params",
        "plus_di",
        "rsi",
        "sma",
    )

    def __init__(self, params: HolyGrailParams, adx_period: int = 14) -> None:
        self.params = params
        self._sma = SMA(params.sma_period)
        self._ema = EMA(params.ema_period)
        self._macd = MACD(params.macd_fast, params.macd_slow, params.macd_signal)
        self._rsi = RSI(params.rsi_period)
        self._adx = ADX(adx_period)
        self.needed = holy_grail_needed(params, adx_period)
        self.candles = 0
        self.sma: float | None = None
        self.ema: float | None = None
        self.macd: float | None = None
        self.macd_signal: float | None = None
        self.macd_hist: float | None = None
        self.rsi: float | None = None
        self.plus_di: float | None = None
        self.minus_di: float | None = None
        self.adx: float | None = None
        self.bias: int | None = None
        self.momentum: int | None = None
        self.direction: int | None = None

    def update(self, high: float, low: float, close: float) -> int | None:
        self.candles += 1
        self.sma = self._sma.update(close)
        self.ema = self._ema.update(close)
        self.macd, self.macd_signal, self.macd_hist = self._macd.update(close)
        self.rsi = self._rsi.update(close)
        self.plus_di, self.minus_di, self.adx = self._adx.update(high, low, close)
        if self.candles < self.needed:
            return None
        params = self.params
        bias = _bias(close, self.sma, self.ema)
        momentum = _momentum(self.macd, self.macd_signal, self.rsi, params.rsi_midline)
        self.bias = bias
        self.momentum = momentum
        self.direction = _holy_grail_direction(bias, momentum, self.adx, params.adx_min)
        return self.direction
