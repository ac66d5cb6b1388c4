"""Rows for the API and admin tests: signals, contracts and positions with plausible values."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from instruments.models import Derivative
from trading.models import PositionStatus, PositionTracker, TradingSignal

IST = ZoneInfo("Asia/Kolkata")

INDICATORS = {"adx": 27.4, "rsi": 61.2, "supertrend": {"direction": 1, "value": 26012.5}}
INTENT = {
    "key": "NSE_FNO:55796",
    "security_id": 55796,
    "lots": 2,
    "quantity": 130,
    "limit_price": "101.05",
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


def make_derivative(security_id: int = 55796, underlying: str = "NIFTY") -> Derivative:
    moment = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
    return Derivative.objects.create(
        exchange="NSE",
        segment="D",
        exchange_segment="NSE_FNO",
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


def make_position(
    security_id: int = 55796,
    status: str = PositionStatus.ACTIVE,
    underlying: str = "NIFTY",
    **columns: Any,
) -> PositionTracker:
    derivative = Derivative.objects.filter(security_id=security_id).first() or make_derivative(
        security_id, underlying
    )
    values: dict[str, Any] = {
        "quantity": 130,
        "entry_price": Decimal("100.0500"),
        "ltp": Decimal("104.2000"),
        "unrealized_pnl": Decimal("539.50"),
        "unrealized_pnl_net": Decimal("497.13"),
        "direction": "bullish",
        "config_version": "v1a2b3c4",
        **columns,
    }
    return PositionTracker.objects.create(
        derivative=derivative,
        exchange_segment=derivative.exchange_segment,
        security_id=security_id,
        status=status,
        underlying=underlying,
        **values,
    )


def ids(response: object) -> list[int]:
    """The ids of a list response's page, in order."""
    return [row["id"] for row in response.json()["results"]]  # type: ignore[attr-defined]
