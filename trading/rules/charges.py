"""Charges of one executed index-option order (NSE or BSE), from a dated table of rates.

Pure: values in, rupees out. The table comes from ``config/charges.yml`` through
``trading.charges.load_charges_config``; this module never reads a file or a clock (the trade
date is an argument).

Per executed order (../shared/DOMAIN.md "Charges"), on the premium turnover
``price x quantity``:

============  ==========================================  =========  =========================
component     rate                                        side       rounded to
============  ==========================================  =========  =========================
brokerage     ``brokerage_per_order`` rupees, flat        both       the paisa
stt           ``stt_sell`` x turnover                     SELL only  the RUPEE
exchange_txn  ``exchange_txn[exchange]`` x turnover       both       the paisa
ipft          ``ipft[exchange]`` x turnover               both       the paisa
sebi          ``sebi_per_crore`` / 1 crore x turnover     both       the paisa
stamp_duty    ``stamp_buy`` x turnover                    BUY only   the RUPEE
gst           ``gst`` x (brokerage + exchange_txn + sebi) both       the paisa
============  ==========================================  =========  =========================

Every rounding is ROUND_HALF_UP (0.5 goes up), as Dhan's contract notes do. GST is charged on
the ROUNDED components it applies to (the figures printed on the contract note), then rounded.
``total`` is the sum of the rounded components, so it always equals what a contract note adds
up to. Brokerage is per order: an exit split into several orders (freeze quantity) pays it, and
the GST on it, once per order; call order_charges() once per order.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from types import MappingProxyType
from typing import Any

PAISA = Decimal("0.01")
RUPEE = Decimal("1")
CRORE = Decimal(10_000_000)

SIDES = ("BUY", "SELL")

# Dhan exchange segments of the derivatives we trade -> the exchange whose rates apply.
_SEGMENT_EXCHANGE = {"NSE_FNO": "NSE", "BSE_FNO": "BSE"}


class ChargesError(ValueError):
    """The charges cannot be computed (no rates in force on the date, an exchange the table does
    not know, a bad quantity or price). The caller treats the figure as unknown: it must not
    guess one (a missing rate is a configuration problem for the operator, not a zero)."""


def exchange_of(segment: str) -> str:
    """The exchange whose charges apply to a Dhan exchange segment: NSE_FNO -> NSE,
    BSE_FNO -> BSE. ChargesError for any other segment (equity, currency, commodity)."""
    try:
        return _SEGMENT_EXCHANGE[segment.upper()]
    except (KeyError, AttributeError):
        raise ChargesError(
            f"no charges model for exchange segment {segment!r} "
            f"(expected one of {', '.join(_SEGMENT_EXCHANGE)})"
        ) from None


@dataclass(frozen=True)
class ChargeRates:
    """One dated rate set (one row of charges.yml). Rates are decimal fractions of the premium
    turnover except ``brokerage_per_order`` (rupees per order) and ``sebi_per_crore`` (rupees per
    crore of turnover). ``effective_from`` .. ``effective_to`` inclusive; ``effective_to`` None
    means open-ended. The exchange maps are read-only (``MappingProxyType``)."""

    effective_from: date
    effective_to: date | None
    brokerage_per_order: Decimal
    stt_sell: Decimal
    exchange_txn: Mapping[str, Decimal]
    ipft: Mapping[str, Decimal]
    sebi_per_crore: Decimal
    stamp_buy: Decimal
    gst: Decimal

    def __post_init__(self) -> None:
        # A frozen dataclass holding a plain dict could still be mutated through it.
        for name in ("exchange_txn", "ipft"):
            value = getattr(self, name)
            if not isinstance(value, MappingProxyType):
                object.__setattr__(self, name, MappingProxyType(dict(value)))
        if self.effective_to is not None and self.effective_to < self.effective_from:
            raise ValueError(
                f"rates effective_to {self.effective_to} is before effective_from "
                f"{self.effective_from}"
            )

    def covers(self, day: date) -> bool:
        if day < self.effective_from:
            return False
        return self.effective_to is None or day <= self.effective_to

    @property
    def span(self) -> str:
        """``2024-10-01..2026-03-31`` or ``2026-04-01..`` (open-ended), for messages."""
        return f"{self.effective_from}..{self.effective_to or ''}"


@dataclass(frozen=True)
class ChargesTable:
    """The rate sets in date order, non-overlapping; ``version`` identifies the file content
    (stamp it next to charges you store, so a later rate edit is visible)."""

    rates: tuple[ChargeRates, ...]
    version: str

    def __post_init__(self) -> None:
        if not self.rates:
            raise ValueError("a charges table needs at least one rate set")
        for earlier, later in itertools.pairwise(self.rates):
            if earlier.effective_to is None or later.effective_from <= earlier.effective_to:
                raise ValueError(
                    f"charge rate sets must be in date order without overlaps: "
                    f"{earlier.span} then {later.span}"
                )

    def rates_on(self, day: date) -> ChargeRates:
        """The rate set in force on ``day`` (an IST calendar date); ChargesError naming the
        date and the table's coverage when none is."""
        for rates in self.rates:
            if rates.covers(day):
                return rates
        covered = ", ".join(rates.span for rates in self.rates)
        raise ChargesError(
            f"no charge rates in force on {day.isoformat()}: the charges table "
            f"(version {self.version}) covers {covered}"
        )


