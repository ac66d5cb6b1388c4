"""trading.rules.exits: each exit rule fires on the exact tick that crosses its threshold and not
one tick earlier, first match wins, every rule can be switched off, the protective stop only
moves up and names its component, a restart keeps it; no database.

The rule tables run scripted price paths: a path's last tick is the one that crosses (the
tick before sits on the other side of the boundary, one exchange tick of 0.05 or one second
away), or, for a row expecting None, nothing on the path may fire.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.trading.rules.factories import make_config
from trading.config.types import ExitsConfig, TrailTier
from trading.rules.exits import (
    STOP_EXIT_TYPES,
    DayRisk,
    Evaluation,
    ExitDecision,
    ExitPlan,
    ExitState,
    StopComponent,
    Tick,
    evaluate,
    parse_stop_rule,
)
from trading.rules.vocab import Direction, ExitType

IST = ZoneInfo("Asia/Kolkata")
D = Decimal
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=IST)  # a Monday; the entry
EXPIRY = date(2026, 11, 26)  # Thursday: not today
CALM = DayRisk(kill_switch=False, day_pnl=D("-1200.00"), loss_limit=D("5000"))
KILL = dataclasses.replace(CALM, kill_switch=True)
AT_LIMIT = dataclasses.replace(CALM, day_pnl=D("-5000.00"))
TIERS = (
    TrailTier(peak_gain_pct=0.30, trail_pct=0.08),
    TrailTier(peak_gain_pct=0.60, trail_pct=0.06),
)


def exits(**overrides: Any) -> ExitsConfig:
    """The DOMAIN defaults (factories) with ``rule__field=value`` overrides under ``exits``."""
    return make_config(**{f"exits__{key}": value for key, value in overrides.items()}).exits


def make_plan(config: ExitsConfig | None = None, **facts: Any) -> ExitPlan:
    """Entry 100.00 x 65 at 10:00 on Monday 2026-11-23, bullish, expiring Thursday, NIFTY at
    24,000, round-trip charges 1.00 a unit; ``facts`` replace any of them."""
    base: dict[str, Any] = {
        "entry_price": D("100.00"),
        "quantity": 65,
        "entry_at": T0,
        "direction": Direction.BULLISH,
        "expiry": EXPIRY,
        "underlying_entry": D("24000"),
        "charges_per_unit": D("1.00"),
        "config": config or exits(),
    }
    base.update(facts)
    return ExitPlan.build(**base)


@dataclasses.dataclass(frozen=True)
class Step:
    """One evaluation: market time, the option's LTP (None: no tick), the index level, risk."""

    at: datetime
    ltp: str | None
    underlying: str | None = None
    risk: DayRisk = CALM


def s(
    at: float | str | datetime,
    ltp: str | None = None,
    underlying: str | None = None,
    risk: DayRisk = CALM,
) -> Step:
    """A step at ``at``: seconds after the entry, "HH:MM:SS" on the entry's day, or a moment."""
    if isinstance(at, str):
        moment = datetime.combine(T0.date(), time.fromisoformat(at), tzinfo=IST)
    elif isinstance(at, datetime):
        moment = at
    else:
        moment = T0 + timedelta(seconds=at)
    return Step(moment, ltp, underlying, risk)


def held(ltp: str, first: int, last: int) -> list[Step]:
    """The same LTP once a second from ``first`` to ``last`` seconds (the engine's sweep)."""
    return [s(second, ltp) for second in range(first, last + 1)]


def run(plan: ExitPlan, steps: list[Step], state: ExitState | None = None) -> list[Evaluation]:
    """Evaluate every step in turn, carrying the state (a decision does not stop the run)."""
    state = plan.open_state() if state is None else state
    out = []
    for step in steps:
        tick = None if step.ltp is None else Tick(D(step.ltp), step.at)
        underlying = None if step.underlying is None else D(step.underlying)
        result = evaluate(plan, state, tick, underlying, step.at, step.risk)
        out.append(result)
        state = result.state
    return out


def first_decision(results: list[Evaluation]) -> tuple[int, ExitDecision] | None:
    for index, result in enumerate(results):
        if result.decision is not None:
            return index, result.decision
    return None


def row(
    name: str,
    steps: list[Step],
    exit_type: ExitType | None,
    reason: str | None = None,
    config: ExitsConfig | None = None,
    **facts: Any,
) -> Any:
    return pytest.param(steps, exit_type, reason, config, facts, id=name)


def check_row(
    steps: list[Step],
    exit_type: ExitType | None,
    reason: str | None,
    config: ExitsConfig | None,
    facts: dict[str, Any],
) -> ExitDecision | None:
    """The path's last step fires ``exit_type`` (with ``reason``) and no step before it fires;
    ``exit_type`` None: no step fires."""
    results = run(make_plan(config, **facts), steps)
    found = first_decision(results)
    if exit_type is None:
        assert found is None, found
        return None
    assert found is not None, f"nothing fired; last state {results[-1].state}"
    index, decision = found
    assert (index, decision.exit_type) == (len(steps) - 1, exit_type), decision.reason
    if reason is not None:
        assert decision.reason == reason
    return decision


# -- 1 KILL_SWITCH, 2 DAILY_LOSS_LIMIT ------------------------------------------------------------

SWITCH_CASES = [
    row(
        "kill-switch-on-fires",
        [s(1, "100.00"), s(2, "100.00", risk=KILL)],
        ExitType.KILL_SWITCH,
        "kill switch is on",
    ),
    row("kill-switch-off-holds", [s(1, "100.00"), s(2, "100.00")], None),
    row(
        "kill-switch-fires-without-a-tick",
        [s(1, None), s(2, None, risk=KILL)],
        ExitType.KILL_SWITCH,
    ),
    row(
        "day-pnl-at-minus-the-limit-fires",
        [
            s(1, "100.00", risk=dataclasses.replace(CALM, day_pnl=D("-4999.99"))),
            s(2, "100.00", risk=AT_LIMIT),
        ],
        ExitType.DAILY_LOSS_LIMIT,
        "daily loss limit: day PnL -5,000.00 at or below -5,000.00",
    ),
    row(
        "day-pnl-beyond-the-limit-fires",
        [s(1, "100.00", risk=dataclasses.replace(CALM, day_pnl=D("-7312.40")))],
        ExitType.DAILY_LOSS_LIMIT,
        "daily loss limit: day PnL -7,312.40 at or below -5,000.00",
    ),
    row(
        "no-loss-limit-never-fires",
        [s(1, "100.00", risk=DayRisk(False, D("-99999"), None))],
        None,
    ),
]


