"""GET /api/config/ and PUT /api/config/overrides/ (admin users only)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.trading.conftest import ALGO_YML
from trading.config.load import OVERRIDES_KEY, config_as_dict
from trading.config.store import load_algo_config
from trading.models import Setting

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("project_algo_config")]

CONFIG = "/api/config/"
OVERRIDES = "/api/config/overrides/"


def test_get_returns_the_version_the_effective_config_and_the_overrides(admin_api):
    Setting.put(OVERRIDES_KEY, {"indices": {"SENSEX": {"enabled": False}}})
    response = admin_api.get(CONFIG)
    assert response.status_code == 200
    expected = load_algo_config(ALGO_YML, {"indices": {"SENSEX": {"enabled": False}}})
    assert response.json() == {
        "version": expected.version,
        "effective": config_as_dict(expected),
        "overrides": {"indices": {"SENSEX": {"enabled": False}}},
    }


def test_get_without_overrides_shows_an_empty_mapping(admin_api):
    body = admin_api.get(CONFIG).json()
    assert body["overrides"] == {}
    assert body["version"] == load_algo_config(ALGO_YML).version


def test_put_stores_valid_overrides_and_returns_the_new_config(admin_api):
    before = admin_api.get(CONFIG).json()["version"]
    response = admin_api.put(OVERRIDES, {"risk": {"max_trades_per_day": 6}}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["effective"]["risk"]["max_trades_per_day"] == 6
    assert body["overrides"] == {"risk": {"max_trades_per_day": 6}}
    assert body["version"] != before
    assert Setting.get(OVERRIDES_KEY) == {"risk": {"max_trades_per_day": 6}}
    assert admin_api.get(CONFIG).json() == body


def test_put_of_an_empty_mapping_clears_the_overrides(admin_api):
    admin_api.put(OVERRIDES, {"risk": {"max_trades_per_day": 6}}, format="json")
    response = admin_api.put(OVERRIDES, {}, format="json")
    assert response.status_code == 200
    assert response.json()["version"] == load_algo_config(ALGO_YML).version


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (
            {"risk": {"max_trades_per_day": "eight"}, "paper": {"latency_ms": -5}},
            [
                "Setting algo.overrides: risk.max_trades_per_day: "
                "expected a whole number between 1 and 100, got 'eight'",
                "Setting algo.overrides: paper.latency_ms: "
                "expected a whole number between 0 and 60000, got -5",
            ],
        ),
        (
            {"exits": {"expiry_day": {"at": "15:20"}}},
            [
                "Setting algo.overrides: exits.expiry_day.at: "
                "expected a time at or before exits.time_exit.at (15:15), got '15:20'"
            ],
        ),
        (
            [1, 2],
            [
                "Setting algo.overrides: (top level): expected a mapping of keys to values, "
                "got [1, 2]"
            ],
        ),
    ],
    ids=["bad values", "cross-field", "not a mapping"],
)
def test_put_of_bad_overrides_answers_400_with_every_problem_and_stores_nothing(
    admin_api, body, errors
):
    admin_api.put(OVERRIDES, {"risk": {"max_trades_per_day": 6}}, format="json")
    response = admin_api.put(OVERRIDES, body, format="json")
    assert response.status_code == 400
    assert response.json() == {"errors": errors}
    assert Setting.get(OVERRIDES_KEY) == {"risk": {"max_trades_per_day": 6}}


def test_get_answers_500_with_the_problems_when_the_stored_overrides_are_invalid(admin_api):
    Setting.put(OVERRIDES_KEY, {"signals": {"strategy": "astrology"}})
    response = admin_api.get(CONFIG)
    assert response.status_code == 500
    assert response.json() == {
        "errors": [
            "Setting algo.overrides: signals.strategy: "
            "expected one of 'supertrend', 'holy_grail', got 'astrology'"
        ]
    }


@pytest.mark.parametrize("staff", [None, False], ids=["anonymous", "not staff"])
def test_the_config_endpoints_are_for_admin_users_only(django_user_model, staff):
    api = APIClient()
    if staff is not None:
        api.force_authenticate(django_user_model.objects.create_user("viewer", "v@example.com"))
    assert api.get(CONFIG).status_code == 403
    assert api.put(OVERRIDES, {}, format="json").status_code == 403
    assert not Setting.objects.filter(key=OVERRIDES_KEY).exists()