@dataclass(frozen=True)
class OrderCharges:
    """Rupees, each component rounded as the module docstring says; ``total`` their sum."""

    brokerage: Decimal
    stt: Decimal
    exchange_txn: Decimal
    ipft: Decimal
    sebi: Decimal
    stamp_duty: Decimal
    gst: Decimal
    total: Decimal

    def as_dict(self) -> dict[str, str]:
        """Every component as a Decimal string (exact in JSON)."""
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}

    def __add__(self, other: OrderCharges) -> OrderCharges:
        if not isinstance(other, OrderCharges):
            return NotImplemented
        return OrderCharges(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )


def _money(value: Any, what: str) -> Decimal:
    """A positive price as a Decimal. Floats go through their shortest repr (110.05 stays
    110.05), as tick prices do elsewhere (trading.rules.pnl.price_decimal)."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int | float):
        raise ChargesError(f"{what} must be a number, got {value!r}")
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    if not number.is_finite() or number <= 0:
        raise ChargesError(f"{what} must be a positive number, got {value!r}")
    return number


def _round(value: Decimal, places: Decimal) -> Decimal:
    return value.quantize(places, rounding=ROUND_HALF_UP)


def order_charges(
    exchange: str,
    side: str,
    quantity: int,
    price: Decimal,
    on: date,
    table: ChargesTable,
) -> OrderCharges:
    """Charges of ONE executed order of ``quantity`` units at ``price`` (rupees per unit) on
    ``exchange`` ("NSE"/"BSE"), ``side`` "BUY" or "SELL", traded on the IST date ``on``.

    ChargesError when no rates are in force on ``on``, for an exchange the rates do not list,
    a side other than BUY/SELL, a quantity that is not a positive whole number or a price that
    is not positive.
    """
    rates = table.rates_on(on)
    exchange = exchange.upper() if isinstance(exchange, str) else exchange
    if exchange not in rates.exchange_txn or exchange not in rates.ipft:
        raise ChargesError(
            f"no charge rates for exchange {exchange!r} on {on.isoformat()} "
            f"(rates {rates.span} list {', '.join(rates.exchange_txn)})"
        )
    if side not in SIDES:
        raise ChargesError(f"side must be BUY or SELL, got {side!r}")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
        raise ChargesError(f"quantity must be a positive whole number, got {quantity!r}")
    turnover = _money(price, "price") * quantity

    brokerage = _round(rates.brokerage_per_order, PAISA)
    stt = _round(turnover * rates.stt_sell, RUPEE) if side == "SELL" else Decimal(0)
    exchange_txn = _round(turnover * rates.exchange_txn[exchange], PAISA)
    ipft = _round(turnover * rates.ipft[exchange], PAISA)
    sebi = _round(turnover * rates.sebi_per_crore / CRORE, PAISA)
    stamp_duty = _round(turnover * rates.stamp_buy, RUPEE) if side == "BUY" else Decimal(0)
    gst = _round((brokerage + exchange_txn + sebi) * rates.gst, PAISA)
    # Rupee-rounded parts are quantized to the paisa too, so every figure reads "12.00".
    stt, stamp_duty = _round(stt, PAISA), _round(stamp_duty, PAISA)
    total = brokerage + stt + exchange_txn + ipft + sebi + stamp_duty + gst
    return OrderCharges(
        brokerage=brokerage,
        stt=stt,
        exchange_txn=exchange_txn,
        ipft=ipft,
        sebi=sebi,
        stamp_duty=stamp_duty,
        gst=gst,
        total=total,
    )


def round_trip(
    exchange: str,
    quantity: int,
    buy_price: Decimal,
    sell_price: Decimal,
    on: date,
    table: ChargesTable,
) -> OrderCharges:
    """A BUY and a SELL of ``quantity`` on the same day, one order each: the two orders'
    charges added component by component (each order rounded on its own, as billed)."""
    return order_charges(exchange, "BUY", quantity, buy_price, on, table) + order_charges(
        exchange, "SELL", quantity, sell_price, on, table
    )
