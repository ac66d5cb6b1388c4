"""trading.rules.exits.quiet_band: a tick inside a position's quiet band is one that
``evaluate`` holds without changing the state, so the exit engine may skip the call. Checked
against ``evaluate`` itself on random configs, price paths (the feed's float32 prices), and
probes at and around every bound; plus the band's edges on scripted cases, and ``meet``."""

from __future__ import annotations

import math
import struct
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.trading.rules.factories import make_config
from trading.config.types import ExitsConfig, TrailTier
from trading.rules.exits import DayRisk, ExitPlan, QuietBand, Tick, evaluate, quiet_band
from trading.rules.vocab import Direction, ExitType

IST = ZoneInfo("Asia/Kolkata")
D = Decimal
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=IST)
QUIET = DayRisk(kill_switch=False, day_pnl=D("0"), loss_limit=None)


def exits(**overrides: Any) -> ExitsConfig:
    return make_config(**{f"exits__{key}": value for key, value in overrides.items()}).exits


ENTRY, CHARGES = D("100.00"), D("1.00")


def plan_of(config: ExitsConfig, entry: Decimal = ENTRY, charges: Decimal = CHARGES):
    return ExitPlan.build(
        entry_price=entry,
        quantity=65,
        entry_at=T0,
        direction=Direction.BULLISH,
        expiry=date(2026, 11, 26),
        underlying_entry=D("24000"),
        charges_per_unit=charges,
        config=config,
    )


def f32(value: float) -> float:
    """A price as the feed carries it: a float32 widened to float (152.3 -> 152.300003...)."""
    return struct.unpack("<f", struct.pack("<f", value))[0]


def tick(ltp: float, at: datetime) -> Tick:
    return Tick(D(repr(ltp)), at)


CONFIGS = st.builds(
    lambda sl, be, tr, tiers, tp, defer, gb, stall, danger, tstop, texit: exits(
        stop_loss__enabled=sl,
        breakeven__enabled=be,
        trailing__enabled=tr,
        trailing__tiers=(TrailTier(peak_gain_pct=0.30, trail_pct=0.08),) if tiers else (),
        take_profit__enabled=tp,
        take_profit__defer_when_trailing=defer,
        peak_giveback__enabled=gb,
        premium_stall__enabled=stall,
        premium_stall__minutes=2,
        danger_zone__enabled=danger,
        danger_zone__loss_seconds=30,
        time_stop__enabled=tstop,
        time_stop__max_hold_minutes=20,
        time_exit__enabled=texit,
    ),
    *([st.booleans()] * 11),
)
# Moves from the entry in ticks of 0.05 (-20.00 to +50.00), as float32 prices or plain floats.
MOVES = st.tuples(st.integers(min_value=-400, max_value=1000), st.booleans())


def price_at(entry: Decimal, move: tuple[int, bool]) -> float:
    ticks, narrow = move
    price = float(entry) + ticks * 0.05
    return f32(price) if narrow else price


