"""The paper account: cash, realized PnL and charges, from the ledger and, as a check, from
the fills alone.

The ledger (``LedgerEntry``) is written with each paper fill (trading/orders/journal.py): the
premium paid for a buy, the proceeds of a sell, the charges. The opening cash is not a row: it
is ``PAPER_SEED_CASH`` or ``paper.seed_cash`` (trading.config.store.paper_seed_cash), so cash =
opening + the sum of the entries. :func:`check_ledger` recomputes every figure from the fills
and says where the two differ: a difference is a bug, never a rounding to live with.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Sum

from trading.models import Fill, LedgerEntry, LedgerKind, OrderSide, TradingMode

__all__ = ["LedgerFigures", "check_ledger", "ledger_figures", "paper_cash"]

PAISA = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class LedgerFigures:
    """Rupees: premium paid (positive), proceeds received, charges; ``flow`` = proceeds -
    premium - charges (what the fills did to the cash)."""

    premium: Decimal
    proceeds: Decimal
    charges: Decimal

    @property
    def flow(self) -> Decimal:
        return self.proceeds - self.premium - self.charges


def ledger_figures() -> LedgerFigures:
    """The figures as the ledger has them."""
    totals = {
        kind: amount or Decimal(0)
        for kind, amount in LedgerEntry.objects.values_list("kind").annotate(Sum("amount"))
    }
    return LedgerFigures(
        premium=-totals.get(LedgerKind.PREMIUM, Decimal(0)),
        proceeds=totals.get(LedgerKind.PROCEEDS, Decimal(0)),
        charges=-totals.get(LedgerKind.CHARGES, Decimal(0)),
    )


def fills_figures() -> LedgerFigures:
    """The same figures recomputed from the paper fills alone."""
    premium = proceeds = charges = Decimal(0)
    for side, quantity, price, fill_charges in Fill.objects.filter(
        order__mode=TradingMode.PAPER
    ).values_list("order__side", "quantity", "price", "charges"):
        value = (price * quantity).quantize(PAISA)
        if side == OrderSide.BUY:
            premium += value
        else:
            proceeds += value
        charges += fill_charges
    return LedgerFigures(premium=premium, proceeds=proceeds, charges=charges)


def check_ledger() -> list[str]:
    """Every figure where the ledger and the fills disagree (empty when they agree)."""
    booked, recomputed = ledger_figures(), fills_figures()
    problems = []
    for name in ("premium", "proceeds", "charges"):
        a, b = getattr(booked, name), getattr(recomputed, name)
        if a != b:
            problems.append(f"{name}: the ledger has {a:.2f}, the fills give {b:.2f}")
    return problems


def paper_cash(opening: Decimal) -> Decimal:
    """The paper account's cash now: the opening cash plus every ledger entry."""
    moved = LedgerEntry.objects.aggregate(total=Sum("amount"))["total"] or Decimal(0)
    return opening + moved
