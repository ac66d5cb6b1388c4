"""The order-update stream as a supervised component, against the simulator."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import requests

from tests.support.waiting import wait_until
from trading.dhan.order_updates import OrderUpdateClient
from trading.dhan.sim.server import Simulator
from workers.order_updates import OrderUpdatesComponent
from workers.realtime.kv_store import MemoryKeyValueStore


def place_resting_order(sim: Simulator, correlation_id: str) -> None:
    """A one-lot limit buy far below the market: it rests (TRANSIT, PENDING updates)."""
    sid, spec = next(
        (sid, spec)
        for sid, spec in sim.market.contracts.items()
        if spec.exchange_segment == "NSE_FNO"
    )
    answer = requests.post(
        f"{sim.base_url}/orders",
        json={
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
        },
        headers={"access-token": sim.token, "client-id": sim.client_id},
        timeout=10,
    )
    answer.raise_for_status()


def component(sim: Simulator, handler: Any, kv: MemoryKeyValueStore) -> OrderUpdatesComponent:
    return OrderUpdatesComponent(
        kv=kv,
        handler=handler,
        client_factory=lambda on_update: OrderUpdateClient(
            sim.order_ws_url, sim.client_id, lambda: sim.token, on_update
        ),
        beat_interval=0.1,
    )


def test_updates_reach_the_handler_and_the_heartbeat_says_connected(sim):
    kv = MemoryKeyValueStore()
    updates: list[Any] = []
    stop = threading.Event()
    worker = threading.Thread(target=component(sim, updates.append, kv).run, args=(stop,))
    worker.start()
    try:
        wait_until(lambda: sim.order_connections() == 1, "the order-update login")
        place_resting_order(sim, "wk-ou-1")
        wait_until(
            lambda: [u.status for u in updates if u.correlation_id == "wk-ou-1"][-2:]
            == ["TRANSIT", "PENDING"],
            "TRANSIT then PENDING",
        )
        # The heartbeat is written every 0.1 s: wait for one written after both updates.
        beat = wait_until(
            lambda: (b := kv.get("hb:order_updates")) and b["counts"]["updates"] >= 2 and b,
            "a heartbeat counting both updates",
        )
        assert beat["state"] == "running" and beat["connected"] is True
    finally:
        stop.set()
        worker.join(10)
    assert not worker.is_alive()
    wait_until(lambda: sim.order_connections() == 0, "the stream closed on stop")


def test_a_rejected_login_surfaces_as_a_crash_for_the_supervisor(sim):
    sim.set_token("rotated-token")  # the component still uses the old one: auth fails
    kv = MemoryKeyValueStore()
    broken = OrderUpdatesComponent(
        kv=kv,
        client_factory=lambda on_update: OrderUpdateClient(
            sim.order_ws_url, sim.client_id, lambda: "sim-token", on_update, max_login_failures=1
        ),
        beat_interval=0.1,
    )
    with pytest.raises(RuntimeError, match="order-update stream stopped"):
        broken.run(threading.Event())
