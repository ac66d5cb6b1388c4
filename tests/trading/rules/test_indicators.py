"""trading.rules.indicators: hand-computed and published reference values, warm-up points,
incremental == full-series over long random series, Supertrend band behaviour."""

from __future__ import annotations

import math

import pytest

from tests.trading.rules.factories import make_config, random_candles
from trading.config.types import HolyGrailParams
from trading.rules.indicators import (
    ADX,
    ATR,
    DOWN,
    EMA,
    MACD,
    RMA,
    RSI,
    SMA,
    UP,
    HolyGrail,
    Supertrend,
    TrueRange,
    adx,
    atr,
    ema,
    holy_grail,
    holy_grail_needed,
    macd,
    rma,
    rsi,
    sma,
    supertrend,
    true_range,
)

# DOMAIN's holy grail (SMA 34, EMA 100, MACD 12/26/9, RSI 14 midline 50, ADX min 20).
HOLY_GRAIL = make_config().signals.holy_grail


def assert_series_close(actual: list, expected: list, rel: float = 1e-9) -> None:
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        if e is None:
            assert a is None, f"index {i}: expected None, got {a!r}"
        else:
            assert a is not None, f"index {i}: expected {e!r}, got None"
            assert math.isclose(a, e, rel_tol=rel, abs_tol=1e-12), f"index {i}: {a!r} != {e!r}"


# -- hand-computed small series -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("high", "low", "close", "expected"),
    [
        # The first candle has no previous close: its range. 10 - 8 = 2.
        ([10.0], [8.0], [9.0], [2.0]),
        # Gap up: range 1, but high 15 - previous close 9.5 = 5.5.
        ([10.0, 15.0], [9.0, 14.0], [9.5, 14.5], [1.0, 5.5]),
        # Gap down: range 1, previous close 9.5 - low 5 = 4.5.
        ([10.0, 6.0], [9.0, 5.0], [9.5, 5.5], [1.0, 4.5]),
        # Inside candle: the plain range wins, max(2, |11 - 10|, |9 - 10|) = 2.
        ([12.0, 11.0], [8.0, 9.0], [10.0, 10.5], [4.0, 2.0]),
    ],
    ids=["first-candle-is-its-range", "gap-up", "gap-down", "inside-candle"],
)
def test_true_range_extends_the_range_to_the_previous_close(high, low, close, expected):
    assert true_range(high, low, close) == pytest.approx(expected)
    incremental = TrueRange()
    assert [incremental.update(*c) for c in zip(high, low, close, strict=True)] == pytest.approx(
        expected
    )


VALUES = [2.0, 4.0, 6.0, 8.0, 12.0]


@pytest.mark.parametrize(
    ("function", "period", "expected"),
    [
        # (2 + 4 + 6) / 3 = 4; (4 + 6 + 8) / 3 = 6; (6 + 8 + 12) / 3 = 26 / 3.
        (sma, 3, [None, None, 4.0, 6.0, 26 / 3]),
        # alpha = 2 / (3 + 1) = 0.5; seed = SMA 4; 4 + 0.5 * (8 - 4) = 6; 6 + 0.5 * (12 - 6) = 9.
        (ema, 3, [None, None, 4.0, 6.0, 9.0]),
        # Wilder: seed 4; (4 * 2 + 8) / 3 = 16 / 3; (16 / 3 * 2 + 12) / 3 = 68 / 9.
        (rma, 3, [None, None, 4.0, 16 / 3, 68 / 9]),
        # Period 1 is the series itself for all three.
        (sma, 1, VALUES),
        (ema, 1, VALUES),
        (rma, 1, VALUES),
        # Fewer values than the period: nothing warm.
        (ema, 6, [None] * 5),
    ],
    ids=["sma-3", "ema-3", "rma-3", "sma-1", "ema-1", "rma-1", "ema-not-enough-values"],
)
def test_moving_averages_on_a_small_series(function, period, expected):
    assert function(VALUES, period) == pytest.approx(expected)


