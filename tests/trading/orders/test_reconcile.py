"""Reconciliation: broker positions against the journal's, each difference recorded once, never
adopted; an order in flight is not a mismatch; /ready says so until an operator resolves it;
and against the simulator, a position opened at the broker by hand is found."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from tests.support.rows import make_position
from trading.dhan.ratelimit import InProcessRateLimiter, load_limits
from trading.dhan.rest import DhanRestClient
from trading.dhan.sim.server import SimConfig, Simulator
from trading.models import Fill, Order, ReconciliationMismatch
from trading.orders.live import LiveGateway
from trading.orders.reconcile import open_mismatches, reconcile

from .conftest import T0

pytestmark = pytest.mark.django_db


def broker(segment: str, security_id: int, units: int, product: str = "INTRADAY"):
    return SimpleNamespace(
        exchange_segment=segment, security_id=security_id, net_quantity=units, product_type=product
    )


def live_position(units: int, security_id: int = 55796, *, working: bool = False):
    """An active live position whose entry filled ``units`` (its journal order and fill)."""
    position = make_position(security_id, mode="live", quantity=units)
    order = Order.objects.create(
        correlation_id=f"AS-EN-t{position.pk}-0-0",
        position=position,
        leg="entry",
        leg_index=0,
        side="BUY",
        mode="live",
        exchange_segment="NSE_FNO",
        security_id=security_id,
        quantity=units,
        limit_price=Decimal("100"),
        status="PART_TRADED" if working else "TRADED",
        filled_quantity=units,
        placed_at=T0,
        priced_at=T0,
    )
    Fill.objects.create(
        order=order, trade_id="t1", quantity=units, price=Decimal("100"), charges=0, traded_at=T0
    )
    return position


def test_matching_books_record_nothing():
    live_position(130)
    assert reconcile([broker("NSE_FNO", 55796, 130)], T0) == []
    assert open_mismatches() == []


def test_each_kind_of_difference_is_recorded_once_and_not_adopted():
    live_position(130, 55796)
    live_position(65, 55797)
    found = reconcile([broker("NSE_FNO", 55796, 65), broker("NSE_FNO", 60001, 195)], T0)
    kinds = {(m.kind, m.security_id, m.broker_quantity, m.database_quantity) for m in found}
    assert kinds == {
        ("quantity", 55796, 65, 130),
        ("database_only", 55797, None, 65),
        ("broker_only", 60001, 195, None),
    }
    again = reconcile([broker("NSE_FNO", 55796, 65), broker("NSE_FNO", 60001, 195)], T0)
    assert again == [] and ReconciliationMismatch.objects.count() == 3  # still open, once
    # Nothing was adopted or dropped: the journal's positions are as they were.
    assert sorted(Order.objects.values_list("security_id", "filled_quantity")) == [
        (55796, 130),
        (55797, 65),
    ]


def test_a_contract_with_an_order_in_flight_and_other_products_are_left_out():
    live_position(65, working=True)
    assert reconcile([broker("NSE_FNO", 55796, 130)], T0) == []  # the fill is on its way
    assert reconcile([broker("NSE_EQ", 2885, 10, product="CNC")], T0) == []  # not ours


def test_paper_positions_are_not_compared_with_the_broker():
    make_position(mode="paper", quantity=130)
    assert reconcile([], T0) == []


def test_ready_answers_503_naming_an_open_mismatch_until_it_is_resolved(
    client, django_user_model, settings
):
    settings.REDIS_URL = None
    reconcile([broker("NSE_FNO", 60001, 195)], T0)
    body = client.get("/ready").json()
    assert body["checks"]["reconciliation"] == {"state": "degraded", "open": 1}
    assert any("broker_only NSE_FNO:60001" in p for p in body["problems"])
    user = django_user_model.objects.create_user("ops", "ops@example.com", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["view_reconciliationmismatch", "change_reconciliationmismatch"]
        )
    )
    admin = Client()
    admin.force_login(user)
    mismatch = ReconciliationMismatch.objects.get()
    admin.post(
        "/admin/trading/reconciliationmismatch/",
        {"action": "mark_resolved", "_selected_action": [mismatch.pk]},
        follow=True,
    )
    mismatch.refresh_from_db()
    assert mismatch.resolved_by == "ops" and mismatch.resolved_at is not None
    assert client.get("/ready").json()["checks"]["reconciliation"] == {"state": "ok", "open": 0}


@pytest.fixture
def sim() -> Iterator[Simulator]:
    simulator = Simulator(
        SimConfig(seed=4, speed=0.001, strikes_each_side=2, weeklies=1, monthlies=1)
    ).start()
    try:
        yield simulator
    finally:
        simulator.stop()


def test_a_position_opened_at_the_broker_by_hand_is_found(sim):
    gateway = LiveGateway(
        DhanRestClient(
            base_url=sim.base_url,
            client_id=sim.client_id,
            token_provider=lambda: sim.token,
            limiter=InProcessRateLimiter(load_limits()),
        ),
        sim.client_id,
    )
    try:
        spec = next(
            c
            for c in sim.market.contracts.values()
            if c.exchange_segment == "NSE_FNO" and c.option_type in ("CE", "PE")
        )
        quote = sim.market.quote("NSE_FNO", spec.security_id)
        ask = Decimal(str(quote.depth[0].ask_price))
        now = sim.now()
        # An order placed by hand in Dhan's app: no AS- correlation id, no journal row.
        sim.broker.place(
            {
                "dhanClientId": sim.client_id,
                "transactionType": "BUY",
                "exchangeSegment": "NSE_FNO",
                "productType": "INTRADAY",
                "orderType": "LIMIT",
                "validity": "DAY",
                "securityId": str(spec.security_id),
                "quantity": spec.lot,
                "price": str(ask * 2),
            },
            now,
        )
        found = reconcile(gateway.positions(), now + timedelta(seconds=1))
    finally:
        gateway.close()
    assert [(m.kind, m.security_id, m.broker_quantity) for m in found] == [
        ("broker_only", spec.security_id, spec.lot)
    ]
