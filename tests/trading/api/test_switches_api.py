"""GET, PUT and PATCH /api/switches/: the trading switch and the kill switch, read and written
through trading.switches (what the entry gates read)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from trading.models import Setting
from trading.switches import (
    KILL_SWITCH_KEY,
    TRADING_SWITCH_KEY,
    kill_switch_active,
    set_kill_switch,
    set_trading_enabled,
    trading_enabled,
)

pytestmark = pytest.mark.django_db

SWITCHES = "/api/switches/"


def test_a_fresh_install_trades_with_the_kill_switch_off(admin_api):
    response = admin_api.get(SWITCHES)
    assert response.status_code == 200
    assert response.json() == {
        "trading_enabled": True,
        "kill_switch": {"active": False, "reason": ""},
    }


def test_get_shows_what_trading_switches_stored(admin_api):
    set_trading_enabled(False)
    set_kill_switch(True, "daily loss limit: -5000.00")
    assert admin_api.get(SWITCHES).json() == {
        "trading_enabled": False,
        "kill_switch": {"active": True, "reason": "daily loss limit: -5000.00"},
    }


def test_get_names_a_malformed_kill_switch_row_read_as_active(admin_api):
    Setting.put(KILL_SWITCH_KEY, {"active": "no"})
    body = admin_api.get(SWITCHES).json()
    assert body["kill_switch"]["active"] is True
    assert "trading.kill_switch is malformed" in body["kill_switch"]["reason"]


@pytest.mark.parametrize("method", ["put", "patch"])
def test_turning_trading_off_and_on_round_trips_through_trading_switches(admin_api, method):
    send = getattr(admin_api, method)
    response = send(SWITCHES, {"trading_enabled": False}, format="json")
    assert response.status_code == 200
    assert response.json() == {
        "trading_enabled": False,
        "kill_switch": {"active": False, "reason": ""},
    }
    assert trading_enabled() is False
    assert Setting.get(TRADING_SWITCH_KEY) == {"enabled": False}

    assert send(SWITCHES, {"trading_enabled": True}, format="json").json()["trading_enabled"]
    assert trading_enabled() is True


@pytest.mark.parametrize("method", ["put", "patch"])
def test_the_kill_switch_round_trips_with_its_reason(admin_api, method):
    send = getattr(admin_api, method)
    body = {"kill_switch": {"active": True, "reason": "broker outage"}}
    response = send(SWITCHES, body, format="json")
    assert response.status_code == 200
    assert response.json()["kill_switch"] == {"active": True, "reason": "broker outage"}
    assert kill_switch_active() is True
    assert trading_enabled() is True  # untouched
    assert admin_api.get(SWITCHES).json()["kill_switch"]["reason"] == "broker outage"

    response = send(SWITCHES, {"kill_switch": {"active": False}}, format="json")
    assert response.json()["kill_switch"] == {"active": False, "reason": ""}
    assert kill_switch_active() is False


def test_both_switches_in_one_request(admin_api):
    body = {"trading_enabled": False, "kill_switch": {"active": True, "reason": "EOD"}}
    response = admin_api.put(SWITCHES, body, format="json")
    assert response.json() == body
    assert (trading_enabled(), kill_switch_active()) == (False, True)


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (
            {"trading_enabled": "false"},
            {"trading_enabled": ["Must be true or false (a JSON boolean)."]},
        ),
        ({"trading_enabled": 0}, {"trading_enabled": ["Must be true or false (a JSON boolean)."]}),
        ({"trading_enabled": None}, {"trading_enabled": ["This field may not be null."]}),
        (
            {"kill_switch": True},
            {
                "kill_switch": {
                    "non_field_errors": ["Invalid data. Expected a dictionary, but got bool."]
                }
            },
        ),
        (
            {"kill_switch": {"reason": "x"}},
            {"kill_switch": {"active": ["This field is required."]}},
        ),
        (
            {"kill_switch": {"active": "yes"}},
            {"kill_switch": {"active": ["Must be true or false (a JSON boolean)."]}},
        ),
        (
            {"kill_switch": {"active": True, "reason": 5 * "x" * 101}},
            {"kill_switch": {"reason": ["Ensure this field has no more than 500 characters."]}},
        ),
        (
            {"kill_switch": {"active": True, "why": "x"}},
            {"kill_switch": {"why": ["Unknown field."]}},
        ),
        ({"kill_swich": {"active": True}}, {"kill_swich": ["Unknown field."]}),
        ({"trading_enabled": False, "paper": True}, {"paper": ["Unknown field."]}),
        ({}, {"non_field_errors": ["Give trading_enabled and/or kill_switch."]}),
        ([True], {"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}),
    ],
    ids=[
        "string boolean",
        "number boolean",
        "null",
        "kill switch not a mapping",
        "kill switch without active",
        "kill switch string boolean",
        "reason too long",
        "unknown kill switch field",
        "unknown field",
        "unknown field beside a good one",
        "empty",
        "not a mapping",
    ],
)
def test_a_bad_body_is_a_400_naming_the_field_and_changes_nothing(admin_api, body, errors):
    set_kill_switch(True, "before")
    response = admin_api.put(SWITCHES, body, format="json")
    assert response.status_code == 400
    assert response.json() == errors
    assert Setting.get(TRADING_SWITCH_KEY) is None
    assert Setting.get(KILL_SWITCH_KEY) == {"active": True, "reason": "before"}


def test_a_body_that_is_not_json_is_refused(admin_api):
    response = admin_api.put(SWITCHES, "trading_enabled=false", content_type="text/plain")
    assert response.status_code == 415
    assert trading_enabled() is True


@pytest.mark.parametrize("staff", [None, False], ids=["anonymous", "not staff"])
def test_the_switches_are_for_admin_users_only(django_user_model, staff):
    api = APIClient()
    if staff is not None:
        api.force_authenticate(django_user_model.objects.create_user("viewer", "v@example.com"))
    assert api.get(SWITCHES).status_code == 403
    assert api.put(SWITCHES, {"trading_enabled": False}, format="json").status_code == 403
    assert api.patch(SWITCHES, {"kill_switch": {"active": True}}, format="json").status_code == 403
    assert (trading_enabled(), kill_switch_active()) == (True, False)


def test_a_switch_change_is_logged_with_who_and_from_to(admin_api, caplog):
    import logging

    set_kill_switch(True, "before")
    with caplog.at_level(logging.WARNING, logger="trading.switches"):
        admin_api.put(
            SWITCHES,
            {"trading_enabled": False, "kill_switch": {"active": False}},
            format="json",
        )
    (record,) = [r for r in caplog.records if r.name == "trading.switches"]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        "Switches changed by ops through the API: trading ON -> OFF; "
        "kill switch ACTIVE (reason: before) -> off"
    )
