"""Entry signals from index candles (DOMAIN "Entry", step 1): direction, confidence, why.

Pure: candles in (high, low, close floats), a ``Signal`` out. Two ways to the same answer:

* ``SignalState(cfg)``: one per index and timeframe, fed each closed candle with ``update``
  (O(1) per candle, the engine's hot path);
* ``evaluate(highs, lows, closes, cfg)``: recomputes everything from the whole series (start-up,
  audits, tests). It returns exactly the ``Signal`` the state returns after the same candles.

Strategies (``cfg.strategy``):

* ``supertrend`` (DOMAIN default): Supertrend(period, multiplier) gives the direction;
  ADX(adx_period) below ``adx_min`` makes it ``avoid``.
* ``holy_grail``: bias from the close against SMA(sma_period) and EMA(ema_period) (above both
  bullish, below both bearish), momentum from MACD against its signal line and RSI against the
  midline (both up bullish, both down bearish), ADX(adx_period) >= ``holy_grail.adx_min``.
  All three agree -> that direction, else ``avoid``.

Warm-up: until every indicator the strategy uses has a value (``SignalState.needed`` candles,
see ``candles_needed``) the signal is ``avoid`` with reason ``"warming up: 12 of 29 candles"``.

Confidence (0..1, 0.0 for every ``avoid``), an even blend of two scores, each clamped to 0..1
and non-decreasing in what it measures:

* supertrend: ``0.5 * adx_score + 0.5 * distance_score``;
  ``adx_score = (ADX - adx_min) / 20`` (0 at the minimum, 1 at 20 points above it: Wilder
  read ADX moves of that size as the difference between a weak and a strong trend);
  ``distance_score = |close - line| / (multiplier * ATR)`` (0 with the close on the Supertrend
  line, about to flip; 1 a full band width away, where a basic band sits from hl2).
* holy_grail: ``0.5 * adx_score + 0.5 * rsi_score``; ``adx_score`` as above against
  ``holy_grail.adx_min``; ``rsi_score = |RSI - midline| / 20`` (RSI 70 or 30 around a 50
  midline scores 1, Wilder's overbought/oversold levels).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from trading.config.types import SignalsConfig
from trading.rules.indicators import (
    ADX,
    UP,
    HolyGrail,
    Supertrend,
    adx,
    holy_grail,
    holy_grail_needed,
    supertrend,
)
from trading.rules.vocab import Direction

STRATEGIES = ("supertrend", "holy_grail")
ADX_FULL_SCALE = 20.0  # ADX points above the minimum for a full ADX score
RSI_FULL_SCALE = 20.0  # RSI points away from the midline for a full RSI score


@dataclass(frozen=True, slots=True)
class Signal:
    """One evaluation. ``confidence`` is 0..1 (0.0 for ``avoid``); ``values`` holds the
    indicator values behind it (None while an indicator is warming up), stored with the signal;
    ``reason`` says why the direction is ``avoid`` ("" otherwise)."""

    direction: Direction
    confidence: float
    values: dict[str, float | None] = field(default_factory=dict)
    reason: str = ""


def candles_needed(cfg: SignalsConfig) -> int:
    """Closed candles after which every indicator of ``cfg.strategy`` has a value.

    supertrend: ATR(period) is warm after ``period`` candles, ADX(n) after ``2 n``.
    holy_grail: SMA(n)/EMA(n) after n, MACD's signal after ``slow + signal - 1``, RSI(n) after
    ``n + 1``, ADX(n) after ``2 n``. (The warm-up table is in ``trading.rules.indicators``.)
    """
    if cfg.strategy == "supertrend":
        return max(cfg.supertrend.period, 2 * cfg.adx_period)
    if cfg.strategy == "holy_grail":
        return holy_grail_needed(cfg.holy_grail, cfg.adx_period)
    raise ValueError(f"unknown signals strategy {cfg.strategy!r} (expected one of {STRATEGIES})")


def _clamp01(value: float) -> float:
    return 0.0 if value < 0.0 else 1.0 if value > 1.0 else value


def _fmt(value: float) -> str:
    # A configured threshold as written: 18 -> "18", 18.5 -> "18.5".
    return f"{value:g}"


def _floor1(value: float) -> str:
    # A value compared below a threshold, to one decimal rounded down: 17.96 -> "17.9", so the
    # reason never reads "ADX 18.0 < 18".
    return f"{math.floor(value * 10.0) / 10.0:.1f}"


def _warming(candles: int, needed: int, values: dict[str, float | None]) -> Signal:
    return Signal(Direction.AVOID, 0.0, values, f"warming up: {candles} of {needed} candles")


def _cold_or_weak(
    candles: int,
    needed: int,
    values: dict[str, float | None],
    adx_value: float | None,
    adx_min: float,
) -> Signal | None:
    """The avoid both strategies give first: still warming up, or ADX below its minimum.
    None when warm and trending enough for the strategy's own rules."""
    if candles < needed:
        return _warming(candles, needed, values)
    if adx_value < adx_min:
        return Signal(Direction.AVOID, 0.0, values, f"ADX {_floor1(adx_value)} < {_fmt(adx_min)}")
    return None


