"""trading.dhan.errors: every Dhan error shape maps to the response the caller needs."""

from __future__ import annotations

import http.client
import json
import pickle
import random

import pytest
import requests
import urllib3.exceptions as u3ex

from trading.dhan.errors import (
    AuthFailure,
    DailyCapExceeded,
    DhanError,
    RateLimited,
    Rejected,
    Retryable,
    UnknownOutcome,
    backoff_ceiling,
    backoff_delays,
    error_from_exception,
    error_from_response,
    redact,
)

# Real bodies quoted in PROTOCOL.md 1.1: (status, body, class, code, type, message)
REAL_BODIES = [
    (
        401,
        '{"errorType":"Invalid_Authentication","errorCode":"DH-901","errorMessage":'
        '"Client ID or user generated access token is invalid or expired."}',
        AuthFailure,
        "DH-901",
        "Invalid_Authentication",
        "Client ID or user generated access token is invalid or expired.",
    ),
    (
        400,
        '{"errorType":"Input_Exception","errorCode":"DH-905","errorMessage":'
        '"Missing required fields, bad values for parameters etc."}',
        Rejected,
        "DH-905",
        "Input_Exception",
        "Missing required fields, bad values for parameters etc.",
    ),
    (
        400,
        '{"errorType":"Order_Error","errorCode":"DH-906","errorMessage":'
        '"Market is Closed! You cannot modify/cancel an order now."}',
        Rejected,
        "DH-906",
        "Order_Error",
        "Market is Closed! You cannot modify/cancel an order now.",
    ),
    (
        400,
        '{"errorType":"Order_Error","errorCode":"DH-906","errorMessage":"Invalid Token"}',
        AuthFailure,
        "DH-906",
        "Order_Error",
        "Invalid Token",
    ),
    (
        429,
        '{"errorType":"Rate_Limit","errorCode":"DH-904","errorMessage":"Too many requests on '
        'server from single user breaching rate limits. Try throttling API calls."}',
        RateLimited,
        "DH-904",
        "Rate_Limit",
        "Too many requests on server from single user breaching rate limits. "
        "Try throttling API calls.",
    ),
    (
        500,
        '{"errorType":"HOLDING_ERROR","errorCode":"DH-1111","errorMessage":'
        '"No holdings available"}',
        Rejected,
        "DH-1111",
        "HOLDING_ERROR",
        "No holdings available",
    ),
    (
        400,
        '{"errorType":"Input_Exception","errorCode":"DH-905","errorMessage":"System is unable '
        'to fetch data due to incorrect parameters or no data present"}',
        Rejected,
        "DH-905",
        "Input_Exception",
        "System is unable to fetch data due to incorrect parameters or no data present",
    ),
]


@pytest.mark.parametrize(("status", "body", "cls", "code", "etype", "message"), REAL_BODIES)
def test_real_error_bodies_map_to_their_class_and_keep_their_fields(
    status, body, cls, code, etype, message
):
    for raw in (body, body.encode(), json.loads(body)):
        err = error_from_response(status, raw)
        assert type(err) is cls
        assert (err.status, err.code, err.error_type, err.message) == (
            status,
            code,
            etype,
            message,
        )
        assert code in str(err)
        assert message in str(err)


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("DH-902", AuthFailure),
        ("DH-903", Rejected),
        ("DH-907", Rejected),
        ("DH-908", Retryable),
        ("DH-909", Retryable),
        ("DH-911", Rejected),
    ],
)
def test_other_trading_codes(code, cls):
    body = {"errorType": "X", "errorCode": code, "errorMessage": "m"}
    assert type(error_from_response(400, body)) is cls


def test_an_unknown_code_is_classified_by_http_status():
    def body(code: str) -> dict:
        return {"errorType": "Others", "errorCode": code, "errorMessage": "?"}

    assert type(error_from_response(500, body("DH-910"))) is Retryable
    assert type(error_from_response(400, body("DH-910"))) is Rejected
    assert type(error_from_response(401, body("DH-999"))) is AuthFailure
    assert type(error_from_response(429, body("DH-999"))) is RateLimited
    assert type(error_from_response(404, body("RS-9005"))) is Rejected


DATA_API = [
    ("800", "Internal Server Error", Retryable),
    ("804", "Requested number of instruments exceeds limit", Rejected),
    ("805", "Too many requests/connections", RateLimited),
    ("806", "Data APIs not subscribed", AuthFailure),
    ("807", "Access token expired", AuthFailure),
    ("808", "Authentication failed", AuthFailure),
    ("809", "Access token invalid", AuthFailure),
    ("810", "Client ID invalid", AuthFailure),
    ("811", "Invalid Expiry Date", Rejected),
    ("812", "Invalid date format", Rejected),
    ("813", "Invalid SecurityId", Rejected),
    ("814", "Invalid request", Rejected),
]


