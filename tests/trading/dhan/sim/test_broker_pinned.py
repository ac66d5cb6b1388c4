"""The simulator's fills, pinned level by level: one scripted session on the seeded market.

The other broker tests state each matching rule relative to the book they read; this one pins
the exact trades (order, quantity, price, second), the order updates and the resulting funds and
positions that the simulator produced before its matching moved to ``trading.rules.fills``, so
any change in what the simulator fills, at what price or in what order, shows here.

The session, on the ATM call (35010) and put (35011) of the seed-3 market, 10:00:00-10:00:08:

* A: a buy limit walking three ask levels; B: a buy in the same second finding those levels
  taken, so it rests, then fills at its own limit on the next second;
* C: a sell limit walking three bid levels (closing part of A);
* D / E: MARKET buy and sell of the put, priced by market price protection (10 %);
* F: a large resting buy limit, part-traded at its limit across seconds, after B in time
  priority and sharing the book's displayed quantity with it;
* G: a stop-loss-market sell triggered on the next second, walking the bids at the book;
* H: an IOC buy that walks two levels and cancels the rest;
* I: a resting put buy modified into a marketable one that walks two levels.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from trading.dhan.order_update_codec import OrderUpdate
from trading.dhan.sim.broker import SimBroker
from trading.dhan.sim.market import Market
from trading.rules.market import IST

CLIENT = "1000000001"
CALL = 35010
PUT = 35011
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=IST)


def body(
    security_id: int,
    side: str,
    quantity: int,
    order_type: str = "LIMIT",
    price: float = 0.0,
    trigger: float = 0.0,
    validity: str = "DAY",
) -> dict[str, Any]:
    return {
        "dhanClientId": CLIENT,
        "transactionType": side,
        "exchangeSegment": "NSE_FNO",
        "productType": "INTRADAY",
        "orderType": order_type,
        "validity": validity,
        "securityId": str(security_id),
        "quantity": quantity,
        "price": price,
        "triggerPrice": trigger,
    }


@pytest.fixture(scope="module")
def session() -> dict[str, Any]:
    market = Market(date(2026, 11, 23), seed=3, strikes_each_side=5, weeklies=1, monthlies=1)
    broker = SimBroker(market, client_id=CLIENT, funds=Decimal("10000000"))
    updates: list[OrderUpdate] = []
    broker.add_listener(updates.append)
    t1, t2 = T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)
    ids = {
        "A": broker.place(body(CALL, "BUY", 5655, price=59.40), T0)["orderId"],
        "B": broker.place(body(CALL, "BUY", 65, price=59.35), T0)["orderId"],
        "C": broker.place(body(CALL, "SELL", 1820, price=59.10), T0)["orderId"],
        "D": broker.place(body(PUT, "BUY", 1170, "MARKET"), T0)["orderId"],
        "E": broker.place(body(PUT, "SELL", 650, "MARKET"), T0)["orderId"],
        "F": broker.place(body(CALL, "BUY", 26000, price=58.60), T0)["orderId"],
        "G": broker.place(body(CALL, "SELL", 3315, "STOP_LOSS_MARKET", trigger=58.80), T0)[
            "orderId"
        ],
        "I": broker.place(body(PUT, "BUY", 65, price=100.0), T0)["orderId"],
    }
    broker.on_tick(t1)
    broker.on_tick(t1)  # a second pass in the same market second takes nothing more
    ids["H"] = broker.place(body(CALL, "BUY", 3185, price=58.10, validity="IOC"), t2)["orderId"]
    broker.modify(ids["I"], {**body(PUT, "BUY", 130, price=114.50), "orderId": ids["I"]}, t2)
    for second in range(2, 9):
        broker.on_tick(T0 + timedelta(seconds=second))
    name = {order_id: letter for letter, order_id in ids.items()}
    return {"broker": broker, "updates": updates, "name": name}


def test_every_trade_is_pinned_level_by_level(session):
    name = session["name"]
    trades = [
        (name[t["orderId"]], t["tradedQuantity"], t["tradedPrice"], t["updateTime"][-8:])
        for t in session["broker"].trades()
    ]
    assert trades == [
        ("A", 2210, 59.3, "10:00:00"),
        ("A", 3380, 59.35, "10:00:00"),
        ("A", 65, 59.4, "10:00:00"),
        ("C", 910, 59.2, "10:00:00"),
        ("C", 845, 59.15, "10:00:00"),
        ("C", 65, 59.1, "10:00:00"),
        ("D", 1040, 112.6, "10:00:00"),
        ("D", 130, 112.65, "10:00:00"),
        ("E", 585, 112.45, "10:00:00"),
        ("E", 65, 112.4, "10:00:00"),
        ("B", 65, 59.35, "10:00:01"),
        ("F", 3705, 58.6, "10:00:01"),
        ("G", 3250, 58.5, "10:00:01"),
        ("G", 65, 58.45, "10:00:01"),
        ("H", 975, 58.05, "10:00:02"),
        ("H", 2145, 58.1, "10:00:02"),
        ("I", 65, 114.45, "10:00:02"),
        ("I", 65, 114.5, "10:00:02"),
        ("F", 3640, 58.6, "10:00:02"),
        ("F", 4550, 58.6, "10:00:03"),
        ("F", 12545, 58.6, "10:00:04"),
        ("F", 1560, 58.6, "10:00:06"),
    ]


def test_every_order_update_is_pinned(session):
    name = session["name"]
    updates = [
        (name[u.order_id], u.status.value, u.traded_quantity, u.traded_price, u.price)
        for u in session["updates"]
    ]
    d = Decimal
    assert updates == [
        ("A", "TRANSIT", 0, 0, d("59.4")),
        ("A", "PENDING", 0, 0, d("59.4")),
        ("A", "PART_TRADED", 2210, d("59.3"), d("59.4")),
        ("A", "PART_TRADED", 5590, d("59.35"), d("59.4")),
        ("A", "TRADED", 5655, d("59.4"), d("59.4")),
        ("B", "TRANSIT", 0, 0, d("59.35")),
        ("B", "PENDING", 0, 0, d("59.35")),
        ("C", "TRANSIT", 0, 0, d("59.1")),
        ("C", "PENDING", 0, 0, d("59.1")),
        ("C", "PART_TRADED", 910, d("59.2"), d("59.1")),
        ("C", "PART_TRADED", 1755, d("59.15"), d("59.1")),
        ("C", "TRADED", 1820, d("59.1"), d("59.1")),
        ("D", "TRANSIT", 0, 0, 0),
        ("D", "PENDING", 0, 0, 0),
        ("D", "PART_TRADED", 1040, d("112.6"), d("123.85")),  # MPP: 112.60 x 1.1, tick down
        ("D", "TRADED", 1170, d("112.65"), d("123.85")),
        ("E", "TRANSIT", 0, 0, 0),
        ("E", "PENDING", 0, 0, 0),
        ("E", "PART_TRADED", 585, d("112.45"), d("101.25")),  # MPP: 112.45 x 0.9, tick up
        ("E", "TRADED", 650, d("112.4"), d("101.25")),
        ("F", "TRANSIT", 0, 0, d("58.6")),
        ("F", "PENDING", 0, 0, d("58.6")),
        ("G", "TRANSIT", 0, 0, 0),
        ("G", "PENDING", 0, 0, 0),
        ("I", "TRANSIT", 0, 0, d("100.0")),
        ("I", "PENDING", 0, 0, d("100.0")),
        ("B", "TRADED", 65, d("59.35"), d("59.35")),
        ("F", "PART_TRADED", 3705, d("58.6"), d("58.6")),
        ("G", "PART_TRADED", 3250, d("58.5"), d("52.65")),
        ("G", "TRADED", 3315, d("58.45"), d("52.65")),
        ("H", "TRANSIT", 0, 0, d("58.1")),
        ("H", "PENDING", 0, 0, d("58.1")),
        ("H", "PART_TRADED", 975, d("58.05"), d("58.1")),
        ("H", "PART_TRADED", 3120, d("58.1"), d("58.1")),
        ("H", "CANCELLED", 3120, 0, d("58.1")),
        ("I", "PENDING", 0, 0, d("114.5")),
        ("I", "PART_TRADED", 65, d("114.45"), d("114.5")),
        ("I", "TRADED", 130, d("114.5"), d("114.5")),
        ("F", "PART_TRADED", 7345, d("58.6"), d("58.6")),
        ("F", "PART_TRADED", 11895, d("58.6"), d("58.6")),
        ("F", "PART_TRADED", 24440, d("58.6"), d("58.6")),
        ("F", "TRADED", 26000, d("58.6"), d("58.6")),
    ]


def test_the_order_book_funds_and_positions_are_pinned(session):
    broker, name = session["broker"], session["name"]
    orders = {
        name[o["orderId"]]: (
            o["orderStatus"],
            o["filledQty"],
            o["price"],
            o["averageTradedPrice"],
        )
        for o in broker.orders()
    }
    assert orders == {
        "A": ("TRADED", 5655, 59.4, 59.33),
        "B": ("TRADED", 65, 59.35, 59.35),
        "C": ("TRADED", 1820, 59.1, 59.17),
        "D": ("TRADED", 1170, 123.85, 112.61),
        "E": ("TRADED", 650, 101.25, 112.44),
        "F": ("TRADED", 26000, 58.6, 58.6),
        "G": ("TRADED", 3315, 52.65, 58.5),
        "H": ("CANCELLED", 3120, 58.1, 58.08),
        "I": ("TRADED", 130, 114.5, 114.48),
    }
    funds = broker.fund_limit()
    assert (funds["availabelBalance"], funds["utilizedAmount"]) == (8183880.5, 1814149.86)
    positions = {
        p["securityId"]: (
            p["netQty"],
            p["buyQty"],
            p["sellQty"],
            p["dayBuyValue"],
            p["daySellValue"],
            p["costPrice"],
            p["realizedProfit"],
        )
        for p in broker.positions(T0 + timedelta(seconds=8))
    }
    assert positions == {
        str(CALL): (29705, 34840, 5135, 2044198.0, 301619.5, 58.6, -1865.28),
        str(PUT): (650, 1300, 650, 146630.25, 73089.25, 112.98, -104.36),
    }
