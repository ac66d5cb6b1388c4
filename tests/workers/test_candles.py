"""workers/candles.py: candles from ticks, chart seeding, aggregation. Pure: no DB, no Redis.

Every expected candle is computed by hand from the scripted ticks next to it.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from trading.dhan.rest_types import ChartResponse
from workers.candles import (
    IST,
    Candle,
    CandleBuilder,
    aggregate,
    bucket_start,
    candles_from_chart,
)

K = "IDX_I:13"  # NIFTY 50
B = "IDX_I:25"  # BANKNIFTY
T0 = datetime(2024, 6, 14, 9, 15, tzinfo=IST).timestamp()  # 1718336700 = 1.7183367E9


def at(minute: float, second: float = 0.0) -> float:
    """Epoch seconds ``minute`` minutes and ``second`` seconds after 09:15 IST on 2024-06-14."""
    return T0 + minute * 60 + second


def c1(
    minute: int,
    o: float,
    h: float,
    lo: float,
    c: float,
    ticks: int,
    *,
    filled: bool = False,
    key: str = K,
    source: str = "ticks",
) -> Candle:
    return Candle(key, 60, at(minute), o, h, lo, c, ticks, filled=filled, source=source)


def c5(
    minute: int,
    o: float,
    h: float,
    lo: float,
    c: float,
    ticks: int,
    *,
    filled: bool = False,
    key: str = K,
    source: str = "ticks",
) -> Candle:
    return Candle(key, 300, at(minute), o, h, lo, c, ticks, filled=filled, source=source)


def flat(minute: int, price: float, timeframe: int = 60) -> Candle:
    return Candle(K, timeframe, at(minute), price, price, price, price, 0, filled=True)


def feed(builder: CandleBuilder, ticks: list[tuple[float, float, float]], key: str = K) -> list:
    """Apply (minute, second, ltp) ticks; return everything they closed, in order."""
    out: list[Candle] = []
    for minute, second, ltp in ticks:
        out += builder.on_tick(key, ltp, at(minute, second))
    return out


# -- alignment -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "timeframe", "expected"),
    [
        (at(0), 60, at(0)),
        (at(0, 59.999), 60, at(0)),
        (at(1), 60, at(1)),
        (at(4, 59.5), 300, at(0)),
        (at(5), 300, at(5)),
        (at(-1, 30), 300, at(-5)),  # 09:14:30 belongs to 09:10
        (at(374, 59), 60, at(374)),  # 15:29:59 -> the session's last minute
        (at(59, 59), 3600, at(0)),  # hours start at 09:15 IST too (Dhan's 60-minute bars)
    ],
)
def test_buckets_are_anchored_on_0915_ist(moment: float, timeframe: int, expected: float) -> None:
    assert bucket_start(moment, timeframe) == expected


def test_0915_ist_is_an_epoch_multiple_of_one_and_five_minutes() -> None:
    assert T0 % 60 == 0
    assert T0 % 300 == 0


# -- building from ticks -----------------------------------------------------------------------

# (minute, second, ltp, candles that tick closes). Minute 2 (09:17) has no tick at all.
SCRIPT: list[tuple[float, float, float, list[Candle]]] = [
    (0, 0, 100, []),
    (0, 20, 102, []),
    (0, 40, 99, []),
    (0, 59, 101, []),
    (1, 5, 103, [c1(0, 100, 102, 99, 101, 4)]),
    (1, 30, 104, []),
    (1, 50, 102, []),
    (3, 10, 105, [c1(1, 103, 104, 102, 102, 3), flat(2, 102)]),
    (3, 40, 101, []),
    (4, 0, 100, [c1(3, 105, 105, 101, 101, 2)]),
    (4, 59.5, 98, []),
    (5, 1, 97, [c1(4, 100, 100, 98, 98, 2), c5(0, 100, 105, 98, 98, 11)]),
]


def test_each_candle_closes_on_the_next_buckets_tick_and_an_empty_minute_is_filled() -> None:
    builder = CandleBuilder()
    for minute, second, ltp, expected in SCRIPT:
        assert builder.on_tick(K, ltp, at(minute, second)) == expected, (minute, second)
    assert builder.history(K, 60) == [
        c for *_, closed in SCRIPT for c in closed if c.timeframe == 60
    ]
    assert builder.history(K, 300) == [c5(0, 100, 105, 98, 98, 11)]
    assert builder.current(K, 60) == c1(5, 97, 97, 97, 97, 1)
    assert builder.current(K, 300) == c5(5, 97, 97, 97, 97, 1)
    assert builder.late_ticks == 0


def test_the_filled_minute_is_flat_at_the_previous_close() -> None:
    builder = CandleBuilder((60,))
    closed = feed(builder, [(0, 10, 100), (0, 50, 101.5), (2, 0, 99)])
    assert closed == [c1(0, 100, 101.5, 100, 101.5, 2), flat(1, 101.5)]
    assert closed[1].filled and closed[1].ticks == 0 and closed[1].source == "ticks"


def test_five_minute_candles_are_aligned_to_0915_and_an_empty_five_minutes_is_filled() -> None:
    builder = CandleBuilder((300,))
    closed = feed(
        builder,
        [
            (0, 30, 100),
            (4, 10, 104),  # 09:19:10, still the 09:15 bucket
            (6, 0, 96),  # 09:21 closes 09:15-09:20
            (9, 59, 99),
            (16, 0, 101),  # 09:31: closes 09:20, fills 09:25 (no ticks at all)
        ],
    )
    assert closed == [
        c5(0, 100, 104, 100, 104, 2),
        c5(5, 96, 99, 96, 99, 2),
        flat(10, 99, timeframe=300),
    ]
    assert [c.start_datetime.strftime("%H:%M") for c in closed] == ["09:15", "09:20", "09:25"]
    assert closed[0].start_datetime.tzinfo == IST
    assert closed[0].end == at(5)


def test_ticks_out_of_order_inside_a_bucket_keep_open_and_close_by_exchange_time() -> None:
    builder = CandleBuilder()
    # (second, ltp) in ARRIVAL order; times jump back and forth inside 09:15.
    arrivals = [(30, 100), (10, 95), (50, 102), (20, 105), (50, 103), (5, 97), (5, 98), (40, 90)]
    for second, ltp in arrivals:
        assert builder.on_tick(K, ltp, at(0, second)) == []
    # open: earliest time 09:15:05, first arrival of the tie (97); close: latest time 09:15:50,
    # last arrival of the tie (103); extremes over all ticks.
    expected = c1(0, 97, 105, 90, 103, 8)
    assert builder.current(K, 60) == expected
    assert builder.on_tick(K, 101, at(1, 0))[0] == expected
    assert builder.late_ticks == 0


def test_a_late_tick_for_a_closed_bucket_is_ignored_and_counted_in_every_timeframe() -> None:
    builder = CandleBuilder()
    feed(builder, [(0, 10, 100), (1, 0, 101)])  # 09:15 closed, 09:16 open; 5m 09:15 open
    history_before = builder.history(K, 60)

    assert builder.on_tick(K, 150, at(0, 58)) == []  # exchange time in the closed 09:15

    assert builder.late_ticks == 1
    assert builder.history(K, 60) == history_before
    # Late for 1m means dropped for 5m too, although its 5m bucket is still open: the 5m series
    # stays the aggregate of the 1m one.
    assert builder.current(K, 300) == c5(0, 100, 101, 100, 101, 2)
    assert builder.on_tick(K, 99, at(1, 30)) == []
    assert builder.current(K, 60) == c1(1, 101, 101, 99, 99, 2)


def test_advance_closes_a_candle_without_a_later_tick_after_the_grace() -> None:
    builder = CandleBuilder(grace=2.0)
    builder.on_tick(K, 100, at(0, 10))

    assert builder.advance(at(1, 1.9)) == []  # 09:16:01.9: still inside the grace
    assert builder.advance(at(1, 2)) == [c1(0, 100, 100, 100, 100, 1)]
    assert builder.advance(at(1, 2)) == []  # idempotent
    assert builder.current(K, 60) is None
    assert builder.current(K, 300) == c5(0, 100, 100, 100, 100, 1)

    # Two more quiet minutes: filled as soon as each has ended plus the grace.
    assert builder.advance(at(3, 2.5)) == [flat(1, 100), flat(2, 100)]
    # A tick stamped in a bucket advance() already closed is late.
    assert builder.on_tick(K, 120, at(2, 59)) == []
    assert builder.late_ticks == 1
    # The next tick opens 09:18 without filling anything twice.
    assert builder.on_tick(K, 101, at(3, 10)) == []
    assert builder.advance(at(5, 2)) == [
        c1(3, 101, 101, 101, 101, 1),
        flat(4, 101),
        c5(0, 100, 101, 100, 101, 2),
    ]
    assert builder.history(K, 60) == [
        c1(0, 100, 100, 100, 100, 1),
        flat(1, 100),
        flat(2, 100),
        c1(3, 101, 101, 101, 101, 1),
        flat(4, 101),
    ]


def test_advance_does_nothing_for_keys_without_ticks() -> None:
    assert CandleBuilder().advance(at(100)) == []


@pytest.mark.parametrize(
    ("ltp", "exchange_time"),
    [
        (0.0, at(0, 1)),  # Dhan's "no trade yet"
        (-5.0, at(0, 1)),
        (math.nan, at(0, 1)),
        (100.0, None),  # LTT 0: never traded
    ],
)
def test_ticks_without_a_price_or_time_are_ignored_and_not_counted_late(
    ltp: float, exchange_time: float | None
) -> None:
    builder = CandleBuilder()
    assert builder.on_tick(K, ltp, exchange_time) == []
    assert builder.keys() == []
    builder.on_tick(K, 100, at(0, 0))
    assert builder.on_tick(K, ltp, exchange_time) == []
    assert builder.current(K, 60) == c1(0, 100, 100, 100, 100, 1)
    assert builder.late_ticks == 0


def test_several_keys_are_independent() -> None:
    builder = CandleBuilder()
    builder.on_tick(K, 100, at(0, 10))
    builder.on_tick(B, 500, at(0, 20))
    # BANKNIFTY moving to 09:17 closes only its own candles.
    assert builder.on_tick(B, 510, at(2, 0)) == [
        c1(0, 500, 500, 500, 500, 1, key=B),
        Candle(B, 60, at(1), 500, 500, 500, 500, 0, filled=True),
    ]
    # NIFTY's 09:15 is still open: a tick at 09:15:50 is not late for it.
    assert builder.on_tick(K, 101, at(0, 50)) == []
    assert builder.current(K, 60) == c1(0, 100, 101, 100, 101, 2)
    assert builder.advance(at(1, 2)) == [c1(0, 100, 101, 100, 101, 2)]
    assert builder.current(B, 60) == c1(2, 510, 510, 510, 510, 1, key=B)
    assert builder.late_ticks == 0
    assert sorted(builder.keys()) == [K, B]


def test_history_is_bounded_to_maxlen() -> None:
    builder = CandleBuilder((60,), maxlen=3)
    feed(builder, [(m, 0, 100 + m) for m in range(6)])
    assert [c.start for c in builder.history(K, 60)] == [at(2), at(3), at(4)]


def test_a_gap_inside_a_session_is_filled_but_the_night_is_not() -> None:
    builder = CandleBuilder((60,))
    builder.on_tick(K, 100, at(0, 5))
    closed = builder.on_tick(K, 101, at(374, 30))  # 15:29:30, nothing since 09:15
    assert len(closed) == 374
    assert closed[-1] == flat(373, 100)

    next_morning = at(24 * 60, 5)  # 09:15:05 the next day
    closed = builder.on_tick(K, 102, next_morning)
    assert closed == [c1(374, 101, 101, 101, 101, 1)]  # 15:29, and no flat night
    assert builder.current(K, 60) == Candle(K, 60, at(24 * 60), 102, 102, 102, 102, 1)


def test_advance_outside_the_session_fills_at_most_max_fill() -> None:
    builder = CandleBuilder((60,), max_fill=300)
    builder.on_tick(K, 100, at(0, 5))
    closed = builder.advance(at(60))
    assert closed == [c1(0, 100, 100, 100, 100, 1)] + [flat(m, 100) for m in range(1, 6)]
    assert builder.advance(at(120)) == []


def test_current_and_history_for_an_unknown_key_or_timeframe() -> None:
    builder = CandleBuilder()
    assert builder.current(K, 60) is None
    assert builder.history(K, 300) == []
    builder.on_tick(K, 100, at(0))
    with pytest.raises(ValueError, match="not 900"):
        builder.current(K, 900)
    with pytest.raises(ValueError, match="not 900"):
        builder.history(K, 900)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeframes": ()}, "at least one"),
        ({"timeframes": (7,)}, "7 s does not divide a day"),
        ({"timeframes": (0,)}, "0 s does not divide"),
        ({"timeframes": (60.0,)}, "whole seconds"),
        ({"timeframes": (60, 60)}, "repeats"),
        ({"grace": -1.0}, "grace"),
        ({"maxlen": 0}, "maxlen"),
        ({"max_fill": math.nan}, "max_fill"),
    ],
)
def test_the_builder_rejects_bad_settings(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CandleBuilder(**kwargs)


# -- seeding from the chart --------------------------------------------------------------------


def chart_answer(rows: list[tuple[float, float, float, float, float]]) -> dict[str, list]:
    """(minute, open, high, low, close) rows -> Dhan's parallel arrays (volume 0: an index)."""
    return {
        "open": [r[1] for r in rows],
        "high": [r[2] for r in rows],
        "low": [r[3] for r in rows],
        "close": [r[4] for r in rows],
        "volume": [0.0 for _ in rows],
        "timestamp": [at(r[0]) for r in rows],
    }


