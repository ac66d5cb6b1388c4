"""Order-update client against the real simulator over loopback sockets: login, order alerts in
both key casings (and numbers as strings), reconnect with re-login after a drop or a refused
handshake, a rotated token, and a clean stop on repeated login failure.

Orders are placed through the simulator's REST API, whose broker pushes an ``order_alert`` for
every transition (TRANSIT, then PENDING for a limit far below the market). No timing
assertions: every check waits for a condition with a generous timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from tests.support.reconnect import FAST_RECONNECT
from tests.support.waiting import WAIT, wait_until
from trading.dhan.errors import AuthFailure, DhanError
from trading.dhan.order_update_codec import OrderUpdate
from trading.dhan.order_updates import OrderUpdateClient
from trading.dhan.sim.server import SimConfig, Simulator


class Updates:
    """The on_update callback."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[OrderUpdate] = []
        self.threads: set[str] = set()

    def __call__(self, update: OrderUpdate) -> None:
        with self.lock:
            self.items.append(update)
            self.threads.add(threading.current_thread().name)

    def for_correlation(self, correlation_id: str) -> list[OrderUpdate]:
        with self.lock:
            return [u for u in self.items if u.correlation_id == correlation_id]

    def statuses(self, correlation_id: str) -> list[str]:
        return [u.status for u in self.for_correlation(correlation_id)]


def place_order(sim: Simulator, correlation_id: str) -> str:
    """A one-lot limit buy far below the market: it rests PENDING (TRANSIT, PENDING alerts)."""
    sid, spec = next(
        (sid, spec)
        for sid, spec in sim.market.contracts.items()
        if spec.exchange_segment == "NSE_FNO"
    )
    body = {
        "dhanClientId": sim.client_id,
        "transactionType": "BUY",
        "exchangeSegment": "NSE_FNO",
        "productType": "INTRADAY",
        "orderType": "LIMIT",
        "validity": "DAY",
        "securityId": str(sid),
        "quantity": spec.lot,
        "price": float(spec.tick),
        "correlationId": correlation_id,
    }
    answer = requests.post(
        f"{sim.base_url}/orders",
        json=body,
        headers={"access-token": sim.token, "client-id": sim.client_id},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["orderId"])


class TokenBox:
    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self) -> str:
        return self.token


@pytest.fixture
def make_client() -> Iterator[Callable[..., tuple[OrderUpdateClient, Updates]]]:
    clients: list[OrderUpdateClient] = []

    def make(sim: Simulator, **kwargs: Any) -> tuple[OrderUpdateClient, Updates]:
        updates = Updates()
        kwargs.setdefault("policy", FAST_RECONNECT)
        kwargs.setdefault("poll_interval", 0.1)
        kwargs.setdefault("close_timeout", 1.0)
        token = kwargs.pop("token_provider", None) or TokenBox(sim.token)
        client = OrderUpdateClient(sim.order_ws_url, sim.client_id, token, updates, **kwargs)
        clients.append(client)
        return client, updates

    yield make
    for client in clients:
        client.stop(timeout=10)


def logged_in(sim: Simulator, count: int = 1) -> Callable[[], bool]:
    return lambda: sim.order_connections() >= count


def test_order_alerts_arrive_as_order_updates(
    dhan_sim: Simulator, make_client: Callable[..., tuple[OrderUpdateClient, Updates]]
) -> None:
    client, updates = make_client(dhan_sim)
    client.start()
    wait_until(logged_in(dhan_sim), "the login")
    order_id = place_order(dhan_sim, "ou-pascal-1")
    wait_until(lambda: "PENDING" in updates.statuses("ou-pascal-1"), "the PENDING alert")
    first = updates.for_correlation("ou-pascal-1")[0]
    assert first.order_id == order_id
    assert first.status == "TRANSIT"
    assert first.transaction_type == "BUY" and first.exchange_segment == "NSE_FNO"
    assert updates.threads == {"dhan-order-updates-dispatch"}
    stats = client.stats()
    assert stats["connected"] and stats["state"] == "running"
    assert stats["bad_messages"] == 0 and stats["updates"] >= 2


@pytest.mark.parametrize(
    ("casing", "as_strings"), [("camel", False), ("camel", True), ("pascal", True)]
)
def test_both_key_casings_and_string_numbers_parse_the_same(
    casing: str,
    as_strings: bool,
    make_client: Callable[..., tuple[OrderUpdateClient, Updates]],
) -> None:
    sim = Simulator(
        SimConfig(
            seed=0,
            speed=60.0,
            strikes_each_side=5,
            weeklies=1,
            monthlies=1,
            order_update_casing=casing,  # type: ignore[arg-type]
            order_update_numbers_as_strings=as_strings,
        )
    ).start()
    try:
        client, updates = make_client(sim)
        client.start()
        wait_until(logged_in(sim), "the login")
        order_id = place_order(sim, "ou-casing-1")
        wait_until(lambda: "PENDING" in updates.statuses("ou-casing-1"), "the PENDING alert")
        pending = next(u for u in updates.for_correlation("ou-casing-1") if u.status == "PENDING")
        assert pending.order_id == order_id
        assert pending.quantity is not None and pending.quantity > 0
        assert pending.price is not None and pending.price > 0
        assert pending.transaction_type == "BUY"
        key = "orderNo" if casing == "camel" else "OrderNo"
        assert key in pending.raw["Data"]
        assert isinstance(
            pending.raw["Data"]["Quantity" if casing == "pascal" else "quantity"],
            str if as_strings else int,
        )
    finally:
        client.stop(timeout=10)  # before the server goes (the fixture's stop is then a no-op)
        sim.stop()


