"""Entry gates (DOMAIN "Entry" step 2): may a signal on this index be traded now?

Pure: the risk state (switches, feed health, the day's trades and positions) and the clock arrive
as values. Each gate is one small function ``(ctx) -> str | None`` returning the reason it
blocks, or None to let the entry through. They run in the DOMAIN order and the first block wins;
its :class:`~trading.rules.vocab.Gate` (stored on the TradingSignal row) and reason are the
verdict.

``no_averaging`` needs the chosen contract, so it runs separately (:func:`check_contract`) after
the strike choice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from trading.config.types import AlgoConfig, IndexConfig
from trading.rules.strikes import ist
from trading.rules.vocab import ENTRY_DIRECTIONS, Direction, Gate

HEALTHY = "healthy"


@dataclass(frozen=True, slots=True)
class OpenPosition:
    index: str  # the underlying, as IndexConfig.key: NIFTY
    direction: str  # a Direction value, as stored on the position: bullish / bearish
    contract_key: str  # "NSE_FNO:35001"
    opened_at: datetime  # aware


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    index: str
    direction: str  # a Direction value, as stored on the position
    exited_at: datetime  # aware
    pnl: Decimal  # net rupees (after charges); below zero is a loss, zero is not


@dataclass(frozen=True, slots=True)
class RiskState:
    """What the gates read, gathered by the caller at one moment.

    ``feed_state`` is the feed health ("healthy", "stale", "down", "unknown");
    ``index_tick_age`` the seconds since this index's last tick (None: none seen);
    ``capital`` the day's capital for the %-of-capital loss limit; ``entries_today`` counts
    today's entries per index (an order cancelled without a fill is not an entry);
    ``closed_today`` is in exit order, oldest first.
    """

    trading_enabled: bool
    kill_switch: bool
    feed_state: str
    index_tick_age: float | None
    capital: Decimal
    realized_pnl_today: Decimal
    open_pnl: Decimal
    entries_today: Mapping[str, int]
    open_positions: tuple[OpenPosition, ...]
    closed_today: tuple[ClosedTrade, ...]


@dataclass(frozen=True, slots=True)
class GateResult:
    """``allowed``, or the ``gate`` that blocked and its human ``reason``."""

    allowed: bool
    gate: Gate | None
    reason: str | None

    @classmethod
    def block(cls, gate: Gate, reason: str) -> GateResult:
        return cls(allowed=False, gate=gate, reason=reason)


ALLOW = GateResult(allowed=True, gate=None, reason=None)


@dataclass(frozen=True, slots=True)
class GateContext:
    """The inputs of one entry check, handed to every gate."""

    index: IndexConfig
    direction: Direction
    now: datetime  # aware; the gates read it in IST
    state: RiskState
    cfg: AlgoConfig


def _rupees(amount: Decimal) -> str:
    return f"{amount:,.2f}"


def _seconds(value: float) -> str:
    """Whole seconds as the operator reads them; elapsed time is floored (95.9 s -> "95")."""
    return str(int(value)) if value >= 0 else f"{value:.1f}"


def _number(value: float) -> str:
    return f"{value:g}"


# -- the gates, in order --------------------------------------------------------------------------


def trading_switch(ctx: GateContext) -> str | None:
    """The operator's trading switch (off = no new entries; exits still run)."""
    return None if ctx.state.trading_enabled else "trading is switched off"


def kill_switch(ctx: GateContext) -> str | None:
    """The kill switch: set by the operator or tripped by the daily loss limit in the exits."""
    return "kill switch is on" if ctx.state.kill_switch else None


