"""The simulator's order engine: validation, matching, MPP, stops, books, positions, funds.

Pure tests: a seeded Market, explicit market times, no database, no network, no wall clock.
Where a test needs the market to move (a resting order crossed, a stop triggered) it searches
the seeded path forward for the first second that does, so it states the condition, not a time.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

import pytest

from trading.dhan.feed_codec import IST
from trading.dhan.order_update_codec import OrderUpdate, order_alert_message, parse_message
from trading.dhan.rest_types import (
    Endpoint,
    FundLimit,
    KillSwitchResponse,
    OrderBookResponse,
    OrderLookupResponse,
    OrderStatusResponse,
    PositionsResponse,
    TradeBookResponse,
)
from trading.dhan.sim.broker import MAX_MODIFICATIONS, BrokerError, SimBroker
from trading.dhan.sim.market import Market, Quote

DAY = date(2026, 11, 23)
CLIENT = "1000000001"
CALL = 35010  # NIFTY 26000 CE, nearest (24 Nov) expiry: at the money, liquid
PUT = 35011
FUT = 35022  # NIFTY Nov future
SEG = "NSE_FNO"
LOT = 65
TEN = datetime(2026, 11, 23, 10, 0, tzinfo=IST)
REST = 20.0  # a buy limit far below the ATM call (~60-90 all day): it rests


def at(hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(2026, 11, 23, hh, mm, ss, tzinfo=IST)


@pytest.fixture(scope="module")
def market() -> Market:
    return Market(DAY, seed=3, strikes_each_side=5, weeklies=1, monthlies=1)


class Recorder:
    """A listener that keeps every OrderUpdate."""

    def __init__(self) -> None:
        self.updates: list[OrderUpdate] = []

    def __call__(self, update: OrderUpdate) -> None:
        self.updates.append(update)

    def statuses(self, order_id: str) -> list[str]:
        return [u.status for u in self.updates if u.order_id == order_id]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def make_broker(market: Market, recorder: Recorder | None = None, **kwargs: Any) -> SimBroker:
    broker = SimBroker(market, client_id=CLIENT, **kwargs)
    if recorder is not None:
        broker.add_listener(recorder)
    return broker


@pytest.fixture
def broker(market: Market, recorder: Recorder) -> SimBroker:
    return make_broker(market, recorder)


def order_body(**overrides: Any) -> dict[str, Any]:
    """A valid LIMIT BUY of one lot of the ATM call; ``None`` overrides delete a key."""
    body: dict[str, Any] = {
        "dhanClientId": CLIENT,
        "transactionType": "BUY",
        "exchangeSegment": SEG,
        "productType": "INTRADAY",
        "orderType": "LIMIT",
        "validity": "DAY",
        "securityId": str(CALL),
        "quantity": LOT,
        "disclosedQuantity": 0,
        "price": REST,
        "triggerPrice": 0,
        "afterMarketOrder": False,
        "boProfitValue": None,
        "boStopLossValue": None,
    }
    for key, value in overrides.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def quote(market: Market, t: datetime, sid: int = CALL) -> Quote:
    return market.quote(SEG, sid, t)


def d(value: float) -> Decimal:
    return Decimal(repr(value))


def first_time(
    start: datetime, condition: Callable[[datetime], bool], limit_s: int = 4 * 3600
) -> datetime:
    """The first whole second after ``start`` at which ``condition`` holds."""
    for s in range(1, limit_s):
        t = start + timedelta(seconds=s)
        if condition(t):
            return t
    raise AssertionError("the seeded market never met the condition")


def order_of(broker: SimBroker, order_id: str) -> dict[str, Any]:
    (row,) = broker.order(order_id)
    return row


def place(broker: SimBroker, t: datetime = TEN, **overrides: Any) -> str:
    answer = broker.place(order_body(**overrides), t)
    assert answer["orderStatus"] == "TRANSIT"
    return answer["orderId"]


def modify_body(order_id: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "dhanClientId": CLIENT,
        "orderId": order_id,
        "orderType": "LIMIT",
        "legName": "ENTRY_LEG",
        "quantity": LOT,
        "price": REST,
        "disclosedQuantity": 0,
        "triggerPrice": 0,
        "validity": "DAY",
    }
    for key, value in overrides.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


# -- input validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"transactionType": None}, "transactionType"),
        ({"transactionType": "B"}, "transactionType"),
        ({"exchangeSegment": "NSE"}, "exchangeSegment"),
        ({"productType": "NRML"}, "productType"),
        ({"productType": "BO"}, "productType"),
        ({"orderType": "LMT"}, "orderType"),
        ({"validity": "GTC"}, "validity"),
        ({"securityId": ""}, "securityId"),
        ({"securityId": "999999"}, "securityId"),
        ({"exchangeSegment": "BSE_FNO"}, "securityId"),
        ({"exchangeSegment": "IDX_I", "securityId": "13"}, "securityId"),
        ({"quantity": None}, "quantity"),
        ({"quantity": LOT + 1}, "quantity"),
        ({"quantity": 0}, "quantity"),
        ({"quantity": "abc"}, "quantity"),
        ({"quantity": 97.5}, "quantity"),
        ({"price": ""}, "price"),
        ({"price": None}, "price"),
        ({"price": 100.03}, "price"),
        ({"price": -5}, "price"),
        ({"disclosedQuantity": LOT * 2}, "disclosedQuantity"),
        ({"orderType": "STOP_LOSS", "triggerPrice": None}, "triggerPrice"),
        ({"orderType": "STOP_LOSS", "price": 50.0, "triggerPrice": 51.0}, "triggerPrice"),
        ({"orderType": "STOP_LOSS_MARKET", "triggerPrice": 99.99}, "triggerPrice"),
        ({"correlationId": "x" * 26}, "correlationId"),
        ({"correlationId": "bad$id"}, "correlationId"),
        ({"correlationId": ""}, "correlationId"),
        ({"dhanClientId": "1000000002"}, "dhanClientId"),
        ({"dhanClientId": None}, "dhanClientId"),
        ({"afterMarketOrder": "maybe"}, "afterMarketOrder"),
        ({"afterMarketOrder": True, "amoTime": "LATER"}, "amoTime"),
    ],
)
def test_a_bad_field_is_a_dh905_naming_the_field(broker, recorder, overrides, field):
    with pytest.raises(BrokerError) as caught:
        broker.place(order_body(**overrides), TEN)
    error = caught.value
    assert (error.status, error.error_code, error.error_type) == (400, "DH-905", "Input_Exception")
    assert error.message.startswith(f"{field}:")
    assert error.body() == {
        "errorType": "Input_Exception",
        "errorCode": "DH-905",
        "errorMessage": error.message,
    }
    assert broker.orders() == [] and recorder.updates == []


def test_numbers_as_strings_are_accepted_as_the_docs_samples_send_them(broker):
    order_id = place(broker, quantity=str(LOT), price="100.05", securityId=CALL)
    row = order_of(broker, order_id)
    assert row["quantity"] == LOT and row["price"] == 100.05


def test_an_active_kill_switch_refuses_placement_with_dh906(broker):
    assert KillSwitchResponse.from_wire(broker.kill_switch(True)).active is True
    assert KillSwitchResponse.from_wire(broker.kill_switch_status()).active is True
    with pytest.raises(BrokerError) as caught:
        broker.place(order_body(), TEN)
    assert (caught.value.status, caught.value.error_code) == (400, "DH-906")
    assert caught.value.body()["errorType"] == "Order_Error"
    broker.kill_switch(False)
    assert KillSwitchResponse.from_wire(broker.kill_switch_status()).killSwitchStatus == (
        "DEACTIVATE"
    )
    place(broker)


def test_the_kill_switch_cannot_be_activated_with_an_open_order(broker):
    place(broker)  # rests well below the market
    with pytest.raises(BrokerError) as caught:
        broker.kill_switch(True)
    assert caught.value.error_code == "DH-906"
    assert broker.kill_switch_status()["killSwitchStatus"] == "DEACTIVATE"


# -- RMS rejections ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "broker_kwargs", "overrides", "reason"),
    [
        (at(9, 0), {}, {}, "Market is Closed"),
        (at(15, 30), {}, {}, "Market is Closed"),
        (TEN, {"funds": Decimal("1000")}, {"price": 200.0}, "Insufficient funds"),
        (
            TEN,
            {"funds": Decimal("50000")},
            {"transactionType": "SELL", "price": 500.0},
            "Insufficient funds",
        ),
        (TEN, {}, {"productType": "CNC"}, "CNC product is not allowed"),
        (
            TEN,
            {},
            {"orderType": "STOP_LOSS_MARKET", "triggerPrice": 1.0},
            "Trigger price for a stop loss buy order must be above",
        ),
    ],
    ids=["before-open", "at-close", "buy-funds", "short-margin", "cnc", "crossed-trigger"],
)
def test_an_rms_rejection_is_answered_transit_then_rejected(
    market, recorder, when, broker_kwargs, overrides, reason
):
    broker = make_broker(market, recorder, **broker_kwargs)
    order_id = place(broker, when, **overrides)
    row = order_of(broker, order_id)
    assert row["orderStatus"] == "REJECTED"
    assert row["omsErrorDescription"].startswith(f"RMS:{order_id}:{reason}")
    assert row["omsErrorCode"] != "0" and row["exchangeOrderId"] == "0"
    assert recorder.statuses(order_id) == ["TRANSIT", "REJECTED"]
    assert recorder.updates[-1].reason == row["omsErrorDescription"]
    assert broker.trades() == [] and broker.positions(TEN) == []
    assert FundLimit.from_wire(broker.fund_limit()).utilizedAmount == 0


def test_a_short_sell_blocks_margin_on_the_index_notional_and_a_long_exit_does_not(market):
    broker = make_broker(market, short_margin_pct=0.10)
    open_level = Decimal(repr(market.index_level("NIFTY", market.clock.open_at)))
    q = quote(market, TEN)
    place(broker, transactionType="SELL", price=q.best_ask + 50)  # rests far above the book
    assert d(broker.fund_limit()["utilizedAmount"]) == (open_level * Decimal("0.10") * LOT)

    fresh = make_broker(market)
    place(fresh, price=q.best_ask)  # bought: one lot long
    paid = d(fresh.fund_limit()["utilizedAmount"])
    place(fresh, transactionType="SELL", price=q.best_ask + 50)  # closes the long: no block
    assert d(fresh.fund_limit()["utilizedAmount"]) == paid


# -- matching ----------------------------------------------------------------------------------


def test_a_marketable_limit_buy_fills_at_the_best_ask(broker, recorder, market):
    q = quote(market, TEN)
    qty = q.depth[0].ask_qty
    order_id = place(broker, price=q.best_ask, quantity=qty)
    row = order_of(broker, order_id)
    assert (row["orderStatus"], row["filledQty"], row["remainingQuantity"]) == ("TRADED", qty, 0)
    assert row["averageTradedPrice"] == q.best_ask
    assert row["exchangeOrderId"] != "0" and row["omsErrorDescription"] == "CONFIRMED"
    assert recorder.statuses(order_id) == ["TRANSIT", "PENDING", "TRADED"]
    (trade,) = broker.trades()
    assert (trade["tradedQuantity"], trade["tradedPrice"]) == (qty, q.best_ask)


def test_a_marketable_limit_walks_the_book_one_trade_per_level(broker, recorder, market):
    q = quote(market, TEN)
    qty = q.depth[0].ask_qty + q.depth[1].ask_qty + LOT
    order_id = place(broker, price=q.depth[2].ask_price, quantity=qty)
    trades = [(t["tradedQuantity"], t["tradedPrice"]) for t in broker.trades()]
    assert trades == [
        (q.depth[0].ask_qty, q.depth[0].ask_price),
        (q.depth[1].ask_qty, q.depth[1].ask_price),
        (LOT, q.depth[2].ask_price),
    ]
    assert recorder.statuses(order_id) == [
        "TRANSIT",
        "PENDING",
        "PART_TRADED",
        "PART_TRADED",
        "TRADED",
    ]
    value = sum(Decimal(q_) * d(p) for q_, p in trades)
    assert d(order_of(broker, order_id)["averageTradedPrice"]) == (value / qty).quantize(
        Decimal("0.01")
    )


def test_a_sell_limit_walks_the_bids(broker, market):
    q = quote(market, TEN)
    broker.place(order_body(price=q.best_ask, quantity=LOT * 3), TEN)  # something to sell
    order_id = place(broker, transactionType="SELL", price=q.best_bid, quantity=LOT)
    assert order_of(broker, order_id)["averageTradedPrice"] == q.best_bid


def test_displayed_quantity_is_not_sold_twice_in_the_same_second(broker, market):
    q = quote(market, TEN)
    level = q.depth[0].ask_qty
    first = place(broker, price=q.best_ask, quantity=level)
    second = place(broker, price=q.best_ask, quantity=LOT)
    assert order_of(broker, first)["orderStatus"] == "TRADED"
    assert order_of(broker, second)["orderStatus"] == "PENDING"


def test_a_resting_limit_fills_at_its_own_price_when_the_book_crosses_it(broker, market):
    q = quote(market, TEN)
    limit = q.best_bid
    order_id = place(broker, price=limit, quantity=LOT)
    assert order_of(broker, order_id)["orderStatus"] == "PENDING"
    crossed = first_time(TEN, lambda t: quote(market, t).best_ask <= limit)
    broker.on_tick(crossed - timedelta(seconds=1))  # not crossed yet: nothing happens
    assert order_of(broker, order_id)["filledQty"] == 0
    broker.on_tick(crossed)
    row = order_of(broker, order_id)
    assert row["orderStatus"] == "TRADED" and row["averageTradedPrice"] == limit
    assert broker.trades()[-1]["tradedPrice"] == limit


def test_a_large_resting_order_is_part_traded_across_ticks(market, recorder):
    broker = make_broker(market, recorder, funds=Decimal("100000000"))
    q = quote(market, TEN)
    limit = q.best_bid
    qty = 400 * LOT  # far more than one tick of displayed depth
    order_id = place(broker, price=limit, quantity=qty)
    t, fills = TEN, []
    for _ in range(3):
        t = first_time(t, lambda s: quote(market, s).best_ask <= limit)
        shown = sum(lvl.ask_qty for lvl in quote(market, t).depth if 0 < lvl.ask_price <= limit)
        before = order_of(broker, order_id)["filledQty"]
        broker.on_tick(t)
        broker.on_tick(t)  # a second pass in the same market second takes nothing more
        fills.append(order_of(broker, order_id)["filledQty"] - before)
        assert fills[-1] == shown
    row = order_of(broker, order_id)
    assert row["orderStatus"] == "PART_TRADED" and row["filledQty"] == sum(fills) < qty
    assert row["remainingQuantity"] == qty - sum(fills)
    assert recorder.statuses(order_id) == ["TRANSIT", "PENDING"] + ["PART_TRADED"] * 3
    assert all(t["tradedPrice"] == limit for t in broker.trades())


def test_ioc_fills_what_the_book_shows_and_cancels_the_rest(broker, recorder, market):
    q = quote(market, TEN)
    shown = q.depth[0].ask_qty
    order_id = place(broker, price=q.best_ask, quantity=shown + LOT, validity="IOC")
    row = order_of(broker, order_id)
    assert (row["orderStatus"], row["filledQty"], row["remainingQuantity"]) == (
        "CANCELLED",
        shown,
        LOT,
    )
    assert recorder.statuses(order_id) == ["TRANSIT", "PENDING", "PART_TRADED", "CANCELLED"]


def test_an_ioc_that_cannot_trade_is_cancelled_at_once(broker, recorder):
    order_id = place(broker, price=1.0, validity="IOC")
    assert order_of(broker, order_id)["orderStatus"] == "CANCELLED"
    assert recorder.statuses(order_id) == ["TRANSIT", "PENDING", "CANCELLED"]
    assert broker.trades() == []


# -- market orders and MPP ---------------------------------------------------------------------


@pytest.mark.parametrize("side", ["BUY", "SELL"])
def test_a_market_order_becomes_a_limit_at_the_mpp_price(market, side):
    broker = make_broker(market, mpp_pct=0.10, funds=Decimal("10000000"))
    q = quote(market, TEN)
    tick = Decimal("0.05")
    if side == "BUY":
        expected = (d(q.best_ask) * Decimal("1.1") / tick).to_integral_value(ROUND_FLOOR) * tick
    else:
        expected = (d(q.best_bid) * Decimal("0.9") / tick).to_integral_value(ROUND_CEILING) * tick
    order_id = place(broker, transactionType=side, orderType="MARKET", price=0)
    row = order_of(broker, order_id)
    assert d(row["price"]) == expected and row["orderType"] == "MARKET"
    assert row["orderStatus"] == "TRADED"
    touch = q.best_ask if side == "BUY" else q.best_bid
    assert row["averageTradedPrice"] == touch  # filled at the book, not at the protection


def test_a_market_order_capped_by_mpp_stays_open(market, recorder):
    broker = make_broker(market, recorder, mpp_pct=0.0)
    q = quote(market, TEN)
    shown = q.depth[0].ask_qty
    order_id = place(broker, orderType="MARKET", price=0, quantity=shown + 2 * LOT)
    row = order_of(broker, order_id)
    assert row["orderStatus"] == "PART_TRADED"
    assert (row["filledQty"], row["remainingQuantity"]) == (shown, 2 * LOT)
    assert row["price"] == q.best_ask  # a zero band: protected at the touch
    assert recorder.statuses(order_id) == ["TRANSIT", "PENDING", "PART_TRADED"]
    assert recorder.updates[-1].price == d(q.best_ask)


# -- stops -------------------------------------------------------------------------------------


def test_a_stop_loss_buy_rests_until_the_ltp_reaches_the_trigger(broker, recorder, market):
    q = quote(market, TEN)
    trigger = d(q.ltp) + Decimal("0.50")
    price = trigger + Decimal("5.00")
    order_id = place(broker, orderType="STOP_LOSS", triggerPrice=float(trigger), price=float(price))
    assert order_of(broker, order_id)["orderStatus"] == "PENDING"
    hit = first_time(TEN, lambda t: d(quote(market, t).ltp) >= trigger)
    broker.on_tick(hit - timedelta(seconds=1))
    assert order_of(broker, order_id)["filledQty"] == 0
    broker.on_tick(hit)
    row = order_of(broker, order_id)
    assert row["orderStatus"] == "TRADED"
    assert row["averageTradedPrice"] == quote(market, hit).best_ask  # at the book, <= price
    assert recorder.statuses(order_id) == ["TRANSIT", "PENDING", "TRADED"]


def test_a_stop_loss_market_sell_triggers_and_trades_at_the_bid(market, recorder):
    broker = make_broker(market, recorder)
    q = quote(market, TEN)
    place(broker, price=q.best_ask, quantity=LOT)  # long one lot first
    trigger = d(q.ltp) - Decimal("0.50")
    order_id = place(
        broker,
        transactionType="SELL",
        orderType="STOP_LOSS_MARKET",
        triggerPrice=float(trigger),
        price=0,
    )
    assert order_of(broker, order_id)["orderStatus"] == "PENDING"
    hit = first_time(TEN, lambda t: d(quote(market, t).ltp) <= trigger)
    broker.on_tick(hit)
    row = order_of(broker, order_id)
    assert row["orderStatus"] == "TRADED"
    assert row["averageTradedPrice"] == quote(market, hit).best_bid
    assert d(row["price"]) > 0  # the MPP limit it was sent with once triggered
    assert broker.positions(hit)[0]["positionType"] == "CLOSED"


# -- modify and cancel -------------------------------------------------------------------------


def test_a_modified_order_keeps_resting_and_reports_the_change(broker, recorder):
    order_id = place(broker, price=REST)
    answer = broker.modify(order_id, modify_body(order_id, price=REST + 1, quantity=2 * LOT), TEN)
    assert OrderStatusResponse.from_wire(answer).orderId == order_id
    row = order_of(broker, order_id)
    assert (row["price"], row["quantity"], row["orderStatus"]) == (REST + 1, 2 * LOT, "PENDING")
    assert recorder.statuses(order_id) == ["TRANSIT", "PENDING", "PENDING"]
    assert recorder.updates[-1].price == Decimal("21") and recorder.updates[-1].quantity == 130


def test_a_modification_that_becomes_marketable_trades_at_the_book(broker, market):
    q = quote(market, TEN)
    order_id = place(broker, price=REST)
    broker.modify(order_id, modify_body(order_id, price=q.best_ask + 1), TEN)
    row = order_of(broker, order_id)
    assert row["orderStatus"] == "TRADED" and row["averageTradedPrice"] == q.best_ask


def test_cancel_answers_cancelled_and_releases_the_block(broker, recorder):
    order_id = place(broker, price=REST, quantity=2 * LOT)
    assert d(broker.fund_limit()["utilizedAmount"]) == Decimal(20 * 2 * LOT)
    answer = broker.cancel(order_id, TEN)
    assert answer == {"orderId": order_id, "orderStatus": "CANCELLED"}
    OrderStatusResponse.from_wire(answer)
    assert order_of(broker, order_id)["orderStatus"] == "CANCELLED"
    assert recorder.statuses(order_id)[-1] == "CANCELLED"
    assert broker.fund_limit()["utilizedAmount"] == 0


def _traded(broker: SimBroker, market: Market) -> str:
    return place(broker, price=quote(market, TEN).best_ask)


def _cancelled(broker: SimBroker, market: Market) -> str:
    order_id = place(broker)
    broker.cancel(order_id, TEN)
    return order_id


def _rejected(broker: SimBroker, market: Market) -> str:
    return place(broker, productType="MTF")


@pytest.mark.parametrize(
    ("make", "state"),
    [(_traded, "Traded"), (_cancelled, "Cancelled"), (_rejected, "Rejected")],
)
@pytest.mark.parametrize("action", ["modify", "cancel"])
def test_a_finished_order_cannot_be_modified_or_cancelled(broker, market, make, state, action):
    order_id = make(broker, market)
    with pytest.raises(BrokerError) as caught:
        if action == "modify":
            broker.modify(order_id, modify_body(order_id), TEN)
        else:
            broker.cancel(order_id, TEN)
    assert (caught.value.status, caught.value.error_code) == (400, "DH-906")
    assert caught.value.message == f"Order is in {state} state"


@pytest.mark.parametrize("action", ["modify", "cancel"])
def test_an_unknown_order_cannot_be_modified_or_cancelled(broker, action):
    with pytest.raises(BrokerError) as caught:
        if action == "modify":
            broker.modify("999", modify_body("999"), TEN)
        else:
            broker.cancel("999", TEN)
    assert caught.value.error_code == "DH-906"


@pytest.mark.parametrize("action", ["modify", "cancel"])
def test_a_live_order_cannot_be_touched_after_the_close(broker, action):
    order_id = place(broker)
    with pytest.raises(BrokerError) as caught:
        if action == "modify":
            broker.modify(order_id, modify_body(order_id), at(15, 31))
        else:
            broker.cancel(order_id, at(15, 31))
    assert caught.value.error_code == "DH-906"
    assert caught.value.message == "Market is Closed! You cannot modify/cancel an order now."


def test_an_order_can_be_modified_25_times_and_no_more(broker):
    order_id = place(broker)
    for i in range(MAX_MODIFICATIONS):
        broker.modify(order_id, modify_body(order_id, price=REST + (i + 1) * 0.05), TEN)
    with pytest.raises(BrokerError) as caught:
        broker.modify(order_id, modify_body(order_id, price=REST - 1), TEN)
    assert caught.value.error_code == "DH-906"
    assert order_of(broker, order_id)["price"] == REST + 1.25


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"quantity": LOT}, "quantity"),  # not more than what has traded
        ({"price": 20.02}, "price"),
        ({"orderId": "123"}, "orderId"),
        ({"dhanClientId": "42"}, "dhanClientId"),
        ({"orderType": None}, "orderType"),
    ],
)
def test_a_bad_modification_is_a_dh905_and_changes_nothing(broker, market, overrides, field):
    q = quote(market, TEN)
    shown = q.depth[0].ask_qty
    order_id = place(broker, price=q.best_ask, quantity=shown + LOT)
    before = order_of(broker, order_id)
    assert before["orderStatus"] == "PART_TRADED" and before["filledQty"] >= LOT
    with pytest.raises(BrokerError) as caught:
        body = modify_body(order_id, quantity=shown + LOT, price=q.best_ask)
        body.update(overrides)
        broker.modify(order_id, {k: v for k, v in body.items() if v is not None}, TEN)
    assert caught.value.error_code == "DH-905" and caught.value.message.startswith(f"{field}:")
    assert order_of(broker, order_id) == before


def test_a_plain_order_modifies_without_a_leg_name_and_refuses_the_order_books_na(broker):
    # PROTOCOL.md 1.4: legName is ENTRY_LEG / TARGET_LEG / STOP_LOSS_LEG, and "NA" is what the
    # order book shows for a plain order: an answer, not a request value. The client's
    # ModifyOrderRequest refuses "NA" too (test_rest_types), so both sides agree.
    order_id = place(broker, price=REST)
    broker.modify(order_id, modify_body(order_id, legName=None, price=REST + 1), TEN)
    assert order_of(broker, order_id)["legName"] == "NA"
    before = order_of(broker, order_id)
    with pytest.raises(BrokerError) as caught:
        broker.modify(order_id, modify_body(order_id, legName="NA", price=REST + 2), TEN)
    assert (caught.value.status, caught.value.error_code) == (400, "DH-905")
    assert caught.value.message == (
        "legName: expected one of ['ENTRY_LEG', 'STOP_LOSS_LEG', 'TARGET_LEG'], got 'NA'"
    )
    assert order_of(broker, order_id) == before


def test_a_modification_the_funds_cannot_cover_is_refused(market):
    broker = make_broker(market, funds=Decimal("10000"))
    order_id = place(broker, price=REST)
    with pytest.raises(BrokerError) as caught:
        broker.modify(order_id, modify_body(order_id, quantity=10 * LOT), TEN)
    assert caught.value.error_code == "DH-906" and "Insufficient funds" in caught.value.message
    assert order_of(broker, order_id)["quantity"] == LOT


def test_modifying_a_stop_to_an_already_crossed_trigger_is_refused(broker, market):
    q = quote(market, TEN)
    trigger = d(q.ltp) + 1
    order_id = place(broker, orderType="STOP_LOSS_MARKET", triggerPrice=float(trigger), price=0)
    body = modify_body(order_id, orderType="STOP_LOSS_MARKET", triggerPrice=float(d(q.ltp) - 1))
    with pytest.raises(BrokerError) as caught:
        broker.modify(order_id, body, TEN)
    assert caught.value.message.startswith("triggerPrice:")
    assert d(order_of(broker, order_id)["triggerPrice"]) == trigger


# -- session boundaries ------------------------------------------------------------------------


def test_open_day_orders_expire_at_the_close(broker, recorder):
    order_id = place(broker)
    broker.on_tick(at(15, 29, 59))
    assert order_of(broker, order_id)["orderStatus"] == "PENDING"
    broker.on_tick(at(15, 30))
    assert order_of(broker, order_id)["orderStatus"] == "EXPIRED"
    broker.on_tick(at(15, 30, 1))
    assert recorder.statuses(order_id) == ["TRANSIT", "PENDING", "EXPIRED"]


def test_an_amo_before_the_open_goes_to_the_exchange_on_the_first_tick(broker, recorder, market):
    order_id = place(broker, at(8, 30), afterMarketOrder=True, amoTime="OPEN")
    row = order_of(broker, order_id)
    assert (row["orderStatus"], row["exchangeOrderId"], row["afterMarketOrder"]) == (
        "PENDING",
        "0",
        True,
    )
    broker.on_tick(at(9, 0))  # still closed
    assert order_of(broker, order_id)["exchangeOrderId"] == "0"
    broker.on_tick(at(9, 15))
    row = order_of(broker, order_id)
    assert row["exchangeOrderId"] != "0" and row["exchangeTime"] == "2026-11-23 09:15:00"
    assert recorder.statuses(order_id) == ["TRANSIT", "PENDING", "PENDING"]


def test_an_amo_before_the_open_can_still_be_cancelled(broker):
    order_id = place(broker, at(8, 30), afterMarketOrder=True, amoTime="OPEN")
    assert broker.cancel(order_id, at(8, 45))["orderStatus"] == "CANCELLED"


def test_an_amo_after_the_close_waits_for_the_next_session(broker):
    order_id = place(broker, at(15, 45), afterMarketOrder=True, amoTime="OPEN")
    broker.on_tick(at(15, 50))
    row = order_of(broker, order_id)
    assert (row["orderStatus"], row["exchangeOrderId"]) == ("PENDING", "0")


# -- lookups -----------------------------------------------------------------------------------


def test_an_order_is_found_by_its_correlation_id(broker):
    order_id = place(broker, correlationId="strat-1_leg A")
    found = broker.order_by_correlation_id("strat-1_leg A")
    assert found["orderId"] == order_id and found["correlationId"] == "strat-1_leg A"
    parsed = OrderLookupResponse.from_wire(found, endpoint=Endpoint.ORDER_BY_CORRELATION_ID)
    assert parsed.order is not None and parsed.order.orderId == order_id


def test_an_unknown_correlation_id_is_a_404_dh906(broker):
    place(broker)
    assert order_of(broker, broker.orders()[0]["orderId"])["correlationId"] == "NA"
    with pytest.raises(BrokerError) as caught:
        broker.order_by_correlation_id("NA")
    assert (caught.value.status, caught.value.error_code) == (404, "DH-906")


def test_an_unknown_order_id_is_an_empty_list(broker):
    assert broker.order("123") == []
    assert OrderLookupResponse.from_wire(broker.order("123")).order is None


def test_order_ids_are_numeric_increasing_and_deterministic(market):
    one, two = make_broker(market, seed=4), make_broker(market, seed=4)
    ids = [place(one) for _ in range(3)]
    assert ids == [place(two) for _ in range(3)]
    assert all(i.isdigit() and len(i) == 12 for i in ids)
    assert [int(i) for i in ids] == sorted(int(i) for i in ids) and len(set(ids)) == 3


# -- positions and funds -----------------------------------------------------------------------


def _check_invariants(broker: SimBroker, market: Market, now: datetime) -> None:
    """What must hold whatever happened: P&L identity, funds formula, books agree."""
    positions = PositionsResponse.from_wire(broker.positions(now))
    funds = FundLimit.from_wire(broker.fund_limit())
    trades = TradeBookResponse.from_wire(broker.trades())
    orders = OrderBookResponse.from_wire(broker.orders())
    cent = Decimal("0.02")
    realized_total = Decimal(0)
    margin = Decimal(repr(market.index_level("NIFTY", market.clock.open_at))) * Decimal("0.09")
    expected_utilized = Decimal(0)
    for p in positions:
        mine = [t for t in trades if t.securityId == p.securityId]
        buys = [t for t in mine if t.transactionType == "BUY"]
        sells = [t for t in mine if t.transactionType == "SELL"]
        assert p.dayBuyQty == sum(t.tradedQuantity for t in buys)
        assert p.daySellQty == sum(t.tradedQuantity for t in sells)
        assert p.dayBuyValue == sum(t.tradedQuantity * t.tradedPrice for t in buys)
        assert p.daySellValue == sum(t.tradedQuantity * t.tradedPrice for t in sells)
        assert p.netQty == p.dayBuyQty - p.daySellQty
        assert p.positionType == ("LONG" if p.netQty > 0 else "SHORT" if p.netQty < 0 else "CLOSED")
        ltp = Decimal(repr(market.last_trade(SEG, int(p.securityId), now)[0]))
        total = p.realizedProfit + p.unrealizedProfit
        assert abs(total - (p.daySellValue - p.dayBuyValue + p.netQty * ltp)) <= cent
        realized_total += p.realizedProfit
        if p.netQty > 0:
            expected_utilized += p.netQty * p.costPrice
        elif p.netQty < 0:
            expected_utilized += -p.netQty * margin
    open_orders = [o for o in orders if o.orderStatus in ("PENDING", "PART_TRADED")]
    for o in orders:
        assert o.filledQty == sum(t.tradedQuantity for t in trades if t.orderId == o.orderId)
    if not open_orders:
        assert abs(funds.utilizedAmount - expected_utilized) <= cent
    assert abs(
        funds.availabelBalance - (funds.sodLimit - funds.utilizedAmount + realized_total)
    ) <= (cent)
    if not open_orders and all(p.netQty == 0 for p in positions):
        flows = sum(p.daySellValue - p.dayBuyValue for p in positions)
        assert abs(funds.availabelBalance - (funds.sodLimit + flows)) <= cent


def test_positions_and_funds_stay_consistent_through_a_round_trip_and_a_flip(market):
    broker = make_broker(market)
    t = TEN
    steps = [("BUY", 3), ("SELL", 1), ("SELL", 4), ("BUY", 2), ("BUY", 0)]
    for side, lots in steps:
        q = quote(market, t)
        if lots:
            price = q.best_ask if side == "BUY" else q.best_bid
            place(broker, t, transactionType=side, price=price, quantity=lots * LOT)
        else:  # flatten whatever is left
            net = broker.positions(t)[0]["netQty"]
            if net:
                side = "BUY" if net < 0 else "SELL"
                price = q.best_ask if side == "BUY" else q.best_bid
                place(broker, t, transactionType=side, price=price, quantity=abs(net))
        _check_invariants(broker, market, t)
        t += timedelta(minutes=7)
    (position,) = broker.positions(t)
    assert position["positionType"] == "CLOSED" and position["dayBuyQty"] == 5 * LOT
    assert position["realizedProfit"] == pytest.approx(
        position["daySellValue"] - position["dayBuyValue"], abs=0.02
    )


def test_realized_profit_uses_average_cost(market):
    broker = make_broker(market)
    q1 = quote(market, TEN)
    place(broker, TEN, price=q1.best_ask, quantity=LOT)
    t2 = TEN + timedelta(minutes=30)
    q2 = quote(market, t2)
    place(broker, t2, price=q2.best_ask, quantity=LOT)
    t3 = TEN + timedelta(minutes=60)
    q3 = quote(market, t3)
    place(broker, t3, transactionType="SELL", price=q3.best_bid, quantity=LOT)
    (p,) = broker.positions(t3)
    average = (d(q1.best_ask) + d(q2.best_ask)) / 2
    assert d(p["realizedProfit"]) == ((d(q3.best_bid) - average) * LOT).quantize(Decimal("0.01"))
    assert d(p["costPrice"]) == average.quantize(Decimal("0.01"))
    _check_invariants(broker, market, t3)


def test_a_futures_position_blocks_margin_not_its_notional(market):
    broker = make_broker(market)
    q = quote(market, TEN, FUT)
    place(broker, securityId=str(FUT), price=q.best_ask, quantity=LOT)
    assert broker.positions(TEN)[0]["netQty"] == LOT
    margin = Decimal(repr(market.index_level("NIFTY", market.clock.open_at))) * Decimal("0.09")
    assert d(broker.fund_limit()["utilizedAmount"]) == (margin * LOT).quantize(Decimal("0.01"))


def test_holdings_are_always_empty(broker):
    assert broker.holdings() == []


# -- wire shapes -------------------------------------------------------------------------------


def test_every_wire_dict_is_json_and_parses_with_the_rest_types(broker, market):
    q = quote(market, TEN)
    placed = broker.place(order_body(price=q.best_ask, correlationId="c1"), TEN)
    resting = place(broker, price=REST)
    modified = broker.modify(resting, modify_body(resting, price=REST + 0.5), TEN)
    cancelled = broker.cancel(resting, TEN)
    for answer in (placed, modified, cancelled):
        assert OrderStatusResponse.from_wire(json.dumps(answer)).orderId
    book = OrderBookResponse.from_wire(json.dumps(broker.orders()))
    assert [o.orderStatus for o in book] == ["TRADED", "CANCELLED"]
    first = book.orders[0]
    assert first.createTime == TEN and first.exchangeTime == TEN
    assert first.drvExpiryDate == date(2026, 11, 24) and first.drvOptionType == "CALL"
    assert first.securityId == str(CALL) and first.correlationId == "c1"
    assert OrderLookupResponse.from_wire(json.dumps(broker.order(resting))).order is not None
    trades = TradeBookResponse.from_wire(json.dumps(broker.trades()))
    assert len(trades) == 1 and trades.trades[0].exchangeTradeId
    positions = PositionsResponse.from_wire(json.dumps(broker.positions(TEN)))
    assert positions.positions[0].positionType == "LONG"
    funds = FundLimit.from_wire(json.dumps(broker.fund_limit()))
    assert funds.sodLimit == Decimal("1000000") and funds.receiveableAmount == 0
    assert json.dumps(broker.holdings()) == "[]"
    assert KillSwitchResponse.from_wire(json.dumps(broker.kill_switch_status())).active is False


def test_order_times_are_ist_wall_clock_with_unset_sentinels(broker):
    order_id = place(broker, at(9, 0))  # rejected: never reached the exchange
    row = order_of(broker, order_id)
    assert row["createTime"] == "2026-11-23 09:00:00"
    assert row["exchangeTime"] == "0001-01-01 00:00:00"
    assert row["legName"] == "NA" and row["algoId"] == "0"


# -- order updates -----------------------------------------------------------------------------


def test_each_update_carries_the_order_as_it_was_at_that_transition(broker, recorder, market):
    q = quote(market, TEN)
    shown = q.depth[0].ask_qty
    order_id = place(broker, price=q.depth[1].ask_price, quantity=shown + LOT, correlationId="u1")
    transit, pending, part, full = recorder.updates
    assert [u.status for u in recorder.updates] == ["TRANSIT", "PENDING", "PART_TRADED", "TRADED"]
    assert transit.exchange_order_id is None and pending.exchange_order_id is not None
    assert all(u.order_id == order_id and u.correlation_id == "u1" for u in recorder.updates)
    assert (part.traded_quantity, part.remaining_quantity) == (shown, LOT)
    assert part.traded_price == d(q.depth[0].ask_price)
    assert (full.traded_quantity, full.remaining_quantity) == (shown + LOT, 0)
    assert full.traded_price == d(q.depth[1].ask_price)
    value = d(q.depth[0].ask_price) * shown + d(q.depth[1].ask_price) * LOT
    assert full.avg_traded_price == (value / (shown + LOT)).quantize(Decimal("0.01"))
    assert full.symbol == "NIFTY-Nov2026-26000-CE" and full.security_id == CALL
    assert (full.transaction_type, full.product_type, full.order_type) == (
        "BUY",
        "INTRADAY",
        "LIMIT",
    )
    assert full.exchange_segment == SEG and full.validity == "DAY" and full.quantity == shown + LOT
    assert full.order_time == TEN and full.updated_at == TEN and full.reason == "CONFIRMED"
    assert all(u.status_known for u in recorder.updates)


@pytest.mark.parametrize("casing", ["pascal", "camel"])
@pytest.mark.parametrize("numbers_as_strings", [False, True])
def test_every_update_survives_the_order_alert_encoding(
    broker, recorder, market, casing, numbers_as_strings
):
    q = quote(market, TEN)
    place(broker, price=q.best_ask, correlationId="enc")
    place(broker, productType="MTF")  # a rejection, with its RMS text
    resting = place(broker, price=REST)
    broker.cancel(resting, TEN)
    assert len(recorder.updates) == 8
    for update in recorder.updates:
        text = order_alert_message(update, casing=casing, numbers_as_strings=numbers_as_strings)
        assert parse_message(text) == update


def test_a_failing_listener_does_not_stop_the_others_or_the_order(market, recorder):
    broker = SimBroker(market, client_id=CLIENT)

    def broken(update: OrderUpdate) -> None:
        raise RuntimeError("boom")

    broker.add_listener(broken)
    broker.add_listener(recorder)
    order_id = place(broker)
    assert recorder.statuses(order_id) == ["TRANSIT", "PENDING"]


def test_concurrent_placements_get_distinct_ids_and_ordered_updates(market, recorder):
    broker = make_broker(market, recorder)
    ids: list[str] = []

    def worker() -> None:
        for _ in range(25):
            ids.append(place(broker))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 100 and len(broker.orders()) == 100
    # Updates of one placement are never interleaved with another's.
    pairs = list(zip(recorder.updates[::2], recorder.updates[1::2], strict=True))
    assert all(a.order_id == b.order_id and a.status == "TRANSIT" for a, b in pairs)
