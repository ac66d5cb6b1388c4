"""The signal and position choices are derived from trading.rules.vocab, never re-typed: a new
Direction or Gate member is a new choice, and a value outside them fails model validation."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from trading.models import (
    PositionDirection,
    PositionTracker,
    SignalDirection,
    SignalGate,
    TradingSignal,
)
from trading.rules.vocab import ENTRY_DIRECTIONS, Direction, Gate


def _choices(model: type, name: str) -> list[tuple[str, str]]:
    return list(model._meta.get_field(name).choices)


def test_signal_direction_choices_are_the_directions_with_their_labels():
    assert _choices(TradingSignal, "direction") == [
        ("bullish", "Bullish"),
        ("bearish", "Bearish"),
        ("avoid", "Avoid"),
    ]
    assert SignalDirection.values == [d.value for d in Direction]


def test_signal_gate_choices_are_every_gate_in_decision_order():
    assert [value for value, _ in _choices(TradingSignal, "gate")] == [g.value for g in Gate]
    assert SignalGate.SAME_DIRECTION_OPEN.label == "Same direction open"
    assert SignalGate.SIZING == Gate.SIZING


def test_a_position_has_an_entry_direction_only():
    assert _choices(PositionTracker, "direction") == [
        ("bullish", "Bullish"),
        ("bearish", "Bearish"),
    ]
    assert PositionDirection.values == list(ENTRY_DIRECTIONS)


@pytest.mark.parametrize(
    ("model", "name", "value"),
    [
        (TradingSignal, "gate", "unknown"),
        (TradingSignal, "direction", "sideways"),
        (PositionTracker, "direction", "avoid"),
    ],
)
def test_a_value_outside_the_enum_fails_validation(model, name, value):
    with pytest.raises(ValidationError):
        model._meta.get_field(name).clean(value, None)


@pytest.mark.parametrize(
    ("model", "name"), [(TradingSignal, "gate"), (PositionTracker, "direction")]
)
def test_blank_stays_allowed_where_the_row_has_none(model, name):
    assert model._meta.get_field(name).clean("", None) == ""
