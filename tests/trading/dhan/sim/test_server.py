"""The simulator over real loopback sockets: REST wire formats and errors, the market feed, the
order-update feed, fault injection, and `manage.py dhan_sim`.

Clients here are deliberately raw (requests, websocket-client): the point is that a client
written to Dhan's documentation works with only the URLs changed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path

import pytest
import requests
import websocket
from django.core.management import call_command

from tests.support.waiting import wait_until
from trading.config.store import load_algo_config
from trading.dhan import feed_codec as fc
from trading.dhan.order_update_codec import OrderUpdate, login_message, parse_message
from trading.dhan.ratelimit import InProcessRateLimiter, load_limits
from trading.dhan.rest import DhanRestClient
from trading.dhan.rest_types import (
    ChartResponse,
    Endpoint,
    ExpiryListResponse,
    FundLimit,
    IntradayChartRequest,
    KillSwitchResponse,
    OptionChainResponse,
    OrderBookResponse,
    OrderLookupResponse,
    OrderStatusResponse,
    PositionsResponse,
    Profile,
    QuoteResponse,
    RenewTokenResponse,
    TradeBookResponse,
)
from trading.dhan.sim.market import Market
from trading.dhan.sim.server import SimConfig, Simulator
from trading.rules.market import IST
from workers.realtime.event_bus import MemoryEventBus
from workers.realtime.kv_store import MemoryKeyValueStore
from workers.realtime.services import Realtime
from workers.realtime.tick_store import MemoryTickStore
from workers.signal_engine import SignalEngine

ROOT = Path(__file__).resolve().parents[4]
NIFTY = 13


def headers(sim: Simulator, **extra: str) -> dict[str, str]:
    return {"access-token": sim.token, "client-id": sim.client_id, **extra}


def call(sim: Simulator, method: str, path: str, **kwargs: object) -> requests.Response:
    kwargs.setdefault("headers", headers(sim))
    return requests.request(method, sim.base_url + path, timeout=10, **kwargs)


def feed_url(sim: Simulator, token: str | None = None, client_id: str | None = None) -> str:
    return (
        f"{sim.ws_url}?version=2&token={token or sim.token}"
        f"&clientId={client_id or sim.client_id}&authType=2"
    )


def option_ids(sim: Simulator, count: int = 2) -> list[int]:
    ids = sorted(
        s.security_id
        for s in sim.market.contracts.values()
        if s.instrument == "OPTIDX" and s.underlying == "NIFTY"
    )
    return ids[:count]


CODES = {
    fc.TickerTick: 2,
    fc.QuoteTick: 4,
    fc.OpenInterest: 5,
    fc.PrevClose: 6,
    fc.MarketStatus: 7,
    fc.FullTick: 8,
    fc.Disconnect: 50,
}


def code(packet: object) -> int:
    return CODES[type(packet)]


def recv_packets(conn: websocket.WebSocket, stats: fc.FeedStats, count: int) -> list[object]:
    packets: list[object] = []
    while len(packets) < count:
        frame = conn.recv()
        assert isinstance(frame, bytes), f"expected a binary frame, got {frame!r}"
        decoded = fc.decode_frame(frame, time.time(), stats)
        assert len(decoded) <= 1, "one packet per frame by default"
        packets.extend(decoded)
    return packets


@pytest.fixture
def feed(dhan_sim: Simulator) -> Iterator[websocket.WebSocket]:
    conn = websocket.create_connection(feed_url(dhan_sim), timeout=10)
    yield conn
    conn.close()


def place_body(sim: Simulator, security_id: int, **overrides: object) -> dict[str, object]:
    spec = sim.market.contracts[security_id]
    quote = sim.market.quote(spec.exchange_segment, security_id, sim.now())
    body: dict[str, object] = {
        "dhanClientId": sim.client_id,
        "correlationId": "sim-test-1",
        "transactionType": "BUY",
        "exchangeSegment": spec.exchange_segment,
        "productType": "INTRADAY",
        "orderType": "LIMIT",
        "validity": "DAY",
        "securityId": str(security_id),
        "quantity": spec.lot,
        "disclosedQuantity": 0,
        "price": quote.best_ask,
        "afterMarketOrder": False,
    }
    body.update(overrides)
    return body


# -- REST ---------------------------------------------------------------------------------------


def test_every_portfolio_endpoint_answers_in_dhans_wire_shape(dhan_sim):
    assert FundLimit.from_wire(call(dhan_sim, "GET", "/fundlimit").json()).availabelBalance > 0
    assert Profile.from_wire(call(dhan_sim, "GET", "/profile").json()).dataPlan == "Active"
    assert len(OrderBookResponse.from_wire(call(dhan_sim, "GET", "/orders").json())) == 0
    assert len(TradeBookResponse.from_wire(call(dhan_sim, "GET", "/trades").json())) == 0
    assert len(PositionsResponse.from_wire(call(dhan_sim, "GET", "/positions").json())) == 0
    unknown = call(dhan_sim, "GET", "/orders/123456")
    assert unknown.status_code == 200 and unknown.json() == []  # Dhan: an empty array
    kill = KillSwitchResponse.from_wire(call(dhan_sim, "GET", "/killswitch").json())
    assert kill.active is False


def test_an_accepted_order_is_found_by_id_and_by_correlation_id(dhan_sim):
    sid = option_ids(dhan_sim)[0]
    placed = call(dhan_sim, "POST", "/orders", json=place_body(dhan_sim, sid))
    assert placed.status_code == 200, placed.text
    status = OrderStatusResponse.from_wire(placed.json())
    by_id = OrderLookupResponse.from_wire(call(dhan_sim, "GET", f"/orders/{status.orderId}").json())
    by_cid = OrderLookupResponse.from_wire(
        call(dhan_sim, "GET", "/orders/external/sim-test-1").json(),
        Endpoint.ORDER_BY_CORRELATION_ID,
    )
    assert by_id.order is not None and by_cid.order is not None
    assert by_id.order.orderId == by_cid.order.orderId == status.orderId
    missing = call(dhan_sim, "GET", "/orders/external/nobody")
    assert missing.status_code == 404 and missing.json()["errorCode"] == "DH-906"


def test_a_bad_order_is_refused_with_dh_905(dhan_sim):
    sid = option_ids(dhan_sim)[0]
    answer = call(dhan_sim, "POST", "/orders", json=place_body(dhan_sim, sid, quantity=""))
    assert answer.status_code == 400
    assert answer.json()["errorCode"] == "DH-905"
    garbage = call(dhan_sim, "POST", "/orders", data=b"{not json", headers=headers(dhan_sim))
    assert garbage.status_code == 400 and garbage.json()["errorCode"] == "DH-905"


@pytest.mark.parametrize(
    ("endpoint", "path"),
    [
        (Endpoint.QUOTE_LTP, "/marketfeed/ltp"),
        (Endpoint.QUOTE_OHLC, "/marketfeed/ohlc"),
        (Endpoint.QUOTE_FULL, "/marketfeed/quote"),
    ],
)
def test_market_quotes_are_keyed_by_segment_and_drop_unknown_ids(dhan_sim, endpoint, path):
    sid = option_ids(dhan_sim)[0]
    answer = call(dhan_sim, "POST", path, json={"IDX_I": [NIFTY], "NSE_FNO": [sid, 999999999]})
    quotes = QuoteResponse.from_wire(answer.json(), endpoint)
    assert quotes.get("IDX_I", NIFTY).last_price > 0
    assert quotes.get("NSE_FNO", sid).last_price > 0
    assert quotes.get("NSE_FNO", 999999999) is None
    if endpoint is Endpoint.QUOTE_FULL:
        full = quotes.get("NSE_FNO", sid)
        assert len(full.depth.buy) == len(full.depth.sell) == 5
        assert full.depth.sell[0].price > full.depth.buy[0].price


def test_more_than_a_thousand_quote_ids_is_the_data_api_error_804(dhan_sim):
    answer = call(dhan_sim, "POST", "/marketfeed/ltp", json={"NSE_FNO": list(range(1001))})
    assert answer.status_code == 400
    assert answer.json() == {
        "data": {"804": "Requested number of instruments exceeds limit"},
        "status": "failed",
    }


def test_data_apis_require_the_client_id_header(dhan_sim):
    answer = call(
        dhan_sim, "POST", "/marketfeed/ltp", json={"IDX_I": [NIFTY]},
        headers={"access-token": dhan_sim.token},
    )  # fmt: skip
    assert answer.status_code == 400 and "810" in answer.json()["data"]


def test_the_option_chain_lists_both_legs_with_security_ids(dhan_sim):
    body = {"UnderlyingScrip": NIFTY, "UnderlyingSeg": "IDX_I"}
    expiries = ExpiryListResponse.from_wire(
        call(dhan_sim, "POST", "/optionchain/expirylist", json=body).json()
    )
    assert expiries.expiries and list(expiries.expiries) == sorted(expiries.expiries)
    raw = call(
        dhan_sim, "POST", "/optionchain", json={**body, "Expiry": expiries.expiries[0].isoformat()}
    )
    assert all(key.endswith(".000000") for key in raw.json()["data"]["oc"])
    chain = OptionChainResponse.from_wire(raw.json())
    strike, legs = next(iter(chain.oc.items()))
    assert legs.ce.security_id in dhan_sim.market.contracts
    assert dhan_sim.market.contracts[legs.pe.security_id].strike == float(strike)
    bad = call(dhan_sim, "POST", "/optionchain", json={**body, "Expiry": "2001-01-01"})
    assert bad.status_code == 400 and bad.json()["data"] == {"811": "Invalid Expiry Date"}


def test_charts_come_from_the_same_path_in_dhans_number_style(dhan_sim):
    day = dhan_sim.market.trading_date.isoformat()
    wait_until(lambda: dhan_sim.now().minute >= 17, "a couple of market minutes (speed 60)")
    body = {
        "securityId": str(NIFTY), "exchangeSegment": "IDX_I", "instrument": "INDEX",
        "interval": "1", "oi": False, "fromDate": day, "toDate": day,
    }  # fmt: skip
    raw = call(dhan_sim, "POST", "/charts/intraday", json=body)
    assert "E9" in raw.text  # epoch seconds serialised Java-style, as Dhan does
    candles = list(ChartResponse.from_wire(raw.json()))
    assert len(candles) >= 2
    expected = dhan_sim.market.intraday_candles(NIFTY, 1, dhan_sim.now())
    assert [float(c.open) for c in candles] == [c.open for c in expected[: len(candles)]]
    daily = {**body, "fromDate": "2026-01-01", "toDate": "2099-01-01"}
    del daily["interval"]
    history = list(
        ChartResponse.from_wire(
            call(dhan_sim, "POST", "/charts/historical", json=daily).json(), Endpoint.CHART_DAILY
        )
    )
    assert len(history) > 100
    assert history[-1].timestamp.date() == dhan_sim.market.trading_date


# -- earlier days' intraday charts ---------------------------------------------------------------

MONDAY = date(2026, 11, 23)  # its intraday history reaches back over a weekend


def at_monday(hh: int, mm: int) -> datetime:
    return datetime.combine(MONDAY, dtime(hh, mm), IST)


@pytest.fixture
def monday_sim() -> Iterator[Simulator]:
    """A simulator on a Monday at 09:20, at speed 1 (the day barely moves during a test)."""
    config = SimConfig(
        seed=2, speed=1.0, start=dtime(9, 20), trading_date=MONDAY,
        strikes_each_side=2, weeklies=1, monthlies=1,
    )  # fmt: skip
    with Simulator(config) as sim:
        yield sim


def sim_client(sim: Simulator) -> DhanRestClient:
    return DhanRestClient(
        base_url=sim.base_url,
        client_id=sim.client_id,
        token_provider=lambda: sim.token,
        limiter=InProcessRateLimiter(load_limits()),
    )


def intraday_body(security_id: int, interval: int, start: str, end: str) -> dict[str, str]:
    return {
        "securityId": str(security_id), "exchangeSegment": "IDX_I", "instrument": "INDEX",
        "interval": str(interval), "oi": False, "fromDate": start, "toDate": end,
    }  # fmt: skip


def chart(sim: Simulator, body: dict[str, str]) -> list:
    return list(ChartResponse.from_wire(call(sim, "POST", "/charts/intraday", json=body).json()))


def test_intraday_charts_serve_the_earlier_trading_days_then_today_up_to_now(monday_sim):
    sim = monday_sim
    body = intraday_body(NIFTY, 1, "2026-11-20 09:15:00", "2026-11-23 15:30:00")
    raw = call(sim, "POST", "/charts/intraday", json=body)
    assert raw.status_code == 200 and "E9" in raw.text  # Dhan's Java-style epoch seconds
    bars = list(ChartResponse.from_wire(raw.json()))
    friday = sim.market.earlier_intraday_candles(
        NIFTY, 1, datetime(2026, 11, 20, tzinfo=IST), at_monday(0, 0)
    )
    now = sim.now()
    today = [c for c in sim.market.intraday_candles(NIFTY, 1, now) if c.start <= now]
    assert len(friday) == 375 and 5 <= len(today) <= 7
    expected = friday + today  # nothing for the weekend in between
    assert [bar.timestamp for bar in bars] == [c.start for c in expected]
    assert [(float(b.open), float(b.high), float(b.low), float(b.close)) for b in bars] == [
        (c.open, c.high, c.low, c.close) for c in expected
    ]
    # Friday closes where Monday's quote says the previous day closed.
    quote = call(sim, "POST", "/marketfeed/ohlc", json={"IDX_I": [NIFTY]}).json()
    assert float(bars[374].close) == quote["data"]["IDX_I"][str(NIFTY)]["ohlc"]["close"]


def test_the_rest_client_reads_a_history_over_a_weekend_in_any_interval(monday_sim):
    sim = monday_sim
    with sim_client(sim) as rest:
        for interval, per_day in ((1, 375), (5, 75), (25, 15), (60, 7)):
            answer = rest.intraday_chart(
                IntradayChartRequest(
                    securityId=str(NIFTY),
                    exchangeSegment="IDX_I",
                    instrument="INDEX",
                    interval=interval,
                    fromDate=at_monday(9, 15) - timedelta(days=5),  # Wednesday 09:15
                    toDate=sim.now() + timedelta(minutes=1),
                )
            )
            days = [bar.timestamp.date() for bar in answer]
            assert sorted(set(days)) == [date(2026, 11, d) for d in (18, 19, 20, 23)]
            assert [days.count(date(2026, 11, d)) for d in (18, 19, 20)] == [per_day] * 3
            stamps = [bar.timestamp for bar in answer]
            assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
            starts = {stamp.time() for stamp in stamps}
            assert starts == {
                (at_monday(9, 15) + timedelta(minutes=k * interval)).time() for k in range(per_day)
            }


def test_plain_dates_ask_for_whole_earlier_days(monday_sim):
    # A plain toDate names its whole day, as it does for the current day.
    raw = call(
        monday_sim, "POST", "/charts/intraday",
        json=intraday_body(NIFTY, 60, "2026-11-19", "2026-11-20"),
    )  # fmt: skip
    days = [bar.timestamp.date() for bar in ChartResponse.from_wire(raw.json())]
    assert days == [date(2026, 11, 19)] * 7 + [date(2026, 11, 20)] * 7
    # A date-time toDate ends the range before it.
    raw = call(
        monday_sim, "POST", "/charts/intraday",
        json=intraday_body(NIFTY, 60, "2026-11-19 10:15:00", "2026-11-20 11:15:00"),
    )  # fmt: skip
    stamps = [bar.timestamp for bar in ChartResponse.from_wire(raw.json())]
    assert (stamps[0], stamps[-1], len(stamps)) == (
        datetime(2026, 11, 19, 10, 15, tzinfo=IST), datetime(2026, 11, 20, 10, 15, tzinfo=IST), 8,
    )  # fmt: skip


def test_an_option_chart_has_only_the_trading_day(monday_sim):
    option = option_ids(monday_sim, 1)[0]
    body = {
        **intraday_body(option, 1, "2026-11-18 09:15:00", "2026-11-23 15:30:00"),
        "exchangeSegment": "NSE_FNO", "instrument": "OPTIDX",
    }  # fmt: skip
    bars = chart(monday_sim, body)
    assert bars and {bar.timestamp.date() for bar in bars} == {MONDAY}


def test_ninety_days_of_intraday_history_are_served_and_more_are_refused(monday_sim):
    body = intraday_body(NIFTY, 60, "2026-08-25 09:15:00", "2026-11-23 09:15:00")  # 90 days
    bars = chart(monday_sim, body)
    days = sorted({bar.timestamp.date() for bar in bars})
    # Every weekday but the holidays of config/algo.yml, up to the trading day (not yet begun
    # at 09:15 on the clock of toDate, but the current day is served up to now: issue #80).
    holidays = load_algo_config().market.holidays
    weekdays = [
        date(2026, 8, 25) + timedelta(days=k)
        for k in range(91)
        if (date(2026, 8, 25) + timedelta(days=k)).weekday() < 5
    ]
    assert days == [d for d in weekdays if d not in holidays]
    assert len(bars) == 7 * (len(days) - 1) + sum(1 for b in bars if b.timestamp.date() == MONDAY)
    refused = call(
        monday_sim, "POST", "/charts/intraday",
        json={**body, "fromDate": "2026-08-24 09:15:00"},
    )  # fmt: skip
    assert refused.status_code == 400
    assert refused.json()["errorCode"] == "DH-905"
    assert "90 days" in refused.json()["errorMessage"]


class NoEntries:
    """A router that fails the test if it is handed anything: warming decides nothing."""

    def place_entry(self, intent: object) -> object:
        raise AssertionError(f"an entry during the warm-up: {intent}")


@pytest.mark.django_db
def test_a_signal_engine_started_at_the_open_is_warm_from_the_earlier_days():
    # Before the simulator served earlier days, an engine started at the open had one candle
    # and decided nothing until its indicators had seen ~28 minutes of the day.
    config = load_algo_config()
    opening = at_monday(9, 16)
    sim_config = SimConfig(
        seed=3, speed=1.0, start=dtime(9, 16), trading_date=MONDAY,
        strikes_each_side=4, weeklies=1, monthlies=1,
    )  # fmt: skip
    realtime = Realtime(
        ticks=MemoryTickStore(), events=MemoryEventBus(), kv=MemoryKeyValueStore(), redis_url=None
    )
    with Simulator(sim_config) as sim, sim_client(sim) as rest:
        call_command("import_instruments", url=sim.scrip_master_url, verbosity=0)
        engine = SignalEngine(
            realtime,
            rest=rest,
            router=NoEntries(),
            config_source=lambda: config,
            clock=opening.timestamp,
        )
        engine.start()
    assert {r.config.key for r in engine.indices.values()} == {
        c.key for c in config.enabled_indices()
    }
    assert len(engine.indices) == 4 and engine.last_error is None
    first = at_monday(9, 15).timestamp()
    for runtime in engine.indices.values():
        state = runtime.states[engine.primary]
        assert state.warm, (runtime.config.key, state.candles, state.needed)
        # history_days (5) back from Monday: Wednesday to Friday, then today's first minute.
        assert state.candles == 3 * 375 + 1
        assert runtime.last_fed[engine.primary] == first


def test_an_unknown_path_gets_the_gateway_404(dhan_sim):
    answer = call(dhan_sim, "GET", "/nothing/here")
    assert answer.status_code == 404
    assert answer.json()["error"] == "Not Found" and answer.json()["path"] == "/v2/nothing/here"


def test_a_bad_token_is_dh_901_with_http_401(dhan_sim):
    answer = call(dhan_sim, "GET", "/fundlimit", headers=headers(dhan_sim, **{"access-token": "x"}))
    assert answer.status_code == 401
    assert answer.json()["errorType"] == "Invalid_Authentication"


def test_token_renewal_issues_a_new_token_and_keeps_the_old_one_alive(dhan_sim):
    old = dhan_sim.token
    renewed = RenewTokenResponse.from_wire(
        call(
            dhan_sim,
            "GET",
            "/RenewToken",
            headers={"access-token": old, "dhanClientId": dhan_sim.client_id},
        ).json()
    )
    assert renewed.accessToken != old
    for token in (old, renewed.accessToken):
        assert call(
            dhan_sim, "GET", "/profile", headers=headers(dhan_sim, **{"access-token": token})
        ).ok


# -- REST faults ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [("429", 429, "DH-904"), ("500", 500, "DH-908"), ("DH-901", 401, "DH-901")],
)
def test_rest_faults_answer_a_share_of_calls_with_the_chosen_error(dhan_sim, kind, status, code):
    dhan_sim.faults.rest_error, dhan_sim.faults.rest_error_share = kind, 0.5
    answers = [call(dhan_sim, "GET", "/fundlimit") for _ in range(40)]
    failed = [a for a in answers if not a.ok]
    assert 5 < len(failed) < 35  # about half, from a seeded generator
    assert {(a.status_code, a.json()["errorCode"]) for a in failed} == {(status, code)}
    dhan_sim.faults.rest_error_share = 0.0
    assert call(dhan_sim, "GET", "/fundlimit").ok


def test_latency_delays_the_answer_past_a_short_read_timeout(dhan_sim):
    dhan_sim.faults.latency = 1.0
    with pytest.raises(requests.ReadTimeout):
        requests.get(dhan_sim.base_url + "/fundlimit", headers=headers(dhan_sim), timeout=(5, 0.2))


def test_a_delayed_placement_exists_before_its_answer_arrives(dhan_sim):
    dhan_sim.faults.place_order_delay = 3.0
    sid = option_ids(dhan_sim)[0]
    with pytest.raises(requests.ReadTimeout):
        requests.post(
            dhan_sim.base_url + "/orders", json=place_body(dhan_sim, sid, correlationId="late-1"),
            headers=headers(dhan_sim), timeout=(5, 0.3),
        )  # fmt: skip
    found = call(dhan_sim, "GET", "/orders/external/late-1")
    assert found.status_code == 200
    assert dhan_sim.stats["place_order_calls"] == 1


def test_an_expired_token_fails_rest_calls(dhan_sim):
    dhan_sim.faults.token_expires_at = time.time() - 1
    assert call(dhan_sim, "GET", "/fundlimit").status_code == 401
    data = call(dhan_sim, "POST", "/marketfeed/ltp", json={"IDX_I": [NIFTY]})
    assert data.json()["data"] == {"807": "Access token expired"}


# -- market feed --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "index_codes", "option_codes"),
    [
        ("ticker", {6, 2}, {6, 2}),
        ("quote", {6, 4}, {6, 4, 5}),
        ("full", {6, 8}, {6, 8}),
    ],
)
def test_each_mode_sends_its_packets_one_per_frame(dhan_sim, feed, mode, index_codes, option_codes):
    sid = option_ids(dhan_sim)[0]
    for message in fc.subscribe_messages([("IDX_I", NIFTY), ("NSE_FNO", sid)], mode):
        feed.send(message)
    stats = fc.FeedStats()
    packets = recv_packets(feed, stats, 24)
    codes: dict[int, set[int]] = {}
    for p in packets:
        codes.setdefault(p.security_id, set()).add(code(p))
    assert codes[NIFTY] == index_codes
    assert codes[sid] == option_codes
    assert stats.garbage == stats.truncated == stats.unknown == 0


def test_packets_can_be_batched_several_per_frame():
    config = SimConfig(speed=60, packets_per_frame=3, strikes_each_side=2, weeklies=1, monthlies=1)
    with Simulator(config) as sim:
        conn = websocket.create_connection(feed_url(sim), timeout=10)
        keys = [("IDX_I", NIFTY), ("IDX_I", 25), ("IDX_I", 27), ("IDX_I", 51)]
        conn.send(fc.subscribe_messages(keys, "ticker")[0])
        stats = fc.FeedStats()
        sizes = [len(fc.decode_frame(conn.recv(), time.time(), stats)) for _ in range(6)]
        conn.close()
    assert max(sizes) == 3
    assert stats.truncated == stats.garbage == 0


def test_ticks_carry_market_time_in_their_ltt(dhan_sim, feed):
    feed.send(fc.subscribe_messages([("IDX_I", NIFTY)], "ticker")[0])
    ticks = [p for p in recv_packets(feed, fc.FeedStats(), 8) if code(p) == 2]
    sim_now = dhan_sim.now()
    last = ticks[-1].exchange_time
    assert last.date() == dhan_sim.market.trading_date
    assert abs((sim_now - last).total_seconds()) < 120  # speed 60: within two real seconds
    assert ticks[-1].ltp == pytest.approx(dhan_sim.market.index_level(NIFTY, last), abs=0.01)


def test_unsubscribing_stops_the_packets(dhan_sim, feed):
    instruments = [("IDX_I", NIFTY)]
    feed.send(fc.subscribe_messages(instruments, "ticker")[0])
    recv_packets(feed, fc.FeedStats(), 3)
    feed.send(fc.unsubscribe_messages(instruments, "ticker")[0])
    wait_until(lambda: dhan_sim.feed_subscriptions() == [{}], "the unsubscribe")
    feed.settimeout(1.0)
    with pytest.raises(websocket.WebSocketTimeoutException):
        while True:
            feed.recv()  # drains what was in flight, then times out


def test_a_bad_request_is_answered_with_disconnect_814(dhan_sim, feed):
    feed.send(
        json.dumps(
            {
                "RequestCode": 15,
                "InstrumentCount": 1,
                "InstrumentList": [{"ExchangeSegment": "NSE_FNO", "SecurityId": 35000}],
            }
        )
    )
    disconnect = recv_packets(feed, fc.FeedStats(), 1)[0]
    assert code(disconnect) == 50 and disconnect.reason_code == 814


def test_more_than_5000_instruments_on_one_connection_is_disconnect_804(dhan_sim, feed):
    keys = [("NSE_FNO", 100000 + i) for i in range(5001)]
    for message in fc.subscribe_messages(keys, "ticker"):
        feed.send(message)
    packets = recv_packets(feed, fc.FeedStats(), 1)
    assert code(packets[0]) == 50 and packets[0].reason_code == 804


def test_a_sixth_connection_drops_the_oldest_with_805(dhan_sim):
    conns = [websocket.create_connection(feed_url(dhan_sim), timeout=10) for _ in range(5)]
    wait_until(lambda: len(dhan_sim.feed_subscriptions()) == 5, "five connections")
    sixth = websocket.create_connection(feed_url(dhan_sim), timeout=10)
    packet = recv_packets(conns[0], fc.FeedStats(), 1)[0]
    assert code(packet) == 50 and packet.reason_code == 805
    wait_until(lambda: len(dhan_sim.feed_subscriptions()) == 5, "five connections")
    for conn in [*conns, sixth]:
        conn.close()


@pytest.mark.parametrize(
    ("token", "client_id", "reason"),
    [("wrong", None, 809), (None, "999", 810)],
)
def test_bad_credentials_get_the_disconnect_packet_after_the_upgrade(
    dhan_sim, token, client_id, reason
):
    conn = websocket.create_connection(feed_url(dhan_sim, token, client_id), timeout=10)
    packet = recv_packets(conn, fc.FeedStats(), 1)[0]
    assert code(packet) == 50 and packet.reason_code == reason
    conn.close()


def test_a_replaced_token_is_reported_expired_807(dhan_sim):
    old = dhan_sim.token
    dhan_sim.set_token("sim-token-2")
    conn = websocket.create_connection(feed_url(dhan_sim, old), timeout=10)
    assert recv_packets(conn, fc.FeedStats(), 1)[0].reason_code == 807
    conn.close()
    fresh = websocket.create_connection(feed_url(dhan_sim, "sim-token-2"), timeout=10)
    fresh.send(fc.subscribe_messages([("IDX_I", NIFTY)], "ticker")[0])
    assert recv_packets(fresh, fc.FeedStats(), 2)
    fresh.close()


def test_the_handshake_needs_version_2(dhan_sim):
    with pytest.raises(websocket.WebSocketBadStatusException) as raised:
        websocket.create_connection(
            feed_url(dhan_sim).replace("version=2", "version=1"), timeout=10
        )
    assert raised.value.status_code == 400


# -- feed faults ---------------------------------------------------------------------------------


def test_a_refused_handshake_answers_the_chosen_status(dhan_sim):
    dhan_sim.faults.handshake_status = 429
    with pytest.raises(websocket.WebSocketBadStatusException) as raised:
        websocket.create_connection(feed_url(dhan_sim), timeout=10)
    assert raised.value.status_code == 429
    dhan_sim.faults.handshake_status = None
    websocket.create_connection(feed_url(dhan_sim), timeout=10).close()


def test_drop_after_cuts_the_connection_without_a_close_frame(dhan_sim, feed):
    feed.send(fc.subscribe_messages([("IDX_I", NIFTY)], "ticker")[0])
    dhan_sim.faults.drop_after = 0.5
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        while True:
            feed.recv()
    assert dhan_sim.stats["connections_dropped"] == 1


def test_a_stall_keeps_the_connection_open_and_silent(dhan_sim, feed):
    feed.send(fc.subscribe_messages([("IDX_I", NIFTY)], "ticker")[0])
    recv_packets(feed, fc.FeedStats(), 2)
    dhan_sim.faults.stall = True
    time.sleep(0.3)  # let frames already in flight arrive
    feed.settimeout(0.1)
    try:
        while True:
            feed.recv()
    except websocket.WebSocketTimeoutException:
        pass
    feed.settimeout(1.0)
    with pytest.raises(websocket.WebSocketTimeoutException):
        feed.recv()
    assert feed.connected
    dhan_sim.faults.stall = False
    feed.settimeout(10)
    assert recv_packets(feed, fc.FeedStats(), 1)


def test_a_garbage_frame_is_counted_by_the_decoder_and_the_stream_goes_on(dhan_sim, feed):
    feed.send(fc.subscribe_messages([("IDX_I", NIFTY)], "ticker")[0])
    recv_packets(feed, fc.FeedStats(), 1)
    stats = fc.FeedStats()
    dhan_sim.inject_garbage()
    wait_until(lambda: dhan_sim.stats["garbage_frames"] == 1, "the garbage frame sent")
    for _ in range(12):
        fc.decode_frame(feed.recv(), time.time(), stats)
    assert stats.truncated + stats.garbage + stats.unknown >= 1
    assert stats.by_code.get(2, 0) >= 1


def test_an_injected_disconnect_sends_its_code_then_closes(dhan_sim, feed):
    feed.send(fc.subscribe_messages([("IDX_I", NIFTY)], "ticker")[0])
    dhan_sim.inject_disconnect(800)
    seen = []
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        for _ in range(500):  # a few seconds of ticks at most; the disconnect comes first
            frame = feed.recv()
            if not frame:
                raise websocket.WebSocketConnectionClosedException("closed")
            seen.extend(fc.decode_frame(frame, time.time()))
    assert code(seen[-1]) == 50 and seen[-1].reason_code == 800


def test_token_expiry_disconnects_open_feeds_with_807(dhan_sim, feed):
    feed.send(fc.subscribe_messages([("IDX_I", NIFTY)], "ticker")[0])
    recv_packets(feed, fc.FeedStats(), 1)
    dhan_sim.faults.token_expires_at = time.time()
    packets = []
    for _ in range(500):  # bounded: a lost expiry check must fail the test, not hang it
        packets.extend(fc.decode_frame(feed.recv(), time.time()))
        if code(packets[-1]) == 50:
            break
    assert packets[-1].reason_code == 807


# -- order updates -------------------------------------------------------------------------------


def order_feed(sim: Simulator) -> websocket.WebSocket:
    conn = websocket.create_connection(sim.order_ws_url, timeout=10)
    conn.send(login_message(sim.client_id, sim.token))
    wait_until(lambda: sim.order_connections() == 1, "the order-update login")
    return conn


def test_order_updates_follow_a_placement_after_the_login(dhan_sim):
    conn = order_feed(dhan_sim)
    sid = option_ids(dhan_sim)[0]
    placed = call(dhan_sim, "POST", "/orders", json=place_body(dhan_sim, sid, correlationId="ou-1"))
    order_id = placed.json()["orderId"]
    update = parse_message(conn.recv())
    assert isinstance(update, OrderUpdate)
    assert update.order_id == order_id and update.correlation_id == "ou-1"
    conn.close()


def test_camel_case_order_updates_when_configured():
    sim = Simulator(
        SimConfig(
            speed=60, order_update_casing="camel", strikes_each_side=5, weeklies=1, monthlies=1
        )
    ).start()
    try:
        conn = order_feed(sim)
        call(sim, "POST", "/orders", json=place_body(sim, option_ids(sim)[0]))
        text = conn.recv()
        assert '"orderNo"' in text and '"OrderNo"' not in text
        assert isinstance(parse_message(text), OrderUpdate)
        conn.close()
    finally:
        sim.stop()


def test_a_wrong_login_closes_the_order_feed(dhan_sim):
    conn = websocket.create_connection(dhan_sim.order_ws_url, timeout=10)
    conn.send(login_message(dhan_sim.client_id, "not-the-token"))
    opcode, data = conn.recv_data(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE
    assert int.from_bytes(data[:2], "big") == 1008
    assert dhan_sim.stats["order_ws_auth_failures"] == 1


def test_drop_after_also_cuts_order_feeds(dhan_sim):
    conn = order_feed(dhan_sim)
    dhan_sim.faults.drop_after = 0.3
    wait_until(lambda: dhan_sim.order_connections() == 0, "the server to drop the connection")
    conn.close()


# -- scrip master and the command ----------------------------------------------------------------


def test_the_scrip_master_is_served_over_http(dhan_sim):
    answer = requests.get(dhan_sim.scrip_master_url, timeout=10)
    lines = answer.text.splitlines()
    assert lines[0].startswith("SEM_EXM_EXCH_ID,")
    assert len(lines) == 1 + len(dhan_sim.market.scrip_master_rows())


@pytest.mark.catalog
@pytest.mark.django_db(transaction=True)
def test_the_simulators_scrip_master_imports_through_the_catalog_importer(
    dhan_sim, settings, tmp_path
):
    from instruments.catalog import lot_size, option_contract
    from instruments.importer import ImportOptions, import_catalog

    settings.INSTRUMENTS_CACHE_DIR = tmp_path
    result = import_catalog(ImportOptions(url=dhan_sim.scrip_master_url))
    assert result.status == "imported"
    assert result.stats["rejected"] == {}
    sid = option_ids(dhan_sim)[0]
    spec = dhan_sim.market.contracts[sid]
    strike = Decimal(str(spec.strike))
    contract = option_contract("NIFTY", spec.expiry.date(), strike, spec.option_type)
    assert int(contract.security_id) == sid
    assert lot_size("NSE_FNO", sid) == spec.lot


def test_dhan_sim_prints_the_settings_and_stops_on_sigterm(tmp_path):
    env = {**os.environ, "DJANGO_DEBUG": "true", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "dhan_sim", "--speed", "60", "--date", "2026-11-24"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        lines = dict(proc.stdout.readline().strip().split("=", 1) for _ in range(3))
        assert set(lines) == {"DHANHQ_BASE_URL", "DHANHQ_WS_URL", "DHANHQ_ORDER_WS_URL"}
        answer = requests.get(
            lines["DHANHQ_BASE_URL"] + "/profile",
            headers={"access-token": "sim-token", "client-id": "1000000001"}, timeout=10,
        )  # fmt: skip
        assert answer.json()["dhanClientId"] == "1000000001"
        conn = websocket.create_connection(
            lines["DHANHQ_WS_URL"] + "?version=2&token=sim-token&clientId=1000000001&authType=2"
        )
        conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_dhan_sim_writes_the_scrip_master_to_a_file(tmp_path):
    target = tmp_path / "master.csv"
    env = {**os.environ, "DJANGO_DEBUG": "true"}
    argv = ["manage.py", "dhan_sim", "--date", "2026-11-24", "--write-scrip-master", str(target)]
    subprocess.run(
        [sys.executable, *argv], cwd=ROOT, env=env, check=True, capture_output=True, timeout=60
    )
    assert target.read_text().startswith("SEM_EXM_EXCH_ID,")


def test_dhan_sim_starts_at_the_open_of_the_configured_session(tmp_path):
    config_dir = tmp_path / "config"
    shutil.copytree(ROOT / "config", config_dir)
    algo = config_dir / "algo.yml"
    text = algo.read_text(encoding="utf-8")
    text = text.replace('session_open: "09:15"', 'session_open: "09:00"', 1)
    algo.write_text(text.replace('session_close: "15:30"', 'session_close: "15:29"', 1))
    env = {**os.environ, "DJANGO_DEBUG": "true", "ALGO_CONFIG_DIR": str(config_dir)}
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "dhan_sim", "--speed", "60", "--date", "2026-11-24"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        lines = [proc.stdout.readline().strip() for _ in range(6)]
        assert [line.split("=", 1)[0] for line in lines] == [
            "DHANHQ_BASE_URL",
            "DHANHQ_WS_URL",
            "DHANHQ_ORDER_WS_URL",
            "DHANHQ_CLIENT_ID",
            "DHANHQ_ACCESS_TOKEN",
            "INSTRUMENTS_SCRIP_MASTER_URL",
        ]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "market 2026-11-24 from 09:00 at speed 60; Ctrl-C to stop" in err


LATE = (dtime(10, 0), dtime(16, 0))


def test_a_simulator_before_the_open_of_its_session_stamps_ticks_with_the_open():
    config = SimConfig(
        session=LATE, start=dtime(9, 30), trading_date=date(2026, 11, 24),
        strikes_each_side=2, weeklies=1, monthlies=1,
    )  # fmt: skip
    with Simulator(config) as sim:
        opens = datetime(2026, 11, 24, 10, 0, tzinfo=IST)
        assert sim.clock.session == sim.market.clock.session == LATE
        assert sim.clock.open_at == opens and sim.now() < opens  # speed 1: 30 real minutes away
        conn = websocket.create_connection(feed_url(sim), timeout=10)
        conn.send(fc.subscribe_messages([("IDX_I", NIFTY)], "ticker")[0])
        packets = recv_packets(conn, fc.FeedStats(), 2)
        conn.close()
        assert [code(p) for p in packets] == [6, 2]
        assert packets[1].exchange_time == opens
        placed = call(sim, "POST", "/orders", json=place_body(sim, option_ids(sim)[0]))
        [order] = call(sim, "GET", f"/orders/{placed.json()['orderId']}").json()
        assert order["orderStatus"] == "REJECTED"
        assert "Market is Closed" in order["omsErrorDescription"]


def test_a_simulator_refuses_a_session_its_market_does_not_have():
    market = Market(date(2026, 11, 24), strikes_each_side=1, weeklies=1, monthlies=1)
    with pytest.raises(ValueError, match="differs from the given market's 09:15:00-15:30:00"):
        Simulator(SimConfig(session=LATE), market=market)


def test_market_time_runs_at_the_configured_speed(dhan_sim):
    first = dhan_sim.now()
    wait_until(lambda: (dhan_sim.now() - first).total_seconds() >= 30, "30 market seconds")
    assert dhan_sim.now().date() == dhan_sim.market.trading_date


def test_the_default_trading_date_skips_weekends():
    from trading.dhan.sim.server import default_trading_date

    assert default_trading_date(date(2026, 11, 21)) == date(2026, 11, 23)  # Saturday -> Monday
    assert default_trading_date(date(2026, 11, 24)) == date(2026, 11, 24)


def test_threads_do_not_leak_after_stop():
    before = threading.active_count()
    sim = Simulator(SimConfig(strikes_each_side=2, weeklies=1, monthlies=1)).start()
    conn = websocket.create_connection(feed_url(sim), timeout=10)
    sim.stop()
    conn.close()
    wait_until(lambda: threading.active_count() <= before, "the simulator's threads to end")
