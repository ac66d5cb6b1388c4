"""What the signal engine hands the order router, and what it gets back.

The signal engine ends at an :class:`EntryIntent`: a decided, sized entry into one contract.
An :class:`EntryRouter` (``trading.orders.router.OrderRouter``) turns it into orders, journaled
before they are sent, paper or live.

Idempotency: every order of an entry carries a correlation id derived from the signal row
(trading/orders/journal.py, ``entry_correlation_id``), so a restart that re-hands the same
intent finds the same orders and the router looks them up at the broker before sending
anything again.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import date, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, Protocol

from trading.rules.market import instrument_key

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class EntryIntent:
    """A sized entry. Prices are rupees per unit; quantities are units (whole lots)."""

    signal_id: int
    index: str  # NIFTY
    direction: str  # bullish (buy a CE) or bearish (buy a PE)
    exchange_segment: str
    security_id: int
    symbol: str
    expiry: date
    strike: Decimal
    option_type: str
    lot_size: int
    tick_size: Decimal
    lots: int
    quantity: int
    orders: tuple[int, ...]  # units per order, each within the freeze quantity
    reference_price: Decimal  # the ask (or LTP without depth) the size was computed at
    limit_price: Decimal  # marketable limit: reference * (1 + buffer), up to the tick
    config_version: str
    decided_at: datetime  # market time of the decision
    underlying_price: Decimal | None = None  # the index at the decision (the danger-zone rule)

    @property
    def key(self) -> str:
        return instrument_key(self.exchange_segment, self.security_id)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: Decimals and dates as strings (exact), for the signal row."""
        out = asdict(self)
        for name, value in out.items():
            if isinstance(value, datetime):
                out[name] = value.isoformat()
            elif isinstance(value, Decimal | date):
                out[name] = str(value)
        out["orders"] = list(self.orders)
        out["key"] = self.key
        return out


def marketable_limit(reference: Decimal, buffer_pct: float, tick: Decimal) -> Decimal:
    """A buy limit ``buffer_pct`` above ``reference``, rounded up to a whole ``tick``: it
    crosses the ask it was computed from, and Dhan rejects prices off the tick grid."""
    raw = reference * (1 + Decimal(str(buffer_pct)))
    return (raw / tick).to_integral_value(rounding=ROUND_CEILING) * tick


def marketable_sell_limit(reference: Decimal, buffer_pct: float, tick: Decimal) -> Decimal:
    """A sell limit ``buffer_pct`` below ``reference`` (the bid), rounded down to a whole
    ``tick`` (never below one tick): it crosses the bid it was computed from."""
    raw = reference * (1 - Decimal(str(buffer_pct)))
    return max(tick, (raw / tick).to_integral_value(rounding=ROUND_FLOOR) * tick)


ROUTED = "routed"  # orders journaled and sent (or queued to send)
RECORDED = "recorded"  # taken note of, nothing sent (IntentLogRouter)
REJECTED = "rejected"  # refused: the entry will not happen; ``detail`` says why


@dataclass(frozen=True)
class RouterResult:
    """What the router did with an intent: ``status`` is ROUTED, RECORDED or REJECTED;
    ``detail`` says it in words for the signal row and the log."""

    status: str
    detail: str


class EntryRouter(Protocol):
    def place_entry(self, intent: EntryIntent) -> RouterResult:
        """Journal and send the entry's orders. Must be idempotent per ``intent.signal_id``.
        Raises only for faults the caller cannot act on (the engine records them)."""
        ...


class IntentLogRouter:
    """The router until order routing exists: logs the intent, sends nothing."""

    def place_entry(self, intent: EntryIntent) -> RouterResult:
        logger.info(
            "entry intent (not routed: no order router yet): signal %d %s %s %s x%d @ %s",
            intent.signal_id,
            intent.index,
            intent.direction,
            intent.symbol,
            intent.quantity,
            intent.limit_price,
        )
        return RouterResult(RECORDED, "recorded; no order router yet, nothing sent")