def test_seed_then_live_ticks_continue_the_charts_last_candle() -> None:
    chart = candles_from_chart(
        K,
        chart_answer(
            [(0, 100, 101.5, 99.5, 101), (1, 101, 102, 100.5, 101.5), (2, 102, 103, 101, 102.5)]
        ),
    )
    builder = CandleBuilder()
    five = aggregate(chart, 300)
    assert five == [c5(0, 100, 103, 99.5, 102.5, 0, source="chart")]

    assert builder.seed(chart + five) == chart + five
    assert builder.history(K, 60) == chart
    assert builder.current(K, 60) is None

    # 09:17:30: the chart's 09:17 was still forming; the live tick continues it.
    assert builder.on_tick(K, 104, at(2, 30)) == []
    assert builder.current(K, 60) == c1(2, 102, 104, 101, 104, 1)
    assert builder.current(K, 300) == c5(0, 100, 104, 99.5, 104, 1)
    # A live tick stamped before the chart's open time cannot take the chart's open away.
    assert builder.on_tick(K, 100.5, at(2, 0)) == []
    assert builder.current(K, 60) == c1(2, 102, 104, 100.5, 104, 2)

    assert builder.on_tick(K, 103, at(3, 5)) == [c1(2, 102, 104, 100.5, 104, 2)]
    assert builder.history(K, 60) == [*chart[:2], c1(2, 102, 104, 100.5, 104, 2)]
    # Buckets the chart already gave are closed: ticks for them are late.
    assert builder.on_tick(K, 90, at(1, 59)) == []
    assert builder.late_ticks == 1


