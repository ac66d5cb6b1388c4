"""The names the rules' decisions carry, defined once: a signal's :class:`Direction` and the
:class:`Gate` that blocked an entry.

The values are stored (``TradingSignal.direction`` / ``.gate``, ``PositionTracker.direction``)
and the model choices are derived from these enums, so the values are stable: renaming one
orphans the history that carries it. A member is its string (``StrEnum``), so a value read back
from the database compares equal to the member.

The exit engine's ``ExitType`` (why a position was closed) belongs here too, beside them.
Pure: no Django, no I/O.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ENTRY_DIRECTIONS", "Direction", "ExitType", "Gate"]


class Direction(StrEnum):
    """Which way a signal points: bullish buys a call, bearish a put, avoid enters nothing."""

    BULLISH = "bullish"
    BEARISH = "bearish"
    AVOID = "avoid"


# The directions an entry (and so a position) can have.
ENTRY_DIRECTIONS: tuple[Direction, ...] = (Direction.BULLISH, Direction.BEARISH)


class Gate(StrEnum):
    """What blocked an entry, in the order an entry meets them (DOMAIN "Entry" steps 2-4).

    The first ten are ``rules.gates.GATES``; the signal engine records ``strike`` when no
    contract passes the strike choice, ``no_averaging`` for a contract already held and
    ``sizing`` when the size comes to zero lots or the cash is unknown.
    """

    TRADING_SWITCH = "trading_switch"
    KILL_SWITCH = "kill_switch"
    ENTRY_WINDOW = "entry_window"
    FEED_STALE = "feed_stale"
    DAILY_LOSS_LIMIT = "daily_loss_limit"
    DAILY_TRADE_CAP = "daily_trade_cap"
    CONCURRENT_CAP = "concurrent_cap"
    SAME_DIRECTION_OPEN = "same_direction_open"
    COOLDOWN = "cooldown"
    LOSS_STREAK = "loss_streak"
    STRIKE = "strike"
    NO_AVERAGING = "no_averaging"
    SIZING = "sizing"


class ExitType(StrEnum):
    """Why a position was closed (DOMAIN "Exit rules", in their order; stored on the
    position). The exit engine's rules decide all but MANUAL (an operator, through the API or
    the admin) and BROKER_CLOSED (found closed at the broker by reconciliation)."""

    KILL_SWITCH = "KILL_SWITCH"
    DAILY_LOSS_LIMIT = "DAILY_LOSS_LIMIT"
    EXPIRY_DAY = "EXPIRY_DAY"
    TIME_EXIT = "TIME_EXIT"
    STOP_LOSS = "STOP_LOSS"
    BREAKEVEN_STOP = "BREAKEVEN_STOP"
    TRAILING_STOP = "TRAILING_STOP"
    TAKE_PROFIT = "TAKE_PROFIT"
    DANGER_ZONE = "DANGER_ZONE"
    PEAK_GIVEBACK = "PEAK_GIVEBACK"
    PREMIUM_STALL = "PREMIUM_STALL"
    TIME_STOP = "TIME_STOP"
    MANUAL = "MANUAL"
    BROKER_CLOSED = "BROKER_CLOSED"
