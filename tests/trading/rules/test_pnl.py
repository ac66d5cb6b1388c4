"""trading.rules.pnl: unrealized PnL of a long option and its peak/trough; no database."""

from __future__ import annotations

from decimal import Decimal

import pytest

from trading.rules.pnl import PnlFigures, price_decimal, track_extremes, unrealized


def test_a_nifty_lot_bought_at_100_marked_at_110_is_650_gross():
    figures = unrealized(Decimal("100"), 110.0, 65, Decimal("64.10"))
    assert figures == PnlFigures(
        gross=Decimal("650.00"), net=Decimal("585.90"), percent=Decimal("10.0000")
    )


def test_a_losing_position_has_negative_figures():
    figures = unrealized(Decimal("100"), 95.5, 65, Decimal("20"))
    assert figures.gross == Decimal("-292.50")
    assert figures.net == Decimal("-312.50")
    assert figures.percent == Decimal("-4.5000")


def test_the_float_ltp_is_taken_at_its_shortest_repr_not_its_binary_value():
    # 110.05 as a binary float is 110.04999...; taken exactly it would round 0.5 paisa down.
    figures = unrealized(Decimal("110"), 110.05, 1, Decimal(0))
    assert figures.gross == Decimal("0.05")
    assert price_decimal(110.05) == Decimal("110.05")


def test_rupees_round_half_up_to_the_paisa():
    # 0.0025 x 1 = 0.0025 -> 0.00; 0.005 x 1 -> 0.01 (half up, not banker's rounding).
    assert unrealized(Decimal("100"), 100.005, 1, Decimal(0)).gross == Decimal("0.01")
    assert unrealized(Decimal("100"), 100.0025, 1, Decimal(0)).gross == Decimal("0.00")
    assert unrealized(Decimal("100.005"), 100.0, 1, Decimal(0)).gross == Decimal("-0.01")


def test_net_is_rounded_once_from_the_exact_gross():
    # gross exact 0.005 (-> 0.01), charges 0.005: net exact 0.000 -> 0.00, not 0.01 - 0.005.
    figures = unrealized(Decimal("100"), 100.005, 1, Decimal("0.005"))
    assert (figures.gross, figures.net) == (Decimal("0.01"), Decimal("0.00"))


def test_percent_is_of_the_entry_value_to_four_places():
    figures = unrealized(Decimal("3"), 4.0, 75, Decimal(0))
    assert figures.percent == Decimal("33.3333")
    assert figures.gross == Decimal("75.00")


@pytest.mark.parametrize("ltp", [0.0, -1.0, float("nan"), float("inf"), True, "110"])
def test_a_price_that_is_not_a_positive_number_is_refused(ltp):
    with pytest.raises(ValueError, match="ltp"):
        unrealized(Decimal("100"), ltp, 65, Decimal(0))


@pytest.mark.parametrize(
    ("entry", "quantity", "charges", "field"),
    [
        (Decimal(0), 65, Decimal(0), "entry_price"),
        (100.0, 65, Decimal(0), "entry_price"),
        (Decimal("NaN"), 65, Decimal(0), "entry_price"),
        (Decimal("100"), 0, Decimal(0), "quantity"),
        (Decimal("100"), 6.5, Decimal(0), "quantity"),
        (Decimal("100"), 65, Decimal("-1"), "exit_charges"),
    ],
)
def test_bad_inputs_are_refused_with_the_field_named(entry, quantity, charges, field):
    with pytest.raises(ValueError, match=field):
        unrealized(entry, 110.0, quantity, charges)


def test_the_first_value_seen_is_both_peak_and_trough():
    assert track_extremes(None, None, Decimal("5")) == (Decimal("5"), Decimal("5"))


def test_peak_and_trough_follow_the_extremes_across_updates():
    peak, trough = None, None
    for value in ("10", "25", "-5", "12", "-3"):
        peak, trough = track_extremes(peak, trough, Decimal(value))
    assert (peak, trough) == (Decimal("25"), Decimal("-5"))


def test_a_missing_trough_with_a_known_peak_is_filled_from_the_value():
    assert track_extremes(Decimal("30"), None, Decimal("10")) == (Decimal("30"), Decimal("10"))
