"""Exit rules (DOMAIN "Exit rules"): should this open position be closed now, and why?

The shape of freqtrade's ``should_exit(trade, rate, current_time)``: values in, a typed decision
out. PURE: no Django, no I/O, no clock; the market time, the tick and the day's risk arrive as
arguments, and the same arguments always give the same answer.

A position is described by two values:

* :class:`ExitPlan`: what does not change while the position is open (entry price, quantity,
  entry time, direction, expiry, the index level at entry, the round-trip charges per unit, the
  config) and every level derived from them, computed once by :meth:`ExitPlan.build` (initial
  and break-even stops, arming levels, take profit, the clock exits) so a tick only compares.
  Rebuild it when the config changes; the state carries over (the stop never moves down).
* :class:`ExitState`: what moves tick by tick (peak and trough premium, the protective stop and
  the component that set it, the time in loss, the time of the last new high). The engine
  persists it; evaluating with the persisted state continues exactly where an uninterrupted run
  would be, so a restart never resets a trailing stop to the initial one.

:func:`evaluate` takes the plan, the state, the contract's :class:`Tick`, the underlying index
level now, market time now and the :class:`DayRisk`, and returns :class:`Evaluation`
``(decision, state)``: the first rule that fires as an :class:`ExitDecision` (None: hold) and
the state after this tick. Prices are rupees per unit as Decimal; levels are rounded to the
paisa (ROUND_HALF_UP, as everywhere in the project) and a rule compares the LTP with the
rounded level it names in its reason, so what an operator reads is what was compared.

The rules, in order; the first that fires wins (defaults from config/algo.yml ``exits``):

====  ================  =====================================================================
 1    KILL_SWITCH       the kill switch is on
 2    DAILY_LOSS_LIMIT  the day's PnL (realized + open, rupees) <= -limit (the caller resolves
                        rupees or % of capital; None: no limit). The engine trips the kill
                        switch on this decision.
 3    EXPIRY_DAY        now >= ``expiry_day.at`` (15:10) on the contract's expiry date (and
                        any later moment: an expired contract is not held past its expiry)
 4    TIME_EXIT         now >= ``time_exit.at`` (15:15) on the entry's day (IST); a position
                        still open on a later day exits at once (an intraday product)
 5    STOP_LOSS /       LTP <= the protective stop; the type names the component that set
      BREAKEVEN_STOP /  the stop's current level (initial, break-even, trailing)
      TRAILING_STOP
 6    TAKE_PROFIT       LTP >= entry x (1 + tp_pct), unless ``defer_when_trailing`` and the
                        trailing stop is armed (peak gain >= trailing.arm_gain_pct)
 7    DANGER_ZONE       in loss (LTP <= entry x (1 - loss_pct)) for MORE than loss_seconds, or
                        the underlying moved against the trade by >= underlying_adverse_pct
                        since entry (a bullish trade's index down to entry x (1 - pct), a
                        bearish trade's up to entry x (1 + pct))
 8    PEAK_GIVEBACK     peak >= entry x (1 + peak_gain_pct) and LTP <= entry x
                        (1 + giveback_to_pct)
 9    PREMIUM_STALL     LTP < entry and no new premium high for ``minutes`` (now - the last
                        new high, or the entry, >= minutes)
10    TIME_STOP         held MORE than max_hold_minutes (now > entry time + max hold)
====  ================  =====================================================================

Rules 5, 6, the loss leg of 7, 8 and 9 read the LTP: without a tick (``tick=None``, e.g. a sweep
before the contract's first tick, or a feed the caller does not trust) they are skipped and the
state is returned unchanged; 1-4, the underlying leg of 7 and 10 still fire on market time.

The protective stop = the highest of the enabled, armed candidates, and it ONLY EVER MOVES UP:

* initial: entry x (1 - sl_pct), from the entry on, when ``stop_loss.enabled``;
* break-even: entry + round-trip charges per unit, once the peak gain reaches
  ``breakeven.arm_gain_pct`` (and the peak is above that level: a stop above every price seen
  would sell on the arming tick at a loss), when ``breakeven.enabled``;
* trailing: peak x (1 - trail_pct), once the peak gain reaches ``trailing.arm_gain_pct``, the
  trail tightened by the highest tier whose ``peak_gain_pct`` the peak reached, when
  ``trailing.enabled``.

A candidate replaces the stop only when strictly higher, so the component recorded is the one
that first set the current level; on one tick, equal candidates go to trailing, then
break-even, then initial. Disabling a component means it never raises the stop; with all three
disabled a position has no stop and rule 5 never fires. A level already set is kept when the
config changes (a rebuilt plan never lowers it): the stop only ever moves up.

"In loss" (rule 7 and ``ExitState.seconds_in_loss``) means losing by at least the danger zone's
``loss_pct``: the rule asks how long the position has been that deep, so time spent a little
below entry does not count toward it. The time accumulates over consecutive evaluations that
find the position in loss (market time now minus the previous such evaluation, starting at 0 on
the first one) and resets to 0 on an evaluation that does not; the engine's 1 s sweep makes it
accurate to the second when ticks are sparse.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import NamedTuple

from trading.config.types import ClockExit, ExitsConfig
from trading.rules.market import IST, ist
from trading.rules.vocab import ENTRY_DIRECTIONS, Direction, ExitType

__all__ = [
    "MAX_PREMIUM",
    "MAX_QUANTITY",
    "STOP_EXIT_TYPES",
    "DayRisk",
    "Evaluation",
    "ExitDecision",
    "ExitPlan",
    "ExitState",
    "QuietBand",
    "StopComponent",
    "Tick",
    "TrailStep",
    "evaluate",
    "parse_stop_rule",
    "quiet_band",
]

PAISA = Decimal("0.01")
ONE = Decimal(1)
HUNDRED = Decimal(100)
# Sanity bounds: no index option trades anywhere near these; a value beyond is a unit mistake
# (paise for rupees, a lot count for units) that must fail loudly, not trade.
MAX_PREMIUM = Decimal(100_000)  # rupees per unit
MAX_QUANTITY = 1_000_000  # units
MAX_SECONDS_IN_LOSS = 7 * 24 * 3600.0

InputValue = str | int | bool | None
_new_tuple = tuple.__new__


class StopComponent(StrEnum):
    """Which candidate set the protective stop's current level (stored in ``stop_rule``)."""

    INITIAL = "initial"
    BREAKEVEN = "breakeven"
    TRAILING = "trailing"