def _supertrend_signal(
    cfg: SignalsConfig,
    candles: int,
    needed: int,
    close: float,
    line: float | None,
    direction: int | None,
    atr_value: float | None,
    plus_di: float | None,
    minus_di: float | None,
    adx_value: float | None,
) -> Signal:
    values: dict[str, float | None] = {
        "close": close,
        "supertrend": line,
        "supertrend_direction": None if direction is None else float(direction),
        "atr": atr_value,
        "adx": adx_value,
        "plus_di": plus_di,
        "minus_di": minus_di,
    }
    avoid = _cold_or_weak(candles, needed, values, adx_value, cfg.adx_min)
    if avoid is not None:
        return avoid
    adx_score = _clamp01((adx_value - cfg.adx_min) / ADX_FULL_SCALE)
    band = cfg.supertrend.multiplier * atr_value
    distance_score = _clamp01(abs(close - line) / band) if band > 0.0 else 0.0
    confidence = 0.5 * adx_score + 0.5 * distance_score
    return Signal(Direction.BULLISH if direction == UP else Direction.BEARISH, confidence, values)


def _holy_grail_signal(
    cfg: SignalsConfig,
    candles: int,
    needed: int,
    close: float,
    sma_value: float | None,
    ema_value: float | None,
    macd_value: float | None,
    macd_signal: float | None,
    macd_hist: float | None,
    rsi_value: float | None,
    plus_di: float | None,
    minus_di: float | None,
    adx_value: float | None,
    bias: int | None,
    momentum: int | None,
) -> Signal:
    params = cfg.holy_grail
    values: dict[str, float | None] = {
        "close": close,
        "sma": sma_value,
        "ema": ema_value,
        "macd": macd_value,
        "macd_signal": macd_signal,
        "macd_hist": macd_hist,
        "rsi": rsi_value,
        "adx": adx_value,
        "plus_di": plus_di,
        "minus_di": minus_di,
    }
    avoid = _cold_or_weak(candles, needed, values, adx_value, params.adx_min)
    if avoid is not None:
        return avoid
    if bias == 0:
        return Signal(
            Direction.AVOID,
            0.0,
            values,
            f"bias mixed: close {close:.2f} between SMA {sma_value:.2f} and EMA {ema_value:.2f}",
        )
    if momentum == 0:
        macd_side = "above" if macd_value > macd_signal else "not above"
        return Signal(
            Direction.AVOID,
            0.0,
            values,
            f"momentum mixed: MACD {macd_side} its signal, RSI {rsi_value:.1f} "
            f"vs midline {_fmt(params.rsi_midline)}",
        )
    if bias != momentum:
        return Signal(
            Direction.AVOID,
            0.0,
            values,
            f"bias {_name(bias)} but momentum {_name(momentum)}",
        )
    adx_score = _clamp01((adx_value - params.adx_min) / ADX_FULL_SCALE)
    rsi_score = _clamp01(abs(rsi_value - params.rsi_midline) / RSI_FULL_SCALE)
    confidence = 0.5 * adx_score + 0.5 * rsi_score
    return Signal(Direction.BULLISH if bias == UP else Direction.BEARISH, confidence, values)


def _name(side: int) -> str:
    return Direction.BULLISH.value if side == UP else Direction.BEARISH.value