@pytest.mark.parametrize(("code", "message", "cls"), DATA_API)
def test_data_api_error_shape_maps_by_its_code(code, message, cls):
    data_first = f'{{"data":{{"{code}":"{message}"}},"status":"failed"}}'
    status_first = f'{{"status":"failed","data":{{"{code}":"{message}"}}}}'
    for body in (data_first, status_first):
        err = error_from_response(400, body)
        assert type(err) is cls
        assert (err.code, err.message, err.error_type) == (code, message, None)


def test_805_is_also_retryable():
    body = {"data": {"805": "x"}, "status": "failed"}
    assert isinstance(error_from_response(400, body), Retryable)


def test_a_numeric_error_code_is_read_as_a_string():
    # One recording shows {"errorCode": 806, ...} with HTTP 200.
    err = error_from_response(200, {"errorType": "Data", "errorCode": 806, "errorMessage": "x"})
    assert type(err) is AuthFailure
    assert err.code == "806"


def test_gateway_404_shape():
    body = (
        '{"timestamp":"2025-03-01T10:00:00.000+00:00","status":404,"error":"Not Found",'
        '"path":"/v2/optionchain/expirylistt"}'
    )
    err = error_from_response(404, body)
    assert type(err) is Rejected
    assert err.code is None
    assert err.error_type == "Not Found"
    assert "/v2/optionchain/expirylistt" in err.message


def test_html_502_is_retryable_and_keeps_a_short_snippet():
    page = b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>" + b"x" * 5000
    err = error_from_response(502, page)
    assert type(err) is Retryable
    assert err.code is None
    assert "502 Bad Gateway" in err.message
    assert len(err.message) < 300


def test_empty_body_500_is_retryable():
    for body in (b"", "", None, "   "):
        err = error_from_response(500, body)
        assert type(err) is Retryable
        assert err.message == "HTTP 500 with an empty body"


def test_unrecognised_json_and_non_utf8_bodies_do_not_raise():
    assert type(error_from_response(400, b"[1, 2]")) is Rejected
    assert type(error_from_response(503, b"\xff\xfe garbage")) is Retryable
    assert "foo" in error_from_response(418, {"foo": 1}).message


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, b""),
        (502, b"<html>502 Bad Gateway</html>"),
        (504, None),
        (500, {"errorType": "Internal", "errorCode": "DH-908", "errorMessage": "x"}),
        (503, {"errorType": "Network", "errorCode": "DH-909", "errorMessage": "x"}),
        (408, b""),
    ],
)
def test_a_server_fault_on_an_order_placement_is_an_unknown_outcome(status, body):
    # The gateway may have passed the order on before failing: look it up, never re-send.
    assert type(error_from_response(status, body, is_order_placement=True)) is UnknownOutcome
    assert isinstance(error_from_response(status, body), Retryable)


def test_definite_answers_to_an_order_placement_keep_their_class():
    rate = {"errorType": "Rate_Limit", "errorCode": "DH-904", "errorMessage": "slow down"}
    auth = {"errorType": "Invalid_Authentication", "errorCode": "DH-901", "errorMessage": "x"}
    bad = {"errorType": "Input_Exception", "errorCode": "DH-905", "errorMessage": "x"}
    assert type(error_from_response(429, rate, is_order_placement=True)) is RateLimited
    assert type(error_from_response(401, auth, is_order_placement=True)) is AuthFailure
    assert type(error_from_response(400, bad, is_order_placement=True)) is Rejected


# --- secrets --------------------------------------------------------------------------------

TOKEN = (
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzUxMiJ9."
    "eyJpc3MiOiJkaGFuIiwiZGhhbkNsaWVudElkIjoiMTEwMDAwMDAwMSJ9."
    "c2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJl"
)
CLIENT_ID = "1100000001"


def all_texts(err: DhanError) -> str:
    return " ".join([str(err), repr(err), *map(str, err.args), pickle.dumps(err).hex()])


@pytest.mark.parametrize(
    "message",
    [
        f"token {TOKEN} is expired",
        f"bad header access-token: {TOKEN}",
        f"GET https://api.dhan.co/v2/x?token={TOKEN}&clientId={CLIENT_ID}",
        f'{{"dhanClientId": "{CLIENT_ID}", "accessToken": "{TOKEN[:40]}"}}',
        TOKEN[:30],  # a truncated token still looks like a JWT
    ],
)
def test_the_token_never_appears_in_an_error(message):
    body = {"errorType": "Order_Error", "errorCode": "DH-906", "errorMessage": message}
    err = error_from_response(400, body)
    texts = all_texts(err)
    assert TOKEN[:20] not in texts
    assert TOKEN[:20].encode().hex() not in texts
    assert "***" in err.message


