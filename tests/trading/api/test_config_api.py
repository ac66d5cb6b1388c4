"""GET /api/config/, GET and PUT /api/config/overrides/ (admin users only). A PUT needs an
explicit JSON object and the version of the overrides it replaces (If-Match)."""

from __future__ import annotations

import logging
import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from tests.trading.conftest import ALGO_YML
from trading.config.load import OVERRIDES_KEY, config_as_dict
from trading.config.store import load_algo_config
from trading.models import Setting

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("project_algo_config")]

CONFIG = "/api/config/"
OVERRIDES = "/api/config/overrides/"


def current_version(api: APIClient) -> str:
    return api.get(OVERRIDES).json()["overrides_version"]


def put(api: APIClient, body: object) -> object:
    """PUT ``body`` as JSON over the overrides as they are now (If-Match: their version)."""
    return api.put(OVERRIDES, body, format="json", HTTP_IF_MATCH=f'"{current_version(api)}"')


def test_get_returns_the_version_the_effective_config_and_the_overrides(admin_api):
    Setting.put(OVERRIDES_KEY, {"indices": {"SENSEX": {"enabled": False}}})
    response = admin_api.get(CONFIG)
    assert response.status_code == 200
    expected = load_algo_config(ALGO_YML, {"indices": {"SENSEX": {"enabled": False}}})
    assert response.json() == {
        "version": expected.version,
        "effective": config_as_dict(expected),
        "overrides": {"indices": {"SENSEX": {"enabled": False}}},
        "overrides_version": current_version(admin_api),
    }


def test_get_without_overrides_shows_an_empty_mapping(admin_api):
    body = admin_api.get(CONFIG).json()
    assert body["overrides"] == {}
    assert body["version"] == load_algo_config(ALGO_YML).version


def test_put_stores_valid_overrides_and_returns_the_new_config(admin_api):
    before = admin_api.get(CONFIG).json()["version"]
    response = put(admin_api, {"risk": {"max_trades_per_day": 6}})
    assert response.status_code == 200
    body = response.json()
    assert body["effective"]["risk"]["max_trades_per_day"] == 6
    assert body["overrides"] == {"risk": {"max_trades_per_day": 6}}
    assert body["version"] != before
    assert Setting.get(OVERRIDES_KEY) == {"risk": {"max_trades_per_day": 6}}
    assert admin_api.get(CONFIG).json() == body


def test_put_of_an_empty_mapping_clears_the_overrides(admin_api):
    put(admin_api, {"risk": {"max_trades_per_day": 6}})
    response = put(admin_api, {})
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
    put(admin_api, {"risk": {"max_trades_per_day": 6}})
    response = put(admin_api, body)
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


# --- A write needs an explicit JSON object -----------------------------------------------------

STORED = {"indices": {"NIFTY": {"enabled": False}}, "risk": {"daily_loss_limit": {"rupees": 1000}}}


@pytest.fixture
def stored(admin_api) -> dict:
    """An operator's risk overrides: NIFTY off, a Rs 1,000 daily loss limit."""
    assert put(admin_api, STORED).status_code == 200
    return STORED


@pytest.mark.parametrize("raw", ["", "null"], ids=["empty", "null"])
def test_an_empty_or_null_put_never_clears_the_overrides(admin_api, raw):
    # The defect: an empty PUT answered 200 and silently put NIFTY and the loss limit back.
    Setting.put(OVERRIDES_KEY, STORED)
    response = admin_api.generic("PUT", OVERRIDES, raw, content_type="application/json")
    assert 400 <= response.status_code < 500
    assert Setting.get(OVERRIDES_KEY) == STORED


@pytest.mark.parametrize(
    ("raw", "content_type", "problem"),
    [
        ("", "application/json", "the body is empty"),
        ("", None, "the body is empty"),
        ("null", "application/json", "expected a mapping of keys to values, got null"),
        ('"clear"', "application/json", 'expected a mapping of keys to values, got "clear"'),
        ("0", "application/json", "expected a mapping of keys to values, got 0"),
    ],
    ids=["empty", "empty without a content type", "null", "a string", "a number"],
)
def test_a_put_that_is_not_a_json_object_is_a_400_and_changes_nothing(
    admin_api, stored, raw, content_type, problem
):
    extra = {"HTTP_IF_MATCH": f'"{current_version(admin_api)}"'}
    if content_type is not None:
        extra["content_type"] = content_type
    response = admin_api.generic("PUT", OVERRIDES, raw, **extra)
    assert response.status_code == 400, response.content
    (error,) = response.json()["errors"]
    assert error.startswith("Setting algo.overrides: (top level): ")
    assert problem in error
    assert Setting.get(OVERRIDES_KEY) == stored