def test_rsi_on_a_small_series_by_hand():
    # Changes: +1, -0.5, +1, -0.5. Period 2, first RSI at index 2:
    #   avg gain (1 + 0) / 2 = 0.5, avg loss (0 + 0.5) / 2 = 0.25 -> 100 * 0.5 / 0.75 = 66.67
    #   +1:   gain (0.5 * 1 + 1) / 2 = 0.75, loss (0.25 * 1 + 0) / 2 = 0.125 -> 85.71
    #   -0.5: gain (0.75 + 0) / 2 = 0.375, loss (0.125 + 0.5) / 2 = 0.3125 -> 54.55
    closes = [10.0, 11.0, 10.5, 11.5, 11.0]
    expected = [None, None, 100 * 0.5 / 0.75, 100 * 0.75 / 0.875, 100 * 0.375 / 0.6875]
    assert rsi(closes, 2) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("closes", "expected"),
    [
        ([10.0, 11.0, 12.0, 13.0], 100.0),
        ([13.0, 12.0, 11.0, 10.0], 0.0),
        ([10.0, 10.0, 10.0, 10.0], 50.0),
    ],
    ids=["only-gains-is-100", "only-losses-is-0", "no-movement-is-50"],
)
def test_rsi_at_its_limits(closes, expected):
    assert rsi(closes, 2)[-1] == expected
    state = RSI(2)
    assert [state.update(c) for c in closes][-1] == expected


def test_macd_on_a_small_series_by_hand():
    # fast 2 (alpha 2/3), slow 3 (alpha 1/2), signal 2, closes 10, 12, 11, 14, 13, 17:
    #   EMA2: seed (10 + 12) / 2 = 11 at index 1; 11; 11 + 2/3 * 3 = 13; 13; 13 + 2/3 * 4 = 15.667
    #   EMA3: seed (10 + 12 + 11) / 3 = 11 at index 2; 12.5; 12.75; 12.75 + 0.5 * 4.25 = 14.875
    #   line (from index 2): 0, 0.5, 0.25, 15.6667 - 14.875 = 0.7917
    #   signal: seed (0 + 0.5) / 2 = 0.25 at index 3; 0.25; 0.25 + 2/3 * (0.7917 - 0.25) = 0.6111
    #   hist: 0.25, 0, 0.1806
    closes = [10.0, 12.0, 11.0, 14.0, 13.0, 17.0]
    line, signal, hist = macd(closes, 2, 3, 2)
    last_line = 13 + 8 / 3 - 14.875
    last_signal = 0.25 + 2 / 3 * (last_line - 0.25)
    assert line == pytest.approx([None, None, 0.0, 0.5, 0.25, last_line])
    assert signal == pytest.approx([None, None, None, 0.25, 0.25, last_signal])
    assert hist == pytest.approx([None, None, None, 0.25, 0.0, last_line - last_signal])


def test_adx_on_a_small_series_by_hand():
    # Period 2. Moves from the second candle (up = high - prev high, down = prev low - low):
    #   i1: up 1, down -1    -> +DM 1, -DM 0;    TR max(1, |11 - 9.5|, |10 - 9.5|) = 1.5
    #   i2: up 1, down -0.5  -> +DM 1, -DM 0;    TR max(1.5, 1.5, 0) = 1.5
    #   i3: up -1, down 1    -> +DM 0, -DM 1;    TR max(1.5, 0.5, 2) = 2
    #   i4: up -1, down 0.5  -> +DM 0, -DM 0.5;  TR max(1, 0, 1) = 1
    #   i5: up 1, down -1    -> +DM 1, -DM 0;    TR max(1, 1.5, 0.5) = 1.5
    # Wilder sums: i2 TR 3, +DM 2, -DM 0 -> +DI 66.67, -DI 0, DX 100
    #   i3: TR 3 - 1.5 + 2 = 3.5, +DM 2 - 1 + 0 = 1, -DM 0 - 0 + 1 = 1 -> DI 28.57 both, DX 0;
    #       ADX = (100 + 0) / 2 = 50
    #   i4: TR 3.5 - 1.75 + 1 = 2.75, +DM 0.5, -DM 1 - 0.5 + 0.5 = 1 -> +DI 18.18, -DI 36.36,
    #       DX 100 * 0.5 / 1.5 = 33.33; ADX (50 + 33.33) / 2 = 41.67
    #   i5: TR 2.75 - 1.375 + 1.5 = 2.875, +DM 0.5 - 0.25 + 1 = 1.25, -DM 0.5 -> +DI 43.48,
    #       -DI 17.39, DX 100 * 0.75 / 1.75 = 42.86; ADX (41.67 + 42.86) / 2 = 42.26
    high = [10.0, 11.0, 12.0, 11.0, 10.0, 11.0]
    low = [9.0, 10.0, 10.5, 9.5, 9.0, 10.0]
    close = [9.5, 10.5, 11.5, 10.0, 9.5, 10.5]
    plus_di, minus_di, adx_line = adx(high, low, close, 2)
    adx3 = 50.0
    adx4 = (adx3 + 100 * 0.5 / 1.5) / 2
    adx5 = (adx4 + 100 * 0.75 / 1.75) / 2
    assert plus_di == pytest.approx(
        [None, None, 200 / 3, 100 / 3.5, 100 * 0.5 / 2.75, 100 * 1.25 / 2.875]
    )
    assert minus_di == pytest.approx(
        [None, None, 0.0, 100 / 3.5, 100 * 1 / 2.75, 100 * 0.5 / 2.875]
    )
    assert adx_line == pytest.approx([None, None, None, adx3, adx4, adx5])


