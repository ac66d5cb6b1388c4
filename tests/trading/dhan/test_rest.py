"""trading.dhan.rest: typed calls, retries by error class, exactly-once order placement.

Two halves. The first scripts the transport with a fake session (a list of answers and
exceptions), so every retry/resolution rule is checked exactly, with a recorded sleep instead of
real waits. The second runs the client against the real simulator over loopback HTTP (fixture
``dhan_sim``), with the simulator's fault flags. No assertion is about elapsed time: timeouts are
only used to make the simulator's delays count as timeouts.
"""

from __future__ import annotations

import json
import logging
import random
import re
import socket
import time
from collections.abc import Callable
from datetime import timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any

import pytest
import requests
from django.core.exceptions import ImproperlyConfigured

from trading.dhan.errors import (
    AuthFailure,
    DailyCapExceeded,
    RateLimited,
    Rejected,
    Retryable,
    UnknownOutcome,
    backoff_ceiling,
)
from trading.dhan.ratelimit import InProcessRateLimiter
from trading.dhan.rest import (
    DEFAULT_LOOKUP_DELAYS,
    DhanRestClient,
    new_correlation_id,
)
from trading.dhan.rest_types import (
    CORRELATION_ID_MAX_LEN,
    CancelOrderRequest,
    Candle,
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
    OhlcQuote,
    OptionChainRequest,
    OptionChainResponse,
    OrderBookResponse,
    OrderByCorrelationIdRequest,
    OrderByIdRequest,
    OrderLookupResponse,
    OrderStatusResponse,
    PlaceOrderRequest,
    PositionsResponse,
    Profile,
    QuoteResponse,
    RenewTokenResponse,
    TradeBookResponse,
)

# JWT-shaped, like Dhan's tokens, so the pattern-based redaction is exercised too.
TOKEN = "eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiIxMDAwMDAwMDAxIn0.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"
CLIENT_ID = "1000000001"
BASE = "http://dhan.invalid/v2"


# ---------------------------------------------------------------------------------------------
# Fakes


class RecordingLimiter:
    """A RateLimiter that admits everything and remembers the categories asked for."""

    def __init__(self) -> None:
        self.categories: list[str] = []

    def acquire(self, category: str, *, block: bool = True, timeout: float | None = None) -> None:
        self.categories.append(category)


