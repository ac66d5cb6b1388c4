"""trading.dhan.rest_types: Dhan's real REST bodies parse, requests carry the documented keys."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from trading.dhan.feed_codec import IST
from trading.dhan.ratelimit import load_limits
from trading.dhan.rest_types import (
    CORRELATION_ID_MAX_LEN,
    BadResponse,
    CancelOrderRequest,
    ChartResponse,
    DailyChartRequest,
    Endpoint,
    ExpiryListRequest,
    ExpiryListResponse,
    FullQuote,
    FundLimit,
    HoldingsResponse,
    IntradayChartRequest,
    KillSwitchRequest,
    KillSwitchResponse,
    MarketQuoteRequest,
    ModifyOrderRequest,
    NoParams,
    OptionChainRequest,
    OptionChainResponse,
    Order,
    OrderBookResponse,
    OrderByCorrelationIdRequest,
    OrderByIdRequest,
    OrderLookupResponse,
    OrderStatusResponse,
    PlaceOrderRequest,
    PositionsResponse,
    Profile,
    QuoteResponse,
    RateCategory,
    RenewTokenResponse,
    SendsParams,
    TradeBookResponse,
)
from trading.dhan.vocab import (
    ExchangeSegment,
    OrderType,
    ProductType,
    TransactionType,
    Validity,
)

# ---------------------------------------------------------------------------------------------
# Real recorded bodies (PROTOCOL.md 1.5-1.10; dhanhq-client VCR cassettes, 2025).

FUNDLIMIT_BODY = (
    '{"dhanClientId":"1000000001","availabelBalance":115.64,"sodLimit":115.64,'
    '"collateralAmount":0.0,"receiveableAmount":0.0,"utilizedAmount":0.0,'
    '"blockedPayoutAmount":0.0,"withdrawableBalance":115.64}'
)

ORDER_BY_ID_BODY = (
    '[{"dhanClientId":"1000000001","orderId":"952502167319","exchangeOrderId":"0",'
    '"correlationId":"NA","orderStatus":"PENDING","transactionType":"BUY",'
    '"exchangeSegment":"BSE_EQ","productType":"CNC","orderType":"LIMIT","validity":"DAY",'
    '"tradingSymbol":"THINKINK","securityId":"539310","quantity":20,"disclosedQuantity":0,'
    '"price":0.36,"triggerPrice":0.0,"afterMarketOrder":true,"boProfitValue":0.0,'
    '"boStopLossValue":0.0,"legName":"NA","createTime":"2025-02-16 16:04:37",'
    '"updateTime":"2025-02-16 16:04:37","exchangeTime":"0001-01-01 00:00:00",'
    '"drvExpiryDate":"0001-01-01","drvOptionType":"NA","drvStrikePrice":0.0,'
    '"omsErrorCode":"0","omsErrorDescription":"","algoId":"0","remainingQuantity":20,'
    '"averageTradedPrice":0.0,"filledQty":0}]'
)

PROFILE_BODY = (
    '{"dhanClientId":"1100003626","tokenValidity":"30/03/2025 15:37",'
    '"activeSegment":"Equity, Derivative, Currency, Commodity","ddpi":"Active","mtf":"Active",'
    '"dataPlan":"Active","dataValidity":"2024-12-05 09:37:52.0"}'
)

QUOTE_FULL_BODY = (
    '{"data":{"NSE_FNO":{"49081":{"average_price":0,"buy_quantity":0,"depth":{"buy":['
    + ",".join(['{"quantity":0,"orders":0,"price":0}'] * 5)
    + '],"sell":['
    + ",".join(['{"quantity":0,"orders":0,"price":0}'] * 5)
    + '],"last_price":0,"last_quantity":0,"last_trade_time":"","lower_circuit_limit":0.05,'
    '"net_change":0,"ohlc":{"open":0,"close":0,"high":0,"low":0},"oi":0,"oi_day_high":0,'
    '"oi_day_low":0,"sell_quantity":0,"upper_circuit_limit":20.05,"volume":0}}},'
    '"status":"success"}'
).replace('],"last_price"', ']},"last_price"')

QUOTE_LTP_BODY = '{"data":{"NSE_EQ":{"11536":{"last_price":4520}}},"status":"success"}'

# POST /charts/historical, NSE_EQ 1333, 2022-01-08 -> 2022-02-08, recorded 2025-01-28.
CHART_DAILY_BODY = (
    '{"open":[1558.0,1561.55,1568.0,1555.0,1530.0,1530.0,1533.0,1534.0,1528.45,1500.0,1509.95,'
    "1458.65,1450.0,1477.5,1472.75,1508.5,1511.95,1528.75,1528.4,1512.1],"
    '"high":[1572.0,1568.7,1576.65,1555.0,1548.7,1556.0,1550.9,1539.75,1528.5,1529.8,1521.25,'
    "1495.0,1485.0,1486.7,1491.55,1517.0,1535.0,1539.95,1532.85,1519.0],"
    '"low":[1545.5,1547.8,1552.0,1520.4,1519.0,1519.15,1523.0,1513.35,1500.1,1485.6,1467.55,'
    "1444.0,1435.0,1460.0,1466.8,1473.45,1505.6,1509.0,1514.1,1460.0],"
    '"close":[1559.15,1565.9,1556.65,1528.0,1545.15,1521.5,1529.25,1518.45,1509.0,1521.6,'
    "1486.65,1488.05,1474.95,1463.25,1485.7,1497.0,1531.2,1515.35,1524.0,1468.15],"
    '"volume":[4428248.0,4194599.0,1.0542765E7,2.0981948E7,5604484.0,1.1494686E7,6170576.0,'
    "7158813.0,7598923.0,5768847.0,5934254.0,6797124.0,1.4308919E7,1.2462604E7,6421273.0,"
    "7369742.0,6984645.0,5282381.0,5789979.0,6134021.0],"
    '"timestamp":[1.641753E9,1.6418394E9,1.6419258E9,1.6420122E9,1.6420986E9,1.6423578E9,'
    "1.6424442E9,1.6425306E9,1.642617E9,1.6427034E9,1.6429626E9,1.643049E9,1.6432218E9,"
    "1.6433082E9,1.6435674E9,1.6436538E9,1.6437402E9,1.6438266E9,1.643913E9,1.6441722E9]}"
)

_ZERO_LEG = (
    '"greeks":{"delta":0,"theta":0,"gamma":0,"vega":0},"implied_volatility":0,"last_price":0,'
    '"oi":0,"previous_close_price":0,"previous_oi":0,"previous_volume":0,"top_ask_price":0,'
    '"top_ask_quantity":0,"top_bid_price":0,"top_bid_quantity":0,"volume":0'
)
# NIFTY 2025-01-30 chain, first strikes, recorded 2025-01-28 (theta really is "-0").
OPTION_CHAIN_BODY = (
    '{"data":{"last_price":22952.94921875,"oc":{'
    '"17650.000000":{"ce":{' + _ZERO_LEG + '},"pe":{"greeks":{"delta":0,"theta":-0,"gamma":0,'
    '"vega":0},"implied_volatility":9.832241405137111,"last_price":0,"oi":0,'
    '"previous_close_price":0,"previous_oi":0,"previous_volume":0,"top_ask_price":0,'
    '"top_ask_quantity":0,"top_bid_price":0,"top_bid_quantity":0,"volume":0}},'
    '"17600.000000":{"ce":{' + _ZERO_LEG + '},"pe":{"greeks":{"delta":0,"theta":-0,"gamma":0,'
    '"vega":0},"implied_volatility":9.935963798959326,"last_price":0,"oi":0,'
    '"previous_close_price":0,"previous_oi":0,"previous_volume":0,"top_ask_price":0,'
    '"top_ask_quantity":0,"top_bid_price":0,"top_bid_quantity":0,"volume":0}}}},'
    '"status":"success"}'
)

# Position row as documented (PROTOCOL.md 1.6; SDK test data shape), NIFTY option, short.
POSITION_ROW = {
    "dhanClientId": "1000000001",
    "tradingSymbol": "NIFTY-Jan2025-23900-CE",
    "securityId": "43512",
    "positionType": "SHORT",
    "exchangeSegment": "NSE_FNO",
    "productType": "INTRADAY",
    "buyAvg": 0.0,
    "costPrice": 104.35,
    "buyQty": 0,
    "sellAvg": 104.35,
    "sellQty": 75,
    "netQty": -75,
    "realizedProfit": 0.0,
    "unrealizedProfit": 412.5,
    "rbiReferenceRate": 1.0,
    "multiplier": 1,
    "carryForwardBuyQty": 0,
    "carryForwardSellQty": 0,
    "carryForwardBuyValue": 0.0,
    "carryForwardSellValue": 0.0,
    "dayBuyQty": 0,
    "daySellQty": 75,
    "dayBuyValue": 0.0,
    "daySellValue": 7826.25,
    "drvExpiryDate": "2025-01-30",
    "drvOptionType": "CALL",
    "drvStrikePrice": 23900.0,
    "crossCurrency": False,
}


def ist(*args: int) -> datetime:
    return datetime(*args, tzinfo=IST)


# ---------------------------------------------------------------------------------------------
# Endpoint table

ENDPOINTS = [
    (Endpoint.PLACE_ORDER, "POST", "/orders", "orders"),
    (Endpoint.MODIFY_ORDER, "PUT", "/orders/{order_id}", "orders"),
    (Endpoint.CANCEL_ORDER, "DELETE", "/orders/{order_id}", "orders"),
    (Endpoint.ORDER_BOOK, "GET", "/orders", "non_trading"),
    (Endpoint.ORDER_BY_ID, "GET", "/orders/{order_id}", "non_trading"),
    (
        Endpoint.ORDER_BY_CORRELATION_ID,
        "GET",
        "/orders/external/{correlation_id}",
        "non_trading",
    ),
    (Endpoint.TRADE_BOOK, "GET", "/trades", "non_trading"),
    (Endpoint.POSITIONS, "GET", "/positions", "non_trading"),
    (Endpoint.HOLDINGS, "GET", "/holdings", "non_trading"),
    (Endpoint.FUND_LIMIT, "GET", "/fundlimit", "non_trading"),
    (Endpoint.PROFILE, "GET", "/profile", "non_trading"),
    (Endpoint.QUOTE_LTP, "POST", "/marketfeed/ltp", "quotes"),
    (Endpoint.QUOTE_OHLC, "POST", "/marketfeed/ohlc", "quotes"),
    (Endpoint.QUOTE_FULL, "POST", "/marketfeed/quote", "quotes"),
    (Endpoint.CHART_INTRADAY, "POST", "/charts/intraday", "data"),
    (Endpoint.CHART_DAILY, "POST", "/charts/historical", "data"),
    (Endpoint.EXPIRY_LIST, "POST", "/optionchain/expirylist", "option_chain"),
    (Endpoint.OPTION_CHAIN, "POST", "/optionchain", "option_chain"),
    (Endpoint.KILL_SWITCH, "POST", "/killswitch", "orders"),
    (Endpoint.KILL_SWITCH_STATUS, "GET", "/killswitch", "non_trading"),
    (Endpoint.RENEW_TOKEN, "GET", "/RenewToken", "non_trading"),
]


@pytest.mark.parametrize(("endpoint", "method", "path", "category"), ENDPOINTS)
def test_each_endpoint_has_its_documented_method_path_and_rate_category(
    endpoint, method, path, category
):
    assert (endpoint.method, endpoint.path, endpoint.rate_category) == (method, path, category)


def test_the_table_lists_every_endpoint_once():
    assert {row[0] for row in ENDPOINTS} == set(Endpoint)


def test_every_rate_category_is_configured_in_ratelimits_yml():
    assert {c.value for c in RateCategory} <= set(load_limits())


def test_bodies_go_in_json_for_posts_and_puts_and_the_kill_switch_uses_the_query():
    for endpoint in Endpoint:
        if endpoint is Endpoint.KILL_SWITCH:
            assert endpoint.sends is SendsParams.QUERY
        elif endpoint.method in ("POST", "PUT"):
            assert endpoint.sends is SendsParams.JSON
        else:
            assert endpoint.sends is SendsParams.NONE


def test_path_parameters_are_filled_and_url_quoted():
    assert Endpoint.ORDER_BY_ID.url_path(order_id="952502167319") == "/orders/952502167319"
    assert (
        Endpoint.ORDER_BY_CORRELATION_ID.url_path(correlation_id="ab c/1")
        == "/orders/external/ab%20c%2F1"
    )
    assert Endpoint.POSITIONS.url_path() == "/positions"
    with pytest.raises(ValueError, match="order_id"):
        Endpoint.CANCEL_ORDER.url_path()


# ---------------------------------------------------------------------------------------------
# Real bodies


def test_the_real_fund_limit_parses_under_dhans_misspelled_keys():
    funds = FundLimit.from_wire(json.loads(FUNDLIMIT_BODY))
    assert funds.availabelBalance == Decimal("115.64")
    assert funds.receiveableAmount == Decimal("0.0")
    assert funds.sodLimit == Decimal("115.64")
    assert funds.withdrawableBalance == Decimal("115.64")
    assert funds.utilizedAmount == funds.blockedPayoutAmount == funds.collateralAmount == 0
    assert funds.dhanClientId == "1000000001"


def test_fund_limit_also_accepts_the_correct_spellings_if_dhan_fixes_them():
    funds = FundLimit.from_wire({"availableBalance": "10.5", "receivableAmount": 2})
    assert funds.availabelBalance == Decimal("10.5")
    assert funds.receiveableAmount == Decimal(2)


def test_the_real_order_by_id_array_becomes_one_order():
    order = OrderLookupResponse.from_wire(json.loads(ORDER_BY_ID_BODY)).order
    assert order is not None
    assert order.orderId == "952502167319"
    assert order.orderStatus == "PENDING"
    assert order.securityId == "539310"
    assert order.quantity == 20
    assert order.remainingQuantity == 20
    assert order.filledQty == 0
    assert order.price == Decimal("0.36")
    assert order.afterMarketOrder is True
    assert order.createTime == ist(2025, 2, 16, 16, 4, 37)
    assert order.createTime.utcoffset().total_seconds() == 19800
    # Dhan's year-1 "unset" values
    assert order.exchangeTime is None
    assert order.drvExpiryDate is None
    # string sentinels are kept as sent
    assert (order.correlationId, order.legName, order.drvOptionType) == ("NA", "NA", "NA")
    assert (order.exchangeOrderId, order.omsErrorCode, order.algoId) == ("0", "0", "0")


def test_an_unknown_order_id_answers_an_empty_array_which_is_none():
    assert OrderLookupResponse.from_wire([]).order is None
    assert OrderLookupResponse.from_wire(b"[]", Endpoint.ORDER_BY_CORRELATION_ID).order is None


def test_order_by_id_also_accepts_the_documented_bare_object():
    row = json.loads(ORDER_BY_ID_BODY)[0]
    assert OrderLookupResponse.from_wire(row).order == Order.from_wire(row)


def test_order_by_id_with_two_orders_is_a_bad_response():
    row = json.loads(ORDER_BY_ID_BODY)[0]
    with pytest.raises(BadResponse, match=r"^order_by_id: expected at most one order, got 2$"):
        OrderLookupResponse.from_wire([row, row])


def test_the_order_book_is_a_bare_array_of_orders():
    book = OrderBookResponse.from_wire(ORDER_BY_ID_BODY)
    assert len(book) == 1
    assert next(iter(book)).tradingSymbol == "THINKINK"
    assert len(OrderBookResponse.from_wire([])) == 0


@pytest.mark.parametrize(
    ("endpoint", "body", "status"),
    [
        (Endpoint.PLACE_ORDER, '{"orderId":"752502167405","orderStatus":"TRANSIT"}', "TRANSIT"),
        (Endpoint.MODIFY_ORDER, '{"orderId":"752502167405","orderStatus":"PENDING"}', "PENDING"),
        (Endpoint.CANCEL_ORDER, {"orderId": 752502167405, "orderStatus": "CANCELLED"}, "CANCELLED"),
    ],
)
def test_place_modify_and_cancel_answer_order_id_and_status(endpoint, body, status):
    answer = OrderStatusResponse.from_wire(body, endpoint)
    assert answer == OrderStatusResponse(orderId="752502167405", orderStatus=status)


def test_trades_parse_quantities_prices_and_ist_times():
    row = {
        "dhanClientId": "1000000001",
        "orderId": "112111182198",
        "exchangeOrderId": "1100000000000001",
        "exchangeTradeId": "15000123",
        "transactionType": "SELL",
        "exchangeSegment": "NSE_FNO",
        "productType": "INTRADAY",
        "orderType": "LIMIT",
        "tradingSymbol": "NIFTY-Jan2025-23900-CE",
        "customSymbol": "NIFTY 30 JAN 23900 CALL",
        "securityId": "43512",
        "tradedQuantity": 75,
        "tradedPrice": 104.35,
        "createTime": "2025-01-28 09:20:01",
        "updateTime": "2025-01-28 09:20:01",
        "exchangeTime": "2025-01-28 09:20:01",
        "drvExpiryDate": "2025-01-30",
        "drvOptionType": "CALL",
        "drvStrikePrice": 23900.0,
    }
    (trade,) = TradeBookResponse.from_wire([row])
    assert trade.tradedQuantity == 75
    assert trade.tradedPrice == Decimal("104.35")
    assert trade.exchangeTime == ist(2025, 1, 28, 9, 20, 1)
    assert trade.drvExpiryDate == date(2025, 1, 30)
    assert trade.drvStrikePrice == Decimal("23900.0")


def test_positions_parse_every_documented_field():
    (pos,) = PositionsResponse.from_wire([POSITION_ROW])
    assert pos.netQty == -75
    assert pos.sellQty == 75
    assert pos.costPrice == Decimal("104.35")
    assert pos.unrealizedProfit == Decimal("412.5")
    assert pos.daySellValue == Decimal("7826.25")
    assert pos.multiplier == 1
    assert pos.drvExpiryDate == date(2025, 1, 30)
    assert pos.drvStrikePrice == Decimal("23900.0")
    assert pos.crossCurrency is False
    assert pos.positionType == "SHORT"


def test_no_positions_is_an_empty_array():
    assert len(PositionsResponse.from_wire("[]")) == 0


def test_holdings_parse():
    row = {
        "exchange": "ALL",
        "tradingSymbol": "HDFC",
        "securityId": "1330",
        "isin": "INE001A01036",
        "totalQty": 1000,
        "dpQty": 1000,
        "t1Qty": 0,
        "availableQty": 1000,
        "collateralQty": 0,
        "avgCostPrice": 2655.0,
        "lastTradedPrice": "2700.05",
    }
    (holding,) = HoldingsResponse.from_wire([row])
    assert holding.totalQty == 1000
    assert holding.avgCostPrice == Decimal("2655.0")
    assert holding.lastTradedPrice == Decimal("2700.05")
    assert holding.exchange == "ALL"


def test_the_real_profile_parses_token_validity_as_ist():
    profile = Profile.from_wire(PROFILE_BODY)
    assert profile.dhanClientId == "1100003626"
    assert profile.tokenValidity == ist(2025, 3, 30, 15, 37)
    assert profile.dataPlan == "Active"
    assert profile.dataValidity == "2024-12-05 09:37:52.0"  # undocumented format: kept as text


@pytest.mark.parametrize(
    ("endpoint", "text", "active"),
    [
        (Endpoint.KILL_SWITCH, "Kill Switch has been successfully activated", True),
        (Endpoint.KILL_SWITCH, "Kill Switch has been successfully deactivated", False),
        (Endpoint.KILL_SWITCH_STATUS, "ACTIVATE", True),
        (Endpoint.KILL_SWITCH_STATUS, "DEACTIVATE", False),
        (Endpoint.KILL_SWITCH_STATUS, "something new", None),
    ],
)
def test_kill_switch_answers_read_as_on_or_off(endpoint, text, active):
    answer = KillSwitchResponse.from_wire(
        {"dhanClientId": "1000000001", "killSwitchStatus": text}, endpoint
    )
    assert answer.killSwitchStatus == text
    assert answer.active is active


def test_renew_token_answer_keeps_the_token_out_of_repr():
    token = "eyJhbGciOiJIUzUxMiJ9.payload.sig"
    answer = RenewTokenResponse.from_wire(
        {"accessToken": token, "dhanClientId": "1000000001", "expiryTime": "2026-11-24T09:00:00"}
    )
    assert answer.accessToken == token
    assert answer.expiryTime == ist(2026, 11, 24, 9, 0)
    assert token not in repr(answer)
    assert RenewTokenResponse.from_wire({"token": token}).accessToken == token


def test_the_real_ltp_answer_is_keyed_by_segment_and_integer_security_id():
    answer = QuoteResponse.from_wire(QUOTE_LTP_BODY, Endpoint.QUOTE_LTP)
    assert answer.get("NSE_EQ", 11536).last_price == Decimal(4520)
    assert answer.data == {"NSE_EQ": {11536: answer.get("NSE_EQ", 11536)}}


def test_the_real_full_quote_parses_depth_circuits_and_an_empty_trade_time():
    answer = QuoteResponse.from_wire(QUOTE_FULL_BODY, Endpoint.QUOTE_FULL)
    quote = answer.get("NSE_FNO", 49081)
    assert isinstance(quote, FullQuote)
    assert quote.lower_circuit_limit == Decimal("0.05")
    assert quote.upper_circuit_limit == Decimal("20.05")
    assert quote.last_trade_time is None
    assert len(quote.depth.buy) == len(quote.depth.sell) == 5
    assert quote.depth.buy[0].price == 0
    assert quote.ohlc.close == 0
    assert quote.volume == 0


def test_full_quote_trade_time_is_day_first_ist():
    body = {
        "data": {
            "NSE_FNO": {"49081": {"last_price": "101.5", "last_trade_time": "28/01/2025 15:29:59"}}
        },
        "status": "success",
    }
    quote = QuoteResponse.from_wire(body, Endpoint.QUOTE_FULL).get("NSE_FNO", 49081)
    assert quote.last_trade_time == ist(2025, 1, 28, 15, 29, 59)


def test_ohlc_quote_parses_previous_close():
    body = {
        "data": {
            "NSE_EQ": {
                "11536": {
                    "last_price": 4525.55,
                    "ohlc": {"open": 4521.45, "close": 4507.85, "high": 4530, "low": 4500},
                }
            }
        },
        "status": "success",
    }
    quote = QuoteResponse.from_wire(body, Endpoint.QUOTE_OHLC).get("NSE_EQ", 11536)
    assert quote.last_price == Decimal("4525.55")
    assert quote.ohlc.close == Decimal("4507.85")


def test_unknown_instruments_are_silently_missing_from_a_quote():
    answer = QuoteResponse.from_wire('{"data":{"NSE_EQ":{}},"status":"success"}')
    assert answer.get("NSE_EQ", 1) is None
    assert answer.get("BSE_EQ", 1) is None


def test_quote_response_refuses_a_non_quote_endpoint():
    with pytest.raises(ValueError, match="POSITIONS"):
        QuoteResponse.from_wire(QUOTE_LTP_BODY, Endpoint.POSITIONS)


def test_the_real_daily_chart_becomes_candles_at_midnight_ist():
    candles = ChartResponse.from_wire(CHART_DAILY_BODY, Endpoint.CHART_DAILY).candles
    assert len(candles) == 20
    first, second, third = candles[:3]
    assert first.timestamp == ist(2022, 1, 10)  # 1.641753E9
    assert first.timestamp.tzinfo is IST
    assert second.timestamp == ist(2022, 1, 11)  # 1.6418394E9
    assert (first.open, first.high, first.low, first.close) == (
        Decimal("1558.0"),
        Decimal("1572.0"),
        Decimal("1545.5"),
        Decimal("1559.15"),
    )
    assert first.volume == 4428248
    assert third.volume == 10542765  # 1.0542765E7
    assert candles[-1].close == Decimal("1468.15")
    assert first.open_interest is None


def test_intraday_chart_with_open_interest():
    body = {
        "open": [101.5],
        "high": [102],
        "low": ["101.05"],
        "close": [101.9],
        "volume": [1500.0],
        "timestamp": [1737955500.0],  # 2025-01-27 10:55 IST
        "open_interest": [4.1025e6],
    }
    (candle,) = ChartResponse.from_wire(body)
    assert candle.timestamp == ist(2025, 1, 27, 10, 55)
    assert candle.open_interest == 4102500
    assert candle.low == Decimal("101.05")


def test_an_empty_open_interest_array_means_oi_was_not_requested():
    body = json.loads(CHART_DAILY_BODY) | {"open_interest": []}
    candles = ChartResponse.from_wire(body, Endpoint.CHART_DAILY).candles
    assert len(candles) == 20
    assert candles[0].open_interest is None


def test_an_empty_chart_is_no_candles():
    empty = {k: [] for k in ("open", "high", "low", "close", "volume", "timestamp")}
    assert len(ChartResponse.from_wire(empty)) == 0


def test_the_real_expiry_list_parses_to_dates():
    body = '{"data":["2025-01-30","2025-02-06","2029-12-27"],"status":"success"}'
    assert ExpiryListResponse.from_wire(body).expiries == (
        date(2025, 1, 30),
        date(2025, 2, 6),
        date(2029, 12, 27),
    )


def test_the_real_option_chain_has_decimal_strikes_in_order():
    chain = OptionChainResponse.from_wire(OPTION_CHAIN_BODY)
    assert chain.last_price == Decimal("22952.94921875")
    assert list(chain.oc) == [Decimal(17600), Decimal(17650)]
    assert str(next(iter(chain.oc))) == "17600"
    strike = chain.oc[Decimal("17650")]
    assert strike.pe.implied_volatility == pytest.approx(9.832241405137111)
    assert strike.pe.greeks.theta == 0
    assert strike.ce.last_price == 0
    assert strike.ce.oi == 0
    assert strike.ce.security_id is None  # older answers have no security_id


def test_option_chain_legs_carry_security_id_and_average_price_per_current_docs():
    leg = {
        "security_id": 42528,
        "average_price": 146.99,
        "greeks": {"delta": 0.53871, "theta": -15.1539, "gamma": 0.00132, "vega": 12.18593},
        "implied_volatility": 9.789193798280118,
        "last_price": 134,
        "oi": 3786445,
        "previous_close_price": 244.85,
        "previous_oi": 402220,
        "previous_volume": 31931705,
        "top_ask_price": 134,
        "top_ask_quantity": 1365,
        "top_bid_price": 133.55,
        "top_bid_quantity": 1625,
        "volume": 117567970,
    }
    body = {
        "data": {"last_price": 25000.5, "oc": {"25000.000000": {"ce": leg}}},
        "status": "success",
    }
    chain = OptionChainResponse.from_wire(body)
    strike = chain.oc[Decimal("25000")]
    assert strike.pe is None
    assert strike.ce.security_id == 42528
    assert strike.ce.average_price == Decimal("146.99")
    assert strike.ce.top_bid_price == Decimal("133.55")
    assert strike.ce.greeks.delta == pytest.approx(0.53871)
    assert chain.oc == {Decimal("25000.000000"): strike}  # Decimal equality ignores the zeros


def test_half_point_strikes_keep_their_fraction():
    body = {"data": {"last_price": 1, "oc": {"1212.500000": {}}}, "status": "success"}
    assert list(OptionChainResponse.from_wire(body).oc) == [Decimal("1212.5")]


# ---------------------------------------------------------------------------------------------
# Tolerance and exactness


@pytest.mark.parametrize("value", [20, 20.0, "20", " 20 ", "20.0", 2.0e1, Decimal("20")])
def test_quantities_accept_strings_or_numbers(value):
    row = POSITION_ROW | {"netQty": value}
    assert PositionsResponse.from_wire([row]).positions[0].netQty == 20


@pytest.mark.parametrize("value", [0.36, "0.36", Decimal("0.36"), " 0.36"])
def test_prices_accept_strings_or_numbers_and_stay_exact(value):
    row = json.loads(ORDER_BY_ID_BODY)[0] | {"price": value}
    price = Order.from_wire(row).price
    assert price == Decimal("0.36")
    assert str(price) == "0.36"  # never 0.35999999999999998667732370449812151491641998291015625


@pytest.mark.parametrize("value", [539310, "539310"])
def test_security_ids_accept_numbers_or_strings(value):
    row = json.loads(ORDER_BY_ID_BODY)[0] | {"securityId": value}
    assert Order.from_wire(row).securityId == "539310"


def test_booleans_accept_json_or_string_forms():
    row = json.loads(ORDER_BY_ID_BODY)[0] | {"afterMarketOrder": "false"}
    assert Order.from_wire(row).afterMarketOrder is False


def test_a_raw_body_keeps_every_digit_of_a_float32_looking_price():
    body = b'{"data":{"last_price":23092.19921875,"oc":{}},"status":"success"}'
    assert str(OptionChainResponse.from_wire(body).last_price) == "23092.19921875"


def test_extra_and_missing_optional_keys_are_tolerated():
    funds = FundLimit.from_wire({"availabelBalance": 1, "someNewField": {"x": 1}})
    assert funds.availabelBalance == 1
    assert funds.sodLimit is None
    order = Order.from_wire({"orderId": "1", "orderStatus": "TRADED", "price": None})
    assert order.price is None


@pytest.mark.parametrize(
    ("parse", "body"),
    [
        (FundLimit.from_wire, {"data": json.loads(FUNDLIMIT_BODY), "status": "success"}),
        (FundLimit.from_wire, json.loads(FUNDLIMIT_BODY)),
        (FundLimit.from_wire, FUNDLIMIT_BODY.encode()),
    ],
)
def test_bare_enveloped_and_raw_bodies_parse_the_same(parse, body):
    assert parse(body).availabelBalance == Decimal("115.64")


def test_an_enveloped_array_parses_like_a_bare_one():
    body = {"data": [POSITION_ROW], "status": "success"}
    assert PositionsResponse.from_wire(body) == PositionsResponse.from_wire([POSITION_ROW])


# ---------------------------------------------------------------------------------------------
# Malformed bodies name the endpoint and the key path

_BAD_CHART = json.loads(CHART_DAILY_BODY)
_BAD_CHART["volume"] = _BAD_CHART["volume"][:-1]

MALFORMED = [
    (
        PositionsResponse.from_wire,
        [POSITION_ROW] * 3 + [POSITION_ROW | {"netQty": "abc"}],
        "positions[3].netQty: expected a number, got 'abc'",
    ),
    (
        PositionsResponse.from_wire,
        [POSITION_ROW | {"netQty": 1.5}],
        "positions[0].netQty: expected a whole number, got 1.5",
    ),
    (
        PositionsResponse.from_wire,
        [POSITION_ROW | {"buyQty": True}],
        "positions[0].buyQty: expected a number, got True",
    ),
    (
        PositionsResponse.from_wire,
        {"data": [POSITION_ROW | {"drvExpiryDate": "30-01-2025"}], "status": "success"},
        "positions.data[0].drvExpiryDate: expected a date like 'YYYY-MM-DD', got '30-01-2025'",
    ),
    (PositionsResponse.from_wire, {"netQty": 1}, "positions: expected an array, got {'netQty': 1}"),
    (FundLimit.from_wire, {"sodLimit": 1}, "fund_limit.availabelBalance: missing"),
    (
        FundLimit.from_wire,
        {"availabelBalance": "NaN"},
        "fund_limit.availabelBalance: expected a finite number, got 'NaN'",
    ),
    (FundLimit.from_wire, b"<html>502</html>", "fund_limit: not JSON"),
    (
        FundLimit.from_wire,
        {"data": {"811": "Invalid Expiry Date"}, "status": "failed"},
        "fund_limit.status: expected 'success', got 'failed'",
    ),
    (
        OrderLookupResponse.from_wire,
        [{"orderStatus": "PENDING"}],
        "order_by_id[0].orderId: missing",
    ),
    (
        OrderLookupResponse.from_wire,
        [json.loads(ORDER_BY_ID_BODY)[0] | {"createTime": "16/02/2025 16:04"}],
        "order_by_id[0].createTime: expected a time like '%Y-%m-%d %H:%M:%S'",
    ),
    (OrderBookResponse.from_wire, [["x"]], "order_book[0]: expected an object, got ['x']"),
    (
        ChartResponse.from_wire,
        _BAD_CHART,
        "chart_intraday.volume: expected 20 values like 'timestamp', got 19",
    ),
    (
        ChartResponse.from_wire,
        {"open": [], "high": [], "low": [], "close": [], "timestamp": []},
        "chart_intraday.volume: missing",
    ),
    (
        ChartResponse.from_wire,
        {"open": [1], "high": [1], "low": [1], "close": [1], "volume": [1], "timestamp": ["x"]},
        "chart_intraday.timestamp[0]: expected a number, got 'x'",
    ),
    (
        ChartResponse.from_wire,
        {"open": [1], "high": [1], "low": [1], "close": [1], "volume": [1], "timestamp": [1e300]},
        "chart_intraday.timestamp[0]: expected epoch seconds, got 1e+300",
    ),
    (
        ChartResponse.from_wire,
        json.loads(CHART_DAILY_BODY) | {"open_interest": [1, 2]},
        "chart_intraday.open_interest: expected 20 values like 'timestamp', got 2",
    ),
    (
        QuoteResponse.from_wire,
        {"data": {"NSE_EQ": {"11536": {"last_price": "abc"}}}, "status": "success"},
        "quote_ltp.data.NSE_EQ['11536'].last_price: expected a number, got 'abc'",
    ),
    (
        QuoteResponse.from_wire,
        {"data": {"NSE_EQ": {"RELIANCE": {"last_price": 1}}}, "status": "success"},
        "quote_ltp.data.NSE_EQ['RELIANCE']: expected a numeric security id key",
    ),
    (
        OptionChainResponse.from_wire,
        {"data": {"last_price": 1, "oc": {"ATM": {}}}, "status": "success"},
        "option_chain.data.oc['ATM']: expected a numeric strike key",
    ),
    (
        OptionChainResponse.from_wire,
        {
            "data": {"last_price": 1, "oc": {"100.000000": {"pe": {"last_price": 1, "oi": "x"}}}},
            "status": "success",
        },
        "option_chain.data.oc['100.000000'].pe.oi: expected a number, got 'x'",
    ),
    (
        OptionChainResponse.from_wire,
        {"data": {"oc": {}}, "status": "success"},
        "option_chain.data.last_price: missing",
    ),
    (
        ExpiryListResponse.from_wire,
        {"data": ["2025-01-30", "30/01/2025"], "status": "success"},
        "expiry_list.data[1]: expected a date like 'YYYY-MM-DD', got '30/01/2025'",
    ),
    (
        Profile.from_wire,
        {"dhanClientId": "1", "tokenValidity": 1743329220},
        "profile.tokenValidity: expected a time like '%d/%m/%Y %H:%M', got 1743329220",
    ),
]


@pytest.mark.parametrize(("parse", "body", "message"), MALFORMED)
def test_a_malformed_body_raises_bad_response_naming_the_key_path(parse, body, message):
    with pytest.raises(BadResponse) as caught:
        parse(body)
    assert str(caught.value).startswith(message)
    assert isinstance(caught.value, ValueError)
    assert caught.value.endpoint == message.split(".")[0].split("[")[0].split(":")[0]


def test_bad_response_exposes_endpoint_path_and_problem():
    with pytest.raises(BadResponse) as caught:
        PositionsResponse.from_wire([POSITION_ROW, POSITION_ROW | {"netQty": "abc"}])
    err = caught.value
    assert (err.endpoint, err.path) == ("positions", "positions[1].netQty")
    assert err.problem == "expected a number, got 'abc'"


# ---------------------------------------------------------------------------------------------
# Requests


def _place(**overrides):
    fields = {
        "dhanClientId": "1000000001",
        "transactionType": "BUY",
        "exchangeSegment": "NSE_FNO",
        "productType": "INTRADAY",
        "orderType": "LIMIT",
        "validity": "DAY",
        "securityId": "43512",
        "quantity": 75,
        "price": Decimal("104.35"),
    }
    return PlaceOrderRequest(**(fields | overrides))


def test_place_order_sends_the_documented_keys_with_money_as_json_numbers():
    wire = _place(correlationId="scalp-20250128-0001").to_wire()
    assert wire == {
        "dhanClientId": "1000000001",
        "correlationId": "scalp-20250128-0001",
        "transactionType": "BUY",
        "exchangeSegment": "NSE_FNO",
        "productType": "INTRADAY",
        "orderType": "LIMIT",
        "validity": "DAY",
        "securityId": "43512",
        "quantity": 75,
        "disclosedQuantity": 0,
        "price": 104.35,
        "afterMarketOrder": False,
    }
    assert '"price": 104.35' in json.dumps(wire)  # the Decimal's text, digit for digit


def test_place_order_omits_unset_optionals_instead_of_sending_empty_strings():
    wire = _place().to_wire()
    assert "" not in wire.values()
    assert not {"correlationId", "triggerPrice", "amoTime", "boProfitValue"} & wire.keys()


def test_stop_loss_orders_send_the_trigger_price_and_amo_sends_its_time():
    wire = _place(
        orderType="STOP_LOSS",
        triggerPrice=Decimal("104.05"),
        afterMarketOrder=True,
        amoTime="OPEN",
    ).to_wire()
    assert (wire["triggerPrice"], wire["amoTime"], wire["afterMarketOrder"]) == (
        104.05,
        "OPEN",
        True,
    )


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"orderType": "STOP_LOSS"}, "triggerPrice"),
        ({"transactionType": "buy"}, "transactionType"),
        ({"exchangeSegment": "NFO"}, "exchangeSegment"),
        ({"quantity": 0}, "quantity"),
        ({"quantity": True}, "quantity"),
        ({"price": 104.35}, "price"),
        ({"price": Decimal("-1")}, "price"),
        ({"price": Decimal("NaN")}, "price"),
        ({"price": Decimal("1234567890.1234567")}, "price"),
        ({"amoTime": "OPEN"}, "amoTime"),
        ({"securityId": ""}, "securityId"),
    ],
)
def test_place_order_rejects_bad_fields_by_name(overrides, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        _place(**overrides)


def test_correlation_id_may_have_25_characters():
    cid = "a" * CORRELATION_ID_MAX_LEN
    assert CORRELATION_ID_MAX_LEN == 25
    assert _place(correlationId=cid).to_wire()["correlationId"] == cid


@pytest.mark.parametrize(
    ("cid", "why"),
    [
        ("a" * 26, "at most 25 characters"),
        ("a" * 30, "at most 25 characters"),
        ("scalp#1", "only letters, digits"),
        ("", "non-empty"),
        ("NA", "'NA'"),
    ],
)
def test_correlation_id_is_validated_with_a_clear_message(cid, why):
    with pytest.raises(ValueError, match=r"^correlationId: ") as caught:
        _place(correlationId=cid)
    assert why in str(caught.value)
    with pytest.raises(ValueError, match=r"^correlationId: "):
        OrderByCorrelationIdRequest(cid)


def test_modify_order_sends_the_sdk_keys():
    request = ModifyOrderRequest(
        dhanClientId="1000000001",
        orderId="752502167405",
        orderType="STOP_LOSS",
        quantity=75,
        price=Decimal("99.5"),
        triggerPrice=Decimal("99.45"),
        validity="DAY",
        legName="ENTRY_LEG",
    )
    assert request.to_wire() == {
        "dhanClientId": "1000000001",
        "orderId": "752502167405",
        "orderType": "STOP_LOSS",
        "legName": "ENTRY_LEG",
        "quantity": 75,
        "price": 99.5,
        "disclosedQuantity": 0,
        "triggerPrice": 99.45,
        "validity": "DAY",
    }
    assert Endpoint.MODIFY_ORDER.url_path(**request.path_params()) == "/orders/752502167405"


def _modify(**overrides: object) -> ModifyOrderRequest:
    fields: dict[str, object] = {
        "dhanClientId": "1000000001",
        "orderId": "752502167405",
        "orderType": "LIMIT",
        "quantity": 75,
        "price": Decimal("99.5"),
        "validity": "DAY",
    }
    return ModifyOrderRequest(**(fields | overrides))


def test_a_plain_order_is_modified_without_a_leg_name():
    assert "legName" not in _modify().to_wire()


@pytest.mark.parametrize("leg", ["NA", "entry_leg", ""])
def test_modify_order_refuses_a_leg_name_dhan_does_not_accept(leg):
    # "NA" is the order book's "no leg" (PROTOCOL.md 1.4), never a request value; the simulator
    # answers it with DH-905 (test_broker), so client and simulator agree.
    with pytest.raises(ValueError, match=r"^legName: expected one of \['ENTRY_LEG', "):
        _modify(legName=leg)


def test_request_enums_accept_the_member_or_its_wire_string_and_hold_the_member():
    by_string = _place()
    by_member = _place(
        transactionType=TransactionType.BUY,
        exchangeSegment=ExchangeSegment.NSE_FNO,
        productType=ProductType.INTRADAY,
        orderType=OrderType.LIMIT,
        validity=Validity.DAY,
    )
    assert by_string == by_member and by_string.to_wire() == by_member.to_wire()
    assert by_string.transactionType is TransactionType.BUY
    assert all(type(value) is not TransactionType for value in by_string.to_wire().values())


def test_requests_without_a_body_send_nothing_and_fill_the_path():
    assert CancelOrderRequest("752502167405").to_wire() == {}
    assert (
        Endpoint.CANCEL_ORDER.url_path(**CancelOrderRequest("752502167405").path_params())
        == "/orders/752502167405"
    )
    assert Endpoint.ORDER_BY_ID.url_path(**OrderByIdRequest("9").path_params()) == "/orders/9"
    assert (
        Endpoint.ORDER_BY_CORRELATION_ID.url_path(
            **OrderByCorrelationIdRequest("scalp-1").path_params()
        )
        == "/orders/external/scalp-1"
    )
    assert NoParams().to_wire() == {}


def test_market_quote_request_is_keyed_by_segment_with_integer_ids():
    request = MarketQuoteRequest({"NSE_EQ": [11536], "NSE_FNO": [49081, 49082]})
    assert request.to_wire() == {"NSE_EQ": [11536], "NSE_FNO": [49081, 49082]}


@pytest.mark.parametrize(
    ("instruments", "message"),
    [
        ({"NSE_FNO": ["49081"]}, "integers"),
        ({"NFO": [1]}, "instruments"),
        ({"NSE_FNO": list(range(1001))}, "at most 1000"),
        ({}, "at least one"),
    ],
)
def test_market_quote_request_validation(instruments, message):
    with pytest.raises(ValueError, match=message):
        MarketQuoteRequest(instruments)


def test_daily_chart_request_matches_the_documented_body():
    request = DailyChartRequest(
        securityId="1333",
        exchangeSegment="NSE_EQ",
        instrument="EQUITY",
        expiryCode=0,
        fromDate=date(2022, 1, 8),
        toDate=date(2022, 2, 8),
    )
    assert request.to_wire() == {
        "securityId": "1333",
        "exchangeSegment": "NSE_EQ",
        "instrument": "EQUITY",
        "expiryCode": 0,
        "oi": False,
        "fromDate": "2022-01-08",
        "toDate": "2022-02-08",
    }


def test_intraday_chart_request_matches_the_documented_body_from_any_timezone():
    request = IntradayChartRequest(
        securityId="1333",
        exchangeSegment="NSE_EQ",
        instrument="EQUITY",
        interval=1,
        fromDate=ist(2024, 9, 11, 9, 30),
        toDate=datetime(2024, 9, 15, 7, 30, tzinfo=UTC),  # 13:00 IST
    )
    assert request.to_wire() == {
        "securityId": "1333",
        "exchangeSegment": "NSE_EQ",
        "instrument": "EQUITY",
        "interval": "1",
        "oi": False,
        "fromDate": "2024-09-11 09:30:00",
        "toDate": "2024-09-15 13:00:00",
    }


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"interval": 3}, "interval"),
        ({"fromDate": datetime(2024, 9, 11, 9, 30)}, "fromDate"),  # naive: ambiguous
        ({"toDate": ist(2024, 9, 10)}, "toDate"),
        ({"toDate": ist(2024, 12, 31)}, "toDate"),  # more than 90 days
        ({"instrument": "OPTION"}, "instrument"),
    ],
)
def test_intraday_chart_request_validation(overrides, field):
    fields = {
        "securityId": "1333",
        "exchangeSegment": "NSE_EQ",
        "instrument": "EQUITY",
        "interval": 5,
        "fromDate": ist(2024, 9, 11, 9, 15),
        "toDate": ist(2024, 9, 11, 15, 30),
    }
    with pytest.raises(ValueError, match=f"^{field}:"):
        IntradayChartRequest(**(fields | overrides))


def test_daily_chart_request_refuses_an_empty_range_since_to_date_is_exclusive():
    with pytest.raises(ValueError, match=r"^toDate:"):
        DailyChartRequest(
            securityId="13",
            exchangeSegment="IDX_I",
            instrument="INDEX",
            fromDate=date(2025, 1, 1),
            toDate=date(2025, 1, 1),
        )


def test_option_chain_requests_use_pascal_case_keys_and_integer_scrip():
    assert ExpiryListRequest(13, "IDX_I").to_wire() == {
        "UnderlyingScrip": 13,
        "UnderlyingSeg": "IDX_I",
    }
    assert OptionChainRequest(13, "IDX_I", date(2025, 1, 30)).to_wire() == {
        "UnderlyingScrip": 13,
        "UnderlyingSeg": "IDX_I",
        "Expiry": "2025-01-30",
    }
    with pytest.raises(ValueError, match=r"^Expiry:"):
        OptionChainRequest(13, "IDX_I", datetime(2025, 1, 30, tzinfo=IST))


def test_kill_switch_request_is_a_query_parameter():
    assert KillSwitchRequest("ACTIVATE").to_wire() == {"killSwitchStatus": "ACTIVATE"}
    with pytest.raises(ValueError, match=r"^killSwitchStatus:"):
        KillSwitchRequest("ON")
