"""Database rows for the tests: signals, option contracts and positions with plausible values.

Every value is a keyword with a default, so a test names only what it is about. The defaults
are those the assertions of the API, admin and PnL tests were written against: change one and
those assertions change with it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from instruments.models import Derivative, Instrument
from trading.models import PositionStatus, PositionTracker, TradingSignal
from trading.rules.market import IST

INDICATORS = {"adx": 27.4, "rsi": 61.2, "supertrend": {"direction": 1, "value": 26012.5}}
INTENT = {
    "key": "NSE_FNO:55796",
    "security_id": 55796,
    "lots": 2,
    "quantity": 130,
    "limit_price": "101.05",
}
# An open position as the API and the admin show one: two lots of a NIFTY call bought at
# 100.05, marked at 104.20 by the PnL monitor, opened under config v1a2b3c4.
PRICED: dict[str, Any] = {
    "quantity": 130,
    "entry_price": Decimal("100.0500"),
    "ltp": Decimal("104.2000"),
    "unrealized_pnl": Decimal("539.50"),
    "unrealized_pnl_net": Decimal("497.13"),
    "direction": "bullish",
    "config_version": "v1a2b3c4",
}


def ist(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=IST)


def make_signal(
    index: str = "NIFTY",
    candle_start: datetime | None = None,
    direction: str = "bullish",
    outcome: str = "intent",
    **columns: Any,
) -> TradingSignal:
    """A decided 5-minute candle (10:15 IST on 2026-11-23 unless ``candle_start``); an
    ``intent`` outcome carries INTENT, any other none."""
    values: dict[str, Any] = {
        "timeframe": 300,
        "close": Decimal("26012.35"),
        "confidence": 0.72,
        "indicators": INDICATORS,
        "config_version": "v1a2b3c4",
        "gate": "",
        "intent": INTENT if outcome == "intent" else None,
        **columns,
    }
    return TradingSignal.objects.create(
        index=index,
        candle_start=candle_start or ist(2026, 11, 23, 10, 15),
        direction=direction,
        outcome=outcome,
        **values,
    )


def make_index(
    symbol: str = "NIFTY", security_id: int = 13, *, display_name: str = "", active: bool = True
) -> Instrument:
    """An index of the catalog (IDX_I), as the scrip master lists NIFTY (13) or SENSEX (51);
    ``active`` False: removed from the scrip master."""
    moment = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
    return Instrument.objects.create(
        exchange="BSE" if symbol == "SENSEX" else "NSE",
        segment="I",
        exchange_segment="IDX_I",
        security_id=security_id,
        instrument="INDEX",
        instrument_type="INDEX",
        trading_symbol=symbol,
        display_name=display_name,
        lot_size=1,
        tick_size=Decimal("0.05"),
        is_active=active,
        row_hash="i" * 32,
        created_at=moment,
        updated_at=moment,
    )


def make_derivative(
    security_id: int = 55796, underlying: str = "NIFTY", *, segment: str = "NSE_FNO"
) -> Derivative:
    """A 26000 call of ``underlying`` expiring 2026-11-24, lot 65, in ``segment``."""
    moment = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
    return Derivative.objects.create(
        exchange="NSE",
        segment="D",
        exchange_segment=segment,
        security_id=security_id,
        instrument="OPTIDX",
        instrument_type="OP",
        trading_symbol=f"{underlying}-Nov2026-26000-CE",
        lot_size=65,
        tick_size=Decimal("0.05"),
        row_hash="x" * 32,
        created_at=moment,
        updated_at=moment,
        expiry_date=date(2026, 11, 24),
        expiry_at=datetime(2026, 11, 24, 9, 0, tzinfo=UTC),
        strike=Decimal("26000"),
        option_type="CE",
    )


def hold(contract: Derivative, *, quantity: int | None = None, **columns: Any) -> PositionTracker:
    """A position in ``contract`` (its segment and security id): one lot unless ``quantity``
    says otherwise; every other column as given or the model's default (status PENDING)."""
    return PositionTracker.objects.create(
        derivative=contract,
        exchange_segment=contract.exchange_segment,
        security_id=contract.security_id,
        quantity=contract.lot_size if quantity is None else quantity,
        **columns,
    )


def _contract(security_id: int, underlying: str = "NIFTY") -> Derivative:
    """The contract ``security_id``: an existing one (a test may make it first, in another
    segment), else a new one from make_derivative."""
    found = Derivative.objects.filter(security_id=security_id).first()
    return found or make_derivative(security_id, underlying)


def make_position(
    security_id: int = 55796,
    status: str = PositionStatus.ACTIVE,
    underlying: str = "NIFTY",
    **columns: Any,
) -> PositionTracker:
    """An open position as the API and the admin show one (PRICED, then ``columns``)."""
    return hold(
        _contract(security_id, underlying),
        status=status,
        underlying=underlying,
        **{**PRICED, **columns},
    )


def unpriced_position(
    security_id: int = 55796,
    status: str = PositionStatus.ACTIVE,
    entry_price: Decimal | None = Decimal("100"),
    quantity: int = 65,
    **columns: Any,
) -> PositionTracker:
    """One lot bought at 100 that the PnL monitor has not priced yet: no ltp, no PnL, no
    underlying or direction (what the PnL tests start from)."""
    return hold(
        _contract(security_id),
        status=status,
        quantity=quantity,
        entry_price=entry_price,
        **columns,
    )


def ids(response: object) -> list[int]:
    """The ids of a list response's page, in order."""
    return [row["id"] for row in response.json()["results"]]  # type: ignore[attr-defined]
