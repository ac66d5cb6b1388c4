"""The algo configuration's plain types: frozen dataclasses and their pure queries.

Every knob of the trading rules (../shared/DOMAIN.md) lives in ``config/algo.yml``; none is a
constant in code. ``trading.config.load`` validates the file (and the operator's overrides) into
the frozen dataclasses below, which the pure rules in ``trading/rules/`` take as arguments.

Units, everywhere in this module and in the YAML:

* fractions are decimal fractions (``0.12`` = 12 %), named ``*_pct``;
* money is rupees as ``Decimal``, named ``*_rupees`` or ``premium_band`` (rupees per unit);
* durations are named with their unit (``*_seconds``, ``*_minutes``, ``*_ms``);
* times of day are ``datetime.time`` in Asia/Kolkata (the YAML writes ``"09:20"``).

The one module of the config that the rules import: it imports the standard library only (no
Django, Redis, sockets, YAML, pydantic, nor anything of the project), which the purity test and
the import contracts check. Reading and validating are in ``trading.config.load``; the
Django-backed overrides store in ``trading.config.store``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, time, timedelta
from decimal import Decimal

# -- market ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MarketConfig:
    session_open: time  # 09:15
    session_close: time  # 15:30
    holidays: frozenset[date]  # exchange holidays: no entries, no feed expectations

    def is_trading_day(self, day: date) -> bool:
        return day.weekday() < 5 and day not in self.holidays

    def next_trading_day(self, day: date) -> date:
        """``day`` itself when it is a trading day, else the next one."""
        while not self.is_trading_day(day):
            day += timedelta(days=1)
        return day


# -- indices --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """``start <= t < end``, times of day in IST."""

    start: time
    end: time

    def contains(self, moment: time) -> bool:
        return self.start <= moment < self.end


@dataclass(frozen=True)
class PremiumBand:
    """Allowed option premium, rupees per unit, inclusive on both ends."""

    min: Decimal
    max: Decimal

    def contains(self, premium: Decimal | float) -> bool:
        value = premium if isinstance(premium, Decimal) else Decimal(str(premium))
        return self.min <= value <= self.max


@dataclass(frozen=True)
class IndexConfig:
    key: str  # the underlying's catalog symbol, upper case: NIFTY, BANKNIFTY, FINNIFTY, SENSEX
    enabled: bool
    entry_window: Window
    premium_band: PremiumBand
    strike_offset: int | None  # None -> strikes.offset
    max_trades_per_day: int  # entries per day on this index
    max_concurrent: int  # open positions at once on this index
    cooldown_seconds: int  # after any exit on this index
    cooldown_after_loss_seconds: int  # after an exit at a loss (net)
    freeze_quantity: int | None  # units per order; None -> config/instruments.yml

    def offset(self, strikes: StrikesConfig) -> int:
        return strikes.offset if self.strike_offset is None else self.strike_offset


# -- signals --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SupertrendParams:
    period: int  # ATR period, candles (10)
    multiplier: float  # band width in ATRs (2.0)


@dataclass(frozen=True)
class HolyGrailParams:
    sma_period: int  # 34: bias
    ema_period: int  # 100: bias
    macd_fast: int  # 12
    macd_slow: int  # 26
    macd_signal: int  # 9
    rsi_period: int  # 14
    rsi_midline: float  # 50: RSI above is bullish momentum, below bearish
    adx_min: float  # 20: trend strength needed


@dataclass(frozen=True)
class SignalsConfig:
    strategy: str  # "supertrend" (DOMAIN default) or "holy_grail"
    timeframe_minutes: int  # primary timeframe: 1 or 5
    confirm_timeframe_minutes: int | None  # None, or a larger multiple that must agree (5)
    supertrend: SupertrendParams
    adx_period: int  # 14
    adx_min: float  # 18: below it the signal is "avoid"
    holy_grail: HolyGrailParams
    history_days: int  # calendar days of intraday history fetched at start (warm indicators)
    max_candle_age_seconds: int  # a candle seen later than this after its close is not traded


# -- strikes, feed --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StrikesConfig:
    offset: int  # strike steps from ATM: 0 ATM, +1 one OTM, -1 one ITM
    expiry_cutoff: time  # on expiry day, skip today's expiry at or after this time (13:00)
    max_spread_pct: float  # (ask - bid) / ltp at most this (0.015)
    min_oi: int  # open interest at least this (contracts' units)
    subscribe_width: int  # strikes each side of ATM the engine keeps subscribed per index


@dataclass(frozen=True)
class FeedConfig:
    index_stale_seconds: float  # no index tick for this long blocks entries (5)
    option_stale_seconds: float  # an option tick older than this is not traded on (2)


# -- risk -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DailyLossLimit:
    """The day's realized + open PnL at or below minus this stops entries (and trips the kill
    switch, in the exit engine). Either bound may be None; with both set the tighter wins."""

    rupees: Decimal | None
    pct_of_capital: float | None

    def limit(self, capital: Decimal) -> Decimal | None:
        """The limit in rupees (positive), or None when neither bound is set."""
        bounds = []
        if self.rupees is not None:
            bounds.append(self.rupees)
        if self.pct_of_capital is not None:
            bounds.append(capital * Decimal(str(self.pct_of_capital)))
        return min(bounds) if bounds else None


@dataclass(frozen=True)
class LossStreak:
    count: int  # this many losing exits in a row (across indices) ...
    pause_minutes: int  # ... pause entries this long after the last of them


@dataclass(frozen=True)
class SizingConfig:
    risk_per_trade_rupees: Decimal  # rupees lost if the initial stop is hit
    capital_alloc_pct: float  # most of the cash one entry may use
    max_lots: int  # hard cap per entry


@dataclass(frozen=True)
class RiskConfig:
    daily_loss_limit: DailyLossLimit
    max_trades_per_day: int  # global
    max_concurrent: int  # global open positions
    loss_streak: LossStreak
    sizing: SizingConfig


# -- exits ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SwitchExit:
    enabled: bool


@dataclass(frozen=True)
class ClockExit:
    enabled: bool
    at: time  # IST


@dataclass(frozen=True)
class StopLossExit:
    enabled: bool
    sl_pct: float  # initial stop below entry (0.12); sizing uses it even when disabled


@dataclass(frozen=True)
class BreakevenExit:
    enabled: bool
    arm_gain_pct: float  # armed once the peak gain reaches this (0.08)


@dataclass(frozen=True)
class TrailTier:
    peak_gain_pct: float  # from this peak gain on ...
    trail_pct: float  # ... trail this far below the peak


@dataclass(frozen=True)
class TrailingExit:
    enabled: bool
    arm_gain_pct: float  # 0.15
    trail_pct: float  # 0.10
    tiers: tuple[TrailTier, ...]  # ascending peak_gain_pct, each trail_pct tighter


@dataclass(frozen=True)
class TakeProfitExit:
    enabled: bool
    tp_pct: float  # 0.40
    defer_when_trailing: bool


@dataclass(frozen=True)
class DangerZoneExit:
    enabled: bool
    loss_pct: float  # losing by at least this ... (0.06)
    loss_seconds: int  # ... for longer than this (120)
    underlying_adverse_pct: float  # or the index moved against the trade this much (0.004)


@dataclass(frozen=True)
class PeakGivebackExit:
    enabled: bool
    peak_gain_pct: float  # the peak gain reached at least this (0.10) ...
    giveback_to_pct: float  # ... and the current gain is at or below this (-0.02)


@dataclass(frozen=True)
class PremiumStallExit:
    enabled: bool
    minutes: int  # losing and no new premium high for this long (3)


@dataclass(frozen=True)
class TimeStopExit:
    enabled: bool
    max_hold_minutes: int


@dataclass(frozen=True)
class ExitsConfig:
    kill_switch: SwitchExit
    daily_loss_limit: SwitchExit
    expiry_day: ClockExit  # 15:10
    time_exit: ClockExit  # 15:15
    stop_loss: StopLossExit
    breakeven: BreakevenExit
    trailing: TrailingExit
    take_profit: TakeProfitExit
    danger_zone: DangerZoneExit
    peak_giveback: PeakGivebackExit
    premium_stall: PremiumStallExit
    time_stop: TimeStopExit

    def safety_off(self) -> list[str]:
        """The safety exits switched off, each with what that leaves (empty when all are on).
        Each may be off by the operator's choice; a start says so loudly (config_at_start)."""
        what = {
            "stop_loss": "no initial stop under a position",
            "time_exit": "positions are not closed before the close",
            "expiry_day": "expiring contracts are not closed on their expiry day",
            "kill_switch": "the kill switch halts entries but does not flatten",
            "daily_loss_limit": "the daily loss limit does not flatten",
        }
        return [
            f"exits.{name} is off: {said}"
            for name, said in what.items()
            if not getattr(self, name).enabled
        ]


