"""Catalog queries the trading code uses. Each reads only active rows, in indexed ways.

Underlyings are passed as an ``Instrument`` (an index or stock) or its symbol (``"NIFTY"``).
Strikes and sizes come from the catalog; freeze quantities from ``config/instruments.yml``.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from instruments.config import catalog_config
from instruments.models import Derivative, ExchangeSegment, Instrument, OptionType


class CatalogError(LookupError):
    """The catalog has no such instrument or contract; the message names what was asked."""


Underlying = Instrument | str


def index_by_name(name: str) -> Instrument:
    """An index by its symbol or display name, case-insensitive: ``NIFTY`` -> IDX_I 13."""
    wanted = name.strip()
    base = Instrument.objects.filter(exchange_segment=ExchangeSegment.IDX_I, is_active=True)
    found = base.filter(trading_symbol__iexact=wanted).first()
    if found is None:
        found = base.filter(display_name__iexact=wanted).order_by("security_id").first()
    if found is None:
        raise CatalogError(f"no index named {name!r} in the catalog (is it imported?)")
    return found


def underlying(value: Underlying) -> Instrument:
    return value if isinstance(value, Instrument) else index_by_name(value)


def _options(value: Underlying, expiry: date | None = None):  # noqa: ANN202 - a QuerySet
    qs = Derivative.objects.filter(
        underlying=underlying(value),
        is_active=True,
        option_type__in=(OptionType.CALL, OptionType.PUT),
    )
    return qs if expiry is None else qs.filter(expiry_date=expiry)


def expiries(value: Underlying, on_or_after: date, *, kind: str = "options") -> list[date]:
    """Expiry dates on or after ``on_or_after``, nearest first; ``kind``: options|futures."""
    if kind == "options":
        qs = _options(value)
    elif kind == "futures":
        qs = Derivative.objects.filter(
            underlying=underlying(value), is_active=True, option_type=OptionType.NONE
        )
    else:
        raise ValueError(f"kind must be 'options' or 'futures', got {kind!r}")
    return list(
        qs.filter(expiry_date__gte=on_or_after)
        .order_by("expiry_date")
        .values_list("expiry_date", flat=True)
        .distinct()
    )


def option_contract(
    value: Underlying, expiry: date, strike: Decimal | int | str, option_type: str
) -> Derivative:
    kind = option_type.upper()
    if kind not in (OptionType.CALL, OptionType.PUT):
        raise ValueError(f"option_type must be CE or PE, got {option_type!r}")
    contract = _options(value, expiry).filter(strike=Decimal(str(strike)), option_type=kind).first()
    if contract is None:
        name = value if isinstance(value, str) else value.trading_symbol
        raise CatalogError(f"no {name} {expiry} {strike} {kind} contract in the catalog")
    return contract


def strikes(value: Underlying, expiry: date) -> list[Decimal]:
    """All strikes listed for the expiry (calls or puts), ascending."""
    return list(
        _options(value, expiry).order_by("strike").values_list("strike", flat=True).distinct()
    )


def nearest_strike(value: Underlying, expiry: date, spot: Decimal | float) -> Decimal:
    """The listed strike closest to ``spot``; on an exact tie the lower strike (stable choice)."""
    listed = strikes(value, expiry)
    if not listed:
        raise CatalogError(f"no strikes listed for {value} expiring {expiry}")
    target = Decimal(str(spot))
    return min(listed, key=lambda k: (abs(k - target), k))


def contract(exchange_segment: str, security_id: int) -> Derivative | Instrument:
    """Any catalog row by its instrument key parts (derivatives first)."""
    for model in (Derivative, Instrument):
        row = model.objects.filter(
            exchange_segment=exchange_segment, security_id=security_id
        ).first()
        if row is not None:
            return row
    raise CatalogError(f"{exchange_segment}:{security_id} is not in the catalog")


def lot_size(exchange_segment: str, security_id: int) -> int:
    return contract(exchange_segment, security_id).lot_size


def tick_size(exchange_segment: str, security_id: int) -> Decimal:
    """Minimum price step in rupees."""
    return contract(exchange_segment, security_id).tick_size


def freeze_quantity(symbol: Underlying) -> int:
    """Most units one order may carry for the underlying (config; the scrip master lacks it)."""
    name = symbol if isinstance(symbol, str) else symbol.trading_symbol
    table = catalog_config().freeze_quantity
    try:
        return table[name.upper()]
    except KeyError:
        raise CatalogError(
            f"no freeze quantity configured for {name!r}: add it under freeze_quantity in "
            "config/instruments.yml"
        ) from None