def test_it_logs_in_again_after_a_drop(
    dhan_sim: Simulator, make_client: Callable[..., tuple[OrderUpdateClient, Updates]]
) -> None:
    client, updates = make_client(dhan_sim)
    client.start()
    wait_until(logged_in(dhan_sim), "the login")
    place_order(dhan_sim, "ou-before-drop")
    wait_until(lambda: "PENDING" in updates.statuses("ou-before-drop"), "the first alerts")
    dhan_sim.drop_connections()
    wait_until(lambda: client.stats()["connects"] >= 2, "a reconnect")
    wait_until(logged_in(dhan_sim), "the second login")
    place_order(dhan_sim, "ou-after-drop")
    wait_until(lambda: "PENDING" in updates.statuses("ou-after-drop"), "alerts after the drop")
    assert client.state == "running" and client.stats()["login_failures"] == 0


def test_a_429_handshake_backs_off_then_reconnects(
    dhan_sim: Simulator, make_client: Callable[..., tuple[OrderUpdateClient, Updates]]
) -> None:
    client, updates = make_client(dhan_sim)
    dhan_sim.faults.handshake_status = 429
    client.start()
    wait_until(lambda: dhan_sim.stats["handshakes_refused"] >= 2, "refused handshakes")
    assert "HTTP 429" in (client.stats()["last_error"] or "")
    assert client.state == "running"
    dhan_sim.faults.handshake_status = None
    wait_until(logged_in(dhan_sim), "the login")
    place_order(dhan_sim, "ou-after-429")
    wait_until(lambda: "PENDING" in updates.statuses("ou-after-429"), "alerts after the 429s")


def test_repeated_login_failures_stop_the_client(
    dhan_sim: Simulator, make_client: Callable[..., tuple[OrderUpdateClient, Updates]]
) -> None:
    fatal: list[DhanError] = []
    client, _ = make_client(
        dhan_sim,
        token_provider=TokenBox("not-the-token"),
        max_login_failures=3,
        on_fatal=fatal.append,
    )
    client.start()
    error = client.wait(WAIT)
    assert isinstance(error, AuthFailure)
    assert "3 times" in str(error)
    assert client.state == "failed" and fatal == [error]
    assert dhan_sim.stats["order_ws_auth_failures"] == 3  # and no more: no reconnect storm
    assert "not-the-token" not in str(error) + repr(client.stats())


def test_an_expired_token_stops_it_and_a_rotated_one_is_used(
    dhan_sim: Simulator, make_client: Callable[..., tuple[OrderUpdateClient, Updates]]
) -> None:
    box = TokenBox(dhan_sim.token)
    client, updates = make_client(dhan_sim, token_provider=box, max_login_failures=50)
    client.start()
    wait_until(logged_in(dhan_sim), "the login")
    dhan_sim.faults.token_expires_at = time.time()  # the server closes the order socket
    wait_until(lambda: client.stats()["login_failures"] >= 2, "logins refused")
    dhan_sim.set_token("sim-token-rotated")
    box.token = "sim-token-rotated"
    wait_until(logged_in(dhan_sim), "a login with the new token")
    place_order(dhan_sim, "ou-rotated")
    wait_until(lambda: "PENDING" in updates.statuses("ou-rotated"), "alerts with the new token")
    assert client.state == "running"


def test_stop_closes_the_connection_and_joins(
    dhan_sim: Simulator, make_client: Callable[..., tuple[OrderUpdateClient, Updates]]
) -> None:
    client, _ = make_client(dhan_sim)
    client.start()
    wait_until(logged_in(dhan_sim), "the login")
    client.stop(timeout=10)
    assert client.state == "stopped" and client.wait(0) is None
    wait_until(lambda: dhan_sim.order_connections() == 0, "the server to see the close")
    names = {t.name for t in threading.enumerate()}
    assert not names & {"dhan-order-updates", "dhan-order-updates-dispatch"}


def test_from_settings_uses_the_order_ws_url_and_credentials(
    dhan_sim: Simulator, settings: Any
) -> None:
    settings.DHANHQ_ORDER_WS_URL = dhan_sim.order_ws_url
    settings.DHANHQ_CLIENT_ID = dhan_sim.client_id
    settings.DHANHQ_ACCESS_TOKEN = dhan_sim.token
    updates = Updates()
    client = OrderUpdateClient.from_settings(updates, policy=FAST_RECONNECT)
    try:
        client.start()
        wait_until(logged_in(dhan_sim), "the login")
        place_order(dhan_sim, "ou-settings")
        wait_until(lambda: "PENDING" in updates.statuses("ou-settings"), "alerts")
    finally:
        client.stop(timeout=10)