@pytest.mark.parametrize(
    ("high", "low", "plus_di", "minus_di"),
    [
        # Outside candle, up move 11 - 10 = 1 equals down move 9 - 8 = 1: neither side counts.
        ([10.0, 11.0], [9.0, 8.0], 0.0, 0.0),
        # Inside candle, both moves negative: neither counts.
        ([10.0, 9.5], [9.0, 9.2], 0.0, 0.0),
        # Up 1 beats down 0.5: +DM 1 over TR max(11 - 8.5, |11 - 9.5|, |8.5 - 9.5|) = 2.5.
        ([10.0, 11.0], [9.0, 8.5], 100 / 2.5, 0.0),
        # Down 2 beats up 0.5: -DM 2 over TR max(10.5 - 7, |10.5 - 9.5|, |7 - 9.5|) = 3.5.
        ([10.0, 10.5], [9.0, 7.0], 0.0, 100 * 2 / 3.5),
    ],
    ids=["equal-moves", "inside-candle", "up-move-wins", "down-move-wins"],
)
def test_directional_movement_counts_only_the_larger_positive_move(high, low, plus_di, minus_di):
    # Period 1: DI = 100 * DM / TR of the second candle; the close 9.5 both times.
    close = [9.5, 9.5]
    plus, minus, _ = adx(high, low, close, 1)
    assert (plus[1], minus[1]) == pytest.approx((plus_di, minus_di))
    assert ADX(1).update(high[0], low[0], 9.5) == (None, None, None)


def test_supertrend_on_a_small_series_by_hand():
    # Period 1 (ATR = true range), multiplier 1: basic bands = hl2 +/- TR.
    #   0: TR 2, hl2 10 -> bands 12 / 8; first warm candle starts UP, line 8
    #   1: TR 2, hl2 11 -> basic 13 / 9; upper stays 12 (13 not lower); lower rises to 9; UP
    #   2: TR 1, hl2 11 -> basic 12 / 10; upper 12; lower 10; close 10.8 >= 10: UP
    #   3: TR 1.6, hl2 10.1 -> basic 11.7 / 8.5; upper falls to 11.7; lower stays 10 (8.5 is
    #      lower and the previous close 10.8 was above it); close 9.5 < 10 -> flips DOWN, line 11.7
    #   4: TR 1, hl2 9.5 -> basic 10.5 / 8.5; upper 10.5; lower resets to 8.5 (the previous close
    #      9.5 broke below 10); close 9.8 <= 10.5: DOWN
    #   5: TR 0.8, hl2 10 -> basic 10.8 / 9.2; upper stays 10.5 (down-trend: it only falls);
    #      lower 9.2; close 10.2 <= 10.5: DOWN
    #   6: TR 1, hl2 10.7 -> basic 11.7 / 9.7; upper 10.5; lower 9.7; close 11 > 10.5 -> UP, 9.7
    high = [11.0, 12.0, 11.5, 10.9, 10.0, 10.4, 11.2]
    low = [9.0, 10.0, 10.5, 9.3, 9.0, 9.6, 10.2]
    close = [10.0, 11.5, 10.8, 9.5, 9.8, 10.2, 11.0]
    series = supertrend(high, low, close, 1, 1.0)
    assert series.direction == [UP, UP, UP, DOWN, DOWN, DOWN, UP]
    assert series.upper == pytest.approx([12.0, 12.0, 12.0, 11.7, 10.5, 10.5, 10.5])
    assert series.lower == pytest.approx([8.0, 9.0, 10.0, 10.0, 8.5, 9.2, 9.7])
    assert series.line == pytest.approx([8.0, 9.0, 10.0, 11.7, 10.5, 10.5, 9.7])
    state = Supertrend(1, 1.0)
    lines = [state.update(*candle) for candle in zip(high, low, close, strict=True)]
    assert lines == pytest.approx(series.line)
    assert state.direction == UP