def test_a_body_without_a_json_content_type_is_refused(admin_api, stored):
    response = admin_api.generic(
        "PUT", OVERRIDES, "{}", content_type="text/plain", HTTP_IF_MATCH='"x"'
    )
    assert response.status_code == 415
    assert Setting.get(OVERRIDES_KEY) == stored


# --- The version precondition: nobody overwrites another operator's edit unknowingly ------------


def test_get_shows_the_overrides_with_their_version_as_etag(admin_api, stored):
    response = admin_api.get(OVERRIDES)
    assert response.status_code == 200
    body = response.json()
    assert body == {"overrides": stored, "overrides_version": body["overrides_version"]}
    assert response["ETag"] == f'"{body["overrides_version"]}"'
    assert admin_api.get(CONFIG).json()["overrides_version"] == body["overrides_version"]


def test_the_version_follows_the_content(admin_api):
    empty = current_version(admin_api)
    Setting.put(OVERRIDES_KEY, {})
    assert current_version(admin_api) == empty  # no row and an empty row are the same overrides
    put(admin_api, {"strikes": {"offset": 1}})
    assert current_version(admin_api) != empty
    put(admin_api, {})
    assert current_version(admin_api) == empty


def test_a_put_without_if_match_is_a_428_naming_it_and_changes_nothing(admin_api, stored):
    response = admin_api.put(OVERRIDES, {}, format="json")
    assert response.status_code == 428
    body = response.json()
    assert "If-Match" in body["errors"][0]
    assert body["overrides_version"] == current_version(admin_api)
    assert Setting.get(OVERRIDES_KEY) == stored


def test_if_match_star_is_not_a_version(admin_api, stored):
    response = admin_api.put(OVERRIDES, {}, format="json", HTTP_IF_MATCH="*")
    assert response.status_code == 428
    assert Setting.get(OVERRIDES_KEY) == stored


def test_the_second_of_two_operators_gets_a_412_naming_the_conflict(admin_api, stored):
    read_by_both = current_version(admin_api)
    first = admin_api.put(
        OVERRIDES,
        {"risk": {"max_trades_per_day": 6}},
        format="json",
        HTTP_IF_MATCH=f'"{read_by_both}"',
    )
    assert first.status_code == 200
    now = first["ETag"].strip('"')
    assert now == current_version(admin_api) != read_by_both
    second = admin_api.put(OVERRIDES, {}, format="json", HTTP_IF_MATCH=f'"{read_by_both}"')
    assert second.status_code == 412
    body = second.json()
    assert read_by_both in body["errors"][0] and now in body["errors"][0]
    assert body["overrides_version"] == now
    assert body["overrides"] == {"risk": {"max_trades_per_day": 6}}
    assert Setting.get(OVERRIDES_KEY) == {"risk": {"max_trades_per_day": 6}}


def test_clearing_is_an_explicit_empty_object_with_the_right_version(admin_api, stored):
    response = admin_api.put(
        OVERRIDES, {}, format="json", HTTP_IF_MATCH=f'"{current_version(admin_api)}"'
    )
    assert response.status_code == 200
    assert response.json()["overrides"] == {}
    assert Setting.get(OVERRIDES_KEY) == {}


def test_a_replacement_is_logged_with_who_and_the_versions(admin_api, stored, caplog):
    before = current_version(admin_api)
    with caplog.at_level(logging.WARNING, logger="trading.api.views"):
        response = put(admin_api, {})
    after = response["ETag"].strip('"')
    (record,) = [r for r in caplog.records if "overrides" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "ops" in record.getMessage()
    assert f"{before} -> {after}" in record.getMessage()


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_puts_of_the_same_version_store_exactly_one(django_user_model):
    if connection.vendor == "sqlite":
        # The test database is SQLite in memory there, whose shared cache fails concurrent
        # writers with "table is locked"; the row lock under test is PostgreSQL's.
        pytest.skip("needs PostgreSQL (make test)")
    user = django_user_model.objects.create_superuser("ops", "o@example.com", None)
    api = APIClient()
    api.force_authenticate(user)
    version = current_version(api)
    start = threading.Barrier(2)
    statuses: list[int] = []

    def operator(offset: int) -> None:
        client = APIClient()
        client.force_authenticate(user)
        start.wait()
        try:
            response = client.put(
                OVERRIDES,
                {"strikes": {"offset": offset}},
                format="json",
                HTTP_IF_MATCH=f'"{version}"',
            )
            statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=operator, args=(n,)) for n in (1, -1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(statuses) == [200, 412]
    assert Setting.get(OVERRIDES_KEY)["strikes"]["offset"] in (1, -1)