def test_seed_never_overrides_live_candles_and_replaces_filled_ones() -> None:
    builder = CandleBuilder((60,))
    assert feed(builder, [(0, 10, 100), (0, 40, 101), (2, 20, 103), (2, 40, 104)]) == [
        c1(0, 100, 101, 100, 101, 2),
        flat(1, 101),
    ]
    chart = candles_from_chart(
        K,
        chart_answer(
            [
                (0, 99, 102, 98, 100.5),  # live ticks built 09:15: refused
                (1, 101, 102.5, 100, 102),  # 09:16 was only filled: replaced
                (2, 102, 103.5, 101.5, 103),  # the open bucket: lends its open and low
                (3, 104, 105, 103, 104.5),  # after the open bucket: refused
            ]
        ),
    )

    assert builder.seed(chart) == [chart[1]]

    assert builder.history(K, 60) == [c1(0, 100, 101, 100, 101, 2), chart[1]]
    # Live close (104) and tick count (2) stay; open from the chart, high/low widened.
    assert builder.current(K, 60) == c1(2, 102, 104, 101.5, 104, 2)
    assert builder.on_tick(K, 105, at(3, 0)) == [c1(2, 102, 104, 101.5, 104, 2)]


def test_seed_after_advance_fills_the_gap_it_left_and_later_ticks_use_the_chart_close() -> None:
    builder = CandleBuilder((60,))
    builder.on_tick(K, 100, at(0, 10))
    builder.advance(at(2, 2))  # 09:15 closed, 09:16 filled
    chart = candles_from_chart(K, chart_answer([(1, 100, 100, 95, 96)]))
    assert builder.seed(chart) == chart
    # 09:18 tick: 09:17 is filled flat at the chart's 09:16 close, not at the old 100.
    assert builder.on_tick(K, 97, at(3, 0)) == [flat(2, 96)]