# -- published reference tables ------------------------------------------------------------------

# StockCharts ChartSchool, "Relative Strength Index (RSI)", spreadsheet cs-rsi.xls (QQQQ closes,
# Dec 2009 - Feb 2010, 14-day RSI); the closes at the spreadsheet's 4 decimals (the article's
# table shows them rounded to 2, which moves the RSI by up to 0.07). Reproduced in
# bukosabino/ta test/data/cs-rsi.csv. The RSI column is quoted to 2 decimals.
RSI_CLOSES = [
    44.3389, 44.0902, 44.1497, 43.6124, 44.3278, 44.8264, 45.0955, 45.4245, 45.8433, 46.0826,
    45.8931, 46.0328, 45.6140, 46.2820, 46.2820, 46.0028, 46.0328, 46.4116, 46.2222, 45.6439,
    46.2122, 46.2521, 45.7137, 46.4515, 45.7835, 45.3548, 44.0288, 44.1783, 44.2181, 44.5672,
    43.4205, 42.6628, 43.1314,
]  # fmt: skip
RSI_PUBLISHED = [
    70.53, 66.32, 66.55, 69.41, 66.36, 57.97, 62.93, 63.26, 56.06, 62.38, 54.71, 50.42, 39.99,
    41.46, 41.87, 45.46, 37.30, 33.08, 37.77,
]  # fmt: skip


def test_rsi_reproduces_the_stockcharts_table():
    values = rsi(RSI_CLOSES, 14)
    assert values[:14] == [None] * 14  # first RSI on the 15th close (14 changes)
    assert [round(v, 2) for v in values[14:]] == RSI_PUBLISHED


# StockCharts ChartSchool, "Average True Range (ATR)", spreadsheet cs-atr.xls (QQQ, Apr-May
# 2010): first ATR = mean of the first 14 TRs (the first TR being high - low), then Wilder's
# (prior * 13 + TR) / 14. As reproduced in bukosabino/ta test/data/cs-atr.csv (high, low, close,
# ATR to 10 significant digits).
ATR_TABLE = [
    (48.70, 47.79, 48.16, None),
    (48.72, 48.14, 48.61, None),
    (48.90, 48.39, 48.75, None),
    (48.87, 48.37, 48.63, None),
    (48.82, 48.24, 48.74, None),
    (49.05, 48.635, 49.03, None),
    (49.20, 48.94, 49.07, None),
    (49.35, 48.86, 49.32, None),
    (49.92, 49.50, 49.91, None),
    (50.19, 49.87, 50.13, None),
    (50.12, 49.20, 49.53, None),
    (49.66, 48.90, 49.50, None),
    (49.88, 49.43, 49.75, None),
    (50.19, 49.725, 50.03, 0.555),
    (50.36, 49.26, 50.31, 0.5939285714),
    (50.57, 50.09, 50.52, 0.5857908163),
    (50.65, 50.30, 50.41, 0.5689486152),
    (50.43, 49.21, 49.34, 0.6154522855),
    (49.63, 48.98, 49.37, 0.6179199794),
    (50.33, 49.61, 50.23, 0.6423542666),
    (50.29, 49.20, 49.2375, 0.6743289618),
    (50.17, 49.43, 49.93, 0.6927697503),
    (49.32, 48.08, 48.43, 0.7754290538),
    (48.50, 47.64, 48.18, 0.7814698357),
    (48.3201, 41.55, 46.57, 1.209229133),
    (46.80, 44.2833, 45.41, 1.302619909),
    (47.80, 47.31, 47.77, 1.380289916),
    (48.39, 47.20, 47.72, 1.366697779),
    (48.66, 47.90, 48.62, 1.336219366),
    (48.79, 47.7301, 47.85, 1.316482269),
]