@settings(max_examples=500, deadline=None)
@given(
    entry=st.integers(min_value=1600, max_value=2400).map(lambda ticks: D(ticks) * D("0.05")),
    charges=st.integers(min_value=0, max_value=300).map(lambda paise: D(paise) / 100),
    config=CONFIGS,
    later=st.one_of(st.none(), CONFIGS),
    path=st.lists(st.tuples(st.integers(0, 90), MOVES), min_size=0, max_size=40),
    probes=st.lists(st.tuples(st.integers(0, 4000), MOVES), min_size=0, max_size=20),
)
def test_a_tick_inside_the_band_holds_and_leaves_the_state_as_it_was(
    entry, charges, config, later, path, probes
):
    plan = plan_of(config, entry, charges)
    state = plan.open_state()
    now = T0
    for gap, move in path:
        now += timedelta(seconds=gap)
        result = evaluate(plan, state, tick(price_at(entry, move), now), None, now, QUIET)
        if result.decision is not None:
            break
        state = result.state
    if later is not None:
        # The config changed: the engine rebuilds the plan and carries the state over.
        plan = plan_of(later, entry, charges)
        state = plan.restore_state(
            peak=state.peak,
            trough=state.trough,
            stop=state.stop,
            stop_rule=state.stop_rule,
            seconds_in_loss=state.seconds_in_loss,
            in_loss_at=state.in_loss_at,
            high_at=state.high_at,
        )
    band = quiet_band(plan, state, now)
    if band is None:
        assert state.in_loss_at is not None
        return
    # Every bound the band was built from, the float at it and the floats either side.
    edges = [band.low, band.high, float(state.peak), float(state.trough), float(plan.entry_price)]
    for level in (state.stop, plan.take_profit, plan.giveback_level, plan.loss_level):
        if level is not None:
            edges.append(float(level))
    points = [(0, price) for price in edges]
    points += [(0, math.nextafter(price, math.inf)) for price in edges]
    points += [(0, math.nextafter(price, -math.inf)) for price in edges]
    points += [(seconds, price_at(entry, move)) for seconds, move in probes]
    moments = [0, 1, 119, 120, 121, 1199, 1200, 1201]
    if band.until is not None:
        moments.append((band.until - now).total_seconds())
        moments.append((band.until - now).total_seconds() - 0.000001)
    inside = 0
    for seconds, price in points + [(m, band.low) for m in moments]:
        if not 0 < price <= 100_000:
            continue
        at = now + timedelta(seconds=seconds)
        if band.holds(price, at):
            inside += 1
            result = evaluate(plan, state, tick(price, at), None, at, QUIET)
            assert result.decision is None, (price, at, band, result.decision)
            assert result.state is state, (price, at, band)
    # Not vacuous: the peak's and the trough's own prices (floats from ticks) are inside it
    # unless a rule sits right on them.
    assert inside or band.low >= band.high or not band.holds(float(state.peak), now)


def test_a_position_in_profit_is_quiet_between_its_trough_and_peak_inclusive():
    plan = plan_of(exits(time_stop__enabled=False, premium_stall__enabled=False))
    state = plan.open_state()
    for price in (f32(101.35), f32(99.05), f32(103.6)):
        state = evaluate(plan, state, tick(price, T0), None, T0, QUIET).state
    band = quiet_band(plan, state, T0)
    assert band is not None
    # The float32 prices it saw are exact bounds: the very prices of the peak and the trough.
    assert band.holds(f32(103.6), T0) and band.holds(f32(99.05), T0)
    assert band.holds(f32(101.35), T0 + timedelta(hours=1))
    assert not band.holds(math.nextafter(f32(103.6), math.inf), T0)  # a new peak moves it
    assert not band.holds(math.nextafter(f32(99.05), -math.inf), T0)  # a new trough
    # The time exit of 15:15 ends it.
    assert band.until == datetime(2026, 11, 23, 15, 15, tzinfo=IST)
    assert not band.holds(f32(101.35), band.until)


