"""Live mode's stale-feed price: RestQuotes asks the simulator's REST market-quote API over real
HTTP for the contract's LTP and depth, at most once per contract per interval, and answers None
(never a guess) when the request fails; an authentication failure propagates."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from django.core.management import call_command

from instruments.models import Derivative
from trading.dhan.errors import AuthFailure
from trading.dhan.ratelimit import InProcessRateLimiter, load_limits
from trading.dhan.rest import DhanRestClient
from trading.dhan.sim.server import SimConfig, Simulator
from workers.orders import RestQuotes, fresh_or_rest

pytestmark = pytest.mark.django_db


@pytest.fixture
def sim() -> Iterator[Simulator]:
    simulator = Simulator(SimConfig(seed=3, strikes_each_side=2, weeklies=1, monthlies=1)).start()
    try:
        yield simulator
    finally:
        simulator.stop()


def client(sim: Simulator, token: str | None = None) -> DhanRestClient:
    return DhanRestClient(
        base_url=sim.base_url,
        client_id=sim.client_id,
        token_provider=lambda: token or sim.token,
        limiter=InProcessRateLimiter(load_limits()),
    )


def a_call(sim: Simulator) -> Derivative:
    call_command("import_instruments", url=sim.scrip_master_url, verbosity=0)
    return Derivative.objects.filter(underlying__security_id=13, option_type="CE").first()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_stale_contract_is_priced_from_the_rest_quote_once_per_interval(sim):
    contract = a_call(sim)
    clock = Clock()
    quotes = RestQuotes(client(sim), min_interval=2.0, wall=clock)
    bid, ask, ltp = quotes(contract.key)
    assert ltp is not None and ltp > 0
    assert bid is not None and ask is not None and bid <= ask
    assert sim.rest_calls["POST market_quote"] == 1 and quotes.requests == 1
    calls = dict(sim.rest_calls)
    clock.now += 1.0
    assert quotes(contract.key) == (bid, ask, ltp)  # kept: no second request within 2 s
    assert dict(sim.rest_calls) == calls and quotes.requests == 1
    clock.now += 1.5
    quotes(contract.key)
    assert quotes.requests == 2


def test_a_fresh_tick_wins_and_a_failed_request_prices_nothing(sim):
    contract = a_call(sim)
    quotes = RestQuotes(client(sim), min_interval=0.0)
    tick = (Decimal("10.00"), Decimal("10.10"), Decimal("10.05"))
    assert fresh_or_rest(lambda key: tick, quotes)(contract.key) == tick
    assert quotes.requests == 0
    sim.faults.rest_error, sim.faults.rest_error_share = "500", 1.0
    assert fresh_or_rest(lambda key: None, quotes)(contract.key) is None
    assert quotes.failures == 1


def test_a_refused_token_propagates_as_an_authentication_failure(sim):
    contract = a_call(sim)
    quotes = RestQuotes(client(sim, token="not-the-token"), min_interval=0.0)
    with pytest.raises(AuthFailure):
        quotes(contract.key)