@pytest.mark.parametrize(("steps", "exit_type", "reason", "config", "facts"), SWITCH_CASES)
def test_the_kill_switch_and_the_daily_loss_limit(steps, exit_type, reason, config, facts):
    check_row(steps, exit_type, reason, config, facts)


# -- 3 EXPIRY_DAY, 4 TIME_EXIT --------------------------------------------------------------------

TODAY = T0.date()
CLOCK_CASES = [
    row(
        "expiry-day-at-15-10-fires",
        [s("15:09:59", "100.00"), s("15:10:00", "100.00")],
        ExitType.EXPIRY_DAY,
        "the contract expires 2026-11-23: 2026-11-23 15:10:00 is at or after the expiry-day "
        "exit 15:10",
        expiry=TODAY,
    ),
    row(
        "expiry-day-fires-on-the-sweep-without-a-tick",
        [s("15:09:59", None), s("15:10:00", None)],
        ExitType.EXPIRY_DAY,
        expiry=TODAY,
    ),
    row(
        "not-the-expiry-day-holds-at-15-10",
        [s("15:10:00", "100.00"), s("15:14:59", "100.00")],
        None,
    ),
    row(
        "time-exit-at-15-15-fires",
        [s("15:14:59", "100.00"), s("15:15:00", "100.00")],
        ExitType.TIME_EXIT,
        "2026-11-23 15:15:00 is at or after the time exit 15:15 of the entry's day 2026-11-23",
    ),
    row(
        "time-exit-fires-without-a-tick",
        [s("15:14:59", None), s("15:15:00", None)],
        ExitType.TIME_EXIT,
    ),
    row(
        "a-position-carried-to-the-next-day-exits-at-once",
        [s(datetime(2026, 11, 24, 9, 15, 1, tzinfo=IST), "100.00")],
        ExitType.TIME_EXIT,
        "2026-11-24 09:15:01 is at or after the time exit 15:15 of the entry's day 2026-11-23",
    ),
    row(
        "market-time-in-utc-is-read-in-ist",
        [
            s(datetime(2026, 11, 23, 9, 44, 59, tzinfo=UTC), "100.00"),
            s(datetime(2026, 11, 23, 9, 45, tzinfo=UTC), "100.00"),
        ],
        ExitType.TIME_EXIT,
    ),
]


@pytest.mark.parametrize(("steps", "exit_type", "reason", "config", "facts"), CLOCK_CASES)
def test_the_expiry_day_and_the_time_exit(steps, exit_type, reason, config, facts):
    check_row(steps, exit_type, reason, config, facts)


# -- 5 the protective stop: STOP_LOSS, BREAKEVEN_STOP, TRAILING_STOP ----------------------------

NO_GIVEBACK = exits(peak_giveback__enabled=False)
STOP_CASES = [
    row(
        "initial-stop-fires-at-88",
        [s(1, "95.00"), s(2, "90.00"), s(3, "88.05"), s(4, "88.00")],
        ExitType.STOP_LOSS,
        "LTP 88.00 <= initial stop 88.00 (entry 100.00, stop loss 12 %)",
    ),
    row(
        "initial-stop-fires-on-a-gap-below-it",
        [s(1, "88.05"), s(2, "80.10")],
        ExitType.STOP_LOSS,
        "LTP 80.10 <= initial stop 88.00 (entry 100.00, stop loss 12 %)",
    ),
    row(
        "initial-stop-of-an-odd-entry-is-rounded-to-the-paisa",
        # 101.35 x 0.88 = 89.188 -> 89.19
        [s(1, "89.20"), s(2, "89.15")],
        ExitType.STOP_LOSS,
        "LTP 89.15 <= initial stop 89.19 (entry 101.35, stop loss 12 %)",
        entry_price=D("101.35"),
    ),
    row(
        "break-even-stop-fires-at-entry-plus-charges",
        [s(1, "104.00"), s(2, "108.00"), s(3, "103.00"), s(4, "101.05"), s(5, "101.00")],
        ExitType.BREAKEVEN_STOP,
        "LTP 101.00 <= break-even stop 101.00 (entry 100.00 + round-trip charges 1.00 a unit, "
        "armed at a peak gain of 8 %; peak 108.00)",
    ),
    row(
        "break-even-is-not-armed-one-tick-below-the-arm-gain",
        [s(1, "107.95"), s(2, "101.00"), s(3, "95.00")],
        None,
    ),
    row(
        "trailing-stop-fires-at-peak-less-10-percent",
        [
            s(1, "110.00"),
            s(2, "115.00"),
            s(3, "120.00"),
            s(4, "112.00"),
            s(5, "108.05"),
            s(6, "108.00"),
        ],
        ExitType.TRAILING_STOP,
        "LTP 108.00 <= trailing stop 108.00 (peak 120.00, trail 10 %)",
    ),
    row(
        "trailing-is-not-armed-one-tick-below-its-arm-gain",
        # 114.95 arms only the break-even stop (101.00): 103.45 is above it.
        [s(1, "114.95"), s(2, "103.45"), s(3, "101.05")],
        None,
        config=NO_GIVEBACK,
    ),
    row(
        "trailing-stop-rounds-to-the-paisa",
        # 117.35 x 0.9 = 105.615 -> 105.62
        [s(1, "117.35"), s(2, "105.65"), s(3, "105.60")],
        ExitType.TRAILING_STOP,
        "LTP 105.60 <= trailing stop 105.62 (peak 117.35, trail 10 %)",
    ),
    row(
        "a-tier-tightens-the-trail",
        # peak 130 = +30 %: tier 1 trails 8 %: 130 x 0.92 = 119.60
        [s(1, "120.00"), s(2, "130.00"), s(3, "119.65"), s(4, "119.60")],
        ExitType.TRAILING_STOP,
        "LTP 119.60 <= trailing stop 119.60 (peak 130.00, trail 8 %, tier 1)",
        config=exits(trailing__tiers=TIERS),
    ),
    row(
        "one-tick-below-a-tier-trails-at-the-base",
        # peak 129.95: base trail 10 % -> 116.96; 119.60 holds
        [s(1, "129.95"), s(2, "119.60"), s(3, "116.96")],
        ExitType.TRAILING_STOP,
        "LTP 116.96 <= trailing stop 116.96 (peak 129.95, trail 10 %)",
        config=exits(trailing__tiers=TIERS),
    ),
    row(
        "the-second-tier",
        # peak 160 = +60 %: 6 % -> 150.40
        [s(1, "160.00"), s(2, "150.45"), s(3, "150.40")],
        ExitType.TRAILING_STOP,
        "LTP 150.40 <= trailing stop 150.40 (peak 160.00, trail 6 %, tier 2)",
        config=exits(trailing__tiers=TIERS, take_profit__tp_pct=1.0),
    ),
]