def test_explicit_secrets_are_redacted_from_any_text():
    html = f"<html>client {CLIENT_ID} said no</html>"
    err = error_from_response(502, html, secrets=[TOKEN, CLIENT_ID])
    assert CLIENT_ID not in all_texts(err)
    exc = requests.ConnectionError(f"HTTPSConnectionPool: /v2/orders?client={CLIENT_ID}")
    assert CLIENT_ID not in all_texts(error_from_exception(exc, secrets=[CLIENT_ID]))


def test_redact_leaves_ordinary_text_alone():
    text = "Order 1125021912345 rejected: Invalid Token; Market is Closed!"
    assert redact(text) == text


def test_errors_pickle_with_their_fields():
    err = error_from_response(429, {"errorType": "R", "errorCode": "DH-904", "errorMessage": "m"})
    back = pickle.loads(pickle.dumps(err))  # noqa: S301 - our own bytes
    assert type(back) is RateLimited
    assert (back.status, back.code, back.message) == (429, "DH-904", "m")
    cap = DailyCapExceeded("x", category="orders", cap=7000)
    cap = pickle.loads(pickle.dumps(cap))  # noqa: S301 - our own bytes
    assert (cap.category, cap.cap) == ("orders", 7000)


# --- network exceptions ---------------------------------------------------------------------


def refused() -> requests.ConnectionError:
    """What requests raises for a refused connection: NewConnectionError inside MaxRetryError."""
    reason = u3ex.NewConnectionError(None, "[Errno 111] Connection refused")
    return requests.ConnectionError(u3ex.MaxRetryError(None, "/v2/orders", reason))


def dropped() -> requests.ConnectionError:
    """A connection the server closed after we wrote the request."""
    reason = u3ex.ProtocolError(
        "Connection aborted.", http.client.RemoteDisconnected("Remote end closed connection")
    )
    return requests.ConnectionError(reason)


NETWORK = [
    # (exception, class for a placement, class otherwise)
    (requests.ConnectTimeout("connect timed out"), Retryable, Retryable),
    (refused(), Retryable, Retryable),
    (ConnectionRefusedError(111, "Connection refused"), Retryable, Retryable),
    (requests.ReadTimeout("read timed out"), UnknownOutcome, Retryable),
    (dropped(), UnknownOutcome, Retryable),
    (requests.exceptions.ChunkedEncodingError("Connection broken"), UnknownOutcome, Retryable),
    (ConnectionResetError(104, "reset by peer"), UnknownOutcome, Retryable),
    (TimeoutError("timed out"), UnknownOutcome, Retryable),  # socket.timeout
    (requests.exceptions.InvalidURL("bad url"), DhanError, DhanError),
    (ValueError("a bug"), UnknownOutcome, DhanError),
]


@pytest.mark.parametrize(("exc", "placement_cls", "other_cls"), NETWORK)
def test_network_exceptions(exc, placement_cls, other_cls):
    placement = error_from_exception(exc, is_order_placement=True)
    other = error_from_exception(exc, is_order_placement=False)
    assert type(placement) is placement_cls
    assert type(other) is other_cls
    assert placement.__cause__ is exc
    assert placement.status is None


def test_a_connect_timeout_wrapped_by_requests_is_detected_through_the_chain():
    reason = u3ex.ConnectTimeoutError(None, "Connection to api.dhan.co timed out")
    exc = requests.ConnectionError(u3ex.MaxRetryError(None, "/v2/orders", reason))
    assert type(error_from_exception(exc, is_order_placement=True)) is Retryable


# --- backoff --------------------------------------------------------------------------------


def test_backoff_ceilings_double_up_to_the_cap():
    assert [backoff_ceiling(n) for n in range(7)] == [0.5, 1, 2, 4, 8, 8, 8]
    assert backoff_ceiling(10_000) == 8.0  # no overflow


def test_backoff_delays_are_capped_and_jittered_reproducibly():
    delays = backoff_delays(8, rng=random.Random(7))
    assert delays == backoff_delays(8, rng=random.Random(7))
    assert delays != backoff_delays(8, rng=random.Random(8))
    assert len(delays) == 8
    for n, delay in enumerate(delays):
        assert 0.0 <= delay <= backoff_ceiling(n)
    assert len(set(delays)) == 8  # jittered, not a fixed schedule


def test_backoff_delays_grow_on_average():
    rng = random.Random(1)
    runs = [backoff_delays(6, base=0.5, cap=8.0, rng=rng) for _ in range(2000)]
    means = [sum(run[n] for run in runs) / len(runs) for n in range(6)]
    assert means[0] < means[1] < means[2] < means[3] < means[4]
    assert abs(means[5] - 4.0) < 0.3  # capped: uniform(0, 8) averages 4


def test_backoff_rejects_nonsense():
    with pytest.raises(ValueError):
        backoff_delays(-1)
    with pytest.raises(ValueError):
        backoff_delays(3, base=0)
