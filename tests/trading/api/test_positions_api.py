"""GET /api/positions/ and /api/positions/<id>/ (admin users only, read-only)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from tests.support.rows import ids, ist, make_position
from trading.models import PositionStatus, PositionTracker

pytestmark = pytest.mark.django_db

POSITIONS = "/api/positions/"


def test_the_list_shows_each_position_with_money_as_decimal_strings(admin_api):
    position = make_position(
        status=PositionStatus.EXITED,
        realized_pnl=Decimal("-212.40"),
        exited_at=ist(2026, 11, 23, 11, 2),
    )
    response = admin_api.get(POSITIONS)
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    row = body["results"][0]
    assert row == {
        "id": position.id,
        "status": "exited",
        "underlying": "NIFTY",
        "direction": "bullish",
        "key": "NSE_FNO:55796",
        "exchange_segment": "NSE_FNO",
        "security_id": 55796,
        "trading_symbol": "NIFTY-Nov2026-26000-CE",
        "quantity": 130,
        "entry_price": "100.0500",
        "ltp": "104.2000",
        "unrealized_pnl": "539.50",
        "unrealized_pnl_net": "497.13",
        "pnl_percent": None,
        "peak_pnl": None,
        "trough_pnl": None,
        "pnl_updated_at": None,
        "realized_pnl": "-212.40",
        "signal": None,
        "config_version": "v1a2b3c4",
        "created_at": row["created_at"],
        "exited_at": "2026-11-23T11:02:00+05:30",
        "updated_at": row["updated_at"],
    }


def test_the_detail_is_the_same_record(admin_api):
    position = make_position()
    listed = admin_api.get(POSITIONS).json()["results"][0]
    response = admin_api.get(f"{POSITIONS}{position.id}/")
    assert response.status_code == 200
    assert response.json() == listed


def test_an_unknown_position_is_404(admin_api):
    assert admin_api.get(f"{POSITIONS}12345/").status_code == 404


def test_the_newest_position_comes_first(admin_api):
    first = make_position(55796)
    second = make_position(55797)
    assert ids(admin_api.get(POSITIONS)) == [second.id, first.id]


def test_filters_by_status_and_underlying(admin_api):
    open_nifty = make_position(55796, PositionStatus.ACTIVE, "NIFTY")
    make_position(55796, PositionStatus.EXITED, "NIFTY")
    make_position(66001, PositionStatus.ACTIVE, "BANKNIFTY")
    assert ids(admin_api.get(POSITIONS, {"status": "active", "underlying": "nifty"})) == [
        open_nifty.id
    ]
    assert len(ids(admin_api.get(POSITIONS, {"status": "active"}))) == 2
    assert len(ids(admin_api.get(POSITIONS, {"underlying": "NIFTY"}))) == 2


@pytest.mark.parametrize(
    ("params", "errors"),
    [
        (
            {"status": "open"},
            {
                "status": [
                    "expected one of 'pending', 'active', 'exiting', 'exited', 'cancelled', "
                    "got 'open'"
                ]
            },
        ),
        (
            {"underlying": "NIFTY;DROP"},
            {"underlying": ["expected an index symbol such as NIFTY, got 'NIFTY;DROP'"]},
        ),
        ({"direction": "bullish"}, {"direction": ["unknown query parameter"]}),
    ],
    ids=["status", "underlying", "not a filter here"],
)
def test_a_bad_query_parameter_is_a_400_naming_it(admin_api, params, errors):
    response = admin_api.get(POSITIONS, params)
    assert response.status_code == 400
    assert response.json() == errors


def test_positions_cannot_be_written_through_the_api(admin_api):
    position = make_position()
    detail = f"{POSITIONS}{position.id}/"
    assert admin_api.put(detail, {"status": "exited"}, format="json").status_code == 405
    assert admin_api.patch(detail, {"status": "exited"}, format="json").status_code == 405
    assert admin_api.delete(detail).status_code == 405
    assert admin_api.post(POSITIONS, {"status": "active"}, format="json").status_code == 405
    assert PositionTracker.objects.get().status == PositionStatus.ACTIVE


@pytest.mark.parametrize("staff", [None, False], ids=["anonymous", "not staff"])
def test_positions_are_for_admin_users_only(django_user_model, staff):
    position = make_position()
    api = APIClient()
    if staff is not None:
        api.force_authenticate(django_user_model.objects.create_user("viewer", "v@example.com"))
    assert api.get(POSITIONS).status_code == 403
    assert api.get(f"{POSITIONS}{position.id}/").status_code == 403