def test_atr_reproduces_the_stockcharts_table():
    high, low, close, expected = zip(*ATR_TABLE, strict=True)
    values = atr(high, low, close, 14)
    for i, (value, published) in enumerate(zip(values, expected, strict=True)):
        if published is None:
            assert value is None, i
        else:
            assert value == pytest.approx(published, rel=1e-9), i


# StockCharts ChartSchool, "Average Directional Index (ADX)", spreadsheet cs-adx.xls (Feb-Apr
# 2009), Wilder's method: first TR14/+DM14/-DM14 are sums of 14 moves, then
# prior - prior / 14 + current; ADX = mean of the first 14 DX, then (prior * 13 + DX) / 14.
# As reproduced in bukosabino/ta test/data/cs-adx.csv (7 decimals); the first 40 rows.
ADX_TABLE = [
    (30.1983, 29.4072, 29.8720, None, None, None),
    (30.2776, 29.3182, 30.2381, None, None, None),
    (30.4458, 29.9611, 30.0996, None, None, None),
    (29.3478, 28.7443, 28.9028, None, None, None),
    (29.3477, 28.5566, 28.9225, None, None, None),
    (29.2886, 28.4081, 28.4775, None, None, None),
    (28.8334, 28.0818, 28.5566, None, None, None),
    (28.7346, 27.4289, 27.5576, None, None, None),
    (28.6654, 27.6565, 28.4675, None, None, None),
    (28.8532, 27.8345, 28.2796, None, None, None),
    (28.6356, 27.3992, 27.4882, None, None, None),
    (27.6761, 27.0927, 27.2310, None, None, None),
    (27.2112, 26.1826, 26.3507, None, None, None),
    (26.8651, 26.1332, 26.3309, None, None, None),
    (27.4090, 26.6277, 27.0333, 6.7494187, 32.4195605, None),
    (26.9441, 26.1332, 26.2221, 6.2919781, 33.9457668, None),
    (26.5189, 25.4307, 26.0144, 5.7817867, 36.4278403, None),
    (26.5189, 25.3518, 25.4605, 5.2866653, 33.8872739, None),
    (27.0927, 25.8760, 27.0333, 8.6988073, 30.0160112, None),
    (27.6860, 26.9640, 27.4487, 12.4910346, 28.4668252, None),
    (28.4477, 27.1421, 28.3586, 16.6785194, 25.8669450, None),
    (28.5267, 28.0123, 28.4278, 16.6292450, 24.9019540, None),
    (28.6654, 27.8840, 27.9530, 16.6937202, 23.4696294, None),
    (29.0116, 27.9928, 29.0116, 17.9332083, 21.6526027, None),
    (29.8720, 28.7643, 29.3776, 22.7269847, 19.9151478, None),
    (29.8028, 29.1402, 29.3576, 21.6099390, 18.9363056, None),
    (29.7529, 28.7127, 28.9107, 19.9520101, 20.6365552, None),
    (30.6546, 28.9290, 30.6149, 23.8153238, 18.1258276, 33.5833461),
    (30.5951, 30.0304, 30.0502, 22.8134766, 17.3633223, 32.1534947),
    (30.7635, 29.3863, 30.1890, 20.6131527, 20.1994349, 29.9292238),
    (31.1698, 30.1365, 31.1202, 21.9656407, 18.7390828, 28.3576178),
    (30.8923, 30.4267, 30.5356, 20.8748381, 17.8085094, 26.8982694),
    (30.0402, 29.3467, 29.7827, 19.1217139, 23.9419101, 25.7764785),
    (30.6645, 29.9906, 30.0402, 22.3703123, 22.4368271, 23.9459048),
    (30.5951, 29.5152, 30.4861, 20.6576174, 24.0894564, 22.7832985),
    (31.9724, 30.9418, 31.4670, 27.9963105, 21.6344053, 22.0715260),
    (32.1011, 31.5364, 32.0515, 27.6518997, 20.6667053, 21.5275978),
    (32.0317, 31.3580, 31.9724, 26.2680255, 20.9198333, 20.7994716),
    (31.6255, 30.9220, 31.1302, 24.2855302, 22.4736591, 19.5905735),
    (31.8534, 31.1994, 31.6551, 24.6685273, 21.2826923, 18.7175557),
]


