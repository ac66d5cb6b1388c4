"""Market vocabulary with one home: the time zone, the session and calendar queries, the
instrument key.

The session hours and the holidays are data (``market`` in ``config/algo.yml``, a
:class:`~trading.config.types.MarketConfig`); this module only answers questions about them, so no
other module writes 09:15 or 15:30 by hand. Every function takes the moment it judges as an
argument: market time comes from the market (``workers/market_clock.py``), never from a clock
read here.

PURE: no Django, no I/O, no clock.
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from trading.config.types import MarketConfig

__all__ = [
    "INDEX_SEGMENT",
    "IST",
    "instrument_key",
    "is_open",
    "ist",
    "session_close_at",
    "session_open_at",
    "split_key",
]

IST = ZoneInfo("Asia/Kolkata")
"""Indian Standard Time: every market time of day (session, windows, expiries) is in it."""

INDEX_SEGMENT = "IDX_I"
"""Dhan's exchange segment of the indices (NIFTY is ``IDX_I:13``): their ticks carry the
market's time, and their candles drive the signals."""


def ist(moment: datetime) -> datetime:
    """``moment`` in IST. A naive datetime is refused: it would be read in the machine's zone."""
    if moment.tzinfo is None:
        raise ValueError("market time must be an aware datetime (a naive one is ambiguous)")
    return moment.astimezone(IST)


def instrument_key(segment: str, security_id: int | str) -> str:
    """``"{SEGMENT}:{SECURITY_ID}"``, the key of an instrument everywhere (ticks, bus, kv,
    subscriptions), e.g. ``IDX_I:13`` or ``NSE_FNO:43225``."""
    return f"{segment}:{security_id}"


def split_key(key: str) -> tuple[str, str]:
    """``("NSE_FNO", "43225")`` from ``"NSE_FNO:43225"``; ValueError naming a key without one
    colon between two non-empty parts. The id stays text: callers check its range."""
    segment, colon, security_id = key.partition(":")
    if not colon or not segment or not security_id or ":" in security_id:
        raise ValueError(f"instrument key {key!r} is not SEGMENT:SECURITY_ID")
    return segment, security_id


def session_open_at(market: MarketConfig, day: date) -> datetime:
    """The session's open on ``day`` (whether or not it is a trading day), in IST."""
    return datetime.combine(day, market.session_open, tzinfo=IST)


def session_close_at(market: MarketConfig, day: date) -> datetime:
    """The session's close on ``day``, in IST."""
    return datetime.combine(day, market.session_close, tzinfo=IST)


def is_open(market: MarketConfig, moment: datetime) -> bool:
    """True when ``moment`` is inside the session of a trading day (open <= t < close)."""
    local = ist(moment)
    return (
        market.is_trading_day(local.date())
        and market.session_open <= local.time() < market.session_close
    )
