"""trading.admin: the algo.overrides Setting is validated before it is stored; the effective
config page shows the merged config or its problems."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.test import Client

from trading import config as algo
from trading.config import OVERRIDES_KEY, load_algo_config
from trading.models import Setting

pytestmark = pytest.mark.django_db

ALGO_YML = Path(__file__).resolve().parents[2] / "config" / "algo.yml"
ADD = "/admin/trading/setting/add/"
CHANGELIST = "/admin/trading/setting/"
EFFECTIVE = "/admin/trading/setting/effective-config/"


@pytest.fixture(autouse=True)
def _config(settings):
    settings.ALGO_CONFIG_FILE = ALGO_YML
    algo.clear_algo_config_cache()
    yield
    algo.clear_algo_config_cache()


@pytest.fixture
def staff(client: Client, django_user_model) -> Client:
    user = django_user_model.objects.create_superuser("ops", "ops@example.com", None)
    client.force_login(user)
    return client


def add(client: Client, key: str, value: object) -> object:
    return client.post(ADD, {"key": key, "value": json.dumps(value)})


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (
            {"risk": {"max_trades_per_day": "eight"}},
            "Setting algo.overrides: risk.max_trades_per_day: "
            "expected a whole number between 1 and 100, got &#x27;eight&#x27;",
        ),
        (
            {"indices": {"NIFTY": {"entry_window": {"start": "15:10"}}}},
            "Setting algo.overrides: indices[NIFTY].entry_window.end: "
            "expected a time after start (15:10), got &#x27;15:00&#x27;",
        ),
        (
            ["not", "a", "mapping"],
            "Setting algo.overrides: (top level): expected a mapping of keys to values",
        ),
    ],
    ids=["bad value", "cross-field", "not a mapping"],
)
def test_the_form_refuses_a_bad_override_on_the_value_field(staff, value, problem):
    response = add(staff, OVERRIDES_KEY, value)
    assert response.status_code == 200  # the form again, with errors
    assert list(response.context["adminform"].form.errors) == ["value"]
    assert problem in response.content.decode()
    assert not Setting.objects.filter(key=OVERRIDES_KEY).exists()


def test_a_valid_override_is_stored_and_takes_effect_in_this_process(staff):
    algo.algo_config()  # cached before the change
    response = add(staff, OVERRIDES_KEY, {"strikes": {"offset": 1}})
    assert response.status_code == 302
    assert Setting.get(OVERRIDES_KEY) == {"strikes": {"offset": 1}}
    assert algo.algo_config().strikes.offset == 1


def test_other_settings_are_not_checked_against_the_algo_config(staff):
    response = add(staff, "switches.trading", {"risk": "anything"})
    assert response.status_code == 302
    assert Setting.get("switches.trading") == {"risk": "anything"}


def test_the_effective_config_page_shows_the_merged_config_and_version(staff):
    Setting.put(OVERRIDES_KEY, {"signals": {"adx_min": 23}})
    response = staff.get(EFFECTIVE)
    page = response.content.decode()
    assert response.status_code == 200
    assert load_algo_config(ALGO_YML, {"signals": {"adx_min": 23}}).version in page
    assert "adx_min: 23" in page
    assert EFFECTIVE in staff.get(CHANGELIST).content.decode()  # linked from the changelist


def test_the_effective_config_page_shows_the_problems_of_a_bad_stored_override(staff):
    Setting.put(OVERRIDES_KEY, {"orders": {"max_chases": 99}})
    page = staff.get(EFFECTIVE).content.decode()
    assert "Setting algo.overrides: orders.max_chases: expected a whole number" in page


def test_the_effective_config_page_is_for_staff_only(client):
    response = client.get(EFFECTIVE)
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