@pytest.mark.parametrize(("steps", "exit_type", "reason", "config", "facts"), STOP_CASES)
def test_the_protective_stop(steps, exit_type, reason, config, facts):
    check_row(steps, exit_type, reason, config, facts)


def test_an_exit_at_the_stop_names_the_component_that_set_it_and_records_its_inputs():
    plan = make_plan()
    results = run(plan, [s(1, "120.00"), s(2, "107.95")])
    decision = results[-1].decision
    assert decision is not None and decision.exit_type is ExitType.TRAILING_STOP
    assert decision.trigger_price == D("107.95")
    assert decision.tick_at == decision.decided_at == T0 + timedelta(seconds=2)
    assert dict(decision.inputs) == {
        "ltp": "107.95",
        "stop": "108.00",
        "stop_rule": "trailing",
        "entry": "100.00",
        "peak": "120.00",
        "trail_pct": "0.1",
        "tier": None,
    }
    json.dumps(dict(decision.inputs))  # JSON-ready, as the engine stores it
    with pytest.raises(TypeError):
        decision.inputs["stop"] = "1"  # type: ignore[index]
    assert STOP_EXIT_TYPES == {
        StopComponent.INITIAL: ExitType.STOP_LOSS,
        StopComponent.BREAKEVEN: ExitType.BREAKEVEN_STOP,
        StopComponent.TRAILING: ExitType.TRAILING_STOP,
    }


# -- 6 TAKE_PROFIT ------------------------------------------------------------------------------

NO_DEFER = exits(take_profit__defer_when_trailing=False)
TP_CASES = [
    row(
        "take-profit-fires-at-entry-plus-40-percent",
        [s(1, "120.00"), s(2, "130.00"), s(3, "139.95"), s(4, "140.00")],
        ExitType.TAKE_PROFIT,
        "LTP 140.00 >= take profit 140.00 (entry 100.00 + 40 %)",
        config=NO_DEFER,
    ),
    row(
        "take-profit-fires-on-a-gap-above-it",
        [s(1, "139.95"), s(2, "151.20")],
        ExitType.TAKE_PROFIT,
        config=NO_DEFER,
    ),
    row(
        "deferred-while-the-trailing-stop-is-armed",
        [s(1, "120.00"), s(2, "140.00"), s(3, "150.00")],
        None,
        config=exits(take_profit__defer_when_trailing=True),
    ),
    row(
        "defer-has-no-effect-when-trailing-is-not-armed-yet",
        # arm at +50 %: at 140 (+40 %) the trailing stop is not armed, so no deferral
        [s(1, "139.95"), s(2, "140.00")],
        ExitType.TAKE_PROFIT,
        config=exits(take_profit__defer_when_trailing=True, trailing__arm_gain_pct=0.5),
    ),
    row(
        "defer-has-no-effect-when-trailing-is-disabled",
        [s(1, "139.95"), s(2, "140.00")],
        ExitType.TAKE_PROFIT,
        config=exits(take_profit__defer_when_trailing=True, trailing__enabled=False),
    ),
]


@pytest.mark.parametrize(("steps", "exit_type", "reason", "config", "facts"), TP_CASES)
def test_the_take_profit(steps, exit_type, reason, config, facts):
    check_row(steps, exit_type, reason, config, facts)


# -- 7 DANGER_ZONE ------------------------------------------------------------------------------

BEARISH = {"direction": Direction.BEARISH}
DANGER_CASES = [
    row(
        "in-loss-for-more-than-120-s-fires",
        # in loss (<= 94.00) from 1 s on: 120 s at 121 s holds, 121 s at 122 s fires
        held("94.00", 1, 122),
        ExitType.DANGER_ZONE,
        "LTP 94.00 (-6.00 %) has been 6 % or more below entry 100.00 (at or below 94.00) for "
        "121 s, longer than 120 s",
    ),
    row(
        "one-tick-above-the-loss-level-never-counts",
        held("94.05", 1, 170),
        None,
    ),
    row(
        "leaving-the-loss-resets-the-count",
        [*held("93.50", 1, 100), s(101, "94.05"), *held("93.50", 102, 222), s(223, "93.50")],
        ExitType.DANGER_ZONE,
        "LTP 93.50 (-6.50 %) has been 6 % or more below entry 100.00 (at or below 94.00) for "
        "121 s, longer than 120 s",
        config=exits(premium_stall__enabled=False),
    ),
    row(
        "sparse-ticks-count-the-time-between-evaluations-in-loss",
        [s(1, "95.00"), s(10, "93.00"), s(130, "92.00"), s(131, "92.50")],
        ExitType.DANGER_ZONE,
    ),
    row(
        "bullish-underlying-down-0-4-percent-fires",
        [
            s(1, "100.00", "23950"),
            s(2, "100.00", "23904.01"),
            s(3, "100.00", "23904.00"),
        ],
        ExitType.DANGER_ZONE,
        "the underlying moved -0.40 % since entry (24,000.00 -> 23,904.00), against the "
        "bullish trade by 0.4 % or more (limit 23,904.00)",
    ),
    row(
        "bullish-underlying-up-is-no-danger",
        [s(1, "100.00", "24500")],
        None,
    ),
    row(
        "bearish-underlying-up-0-4-percent-fires",
        [s(1, "100.00", "24095.99"), s(2, "100.00", "24096.00")],
        ExitType.DANGER_ZONE,
        "the underlying moved +0.40 % since entry (24,000.00 -> 24,096.00), against the "
        "bearish trade by 0.4 % or more (limit 24,096.00)",
        **BEARISH,
    ),
    row(
        "bearish-underlying-down-is-no-danger",
        [s(1, "100.00", "23000")],
        None,
        **BEARISH,
    ),
    row(
        "the-underlying-leg-needs-no-option-tick",
        [s(1, None, "23904.05"), s(2, None, "23900")],
        ExitType.DANGER_ZONE,
    ),
    row(
        "no-underlying-at-entry-turns-the-underlying-leg-off",
        [s(1, "100.00", "20000")],
        None,
        underlying_entry=None,
    ),
]