@pytest.mark.parametrize("column", [3, 4, 5], ids=["plus-di", "minus-di", "adx"])
def test_adx_reproduces_the_stockcharts_table(column):
    high, low, close = ([row[k] for row in ADX_TABLE] for k in range(3))
    computed = adx(high, low, close, 14)[column - 3]
    for i, row in enumerate(ADX_TABLE):
        if row[column] is None:
            assert computed[i] is None, i
        else:
            # The table is quoted to 7 decimals.
            assert computed[i] == pytest.approx(row[column], abs=1e-6), i


# -- warm-up --------------------------------------------------------------------------------------


def first_warm(values: list) -> int | None:
    """1-based count of candles after which the series has its first value."""
    return next((i + 1 for i, v in enumerate(values) if v is not None), None)


H, L, C = random_candles(300, seed=7)


@pytest.mark.parametrize(
    ("series", "expected"),
    [
        (lambda: sma(C, 20), 20),
        (lambda: ema(C, 20), 20),
        (lambda: rma(C, 20), 20),
        (lambda: atr(H, L, C, 10), 10),
        (lambda: rsi(C, 14), 15),
        (lambda: macd(C, 12, 26, 9)[0], 26),
        (lambda: macd(C, 12, 26, 9)[1], 34),
        (lambda: macd(C, 12, 26, 9)[2], 34),
        (lambda: adx(H, L, C, 14)[0], 15),
        (lambda: adx(H, L, C, 14)[1], 15),
        (lambda: adx(H, L, C, 14)[2], 28),
        (lambda: supertrend(H, L, C, 10, 2.0).line, 10),
        (lambda: supertrend(H, L, C, 10, 2.0).direction, 10),
        (lambda: holy_grail(H, L, C, HOLY_GRAIL, 14).direction, 100),
    ],
    ids=[
        "sma-20",
        "ema-20",
        "rma-20",
        "atr-10",
        "rsi-14-needs-15",
        "macd-line-26",
        "macd-signal-26-9-needs-34",
        "macd-hist-needs-34",
        "plus-di-14-needs-15",
        "minus-di-14-needs-15",
        "adx-14-needs-28",
        "supertrend-10-line",
        "supertrend-10-direction",
        "holy-grail-defaults-need-100",
    ],
)
def test_each_indicator_is_warm_after_its_documented_candle_count(series, expected):
    values = series()
    assert first_warm(values) == expected
    assert all(v is not None for v in values[expected - 1 :])


@pytest.mark.parametrize(
    ("params", "adx_period", "expected"),
    [
        (HOLY_GRAIL, 14, 100),  # EMA 100 dominates
        (HolyGrailParams(34, 20, 12, 26, 9, 14, 50.0, 20.0), 14, 34),  # SMA 34 and MACD 26 + 9 - 1
        (HolyGrailParams(10, 20, 5, 10, 5, 30, 50.0, 20.0), 14, 31),  # RSI 30 needs 31
        (HolyGrailParams(10, 20, 5, 10, 5, 14, 50.0, 20.0), 20, 40),  # ADX 20 needs 40
    ],
    ids=["ema-100", "sma-34-and-macd-34", "rsi-30", "adx-20"],
)
def test_holy_grail_needs_its_slowest_component(params, adx_period, expected):
    assert holy_grail_needed(params, adx_period) == expected
    h, lo, c = random_candles(expected + 5, seed=3)
    assert first_warm(holy_grail(h, lo, c, params, adx_period).direction) == expected


