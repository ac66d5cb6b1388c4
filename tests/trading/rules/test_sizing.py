"""trading.rules.sizing: lots from risk, allocation, cash and max_lots; the freeze split."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from tests.trading.rules.factories import make_config
from trading.rules.sizing import Size, size_entry, split_for_freeze

D = Decimal
# DOMAIN defaults from the factory: risk 1,000 a trade, 50% allocation, 10 lots at most.
SIZING = make_config().risk.sizing
SL = 0.12
NIFTY_LOT, NIFTY_FREEZE = 65, 1800


def sizing(**changes: object) -> object:
    return dataclasses.replace(SIZING, **changes)


@pytest.mark.parametrize(
    ("entry", "cash", "config", "expected"),
    [
        pytest.param(
            # one lot risks 100 x 0.12 x 65 = 780: 1000 / 780 = 1.28 -> 1
            "100",
            "100000",
            SIZING,
            (1, 1, 7, 15, 10, "risk"),
            id="risk-bound",
        ),
        pytest.param(
            # 30,000 x 50% = 15,000 / 6,500 a lot = 2.3 -> 2
            "100",
            "30000",
            sizing(risk_per_trade_rupees=D("10000")),
            (2, 12, 2, 4, 10, "allocation"),
            id="allocation-bound",
        ),
        pytest.param(
            # with 100% allocation the cash itself binds: 19,499.99 / 6,500 = 2.99 -> 2
            "100",
            "19499.99",
            sizing(risk_per_trade_rupees=D("10000"), capital_alloc_pct=1.0),
            (2, 12, 2, 2, 10, "affordability"),
            id="affordability-bound-just-under-3-lots",
        ),
        pytest.param(
            "100",
            "19500",
            sizing(risk_per_trade_rupees=D("10000"), capital_alloc_pct=1.0),
            (3, 12, 3, 3, 10, "affordability"),
            id="affordability-exactly-3-lots",
        ),
        pytest.param(
            "100",
            "1000000",
            sizing(risk_per_trade_rupees=D("100000"), capital_alloc_pct=1.0, max_lots=2),
            (2, 128, 153, 153, 2, "max_lots"),
            id="max-lots-bound",
        ),
        pytest.param(
            # exactly 5 lots of risk: 86 x 0.12 x 65 = 670.80, x 5 = 3,354. In floats
            # 3354 / (86 * 0.12 * 65) is 4.999... and floors to 4; Decimal keeps the 5th lot.
            "86",
            "1000000",
            sizing(risk_per_trade_rupees=D("3354")),
            (5, 5, 89, 178, 10, "risk"),
            id="exact-floor-where-float-loses-a-lot",
        ),
        pytest.param(
            "100",
            "100000",
            sizing(risk_per_trade_rupees=D("780")),
            (1, 1, 7, 15, 10, "risk"),
            id="risk-exactly-one-lot",
        ),
    ],
)
def test_lots_are_the_least_of_the_four_limits(entry, cash, config, expected):
    lots, risk, allocation, affordable, max_lots, binding = expected
    size = size_entry(D(entry), NIFTY_LOT, D(cash), config, SL, NIFTY_FREEZE)
    assert (size.risk_lots, size.allocation_lots, size.affordable_lots, size.max_lots) == (
        risk,
        allocation,
        affordable,
        max_lots,
    )
    assert (size.lots, size.quantity, size.ok, size.reason) == (lots, lots * 65, True, None)
    assert size.binding == binding
    assert size.orders == (lots * 65,)


@pytest.mark.parametrize(
    ("entry", "cash", "config", "reason"),
    [
        pytest.param(
            "100",
            "5000",
            SIZING,
            "zero lots: cash 5,000.00 is below one lot: 65 x 100.00 = 6,500.00",
            id="cash-below-one-lot",
        ),
        pytest.param(
            "100",
            "-250",
            SIZING,
            "zero lots: cash 0.00 is below one lot: 65 x 100.00 = 6,500.00",
            id="negative-cash-counts-as-none",
        ),
        pytest.param(
            "100",
            "50000",
            sizing(capital_alloc_pct=0.1),
            "zero lots: allocation 10.00% of cash 50,000.00 = 5,000.00 "
            "is below one lot of 6,500.00",
            id="allocation-below-one-lot",
        ),
        pytest.param(
            "100",
            "100000",
            sizing(risk_per_trade_rupees=D("779.99")),
            "zero lots: risk per trade 779.99 is below the risk of one lot: "
            "65 x 100.00 x 12.00% stop = 780.00",
            id="risk-below-one-lot",
        ),
        pytest.param(
            "100", "100000", sizing(max_lots=0), "zero lots: max_lots is 0", id="max-lots-zero"
        ),
        pytest.param(
            "250",
            "10000",
            sizing(risk_per_trade_rupees=D("500")),
            "zero lots: cash 10,000.00 is below one lot: 65 x 250.00 = 16,250.00; "
            "risk per trade 500.00 is below the risk of one lot: "
            "65 x 250.00 x 12.00% stop = 1,950.00",
            id="several-limits-all-named",
        ),
    ],
)
def test_zero_lots_blocks_with_a_reason_naming_the_limit(entry, cash, config, reason):
    size = size_entry(D(entry), NIFTY_LOT, D(cash), config, SL, NIFTY_FREEZE)
    assert (size.lots, size.quantity, size.orders, size.ok) == (0, 0, (), False)
    assert size.reason == reason


@pytest.mark.parametrize(
    ("lots", "orders"),
    [
        pytest.param(27, (1755,), id="27-lots-fit-one-order"),
        pytest.param(28, (1755, 65), id="28-lots-split"),
        pytest.param(30, (1755, 195), id="30-lots-split"),
        pytest.param(54, (1755, 1755), id="54-lots-two-full-orders"),
    ],
)
def test_a_large_entry_is_split_under_the_nifty_freeze(lots, orders):
    big = sizing(risk_per_trade_rupees=D("10000000"), capital_alloc_pct=1.0, max_lots=lots)
    size = size_entry(D("100"), NIFTY_LOT, D("10000000"), big, SL, NIFTY_FREEZE)
    assert size == Size(
        lots=lots,
        quantity=lots * 65,
        orders=orders,
        risk_lots=12820,
        allocation_lots=1538,
        affordable_lots=1538,
        max_lots=lots,
        reason=None,
    )
    assert sum(size.orders) == size.quantity


@pytest.mark.parametrize(
    ("quantity", "lot", "freeze", "orders"),
    [
        pytest.param(0, 65, 1800, (), id="nothing"),
        pytest.param(65, 65, 1800, (65,), id="one-lot"),
        pytest.param(1755, 65, 1800, (1755,), id="nifty-27-lots-is-the-largest-order"),
        pytest.param(1820, 65, 1800, (1755, 65), id="nifty-28-lots"),
        pytest.param(3900, 65, 1800, (1755, 1755, 390), id="nifty-60-lots"),
        pytest.param(1800, 75, 1800, (1800,), id="freeze-an-exact-multiple-is-allowed"),
        pytest.param(2000, 20, 1000, (1000, 1000), id="sensex-lot-20-freeze-1000"),
        pytest.param(130, 65, 65, (65, 65), id="freeze-of-exactly-one-lot"),
    ],
)
def test_split_for_freeze_makes_whole_lot_orders_within_the_freeze(quantity, lot, freeze, orders):
    result = split_for_freeze(quantity, lot, freeze)
    assert result == orders
    assert all(order <= freeze and order % lot == 0 for order in result)


@pytest.mark.parametrize(
    ("quantity", "lot", "freeze", "match"),
    [
        pytest.param(
            650, 65, 50, "freeze quantity 50 is below one lot of 65", id="freeze-below-lot"
        ),
        pytest.param(100, 65, 1800, "not a whole number of lots", id="partial-lot"),
        pytest.param(-65, 65, 1800, "non-negative", id="negative"),
        pytest.param(65, 0, 1800, "lot_size", id="zero-lot-size"),
    ],
)
def test_split_for_freeze_refuses_impossible_requests(quantity, lot, freeze, match):
    with pytest.raises(ValueError, match=match):
        split_for_freeze(quantity, lot, freeze)


def test_size_entry_refuses_a_freeze_below_one_lot():
    with pytest.raises(ValueError, match="freeze quantity 50 is below one lot of 65"):
        size_entry(D("100"), NIFTY_LOT, D("100000"), SIZING, SL, 50)


@pytest.mark.parametrize(
    ("entry", "lot", "cash", "sl", "match"),
    [
        pytest.param(D("0"), 65, D("1000"), SL, "entry_price", id="zero-price"),
        pytest.param(100.0, 65, D("1000"), SL, "entry_price", id="float-price"),
        pytest.param(D("100"), 0, D("1000"), SL, "lot_size", id="zero-lot"),
        pytest.param(D("100"), 65, D("NaN"), SL, "cash", id="nan-cash"),
        pytest.param(D("100"), 65, D("1000"), 0.0, "sl_pct", id="zero-stop"),
    ],
)
def test_size_entry_refuses_bad_inputs(entry, lot, cash, sl, match):
    with pytest.raises(ValueError, match=match):
        size_entry(entry, lot, cash, SIZING, sl, NIFTY_FREEZE)