def test_the_band_ends_where_each_rule_would_fire():
    # The stop: 88.00 set by the initial component, exclusive (LTP <= stop fires). The
    # danger zone's loss level (in loss at or below it: the state moves) is put out of the way.
    plan = plan_of(
        exits(
            danger_zone__loss_pct=0.5,
            premium_stall__enabled=False,
            take_profit__defer_when_trailing=False,
        )
    )
    state = plan.open_state()._replace(trough=D("80.00"), peak=D("105.00"))
    assert state.stop == D("88.00")
    band = quiet_band(plan, state, T0)
    assert band is not None and band.low == 88.0 and not band.low_inclusive
    assert not band.holds(88.0, T0) and band.holds(88.05, T0)
    assert evaluate(plan, state, tick(88.0, T0), None, T0, QUIET).decision.exit_type is (
        ExitType.STOP_LOSS
    )
    # The peak giveback: once the peak reached +10 %, at or below -2 % (98.00) fires.
    state = state._replace(peak=D("112.00"))
    band = quiet_band(plan, state, T0)
    assert band.low == 98.0 and not band.low_inclusive and band.holds(98.05, T0)
    assert evaluate(plan, state, tick(98.0, T0), None, T0, QUIET).decision.exit_type is (
        ExitType.PEAK_GIVEBACK
    )
    # Take profit at 140.00 (exclusive: LTP >= 140 fires), once the peak is above it.
    state = state._replace(peak=D("150"), stop=D("88.00"))
    band = quiet_band(plan, state, T0)
    assert band.high == 140.0 and not band.high_inclusive and not band.holds(140.0, T0)
    assert band.holds(139.95, T0)
    # The premium stall: below the entry, from 2 minutes after the last high on.
    plan = plan_of(exits(premium_stall__minutes=2, danger_zone__enabled=False))
    state = plan.open_state()
    state = evaluate(plan, state, tick(97.5, T0), None, T0, QUIET).state
    band = quiet_band(plan, state, T0)
    assert band.until == T0 + timedelta(minutes=2)
    assert evaluate(
        plan, state, tick(98.0, band.until), None, band.until, QUIET
    ).decision.exit_type is (ExitType.PREMIUM_STALL)
    late = quiet_band(plan, state, T0 + timedelta(minutes=3))
    assert late.low == 100.0 and late.low_inclusive and late.until != band.until
    # In loss (at or below the danger zone's 6 %): no band, the time in loss accumulates.
    state = evaluate(plan, plan.open_state(), tick(94.0, T0), None, T0, QUIET).state
    assert state.in_loss_at is not None and quiet_band(plan, state, T0) is None


def test_a_bound_the_float_cannot_vouch_for_is_exclusive():
    # 100.1 is not a float: float(100.1) is a little above it, and Decimal(repr(float(100.1)))
    # reads back as 100.1 exactly, so the inclusive peak stays inclusive; a bound at a
    # Decimal with more digits than a float keeps cannot be inclusive.
    plan = plan_of(exits(danger_zone__enabled=False, premium_stall__enabled=False))
    state = plan.open_state()._replace(peak=D("100.1"))
    assert quiet_band(plan, state, T0).high_inclusive
    state = plan.open_state()._replace(peak=D("100.10000000000000000001"))
    band = quiet_band(plan, state, T0)
    assert band.high == 100.1 and band.high_inclusive  # the float reads back below the peak
    state = plan.open_state()._replace(peak=D("100.09999999999999999999"))
    band = quiet_band(plan, state, T0)
    assert band.high == 100.1 and not band.high_inclusive  # reads back above it
    # The same on the low side: a trough the float 99.9 reads back below is not inclusive,
    # and rightly: a tick at that float is a new trough.
    state = plan.open_state()._replace(trough=D("99.90000000000000000001"))
    band = quiet_band(plan, state, T0)
    assert band.low == 99.9 and not band.low_inclusive and not band.holds(99.9, T0)
    assert evaluate(plan, state, tick(99.9, T0), None, T0, QUIET).state is not state
    state = plan.open_state()._replace(trough=D("99.89999999999999999999"))
    assert quiet_band(plan, state, T0).low_inclusive


BANDS = st.builds(
    lambda lo, li, hi, hin, until: QuietBand(
        lo, li, hi, hin, None if until is None else T0 + timedelta(seconds=until)
    ),
    st.sampled_from([90.0, 95.0, 95.5, 100.0]),
    st.booleans(),
    st.sampled_from([100.0, 104.5, 105.0, 110.0]),
    st.booleans(),
    st.one_of(st.none(), st.integers(0, 100)),
)


@settings(max_examples=300, deadline=None)
@given(
    a=BANDS,
    b=BANDS,
    price=st.sampled_from([90.0, 95.0, 95.5, 100.0, 104.5, 105.0, 110.0, 97.0]),
    seconds=st.integers(0, 120),
)
def test_meet_holds_exactly_where_both_hold(a, b, price, seconds):
    at = T0 + timedelta(seconds=seconds)
    assert a.meet(b).holds(price, at) == (a.holds(price, at) and b.holds(price, at))