# An exit at the stop is named after the component that set it.
STOP_EXIT_TYPES: Mapping[StopComponent, ExitType] = MappingProxyType(
    {
        StopComponent.INITIAL: ExitType.STOP_LOSS,
        StopComponent.BREAKEVEN: ExitType.BREAKEVEN_STOP,
        StopComponent.TRAILING: ExitType.TRAILING_STOP,
    }
)


# -- values in ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tick:
    """The contract's last trade: ``ltp`` rupees per unit (a positive Decimal: convert the
    feed's float once per tick with ``pnl.price_decimal``, never per position) and ``at``, its
    exchange time (aware). Validated here, once per tick of the contract, not per position."""

    ltp: Decimal
    at: datetime

    def __post_init__(self) -> None:
        ltp = self.ltp
        if not isinstance(ltp, Decimal) or not ltp.is_finite() or ltp <= 0 or ltp > MAX_PREMIUM:
            raise ValueError(
                f"tick ltp must be a positive Decimal of at most {MAX_PREMIUM} rupees a unit, "
                f"got {ltp!r}"
            )
        _aware(self.at, "tick at")


@dataclass(frozen=True, slots=True)
class DayRisk:
    """The account's side of the decision, gathered once per tick or sweep for every position:
    ``kill_switch`` on or off; ``day_pnl`` the day's realized + open PnL in rupees (as the entry
    gates count it); ``loss_limit`` the daily loss limit in rupees (positive, the caller has
    resolved rupees or % of capital) or None when there is none."""

    kill_switch: bool
    day_pnl: Decimal
    loss_limit: Decimal | None
    # day_pnl <= -loss_limit, judged once here for every position evaluated with this value.
    limit_reached: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.kill_switch, bool):
            raise ValueError(f"kill_switch must be a bool, got {self.kill_switch!r}")
        if not isinstance(self.day_pnl, Decimal) or not self.day_pnl.is_finite():
            raise ValueError(f"day_pnl must be a finite Decimal (rupees), got {self.day_pnl!r}")
        limit = self.loss_limit
        if limit is not None and (
            not isinstance(limit, Decimal) or not limit.is_finite() or limit <= 0
        ):
            raise ValueError(f"loss_limit must be a positive Decimal or None, got {limit!r}")
        reached = limit is not None and self.day_pnl <= -limit
        object.__setattr__(self, "limit_reached", reached)  # frozen: the one derived field


# -- the position ---------------------------------------------------------------------------------


class TrailStep(NamedTuple):
    """One trailing distance: from a peak of ``arm`` (rupees) on, the stop trails at
    peak x ``keep`` (= 1 - ``trail_pct``). ``tier`` is the 1-based index in
    ``exits.trailing.tiers``, None for the base ``trail_pct``."""

    arm: Decimal
    keep: Decimal
    trail_pct: Decimal
    tier: int | None


class ExitState(NamedTuple):
    """What the rules carry from tick to tick; persist it after every evaluation that changed
    it (``evaluate`` returns the very same object when nothing changed).

    * ``peak`` / ``trough``: highest / lowest premium (rupees per unit) since entry; both start
      at the entry price.
    * ``stop``: the protective stop, rupees per unit (None: no component enabled);
      ``stop_component`` and ``stop_tier`` (1-based tier of ``exits.trailing.tiers``, only for
      a trailing stop a tier tightened) name what set it; ``stop_rule`` is the two as one text.
    * ``seconds_in_loss``: seconds the position has been in loss (losing by at least the danger
      zone's ``loss_pct``) without a break; ``in_loss_at`` the market time of the last
      evaluation that found it in loss, None when the last evaluation did not.
    * ``high_at``: market time of the last new premium high (the entry time at first).

    Build the first one with :meth:`ExitPlan.open_state` and a persisted one with
    :meth:`ExitPlan.restore_state` (which validates it). Immutable like the frozen dataclasses
    elsewhere, but a NamedTuple: a new one is built on every tick that moves the position, and
    a frozen dataclass's ``__init__`` (one ``object.__setattr__`` a field) cost five to nine
    times a tuple's, most of that path (bench/RESULTS.md, exit rules).
    """

    peak: Decimal
    trough: Decimal
    stop: Decimal | None
    stop_component: StopComponent | None
    stop_tier: int | None
    seconds_in_loss: float
    in_loss_at: datetime | None
    high_at: datetime

    @property
    def stop_rule(self) -> str:
        """The component as stored on the position (``stop_rule``, at most 32 characters):
        "" (no stop), "initial", "breakeven", "trailing" or "trailing:2" (tier 2)."""
        if self.stop_component is None:
            return ""
        if self.stop_tier is None:
            return self.stop_component.value
        return f"{self.stop_component.value}:{self.stop_tier}"