def test_seed_skips_timeframes_the_builder_does_not_make_and_candles_too_old_to_keep() -> None:
    builder = CandleBuilder((60,), maxlen=2)
    fifteen = Candle(K, 900, at(0), 1, 1, 1, 1, 0, source="chart")
    assert builder.seed([fifteen]) == []
    feed(builder, [(5, 0, 100), (6, 0, 101), (7, 0, 102)])  # history: 09:20, 09:21
    old = c1(0, 1, 1, 1, 1, 0, source="chart")
    assert builder.seed([old]) == []
    assert [c.start for c in builder.history(K, 60)] == [at(5), at(6)]


# -- candles_from_chart ------------------------------------------------------------------------

# As Dhan sends it: Java-style floats, timestamps in exponent notation.
RAW_CHART = (
    '{"open":[22500.5,22510.0],"high":[22512.25,22515.0],"low":[22498.0,22505.5],'
    '"close":[22510.0,22507.75],"volume":[0.0,0.0],"timestamp":[1.7183367E9,1.71833676E9]}'
)
EXPECTED_CHART = [
    c1(0, 22500.5, 22512.25, 22498.0, 22510.0, 0, source="chart"),
    c1(1, 22510.0, 22515.0, 22505.5, 22507.75, 0, source="chart"),
]