@pytest.mark.parametrize(("steps", "exit_type", "reason", "config", "facts"), DANGER_CASES)
def test_the_danger_zone(steps, exit_type, reason, config, facts):
    check_row(steps, exit_type, reason, config, facts)


def test_time_in_loss_accumulates_between_evaluations_in_loss_and_resets_out_of_it():
    plan = make_plan()
    steps = [s(1, "93.00"), s(4, "93.00"), s(4.5, "92.00"), s(3, "92.00"), s(9, "96.00")]
    states = [result.state for result in run(plan, steps)]
    assert [state.seconds_in_loss for state in states] == [0.0, 3.0, 3.5, 3.5, 0.0]
    assert [state.in_loss_at for state in states] == [
        T0 + timedelta(seconds=1),
        T0 + timedelta(seconds=4),
        T0 + timedelta(seconds=4.5),
        T0 + timedelta(seconds=4.5),  # an earlier moment (out of order) adds nothing
        None,
    ]


# -- 8 PEAK_GIVEBACK ----------------------------------------------------------------------------

# The break-even stop (armed at +8 %, 101.00) would close these first: it is switched off.
GIVEBACK = exits(breakeven__enabled=False)
GIVEBACK_CASES = [
    row(
        "gain-given-back-to-minus-2-percent-fires",
        [s(1, "105.00"), s(2, "110.00"), s(3, "100.00"), s(4, "98.05"), s(5, "98.00")],
        ExitType.PEAK_GIVEBACK,
        "peak 110.00 (+10.00 %, at least 10 %) given back to LTP 98.00 (-2.00 %), at or below "
        "98.00 (-2 % on entry 100.00)",
        config=GIVEBACK,
    ),
    row(
        "a-peak-one-tick-short-of-10-percent-is-not-armed",
        [s(1, "109.95"), s(2, "98.00"), s(3, "96.00")],
        None,
        config=GIVEBACK,
    ),
]


@pytest.mark.parametrize(("steps", "exit_type", "reason", "config", "facts"), GIVEBACK_CASES)
def test_the_peak_giveback(steps, exit_type, reason, config, facts):
    check_row(steps, exit_type, reason, config, facts)


# -- 9 PREMIUM_STALL ----------------------------------------------------------------------------

STALL_CASES = [
    row(
        "losing-and-no-new-high-for-3-minutes-since-entry-fires",
        [s(1, "99.00"), s(179, "99.00"), s(180, "99.00")],
        ExitType.PREMIUM_STALL,
        "LTP 99.00 below entry 100.00 and no new premium high for 180 s since 10:00:00 "
        "(limit 3 min)",
    ),
    row(
        "a-new-high-restarts-the-stall-clock",
        [s(1, "99.00"), s(100, "100.50"), s(150, "99.50"), s(279, "99.50"), s(280, "99.45")],
        ExitType.PREMIUM_STALL,
        "LTP 99.45 below entry 100.00 and no new premium high for 180 s since 10:01:40 "
        "(limit 3 min)",
    ),
    row(
        "at-the-entry-price-is-not-losing",
        [s(1, "99.00"), s(180, "100.00"), s(300, "100.00")],
        None,
    ),
]


@pytest.mark.parametrize(("steps", "exit_type", "reason", "config", "facts"), STALL_CASES)
def test_the_premium_stall(steps, exit_type, reason, config, facts):
    check_row(steps, exit_type, reason, config, facts)


# -- 10 TIME_STOP -------------------------------------------------------------------------------

TIME_STOP = exits(time_stop__enabled=True, time_stop__max_hold_minutes=60)
TIME_STOP_CASES = [
    row(
        "held-longer-than-60-minutes-fires",
        [s(3600, "100.00"), s(3601, "100.00")],
        ExitType.TIME_STOP,
        "held 3601 s since 10:00:00, longer than 60 min",
        config=TIME_STOP,
    ),
    row(
        "fires-without-a-tick",
        [s(3600, None), s(3600.5, None)],
        ExitType.TIME_STOP,
        config=TIME_STOP,
    ),
    row("off-by-default", [s(3 * 3600, "100.00")], None),
]


@pytest.mark.parametrize(("steps", "exit_type", "reason", "config", "facts"), TIME_STOP_CASES)
def test_the_time_stop(steps, exit_type, reason, config, facts):
    check_row(steps, exit_type, reason, config, facts)


# -- first match wins ---------------------------------------------------------------------------


# Each row: one step that satisfies two rules; the earlier wins. With the earlier switched off
# (``without``, on top of ``base``) the later one fires on the same step, which proves it was
# satisfied too.
def order(
    name: str,
    steps: list[Step],
    first: ExitType,
    second: ExitType,
    without: dict[str, Any],
    base: dict[str, Any] | None = None,
    expiry: date = EXPIRY,
) -> Any:
    return pytest.param(steps, first, second, base or {}, without, expiry, id=name)


ORDER_CASES = [
    order(
        "kill-switch-before-the-stop",
        [s(1, "80.00", risk=KILL)],
        ExitType.KILL_SWITCH,
        ExitType.STOP_LOSS,
        {"kill_switch__enabled": False},
    ),
    order(
        "kill-switch-before-the-daily-loss-limit",
        [s(1, "100.00", risk=dataclasses.replace(AT_LIMIT, kill_switch=True))],
        ExitType.KILL_SWITCH,
        ExitType.DAILY_LOSS_LIMIT,
        {"kill_switch__enabled": False},
    ),
    order(
        "daily-loss-limit-before-the-time-exit",
        [s("15:15:00", "100.00", risk=AT_LIMIT)],
        ExitType.DAILY_LOSS_LIMIT,
        ExitType.TIME_EXIT,
        {"daily_loss_limit__enabled": False},
    ),
    order(
        "expiry-day-before-the-time-exit",
        [s("15:15:00", "100.00")],
        ExitType.EXPIRY_DAY,
        ExitType.TIME_EXIT,
        {"expiry_day__enabled": False},
        expiry=TODAY,
    ),
    order(
        "time-exit-before-the-stop",
        [s("15:15:00", "87.95")],
        ExitType.TIME_EXIT,
        ExitType.STOP_LOSS,
        {"time_exit__enabled": False},
    ),
    order(
        "the-stop-before-the-danger-zone",
        [s(1, "88.00", "23000")],
        ExitType.STOP_LOSS,
        ExitType.DANGER_ZONE,
        {"stop_loss__enabled": False},
    ),
    order(
        "take-profit-before-the-danger-zone",
        [s(1, "140.00", "23904.00")],
        ExitType.TAKE_PROFIT,
        ExitType.DANGER_ZONE,
        {"take_profit__enabled": False},
        base={"take_profit__defer_when_trailing": False},
    ),
    order(
        "danger-zone-before-the-peak-giveback",
        [s(1, "110.00"), s(2, "98.00", "23904.00")],
        ExitType.DANGER_ZONE,
        ExitType.PEAK_GIVEBACK,
        {"danger_zone__enabled": False},
        base={"breakeven__enabled": False},
    ),
    order(
        "peak-giveback-before-the-premium-stall",
        [s(1, "110.00"), s(185, "98.00")],
        ExitType.PEAK_GIVEBACK,
        ExitType.PREMIUM_STALL,
        {"peak_giveback__enabled": False},
        base={"breakeven__enabled": False},
    ),
    order(
        "premium-stall-before-the-time-stop",
        [s(3601, "99.00")],
        ExitType.PREMIUM_STALL,
        ExitType.TIME_STOP,
        {"premium_stall__enabled": False},
        base={"time_stop__enabled": True},
    ),
]


