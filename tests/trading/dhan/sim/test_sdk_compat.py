"""Dhan's official Python SDK (``dhanhq``, a dev-only dependency) against the simulator, with
only the REST base URL changed: the simulator speaks what a client written to Dhan's
documentation expects (the SDK injects ``dhanClientId`` into bodies, sends ``interval`` as an
int, reads only ``errorCode``/``errorMessage``)."""

from __future__ import annotations

import dhanhq
import pytest

from trading.dhan.sim.server import Simulator

NIFTY = 13


@pytest.fixture
def sdk(dhan_sim: Simulator) -> object:
    context = dhanhq.DhanContext(dhan_sim.client_id, dhan_sim.token)
    client = dhanhq.dhanhq(context)
    client.dhan_http.base_url = dhan_sim.base_url
    return client


def an_option(sim: Simulator) -> int:
    return min(
        s.security_id
        for s in sim.market.contracts.values()
        if s.instrument == "OPTIDX" and s.underlying == "NIFTY"
    )


def test_the_sdk_reads_funds_books_and_positions(sdk):
    funds = sdk.get_fund_limits()
    assert funds["status"] == "success"
    assert funds["data"]["availabelBalance"] > 0
    for answer in (sdk.get_order_list(), sdk.get_positions(), sdk.get_trade_book()):
        assert answer["status"] == "success" and answer["data"] == []


def test_the_sdk_places_an_order_and_finds_it_by_correlation_id(sdk, dhan_sim):
    sid = an_option(dhan_sim)
    spec = dhan_sim.market.contracts[sid]
    ask = dhan_sim.market.quote("NSE_FNO", sid, dhan_sim.now()).best_ask
    placed = sdk.place_order(
        security_id=str(sid),
        exchange_segment=sdk.NSE_FNO,
        transaction_type=sdk.BUY,
        quantity=spec.lot,
        order_type=sdk.LIMIT,
        product_type=sdk.INTRA,
        price=ask,
        tag="sdk-1",
    )
    assert placed["status"] == "success", placed
    found = sdk.get_order_by_correlationID("sdk-1")
    assert found["status"] == "success"
    assert found["data"]["orderId"] == placed["data"]["orderId"]


def test_the_sdk_sees_dhans_error_fields(sdk, dhan_sim):
    dhan_sim.faults.rest_error, dhan_sim.faults.rest_error_share = "429", 1.0
    answer = sdk.get_fund_limits()
    assert answer["status"] == "failure"
    assert answer["remarks"]["error_code"] == "DH-904"


def test_the_sdk_reads_quotes_charts_and_the_option_chain(sdk, dhan_sim):
    sid = an_option(dhan_sim)
    quote = sdk.quote_data({"NSE_FNO": [sid], "IDX_I": [NIFTY]})
    assert quote["status"] == "success"
    assert quote["data"]["data"]["NSE_FNO"][str(sid)]["last_price"] > 0
    day = dhan_sim.market.trading_date.isoformat()
    candles = sdk.intraday_minute_data(str(NIFTY), "IDX_I", "INDEX", day, day, interval=1)
    assert candles["status"] == "success" and candles["data"]["open"]
    expiries = sdk.expiry_list(NIFTY, "IDX_I")
    assert expiries["status"] == "success"
    first = expiries["data"]["data"][0]
    chain = sdk.option_chain(NIFTY, "IDX_I", first)
    assert chain["status"] == "success"
    assert chain["data"]["data"]["oc"]
