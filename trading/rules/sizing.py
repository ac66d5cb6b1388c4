"""How many lots to buy (DOMAIN "Entry" step 4), and how to split them under the freeze limit.

Pure. Money is Decimal; the config's float fractions enter through their shortest repr
(``Decimal(str(0.12))`` is exactly 0.12), and every lot count is an exact floor by Decimal
integer division (``//``), never a float division that could land on 2.9999999 and lose a lot.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from trading.config.types import SizingConfig

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Size:
    """The entry size: ``lots`` (the least of the four limits), ``quantity`` in units, and the
    ``orders`` carrying it (units each, every one at most the freeze quantity). The four limits
    are kept for the signal row. ``reason`` is set only when ``lots`` is 0 and names the
    limit(s) that allow no lot."""

    lots: int
    quantity: int
    orders: tuple[int, ...]
    risk_lots: int
    allocation_lots: int
    affordable_lots: int
    max_lots: int
    reason: str | None

    @property
    def ok(self) -> bool:
        return self.lots > 0

    @property
    def binding(self) -> str:
        """Which limit set the size: "affordability", "allocation", "risk" or "max_lots"; on a
        tie the first in that order (with a 100% allocation the cash itself is the limit)."""
        limits = {
            "affordability": self.affordable_lots,
            "allocation": self.allocation_lots,
            "risk": self.risk_lots,
            "max_lots": self.max_lots,
        }
        return min(limits, key=lambda name: limits[name])


def _fraction(value: float, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return Decimal(str(value))


def _rupees(amount: Decimal) -> str:
    return f"{amount:,.2f}"


def size_entry(
    entry_price: Decimal,
    lot_size: int,
    cash: Decimal,
    sizing: SizingConfig,
    sl_pct: float,
    freeze_quantity: int,
) -> Size:
    """Whole lots = min(risk lots, allocation lots, affordable lots, ``sizing.max_lots``):

    * risk lots = floor(risk_per_trade_rupees / (entry x sl_pct x lot)): what hitting the
      initial stop would lose stays within the per-trade risk;
    * allocation lots = floor(cash x capital_alloc_pct / (entry x lot));
    * affordable lots = floor(cash / (entry x lot)).

    ``entry_price`` is rupees per unit (the expected fill, e.g. the ask). Negative cash counts
    as none. Zero lots gives ``ok`` False with a reason; otherwise the quantity is split by
    :func:`split_for_freeze`. ValueError for a non-positive price, lot size or stop fraction
    (a zero stop would make the risk limit infinite) and for a freeze below one lot.
    """
    if not isinstance(entry_price, Decimal) or not entry_price.is_finite() or entry_price <= 0:
        raise ValueError(f"entry_price must be a positive Decimal, got {entry_price!r}")
    if isinstance(lot_size, bool) or not isinstance(lot_size, int) or lot_size <= 0:
        raise ValueError(f"lot_size must be a positive int, got {lot_size!r}")
    if not isinstance(cash, Decimal) or not cash.is_finite():
        raise ValueError(f"cash must be a finite Decimal, got {cash!r}")
    stop = _fraction(sl_pct, "sl_pct")
    if stop <= 0:
        raise ValueError(f"sl_pct must be above 0, got {sl_pct!r}")
    alloc = _fraction(sizing.capital_alloc_pct, "capital_alloc_pct")
    _check_freeze(lot_size, freeze_quantity)

    available = max(cash, ZERO)
    lot_cost = entry_price * lot_size
    lot_risk = lot_cost * stop
    budget = available * alloc
    risk_budget = max(sizing.risk_per_trade_rupees, ZERO)
    # Decimal // is exact integer division (truncation, = floor for these non-negative values).
    risk_lots = int(risk_budget // lot_risk)
    allocation_lots = int(budget // lot_cost)
    affordable_lots = int(available // lot_cost)
    max_lots = max(sizing.max_lots, 0)
    lots = min(risk_lots, allocation_lots, affordable_lots, max_lots)

    if lots > 0:
        quantity = lots * lot_size
        orders = split_for_freeze(quantity, lot_size, freeze_quantity)
        reason = None
    else:
        quantity, orders = 0, ()
        why = []
        if affordable_lots == 0:
            why.append(
                f"cash {_rupees(available)} is below one lot: {lot_size} x "
                f"{_rupees(entry_price)} = {_rupees(lot_cost)}"
            )
        if allocation_lots == 0 and affordable_lots > 0:
            why.append(
                f"allocation {alloc:.2%} of cash {_rupees(available)} = {_rupees(budget)} "
                f"is below one lot of {_rupees(lot_cost)}"
            )
        if risk_lots == 0:
            why.append(
                f"risk per trade {_rupees(risk_budget)} is below the risk of one lot: "
                f"{lot_size} x {_rupees(entry_price)} x {stop:.2%} stop = {_rupees(lot_risk)}"
            )
        if max_lots == 0:
            why.append("max_lots is 0")
        reason = "zero lots: " + "; ".join(why)
    return Size(
        lots=lots,
        quantity=quantity,
        orders=orders,
        risk_lots=risk_lots,
        allocation_lots=allocation_lots,
        affordable_lots=affordable_lots,
        max_lots=max_lots,
        reason=reason,
    )


def _check_freeze(lot_size: int, freeze_quantity: int) -> None:
    if isinstance(freeze_quantity, bool) or not isinstance(freeze_quantity, int):
        raise ValueError(f"freeze_quantity must be an int, got {freeze_quantity!r}")
    if freeze_quantity < lot_size:
        raise ValueError(
            f"freeze quantity {freeze_quantity} is below one lot of {lot_size}: no order could "
            "carry even one lot (check freeze_quantity in the config against the lot size)"
        )


def split_for_freeze(quantity: int, lot_size: int, freeze_quantity: int) -> tuple[int, ...]:
    """Orders (units each) carrying ``quantity``: as many full orders of the most whole lots
    that fit in ``freeze_quantity`` as needed, then the remainder. NIFTY lot 65, freeze 1800:
    at most 27 lots (1755 units) an order, so 30 lots -> (1755, 195). An order above the freeze
    quantity is rejected by the exchange, hence the split.

    ValueError when ``quantity`` is negative or not whole lots, or the freeze is below one lot.
    """
    if isinstance(lot_size, bool) or not isinstance(lot_size, int) or lot_size <= 0:
        raise ValueError(f"lot_size must be a positive int, got {lot_size!r}")
    _check_freeze(lot_size, freeze_quantity)
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
        raise ValueError(f"quantity must be a non-negative int, got {quantity!r}")
    if quantity % lot_size:
        raise ValueError(f"quantity {quantity} is not a whole number of lots of {lot_size}")
    per_order = (freeze_quantity // lot_size) * lot_size
    full, rest = divmod(quantity, per_order)
    return (per_order,) * full + ((rest,) if rest else ())
