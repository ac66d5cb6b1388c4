"""Unrealized PnL of an open long option position (a bought call or put).

Pure: values in, figures out. Money is Decimal; the LTP arrives as the float of the tick hot path
and is converted through its shortest repr (``Decimal(str(ltp))``), so ``110.05`` is exactly
110.05 and never 110.0499999999999971578290569595992565155029296875.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

PAISA = Decimal("0.01")
PERCENT_PLACES = Decimal("0.0001")
HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class PnlFigures:
    """Rupees rounded to the paisa (ROUND_HALF_UP); ``percent`` is gross PnL as a percentage of
    the entry value (entry price x quantity), 4 decimal places: 10.0000 means +10%."""

    gross: Decimal
    net: Decimal
    percent: Decimal


def price_decimal(ltp: float) -> Decimal:
    """A tick price as a Decimal; ValueError for a price that is not a positive finite number.

    An LTP of 0 means "no trade seen yet" in the feed contract: pricing a position at 0 would
    show a total loss that never happened, so it is refused here rather than trusted.
    """
    if isinstance(ltp, bool) or not isinstance(ltp, int | float | Decimal):
        raise ValueError(f"ltp must be a number, got {type(ltp).__name__}")
    if isinstance(ltp, float) and not math.isfinite(ltp):
        raise ValueError(f"ltp must be finite, got {ltp!r}")
    value = ltp if isinstance(ltp, Decimal) else Decimal(str(ltp))
    if not value.is_finite() or value <= 0:
        raise ValueError(f"ltp must be positive, got {ltp!r}")
    return value


def unrealized(
    entry_price: Decimal, ltp: float, quantity: int, exit_charges: Decimal
) -> PnlFigures:
    """Mark a long position at ``ltp``.

    gross = (ltp - entry_price) x quantity; net = gross - exit_charges (the caller decides what
    the charges cover: the estimate of what closing now would cost). ValueError on a
    non-positive entry price, LTP or quantity, or negative charges.
    """
    if not isinstance(entry_price, Decimal) or not entry_price.is_finite() or entry_price <= 0:
        raise ValueError(f"entry_price must be a positive Decimal, got {entry_price!r}")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
        raise ValueError(f"quantity must be a positive int, got {quantity!r}")
    if not isinstance(exit_charges, Decimal) or not exit_charges.is_finite() or exit_charges < 0:
        raise ValueError(f"exit_charges must be a non-negative Decimal, got {exit_charges!r}")
    price = price_decimal(ltp)
    exact_gross = (price - entry_price) * quantity
    gross = exact_gross.quantize(PAISA, ROUND_HALF_UP)
    # Net from the exact gross, then one rounding: rounding twice could be off by a paisa.
    net = (exact_gross - exit_charges).quantize(PAISA, ROUND_HALF_UP)
    percent = ((price - entry_price) / entry_price * HUNDRED).quantize(
        PERCENT_PLACES, ROUND_HALF_UP
    )
    return PnlFigures(gross=gross, net=net, percent=percent)


def track_extremes(
    peak: Decimal | None, trough: Decimal | None, value: Decimal
) -> tuple[Decimal, Decimal]:
    """(peak, trough) after seeing ``value``. None means "nothing seen yet" (a fresh position or
    a lost cache with empty database columns): the value becomes both."""
    new_peak = value if peak is None or value > peak else peak
    new_trough = value if trough is None or value < trough else trough
    return new_peak, new_trough
