"""trading.rules.vocab: the stored names of directions and gates, and the verdicts that carry
them; no database."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from tests.trading.rules.factories import make_config
from trading.rules import gates
from trading.rules.gates import GATE_NAMES, GATES, RiskState, check_contract, check_entry
from trading.rules.signals import Signal, evaluate
from trading.rules.strikes import CALL, OPTION_FOR_DIRECTION, PUT
from trading.rules.vocab import ENTRY_DIRECTIONS, Direction, Gate

IST = ZoneInfo("Asia/Kolkata")


def test_the_stored_values_are_stable():
    # These strings are on TradingSignal and PositionTracker rows: renaming one orphans history.
    assert [d.value for d in Direction] == ["bullish", "bearish", "avoid"]
    assert ENTRY_DIRECTIONS == (Direction.BULLISH, Direction.BEARISH)
    # The rules' own gates are pinned in test_gates (GATE_NAMES); the engine's go around
    # no_averaging in the order an entry meets them.
    assert [g.value for g in Gate] == [*GATE_NAMES[:-1], "strike", "no_averaging", "sizing"]


def test_every_gate_the_rules_run_is_a_gate_and_the_engine_adds_strike_and_sizing():
    assert all(type(gate) is Gate for gate in GATE_NAMES)
    assert all(type(gate) is Gate for gate, _ in GATES)
    assert set(Gate) - set(GATE_NAMES) == {Gate.STRIKE, Gate.SIZING}


def test_a_verdict_carries_the_gate_member():
    now = datetime(2026, 11, 23, 10, 0, tzinfo=IST)  # a Monday, inside the entry window
    state = RiskState(
        trading_enabled=False,
        kill_switch=False,
        feed_state=gates.HEALTHY,
        index_tick_age=0.1,
        capital=Decimal("200000"),
        realized_pnl_today=Decimal(0),
        open_pnl=Decimal(0),
        entries_today={},
        open_positions=(gates.OpenPosition("NIFTY", "bullish", "NSE_FNO:1", now),),
        closed_today=(),
    )
    config = make_config()
    verdict = check_entry(config.index("NIFTY"), Direction.BULLISH, now, state, config)
    assert verdict.gate is Gate.TRADING_SWITCH
    assert check_contract("NSE_FNO:1", state).gate is Gate.NO_AVERAGING


def test_a_signal_carries_the_direction_member():
    signal = evaluate([1.0], [1.0], [1.0], make_config().signals)
    assert isinstance(signal, Signal) and signal.direction is Direction.AVOID


def test_each_entry_direction_buys_one_option_type_and_avoid_buys_none():
    assert {d: OPTION_FOR_DIRECTION[d] for d in ENTRY_DIRECTIONS} == {
        Direction.BULLISH: CALL,
        Direction.BEARISH: PUT,
    }
    assert Direction.AVOID not in OPTION_FOR_DIRECTION


@pytest.mark.parametrize("stored", ["bullish", "bearish"])
def test_a_direction_read_back_from_the_database_equals_the_member(stored):
    assert Direction(stored) == stored and OPTION_FOR_DIRECTION[stored] in (CALL, PUT)