def entry_window(ctx: GateContext) -> str | None:
    """A trading day (not a weekend, not a configured holiday), inside the session and inside
    the index's entry window (start inclusive, end exclusive)."""
    moment = ist(ctx.now)
    day, clock = moment.date(), moment.time()
    market = ctx.cfg.market
    if day.weekday() >= 5:
        return f"{day:%A} {day.isoformat()} is not a trading day (weekend)"
    if day in market.holidays:
        return f"{day:%A} {day.isoformat()} is an exchange holiday"
    if not (market.session_open <= clock < market.session_close):
        return (
            f"{clock:%H:%M:%S} is outside the session "
            f"{market.session_open:%H:%M}-{market.session_close:%H:%M}"
        )
    window = ctx.index.entry_window
    if not window.contains(clock):
        return (
            f"{clock:%H:%M:%S} is outside the {ctx.index.key} entry window "
            f"{window.start:%H:%M}-{window.end:%H:%M}"
        )
    return None


def feed_stale(ctx: GateContext) -> str | None:
    """The feed must be healthy and this index must have ticked within
    ``feed.index_stale_seconds`` (an age at or over it is stale, as in the feed health).
    The option's own tick age is checked with the strike (``strikes.liquidity_reason``)."""
    state = ctx.state
    if state.feed_state != HEALTHY:
        return f"feed is {state.feed_state}, not healthy"
    limit = ctx.cfg.feed.index_stale_seconds
    if state.index_tick_age is None:
        return f"no {ctx.index.key} index tick seen yet"
    if state.index_tick_age >= limit:
        return (
            f"{ctx.index.key} index tick {state.index_tick_age:.1f} s old "
            f"(limit {_number(limit)} s)"
        )
    return None


def daily_loss_limit(ctx: GateContext) -> str | None:
    """Realized + open PnL of the day at or below minus the limit (rupees or % of capital,
    the tighter of the two when both are set). No bound configured: never blocks."""
    bounds = ctx.cfg.risk.daily_loss_limit
    limit = bounds.limit(ctx.state.capital)
    if limit is None:
        return None
    day_pnl = ctx.state.realized_pnl_today + ctx.state.open_pnl
    if day_pnl > -limit:
        return None
    if bounds.pct_of_capital is not None and limit != bounds.rupees:
        source = f"{bounds.pct_of_capital:.2%} of capital {_rupees(ctx.state.capital)}"
    else:
        source = "rupees"
    return (
        f"daily loss limit: day PnL {_rupees(day_pnl)} "
        f"(realized {_rupees(ctx.state.realized_pnl_today)}, open {_rupees(ctx.state.open_pnl)}) "
        f"at or below -{_rupees(limit)} ({source})"
    )


def daily_trade_cap(ctx: GateContext) -> str | None:
    """Entries made today: the global cap across indices, then this index's cap."""
    entries = ctx.state.entries_today
    total, cap = sum(entries.values()), ctx.cfg.risk.max_trades_per_day
    if total >= cap:
        return f"daily trade cap: {total} of {cap} entries today across all indices"
    mine, index_cap = entries.get(ctx.index.key, 0), ctx.index.max_trades_per_day
    if mine >= index_cap:
        return f"daily trade cap: {mine} of {index_cap} entries on {ctx.index.key} today"
    return None


def concurrent_cap(ctx: GateContext) -> str | None:
    """Positions open now: the global cap, then this index's cap."""
    positions = ctx.state.open_positions
    total, cap = len(positions), ctx.cfg.risk.max_concurrent
    if total >= cap:
        return f"concurrent cap: {total} of {cap} positions open across all indices"
    mine = sum(1 for p in positions if p.index == ctx.index.key)
    if mine >= ctx.index.max_concurrent:
        return (
            f"concurrent cap: {mine} of {ctx.index.max_concurrent} positions open "
            f"on {ctx.index.key}"
        )
    return None


def same_direction_open(ctx: GateContext) -> str | None:
    """One position per index and direction: a second bullish NIFTY entry would double the bet
    on the same signal (only reachable when the index allows more than one open position)."""
    for position in ctx.state.open_positions:
        if position.index == ctx.index.key and position.direction == ctx.direction:
            return (
                f"a {ctx.direction} {ctx.index.key} position is already open "
                f"({position.contract_key} since {ist(position.opened_at):%H:%M:%S})"
            )
    return None