# -- incremental == full recomputation ------------------------------------------------------------

SEEDS = [1, 2]
LONG = 2500


def feed(state: object, candles: tuple[list, list, list], by_close: bool) -> list:
    high, low, close = candles
    if by_close:
        return [state.update(c) for c in close]
    return [state.update(h, lo, c) for h, lo, c in zip(high, low, close, strict=True)]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("period", [1, 2, 10, 34, 100])
@pytest.mark.parametrize(
    ("cls", "function"), [(SMA, sma), (EMA, ema), (RMA, rma)], ids=["sma", "ema", "rma"]
)
def test_incremental_moving_averages_equal_the_full_series(cls, function, period, seed):
    candles = random_candles(LONG, seed)
    assert_series_close(feed(cls(period), candles, by_close=True), function(candles[2], period))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("period", [1, 5, 14, 30])
def test_incremental_atr_equals_the_full_series(period, seed):
    candles = random_candles(LONG, seed)
    assert_series_close(feed(ATR(period), candles, by_close=False), atr(*candles, period))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("period", [1, 2, 14, 21])
def test_incremental_rsi_equals_the_full_series(period, seed):
    candles = random_candles(LONG, seed)
    assert_series_close(feed(RSI(period), candles, by_close=True), rsi(candles[2], period))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("fast", "slow", "signal"), [(12, 26, 9), (2, 3, 2), (5, 35, 5)])
def test_incremental_macd_equals_the_full_series(fast, slow, signal, seed):
    candles = random_candles(LONG, seed)
    outputs = feed(MACD(fast, slow, signal), candles, by_close=True)
    for part, full in zip(
        zip(*outputs, strict=True), macd(candles[2], fast, slow, signal), strict=True
    ):
        assert_series_close(list(part), full)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("period", [1, 2, 14, 20])
def test_incremental_adx_equals_the_full_series(period, seed):
    candles = random_candles(LONG, seed)
    outputs = feed(ADX(period), candles, by_close=False)
    for part, full in zip(zip(*outputs, strict=True), adx(*candles, period), strict=True):
        assert_series_close(list(part), full)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("period", "multiplier"), [(10, 2.0), (7, 3.0), (1, 0.5), (20, 1.5)])
def test_incremental_supertrend_equals_the_full_series(period, multiplier, seed):
    candles = random_candles(LONG, seed)
    state = Supertrend(period, multiplier)
    lines, directions, uppers, lowers = [], [], [], []
    for h, lo, c in zip(*candles, strict=True):
        lines.append(state.update(h, lo, c))
        directions.append(state.direction)
        uppers.append(state.upper)
        lowers.append(state.lower)
    full = supertrend(*candles, period, multiplier)
    assert_series_close(lines, full.line)
    assert_series_close(uppers, full.upper)
    assert_series_close(lowers, full.lower)
    assert directions == full.direction
    assert DOWN in directions and UP in directions[period:]  # the series does flip both ways


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    ("params", "adx_period"),
    [
        (HOLY_GRAIL, 14),
        (HolyGrailParams(10, 20, 5, 10, 5, 7, 55.0, 15.0), 7),
    ],
    ids=["defaults", "short"],
)
def test_incremental_holy_grail_equals_the_full_series(params, adx_period, seed):
    candles = random_candles(LONG, seed)
    state = HolyGrail(params, adx_period)
    full = holy_grail(*candles, params, adx_period)
    got: dict[str, list] = {name: [] for name in ("direction", "bias", "momentum", "sma", "rsi")}
    for h, lo, c in zip(*candles, strict=True):
        got["direction"].append(state.update(h, lo, c))
        got["bias"].append(state.bias if state.direction is not None else None)
        got["momentum"].append(state.momentum if state.direction is not None else None)
        got["sma"].append(state.sma)
        got["rsi"].append(state.rsi)
    assert got["direction"] == full.direction
    assert got["bias"] == full.bias
    assert got["momentum"] == full.momentum
    assert_series_close(got["sma"], full.sma)
    assert_series_close(got["rsi"], full.rsi)
    assert {UP, DOWN, 0} <= set(full.direction)  # every outcome is exercised