def test_candles_from_chart_reads_dhans_parallel_arrays() -> None:
    assert candles_from_chart(K, json.loads(RAW_CHART)) == EXPECTED_CHART


def test_candles_from_chart_reads_decimals_and_numeric_text() -> None:
    answer = json.loads(RAW_CHART, parse_float=Decimal)
    answer["open"] = ["22500.5", "22510"]
    assert candles_from_chart(K, answer) == EXPECTED_CHART


def test_candles_from_chart_takes_the_rest_clients_chart_response() -> None:
    assert candles_from_chart(K, ChartResponse.from_wire(RAW_CHART.encode())) == EXPECTED_CHART


def test_candles_from_chart_reads_five_minute_bars() -> None:
    answer = chart_answer([(0, 1, 2, 0.5, 1.5), (5, 1.5, 3, 1, 2)])
    assert candles_from_chart(K, answer, timeframe=300) == [
        c5(0, 1, 2, 0.5, 1.5, 0, source="chart"),
        c5(5, 1.5, 3, 1, 2, 0, source="chart"),
    ]


def test_an_empty_chart_answer_gives_no_candles() -> None:
    empty = {name: [] for name in ("open", "high", "low", "close", "volume", "timestamp")}
    assert candles_from_chart(K, empty) == []


def _set(name: str, value: object) -> Any:
    def change(answer: dict[str, Any]) -> None:
        answer[name] = value

    return change