@pytest.mark.parametrize(("steps", "first", "second", "base", "without", "expiry"), ORDER_CASES)
def test_the_first_rule_in_order_wins(steps, first, second, base, without, expiry):
    both = run(make_plan(exits(**base), expiry=expiry), steps)
    assert [(i, r.decision.exit_type) for i, r in enumerate(both) if r.decision] == [
        (len(steps) - 1, first)
    ]
    alone = run(make_plan(exits(**{**base, **without}), expiry=expiry), steps)
    assert [(i, r.decision.exit_type) for i, r in enumerate(alone) if r.decision] == [
        (len(steps) - 1, second)
    ]


def test_the_stop_before_the_take_profit():
    # Only a stop above the take profit meets it on one tick: here a trailing stop of 135.00
    # kept from an earlier config (trailing since switched off, take profit lowered to 135).
    plan = make_plan(exits(trailing__enabled=False, take_profit__tp_pct=0.35))
    saved = {**RESTORE, "peak": D("150"), "stop": D("135.00"), "stop_rule": "trailing"}
    tick = Tick(D("135.00"), T0 + timedelta(seconds=5))
    at_stop = evaluate(plan, plan.restore_state(**saved), tick, None, tick.at, CALM)
    assert at_stop.decision is not None and at_stop.decision.exit_type is ExitType.TRAILING_STOP
    lower = {**saved, "stop": D("120.00")}
    above = evaluate(plan, plan.restore_state(**lower), tick, None, tick.at, CALM)
    assert above.decision is not None and above.decision.exit_type is ExitType.TAKE_PROFIT


# -- every rule can be switched off -------------------------------------------------------------

# Each row: a path on which the rule fires (its table's first row) and the override that turns
# it off; off, nothing on the path fires.
DISABLED_CASES = [
    pytest.param("kill_switch", [s(1, "100.00", risk=KILL)], {}, id="kill_switch"),
    pytest.param("daily_loss_limit", [s(1, "100.00", risk=AT_LIMIT)], {}, id="daily_loss_limit"),
    pytest.param(
        "expiry_day", [s("15:10:00", "100.00"), s("15:14:59", "100.00")], {}, id="expiry_day"
    ),
    pytest.param("time_exit", [s("15:15:00", "100.00"), s("15:29:59", "100.00")], {}, id="time"),
    pytest.param("stop_loss", [s(1, "95.00"), s(2, "88.00"), s(3, "60.00")], {}, id="stop_loss"),
    pytest.param(
        "breakeven",
        [s(1, "108.00"), s(2, "101.00"), s(3, "99.00")],
        {},
        id="breakeven",
    ),
    pytest.param(
        "trailing",
        [s(1, "120.00"), s(2, "108.00"), s(3, "101.05")],
        {},
        id="trailing",
    ),
    pytest.param(
        "take_profit",
        [s(1, "140.00"), s(2, "180.00")],
        {"take_profit__defer_when_trailing": False},
        id="take_profit",
    ),
    pytest.param(
        "danger_zone",
        [*held("94.00", 1, 130), s(131, "100.00", "23000")],
        {"premium_stall__enabled": False},
        id="danger_zone",
    ),
    pytest.param(
        "peak_giveback",
        [s(1, "110.00"), s(2, "98.00"), s(3, "89.00")],
        {"breakeven__enabled": False},
        id="peak_giveback",
    ),
    pytest.param("premium_stall", [s(1, "99.00"), s(400, "99.00")], {}, id="premium_stall"),
    pytest.param(
        "time_stop",
        [s(3601, "100.00")],
        {"time_stop__max_hold_minutes": 60},
        id="time_stop",
    ),
]


@pytest.mark.parametrize(("rule", "steps", "base"), DISABLED_CASES)
def test_a_disabled_rule_never_fires(rule, steps, base):
    expiry = TODAY if rule == "expiry_day" else EXPIRY
    on = run(make_plan(exits(**{**base, f"{rule}__enabled": True}), expiry=expiry), steps)
    assert first_decision(on) is not None, f"{rule} did not fire while enabled"
    off = run(make_plan(exits(**{**base, f"{rule}__enabled": False}), expiry=expiry), steps)
    assert first_decision(off) is None, first_decision(off)


# -- how the protective stop is composed --------------------------------------------------------


def stops(plan: ExitPlan, *prices: str) -> list[tuple[Decimal | None, str]]:
    """(stop, stop_rule) after each price, one a second."""
    results = run(plan, [s(i + 1, price) for i, price in enumerate(prices)])
    return [(r.state.stop, r.state.stop_rule) for r in results]


def test_the_stop_starts_at_the_initial_stop_and_steps_up_through_break_even_and_trailing():
    plan = make_plan(exits(trailing__tiers=TIERS, take_profit__enabled=False))
    assert (plan.open_state().stop, plan.open_state().stop_rule) == (D("88.00"), "initial")
    assert stops(plan, "107.95", "108.00", "114.95", "115.00", "129.95", "130.00", "160.00") == [
        (D("88.00"), "initial"),
        (D("101.00"), "breakeven"),
        (D("101.00"), "breakeven"),
        (D("103.50"), "trailing"),
        (D("116.96"), "trailing"),
        (D("119.60"), "trailing:1"),
        (D("150.40"), "trailing:2"),
    ]


