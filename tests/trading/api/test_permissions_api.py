"""The API enforces the same Django model permissions as the admin: reading needs the model's
view (or change) permission, writing its change permission; switches and overrides are
``trading.Setting``. A staff user the admin refuses is refused here too."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from rest_framework.test import APIClient

from tests.support.rows import make_position, make_signal
from trading.api.overrides import overrides_version
from trading.config.load import OVERRIDES_KEY
from trading.models import Setting
from trading.switches import kill_switch_active, trading_enabled

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("project_algo_config")]

OVERRIDES = "/api/config/overrides/"
SWITCHES = "/api/switches/"
STORED = {"risk": {"max_trades_per_day": 6}}
VIEW_ALL = ("view_setting", "view_tradingsignal", "view_positiontracker")


def staff_with(django_user_model, *codenames: str):
    user = django_user_model.objects.create_user("op", "op@example.com", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


def api_for(user) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


def reads() -> list[str]:
    signal = make_signal()
    position = make_position()
    return [
        "/api/config/",
        OVERRIDES,
        SWITCHES,
        "/api/signals/",
        f"/api/signals/{signal.pk}/",
        "/api/positions/",
        f"/api/positions/{position.pk}/",
    ]


def try_every_write(api: APIClient) -> list[int]:
    tag = f'"{overrides_version(Setting.get(OVERRIDES_KEY))}"'  # the current version
    return [
        api.put(OVERRIDES, {}, format="json", HTTP_IF_MATCH=tag).status_code,
        api.put(SWITCHES, {"trading_enabled": False}, format="json").status_code,
        api.patch(SWITCHES, {"kill_switch": {"active": True}}, format="json").status_code,
    ]


def nothing_changed() -> bool:
    return (
        Setting.get(OVERRIDES_KEY) == STORED
        and trading_enabled() is True
        and kill_switch_active() is False
    )


@pytest.fixture(autouse=True)
def stored_overrides() -> None:
    Setting.put(OVERRIDES_KEY, STORED)


def test_a_staff_user_without_model_permissions_is_refused_like_the_admin(django_user_model):
    # The defect: is_staff alone switched the kill switch and rewrote the risk overrides.
    user = staff_with(django_user_model)
    admin = Client()
    admin.force_login(user)
    assert admin.get("/admin/trading/setting/").status_code == 403
    api = api_for(user)
    paths = reads()
    assert {path: api.get(path).status_code for path in paths} == dict.fromkeys(paths, 403)
    assert try_every_write(api) == [403, 403, 403]
    assert nothing_changed()


def test_a_refusal_names_the_permission_it_needs(django_user_model):
    api = api_for(staff_with(django_user_model, "view_setting"))
    detail = api.put(SWITCHES, {"trading_enabled": False}, format="json").json()["detail"]
    assert "trading.change_setting" in detail
    assert "trading.view_tradingsignal" in api.get("/api/signals/").json()["detail"]


def test_view_permissions_read_everything_and_write_nothing(django_user_model):
    api = api_for(staff_with(django_user_model, *VIEW_ALL))
    paths = reads()
    assert {path: api.get(path).status_code for path in paths} == dict.fromkeys(paths, 200)
    assert try_every_write(api) == [403, 403, 403]
    assert nothing_changed()


def test_each_list_needs_its_own_models_permission(django_user_model):
    api = api_for(staff_with(django_user_model, "view_setting"))
    assert api.get(SWITCHES).status_code == 200
    assert api.get("/api/signals/").status_code == 403
    assert api.get("/api/positions/").status_code == 403


def test_the_change_permission_on_settings_writes_switches_and_overrides(django_user_model):
    api = api_for(staff_with(django_user_model, "change_setting"))
    assert api.get(SWITCHES).status_code == 200  # change implies view, as in the admin
    assert try_every_write(api) == [200, 200, 200]
    assert Setting.get(OVERRIDES_KEY) == {}
    assert (trading_enabled(), kill_switch_active()) == (False, True)


@pytest.mark.parametrize("flag", ["is_active", "is_staff"], ids=["inactive", "not staff"])
def test_permissions_alone_are_not_enough_without_an_active_staff_account(django_user_model, flag):
    user = staff_with(django_user_model, "change_setting", *VIEW_ALL)
    setattr(user, flag, False)
    user.save()
    api = api_for(user)
    assert api.get(SWITCHES).status_code == 403
    assert try_every_write(api) == [403, 403, 403]
    assert nothing_changed()
