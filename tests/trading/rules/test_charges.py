"""trading.rules.charges: per-order charges of index options, component by component.

Expected figures are worked by hand in the comments from the rates below (those of
config/charges.yml and ../shared/DOMAIN.md), never computed with the code under test.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from trading.rules.charges import (
    ChargeRates,
    ChargesError,
    ChargesTable,
    OrderCharges,
    exchange_of,
    order_charges,
    round_trip,
)

D = Decimal
BEFORE = date(2026, 3, 31)  # last day of STT 0.10 %
AFTER = date(2026, 4, 1)  # first day of STT 0.15 %
MAY = date(2026, 5, 4)


def rates(start: date, end: date | None, stt_sell: str) -> ChargeRates:
    return ChargeRates(
        effective_from=start,
        effective_to=end,
        brokerage_per_order=D("20"),
        stt_sell=D(stt_sell),
        exchange_txn={"NSE": D("0.0003503"), "BSE": D("0.000325")},
        ipft={"NSE": D("0.000005"), "BSE": D("0")},
        sebi_per_crore=D("10"),
        stamp_buy=D("0.00003"),
        gst=D("0.18"),
    )


TABLE = ChargesTable(
    rates=(
        rates(date(2024, 10, 1), BEFORE, "0.001"),
        rates(AFTER, None, "0.0015"),
    ),
    version="test",
)


def charges(*figures: str) -> OrderCharges:
    """brokerage, stt, exchange_txn, ipft, sebi, stamp_duty, gst, total."""
    return OrderCharges(*(D(figure) for figure in figures))


# -- one order, every component with its rounding -----------------------------------------------

ORDERS = [
    pytest.param(
        # turnover 65 x 100 = 6500
        # exchange 6500 x 0.0003503 = 2.27695 -> 2.28; ipft 6500 x 0.000005 = 0.0325 -> 0.03
        # sebi 6500 x 10 / 1e7 = 0.0065 -> 0.01; stamp 6500 x 0.00003 = 0.195 -> 0 (rupee)
        # gst (20 + 2.28 + 0.01) x 0.18 = 4.0122 -> 4.01; total 26.33
        ("NSE", "BUY", 65, D("100"), MAY),
        charges("20.00", "0.00", "2.28", "0.03", "0.01", "0.00", "4.01", "26.33"),
        id="nse-buy-1-lot-nifty-at-100",
    ),
    pytest.param(
        # turnover 65 x 110 = 7150; stt 7150 x 0.0015 = 10.725 -> 11 (rupee)
        # exchange 7150 x 0.0003503 = 2.504645 -> 2.50; ipft 0.03575 -> 0.04
        # sebi 0.00715 -> 0.01; no stamp on a sell; gst (20 + 2.50 + 0.01) x 0.18 = 4.0518 -> 4.05
        # total 20 + 11 + 2.50 + 0.04 + 0.01 + 4.05 = 37.60
        ("NSE", "SELL", 65, D("110"), MAY),
        charges("20.00", "11.00", "2.50", "0.04", "0.01", "0.00", "4.05", "37.60"),
        id="nse-sell-1-lot-nifty-at-110",
    ),
    pytest.param(
        # turnover 750 x 200 = 150000
        # exchange 150000 x 0.0003503 = 52.545 -> 52.55 (half UP; half-even would give 52.54)
        # ipft 0.75; sebi 0.15; stamp 150000 x 0.00003 = 4.5 -> 5 (half up to the rupee)
        # gst (20 + 52.55 + 0.15) x 0.18 = 13.086 -> 13.09; total 91.54
        ("NSE", "BUY", 750, D("200"), MAY),
        charges("20.00", "0.00", "52.55", "0.75", "0.15", "5.00", "13.09", "91.54"),
        id="nse-buy-stamp-duty-half-rounds-up-to-the-rupee",
    ),
    pytest.param(
        # turnover 65 x 100 = 6500 under the OLD STT: 6500 x 0.001 = 6.5 -> 7 (half up)
        # exchange 2.28, ipft 0.03, sebi 0.01, gst 4.01 as in the first case; total 33.33
        ("NSE", "SELL", 65, D("100"), BEFORE),
        charges("20.00", "7.00", "2.28", "0.03", "0.01", "0.00", "4.01", "33.33"),
        id="nse-sell-stt-half-rounds-up-to-the-rupee",
    ),
    pytest.param(
        # SENSEX 20 units at 250: turnover 5000
        # exchange 5000 x 0.000325 = 1.625 -> 1.63 (half up); no IPFT on BSE
        # sebi 0.005 -> 0.01; stamp 0.15 -> 0; gst (20 + 1.63 + 0.01) x 0.18 = 3.8952 -> 3.90
        # total 20 + 1.63 + 0.01 + 3.90 = 25.54
        ("BSE", "BUY", 20, D("250"), MAY),
        charges("20.00", "0.00", "1.63", "0.00", "0.01", "0.00", "3.90", "25.54"),
        id="bse-buy-sensex",
    ),
    pytest.param(
        # the same on the sell side: stt 5000 x 0.0015 = 7.5 -> 8; total 25.54 + 8 = 33.54
        ("BSE", "SELL", 20, D("250"), MAY),
        charges("20.00", "8.00", "1.63", "0.00", "0.01", "0.00", "3.90", "33.54"),
        id="bse-sell-sensex",
    ),
]


@pytest.mark.parametrize(("order", "expected"), ORDERS)
def test_each_component_of_an_order_is_charged_and_rounded_as_the_contract_note_does(
    order, expected
):
    exchange, side, quantity, price, day = order
    assert order_charges(exchange, side, quantity, price, day, TABLE) == expected


@pytest.mark.parametrize(("order", "expected"), ORDERS)
def test_the_total_is_the_sum_of_the_rounded_components(order, expected):
    result = order_charges(*order, TABLE)
    parts = (result.brokerage, result.stt, result.exchange_txn, result.ipft, result.sebi)
    assert result.total == sum(parts) + result.stamp_duty + result.gst


def test_the_domain_check_value_one_nifty_lot_bought_at_100_and_sold_at_110_costs_about_64():
    # DOMAIN.md: NIFTY, 1 lot of 65, buy 100 sell 110 -> about Rs 64 on a gross Rs 650.
    # Buy (26.33) + sell (37.60), component by component as in the first two cases above.
    result = round_trip("NSE", 65, D("100"), D("110"), MAY, TABLE)
    assert result == charges("40.00", "11.00", "4.78", "0.07", "0.02", "0.00", "8.06", "63.93")
    gross = (D("110") - D("100")) * 65
    assert gross == D("650")
    assert abs(result.total - D("64")) < 1


def test_a_round_trip_is_its_two_orders_added_component_by_component():
    buy = order_charges("BSE", "BUY", 20, D("250"), MAY, TABLE)
    sell = order_charges("BSE", "SELL", 20, D("300"), MAY, TABLE)
    assert round_trip("BSE", 20, D("250"), D("300"), MAY, TABLE) == buy + sell


# -- the dated table ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "stt"),
    [
        # 65 x 110 = 7150: x 0.001 = 7.15 -> 7; x 0.0015 = 10.725 -> 11
        pytest.param(BEFORE, D("7.00"), id="2026-03-31-at-0.10-pct"),
        pytest.param(AFTER, D("11.00"), id="2026-04-01-at-0.15-pct"),
    ],
)
def test_the_stt_rate_changes_on_the_first_of_april_2026(day, stt):
    assert order_charges("NSE", "SELL", 65, D("110"), day, TABLE).stt == stt


@pytest.mark.parametrize(
    ("day", "stt_sell"),
    [
        pytest.param(date(2024, 10, 1), D("0.001"), id="first-day-of-the-first-row"),
        pytest.param(BEFORE, D("0.001"), id="last-day-of-the-first-row-inclusive"),
        pytest.param(AFTER, D("0.0015"), id="first-day-of-the-second-row"),
        pytest.param(date(2040, 1, 1), D("0.0015"), id="open-ended-row"),
    ],
)
def test_the_rates_in_force_are_those_of_the_row_covering_the_day(day, stt_sell):
    assert TABLE.rates_on(day).stt_sell == stt_sell


def test_a_day_without_rates_in_force_is_an_error_naming_the_day():
    with pytest.raises(ChargesError, match="no charge rates in force on 2024-09-30"):
        order_charges("NSE", "SELL", 65, D("110"), date(2024, 9, 30), TABLE)


def test_a_day_in_a_gap_between_rows_is_an_error_naming_the_day_and_the_coverage():
    table = ChargesTable(
        rates=(rates(date(2025, 1, 1), date(2025, 1, 31), "0.001"), rates(AFTER, None, "0.0015")),
        version="gap",
    )
    with pytest.raises(ChargesError) as caught:
        table.rates_on(date(2025, 2, 1))
    assert "2025-02-01" in str(caught.value)
    assert "2025-01-01..2025-01-31, 2026-04-01.." in str(caught.value)


@pytest.mark.parametrize(
    "rows",
    [
        pytest.param((rates(AFTER, None, "0.0015"), rates(BEFORE, BEFORE, "0.001")), id="unsorted"),
        pytest.param(
            (rates(date(2025, 1, 1), AFTER, "0.001"), rates(AFTER, None, "0.0015")),
            id="overlapping",
        ),
        pytest.param((), id="empty"),
    ],
)
def test_a_table_refuses_rows_out_of_order_overlapping_or_none(rows):
    with pytest.raises(ValueError):
        ChargesTable(rates=rows, version="bad")


def test_a_rate_set_ending_before_it_starts_is_refused():
    with pytest.raises(ValueError, match="before effective_from"):
        rates(AFTER, BEFORE, "0.0015")


def test_the_exchange_maps_of_a_rate_set_are_read_only():
    with pytest.raises(TypeError):
        TABLE.rates[0].exchange_txn["NSE"] = D("0")  # type: ignore[index]


# -- inputs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("segment", "exchange"),
    [
        pytest.param("NSE_FNO", "NSE", id="nse-fno"),
        pytest.param("BSE_FNO", "BSE", id="bse-fno"),
    ],
)
def test_the_exchange_of_a_derivatives_segment(segment, exchange):
    assert exchange_of(segment) == exchange


@pytest.mark.parametrize("segment", ["NSE_EQ", "IDX_I", "MCX_COMM", ""])
def test_a_segment_without_a_charges_model_is_an_error_naming_it(segment):
    with pytest.raises(ChargesError, match=repr(segment)):
        exchange_of(segment)


@pytest.mark.parametrize(
    ("exchange", "side", "quantity", "price", "message"),
    [
        pytest.param("MCX", "BUY", 65, D("100"), "exchange 'MCX'", id="unknown-exchange"),
        pytest.param("NSE", "HOLD", 65, D("100"), "side", id="unknown-side"),
        pytest.param("NSE", "BUY", 0, D("100"), "quantity", id="zero-quantity"),
        pytest.param("NSE", "BUY", -65, D("100"), "quantity", id="negative-quantity"),
        pytest.param("NSE", "BUY", 6.5, D("100"), "quantity", id="fractional-quantity"),
        pytest.param("NSE", "BUY", True, D("100"), "quantity", id="boolean-quantity"),
        pytest.param("NSE", "BUY", 65, D("0"), "price", id="zero-price"),
        pytest.param("NSE", "BUY", 65, D("-1"), "price", id="negative-price"),
        pytest.param("NSE", "BUY", 65, D("NaN"), "price", id="nan-price"),
        pytest.param("NSE", "BUY", 65, "100", "price", id="text-price"),
    ],
)
def test_bad_order_inputs_are_refused_with_the_input_named(
    exchange, side, quantity, price, message
):
    with pytest.raises(ChargesError, match=message):
        order_charges(exchange, side, quantity, price, MAY, TABLE)


def test_a_float_price_is_taken_at_its_shortest_repr():
    assert order_charges("NSE", "SELL", 65, 110.05, MAY, TABLE) == order_charges(
        "NSE", "SELL", 65, D("110.05"), MAY, TABLE
    )


def test_as_dict_gives_every_component_as_an_exact_string():
    result = order_charges("NSE", "SELL", 65, D("110"), MAY, TABLE)
    assert result.as_dict() == {
        "brokerage": "20.00",
        "stt": "11.00",
        "exchange_txn": "2.50",
        "ipft": "0.04",
        "sebi": "0.01",
        "stamp_duty": "0.00",
        "gst": "4.05",
        "total": "37.60",
    }