def cooldown(ctx: GateContext) -> str | None:
    """After an exit on this index, wait ``cooldown_seconds`` (``cooldown_after_loss_seconds``
    after a net loss) before entering it again; at exactly the limit entries resume."""
    last = next((t for t in reversed(ctx.state.closed_today) if t.index == ctx.index.key), None)
    if last is None:
        return None
    lost = last.pnl < 0
    limit = ctx.index.cooldown_after_loss_seconds if lost else ctx.index.cooldown_seconds
    elapsed = (ctx.now - last.exited_at).total_seconds()
    if elapsed >= limit:
        return None
    after = f" (a loss of {_rupees(-last.pnl)})" if lost else ""
    return (
        f"cooldown: {_seconds(elapsed)} s of {limit} s since the last {ctx.index.key} exit{after}"
    )


def loss_streak(ctx: GateContext) -> str | None:
    """``loss_streak.count`` losing exits in a row today (any index; a win or a break-even exit
    ends the streak) pause entries for ``pause_minutes`` after the last of them. A count of 0
    or less disables the gate."""
    rule = ctx.cfg.risk.loss_streak
    if rule.count <= 0:
        return None
    streak = 0
    for trade in reversed(ctx.state.closed_today):
        if trade.pnl >= 0:
            break
        streak += 1
    if streak < rule.count:
        return None
    last_exit = ctx.state.closed_today[-1].exited_at
    until = last_exit + timedelta(minutes=rule.pause_minutes)
    if ctx.now >= until:
        return None
    return (
        f"loss streak: {streak} losses in a row (limit {rule.count}); entries paused "
        f"{rule.pause_minutes} min after the last exit, until {ist(until):%H:%M:%S}"
    )


GATES: tuple[tuple[Gate, Callable[[GateContext], str | None]], ...] = (
    (Gate.TRADING_SWITCH, trading_switch),
    (Gate.KILL_SWITCH, kill_switch),
    (Gate.ENTRY_WINDOW, entry_window),
    (Gate.FEED_STALE, feed_stale),
    (Gate.DAILY_LOSS_LIMIT, daily_loss_limit),
    (Gate.DAILY_TRADE_CAP, daily_trade_cap),
    (Gate.CONCURRENT_CAP, concurrent_cap),
    (Gate.SAME_DIRECTION_OPEN, same_direction_open),
    (Gate.COOLDOWN, cooldown),
    (Gate.LOSS_STREAK, loss_streak),
)
# The gates this module runs, in order (the engine's strike and sizing blocks are the other
# Gate members).
GATE_NAMES: tuple[Gate, ...] = (*(gate for gate, _ in GATES), Gate.NO_AVERAGING)


def check_entry(
    index: IndexConfig, direction: Direction, now: datetime, state: RiskState, cfg: AlgoConfig
) -> GateResult:
    """Run :data:`GATES` in order; the first that blocks is the verdict, else :data:`ALLOW`.

    ``direction`` must be an entry direction: an avoid signal has nothing to enter.
    """
    if direction not in ENTRY_DIRECTIONS:
        raise ValueError(f"direction must be bullish or bearish, got {str(direction)!r}")
    ist(now)  # refuse a naive clock before any gate compares it with aware datetimes
    ctx = GateContext(index=index, direction=direction, now=now, state=state, cfg=cfg)
    for gate, check in GATES:
        reason = check(ctx)
        if reason is not None:
            return GateResult.block(gate, reason)
    return ALLOW


def no_averaging(contract_key: str, state: RiskState) -> str | None:
    """Never add to a contract already held: one entry, one position, one exit plan."""
    for position in state.open_positions:
        if position.contract_key == contract_key:
            return (
                f"no averaging: {contract_key} is already held "
                f"({position.direction} {position.index} since {ist(position.opened_at):%H:%M:%S})"
            )
    return None


def check_contract(contract_key: str, state: RiskState) -> GateResult:
    """The gate that needs the chosen contract (run after the strike choice)."""
    reason = no_averaging(contract_key, state)
    return ALLOW if reason is None else GateResult.block(Gate.NO_AVERAGING, reason)