def test_with_the_stop_loss_off_there_is_no_stop_until_break_even_arms():
    plan = make_plan(exits(stop_loss__enabled=False))
    assert plan.open_state().stop is None and plan.open_state().stop_rule == ""
    assert stops(plan, "90.00", "108.00", "116.00") == [
        (None, ""),
        (D("101.00"), "breakeven"),
        (D("104.40"), "trailing"),
    ]


def test_with_only_trailing_on_the_stop_waits_for_the_trailing_arm():
    plan = make_plan(exits(stop_loss__enabled=False, breakeven__enabled=False))
    assert stops(plan, "110.00", "115.00") == [(None, ""), (D("103.50"), "trailing")]


def test_with_trailing_off_the_stop_stays_at_break_even():
    plan = make_plan(exits(trailing__enabled=False, take_profit__enabled=False))
    assert stops(plan, "108.00", "200.00") == [
        (D("101.00"), "breakeven"),
        (D("101.00"), "breakeven"),
    ]


def test_with_every_component_off_no_stop_ever_fires():
    config = exits(
        stop_loss__enabled=False,
        breakeven__enabled=False,
        trailing__enabled=False,
        danger_zone__enabled=False,
        premium_stall__enabled=False,
        peak_giveback__enabled=False,
    )
    results = run(make_plan(config), [s(1, "130.00"), s(2, "20.00"), s(3, "0.05")])
    assert first_decision(results) is None
    assert all(r.state.stop is None for r in results)


def test_break_even_is_not_armed_while_the_peak_is_below_entry_plus_charges():
    # charges of 9.00 a unit: the break-even stop 109.00 is above the arming peak (108.00); a
    # stop above every price seen would sell at once, at a loss.
    plan = make_plan(charges_per_unit=D("9.00"))
    assert stops(plan, "108.00", "109.00", "109.05") == [
        (D("88.00"), "initial"),
        (D("88.00"), "initial"),
        (D("109.00"), "breakeven"),
    ]


def test_on_a_tie_on_one_tick_the_trailing_stop_takes_the_level():
    # 115.00 arms both: trailing 103.50 and break-even 100.00 + 3.50 = 103.50
    plan = make_plan(charges_per_unit=D("3.50"))
    assert stops(plan, "115.00") == [(D("103.50"), "trailing")]


def test_a_lower_candidate_never_replaces_the_stop_and_the_setter_is_kept():
    # Break-even at 101.00 set first; trailing at 115.00 x 0.9 = 103.50 replaces it; a later
    # peak of 112 (below the peak) changes nothing.
    plan = make_plan(charges_per_unit=D("1.00"))
    assert stops(plan, "108.00", "115.00", "112.00", "104.00") == [
        (D("101.00"), "breakeven"),
        (D("103.50"), "trailing"),
        (D("103.50"), "trailing"),
        (D("103.50"), "trailing"),
    ]


def test_a_rebuilt_plan_never_lowers_the_stop_and_a_disabled_component_keeps_its_level():
    state = run(make_plan(), [s(1, "120.00")])[-1].state
    assert (state.stop, state.stop_rule) == (D("108.00"), "trailing")
    # The operator turns trailing off and widens the stop loss: the level already set stays.
    plan = make_plan(exits(trailing__enabled=False, stop_loss__sl_pct=0.20))
    kept = run(plan, [s(2, "121.00"), s(3, "108.05")], state=state)
    assert [(r.state.stop, r.state.stop_rule, r.decision) for r in kept] == [
        (D("108.00"), "trailing", None),
        (D("108.00"), "trailing", None),
    ]
    last = run(plan, [s(4, "108.00")], state=kept[-1].state)[-1].decision
    assert last is not None and last.exit_type is ExitType.TRAILING_STOP
    assert last.reason == "LTP 108.00 <= trailing stop 108.00 (peak 121.00, trail 10 %)"


def test_a_looser_trail_after_a_config_change_never_pulls_a_tighter_stop_down():
    state = run(make_plan(exits(trailing__tiers=TIERS)), [s(1, "130.00")])[-1].state
    assert (state.stop, state.stop_rule) == (D("119.60"), "trailing:1")
    # Tiers removed: a new peak of 131.00 trails 10 %, 117.90, below the stop already set.
    plan = make_plan(exits(trailing__tiers=()))
    after = run(plan, [s(2, "131.00"), s(3, "119.65")], state=state)
    assert [(r.state.stop, r.state.stop_rule, r.decision) for r in after] == [
        (D("119.60"), "trailing:1", None),
        (D("119.60"), "trailing:1", None),
    ]
    fired = run(plan, [s(4, "119.60")], state=after[-1].state)[-1].decision
    assert fired is not None and fired.exit_type is ExitType.TRAILING_STOP
    # Tier 1 is gone from the config: the reason says so rather than guessing a trail.
    assert fired.reason == (
        "LTP 119.60 <= trailing stop 119.60 (peak 131.00, tier 1, a tier the config no longer has)"
    )
    assert fired.inputs["trail_pct"] is None and fired.inputs["tier"] == 1


def test_a_bearish_put_trails_its_premium_like_a_call():
    plan = make_plan(direction=Direction.BEARISH)
    results = run(plan, [s(1, "120.00", "23800"), s(2, "107.95", "23700")])
    assert results[-1].decision is not None
    assert results[-1].decision.exit_type is ExitType.TRAILING_STOP


# -- the state ----------------------------------------------------------------------------------


def test_the_open_state_and_a_tick_that_moves_nothing_returns_the_same_state_object():
    plan = make_plan()
    opened = plan.open_state()
    assert opened == ExitState(
        peak=D("100.00"),
        trough=D("100.00"),
        stop=D("88.00"),
        stop_component=StopComponent.INITIAL,
        stop_tier=None,
        seconds_in_loss=0.0,
        in_loss_at=None,
        high_at=T0,
    )
    after = run(plan, [s(1, "101.00"), s(2, "99.00")])[-1].state
    same = evaluate(plan, after, Tick(D("100.00"), T0), None, T0 + timedelta(seconds=3), CALM)
    assert same.decision is None and same.state is after


