"""Order-update codec: login frame, order_alert parsing in both key casings, the encoder.

Pure unit tests: no database, no network. The reference message is the docs sample that
PROTOCOL.md section 3 cites (dhanhq.co/docs/v2/order-update via MasoomChoudhury's
``LIVE_ORDER_UPDATE.md``), kept as text with its quirks (numbers and strings mixed, an empty
CorrelationId, ``"Status":"Cancelled"`` in title case, ``Remarks`` given twice).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from trading.dhan.feed_codec import IST
from trading.dhan.order_update_codec import (
    BadLoginRequest,
    BadOrderUpdate,
    LoginRequest,
    OrderUpdate,
    OtherMessage,
    login_message,
    order_alert_message,
    parse_frame,
    parse_login,
    parse_message,
)

DOCS_SAMPLE = """{
    "Data": {
        "Exchange": "NSE", "Segment": "E", "Source": "N", "SecurityId": "14366",
        "ClientId": "1000000001", "ExchOrderNo": "1400000000404591", "OrderNo": "1124091136546",
        "Product": "C", "TxnType": "B", "OrderType": "LMT", "Validity": "DAY",
        "DiscQuantity": 1, "DiscQtyRem": 1, "RemainingQuantity": 1, "Quantity": 1,
        "TradedQty": 0, "Price": 13, "TriggerPrice": 0, "TradedPrice": 0, "AvgTradedPrice": 0,
        "AlgoOrdNo": "", "OffMktFlag": "0",
        "OrderDateTime": "2024-09-11 14:39:29", "ExchOrderTime": "2024-09-11 14:39:29",
        "LastUpdatedTime": "2024-09-11 14:39:29", "Remarks": "NR", "MktType": "NL",
        "ReasonDescription": "CONFIRMED", "LegNo": 1, "Instrument": "EQUITY", "Symbol": "IDEA",
        "ProductName": "CNC", "Status": "Cancelled", "LotSize": 1, "StrikePrice": 0,
        "ExpiryDate": "0001-01-01 00:00:00", "OptType": "XX", "DisplayName": "Vodafone Idea",
        "Isin": "INE669E01016", "Series": "EQ", "GoodTillDaysDate": "2024-09-11",
        "RefLtp": 13.21, "TickSize": 0.01, "AlgoId": "0", "Multiplier": 1,
        "CorrelationId": "", "Remarks": "Super Order"
    },
    "Type": "order_alert"
}"""

DOCS_TIME = datetime(2024, 9, 11, 14, 39, 29, tzinfo=IST)
DOCS_EXPECTED = OrderUpdate(
    order_id="1124091136546",
    status="CANCELLED",
    exchange_order_id="1400000000404591",
    correlation_id=None,
    transaction_type="BUY",
    product_type="CNC",
    order_type="LIMIT",
    validity="DAY",
    exchange_segment="NSE_EQ",
    security_id=14366,
    symbol="IDEA",
    quantity=1,
    traded_quantity=0,
    remaining_quantity=1,
    price=Decimal("13"),
    trigger_price=Decimal("0"),
    traded_price=Decimal("0"),
    avg_traded_price=Decimal("0"),
    order_time=DOCS_TIME,
    exchange_time=DOCS_TIME,
    updated_at=DOCS_TIME,
    reason="CONFIRMED",
    source="N",
    leg_no=1,
)

# A NIFTY option part fill, the case this project lives on, written out by hand in every wire
# style (not produced by the encoder, so the parser is not only checked against itself).
FILL_PASCAL_NUMBERS: dict[str, Any] = {
    "Exchange": "NSE",
    "Segment": "D",
    "Source": "P",
    "SecurityId": 43512,
    "ClientId": "1000000001",
    "ExchOrderNo": "1200000012345678",
    "OrderNo": "5524112312345",
    "Product": "I",
    "TxnType": "S",
    "OrderType": "SL",
    "Validity": "DAY",
    "Quantity": 150,
    "TradedQty": 75,
    "RemainingQuantity": 75,
    "Price": 245.55,
    "TriggerPrice": 246.0,
    "TradedPrice": 245.55,
    "AvgTradedPrice": 245.6,
    "OrderDateTime": "2026-11-23 09:20:01",
    "ExchOrderTime": "2026-11-23 09:20:01",
    "LastUpdatedTime": "2026-11-23 09:21:15",
    "ReasonDescription": "CONFIRMED",
    "LegNo": 1,
    "Symbol": "NIFTY-Nov2026-24500-CE",
    "Status": "Part_Traded",
    "CorrelationId": "sc-42-entry",
}
FILL_STRING_VALUES: dict[str, Any] = {
    "SecurityId": "43512",
    "Quantity": "150",
    "TradedQty": "75",
    "RemainingQuantity": "75",
    "Price": "245.55",
    "TriggerPrice": "246.00",
    "TradedPrice": "245.55",
    "AvgTradedPrice": "245.60",
    "LegNo": "1",
}
FILL_EXPECTED = OrderUpdate(
    order_id="5524112312345",
    status="PART_TRADED",
    exchange_order_id="1200000012345678",
    correlation_id="sc-42-entry",
    transaction_type="SELL",
    product_type="INTRADAY",
    order_type="STOP_LOSS",
    validity="DAY",
    exchange_segment="NSE_FNO",
    security_id=43512,
    symbol="NIFTY-Nov2026-24500-CE",
    quantity=150,
    traded_quantity=75,
    remaining_quantity=75,
    price=Decimal("245.55"),
    trigger_price=Decimal("246"),
    traded_price=Decimal("245.55"),
    avg_traded_price=Decimal("245.6"),
    order_time=datetime(2026, 11, 23, 9, 20, 1, tzinfo=IST),
    exchange_time=datetime(2026, 11, 23, 9, 20, 1, tzinfo=IST),
    updated_at=datetime(2026, 11, 23, 9, 21, 15, tzinfo=IST),
    reason="CONFIRMED",
    source="P",
    leg_no=1,
)


def camel(data: dict[str, Any]) -> dict[str, Any]:
    """dhan-ts / SDK-printer style keys: OrderNo -> orderNo, TxnType -> txnType."""
    return {key[0].lower() + key[1:]: value for key, value in data.items()}


def alert(data: dict[str, Any], type_: str = "order_alert") -> str:
    return json.dumps({"Type": type_, "Data": data})


def fill(**changes: Any) -> dict[str, Any]:
    """The PascalCase fill with some keys changed (None deletes the key)."""
    data = dict(FILL_PASCAL_NUMBERS)
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def parse_fill(**changes: Any) -> OrderUpdate:
    update = parse_message(alert(fill(**changes)))
    assert isinstance(update, OrderUpdate)
    return update


# ---------------------------------------------------------------------------------------------
# Login


def test_login_message_is_the_documented_json_exactly():
    assert login_message("1000000001", "eyJ.token") == (
        '{"LoginReq":{"MsgCode":42,"ClientId":"1000000001","Token":"eyJ.token"},"UserType":"SELF"}'
    )


def test_login_message_sends_a_numeric_client_id_as_a_string():
    body = json.loads(login_message(1000000001, "t0k3n"))
    assert body["LoginReq"]["ClientId"] == "1000000001"
    assert body["LoginReq"]["MsgCode"] == 42


@pytest.mark.parametrize(("client_id", "token"), [("", "t0k3n"), ("  ", "t0k3n"), ("100", "")])
def test_login_message_refuses_empty_credentials(client_id, token):
    with pytest.raises(ValueError, match="needs"):
        login_message(client_id, token)


@pytest.mark.parametrize("msg_code", [42, "42"])
def test_parse_login_accepts_msg_code_as_int_or_string(msg_code):
    text = json.dumps(
        {"LoginReq": {"MsgCode": msg_code, "ClientId": "1000000001", "Token": "secret-jwt"}}
    )
    login = parse_login(text)
    assert login == LoginRequest("1000000001", "secret-jwt", "SELF")
    assert "secret-jwt" not in repr(login)


def test_parse_login_reads_what_login_message_writes():
    login = parse_login(login_message("1000000001", "secret-jwt").encode())
    assert (login.client_id, login.token, login.user_type) == ("1000000001", "secret-jwt", "SELF")


def test_parse_login_reads_a_partner_login():
    text = json.dumps(
        {"LoginReq": {"MsgCode": 42, "ClientId": "p1"}, "UserType": "PARTNER", "Secret": "s3"}
    )
    assert parse_login(text) == LoginRequest("p1", None, "PARTNER", "s3")


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("not json", "not JSON"),
        ("[]", "LoginReq"),
        ('{"LoginReq": "42"}', "LoginReq"),
        ('{"LoginReq": {"MsgCode": 41, "ClientId": "1", "Token": "t"}}', "LoginReq.MsgCode"),
        ('{"LoginReq": {"ClientId": "1", "Token": "t"}}', "LoginReq.MsgCode"),
        ('{"LoginReq": {"MsgCode": 42, "Token": "t"}}', "LoginReq.ClientId"),
        ('{"LoginReq": {"MsgCode": 42, "ClientId": "1"}, "UserType": "SELF"}', "LoginReq.Token"),
        ('{"LoginReq": {"MsgCode": 42, "ClientId": "1", "Token": {}}}', "LoginReq.Token"),
    ],
)
def test_parse_login_names_what_is_wrong(text, names):
    with pytest.raises(BadLoginRequest, match=names):
        parse_login(text)


# ---------------------------------------------------------------------------------------------
# The documented sample and the wire styles


def test_the_docs_sample_parses_to_the_expected_update():
    update = parse_message(DOCS_SAMPLE)
    assert update == DOCS_EXPECTED
    assert update.status_known
    assert update.raw == json.loads(DOCS_SAMPLE)


def test_the_docs_sample_parses_the_same_from_bytes_and_in_camel_case():
    body = json.loads(DOCS_SAMPLE)
    camel_text = json.dumps({"Type": "order_alert", "Data": camel(body["Data"])})
    assert parse_message(DOCS_SAMPLE.encode()) == DOCS_EXPECTED
    assert parse_message(camel_text) == DOCS_EXPECTED


WIRE_STYLES = {
    "pascal-numbers": FILL_PASCAL_NUMBERS,
    "pascal-strings": {**FILL_PASCAL_NUMBERS, **FILL_STRING_VALUES},
    "camel-numbers": camel(FILL_PASCAL_NUMBERS),
    "camel-strings": camel({**FILL_PASCAL_NUMBERS, **FILL_STRING_VALUES}),
    "snake-and-upper-keys": {
        key.upper() if key.startswith("T") else key: value
        for key, value in {**FILL_PASCAL_NUMBERS, "order_no": "5524112312345"}.items()
        if key != "OrderNo"
    },
}


@pytest.mark.parametrize("data", WIRE_STYLES.values(), ids=WIRE_STYLES.keys())
def test_every_wire_style_of_one_update_parses_to_the_same_update(data):
    assert parse_message(alert(data)) == FILL_EXPECTED


@pytest.mark.parametrize("type_", ["order_alert", "orderAlert", "OrderAlert", "ORDER_ALERT"])
@pytest.mark.parametrize(("type_key", "data_key"), [("Type", "Data"), ("type", "data")])
def test_the_envelope_is_read_in_any_casing(type_, type_key, data_key):
    text = json.dumps({type_key: type_, data_key: FILL_PASCAL_NUMBERS})
    assert parse_message(text) == FILL_EXPECTED


def test_a_numeric_order_number_becomes_the_same_string():
    assert parse_fill(OrderNo=5524112312345).order_id == "5524112312345"
    assert parse_fill(OrderNo=5524112312345.0).order_id == "5524112312345"


# ---------------------------------------------------------------------------------------------
# Mappings


@pytest.mark.parametrize(
    ("wire", "status"),
    [
        ("Transit", "TRANSIT"),
        ("TRANSIT", "TRANSIT"),
        ("Pending", "PENDING"),
        ("pending", "PENDING"),
        ("Rejected", "REJECTED"),
        ("Cancelled", "CANCELLED"),
        ("Canceled", "CANCELLED"),
        ("Part_Traded", "PART_TRADED"),
        ("PART_TRADED", "PART_TRADED"),
        ("Part Traded", "PART_TRADED"),
        ("part-traded", "PART_TRADED"),
        ("PartTraded", "PART_TRADED"),
        ("Traded", "TRADED"),
        (" TRADED ", "TRADED"),
        ("Expired", "EXPIRED"),
    ],
)
def test_statuses_map_to_the_rest_order_status_enum(wire, status):
    update = parse_fill(Status=wire)
    assert update.status == status
    assert update.status_known


@pytest.mark.parametrize("wire", ["Closed", "TRIGGERED", "Modified", "7"])
def test_an_unknown_status_is_kept_verbatim_and_flagged(wire):
    update = parse_fill(Status=wire)
    assert update.status == wire
    assert not update.status_known


@pytest.mark.parametrize(
    ("wire", "side"), [("B", "BUY"), ("S", "SELL"), ("b", "BUY"), ("Buy", "BUY"), ("SELL", "SELL")]
)
def test_transaction_types_map_to_buy_and_sell(wire, side):
    assert parse_fill(TxnType=wire).transaction_type == side


@pytest.mark.parametrize(
    ("wire", "product"),
    [
        ("C", "CNC"),
        ("I", "INTRADAY"),
        ("M", "MARGIN"),
        ("F", "MTF"),
        ("V", "CO"),
        ("B", "BO"),
        ("INTRADAY", "INTRADAY"),
        ("intraday", "INTRADAY"),
        ("X9", "X9"),  # unknown: kept verbatim (informational only)
    ],
)
def test_product_types_map_to_the_rest_enum(wire, product):
    assert parse_fill(Product=wire).product_type == product


@pytest.mark.parametrize(
    ("wire", "order_type"),
    [
        ("LMT", "LIMIT"),
        ("MKT", "MARKET"),
        ("SL", "STOP_LOSS"),
        ("SLM", "STOP_LOSS_MARKET"),
        ("STOP_LOSS_MARKET", "STOP_LOSS_MARKET"),
        ("lmt", "LIMIT"),
        ("ICEBERG", "ICEBERG"),  # unknown: kept verbatim
    ],
)
def test_order_types_map_to_the_rest_enum(wire, order_type):
    assert parse_fill(OrderType=wire).order_type == order_type


@pytest.mark.parametrize(
    ("changes", "segment"),
    [
        ({"Exchange": "NSE", "Segment": "D"}, "NSE_FNO"),
        ({"Exchange": "NSE", "Segment": "E"}, "NSE_EQ"),
        ({"Exchange": "NSE", "Segment": "C"}, "NSE_CURRENCY"),
        ({"Exchange": "NSE", "Segment": "M"}, "NSE_COMM"),
        ({"Exchange": "BSE", "Segment": "D"}, "BSE_FNO"),
        ({"Exchange": "BSE", "Segment": "E"}, "BSE_EQ"),
        ({"Exchange": "BSE", "Segment": "C"}, "BSE_CURRENCY"),
        ({"Exchange": "MCX", "Segment": "M"}, "MCX_COMM"),
        ({"Exchange": "nse", "Segment": "d"}, "NSE_FNO"),
        ({"Exchange": "NSE_FNO", "Segment": ""}, "NSE_FNO"),
        ({"Exchange": "NSE", "Segment": "BSE_FNO"}, "BSE_FNO"),
        ({"Exchange": None, "Segment": None, "ExchangeSegment": "IDX_I"}, "IDX_I"),
        ({"Exchange": None, "Segment": None, "exchangeSegment": "NSE_FNO"}, "NSE_FNO"),
        ({"Exchange": "", "Segment": ""}, None),
        ({"Exchange": None, "Segment": None}, None),
    ],
)
def test_exchange_and_segment_letter_map_to_the_exchange_segment(changes, segment):
    assert parse_fill(**changes).exchange_segment == segment


# ---------------------------------------------------------------------------------------------
# Values: empty strings, money, ids, times


OPTIONAL_KEYS = {
    "ExchOrderNo": "exchange_order_id",
    "CorrelationId": "correlation_id",
    "TxnType": "transaction_type",
    "Product": "product_type",
    "OrderType": "order_type",
    "Validity": "validity",
    "SecurityId": "security_id",
    "Symbol": "symbol",
    "Quantity": "quantity",
    "TradedQty": "traded_quantity",
    "RemainingQuantity": "remaining_quantity",
    "Price": "price",
    "TriggerPrice": "trigger_price",
    "TradedPrice": "traded_price",
    "AvgTradedPrice": "avg_traded_price",
    "OrderDateTime": "order_time",
    "ExchOrderTime": "exchange_time",
    "LastUpdatedTime": "updated_at",
    "ReasonDescription": "reason",
    "Source": "source",
    "LegNo": "leg_no",
}


@pytest.mark.parametrize(("key", "attr"), OPTIONAL_KEYS.items())
@pytest.mark.parametrize("empty", ["", "   ", "null", "missing"])
def test_empty_or_missing_values_are_none(key, attr, empty):
    if empty == "missing":
        update = parse_fill(**{key: None})
    else:
        data = fill()
        data[key] = None if empty == "null" else empty
        update = parse_message(alert(data))
    assert getattr(update, attr) is None


@pytest.mark.parametrize(
    ("key", "placeholder", "attr"),
    [
        ("CorrelationId", "NA", "correlation_id"),
        ("ExchOrderNo", "0", "exchange_order_id"),
        ("ExchOrderNo", 0, "exchange_order_id"),
        ("ExchOrderTime", "0001-01-01 00:00:00", "exchange_time"),
    ],
)
def test_dhans_unset_placeholders_are_none(key, placeholder, attr):
    assert getattr(parse_fill(**{key: placeholder}), attr) is None


@pytest.mark.parametrize(
    ("wire", "text"),
    [
        ("245.55", "245.55"),
        (245.55, "245.55"),
        ("245.50", "245.50"),
        (0.1, "0.1"),
        (19.95, "19.95"),
        (24500, "24500"),
        ("24500", "24500"),
        (" 0.05 ", "0.05"),
        ("1E+2", "1E+2"),
    ],
)
def test_prices_are_exact_decimals(wire, text):
    price = parse_fill(Price=wire).price
    assert isinstance(price, Decimal)
    assert str(price) == text


@pytest.mark.parametrize(("wire", "qty"), [(75, 75), ("75", 75), (75.0, 75), ("75.0", 75)])
def test_quantities_are_ints(wire, qty):
    traded = parse_fill(TradedQty=wire).traded_quantity
    assert traded == qty
    assert type(traded) is int


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        ("2026-11-23 09:21:15", datetime(2026, 11, 23, 9, 21, 15, tzinfo=IST)),
        ("2026-11-23T09:21:15", datetime(2026, 11, 23, 9, 21, 15, tzinfo=IST)),
        ("2026-11-23 09:21:15.250", datetime(2026, 11, 23, 9, 21, 15, 250000, tzinfo=IST)),
        ("2026-11-23T03:51:15+00:00", datetime(2026, 11, 23, 9, 21, 15, tzinfo=IST)),
        ("2026-11-23 09:21:15+05:30", datetime(2026, 11, 23, 9, 21, 15, tzinfo=IST)),
    ],
)
def test_times_are_aware_ist_datetimes(wire, expected):
    updated_at = parse_fill(LastUpdatedTime=wire).updated_at
    assert updated_at == expected
    assert updated_at.tzinfo == IST
    assert updated_at.utcoffset() == timedelta(hours=5, minutes=30)
    assert (updated_at.hour, updated_at.minute) == (expected.hour, expected.minute)


# ---------------------------------------------------------------------------------------------
# Malformed input


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("", "not JSON"),
        ("{not json", "not JSON"),
        ('{"Type": "order_alert"} trailing', "not JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        ('{"Type": "order_alert"}', "Data"),
        ('{"Type": "order_alert", "Data": "x"}', "Data"),
        ('{"Type": "order_alert", "Data": []}', "Data"),
        (alert(fill(OrderNo=None)), "Data.OrderNo"),
        (alert(fill(OrderNo="")), "Data.OrderNo"),
        (alert(camel(fill(OrderNo=None))), "Data.OrderNo"),
        (alert(fill(OrderNo={"n": 1})), "Data.OrderNo"),
        (alert(fill(OrderNo=1.5)), "Data.OrderNo"),
        (alert(fill(Status=None)), "Data.Status"),
        (alert(fill(Status="")), "Data.Status"),
        (alert(camel(fill(Status=True))), "Data.status"),
        (alert(fill(Quantity="abc")), "Data.Quantity"),
        (alert(fill(Quantity="1.5")), "Data.Quantity"),
        (alert(fill(Quantity=True)), "Data.Quantity"),
        (alert(camel(fill(TradedQty=[75]))), "Data.tradedQty"),
        (alert(fill(Price="abc")), "Data.Price"),
        (alert(fill(Price="NaN")), "Data.Price"),
        (alert(fill(Price="Infinity")), "Data.Price"),
        (alert(fill(AvgTradedPrice={})), "Data.AvgTradedPrice"),
        (alert(fill(SecurityId="NIFTY")), "Data.SecurityId"),
        (alert(fill(TxnType="X")), "Data.TxnType"),
        (alert(fill(Exchange="NSE", Segment="Q")), "Data.Exchange"),
        (alert(fill(Exchange="NSE", Segment=None)), "Data.Exchange"),
        (alert(fill(Exchange=None, Segment="D")), "Data.Exchange"),
        (alert(fill(LastUpdatedTime="yesterday")), "Data.LastUpdatedTime"),
        (alert(fill(LastUpdatedTime=1763870475)), "Data.LastUpdatedTime"),
        (alert(camel(fill(OrderDateTime="23/11/2026 09:20"))), "Data.orderDateTime"),
        (alert(fill(CorrelationId=["a"])), "Data.CorrelationId"),
    ],
)
def test_malformed_messages_raise_bad_order_update_naming_the_key(text, names):
    with pytest.raises(BadOrderUpdate, match=names) as caught:
        parse_message(text)
    assert isinstance(caught.value, ValueError)
    assert names in (caught.value.path or caught.value.problem)


def test_bad_order_update_names_the_key_as_sent():
    with pytest.raises(BadOrderUpdate) as caught:
        parse_message(alert(camel(fill(Price="abc"))))
    assert caught.value.path == "Data.price"
    assert str(caught.value) == "Data.price: expected a number, got 'abc'"


def test_a_not_json_error_does_not_quote_the_frame():
    with pytest.raises(BadOrderUpdate) as caught:
        parse_message('{"Token": "eyJsecret" oops')
    assert "eyJsecret" not in str(caught.value)


# ---------------------------------------------------------------------------------------------
# Other messages


@pytest.mark.parametrize(
    ("text", "type_"),
    [
        ('{"Type": "login_ack", "Data": {"Status": "OK"}}', "login_ack"),
        ('{"type": "heartbeat"}', "heartbeat"),
        ('{"Type": "trade_alert", "Data": {"OrderNo": "1"}}', "trade_alert"),
        ('{"Data": {"OrderNo": "1", "Status": "Traded"}}', None),
        ('{"Type": 42}', None),
        ("{}", None),
        ("[]", None),
        ('"pong"', None),
        ("null", None),
    ],
)
def test_other_messages_parse_to_other_message(text, type_):
    message = parse_message(text)
    assert message == OtherMessage(type_, None)
    assert message.raw == json.loads(text)


def test_parse_frame_splits_values_run_together():
    text = alert(FILL_PASCAL_NUMBERS) + "\n" + DOCS_SAMPLE + '{"Type":"heartbeat"}  '
    assert parse_frame(text) == [FILL_EXPECTED, DOCS_EXPECTED, OtherMessage("heartbeat", None)]
    assert parse_frame(DOCS_SAMPLE.encode()) == [DOCS_EXPECTED]


@pytest.mark.parametrize(("text", "names"), [("", "empty"), ("  ", "empty"), ("{} {", "JSON")])
def test_parse_frame_raises_on_a_broken_frame(text, names):
    with pytest.raises(BadOrderUpdate, match=names):
        parse_frame(text)


# ---------------------------------------------------------------------------------------------
# Raw data and logging


def test_raw_is_kept_but_left_out_of_equality_and_repr():
    update = parse_message(DOCS_SAMPLE)
    assert update.raw["Data"]["ClientId"] == "1000000001"
    assert "1000000001" not in repr(update)
    assert hash(update) == hash(DOCS_EXPECTED)


def test_log_fields_mask_the_client_id_in_either_casing():
    pascal = parse_message(DOCS_SAMPLE).log_fields()
    camel_case = parse_message(alert(camel(FILL_PASCAL_NUMBERS))).log_fields()
    assert pascal["ClientId"] == "***"
    assert pascal["OrderNo"] == "1124091136546"
    assert camel_case["clientId"] == "***"
    assert "1000000001" not in json.dumps(pascal) + json.dumps(camel_case)


# ---------------------------------------------------------------------------------------------
# Encoder


ROUND_TRIP_UPDATES = {
    "docs-sample": DOCS_EXPECTED,
    "nifty-part-fill": FILL_EXPECTED,
    "minimal": OrderUpdate(order_id="1", status="TRANSIT"),
    "rejected": OrderUpdate(
        order_id="2",
        status="REJECTED",
        transaction_type="BUY",
        exchange_segment="NSE_FNO",
        reason="RMS:1:Order Price needs to be Circuit Limits of 230.10 - 260.90",
        quantity=75,
        price=Decimal("300.05"),
    ),
    "unknown-status-and-index": OrderUpdate(
        order_id="3", status="Closed", exchange_segment="IDX_I", product_type="X9"
    ),
    "fractional-seconds": OrderUpdate(
        order_id="4",
        status="TRADED",
        updated_at=datetime(2026, 11, 23, 15, 29, 59, 999000, tzinfo=IST),
        avg_traded_price=Decimal("0.05"),
    ),
    "every-product-and-order-type": OrderUpdate(
        order_id="5", status="EXPIRED", product_type="BO", order_type="STOP_LOSS_MARKET"
    ),
}


@pytest.mark.parametrize("update", ROUND_TRIP_UPDATES.values(), ids=ROUND_TRIP_UPDATES.keys())
@pytest.mark.parametrize("casing", ["pascal", "camel"])
@pytest.mark.parametrize("numbers_as_strings", [False, True], ids=["numbers", "strings"])
def test_order_alert_message_round_trips(update, casing, numbers_as_strings):
    text = order_alert_message(update, casing=casing, numbers_as_strings=numbers_as_strings)
    assert parse_message(text) == update


def test_order_alert_message_writes_the_feed_spellings_in_pascal_case():
    body = json.loads(order_alert_message(FILL_EXPECTED))
    assert body["Type"] == "order_alert"
    data = body["Data"]
    assert {key: data[key] for key in ("Exchange", "Segment", "TxnType", "Product")} == {
        "Exchange": "NSE",
        "Segment": "D",
        "TxnType": "S",
        "Product": "I",
    }
    assert (data["OrderType"], data["Status"]) == ("SL", "Part_Traded")
    assert (data["OrderNo"], data["SecurityId"], data["LastUpdatedTime"]) == (
        "5524112312345",
        "43512",
        "2026-11-23 09:21:15",
    )
    assert (data["Quantity"], data["Price"]) == (150, 245.55)


def test_order_alert_message_camel_case_and_string_numbers():
    body = json.loads(order_alert_message(FILL_EXPECTED, casing="camel", numbers_as_strings=True))
    data = body["Data"]
    assert "OrderNo" not in data
    assert (data["orderNo"], data["txnType"], data["status"]) == (
        "5524112312345",
        "S",
        "Part_Traded",
    )
    assert (data["quantity"], data["price"], data["triggerPrice"]) == ("150", "245.55", "246")
    assert all(key[0].islower() for key in data)


def test_order_alert_message_writes_absent_values_as_empty_strings():
    data = json.loads(order_alert_message(OrderUpdate(order_id="1", status="TRANSIT")))["Data"]
    assert data["CorrelationId"] == data["Price"] == data["LastUpdatedTime"] == ""


def test_order_alert_message_writes_times_in_ist():
    utc_time = datetime(2026, 11, 23, 3, 51, 15, tzinfo=UTC)
    update = OrderUpdate(order_id="1", status="TRADED", updated_at=utc_time)
    data = json.loads(order_alert_message(update))["Data"]
    assert data["LastUpdatedTime"] == "2026-11-23 09:21:15"


def test_order_alert_message_refuses_an_unknown_casing():
    with pytest.raises(ValueError, match="casing"):
        order_alert_message(FILL_EXPECTED, casing="snake")
