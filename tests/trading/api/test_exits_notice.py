"""Until the exit engine exists, every page where exit rules or positions appear says plainly
that exits are not active: config/algo.yml lists every exit rule as ``enabled: true``, and a
trader must never believe a stop protects a position when nothing does."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.support.rows import make_position
from trading.config import types as config_types
from trading.config.load import OVERRIDES_KEY
from trading.models import Setting

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("project_algo_config")]

NOTICE = "Exits are NOT active"
DETAIL = "no exit engine runs: no stop-loss, target, trailing stop or time exit protects"


@pytest.fixture
def staff(client: Client, django_user_model) -> Client:
    client.force_login(django_user_model.objects.create_superuser("ops", "o@example.com", None))
    return client


def pages() -> list[str]:
    Setting.put(OVERRIDES_KEY, {"strikes": {"offset": 1}})
    position = make_position()
    overrides = Setting.objects.get(key=OVERRIDES_KEY).pk
    return [
        "/admin/trading/setting/effective-config/",
        "/admin/trading/setting/switches/",
        "/admin/trading/setting/",
        f"/admin/trading/setting/{overrides}/change/",
        "/admin/trading/positiontracker/",
        f"/admin/trading/positiontracker/{position.pk}/change/",
    ]


def test_no_exit_engine_exists_yet():
    assert config_types.EXITS_ACTIVE is False


def test_every_page_showing_exits_or_positions_says_exits_are_not_active(staff):
    for url in pages():
        page = staff.get(url)
        assert page.status_code == 200, url
        text = page.content.decode()
        assert NOTICE in text and DETAIL in text, url


def test_the_notice_goes_once_exits_are_active(staff, monkeypatch):
    monkeypatch.setattr(config_types, "EXITS_ACTIVE", True)
    for url in pages():
        assert NOTICE not in staff.get(url).content.decode(), url


def test_the_api_config_says_exits_are_not_active(admin_api):
    body = admin_api.get("/api/config/").json()
    assert body["exits_active"] is False
    # ... although the config it answers with lists exit rules as enabled.
    assert body["effective"]["exits"]["time_exit"]["enabled"] is True