def test_the_running_sma_stays_equal_to_an_exact_window_mean_over_a_long_series():
    # A running sum drifts by rounding; the periodic exact resync keeps it within 1e-12.
    _, _, closes = random_candles(20000, seed=11)
    state = SMA(34)
    for i, close in enumerate(closes):
        value = state.update(close)
        if i >= 33:
            exact = math.fsum(closes[i - 33 : i + 1]) / 34
            assert math.isclose(value, exact, rel_tol=1e-12), i


# -- Supertrend behaviour on long series ----------------------------------------------------------


@pytest.mark.parametrize(("period", "multiplier"), [(10, 2.0), (5, 1.0)])
def test_supertrend_bands_ratchet_and_flip_only_on_a_close_through_the_band(period, multiplier):
    high, low, close = random_candles(LONG, seed=5)
    s = supertrend(high, low, close, period, multiplier)
    flips = 0
    for i in range(period, LONG):
        before, now = s.direction[i - 1], s.direction[i]
        assert s.line[i] == (s.lower[i] if now == UP else s.upper[i])
        if before == now == UP:
            assert s.lower[i] >= s.lower[i - 1]  # the stop under an up-trend only rises
            assert close[i] >= s.lower[i]
        elif before == now == DOWN:
            assert s.upper[i] <= s.upper[i - 1]  # the stop over a down-trend only falls
            assert close[i] <= s.upper[i]
        elif now == DOWN:
            flips += 1
            assert close[i] < s.lower[i]
        else:
            flips += 1
            assert close[i] > s.upper[i]
    assert flips > 10


def test_holy_grail_direction_follows_its_components():
    high, low, close = random_candles(LONG, seed=9)
    s = holy_grail(high, low, close, HOLY_GRAIL, 14)
    for i in range(99, LONG):
        above = close[i] > s.sma[i] and close[i] > s.ema[i]
        below = close[i] < s.sma[i] and close[i] < s.ema[i]
        assert s.bias[i] == (UP if above else DOWN if below else 0)
        rising = s.macd[i] > s.macd_signal[i] and s.rsi[i] > 50.0
        falling = s.macd[i] < s.macd_signal[i] and s.rsi[i] < 50.0
        assert s.momentum[i] == (UP if rising else DOWN if falling else 0)
        agree = s.bias[i] == s.momentum[i] != 0 and s.adx[i] >= 20.0
        assert s.direction[i] == (s.bias[i] if agree else 0)


# -- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda: sma([1.0], 0),
        lambda: ema([1.0], -1),
        lambda: rma([1.0], 2.5),
        lambda: rsi([1.0], True),
        lambda: SMA(0),
        lambda: ADX(0),
        lambda: macd([1.0], 26, 12, 9),
        lambda: MACD(12, 12, 9),
        lambda: supertrend([1.0], [1.0], [1.0], 10, 0.0),
        lambda: Supertrend(10, -1.0),
        lambda: atr([1.0, 2.0], [1.0], [1.0], 1),
        lambda: adx([1.0], [1.0], [1.0, 2.0], 1),
    ],
    ids=[
        "sma-period-0",
        "ema-negative-period",
        "rma-float-period",
        "rsi-bool-period",
        "sma-class-period-0",
        "adx-class-period-0",
        "macd-fast-above-slow",
        "macd-class-fast-equals-slow",
        "supertrend-zero-multiplier",
        "supertrend-class-negative-multiplier",
        "atr-unequal-lengths",
        "adx-unequal-lengths",
    ],
)
def test_bad_parameters_are_refused(call):
    with pytest.raises(ValueError):
        call()


def test_empty_series_give_empty_results():
    assert true_range([], [], []) == []
    assert sma([], 3) == []
    assert rsi([], 3) == []
    assert adx([], [], [], 3) == ([], [], [])
    assert supertrend([], [], [], 3, 2.0).line == []