def parse_stop_rule(text: str) -> tuple[StopComponent | None, int | None]:
    """``(component, tier)`` from :attr:`ExitState.stop_rule`'s text; ValueError naming it."""
    if not isinstance(text, str):
        raise ValueError(f"stop_rule must be text, got {text!r}")
    if text == "":
        return None, None
    name, colon, tier_text = text.partition(":")
    try:
        component = StopComponent(name)
    except ValueError:
        known = ", ".join(c.value for c in StopComponent)
        raise ValueError(f"stop_rule {text!r}: unknown component (expected {known})") from None
    if not colon:
        return component, None
    if component is not StopComponent.TRAILING or not tier_text.isdigit() or int(tier_text) < 1:
        raise ValueError(f"stop_rule {text!r}: only a trailing stop has a tier, a number >= 1")
    return component, int(tier_text)


@dataclass(frozen=True, slots=True)
class ExitPlan:
    """One open position's fixed facts and the levels derived from them (module doc). Build it
    with :meth:`build`: the derived fields are computed there, never passed by hand.

    Facts: ``entry_price`` (rupees per unit, the average entry fill), ``quantity`` (units),
    ``entry_at`` (market time of the entry, IST), ``direction`` (bullish = a long call, bearish
    = a long put), ``expiry`` (the contract's expiry date), ``underlying_entry`` (the index
    level at entry; None: unknown, the underlying leg of the danger zone is then off),
    ``charges_per_unit`` (estimated round-trip charges, rupees per unit), ``config``.

    Derived levels (rupees per unit, rounded to the paisa; None: the rule is disabled):
    ``initial_stop``, ``breakeven_stop`` and its ``breakeven_arm`` (the peak that arms it),
    ``trail_steps`` (highest arm first; empty: trailing disabled) and ``trailing_arm``,
    ``take_profit``, ``loss_level`` (in loss at or below it), ``giveback_peak`` and
    ``giveback_level``; ``underlying_limit`` (index level); the clock exits as IST datetimes
    ``expiry_exit_at``, ``time_exit_at``, ``time_stop_at`` and the earliest of them,
    ``clock_at``; ``danger_seconds`` and ``stall`` for the timed rules.
    """

    config: ExitsConfig
    entry_price: Decimal
    quantity: int
    entry_at: datetime
    direction: Direction
    expiry: date
    underlying_entry: Decimal | None
    charges_per_unit: Decimal
    kill_switch: bool
    daily_loss_limit: bool
    expiry_exit_at: datetime | None
    time_exit_at: datetime | None
    time_stop_at: datetime | None
    clock_at: datetime | None
    initial_stop: Decimal | None
    breakeven_stop: Decimal | None
    breakeven_arm: Decimal | None
    trail_steps: tuple[TrailStep, ...]
    trailing_arm: Decimal | None
    take_profit: Decimal | None
    defer_take_profit: bool
    loss_level: Decimal
    danger_seconds: float | None
    underlying_limit: Decimal | None
    adverse_is_down: bool
    giveback_peak: Decimal | None
    giveback_level: Decimal | None
    stall: timedelta | None

    @classmethod
    def build(
        cls,
        *,
        entry_price: Decimal,
        quantity: int,
        entry_at: datetime,
        direction: Direction | str,
        expiry: date,
        underlying_entry: Decimal | None,
        charges_per_unit: Decimal,
        config: ExitsConfig,
    ) -> ExitPlan:
        """The plan of one position; ValueError naming the first bad argument."""
        entry = _price(entry_price, "entry_price")
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            raise ValueError(f"quantity must be an int (units), got {quantity!r}")
        if not 0 < quantity <= MAX_QUANTITY:
            raise ValueError(f"quantity must be 1..{MAX_QUANTITY} units, got {quantity}")
        opened = ist(_aware(entry_at, "entry_at"))
        if direction not in ENTRY_DIRECTIONS:
            raise ValueError(f"direction must be bullish or bearish, got {direction!r}")
        if isinstance(expiry, datetime) or not isinstance(expiry, date):
            raise ValueError(f"expiry must be a date, got {expiry!r}")
        if underlying_entry is not None:
            underlying_entry = _positive(underlying_entry, "underlying_entry")
        charges = charges_per_unit
        if not isinstance(charges, Decimal) or not charges.is_finite() or charges < 0:
            raise ValueError(f"charges_per_unit must be a non-negative Decimal, got {charges!r}")
        if charges > MAX_PREMIUM:
            raise ValueError(f"charges_per_unit {charges} is above {MAX_PREMIUM} rupees a unit")
        if not isinstance(config, ExitsConfig):
            raise ValueError(f"config must be an ExitsConfig, got {type(config).__name__}")
        direction = Direction(direction)

        def level(fraction: float) -> Decimal:
            return _paisa(entry * (ONE + _fraction(fraction)))

        def clock(day: date, rule: ClockExit) -> datetime | None:
            return datetime.combine(day, rule.at, tzinfo=IST) if rule.enabled else None

        expiry_exit_at = clock(expiry, config.expiry_day)
        time_exit_at = clock(opened.date(), config.time_exit)
        stop_rule = config.time_stop
        time_stop_at = (
            opened + timedelta(minutes=stop_rule.max_hold_minutes) if stop_rule.enabled else None
        )
        clocks = [at for at in (expiry_exit_at, time_exit_at, time_stop_at) if at is not None]

        breakeven = config.breakeven
        trailing = config.trailing
        steps: list[TrailStep] = []
        if trailing.enabled:
            steps.append(
                TrailStep(
                    level(trailing.arm_gain_pct),
                    ONE - _fraction(trailing.trail_pct),
                    _fraction(trailing.trail_pct),
                    None,
                )
            )
            for number, tier in enumerate(trailing.tiers, start=1):
                trail = _fraction(tier.trail_pct)
                steps.append(TrailStep(level(tier.peak_gain_pct), ONE - trail, trail, number))
        steps.sort(key=lambda step: step.arm, reverse=True)

        danger = config.danger_zone
        adverse = _fraction(danger.underlying_adverse_pct)
        adverse_is_down = direction is Direction.BULLISH
        underlying_limit = None
        if danger.enabled and underlying_entry is not None:
            # Exact index level (not money): a bullish trade fears a fall, a bearish one a rise.
            factor = ONE - adverse if adverse_is_down else ONE + adverse
            underlying_limit = underlying_entry * factor
        giveback = config.peak_giveback
        take_profit = config.take_profit
        return cls(
            config=config,
            entry_price=entry,
            quantity=quantity,
            entry_at=opened,
            direction=direction,
            expiry=expiry,
            underlying_entry=underlying_entry,
            charges_per_unit=charges,
            kill_switch=config.kill_switch.enabled,
            daily_loss_limit=config.daily_loss_limit.enabled,
            expiry_exit_at=expiry_exit_at,
            time_exit_at=time_exit_at,
            time_stop_at=time_stop_at,
            clock_at=min(clocks) if clocks else None,
            initial_stop=level(-config.stop_loss.sl_pct) if config.stop_loss.enabled else None,
            breakeven_stop=_paisa(entry + charges) if breakeven.enabled else None,
            breakeven_arm=level(breakeven.arm_gain_pct) if breakeven.enabled else None,
            trail_steps=tuple(steps),
            trailing_arm=steps[-1].arm if steps else None,
            take_profit=level(take_profit.tp_pct) if take_profit.enabled else None,
            defer_take_profit=take_profit.defer_when_trailing and trailing.enabled,
            loss_level=level(-danger.loss_pct),
            danger_seconds=float(danger.loss_seconds) if danger.enabled else None,
            underlying_limit=underlying_limit,
            adverse_is_down=adverse_is_down,
            giveback_peak=level(giveback.peak_gain_pct) if giveback.enabled else None,
            giveback_level=level(giveback.giveback_to_pct) if giveback.enabled else None,
            stall=(
                timedelta(minutes=config.premium_stall.minutes)
                if config.premium_stall.enabled
                else None
            ),
        )

    def open_state(self) -> ExitState:
        """The state at the entry: peak = trough = entry price, the initial stop (if enabled),
        no time in loss, the entry as the last new high."""
        stop, component, tier = _raise_stop(self, self.entry_price, None, None, None)
        entry = self.entry_price
        return ExitState(entry, entry, stop, component, tier, 0.0, None, self.entry_at)

    def restore_state(
        self,
        *,
        peak: Decimal,
        trough: Decimal,
        stop: Decimal | None,
        stop_rule: str,
        seconds_in_loss: float,
        in_loss_at: datetime | None,
        high_at: datetime,
    ) -> ExitState:
        """A persisted state, validated (ValueError naming the field). The stop is then raised
        to what this plan's config gives for the peak, never lowered: a stop saved as None (an
        older row) becomes the initial stop, a trailing stop stays where it was."""
        peak = _price(peak, "peak")
        trough = _price(trough, "trough")
        if not trough <= self.entry_price <= peak:
            raise ValueError(
                f"trough {trough} <= entry {self.entry_price} <= peak {peak} does not hold"
            )
        component, tier = parse_stop_rule(stop_rule)
        if stop is None:
            if component is not None:
                raise ValueError(f"stop_rule {stop_rule!r} names a component but stop is None")
        else:
            stop = _price(stop, "stop")
            if component is None:
                raise ValueError(f"stop {stop} has no stop_rule naming its component")
        if (
            isinstance(seconds_in_loss, bool)
            or not isinstance(seconds_in_loss, int | float)
            or not math.isfinite(seconds_in_loss)
            or not 0 <= seconds_in_loss <= MAX_SECONDS_IN_LOSS
        ):
            raise ValueError(
                f"seconds_in_loss must be 0..{MAX_SECONDS_IN_LOSS:.0f}, got {seconds_in_loss!r}"
            )
        if in_loss_at is not None:
            in_loss_at = ist(_aware(in_loss_at, "in_loss_at"))
        elif seconds_in_loss:
            raise ValueError("seconds_in_loss is above 0 but in_loss_at is None")
        high_at = ist(_aware(high_at, "high_at"))
        stop, component, tier = _raise_stop(self, peak, stop, component, tier)
        return ExitState(
            peak, trough, stop, component, tier, float(seconds_in_loss), in_loss_at, high_at
        )