def test_peak_trough_and_the_time_of_the_last_new_high():
    plan = make_plan()
    states = [r.state for r in run(plan, [s(1, "101.00"), s(2, "99.00"), s(3, "101.00")])]
    assert [(x.peak, x.trough, x.high_at) for x in states] == [
        (D("101.00"), D("100.00"), T0 + timedelta(seconds=1)),
        (D("101.00"), D("99.00"), T0 + timedelta(seconds=1)),
        (D("101.00"), D("99.00"), T0 + timedelta(seconds=1)),  # equal is not a new high
    ]


def test_without_a_tick_the_state_is_unchanged_and_price_rules_do_not_run():
    plan = make_plan()
    state = run(plan, [s(1, "80.00")])[-1].state  # below the stop, fired on its tick
    result = evaluate(plan, state, None, None, T0 + timedelta(seconds=2), CALM)
    assert result == Evaluation(None, state)


def test_the_decision_of_a_sweep_records_the_last_tick_and_the_market_time():
    plan = make_plan(expiry=TODAY)
    tick = Tick(D("101.50"), datetime(2026, 11, 23, 15, 9, 58, tzinfo=IST))
    now = datetime(2026, 11, 23, 15, 10, 0, tzinfo=IST)
    decision = evaluate(plan, plan.open_state(), tick, None, now, CALM).decision
    assert decision is not None
    assert (decision.exit_type, decision.trigger_price, decision.tick_at, decision.decided_at) == (
        ExitType.EXPIRY_DAY,
        D("101.50"),
        tick.at,
        now,
    )
    assert dict(decision.inputs) == {
        "expiry": "2026-11-23",
        "exit_at": "15:10",
        "now": "2026-11-23T15:10:00+05:30",
    }


# -- a restart keeps the stop -------------------------------------------------------------------

PATH = [
    "104.00",
    "109.00",
    "113.00",
    "118.00",
    "124.00",
    "121.00",
    "126.50",
    "122.00",
    "119.00",
    "116.00",
    "113.85",
]


def persisted(state: ExitState) -> dict[str, Any]:
    """What the engine stores: DecimalField(decimal_places=4) columns, the stop_rule text."""
    four = Decimal("0.0001")
    return {
        "peak": state.peak.quantize(four),
        "trough": state.trough.quantize(four),
        "stop": None if state.stop is None else state.stop.quantize(four),
        "stop_rule": state.stop_rule,
        "seconds_in_loss": state.seconds_in_loss,
        "in_loss_at": state.in_loss_at,
        "high_at": state.high_at,
    }


def test_a_restart_with_the_persisted_state_keeps_the_trailing_stop_where_it_was():
    config = exits(trailing__tiers=TIERS)
    steps = [s(i + 1, price) for i, price in enumerate(PATH)]
    whole = run(make_plan(config), steps)
    cut = 7  # after the peak of 126.50 set a tier-less trailing stop of 113.85
    before = whole[cut - 1].state
    assert (before.stop, before.stop_rule) == (D("113.85"), "trailing")
    # A new process: the plan from the position row, the state from its columns.
    plan = make_plan(config)
    restored = plan.restore_state(**persisted(before))
    assert restored == before
    resumed = run(plan, steps[cut:], state=restored)
    assert [(r.decision, r.state) for r in resumed] == [(r.decision, r.state) for r in whole[cut:]]
    fired = first_decision(resumed)
    assert fired is not None and fired[1].exit_type is ExitType.TRAILING_STOP
    assert fired[1].reason == "LTP 113.85 <= trailing stop 113.85 (peak 126.50, trail 10 %)"
    # What peers do, for contrast: a fresh state falls back to the initial stop and holds.
    naive = run(plan, steps[cut:], state=plan.open_state())
    assert naive[-1].state.stop < before.stop and first_decision(naive) is None


def test_restoring_a_row_without_a_stop_gives_the_stop_the_config_gives_for_its_peak():
    plan = make_plan()
    state = plan.restore_state(
        peak=D("120.0000"),
        trough=D("97.0000"),
        stop=None,
        stop_rule="",
        seconds_in_loss=0.0,
        in_loss_at=None,
        high_at=T0 + timedelta(minutes=3),
    )
    assert (state.stop, state.stop_rule) == (D("108.00"), "trailing")


# -- the stop only moves up: properties over random price paths ---------------------------------

PRICES = st.integers(min_value=1, max_value=8000).map(lambda ticks: D(ticks) * D("0.05"))
CONFIGS = st.builds(
    lambda stop_loss, breakeven, trailing, tiers: exits(
        stop_loss__enabled=stop_loss,
        breakeven__enabled=breakeven,
        trailing__enabled=trailing,
        trailing__tiers=TIERS if tiers else (),
    ),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)


def paisa(value: Decimal) -> Decimal:
    return value.quantize(D("0.01"), ROUND_HALF_UP)


def expected_stop(plan: ExitPlan, peak: Decimal) -> tuple[Decimal | None, StopComponent | None]:
    """The highest armed candidate at ``peak``, written out from DOMAIN independently of the
    module (levels rounded to the paisa as its doc says); ties go to trailing, then break-even,
    then initial."""
    config, entry = plan.config, plan.entry_price

    def gain(fraction: float) -> Decimal:
        return paisa(entry * (1 + D(str(fraction))))

    candidates: list[tuple[Decimal, int, StopComponent]] = []
    if config.stop_loss.enabled:
        candidates.append((gain(-config.stop_loss.sl_pct), 0, StopComponent.INITIAL))
    breakeven = paisa(entry + plan.charges_per_unit)
    if config.breakeven.enabled and peak >= gain(config.breakeven.arm_gain_pct) > 0:
        if peak > breakeven:
            candidates.append((breakeven, 1, StopComponent.BREAKEVEN))
    trailing = config.trailing
    if trailing.enabled and peak >= gain(trailing.arm_gain_pct):
        trail = D(str(trailing.trail_pct))
        for tier in trailing.tiers:
            if peak >= gain(tier.peak_gain_pct):
                trail = D(str(tier.trail_pct))
        candidates.append((paisa(peak * (1 - trail)), 2, StopComponent.TRAILING))
    if not candidates:
        return None, None
    level, _, component = max(candidates)
    return level, component


