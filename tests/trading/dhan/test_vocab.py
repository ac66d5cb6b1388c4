"""trading.dhan.vocab: Dhan's order enumerations carry the exact wire strings of PROTOCOL.md 1.4,
and the modules that speak them take their spellings from it."""

from __future__ import annotations

import ast
import json
from enum import StrEnum
from pathlib import Path

import pytest

from trading.dhan import feed_codec, vocab
from trading.dhan.order_update_codec import ORDER_STATUSES
from trading.dhan.vocab import (
    NOT_SET,
    STOP_ORDER_TYPES,
    SUPER_ORDER_STATUSES,
    AmoTime,
    ExchangeSegment,
    Instrument,
    KillSwitchStatus,
    LegName,
    OptionType,
    OrderStatus,
    OrderType,
    PositionType,
    ProductType,
    TransactionType,
    Validity,
    wire_values,
)
from trading.rules.charges import SIDES

ROOT = Path(__file__).resolve().parents[3]

# PROTOCOL.md 1.4 (and 1.7 for the kill switch), value for value, in the table's order.
DOCUMENTED = [
    (TransactionType, ["BUY", "SELL"]),
    (ProductType, ["CNC", "INTRADAY", "MARGIN", "MTF", "CO", "BO"]),
    (OrderType, ["LIMIT", "MARKET", "STOP_LOSS", "STOP_LOSS_MARKET"]),
    (Validity, ["DAY", "IOC"]),
    (AmoTime, ["PRE_OPEN", "OPEN", "OPEN_30", "OPEN_60"]),
    (LegName, ["ENTRY_LEG", "TARGET_LEG", "STOP_LOSS_LEG"]),
    (
        OrderStatus,
        [
            "TRANSIT",
            "PENDING",
            "REJECTED",
            "CANCELLED",
            "PART_TRADED",
            "TRADED",
            "EXPIRED",
            "CLOSED",
            "TRIGGERED",
        ],
    ),
    (PositionType, ["LONG", "SHORT", "CLOSED"]),
    (OptionType, ["CALL", "PUT"]),
    (
        Instrument,
        [
            "INDEX",
            "EQUITY",
            "FUTIDX",
            "OPTIDX",
            "FUTSTK",
            "OPTSTK",
            "FUTCOM",
            "OPTFUT",
            "FUTCUR",
            "OPTCUR",
        ],
    ),
    (KillSwitchStatus, ["ACTIVATE", "DEACTIVATE"]),
    (
        ExchangeSegment,
        [
            "IDX_I",
            "NSE_EQ",
            "NSE_FNO",
            "NSE_CURRENCY",
            "NSE_COMM",
            "BSE_EQ",
            "BSE_FNO",
            "BSE_CURRENCY",
            "MCX_COMM",
        ],
    ),
]


@pytest.mark.parametrize(("enum", "values"), DOCUMENTED, ids=[e.__name__ for e, _ in DOCUMENTED])
def test_each_enum_carries_dhans_exact_wire_values(enum, values):
    assert [member.value for member in enum] == values
    assert all(member.name == member.value for member in enum)


def test_every_enum_of_the_module_is_pinned_above():
    enums = {
        obj
        for obj in vars(vocab).values()
        if isinstance(obj, type) and issubclass(obj, StrEnum) and obj is not StrEnum
    }
    assert enums == {enum for enum, _ in DOCUMENTED}


def test_a_member_is_its_wire_string():
    assert OrderStatus.TRADED == "TRADED" and str(OrderStatus.TRADED) == "TRADED"
    assert f"{OrderType.STOP_LOSS}" == "STOP_LOSS"
    assert {"TRADED": 1}[OrderStatus.TRADED] == 1 and {OrderStatus.TRADED: 1}["TRADED"] == 1
    assert json.dumps({"transactionType": TransactionType.BUY}) == '{"transactionType": "BUY"}'
    assert "STOP_LOSS_MARKET" in STOP_ORDER_TYPES and "LIMIT" not in STOP_ORDER_TYPES


def test_wire_values_lists_plain_sorted_strings_for_messages():
    assert wire_values(LegName) == ["ENTRY_LEG", "STOP_LOSS_LEG", "TARGET_LEG"]
    assert all(type(value) is str for value in wire_values(OrderStatus))


def test_na_is_an_answer_sentinel_and_no_request_value():
    assert NOT_SET == "NA"
    assert all(NOT_SET not in {m.value for m in enum} for enum, _ in DOCUMENTED)


def test_the_codec_acts_on_plain_order_statuses_only():
    assert ORDER_STATUSES == set(OrderStatus) - {"CLOSED", "TRIGGERED"}
    assert SUPER_ORDER_STATUSES == {OrderStatus.CLOSED, OrderStatus.TRIGGERED}


def test_every_feed_segment_name_is_a_rest_segment():
    # The feed's numeric code table (PROTOCOL.md 2.3) names the same segments; NSE_COMM has no
    # feed code.
    feed_names = {segment.name for segment in feed_codec.ExchangeSegment}
    assert feed_names == set(ExchangeSegment) - {ExchangeSegment.NSE_COMM}


def test_the_rules_charge_sides_are_dhans_transaction_types():
    # trading.rules may not import the broker adapter, so the charges keep their own tuple;
    # this keeps it from drifting away from the broker's spelling.
    assert set(SIDES) == set(TransactionType)


# The modules the vocabulary replaced literals in: none may spell an order enum value again.
USERS = [
    "trading/dhan/rest_types.py",
    "trading/dhan/rest.py",
    "trading/dhan/order_update_codec.py",
    "trading/dhan/sim/broker.py",
    "trading/dhan/sim/server.py",
]
# Values that are also ordinary words of another vocabulary in those modules (HTTP's PUT).
ELSEWHERE = {"PUT"}


def _literals(path: Path) -> list[tuple[int, str]]:
    """String constants of the module's code, docstrings left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


@pytest.mark.parametrize("module", USERS)
def test_the_order_modules_spell_no_enum_value_of_their_own(module):
    values = {m.value for enum, _ in DOCUMENTED for m in enum} | {NOT_SET}
    found = [(line, text) for line, text in _literals(ROOT / module) if text in values]
    assert [(line, text) for line, text in found if text not in ELSEWHERE] == []