def _set_item(name: str, index: int, value: object) -> Any:
    def change(answer: dict[str, Any]) -> None:
        answer[name][index] = value

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.pop("close"), "'close' is missing"),
        (lambda a: a.pop("timestamp"), "'timestamp' is missing"),
        (_set("high", [1.0, 2.0]), "'high' has 2 values, 'timestamp' has 3"),
        (_set("volume", [0.0]), "'volume' has 1 values, 'timestamp' has 3"),
        (_set("open", "abc"), "'open' is not an array"),
        (_set_item("low", 1, "abc"), r"'low'\[1\]: expected a number, got 'abc'"),
        (_set_item("open", 0, True), r"'open'\[0\]: expected a number, got True"),
        (_set_item("high", 2, None), r"'high'\[2\]: expected a number, got None"),
        (_set_item("close", 2, 0), r"'close'\[2\]: expected a positive price, got 0"),
        (_set_item("close", 0, "NaN"), r"'close'\[0\]: expected a finite number"),
        (_set_item("timestamp", 1, at(1, 30)), r"'timestamp'\[1\] = \d+ is not the start of a 60"),
        (_set("timestamp", [at(0), at(2), at(1)]), r"'timestamp'\[2\] = \d+ is not after"),
        (_set("timestamp", [at(0), at(0), at(1)]), r"'timestamp'\[1\] = \d+ is not after"),
    ],
)
def test_candles_from_chart_names_the_field_that_does_not_fit(change: Any, message: str) -> None:
    answer = chart_answer([(0, 1, 2, 0.5, 1.5), (1, 1, 2, 0.5, 1.5), (2, 1, 2, 0.5, 1.5)])
    change(answer)
    with pytest.raises(ValueError, match=f"chart answer for {K}: {message}"):
        candles_from_chart(K, answer)


