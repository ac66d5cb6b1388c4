"""trading.rules.signals: warm-up, strategies, reasons, confidence, confirmation, and the
incremental state agreeing with a full recomputation after every candle."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import pytest

from tests.trading.rules.factories import make_config, random_candles
from trading.config.types import HolyGrailParams, SignalsConfig, SupertrendParams
from trading.rules.indicators import adx, holy_grail, supertrend
from trading.rules.signals import (
    Direction,
    Signal,
    SignalState,
    candles_needed,
    confirm,
    evaluate,
)

# DOMAIN's signals (Supertrend 10 x 2, ADX 14 min 18, the factory's holy grail), confirmed on 5m.
SUPERTREND = make_config(
    signals__confirm_timeframe_minutes=5, signals__max_candle_age_seconds=30
).signals
GRAIL = replace(SUPERTREND, strategy="holy_grail")
SHORT_GRAIL = replace(
    GRAIL,
    adx_period=7,
    holy_grail=HolyGrailParams(10, 20, 5, 10, 5, 7, 50.0, 15.0),
)


def trending_candles(count: int, sign: int) -> tuple[list, list, list]:
    """An accelerating trend (2 points plus 0.05 i^2 per candle, up or down) with a narrow
    range: every indicator agrees, strongly."""
    closes = [20000.0 + sign * (2.0 * i + 0.05 * i * i) for i in range(count)]
    return [c + 5.0 for c in closes], [c - 5.0 for c in closes], closes


def run(cfg: SignalsConfig, candles: tuple[list, list, list]) -> list[Signal]:
    state = SignalState(cfg)
    return [state.update(h, lo, c) for h, lo, c in zip(*candles, strict=True)]


def clamp01(value: float) -> float:
    return min(1.0, max(0.0, value))


# -- warm-up --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        (SUPERTREND, 28),  # ADX(14) needs 2 * 14; Supertrend(10) only 10
        (replace(SUPERTREND, supertrend=SupertrendParams(40, 2.0)), 40),  # ATR(40) is slower
        (replace(SUPERTREND, adx_period=7), 14),
        (GRAIL, 100),  # EMA(100)
        (SHORT_GRAIL, 20),  # EMA(20); MACD 10 + 5 - 1 = 14; RSI 8; ADX 14
    ],
    ids=["supertrend-defaults", "slow-atr", "short-adx", "holy-grail-defaults", "short-grail"],
)
def test_needed_is_the_candle_count_at_which_every_indicator_is_warm(cfg, expected):
    assert candles_needed(cfg) == expected
    state = SignalState(cfg)
    assert (state.needed, state.candles, state.warm) == (expected, 0, False)
    signals = run(cfg, random_candles(expected, seed=4))
    before, at = signals[-2], signals[-1]
    assert before.reason == f"warming up: {expected - 1} of {expected} candles"
    assert before.direction == Direction.AVOID
    assert not at.reason.startswith("warming up")
    # Warm means every value the strategy reports is there.
    assert None not in at.values.values()
    assert None in before.values.values()


def test_a_fresh_state_reports_warming_up_and_counts_candles():
    state = SignalState(SUPERTREND)
    assert state.last == Signal(Direction.AVOID, 0.0, {}, "warming up: 0 of 28 candles")
    high, low, close = random_candles(28, seed=1)
    for i in range(27):
        state.update(high[i], low[i], close[i])
    assert (state.candles, state.warm) == (27, False)
    signal = state.update(high[27], low[27], close[27])
    assert (state.candles, state.warm) == (28, True)
    assert state.last is signal


def test_an_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="unknown signals strategy 'rsi2'"):
        SignalState(replace(SUPERTREND, strategy="rsi2"))


# -- state == full recomputation ------------------------------------------------------------------


@pytest.mark.parametrize(
    "cfg",
    [
        SUPERTREND,
        replace(SUPERTREND, supertrend=SupertrendParams(7, 3.0), adx_period=10, adx_min=25.0),
        GRAIL,
        SHORT_GRAIL,
    ],
    ids=["supertrend", "supertrend-7-3", "holy-grail", "short-grail"],
)
@pytest.mark.parametrize("seed", [1, 2])
def test_the_state_equals_a_full_recomputation_after_every_candle(cfg, seed):
    candles = random_candles(400, seed)
    signals = run(cfg, candles)
    for k in range(len(signals)):
        assert evaluate(*(series[: k + 1] for series in candles), cfg) == signals[k], k
    assert {s.direction for s in signals} == set(Direction)


def test_evaluate_of_no_candles_is_warming_up():
    assert evaluate([], [], [], SUPERTREND).reason == "warming up: 0 of 28 candles"


# -- supertrend strategy --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sign", "direction"), [(1, Direction.BULLISH), (-1, Direction.BEARISH)], ids=["up", "down"]
)
@pytest.mark.parametrize("cfg", [SUPERTREND, GRAIL], ids=["supertrend", "holy-grail"])
def test_a_strong_trend_gives_its_direction_with_high_confidence(cfg, sign, direction):
    signal = run(cfg, trending_candles(150, sign))[-1]
    assert (signal.direction, signal.reason) == (direction, "")
    assert signal.confidence > 0.9


def test_supertrend_signals_follow_the_supertrend_unless_adx_is_below_the_minimum():
    cfg = replace(SUPERTREND, adx_min=25.0)
    candles = random_candles(3000, seed=6)
    signals = run(cfg, candles)
    st = supertrend(*candles, 10, 2.0)
    adx_line = adx(*candles, 14)[2]
    weak = strong = 0
    for i in range(27, len(signals)):
        signal = signals[i]
        assert signal.values["adx"] == adx_line[i]
        assert signal.values["supertrend"] == st.line[i]
        if adx_line[i] < 25.0:
            weak += 1
            assert signal.direction == Direction.AVOID
            assert re.fullmatch(r"ADX \d+\.\d < 25", signal.reason), signal.reason
            assert float(signal.reason.split()[1]) <= adx_line[i]
        else:
            strong += 1
            expected = Direction.BULLISH if st.direction[i] == 1 else Direction.BEARISH
            assert (signal.direction, signal.reason) == (expected, "")
    assert weak > 100 and strong > 100


@pytest.mark.parametrize(
    ("adx_value", "expected"),
    [(17.96, "ADX 17.9 < 18"), (14.2, "ADX 14.2 < 18"), (0.0, "ADX 0.0 < 18")],
    ids=["rounded-down-not-up", "one-decimal", "zero"],
)
def test_the_adx_reason_never_rounds_a_value_up_to_the_threshold(adx_value, expected):
    from trading.rules.signals import _supertrend_signal

    signal = _supertrend_signal(SUPERTREND, 28, 28, 100.0, 95.0, 1, 2.0, 20.0, 10.0, adx_value)
    assert (signal.direction, signal.confidence, signal.reason) == (Direction.AVOID, 0.0, expected)


# -- confidence -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [3, 8])
def test_supertrend_confidence_is_the_documented_blend_of_adx_and_distance(seed):
    signals = run(SUPERTREND, random_candles(2000, seed))
    for signal in signals:
        v = signal.values
        if signal.direction == Direction.AVOID:
            assert signal.confidence == 0.0
            continue
        adx_score = clamp01((v["adx"] - 18.0) / 20.0)
        distance_score = clamp01(abs(v["close"] - v["supertrend"]) / (2.0 * v["atr"]))
        assert math.isclose(signal.confidence, 0.5 * adx_score + 0.5 * distance_score)
        assert 0.0 <= signal.confidence <= 1.0


@pytest.mark.parametrize("seed", [3, 8])
def test_holy_grail_confidence_is_the_documented_blend_of_adx_and_rsi(seed):
    signals = run(SHORT_GRAIL, random_candles(2000, seed))
    directional = 0
    for signal in signals:
        v = signal.values
        if signal.direction == Direction.AVOID:
            assert signal.confidence == 0.0
            continue
        directional += 1
        adx_score = clamp01((v["adx"] - 15.0) / 20.0)
        rsi_score = clamp01(abs(v["rsi"] - 50.0) / 20.0)
        assert math.isclose(signal.confidence, 0.5 * adx_score + 0.5 * rsi_score)
    assert directional > 50


def test_supertrend_confidence_rises_with_adx_and_with_distance_from_the_line():
    from trading.rules.signals import _supertrend_signal

    def confidence(adx_value: float, close: float) -> float:
        # Line 100, ATR 2, multiplier 2: a full band width is 4 points.
        return _supertrend_signal(
            SUPERTREND, 28, 28, close, 100.0, 1, 2.0, 30.0, 10.0, adx_value
        ).confidence

    by_adx = [confidence(a, 102.0) for a in (18.0, 20.0, 28.0, 38.0, 60.0)]
    assert by_adx == sorted(by_adx) and by_adx[0] == 0.25 and by_adx[-1] == 0.75
    by_distance = [confidence(28.0, c) for c in (100.0, 101.0, 103.0, 104.0, 110.0)]
    assert by_distance == sorted(by_distance) and by_distance[0] == 0.25
    assert by_distance[-1] == 0.75 and confidence(60.0, 110.0) == 1.0


# -- holy grail strategy --------------------------------------------------------------------------


def test_holy_grail_signals_need_bias_momentum_and_adx_to_agree():
    candles = random_candles(3000, seed=12)
    params = SHORT_GRAIL.holy_grail
    signals = run(SHORT_GRAIL, candles)
    hg = holy_grail(*candles, params, SHORT_GRAIL.adx_period)
    seen = set()
    for i in range(19, len(signals)):
        signal = signals[i]
        if hg.adx[i] < params.adx_min:
            kind = "weak"
            assert re.fullmatch(r"ADX \d+\.\d < 15", signal.reason), signal.reason
        elif hg.bias[i] == 0:
            kind = "bias"
            assert signal.reason.startswith("bias mixed: close "), signal.reason
        elif hg.momentum[i] == 0:
            kind = "momentum"
            assert signal.reason.startswith("momentum mixed: MACD "), signal.reason
        elif hg.bias[i] != hg.momentum[i]:
            kind = "disagree"
            assert signal.reason in (
                "bias bullish but momentum bearish",
                "bias bearish but momentum bullish",
            )
        else:
            kind = "agree"
            expected = Direction.BULLISH if hg.bias[i] == 1 else Direction.BEARISH
            assert (signal.direction, signal.reason) == (expected, "")
        if kind != "agree":
            assert (signal.direction, signal.confidence) == (Direction.AVOID, 0.0)
        seen.add(kind)
    assert seen == {"weak", "bias", "momentum", "disagree", "agree"}


# -- confirmation ---------------------------------------------------------------------------------

BULL = Signal(Direction.BULLISH, 0.8, {"adx": 30.0}, "")
BULL_WEAK = Signal(Direction.BULLISH, 0.3, {"adx": 19.0}, "")
BEAR = Signal(Direction.BEARISH, 0.6, {"adx": 25.0}, "")
AVOID = Signal(Direction.AVOID, 0.0, {"adx": 12.0}, "ADX 12.0 < 18")


@pytest.mark.parametrize(
    ("primary", "confirmation", "expected"),
    [
        (BULL, None, BULL),
        (AVOID, BEAR, AVOID),
        (
            BULL,
            BULL_WEAK,
            Signal(Direction.BULLISH, 0.3, {"adx": 30.0, "5m.adx": 19.0}, ""),
        ),
        (
            BULL_WEAK,
            BULL,
            Signal(Direction.BULLISH, 0.3, {"adx": 19.0, "5m.adx": 30.0}, ""),
        ),
        (
            BULL,
            BEAR,
            Signal(Direction.AVOID, 0.0, {"adx": 30.0, "5m.adx": 25.0}, "5m disagrees (bearish)"),
        ),
        (
            BEAR,
            AVOID,
            Signal(
                Direction.AVOID, 0.0, {"adx": 25.0, "5m.adx": 12.0}, "5m is avoid (ADX 12.0 < 18)"
            ),
        ),
    ],
    ids=[
        "no-confirmation-configured",
        "avoid-primary-stays",
        "agreeing-takes-the-lower-confidence",
        "agreeing-either-way-round",
        "disagreeing-is-avoid",
        "avoid-confirmation-is-avoid",
    ],
)
def test_confirmation_must_agree(primary, confirmation, expected):
    assert confirm(primary, confirmation, label="5m") == expected


def test_a_warming_confirmation_blocks_the_primary():
    confirmation = SignalState(SUPERTREND).last
    result = confirm(BULL, confirmation, label="5m")
    assert (result.direction, result.reason) == (
        Direction.AVOID,
        "5m is avoid (warming up: 0 of 28 candles)",
    )