class SignalState:
    """Incremental signal of one index on one timeframe: ``update`` with each closed candle.

    ``candles`` counts the candles seen, ``needed`` is how many make every indicator of the
    strategy warm (``candles_needed``), ``warm`` is ``candles >= needed``, ``last`` the latest
    signal (a "warming up" avoid before the first candle).
    """

    __slots__ = ("_adx", "_grail", "_supertrend", "candles", "cfg", "last", "needed", "strategy")

    def __init__(self, cfg: SignalsConfig) -> None:
        self.cfg = cfg
        self.strategy = cfg.strategy
        self.needed = candles_needed(cfg)
        self.candles = 0
        self._supertrend: Supertrend | None = None
        self._adx: ADX | None = None
        self._grail: HolyGrail | None = None
        if self.strategy == "supertrend":
            self._supertrend = Supertrend(cfg.supertrend.period, cfg.supertrend.multiplier)
            self._adx = ADX(cfg.adx_period)
        else:
            self._grail = HolyGrail(cfg.holy_grail, cfg.adx_period)
        self.last: Signal = _warming(0, self.needed, {})

    @property
    def warm(self) -> bool:
        return self.candles >= self.needed

    def update(self, high: float, low: float, close: float) -> Signal:
        """Feed one closed candle; returns (and keeps in ``last``) the signal after it."""
        self.candles += 1
        if self._grail is None:
            st = self._supertrend
            line = st.update(high, low, close)
            plus_di, minus_di, adx_value = self._adx.update(high, low, close)
            signal = _supertrend_signal(
                self.cfg,
                self.candles,
                self.needed,
                close,
                line,
                st.direction,
                st.atr,
                plus_di,
                minus_di,
                adx_value,
            )
        else:
            g = self._grail
            g.update(high, low, close)
            signal = _holy_grail_signal(
                self.cfg,
                self.candles,
                self.needed,
                close,
                g.sma,
                g.ema,
                g.macd,
                g.macd_signal,
                g.macd_hist,
                g.rsi,
                g.plus_di,
                g.minus_di,
                g.adx,
                g.bias,
                g.momentum,
            )
        self.last = signal
        return signal


def evaluate(
    highs: Sequence[float], lows: Sequence[float], closes: Sequence[float], cfg: SignalsConfig
) -> Signal:
    """The signal after the last of these candles, recomputed from the whole series with the
    full-series indicator functions; equal to ``SignalState`` fed the same candles."""
    needed = candles_needed(cfg)
    n = len(closes)
    if n == 0:
        return _warming(0, needed, {})
    last = n - 1
    if cfg.strategy == "supertrend":
        st = supertrend(highs, lows, closes, cfg.supertrend.period, cfg.supertrend.multiplier)
        plus_di, minus_di, adx_s = adx(highs, lows, closes, cfg.adx_period)
        return _supertrend_signal(
            cfg,
            n,
            needed,
            closes[last],
            st.line[last],
            st.direction[last],
            st.atr[last],
            plus_di[last],
            minus_di[last],
            adx_s[last],
        )
    hg = holy_grail(highs, lows, closes, cfg.holy_grail, cfg.adx_period)
    return _holy_grail_signal(
        cfg,
        n,
        needed,
        closes[last],
        hg.sma[last],
        hg.ema[last],
        hg.macd[last],
        hg.macd_signal[last],
        hg.macd_hist[last],
        hg.rsi[last],
        hg.plus_di[last],
        hg.minus_di[last],
        hg.adx[last],
        hg.bias[last],
        hg.momentum[last],
    )


def confirm(primary: Signal, confirmation: Signal | None, label: str = "confirmation") -> Signal:
    """The primary signal, vetted by the confirmation timeframe's latest signal.

    ``confirmation`` None means no confirmation timeframe is configured: the primary stands.
    (With one configured, pass its ``SignalState.last``, which is a "warming up" avoid until
    it is warm, never None.) An avoid primary stays as it is. Otherwise the confirmation must
    have the same direction, else the result is ``avoid`` with a reason naming ``label``
    ("5m disagrees (bearish)", "5m is avoid (ADX 14.2 < 18)"). Agreeing, the confidence is the
    lower of the two. The confirmation's values join the primary's, keys prefixed
    ``"{label}."``.
    """
    if confirmation is None or primary.direction == Direction.AVOID:
        return primary
    values = dict(primary.values)
    for key, value in confirmation.values.items():
        values[f"{label}.{key}"] = value
    if confirmation.direction == Direction.AVOID:
        return Signal(Direction.AVOID, 0.0, values, f"{label} is avoid ({confirmation.reason})")
    if confirmation.direction != primary.direction:
        return Signal(
            Direction.AVOID, 0.0, values, f"{label} disagrees ({confirmation.direction.value})"
        )
    return Signal(primary.direction, min(primary.confidence, confirmation.confidence), values)