@settings(max_examples=300, deadline=None)
@given(
    entry=st.integers(min_value=400, max_value=8000).map(lambda ticks: D(ticks) * D("0.05")),
    charges=st.integers(min_value=0, max_value=500).map(lambda paise: D(paise) / 100),
    config=CONFIGS,
    path=st.lists(st.tuples(st.integers(0, 20), PRICES), min_size=1, max_size=60),
    cut=st.integers(min_value=0, max_value=60),
)
def test_the_stop_never_moves_down_and_peak_and_trough_bound_every_ltp(
    entry, charges, config, path, cut
):
    plan = make_plan(config, entry_price=entry, charges_per_unit=charges)
    state = plan.open_state()
    now = T0
    seen = [entry]
    results = []
    for gap, price in path:
        now += timedelta(seconds=gap)
        before = state
        result = evaluate(plan, state, Tick(price, now), None, now, CALM)
        state = result.state
        results.append(result)
        seen.append(price)
        if before.stop is not None:
            assert state.stop is not None and state.stop >= before.stop
        assert state.peak == max(seen) and state.trough == min(seen)
        assert state.seconds_in_loss >= 0
        # The stop is the highest armed candidate at the peak (all are monotone in the peak).
        assert (state.stop, state.stop_component) == expected_stop(plan, state.peak)
        decision = result.decision
        if decision is not None and decision.exit_type in STOP_EXIT_TYPES.values():
            assert decision.exit_type is STOP_EXIT_TYPES[state.stop_component]
            assert price <= state.stop
    # A restart anywhere on the path continues exactly as the uninterrupted run.
    cut = min(cut, len(path))
    if cut:
        plan_again = make_plan(config, entry_price=entry, charges_per_unit=charges)
        saved = results[cut - 1].state
        restored = plan_again.restore_state(**persisted(saved))
        assert restored == saved
        now = T0 + timedelta(seconds=sum(gap for gap, _ in path[:cut]))
        again = []
        for gap, price in path[cut:]:
            now += timedelta(seconds=gap)
            result = evaluate(plan_again, restored, Tick(price, now), None, now, CALM)
            restored = result.state
            again.append(result)
        assert again == results[cut:]


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("facts", "message"),
    [
        ({"entry_price": D("0")}, "entry_price must be a positive Decimal"),
        ({"entry_price": 100.0}, "entry_price must be a positive Decimal"),
        ({"entry_price": D("NaN")}, "entry_price must be a positive Decimal"),
        ({"entry_price": D("100001")}, "entry_price 100001 is above 100000 rupees a unit"),
        ({"quantity": 0}, "quantity must be 1..1000000 units, got 0"),
        ({"quantity": 65.0}, "quantity must be an int (units)"),
        ({"quantity": True}, "quantity must be an int (units)"),
        ({"entry_at": datetime(2026, 11, 23, 10, 0)}, "entry_at must be an aware datetime"),
        ({"direction": "avoid"}, "direction must be bullish or bearish, got 'avoid'"),
        ({"expiry": T0}, "expiry must be a date"),
        ({"underlying_entry": D("-1")}, "underlying_entry must be a positive Decimal"),
        ({"charges_per_unit": D("-0.01")}, "charges_per_unit must be a non-negative Decimal"),
        ({"charges_per_unit": 1.5}, "charges_per_unit must be a non-negative Decimal"),
        ({"config": make_config()}, "config must be an ExitsConfig, got AlgoConfig"),
    ],
)
def test_a_bad_position_fact_is_refused_by_name(facts, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_plan(**facts)


def test_a_plan_takes_a_direction_read_back_from_the_database():
    plan = make_plan(direction="bearish")
    assert plan.direction is Direction.BEARISH and plan.underlying_limit == D("24096.000")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Tick(D("0"), T0), "tick ltp must be a positive Decimal"),
        (lambda: Tick(88.05, T0), "tick ltp must be a positive Decimal"),
        (lambda: Tick(D("88.05"), datetime(2026, 11, 23)), "tick at must be an aware datetime"),
        (lambda: DayRisk(1, D(0), None), "kill_switch must be a bool"),
        (lambda: DayRisk(False, -100, None), "day_pnl must be a finite Decimal"),
        (lambda: DayRisk(False, D(0), D(0)), "loss_limit must be a positive Decimal or None"),
    ],
)
def test_bad_moment_values_are_refused_by_name(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_naive_market_time_and_a_bad_underlying_are_refused():
    plan = make_plan()
    with pytest.raises(ValueError, match="market time must be an aware datetime"):
        evaluate(plan, plan.open_state(), None, None, datetime(2026, 11, 23, 10, 0), CALM)
    with pytest.raises(ValueError, match="underlying must be a positive index level"):
        evaluate(plan, plan.open_state(), None, D("-5"), T0, CALM)


RESTORE = {
    "peak": D("120"),
    "trough": D("95"),
    "stop": D("108"),
    "stop_rule": "trailing",
    "seconds_in_loss": 0.0,
    "in_loss_at": None,
    "high_at": T0,
}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"peak": D("99")}, r"trough 95 <= entry 100.00 <= peak 99 does not hold"),
        ({"trough": None}, "trough must be a positive Decimal"),
        ({"stop": None}, "stop_rule 'trailing' names a component but stop is None"),
        ({"stop_rule": ""}, "stop 108 has no stop_rule naming its component"),
        ({"stop_rule": "stoploss"}, "stop_rule 'stoploss': unknown component"),
        ({"stop_rule": "initial:1"}, "stop_rule 'initial:1': only a trailing stop has a tier"),
        ({"stop_rule": "trailing:0"}, "stop_rule 'trailing:0': only a trailing stop has a tier"),
        ({"seconds_in_loss": -1.0}, "seconds_in_loss must be 0..604800"),
        ({"seconds_in_loss": float("nan")}, "seconds_in_loss must be 0..604800"),
        ({"seconds_in_loss": 12.0}, "seconds_in_loss is above 0 but in_loss_at is None"),
        ({"high_at": datetime(2026, 11, 23, 10, 0)}, "high_at must be an aware datetime"),
    ],
)
def test_a_bad_persisted_state_is_refused_by_name(changes, message):
    with pytest.raises(ValueError, match=message):
        make_plan().restore_state(**{**RESTORE, **changes})


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("", (None, None)),
        ("initial", (StopComponent.INITIAL, None)),
        ("breakeven", (StopComponent.BREAKEVEN, None)),
        ("trailing", (StopComponent.TRAILING, None)),
        ("trailing:2", (StopComponent.TRAILING, 2)),
    ],
)
def test_the_stop_rule_text_round_trips(text, parsed):
    assert parse_stop_rule(text) == parsed
    component, tier = parsed
    state = make_plan().open_state()._replace(stop_component=component, stop_tier=tier)
    assert state.stop_rule == text
