"""config_schema.schema: the rules every config file is built from, and the one translation of
pydantic's errors into the project's problem lines."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from config_schema import ConfigError
from config_schema.schema import (
    adapter,
    found,
    items,
    money,
    note,
    nullable,
    number,
    section,
    symbol,
    validate,
    whole,
)
from config_schema.text import shown as shown_value


def ident(value: Any) -> str:
    return shown_value(value)[:40]


RUPEES = adapter(money(10_000_000))
RUPEES_EXPECTED = "an amount in rupees, to the paisa, above 0 and at most 10000000"


def problems(schema: Any, data: Any, source: str = "test.yml") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        validate(schema, data, source)
    return caught.value.problems


@pytest.mark.parametrize(
    ("written", "amount"),
    [
        (5000, "5000"),
        (2500.5, "2500.5"),
        ("1500.25", "1500.25"),
        (" 75 ", "75"),
        (10_000_000, "1E+7"),
    ],
)
def test_money_is_read_exactly(written, amount):
    assert validate(RUPEES, written, "test.yml") == Decimal(amount)


@pytest.mark.parametrize(
    ("written", "shown"),
    [
        ("1e30", "'1e30'"),  # "no limit" in effect
        ("1e999999", "'1e999999'"),  # a megabyte of digits once written out
        ("1e999999999", "'1e999999999'"),  # Decimal.normalize() overflows on it
        (1e300, "1e+300"),
        (10**30, "1000000000000000000000000000000"),
        (10**10000, "a whole number of about 10001 digits"),  # repr() refuses it
        (10_000_000.01, "10000000.01"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        ("NaN", "'NaN'"),
        ("-Infinity", "'-Infinity'"),
        ("\u0661\u0660\u0660\u0660", "'\\u0661\\u0660\\u0660\\u0660'"),  # Arabic-Indic 1000
        ("\uff11\uff10\uff10\uff10", "'\\uff11\\uff10\\uff10\\uff10'"),  # full-width 1000
        ("1000.005", "'1000.005'"),  # below the paisa
        ("1e-999999999", "'1e-999999999'"),
        (0, "0"),
        (True, "True"),
        ("1" * 100, "'" + "1" * 37 + "..." + "1" * 37 + "'"),
        (None, "None"),
    ],
    ids=ident,
)
def test_money_out_of_bounds_or_not_plain_digits_is_refused(written, shown):
    assert problems(RUPEES, written) == [
        f"test.yml: (top level): expected {RUPEES_EXPECTED}, got {shown}"
    ]


@pytest.mark.parametrize("written", [10**30, -(10**5000), 7.0, True, "7"], ids=ident)
def test_a_whole_number_is_an_int_within_its_bounds(written):
    (line,) = problems(adapter(whole(1, 100)), written)
    assert line.startswith("test.yml: (top level): expected a whole number between 1 and 100, got ")


@pytest.mark.parametrize("written", [10**400, float("nan"), float("-inf"), "0.5", False], ids=ident)
def test_a_number_is_finite_within_its_bounds(written):
    (line,) = problems(adapter(number(0, 1, above=True)), written)
    assert line.startswith("test.yml: (top level): expected a number above 0 and at most 1, got ")


def test_nullable_says_or_null():
    schema = adapter(nullable(whole(0, 5)))
    assert validate(schema, None, "t") is None
    assert problems(schema, 6) == [
        "test.yml: (top level): expected a whole number between 0 and 5 or null, got 6"
    ]


@dataclass(frozen=True)
class Leg:
    key: str
    lots: int


@dataclass(frozen=True)
class Book:
    legs: tuple[Leg, ...]
    cap: int


def _cap_holds(book: Book) -> list[Any]:
    total = sum(leg.lots for leg in book.legs)
    return (
        [found(("cap",), book.cap, f"a cap of at least the lots ({total})")]
        if book.cap < total
        else []
    )


BOOK = adapter(
    section(
        Book,
        {
            "legs": items(
                section(Leg, {"key": symbol(), "lots": whole(1, 10)}), "a list of legs", key="key"
            ),
            "cap": whole(1, 100),
        },
        (_cap_holds,),
    )
)


def test_a_section_builds_its_dataclass():
    book = validate(BOOK, {"legs": [{"key": "nifty", "lots": 2}], "cap": 5}, "t")
    assert book == Book(legs=(Leg("NIFTY", 2),), cap=5)


def test_every_problem_is_named_by_its_key_path_keyed_items_by_their_key():
    data = {
        "legs": [{"key": "NIFTY", "lots": 0}, {"key": "x y", "lots": 1, "lot": 2}, {"lots": 1}],
        "cap": "5",
        "\ud800": 1,
    }
    assert problems(BOOK, data) == [
        "test.yml: '\\ud800': unknown key (expected one of legs, cap)",
        "test.yml: legs[NIFTY].lots: expected a whole number between 1 and 10, got 0",
        "test.yml: legs[1].lot: unknown key (expected one of key, lots)",
        "test.yml: legs[1].key: expected an index symbol of letters and digits (NIFTY), got 'x y'",
        "test.yml: legs[2].key: missing required key",
        "test.yml: cap: expected a whole number between 1 and 100, got '5'",
    ]


def test_a_repeated_item_key_and_a_cross_field_problem_are_named():
    repeated = {"legs": [{"key": "NIFTY", "lots": 1}, {"key": "nifty", "lots": 1}], "cap": 5}
    assert problems(BOOK, repeated) == [
        "test.yml: legs[1].key: expected a key no earlier item uses, got 'NIFTY'"
    ]
    over = {"legs": [{"key": "NIFTY", "lots": 9}], "cap": 5}
    assert problems(BOOK, over) == ["test.yml: cap: expected a cap of at least the lots (9), got 5"]


def test_a_check_may_say_a_note():
    schema = adapter(
        section(
            Leg,
            {"key": symbol(), "lots": whole(1, 10)},
            (lambda leg: [note(("lots",), "too many")],),
        )
    )
    assert problems(schema, {"key": "A", "lots": 1}) == ["test.yml: lots: too many"]


def test_a_value_that_is_not_a_mapping_names_the_keys_expected():
    assert problems(BOOK, [1, 2]) == [
        "test.yml: (top level): expected a mapping with keys legs, cap, got [1, 2]"
    ]


def test_deep_nesting_is_a_problem_not_a_recursion_error():
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    (line,) = problems(BOOK, {"legs": deep, "cap": 1})
    assert line.startswith("test.yml: legs[0]: expected a mapping with keys key, lots, got [[[")


def test_a_flood_of_problems_is_cut_after_the_first_fifty():
    data = {f"k{i}": i for i in range(10_000)}
    lines = problems(BOOK, data)
    assert len(lines) == 51
    assert lines[0] == "test.yml: k0: unknown key (expected one of legs, cap)"
    assert lines[-1] == "test.yml: and 9952 more problem(s) not shown"


@pytest.mark.parametrize(
    "value",
    [
        "\U0001f000" * 20_000,  # escapes ten characters per character
        ["\u0100" * 20_000, "\U00014400" * 20_000, "\U00014400" * 20_000],
        [10**4000, {"a": ["\U0001f000" * 20_000] * 8, "b": {"c": "\udc80" * 500}}] * 8,
    ],
    ids=["escaped-string", "list-of-escaped-strings", "nested-mix"],
)
def test_a_shown_value_stays_short_and_printable_whatever_it_escapes_to(value):
    # Found by tests/trading/test_config_fuzz.py: strings were cut before escaping, so 80
    # characters of text became 800 of message and a list of three passed 2,000.
    text = shown_value(value)
    assert len(text) <= 400
    text.encode("ascii")
    assert "..." in text


def test_a_short_string_is_shown_whole():
    assert shown_value("abc") == "'abc'"
    assert shown_value("\u0100") == "'\\u0100'"