# -- orders, paper --------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrdersConfig:
    limit_buffer_pct: float  # marketable limit: buy at ask * (1 + buffer), sell at bid * (1 - ...)
    max_chases: int  # re-prices of an unfilled limit order before giving up
    chase_interval_ms: int  # wait between re-prices


@dataclass(frozen=True)
class PaperConfig:
    slippage_bps: int  # without depth: LTP +/- this many basis points (25)
    latency_ms: int  # decision to fill (150)
    seed_cash: Decimal  # the paper ledger's opening cash; PAPER_SEED_CASH overrides


# -- the whole ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlgoConfig:
    market: MarketConfig
    indices: tuple[IndexConfig, ...]
    signals: SignalsConfig
    strikes: StrikesConfig
    feed: FeedConfig
    risk: RiskConfig
    exits: ExitsConfig
    orders: OrdersConfig
    paper: PaperConfig
    version: str  # hash of the effective (merged, validated) config; stamped on signals

    def index(self, key: str) -> IndexConfig:
        wanted = key.upper()
        for item in self.indices:
            if item.key == wanted:
                return item
        raise KeyError(f"index {key!r} is not configured in algo.yml indices")

    def enabled_indices(self) -> tuple[IndexConfig, ...]:
        return tuple(item for item in self.indices if item.enabled)
