"""The orders tests' pieces: a NIFTY contract, a sized intent, the real charges, a router on
the paper gateway with a market clock and quotes in the test's hands."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest

from tests.support.rows import make_derivative, make_signal
from trading.charges import charges_table
from trading.config.store import load_algo_config
from trading.orders.gateway import PaperGateway
from trading.orders.intent import EntryIntent
from trading.orders.router import OrderRouter
from trading.rules.charges import exchange_of, order_charges
from trading.rules.market import IST

DAY = date(2026, 11, 23)
T0 = datetime(2026, 11, 23, 10, 30, tzinfo=IST)


def real_charges(segment: str, side: str, quantity: int, turnover: Decimal, on: date) -> Decimal:
    """The journal's charges function on config/charges.yml (what production passes)."""
    price = turnover / quantity
    return order_charges(exchange_of(segment), side, quantity, price, on, charges_table()).total


class Market:
    """Market time and the book in the test's hands."""

    def __init__(self) -> None:
        self.now = T0.timestamp()
        self.quotes: dict[str, tuple[Decimal | None, Decimal | None, Decimal | None]] = {}

    def clock(self) -> float:
        return self.now

    def quote(self, key: str) -> Any:
        return self.quotes.get(key)


@pytest.fixture
def market() -> Market:
    return Market()


@pytest.fixture
def derivative(db) -> Any:
    return make_derivative(55796)


def make_intent(signal_id: int, *, orders: tuple[int, ...] = (130,), **fields: Any) -> EntryIntent:
    values: dict[str, Any] = {
        "signal_id": signal_id,
        "index": "NIFTY",
        "direction": "bullish",
        "exchange_segment": "NSE_FNO",
        "security_id": 55796,
        "symbol": "NIFTY-Nov2026-26000-CE",
        "expiry": date(2026, 11, 24),
        "strike": Decimal("26000"),
        "option_type": "CE",
        "lot_size": 65,
        "tick_size": Decimal("0.05"),
        "lots": sum(orders) // 65,
        "quantity": sum(orders),
        "orders": orders,
        "reference_price": Decimal("100.00"),
        "limit_price": Decimal("102.00"),
        "config_version": "v1",
        "decided_at": T0,
        "underlying_price": Decimal("26012.35"),
        **fields,
    }
    return EntryIntent(**values)


@pytest.fixture
def intent(derivative) -> Any:
    def build(**fields: Any) -> EntryIntent:
        return make_intent(make_signal().pk, **fields)

    return build


@pytest.fixture
def router(market) -> OrderRouter:
    return OrderRouter(
        PaperGateway(),
        config_source=load_algo_config,
        clock=market.clock,
        quote=market.quote,
        freeze_quantity=lambda position: 1800,
    )