class Sleeps(list):
    """An injectable sleep that only records."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


class FakeSession:
    """Stands in for requests.Session: answers from a script, records every request.

    Script items: an exception instance (raised), or ``(status, body)`` where body is bytes or
    JSON-serialisable.
    """

    def __init__(self, *script: Any) -> None:
        self.script = list(script)
        self.requests: list[dict[str, Any]] = []
        self.closed = False

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        self.requests.append({"method": method, "url": url, **kwargs})
        if not self.script:
            raise AssertionError(f"unexpected request {method} {url}")
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        status, body = item
        response = requests.Response()
        response.status_code = status
        response._content = body if isinstance(body, bytes) else json.dumps(body).encode()
        response.url = url
        return response

    def close(self) -> None:
        self.closed = True

    def sent(self, method: str, path: str | None = None) -> list[dict[str, Any]]:
        return [
            r
            for r in self.requests
            if r["method"] == method and (path is None or r["url"] == BASE + path)
        ]


def dh_error(status: int, code: str, message: str = "x", etype: str = "Error") -> tuple:
    return status, {"errorType": etype, "errorCode": code, "errorMessage": message}


def make_client(
    *script: Any,
    token: Callable[[], str | None] = lambda: TOKEN,
    limiter: Any = None,
    sleep: Sleeps | None = None,
    **kwargs: Any,
) -> tuple[DhanRestClient, FakeSession, Sleeps]:
    session = FakeSession(*script)
    sleeps = sleep if sleep is not None else Sleeps()
    client = DhanRestClient(
        base_url=BASE,
        client_id=CLIENT_ID,
        token_provider=token,
        limiter=limiter if limiter is not None else RecordingLimiter(),
        sleep=sleeps,
        rng=random.Random(7),
        session=session,  # type: ignore[arg-type]
        **kwargs,
    )
    return client, session, sleeps


def order_request(**overrides: Any) -> PlaceOrderRequest:
    fields: dict[str, Any] = {
        "dhanClientId": CLIENT_ID,
        "transactionType": "BUY",
        "exchangeSegment": "NSE_FNO",
        "productType": "INTRADAY",
        "orderType": "LIMIT",
        "validity": "DAY",
        "securityId": "52175",
        "quantity": 75,
        "price": Decimal("101.5"),
    }
    return PlaceOrderRequest(**(fields | overrides))


def order_row(order_id: str = "1001", status: str = "PENDING", **extra: Any) -> dict[str, Any]:
    return {"orderId": order_id, "orderStatus": status, "correlationId": "cid-1"} | extra


ACCEPTED = (200, {"orderId": "1001", "orderStatus": "TRANSIT"})
UNKNOWN_CID = dh_error(404, "DH-906", "Order not found")


# ---------------------------------------------------------------------------------------------
# Correlation ids


def test_generated_correlation_ids_are_unique_and_fit_dhans_rules():
    ids = [new_correlation_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    for cid in ids[:50]:
        assert len(cid) <= CORRELATION_ID_MAX_LEN
        assert re.fullmatch(r"[A-Za-z0-9 _-]+", cid)
        assert order_request(correlationId=cid).correlationId == cid


def test_a_placement_without_correlation_id_is_sent_with_a_generated_one():
    client, session, _ = make_client(ACCEPTED, correlation_ids=lambda: "as-generated-1")
    assert client.place_order(order_request()) == OrderStatusResponse(
        orderId="1001", orderStatus="TRANSIT"
    )
    assert session.requests[0]["json"]["correlationId"] == "as-generated-1"


def test_a_callers_correlation_id_is_kept():
    client, session, _ = make_client(ACCEPTED, correlation_ids=lambda: "unused")
    client.place_order(order_request(correlationId="mine-42"))
    assert session.requests[0]["json"]["correlationId"] == "mine-42"


# ---------------------------------------------------------------------------------------------
# Transport: headers, timeouts, session


def test_every_request_reads_the_token_again_and_sends_both_credentials():
    tokens = iter(["tok-one-aaaa", "tok-two-bbbb"])
    client, session, _ = make_client(
        (200, []), (200, []), token=lambda: next(tokens), read_timeout=7.0, connect_timeout=2.0
    )
    client.positions()
    client.positions()
    first, second = session.requests
    assert first["headers"] == {"access-token": "tok-one-aaaa", "client-id": CLIENT_ID}
    assert second["headers"]["access-token"] == "tok-two-bbbb"
    assert first["timeout"] == (2.0, 7.0)
    assert first["allow_redirects"] is False
    assert (first["method"], first["url"]) == ("GET", BASE + "/positions")


def test_order_placement_uses_its_own_read_timeout():
    client, session, _ = make_client(ACCEPTED, read_timeout=9.0, order_read_timeout=3.0)
    client.place_order(order_request(correlationId="c1"))
    assert session.requests[0]["timeout"][1] == 3.0


def test_the_pooled_session_has_json_headers_and_no_automatic_retries():
    with DhanRestClient(
        base_url=BASE, client_id=CLIENT_ID, token_provider=lambda: TOKEN, limiter=RecordingLimiter()
    ) as client:
        session = client._session
        assert session.headers["Content-Type"] == "application/json"
        assert session.headers["Accept"] == "application/json"
        adapter = session.get_adapter(BASE)
        assert adapter.max_retries.total == 0
        assert adapter._pool_maxsize >= 4


def test_the_environments_proxies_and_ca_bundle_are_read_once_at_construction(monkeypatch):
    import requests

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "localhost")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corp.pem")
    client = DhanRestClient(
        base_url="https://api.dhan.co/v2",
        client_id=CLIENT_ID,
        token_provider=lambda: TOKEN,
        limiter=RecordingLimiter(),
    )
    session = client._session
    assert session.trust_env is False  # no scan of os.environ per request
    assert session.proxies["https"] == "http://proxy.example:3128"
    assert session.verify == "/etc/ssl/corp.pem"

    def scanned(*args, **kwargs):
        raise AssertionError("the environment was read again for a request")

    monkeypatch.setattr(requests.utils, "get_environ_proxies", scanned)
    monkeypatch.setattr(requests.sessions, "get_environ_proxies", scanned, raising=False)
    merged = session.merge_environment_settings(BASE, {}, None, None, None)
    assert dict(merged["proxies"]) == dict(session.proxies)  # the ones read at construction
    client.close()
    # NO_PROXY naming the host: no proxy for it
    monkeypatch.undo()
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "api.dhan.co")
    bypassed = DhanRestClient(
        base_url="https://api.dhan.co/v2",
        client_id=CLIENT_ID,
        token_provider=lambda: TOKEN,
        limiter=RecordingLimiter(),
    )
    assert "https" not in bypassed._session.proxies
    bypassed.close()


def test_the_context_manager_closes_the_session():
    client, session, _ = make_client()
    with client:
        pass
    assert session.closed


def test_kill_switch_goes_in_the_query_string_without_a_body():
    client, session, _ = make_client(
        (200, {"dhanClientId": CLIENT_ID, "killSwitchStatus": "Kill Switch has been activated"})
    )
    assert client.kill_switch(True).active is True
    sent = session.requests[0]
    assert (sent["method"], sent["url"]) == ("POST", BASE + "/killswitch")
    assert sent["params"] == {"killSwitchStatus": "ACTIVATE"}
    assert "json" not in sent


def test_renew_token_also_sends_the_client_id_as_dhanClientId():
    client, session, _ = make_client((200, {"accessToken": "eyJnew", "dhanClientId": CLIENT_ID}))
    assert client.renew_token().accessToken == "eyJnew"
    assert session.requests[0]["headers"]["dhanClientId"] == CLIENT_ID


# ---------------------------------------------------------------------------------------------
# Reads: retry by error class


def test_a_read_retries_retryable_failures_then_succeeds():
    limiter = RecordingLimiter()
    client, session, sleeps = make_client(
        dh_error(500, "DH-908"),
        requests.ReadTimeout("read timed out"),
        (200, []),
        limiter=limiter,
    )
    assert len(client.positions()) == 0
    assert len(session.requests) == 3
    assert len(sleeps) == 2
    # Every send, retries included, takes its own rate-limit slot.
    assert limiter.categories == ["non_trading"] * 3


def test_a_read_gives_up_after_max_attempts_with_the_last_error(caplog):
    caplog.set_level(logging.WARNING, logger="trading.dhan.rest")
    client, session, sleeps = make_client(
        *[dh_error(500, "DH-908")] * 3, max_attempts=3, backoff_base=0.5, backoff_cap=1.0
    )
    with pytest.raises(Retryable) as info:
        client.fund_limit()
    assert info.value.code == "DH-908"
    assert len(session.requests) == 3
    assert len(sleeps) == 2 and all(0 <= s <= 1.0 for s in sleeps)
    # One log line per failed attempt, naming endpoint, attempt, status and code.
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert "GET /fundlimit" in lines[0] and "attempt 1/3" in lines[0]
    assert "status=500 code=DH-908" in lines[0] and "retrying in" in lines[0]
    assert "attempt 3/3" in lines[2] and "giving up" in lines[2]


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (dh_error(401, "DH-901", etype="Invalid_Authentication"), AuthFailure),
        (dh_error(400, "DH-906", "Invalid Token"), AuthFailure),
        (dh_error(400, "DH-905"), Rejected),
        ((400, {"data": {"811": "Invalid Expiry Date"}, "status": "failed"}), Rejected),
    ],
)
def test_auth_failures_and_rejections_are_never_retried(answer, error):
    client, session, sleeps = make_client(answer)
    with pytest.raises(error):
        client.profile()
    assert len(session.requests) == 1
    assert sleeps == []


def test_a_broker_rate_limit_backs_off_at_least_half_the_ceiling():
    client, _, sleeps = make_client(
        dh_error(429, "DH-904", etype="Rate_Limit"),
        dh_error(429, "DH-904", etype="Rate_Limit"),
        (200, []),
        backoff_base=0.5,
        backoff_cap=8.0,
    )
    client.trade_book()
    assert sleeps[0] >= backoff_ceiling(0, base=0.5, cap=8.0) / 2
    assert sleeps[1] >= backoff_ceiling(1, base=0.5, cap=8.0) / 2


def test_local_limiter_refusals_are_raised_without_sending():
    limiter = InProcessRateLimiter({"quotes": [(1, 3600)]})
    client, session, _ = make_client((200, {"data": {}, "status": "success"}), limiter=limiter)
    request = MarketQuoteRequest({"IDX_I": [13]})
    client.quote_ltp(request)
    client.rate_limit_timeout = 0.01
    with pytest.raises(RateLimited):
        client.quote_ltp(request)
    assert len(session.requests) == 1
    daily = InProcessRateLimiter({"orders": [(1, 86400)]})
    client, session, _ = make_client(ACCEPTED, limiter=daily)
    client.place_order(order_request(correlationId="c1"))
    with pytest.raises(DailyCapExceeded):
        client.place_order(order_request(correlationId="c2"))
    assert len(session.requests) == 1


def test_a_connection_refused_read_is_retried_then_raised_as_retryable():
    # A real socket: a port that was just closed refuses connections.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleeps = Sleeps()
    with DhanRestClient(
        base_url=f"http://127.0.0.1:{port}/v2",
        client_id=CLIENT_ID,
        token_provider=lambda: TOKEN,
        limiter=RecordingLimiter(),
        sleep=sleeps,
        max_attempts=3,
    ) as client:
        with pytest.raises(Retryable) as info:
            client.order_book()
        assert not isinstance(info.value, UnknownOutcome)
        assert len(sleeps) == 2
        # Nothing reached a server, so even a placement is resent (and finally Retryable).
        sleeps.clear()
        with pytest.raises(Retryable) as info:
            client.place_order(order_request(correlationId="refused-1"))
        assert not isinstance(info.value, UnknownOutcome)
        assert len(sleeps) == 2


# ---------------------------------------------------------------------------------------------
# Special answers


def test_an_empty_live_portfolio_dh1111_reads_as_no_holdings(caplog):
    caplog.set_level(logging.WARNING, logger="trading.dhan.rest")
    client, _, _ = make_client(dh_error(500, "DH-1111", "No holdings available", "HOLDING_ERROR"))
    assert client.holdings() == HoldingsResponse(())
    assert caplog.records == []


def test_an_unknown_correlation_id_reads_as_not_found_but_a_gateway_404_raises():
    client, _, _ = make_client(
        UNKNOWN_CID,
        (404, {"timestamp": "x", "status": 404, "error": "Not Found", "path": "/v2/orders/x"}),
    )
    assert client.order_by_correlation_id(OrderByCorrelationIdRequest("nope")).order is None
    with pytest.raises(Rejected):
        client.order_by_correlation_id(OrderByCorrelationIdRequest("nope"))


def test_a_missing_token_is_an_auth_failure_and_nothing_is_sent():
    client, session, _ = make_client(token=lambda: None)
    with pytest.raises(AuthFailure, match="no Dhan access token"):
        client.positions()
    assert session.requests == []


# ---------------------------------------------------------------------------------------------
# Order placement: exactly once


def test_a_placement_is_resent_only_when_dhan_provably_never_received_it():
    client, session, sleeps = make_client(
        requests.ConnectTimeout("connect timed out"),
        dh_error(429, "DH-904", etype="Rate_Limit"),
        ACCEPTED,
    )
    assert client.place_order(order_request()).orderId == "1001"
    posts = session.sent("POST", "/orders")
    assert len(posts) == 3
    # The same correlation id every time: it is one logical order.
    assert len({p["json"]["correlationId"] for p in posts}) == 1
    assert len(sleeps) == 2


@pytest.mark.parametrize(
    "failure",
    [
        requests.ReadTimeout("read timed out"),
        requests.ConnectionError("Connection aborted: RemoteDisconnected"),
        requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead"),
        dh_error(500, "DH-908"),
        (502, b"<html>502 Bad Gateway</html>"),
        (200, b"<html>not json</html>"),
    ],
    ids=["read-timeout", "dropped", "truncated", "5xx", "gateway", "unreadable-200"],
)
def test_an_unknown_placement_is_looked_up_by_correlation_id_never_resent(failure, caplog):
    caplog.set_level(logging.WARNING, logger="trading.dhan.rest")
    limiter = RecordingLimiter()
    client, session, sleeps = make_client(
        failure,
        UNKNOWN_CID,  # Dhan may list a fresh order a moment late
        (200, [order_row("1001", "PENDING", correlationId="cid-1")]),
        limiter=limiter,
    )
    result = client.place_order(order_request(correlationId="cid-1"))
    assert result == OrderStatusResponse(orderId="1001", orderStatus="PENDING")
    assert len(session.sent("POST")) == 1
    assert len(session.sent("GET", "/orders/external/cid-1")) == 2
    assert sleeps == list(DEFAULT_LOOKUP_DELAYS[:2])
    assert limiter.categories == ["orders", "non_trading", "non_trading"]
    assert any("resolved by correlation id cid-1" in r.getMessage() for r in caplog.records)


def test_a_placement_still_unknown_after_the_lookups_raises_unknown_outcome():
    client, session, sleeps = make_client(
        requests.ReadTimeout("read timed out"),
        UNKNOWN_CID,
        requests.ReadTimeout("lookup timed out"),
        dh_error(500, "DH-908"),
        lookup_delays=(0.1, 0.2, 0.3),
    )
    with pytest.raises(UnknownOutcome) as info:
        client.place_order(order_request(correlationId="lost-1"))
    assert info.value.correlation_id == "lost-1"
    assert "lost-1" in str(info.value)
    assert len(session.sent("POST")) == 1
    assert len(session.requests) == 4
    assert sleeps == [0.1, 0.2, 0.3]


def test_an_auth_failure_during_the_lookup_still_reports_unknown_outcome():
    client, session, _ = make_client(
        requests.ReadTimeout("read timed out"), dh_error(401, "DH-901")
    )
    with pytest.raises(UnknownOutcome) as info:
        client.place_order(order_request(correlationId="auth-1"))
    assert isinstance(info.value.__cause__, UnknownOutcome)
    assert "AuthFailure" in str(info.value)
    assert len(session.requests) == 2  # no further look-ups: none could succeed


def test_a_rejected_placement_is_raised_and_not_resent():
    client, session, _ = make_client(dh_error(400, "DH-906", "Market is Closed!"))
    with pytest.raises(Rejected):
        client.place_order(order_request())
    assert len(session.requests) == 1


# ---------------------------------------------------------------------------------------------
# Modify / cancel with an unknown outcome


def cancel(order_id: str = "1001") -> CancelOrderRequest:
    return CancelOrderRequest(order_id)


def test_an_unknown_cancel_is_success_when_the_order_is_cancelled():
    client, session, _ = make_client(
        requests.ReadTimeout("read timed out"),
        (200, [order_row("1001", "PENDING")]),  # the cancel is still in flight
        (200, [order_row("1001", "CANCELLED")]),
    )
    assert client.cancel_order(cancel()) == OrderStatusResponse(
        orderId="1001", orderStatus="CANCELLED"
    )
    assert len(session.sent("DELETE")) == 1
    assert len(session.sent("GET", "/orders/1001")) == 2


def test_an_unknown_cancel_of_a_filled_order_reports_what_was_found():
    client, session, _ = make_client(dh_error(500, "DH-908"), (200, [order_row("1001", "TRADED")]))
    with pytest.raises(UnknownOutcome) as info:
        client.cancel_order(cancel())
    assert info.value.order_id == "1001"
    assert info.value.order.orderStatus == "TRADED"
    assert "CANCEL_ORDER" in str(info.value)
    assert len(session.sent("DELETE")) == 1
    assert len(session.sent("GET")) == 1  # TRADED is final: no further look-ups


def test_an_unknown_modify_is_success_when_the_order_carries_the_new_values():
    request = ModifyOrderRequest(
        dhanClientId=CLIENT_ID,
        orderId="1001",
        orderType="LIMIT",
        quantity=75,
        price=Decimal("99.5"),
        validity="DAY",
    )
    client, session, _ = make_client(
        requests.ReadTimeout("read timed out"),
        (200, [order_row("1001", "PENDING", orderType="LIMIT", quantity=75, price=99.50)]),
    )
    assert client.modify_order(request).orderStatus == "PENDING"
    assert len(session.sent("PUT")) == 1


def test_an_unknown_modify_not_in_effect_raises_with_the_order_seen():
    request = ModifyOrderRequest(
        dhanClientId=CLIENT_ID,
        orderId="1001",
        orderType="LIMIT",
        quantity=75,
        price=Decimal("99.5"),
        validity="DAY",
    )
    old = (200, [order_row("1001", "PENDING", orderType="LIMIT", quantity=75, price=101.5)])
    client, session, _ = make_client(
        requests.ReadTimeout("read timed out"), *[old] * len(DEFAULT_LOOKUP_DELAYS)
    )
    with pytest.raises(UnknownOutcome) as info:
        client.modify_order(request)
    assert info.value.order.price == Decimal("101.5")
    assert len(session.sent("PUT")) == 1


# ---------------------------------------------------------------------------------------------
# Secrets


def test_credentials_never_appear_in_reprs_errors_or_logs(caplog):
    caplog.set_level(logging.DEBUG)
    echo = f"token {TOKEN} of client {CLIENT_ID} is invalid; access-token: {TOKEN}"
    client, _, _ = make_client(
        dh_error(401, "DH-901", echo, "Invalid_Authentication"),
        requests.ReadTimeout(f"read timed out for {CLIENT_ID} with {TOKEN}"),
        requests.ReadTimeout(f"read timed out for {CLIENT_ID} with {TOKEN}"),
        max_attempts=2,
    )
    errors: list[BaseException] = []
    for call in (client.profile, client.fund_limit):
        with pytest.raises(AuthFailure if call == client.profile else Retryable) as info:
            call()
        errors.append(info.value)
    texts = [repr(client), str(client)]
    texts += [text for e in errors for text in (str(e), repr(e), str(e.args))]
    texts += [r.getMessage() for r in caplog.records]
    assert caplog.records
    for text in texts:
        assert TOKEN not in text and CLIENT_ID not in text
        assert "eyJ" not in text


# ---------------------------------------------------------------------------------------------
# Against the simulator (real HTTP on loopback)


def sim_client(sim: Any, **kwargs: Any) -> DhanRestClient:
    """A client for ``sim`` that never really sleeps and admits every request (unless given a
    limiter). The token is read from the simulator on every request unless overridden."""
    kwargs.setdefault("token_provider", lambda: sim.token)
    kwargs.setdefault("limiter", RecordingLimiter())
    kwargs.setdefault("sleep", Sleeps())
    return DhanRestClient(base_url=sim.base_url, client_id=sim.client_id, **kwargs)


def atm_call(sim: Any, client: DhanRestClient) -> tuple[Any, Decimal]:
    """The NIFTY call nearest the money on the nearest expiry, and its LTP."""
    spot = client.quote_ltp(MarketQuoteRequest({"IDX_I": [13]})).get("IDX_I", 13).last_price
    calls = [
        c
        for c in sim.market.contracts.values()
        if c.underlying == "NIFTY" and c.instrument == "OPTIDX" and c.option_type == "CE"
    ]
    expiry = min(c.expiry for c in calls)
    spec = min(
        (c for c in calls if c.expiry == expiry), key=lambda c: abs(Decimal(str(c.strike)) - spot)
    )
    quote = client.quote_ltp(MarketQuoteRequest({spec.exchange_segment: [spec.security_id]}))
    return spec, quote.get(spec.exchange_segment, spec.security_id).last_price


def resting_buy(sim: Any, spec: Any, ltp: Decimal, **overrides: Any) -> PlaceOrderRequest:
    """A LIMIT BUY of one lot at half the LTP, on the tick: it rests (PENDING), never fills."""
    tick = Decimal(str(spec.tick))
    price = max(tick, (ltp / 2 / tick).to_integral_value(rounding=ROUND_FLOOR) * tick)
    fields: dict[str, Any] = {
        "dhanClientId": sim.client_id,
        "exchangeSegment": spec.exchange_segment,
        "securityId": str(spec.security_id),
        "quantity": spec.lot,
        "price": price,
    }
    return order_request(**(fields | overrides))


def test_every_endpoint_answers_its_typed_response_and_takes_its_rate_category(dhan_sim):
    limiter = RecordingLimiter()
    calls: list[Endpoint] = []

    def call(endpoint: Endpoint, result: Any, cls: type) -> Any:
        calls.append(endpoint)
        assert isinstance(result, cls), (endpoint, result)
        return result

    with sim_client(dhan_sim, limiter=limiter) as client:
        spec, ltp = atm_call(dhan_sim, client)
        calls += [Endpoint.QUOTE_LTP, Endpoint.QUOTE_LTP]
        instruments = MarketQuoteRequest({spec.exchange_segment: [spec.security_id]})
        ohlc = call(Endpoint.QUOTE_OHLC, client.quote_ohlc(instruments), QuoteResponse)
        assert isinstance(ohlc.get(spec.exchange_segment, spec.security_id), OhlcQuote)
        full = call(Endpoint.QUOTE_FULL, client.quote_full(instruments), QuoteResponse)
        assert isinstance(full.get(spec.exchange_segment, spec.security_id), FullQuote)

        placed = call(
            Endpoint.PLACE_ORDER,
            client.place_order(resting_buy(dhan_sim, spec, ltp, correlationId="every-1")),
            OrderStatusResponse,
        )
        by_cid = call(
            Endpoint.ORDER_BY_CORRELATION_ID,
            client.order_by_correlation_id(OrderByCorrelationIdRequest("every-1")),
            OrderLookupResponse,
        )
        assert by_cid.order.orderId == placed.orderId
        assert by_cid.order.orderStatus == "PENDING"
        order = by_cid.order
        new_price = order.price - Decimal(str(spec.tick))
        call(
            Endpoint.MODIFY_ORDER,
            client.modify_order(
                ModifyOrderRequest(
                    dhanClientId=dhan_sim.client_id,
                    orderId=placed.orderId,
                    orderType="LIMIT",
                    quantity=spec.lot,
                    price=new_price,
                    validity="DAY",
                )
            ),
            OrderStatusResponse,
        )
        by_id = call(
            Endpoint.ORDER_BY_ID,
            client.order_by_id(OrderByIdRequest(placed.orderId)),
            OrderLookupResponse,
        )
        assert by_id.order.price == new_price
        book = call(Endpoint.ORDER_BOOK, client.order_book(), OrderBookResponse)
        assert placed.orderId in [o.orderId for o in book]
        cancelled = call(
            Endpoint.CANCEL_ORDER,
            client.cancel_order(CancelOrderRequest(placed.orderId)),
            OrderStatusResponse,
        )
        assert cancelled.orderStatus == "CANCELLED"

        call(Endpoint.TRADE_BOOK, client.trade_book(), TradeBookResponse)
        call(Endpoint.POSITIONS, client.positions(), PositionsResponse)
        call(Endpoint.HOLDINGS, client.holdings(), HoldingsResponse)
        funds = call(Endpoint.FUND_LIMIT, client.fund_limit(), FundLimit)
        assert funds.availabelBalance > 0
        profile = call(Endpoint.PROFILE, client.profile(), Profile)
        assert profile.dhanClientId == dhan_sim.client_id

        now = dhan_sim.now()
        session_open = now.replace(hour=9, minute=15, second=0, microsecond=0)
        intraday = call(
            Endpoint.CHART_INTRADAY,
            client.intraday_chart(
                IntradayChartRequest(
                    securityId="13",
                    exchangeSegment="IDX_I",
                    instrument="INDEX",
                    interval=1,
                    fromDate=session_open,
                    toDate=session_open + timedelta(hours=7),
                )
            ),
            ChartResponse,
        )
        assert all(isinstance(c, Candle) for c in intraday)
        daily = call(
            Endpoint.CHART_DAILY,
            client.daily_chart(
                DailyChartRequest(
                    securityId="13",
                    exchangeSegment="IDX_I",
                    instrument="INDEX",
                    fromDate=now.date() - timedelta(days=30),
                    toDate=now.date(),
                )
            ),
            ChartResponse,
        )
        assert len(daily) > 0
        expiries = call(
            Endpoint.EXPIRY_LIST,
            client.expiry_list(ExpiryListRequest(13, "IDX_I")),
            ExpiryListResponse,
        )
        assert expiries.expiries
        chain = call(
            Endpoint.OPTION_CHAIN,
            client.option_chain(OptionChainRequest(13, "IDX_I", expiries.expiries[0])),
            OptionChainResponse,
        )
        assert chain.oc

        status = call(Endpoint.KILL_SWITCH_STATUS, client.kill_switch_status(), KillSwitchResponse)
        assert status.active is False
        switched = call(Endpoint.KILL_SWITCH, client.kill_switch(True), KillSwitchResponse)
        assert switched.active is True
        call(
            Endpoint.KILL_SWITCH,
            client.kill_switch(KillSwitchRequest("DEACTIVATE")),
            KillSwitchResponse,
        )
        renewed = call(Endpoint.RENEW_TOKEN, client.renew_token(), RenewTokenResponse)
        assert renewed.accessToken

    assert set(calls) == set(Endpoint)
    assert limiter.categories == [e.rate_category.value for e in calls]


@pytest.mark.parametrize("fault", ["429", "500"])
def test_a_share_of_429_or_500_answers_is_retried_to_success(dhan_sim, fault):
    dhan_sim.faults.rest_error = fault
    dhan_sim.faults.rest_error_share = 0.5
    sleeps = Sleeps()
    with sim_client(dhan_sim, sleep=sleeps, max_attempts=10) as client:
        before = dhan_sim.stats["rest_calls"]
        for _ in range(8):
            assert client.fund_limit().availabelBalance > 0
        sent = dhan_sim.stats["rest_calls"] - before
    # Seeded: some calls were answered with the fault and resent, one sleep per resend.
    assert sent > 8
    assert len(sleeps) == sent - 8


@pytest.mark.parametrize(("fault", "error"), [("429", RateLimited), ("500", Retryable)])
def test_retries_stop_at_the_cap_with_the_faults_error(dhan_sim, fault, error):
    dhan_sim.faults.rest_error = fault
    dhan_sim.faults.rest_error_share = 1.0
    with sim_client(dhan_sim, max_attempts=3) as client:
        before = dhan_sim.stats["rest_calls"]
        with pytest.raises(error) as info:
            client.positions()
        assert dhan_sim.stats["rest_calls"] - before == 3
    assert info.value.code == {"429": "DH-904", "500": "DH-908"}[fault]


def test_a_placement_answered_429_is_resent_and_placed_once(dhan_sim):
    with sim_client(dhan_sim) as client:
        spec, ltp = atm_call(dhan_sim, client)
        dhan_sim.faults.rest_error = "429"
        dhan_sim.faults.rest_error_share = 1.0
        request = resting_buy(dhan_sim, spec, ltp, correlationId="throttled-1")
        with pytest.raises(RateLimited):
            client.place_order(request)
        assert dhan_sim.stats["place_order_calls"] == 0  # refused at the door every time
        dhan_sim.faults.rest_error_share = 0.0
        placed = client.place_order(request)
        assert dhan_sim.stats["place_order_calls"] == 1
        assert (
            client.order_by_correlation_id(OrderByCorrelationIdRequest("throttled-1")).order.orderId
            == placed.orderId
        )


def test_dh901_is_an_auth_failure_sent_once(dhan_sim):
    dhan_sim.faults.rest_error = "DH-901"
    dhan_sim.faults.rest_error_share = 1.0
    sleeps = Sleeps()
    with sim_client(dhan_sim, sleep=sleeps) as client:
        before = dhan_sim.stats["rest_calls"]
        with pytest.raises(AuthFailure) as info:
            client.profile()
    assert dhan_sim.stats["rest_calls"] - before == 1
    assert info.value.code == "DH-901"
    assert sleeps == []


def test_an_expired_token_on_a_data_api_is_an_auth_failure_sent_once(dhan_sim):
    # Data APIs answer in their own shape: {"data": {"807": "..."}, "status": "failed"}.
    dhan_sim.faults.token_expires_at = time.time() - 1
    with sim_client(dhan_sim) as client:
        before = dhan_sim.stats["rest_calls"]
        with pytest.raises(AuthFailure) as info:
            client.quote_ltp(MarketQuoteRequest({"IDX_I": [13]}))
    assert info.value.code == "807"
    assert dhan_sim.stats["rest_calls"] - before == 1


def test_a_read_slower_than_the_read_timeout_is_retryable(dhan_sim):
    dhan_sim.faults.latency = 1.0
    with sim_client(dhan_sim, read_timeout=0.1, max_attempts=2) as client:
        with pytest.raises(Retryable) as info:
            client.order_book()
    assert not isinstance(info.value, UnknownOutcome)
    assert isinstance(info.value.__cause__, requests.ReadTimeout)


def test_a_placement_answered_after_the_timeout_is_found_by_correlation_id(dhan_sim, caplog):
    caplog.set_level(logging.WARNING, logger="trading.dhan.rest")
    with sim_client(dhan_sim, order_read_timeout=0.2) as client:
        spec, ltp = atm_call(dhan_sim, client)
        dhan_sim.faults.place_order_delay = 2.0
        placed = client.place_order(resting_buy(dhan_sim, spec, ltp))  # correlation id generated
        dhan_sim.faults.place_order_delay = 0.0
        assert dhan_sim.stats["place_order_calls"] == 1  # never sent twice
        book = client.order_book()
    assert [o.orderId for o in book] == [placed.orderId]
    (order,) = book
    assert order.correlationId and order.correlationId.startswith("as-")
    assert placed.orderStatus == order.orderStatus == "PENDING"
    assert any("resolved by correlation id" in r.getMessage() for r in caplog.records)


def test_a_renewed_token_is_used_without_a_new_client(dhan_sim):
    current = {"token": dhan_sim.token}
    with sim_client(dhan_sim, token_provider=lambda: current["token"]) as client:
        assert client.profile().dhanClientId == dhan_sim.client_id
        dhan_sim.set_token("sim-token-rotated")
        with pytest.raises(AuthFailure):
            client.profile()
        current["token"] = "sim-token-rotated"
        assert client.profile().dhanClientId == dhan_sim.client_id


def test_from_settings_reads_django_settings_and_the_token_on_every_request(dhan_sim, settings):
    settings.DHANHQ_BASE_URL = dhan_sim.base_url
    settings.DHANHQ_CLIENT_ID = dhan_sim.client_id
    settings.DHANHQ_ACCESS_TOKEN = dhan_sim.token
    settings.DHANHQ_READ_TIMEOUT = 4.0
    with DhanRestClient.from_settings(limiter=RecordingLimiter()) as client:
        assert client.base_url == dhan_sim.base_url
        assert client.read_timeout == 4.0
        assert client.profile().dhanClientId == dhan_sim.client_id
        dhan_sim.set_token("sim-token-2")
        settings.DHANHQ_ACCESS_TOKEN = "sim-token-2"
        assert client.profile().dhanClientId == dhan_sim.client_id
        assert dhan_sim.client_id not in repr(client)


def test_from_settings_refuses_a_missing_client_id(settings):
    settings.DHANHQ_CLIENT_ID = None
    with pytest.raises(ImproperlyConfigured, match="DHANHQ_CLIENT_ID"):
        DhanRestClient.from_settings(limiter=RecordingLimiter())