# -- values out -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExitDecision:
    """Close the position, and why.

    ``exit_type`` the rule; ``trigger_price`` the LTP it was decided on (rupees per unit; None
    when no tick was given: a switch or clock exit); ``tick_at`` that tick's exchange time;
    ``decided_at`` market time of the decision (IST); ``inputs`` what the rule compared, as
    JSON-ready values (prices and fractions as exact decimal text, seconds as text, times in
    ISO 8601); ``reason`` the same in words, e.g. "LTP 87.95 <= trailing stop 88.02 (peak
    97.80, trail 10 %)".
    """

    exit_type: ExitType
    trigger_price: Decimal | None
    tick_at: datetime | None
    decided_at: datetime
    inputs: Mapping[str, InputValue]
    reason: str


class Evaluation(NamedTuple):
    """:func:`evaluate`'s answer: ``decision`` (None: hold) and the position's ``state`` after
    this evaluation (the same object as the one passed in when nothing changed). A NamedTuple:
    one is built per position per tick, and a tuple is the cheapest immutable pair."""

    decision: ExitDecision | None
    state: ExitState


# -- the rules ------------------------------------------------------------------------------------


def evaluate(
    plan: ExitPlan,
    state: ExitState,
    tick: Tick | None,
    underlying: Decimal | None,
    now: datetime,
    risk: DayRisk,
) -> Evaluation:
    """Advance ``state`` with ``tick`` and run the exit rules in order (module doc); the first
    that fires is the decision.

    ``underlying`` is the index level now (None: unknown, the underlying leg of the danger zone
    is skipped); ``now`` is market time (aware; pass it in IST to spare a conversion per
    position). The hot path: a tick that moves nothing and crosses nothing costs comparisons
    only, and returns the state object it was given.
    """
    if now.tzinfo is not IST:
        now = ist(now)
    if tick is None:
        ltp = None
    else:
        ltp = tick.ltp
        # The common tick moves nothing: inside the range seen, not in loss now nor at the
        # last evaluation. Then the state stays the very object it was (nothing to persist).
        if (
            ltp <= plan.loss_level
            or state.in_loss_at is not None
            or not state.trough <= ltp <= state.peak
        ):
            state = _advance(plan, state, ltp, now)

    # 1-2: the account's switches, before anything about this position.
    if risk.kill_switch and plan.kill_switch:
        return Evaluation(_kill_switch(tick, now), state)
    if risk.limit_reached and plan.daily_loss_limit:
        return Evaluation(_daily_loss(risk, tick, now), state)
    # 3-4 and 10 run on market time; one comparison skips them until the earliest is due.
    clock = plan.clock_at
    past_clock = clock is not None and now >= clock
    if past_clock:
        at = plan.expiry_exit_at
        if at is not None and now >= at:
            return Evaluation(_expiry_day(plan, tick, now), state)
        at = plan.time_exit_at
        if at is not None and now >= at:
            return Evaluation(_time_exit(plan, tick, now), state)
    if ltp is not None:
        # 5: the protective stop, named after the component that set it.
        stop = state.stop
        if stop is not None and ltp <= stop:
            return Evaluation(_stop(plan, state, tick, now), state)
        # 6
        take_profit = plan.take_profit
        if (
            take_profit is not None
            and ltp >= take_profit
            and not (plan.defer_take_profit and state.peak >= plan.trailing_arm)
        ):
            return Evaluation(_take_profit(plan, tick, now), state)
        # 7, the loss leg (seconds_in_loss was advanced above).
        danger_seconds = plan.danger_seconds
        if danger_seconds is not None and state.seconds_in_loss > danger_seconds:
            return Evaluation(_danger_loss(plan, state, tick, now), state)
    # 7, the underlying leg: needs no option tick.
    underlying_limit = plan.underlying_limit
    if underlying is not None and underlying_limit is not None:
        if underlying <= 0:
            raise ValueError(f"underlying must be a positive index level, got {underlying!r}")
        adverse = (
            underlying <= underlying_limit
            if plan.adverse_is_down
            else underlying >= underlying_limit
        )
        if adverse:
            return Evaluation(_danger_underlying(plan, underlying, tick, now), state)
    if ltp is not None:
        # 8
        giveback_peak = plan.giveback_peak
        if giveback_peak is not None and state.peak >= giveback_peak and ltp <= plan.giveback_level:
            return Evaluation(_peak_giveback(plan, state, tick, now), state)
        # 9
        stall = plan.stall
        if stall is not None and ltp < plan.entry_price and now - state.high_at >= stall:
            return Evaluation(_premium_stall(plan, state, tick, now), state)
    # 10
    if past_clock:
        at = plan.time_stop_at
        if at is not None and now > at:
            return Evaluation(_time_stop(plan, tick, now), state)
    # Hold. tuple.__new__ straight: NamedTuple's own __new__ is a Python function, and this is
    # the line every position runs on every tick.
    return _new_tuple(Evaluation, (None, state))


