"""trading.orders.states: the journal's and the positions' state tables (pure)."""

from __future__ import annotations

import itertools

import pytest

from trading.dhan.vocab import OrderStatus
from trading.orders.states import (
    FINAL,
    WORKING,
    JournalStatus,
    PositionState,
    can_move,
    can_move_position,
    position_sources,
    sources,
)

S = JournalStatus


@pytest.mark.parametrize(
    ("current", "new", "allowed"),
    [
        (S.UNKNOWN, S.TRANSIT, True),
        (S.UNKNOWN, S.PENDING, True),
        (S.UNKNOWN, S.TRADED, True),  # the lookup found it already filled
        (S.UNKNOWN, S.REJECTED, True),
        (S.UNKNOWN, S.CANCELLED, True),  # never sent: the resolver closes it
        (S.TRANSIT, S.PENDING, True),
        (S.TRANSIT, S.REJECTED, True),
        (S.TRANSIT, S.UNKNOWN, False),
        (S.PENDING, S.PART_TRADED, True),
        (S.PENDING, S.TRADED, True),
        (S.PENDING, S.CANCELLED, True),
        (S.PENDING, S.EXPIRED, True),
        (S.PENDING, S.TRANSIT, False),  # a modify answers TRANSIT: not a step back
        (S.PART_TRADED, S.TRADED, True),
        (S.PART_TRADED, S.CANCELLED, True),
        (S.PART_TRADED, S.PENDING, False),
        (S.PART_TRADED, S.PART_TRADED, False),  # a further fill is an update, not a move
        (S.TRADED, S.PENDING, False),  # the late PENDING after TRADED
        (S.TRADED, S.CANCELLED, False),
        (S.CANCELLED, S.TRADED, False),
        (S.REJECTED, S.PENDING, False),
        (S.EXPIRED, S.CANCELLED, False),
    ],
)
def test_an_order_only_moves_up_and_never_out_of_a_final_state(current, new, allowed):
    assert can_move(current, new) is allowed


def test_no_state_is_left_once_final_and_every_state_is_reachable_from_unknown():
    for final, other in itertools.product(FINAL, JournalStatus):
        assert not can_move(final, other)
    for status in JournalStatus:
        if status is not S.UNKNOWN:
            assert can_move(S.UNKNOWN, status)


def test_the_sources_are_exactly_the_states_that_may_move_to_it():
    assert sources(S.TRADED) == (S.UNKNOWN, S.TRANSIT, S.PENDING, S.PART_TRADED)
    assert sources(S.PENDING) == (S.UNKNOWN, S.TRANSIT)
    assert sources(S.UNKNOWN) == ()
    for new in JournalStatus:
        assert set(sources(new)) == {s for s in JournalStatus if can_move(s, new)}


def test_the_journal_speaks_dhans_states_plus_unknown():
    plain = set(OrderStatus) - {OrderStatus.CLOSED, OrderStatus.TRIGGERED}  # super orders only
    assert {s.value for s in JournalStatus} == {s.value for s in plain} | {"UNKNOWN"}
    assert WORKING == {S.UNKNOWN, S.TRANSIT, S.PENDING, S.PART_TRADED}


@pytest.mark.parametrize(
    ("current", "new", "allowed"),
    [
        ("pending", "active", True),
        ("pending", "cancelled", True),
        ("pending", "exiting", False),
        ("active", "exiting", True),
        ("active", "exited", False),  # only through a claimed exit
        ("exiting", "exited", True),
        ("exiting", "active", False),
        ("exited", "active", False),
        ("cancelled", "active", False),
    ],
)
def test_a_position_moves_along_its_life_only(current, new, allowed):
    assert can_move_position(current, new) is allowed


def test_a_position_is_claimed_for_exit_only_when_active():
    assert position_sources(PositionState.EXITING) == (PositionState.ACTIVE,)
    assert position_sources(PositionState.ACTIVE) == (PositionState.PENDING,)
