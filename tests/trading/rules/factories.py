"""Config values for the pure-rule tests, built straight from the dataclasses (no YAML loader),
and random candles for the indicator and signal tests.

The defaults are DOMAIN's (../shared/DOMAIN.md). ``make_config`` takes overrides as key paths
joined by double underscores, e.g. ``make_config(risk__max_concurrent=5,
risk__daily_loss_limit__rupees=None)``; ``indices=(make_index("NIFTY", max_concurrent=2),)``
replaces the index list.
"""

from __future__ import annotations

import dataclasses
import random
from datetime import date, time
from decimal import Decimal
from typing import Any

from trading.config.types import (
    AlgoConfig,
    BreakevenExit,
    ClockExit,
    DailyLossLimit,
    DangerZoneExit,
    ExitsConfig,
    FeedConfig,
    HolyGrailParams,
    IndexConfig,
    LossStreak,
    MarketConfig,
    OrdersConfig,
    PaperConfig,
    PeakGivebackExit,
    PremiumBand,
    PremiumStallExit,
    RiskConfig,
    SignalsConfig,
    SizingConfig,
    StopLossExit,
    StrikesConfig,
    SupertrendParams,
    SwitchExit,
    TakeProfitExit,
    TimeStopExit,
    TrailingExit,
    Window,
)

# A made-up exchange holiday for the tests (a Wednesday): only its membership matters.
HOLIDAY = date(2026, 11, 25)


def make_index(key: str = "NIFTY", **overrides: Any) -> IndexConfig:
    """An index config with DOMAIN defaults (window 09:20-15:00, 4 trades, 1 open, cooldown
    180 s / 600 s after a loss); fields replaced by ``overrides``."""
    band = {"NIFTY": ("50", "300"), "SENSEX": ("100", "600")}.get(key, ("50", "400"))
    freeze = {"NIFTY": 1800, "SENSEX": 1000, "BANKNIFTY": 600}.get(key)
    base = IndexConfig(
        key=key,
        enabled=True,
        entry_window=Window(start=time(9, 20), end=time(15, 0)),
        premium_band=PremiumBand(min=Decimal(band[0]), max=Decimal(band[1])),
        strike_offset=None,
        max_trades_per_day=4,
        max_concurrent=1,
        cooldown_seconds=180,
        cooldown_after_loss_seconds=600,
        freeze_quantity=freeze,
    )
    return dataclasses.replace(base, **overrides)


def _defaults() -> AlgoConfig:
    return AlgoConfig(
        market=MarketConfig(
            session_open=time(9, 15), session_close=time(15, 30), holidays=frozenset({HOLIDAY})
        ),
        indices=(make_index("NIFTY"), make_index("SENSEX")),
        signals=SignalsConfig(
            strategy="supertrend",
            timeframe_minutes=1,
            confirm_timeframe_minutes=None,
            supertrend=SupertrendParams(period=10, multiplier=2.0),
            adx_period=14,
            adx_min=18.0,
            holy_grail=HolyGrailParams(
                sma_period=34,
                ema_period=100,
                macd_fast=12,
                macd_slow=26,
                macd_signal=9,
                rsi_period=14,
                rsi_midline=50.0,
                adx_min=20.0,
            ),
            history_days=5,
            max_candle_age_seconds=10,
        ),
        strikes=StrikesConfig(
            offset=0,
            expiry_cutoff=time(13, 0),
            max_spread_pct=0.015,
            min_oi=5000,
            subscribe_width=3,
        ),
        feed=FeedConfig(index_stale_seconds=5.0, option_stale_seconds=2.0),
        risk=RiskConfig(
            daily_loss_limit=DailyLossLimit(rupees=Decimal("5000"), pct_of_capital=None),
            max_trades_per_day=8,
            max_concurrent=3,
            loss_streak=LossStreak(count=3, pause_minutes=30),
            sizing=SizingConfig(
                risk_per_trade_rupees=Decimal("1000"), capital_alloc_pct=0.5, max_lots=10
            ),
        ),
        exits=ExitsConfig(
            kill_switch=SwitchExit(enabled=True),
            daily_loss_limit=SwitchExit(enabled=True),
            expiry_day=ClockExit(enabled=True, at=time(15, 10)),
            time_exit=ClockExit(enabled=True, at=time(15, 15)),
            stop_loss=StopLossExit(enabled=True, sl_pct=0.12),
            breakeven=BreakevenExit(enabled=True, arm_gain_pct=0.08),
            trailing=TrailingExit(enabled=True, arm_gain_pct=0.15, trail_pct=0.10, tiers=()),
            take_profit=TakeProfitExit(enabled=True, tp_pct=0.40, defer_when_trailing=True),
            danger_zone=DangerZoneExit(
                enabled=True, loss_pct=0.06, loss_seconds=120, underlying_adverse_pct=0.004
            ),
            peak_giveback=PeakGivebackExit(enabled=True, peak_gain_pct=0.10, giveback_to_pct=-0.02),
            premium_stall=PremiumStallExit(enabled=True, minutes=3),
            time_stop=TimeStopExit(enabled=False, max_hold_minutes=60),
        ),
        orders=OrdersConfig(limit_buffer_pct=0.01, max_chases=3, chase_interval_ms=500),
        paper=PaperConfig(slippage_bps=25, latency_ms=150, seed_cash=Decimal("100000")),
        version="test00000000",
    )


def _replace_path(value: Any, path: list[str], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    names = {f.name for f in dataclasses.fields(value)} if dataclasses.is_dataclass(value) else ()
    if head not in names:
        raise TypeError(f"{type(value).__name__} has no field {head!r}")
    return dataclasses.replace(value, **{head: _replace_path(getattr(value, head), rest, new)})


def make_config(**overrides: Any) -> AlgoConfig:
    """An AlgoConfig with DOMAIN defaults; ``a__b__c=value`` replaces that nested field."""
    config = _defaults()
    for dotted, new in overrides.items():
        config = _replace_path(config, dotted.split("__"), new)
    return config


def random_candles(count: int, seed: int, start: float = 20000.0) -> tuple[list, list, list]:
    """A pseudo-random walk of OHLC candles around an index level (0.1% moves per candle, with
    gaps: the open is the previous close moved a little, so true ranges use the previous
    close sometimes); reproducible by seed."""
    rng = random.Random(seed)
    highs, lows, closes = [], [], []
    close = start
    for _ in range(count):
        open_ = close * (1 + rng.gauss(0, 0.0003))
        close = open_ * (1 + rng.gauss(0, 0.001))
        highs.append(max(open_, close) * (1 + abs(rng.gauss(0, 0.0005))))
        lows.append(min(open_, close) * (1 - abs(rng.gauss(0, 0.0005))))
        closes.append(close)
    return highs, lows, closes