class QuietBand(NamedTuple):
    """Where a position is quiet: for a tick whose LTP (the feed's float) lies in the band at a
    market time before ``until``, :func:`evaluate` holds and returns the state it was given,
    so an engine may skip the call and lose nothing (:func:`quiet_band` builds it; a property
    test checks it against ``evaluate``). The bounds are floats chosen so that the float
    comparison implies the Decimal one ``evaluate`` makes on ``Decimal(str(ltp))``: a bound
    whose equality the float cannot vouch for is exclusive."""

    low: float
    low_inclusive: bool
    high: float
    high_inclusive: bool
    until: datetime | None  # None: no clock rule is due, ever, while the band holds

    def holds(self, ltp: float, now: datetime) -> bool:
        """The tick at ``ltp`` at market time ``now`` changes nothing and fires nothing."""
        until = self.until
        if until is not None and now >= until:
            return False
        low, high = self.low, self.high
        return (ltp > low or (ltp == low and self.low_inclusive)) and (
            ltp < high or (ltp == high and self.high_inclusive)
        )

    def meet(self, other: QuietBand) -> QuietBand:
        """The band where both hold (the positions on one contract share its ticks)."""
        if self.low > other.low:
            low, low_inclusive = self.low, self.low_inclusive
        elif self.low < other.low:
            low, low_inclusive = other.low, other.low_inclusive
        else:
            low, low_inclusive = self.low, self.low_inclusive and other.low_inclusive
        if self.high < other.high:
            high, high_inclusive = self.high, self.high_inclusive
        elif self.high > other.high:
            high, high_inclusive = other.high, other.high_inclusive
        else:
            high, high_inclusive = self.high, self.high_inclusive and other.high_inclusive
        if self.until is None:
            until = other.until
        elif other.until is None:
            until = self.until
        else:
            until = min(self.until, other.until)
        return _new_tuple(QuietBand, (low, low_inclusive, high, high_inclusive, until))