def test_candles_from_chart_rejects_something_that_is_not_a_chart() -> None:
    with pytest.raises(ValueError, match="expected an object of parallel arrays"):
        candles_from_chart(K, [1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeframe"):
        candles_from_chart(K, chart_answer([]), timeframe=7)


# -- aggregate ---------------------------------------------------------------------------------

# 09:15-09:35. 09:20 (the first minute of a 5m bucket) has no tick; 09:25-09:29 none at all.
AGG_TICKS: list[tuple[float, float, float]] = [
    (0, 0, 100),
    (0, 30, 103),
    (2, 15, 98),
    (4, 59, 101),
    (6, 10, 104),
    (7, 0, 99),
    (9, 30, 102),
    (15, 5, 97),
    (16, 0, 96),
    (20, 0, 95),
]
AGG_EXPECTED_5M = [
    c5(0, 100, 103, 98, 101, 4),
    # 09:20 starts with a minute filled at 101: not part of this bucket's open or low.
    c5(5, 104, 104, 99, 102, 3),
    flat(10, 102, timeframe=300),
    c5(15, 97, 97, 96, 96, 2),
]


def test_aggregating_one_minute_candles_equals_building_five_minutes_from_the_same_ticks() -> None:
    builder = CandleBuilder((60, 300))
    feed(builder, AGG_TICKS)
    assert builder.history(K, 300) == AGG_EXPECTED_5M
    assert aggregate(builder.history(K, 60), 300) == AGG_EXPECTED_5M


def test_aggregate_equals_building_from_ticks_with_out_of_order_and_late_ticks() -> None:
    builder = CandleBuilder((60, 300))
    feed(builder, [(0, 30, 100), (0, 10, 102), (1, 0, 99), (0, 59, 150), (3, 0, 98), (5, 0, 97)])
    assert builder.late_ticks == 1
    assert builder.history(K, 300) == [c5(0, 102, 102, 98, 98, 4)]
    assert aggregate(builder.history(K, 60), 300) == builder.history(K, 300)


def test_aggregate_keeps_keys_apart_and_returns_a_partial_last_bucket() -> None:
    candles = [
        c1(0, 10, 11, 9, 10.5, 0, source="chart"),
        c1(0, 50, 51, 49, 50.5, 0, key=B, source="chart"),
        c1(1, 10.5, 12, 10, 11, 0, source="chart"),
        c1(5, 11, 11.5, 10.5, 11, 0, source="chart"),
    ]
    assert aggregate(candles, 300) == [
        c5(0, 10, 12, 9, 11, 0, source="chart"),
        c5(5, 11, 11.5, 10.5, 11, 0, source="chart"),
        c5(0, 50, 51, 49, 50.5, 0, key=B, source="chart"),
    ]
    assert aggregate([], 300) == []


def test_aggregate_of_chart_and_live_candles_is_a_live_candle() -> None:
    candles = [c1(0, 10, 11, 9, 10.5, 0, source="chart"), c1(1, 10.5, 12, 10, 11, 3)]
    assert aggregate(candles, 300) == [c5(0, 10, 12, 9, 11, 3)]


@pytest.mark.parametrize(
    ("candles", "timeframe", "message"),
    [
        ([c1(0, 1, 1, 1, 1, 1), c5(0, 1, 1, 1, 1, 1)], 900, "several timeframes"),
        ([c5(0, 1, 1, 1, 1, 1)], 60, "300 s candles do not divide 60 s"),
        ([c1(0, 1, 1, 1, 1, 1), c1(0, 2, 2, 2, 2, 1)], 300, "two candles for IDX_I:13"),
        ([c1(0, 1, 1, 1, 1, 1)], 7, "timeframe"),
    ],
)
def test_aggregate_rejects_what_it_cannot_merge(
    candles: list[Candle], timeframe: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        aggregate(candles, timeframe)


# -- Candle ------------------------------------------------------------------------------------


def test_a_candle_survives_a_dict_and_json_round_trip() -> None:
    candle = Candle(K, 300, at(5), 22500.5, 22510, 22490.25, 22505, 0, filled=True, source="chart")
    assert Candle.from_dict(json.loads(json.dumps(candle.as_dict()))) == candle
    assert candle.start_datetime == datetime(2024, 6, 14, 9, 20, tzinfo=IST)


def test_from_dict_defaults_filled_and_source() -> None:
    data = c1(0, 1, 2, 0.5, 1.5, 3).as_dict()
    del data["filled"], data["source"]
    assert Candle.from_dict(data) == c1(0, 1, 2, 0.5, 1.5, 3)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("key", "", "candle.key"),
        ("timeframe", 7, "candle.timeframe"),
        ("start", "x", "candle.start: expected a number"),
        ("open", 0, "candle.open: expected a positive price"),
        ("high", None, "candle.high: expected a number"),
        ("ticks", -1, "candle.ticks"),
        ("ticks", True, "candle.ticks"),
        ("filled", "yes", "candle.filled"),
        ("source", "guess", "candle.source"),
    ],
)
def test_from_dict_names_the_bad_field(field: str, value: object, message: str) -> None:
    data = c1(0, 1, 2, 0.5, 1.5, 3).as_dict()
    data[field] = value
    with pytest.raises(ValueError, match=message):
        Candle.from_dict(data)


def test_from_dict_names_a_missing_field() -> None:
    data = c1(0, 1, 2, 0.5, 1.5, 3).as_dict()
    del data["close"]
    with pytest.raises(ValueError, match=r"candle\.close: missing"):
        Candle.from_dict(data)


def test_the_module_is_pure() -> None:
    # Only the pure market vocabulary of trading (trading.rules.market: the zone) may come in.
    code = (
        "import sys, workers.candles; "
        "print(sorted(m for m in ('django', 'redis', 'socket', 'trading.models', 'trading.dhan')"
        " if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