def quiet_band(plan: ExitPlan, state: ExitState, now: datetime) -> QuietBand | None:
    """The prices and the time for which :func:`evaluate` would hold ``state`` unchanged (None:
    there is no such band: the position is in loss, its time in loss accumulates).

    What the band does not cover, and the caller must: the account's switches (evaluate in
    full while the kill switch is on or the loss limit is reached) and the underlying leg of
    the danger zone (evaluate in full when the index level changes, as the engine does on
    every index tick). ``now``, the time of the last full evaluation, only chooses between two
    true answers for the premium stall: before its deadline the band ends at the deadline;
    after it, the band excludes prices below the entry, where the stall fires.
    """
    if state.in_loss_at is not None:
        return None
    danger_seconds = plan.danger_seconds
    if danger_seconds is not None and state.seconds_in_loss > danger_seconds:
        return None
    # The state moves below the trough, at or below the loss level, above the peak.
    lows: list[tuple[Decimal, bool]] = [(state.trough, True), (plan.loss_level, False)]
    highs: list[tuple[Decimal, bool]] = [(state.peak, True)]
    if state.stop is not None:  # 5
        lows.append((state.stop, False))
    take_profit = plan.take_profit  # 6
    if take_profit is not None and not (plan.defer_take_profit and state.peak >= plan.trailing_arm):
        highs.append((take_profit, False))
    giveback_peak = plan.giveback_peak  # 8 (the peak is fixed inside the band)
    if giveback_peak is not None and state.peak >= giveback_peak:
        lows.append((plan.giveback_level, False))
    until = plan.clock_at  # 3, 4, 10
    stall = plan.stall  # 9: below the entry, from the deadline on
    if stall is not None and state.trough < plan.entry_price:
        deadline = state.high_at + stall
        if now < deadline:
            until = deadline if until is None or deadline < until else until
        else:
            lows.append((plan.entry_price, True))
    low, low_inclusive = _float_bound(lows, low=True)
    high, high_inclusive = _float_bound(highs, low=False)
    return _new_tuple(QuietBand, (low, low_inclusive, high, high_inclusive, until))


def _float_bound(bounds: list[tuple[Decimal, bool]], *, low: bool) -> tuple[float, bool]:
    """The tightest of ``bounds`` (Decimal, inclusive) as a float bound. Float rounding is
    monotonic and a float's repr reads back as itself, so ``x > float(d)`` implies
    ``Decimal(repr(x)) > d``; equality is kept only where ``Decimal(repr(float(d)))`` itself
    satisfies the Decimal bound."""
    best: tuple[float, bool] | None = None
    for value, inclusive in bounds:
        edge = float(value)
        exact = Decimal(repr(edge))
        if low:
            keeps = exact >= value if inclusive else exact > value
        else:
            keeps = exact <= value if inclusive else exact < value
        if best is None:
            best = (edge, keeps)
        elif edge == best[0]:
            best = (edge, keeps and best[1])
        elif (edge > best[0]) if low else (edge < best[0]):
            best = (edge, keeps)
    assert best is not None
    return best


def _advance(plan: ExitPlan, state: ExitState, ltp: Decimal, now: datetime) -> ExitState:
    """The state after seeing ``ltp`` at ``now``: peak, trough, the stop (moved only by a new
    peak: every candidate is a function of the peak), the time in loss. ``evaluate`` calls it
    only when something may move."""
    peak = state.peak
    trough = state.trough
    in_loss = ltp <= plan.loss_level
    stop, component, tier = state.stop, state.stop_component, state.stop_tier
    high_at = state.high_at
    if ltp > peak:
        peak = ltp
        if now > high_at:
            high_at = now
        stop, component, tier = _raise_stop(plan, peak, stop, component, tier)
    elif ltp < trough:
        trough = ltp
    if in_loss:
        since = state.in_loss_at
        if since is None:
            seconds, since = 0.0, now
        elif now > since:
            seconds, since = state.seconds_in_loss + (now - since).total_seconds(), now
        else:  # a moment at or before the last one (an out-of-order sweep): nothing elapsed
            seconds = state.seconds_in_loss
    else:
        seconds, since = 0.0, None
    # tuple.__new__ straight, as for the hold above: this runs on every tick that moves.
    return _new_tuple(ExitState, (peak, trough, stop, component, tier, seconds, since, high_at))


def _raise_stop(
    plan: ExitPlan,
    peak: Decimal,
    stop: Decimal | None,
    component: StopComponent | None,
    tier: int | None,
) -> tuple[Decimal | None, StopComponent | None, int | None]:
    """The stop after a peak of ``peak``: each armed candidate replaces it only when strictly
    higher (trailing first, so it wins a tie on the same tick)."""
    for step in plan.trail_steps:
        if peak >= step.arm:
            level = (peak * step.keep).quantize(PAISA, ROUND_HALF_UP)
            if stop is None or level > stop:
                stop, component, tier = level, StopComponent.TRAILING, step.tier
            break
    breakeven = plan.breakeven_stop
    if (
        breakeven is not None
        and peak >= plan.breakeven_arm
        and peak > breakeven
        and (stop is None or breakeven > stop)
    ):
        stop, component, tier = breakeven, StopComponent.BREAKEVEN, None
    initial = plan.initial_stop
    if initial is not None and (stop is None or initial > stop):
        stop, component, tier = initial, StopComponent.INITIAL, None
    return stop, component, tier


# -- the decisions (built only when a rule fires) ------------------------------------------------


def _decision(
    exit_type: ExitType,
    tick: Tick | None,
    now: datetime,
    inputs: dict[str, InputValue],
    reason: str,
) -> ExitDecision:
    return ExitDecision(
        exit_type=exit_type,
        trigger_price=None if tick is None else tick.ltp,
        tick_at=None if tick is None else tick.at,
        decided_at=now,
        inputs=MappingProxyType(inputs),
        reason=reason,
    )


def _kill_switch(tick: Tick | None, now: datetime) -> ExitDecision:
    return _decision(ExitType.KILL_SWITCH, tick, now, {"kill_switch": True}, "kill switch is on")


def _daily_loss(risk: DayRisk, tick: Tick | None, now: datetime) -> ExitDecision:
    limit = risk.loss_limit
    return _decision(
        ExitType.DAILY_LOSS_LIMIT,
        tick,
        now,
        {"day_pnl": _exact(risk.day_pnl), "loss_limit": _exact(limit)},
        f"daily loss limit: day PnL {_rupees(risk.day_pnl)} at or below -{_rupees(limit)}",
    )


def _expiry_day(plan: ExitPlan, tick: Tick | None, now: datetime) -> ExitDecision:
    at = plan.config.expiry_day.at
    return _decision(
        ExitType.EXPIRY_DAY,
        tick,
        now,
        {"expiry": plan.expiry.isoformat(), "exit_at": f"{at:%H:%M}", "now": now.isoformat()},
        f"the contract expires {plan.expiry.isoformat()}: {now:%Y-%m-%d %H:%M:%S} is at or "
        f"after the expiry-day exit {at:%H:%M}",
    )


def _time_exit(plan: ExitPlan, tick: Tick | None, now: datetime) -> ExitDecision:
    at = plan.time_exit_at
    return _decision(
        ExitType.TIME_EXIT,
        tick,
        now,
        {"exit_at": at.isoformat(), "now": now.isoformat()},
        f"{now:%Y-%m-%d %H:%M:%S} is at or after the time exit {at:%H:%M} "
        f"of the entry's day {at:%Y-%m-%d}",
    )


def _stop(plan: ExitPlan, state: ExitState, tick: Tick, now: datetime) -> ExitDecision:
    ltp, stop, component = tick.ltp, state.stop, state.stop_component
    inputs: dict[str, InputValue] = {
        "ltp": _exact(ltp),
        "stop": _exact(stop),
        "stop_rule": state.stop_rule,
        "entry": _exact(plan.entry_price),
        "peak": _exact(state.peak),
    }
    head = f"LTP {_price_text(ltp)} <= {_STOP_NAMES[component]} stop {_price_text(stop)}"
    config = plan.config
    if component is StopComponent.INITIAL:
        inputs["sl_pct"] = str(_fraction(config.stop_loss.sl_pct))
        detail = (
            f"entry {_price_text(plan.entry_price)}, stop loss {_pct_text(config.stop_loss.sl_pct)}"
        )
    elif component is StopComponent.BREAKEVEN:
        inputs["charges_per_unit"] = _exact(plan.charges_per_unit)
        inputs["arm_gain_pct"] = str(_fraction(config.breakeven.arm_gain_pct))
        detail = (
            f"entry {_price_text(plan.entry_price)} + round-trip charges "
            f"{_price_text(plan.charges_per_unit)} a unit, armed at a peak gain of "
            f"{_pct_text(config.breakeven.arm_gain_pct)}; peak {_price_text(state.peak)}"
        )
    else:
        trail = _trail_of(plan, state.stop_tier)
        inputs["trail_pct"] = None if trail is None else str(trail)
        inputs["tier"] = state.stop_tier
        detail = f"peak {_price_text(state.peak)}"
        if trail is not None:
            detail += f", trail {_pct_text(trail)}"
        if state.stop_tier is not None:
            detail += f", tier {state.stop_tier}"
        if trail is None:
            detail += ", a tier the config no longer has"
    return _decision(STOP_EXIT_TYPES[component], tick, now, inputs, f"{head} ({detail})")


_STOP_NAMES = {
    StopComponent.INITIAL: "initial",
    StopComponent.BREAKEVEN: "break-even",
    StopComponent.TRAILING: "trailing",
}


def _trail_of(plan: ExitPlan, tier: int | None) -> Decimal | None:
    """The trail fraction of a tier (None: the base trail); None when the config no longer
    has it (the stop was set under an earlier config)."""
    trailing = plan.config.trailing
    if tier is None:
        return _fraction(trailing.trail_pct)
    if tier <= len(trailing.tiers):
        return _fraction(trailing.tiers[tier - 1].trail_pct)
    return None


def _take_profit(plan: ExitPlan, tick: Tick, now: datetime) -> ExitDecision:
    tp_pct = plan.config.take_profit.tp_pct
    return _decision(
        ExitType.TAKE_PROFIT,
        tick,
        now,
        {
            "ltp": _exact(tick.ltp),
            "take_profit": _exact(plan.take_profit),
            "entry": _exact(plan.entry_price),
            "tp_pct": str(_fraction(tp_pct)),
        },
        f"LTP {_price_text(tick.ltp)} >= take profit {_price_text(plan.take_profit)} "
        f"(entry {_price_text(plan.entry_price)} + {_pct_text(tp_pct)})",
    )


def _danger_loss(plan: ExitPlan, state: ExitState, tick: Tick, now: datetime) -> ExitDecision:
    rule = plan.config.danger_zone
    return _decision(
        ExitType.DANGER_ZONE,
        tick,
        now,
        {
            "ltp": _exact(tick.ltp),
            "loss_level": _exact(plan.loss_level),
            "entry": _exact(plan.entry_price),
            "loss_pct": str(_fraction(rule.loss_pct)),
            "seconds_in_loss": f"{state.seconds_in_loss:.3f}",
            "loss_seconds": rule.loss_seconds,
        },
        f"LTP {_price_text(tick.ltp)} ({_gain_text(tick.ltp, plan.entry_price)}) has been "
        f"{_pct_text(rule.loss_pct)} or more below entry {_price_text(plan.entry_price)} "
        f"(at or below {_price_text(plan.loss_level)}) for {_seconds_text(state.seconds_in_loss)}"
        f" s, longer than {rule.loss_seconds} s",
    )


def _danger_underlying(
    plan: ExitPlan, underlying: Decimal, tick: Tick | None, now: datetime
) -> ExitDecision:
    rule = plan.config.danger_zone
    entry = plan.underlying_entry
    move = (underlying - entry) / entry * HUNDRED
    return _decision(
        ExitType.DANGER_ZONE,
        tick,
        now,
        {
            "underlying": _exact(underlying),
            "underlying_entry": _exact(entry),
            "underlying_limit": _exact(plan.underlying_limit),
            "underlying_adverse_pct": str(_fraction(rule.underlying_adverse_pct)),
            "direction": plan.direction.value,
        },
        f"the underlying moved {move:+.2f} % since entry ({entry:,.2f} -> {underlying:,.2f}), "
        f"against the {plan.direction.value} trade by {_pct_text(rule.underlying_adverse_pct)} "
        f"or more (limit {plan.underlying_limit:,.2f})",
    )


def _peak_giveback(plan: ExitPlan, state: ExitState, tick: Tick, now: datetime) -> ExitDecision:
    rule = plan.config.peak_giveback
    entry = plan.entry_price
    return _decision(
        ExitType.PEAK_GIVEBACK,
        tick,
        now,
        {
            "ltp": _exact(tick.ltp),
            "peak": _exact(state.peak),
            "entry": _exact(entry),
            "peak_gain_pct": str(_fraction(rule.peak_gain_pct)),
            "giveback_to_pct": str(_fraction(rule.giveback_to_pct)),
            "giveback_level": _exact(plan.giveback_level),
        },
        f"peak {_price_text(state.peak)} ({_gain_text(state.peak, entry)}, at least "
        f"{_pct_text(rule.peak_gain_pct)}) given back to LTP {_price_text(tick.ltp)} "
        f"({_gain_text(tick.ltp, entry)}), at or below {_price_text(plan.giveback_level)} "
        f"({_pct_text(rule.giveback_to_pct)} on entry {_price_text(entry)})",
    )


def _premium_stall(plan: ExitPlan, state: ExitState, tick: Tick, now: datetime) -> ExitDecision:
    minutes = plan.config.premium_stall.minutes
    since = (now - state.high_at).total_seconds()
    return _decision(
        ExitType.PREMIUM_STALL,
        tick,
        now,
        {
            "ltp": _exact(tick.ltp),
            "entry": _exact(plan.entry_price),
            "high_at": state.high_at.isoformat(),
            "seconds_since_high": f"{since:.3f}",
            "minutes": minutes,
        },
        f"LTP {_price_text(tick.ltp)} below entry {_price_text(plan.entry_price)} and no new "
        f"premium high for {_seconds_text(since)} s since {state.high_at:%H:%M:%S} "
        f"(limit {minutes} min)",
    )


def _time_stop(plan: ExitPlan, tick: Tick | None, now: datetime) -> ExitDecision:
    minutes = plan.config.time_stop.max_hold_minutes
    held = (now - plan.entry_at).total_seconds()
    return _decision(
        ExitType.TIME_STOP,
        tick,
        now,
        {
            "entry_at": plan.entry_at.isoformat(),
            "held_seconds": f"{held:.3f}",
            "max_hold_minutes": minutes,
        },
        f"held {_seconds_text(held)} s since {plan.entry_at:%H:%M:%S}, longer than {minutes} min",
    )


# -- helpers --------------------------------------------------------------------------------------


def _aware(moment: datetime, name: str) -> datetime:
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise ValueError(f"{name} must be an aware datetime (market time), got {moment!r}")
    return moment


def _positive(value: Decimal, name: str) -> Decimal:
    if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
        raise ValueError(f"{name} must be a positive Decimal, got {value!r}")
    return value


def _price(value: Decimal, name: str) -> Decimal:
    _positive(value, name)
    if value > MAX_PREMIUM:
        raise ValueError(f"{name} {value} is above {MAX_PREMIUM} rupees a unit")
    return value


def _fraction(value: float) -> Decimal:
    """A config fraction as the exact decimal it was written as (0.12, not 0.1199999...)."""
    return Decimal(str(value))


def _paisa(value: Decimal) -> Decimal:
    return value.quantize(PAISA, ROUND_HALF_UP)


def _exact(price: Decimal) -> str:
    """A price as exact text in one spelling whatever its exponent: 126.5000 (a DecimalField
    read back) and 126.50 (a tick) both give "126.50", so a restarted engine records the same
    inputs as an uninterrupted one; finer prices keep their digits (an average entry 100.0333)."""
    paise = price.quantize(PAISA)
    return str(paise) if paise == price else str(price.normalize())


def _rupees(amount: Decimal) -> str:
    return f"{amount:,.2f}"


def _price_text(price: Decimal) -> str:
    return f"{price:.2f}"


def _pct_text(fraction: float | Decimal) -> str:
    """0.12 -> "12 %", 0.004 -> "0.4 %", -0.02 -> "-2 %"."""
    value = fraction if isinstance(fraction, Decimal) else _fraction(fraction)
    return f"{(value * HUNDRED).normalize():f} %"


def _gain_text(price: Decimal, entry: Decimal) -> str:
    return f"{(price - entry) / entry * HUNDRED:+.2f} %"


def _seconds_text(seconds: float) -> str:
    """Elapsed time as the operator reads it: whole seconds, floored (120.9 -> "120")."""
    return str(int(seconds))
