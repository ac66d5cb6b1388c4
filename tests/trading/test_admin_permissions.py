"""The admin's permissions and its reserved Setting rows.

* Switches change only through their own page (or the API), logged at WARNING with who and
  from/to; the generic Setting admin can neither add, edit nor delete a switch row.
* The rows the workers write (heartbeats, feed health and the rest of embedded mode's
  key-value store) are read-only in the admin: ``/ready`` trusts them.
* Staff without the model permissions are refused; view-only staff can look, not change.
"""

from __future__ import annotations

import json
import logging

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from trading.api.overrides import overrides_version
from trading.config.load import OVERRIDES_KEY
from trading.models import Setting
from trading.switches import (
    KILL_SWITCH_KEY,
    TRADING_SWITCH_KEY,
    WORKER_KEY_PREFIXES,
    kill_switch_active,
    set_kill_switch,
    set_trading_enabled,
    trading_enabled,
)
from workers.realtime.kv_store import DbKeyValueStore

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("project_algo_config")]

CHANGELIST = "/admin/trading/setting/"
ADD = f"{CHANGELIST}add/"
SWITCHES = f"{CHANGELIST}switches/"
EFFECTIVE = f"{CHANGELIST}effective-config/"
HEARTBEAT = "kv:hb:feed_hub"
FEED_HEALTH = "kv:health:feed"


def login(client: Client, django_user_model, *codenames: str, superuser: bool = False) -> Client:
    if superuser:
        user = django_user_model.objects.create_superuser("ops", "ops@example.com", None)
    else:
        user = django_user_model.objects.create_user("ops", "ops@example.com", is_staff=True)
        user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return client


@pytest.fixture
def admin(client: Client, django_user_model) -> Client:
    return login(client, django_user_model, superuser=True)


def pk(key: str) -> int:
    return Setting.objects.get(key=key).pk


def reserved_rows() -> dict[str, object]:
    set_kill_switch(True, "broker outage")
    set_trading_enabled(False)
    rows = {
        HEARTBEAT: {"value": {"state": "running"}, "expires_at": 2e9},
        FEED_HEALTH: {"value": {"state": "healthy"}, "expires_at": 2e9},
    }
    for key, value in rows.items():
        Setting.put(key, value)
    return {
        KILL_SWITCH_KEY: Setting.get(KILL_SWITCH_KEY),
        TRADING_SWITCH_KEY: Setting.get(TRADING_SWITCH_KEY),
        **rows,
    }


def test_the_reserved_prefix_is_what_the_workers_write():
    assert DbKeyValueStore.ROW_PREFIX in WORKER_KEY_PREFIXES


def test_deleting_the_kill_switch_row_in_the_setting_admin_is_refused(admin):
    # The defect: this turned the kill switch off, with no log line.
    set_kill_switch(True, "daily loss limit")
    url = f"{CHANGELIST}{pk(KILL_SWITCH_KEY)}/delete/"
    assert admin.get(url).status_code == 403
    assert admin.post(url, {"post": "yes"}).status_code == 403
    assert kill_switch_active() is True


@pytest.mark.parametrize("key", [KILL_SWITCH_KEY, TRADING_SWITCH_KEY, HEARTBEAT, FEED_HEALTH])
def test_reserved_rows_are_shown_read_only_and_cannot_be_edited_or_deleted(admin, key):
    before = reserved_rows()
    change = f"{CHANGELIST}{pk(key)}/change/"
    page = admin.get(change)
    assert page.status_code == 200  # the superuser may look
    assert page.context["has_change_permission"] is False
    assert 'name="_save"' not in page.content.decode()
    assert admin.post(change, {"key": key, "value": "{}"}).status_code == 403
    assert admin.post(f"{CHANGELIST}{pk(key)}/delete/", {"post": "yes"}).status_code == 403
    assert {k: Setting.get(k) for k in before} == before


def test_the_bulk_delete_refuses_a_selection_with_a_reserved_row(admin):
    before = reserved_rows()
    Setting.put("notes.ops", {"text": "hello"})
    selected = [str(pk(KILL_SWITCH_KEY)), str(pk("notes.ops")), str(pk(HEARTBEAT))]
    action = {"action": "delete_selected", "_selected_action": selected}
    page = admin.post(CHANGELIST, action)
    assert "Cannot delete" in page.content.decode()
    assert admin.post(CHANGELIST, {**action, "post": "yes"}).status_code == 403
    assert {k: Setting.get(k) for k in before} == before
    assert Setting.get("notes.ops") == {"text": "hello"}


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        (KILL_SWITCH_KEY, "Trading switches page"),
        (TRADING_SWITCH_KEY, "Trading switches page"),
        (HEARTBEAT, "written by the workers"),
        ("kv:anything", "written by the workers"),
    ],
)
def test_a_reserved_key_cannot_be_added(admin, key, problem):
    value = {"active": False} if key == KILL_SWITCH_KEY else {"enabled": True}
    response = admin.post(ADD, {"key": key, "value": json.dumps(value)})
    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == ["key"]
    assert problem in response.content.decode()
    assert not Setting.objects.filter(key=key).exists()


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("Trading.Switch", "differs from the key trading.switch only in case"),
        ("TRADING_KILL_SWITCH", "differs from the key trading.kill_switch only in case"),
        ("\uff54rading.switch", "differs from the key trading.switch only in case, width"),
        ("Algo.Overrides", "differs from the key algo.overrides only in case"),
        ("KV:x", "looks like a row the workers write"),
        ("kv", "looks like a row the workers write"),
        ("orders", "looks like a row the workers write"),
        ("Orders.salt", "looks like a row the workers write"),
        ("notes\u200b.ops", "an invisible formatting character (U+200B)"),
    ],
)
def test_a_key_that_looks_like_a_reserved_one_cannot_be_added(admin, key, problem):
    # An operator editing a "Trading.Switch" row believes trading is off when it is not.
    response = admin.post(ADD, {"key": key, "value": '{"enabled": false}'})
    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == ["key"]
    assert problem in response.content.decode()
    assert not Setting.objects.filter(key=key).exists()


@pytest.mark.parametrize("key", ["notes.ops", "kvm.notes", "trading.switch_notes", "ordersbook"])
def test_a_distinct_key_is_still_added(admin, key):
    assert admin.post(ADD, {"key": key, "value": "{}"}).status_code == 302
    assert Setting.get(key) == {}


def test_a_stale_overrides_version_is_not_echoed_back_whole(admin):
    Setting.put(OVERRIDES_KEY, {"strikes": {"offset": 1}})
    change = f"{CHANGELIST}{pk(OVERRIDES_KEY)}/change/"
    sent = "v" * 100_000
    response = admin.post(change, {"value": "{}", "overrides_version": sent})
    assert response.status_code == 200
    [error] = response.context["adminform"].form.errors["overrides_version"]
    assert "you saw '" + "v" * 80 + "'... (100000 characters)" in error
    assert len(error) < 400
    assert Setting.get(OVERRIDES_KEY) == {"strikes": {"offset": 1}}


def test_an_unknown_switch_action_is_not_echoed_back_whole(admin):
    page = admin.post(SWITCHES, {"action": "x" * 100_000}, follow=True).content.decode()
    assert "not one of trading_on, trading_off, kill_on, kill_off" in page
    assert "x" * 81 not in page
    assert kill_switch_active() is False and trading_enabled() is True


def test_other_rows_stay_editable_but_their_key_does_not_change(admin):
    Setting.put("notes.ops", {"text": "hello"})
    change = f"{CHANGELIST}{pk('notes.ops')}/change/"
    response = admin.post(change, {"key": KILL_SWITCH_KEY, "value": '{"text": "bye"}'})
    assert response.status_code == 302
    assert Setting.get("notes.ops") == {"text": "bye"}
    assert Setting.get(KILL_SWITCH_KEY) is None


def test_a_switch_change_on_its_page_is_logged_with_who_and_from_to(admin, caplog):
    with caplog.at_level(logging.WARNING, logger="trading.switches"):
        admin.post(SWITCHES, {"action": "kill_on", "reason": "broker outage"})
        admin.post(SWITCHES, {"action": "trading_off"})
    lines = [r.getMessage() for r in caplog.records if r.name == "trading.switches"]
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == "trading.switches")
    assert lines == [
        "Switches changed by ops in the admin: kill switch off -> ACTIVE (reason: broker outage)",
        "Switches changed by ops in the admin: trading ON -> OFF",
    ]


@pytest.mark.parametrize(
    ("reason", "problem"),
    [
        (
            "x\n2026-12-06 06:12:01,000 INFO fake: all good",
            "the reason holds a control character (U+000A) at position 2",
        ),
        ("\x1b[31mred", "a control character (U+001B)"),
        ("bell\x07", "a control character (U+0007)"),
        ("\u202eyalp", "an invisible formatting character (U+202E)"),
        ("a\u2029b", "a paragraph separator (U+2029)"),
    ],
)
def test_a_switch_reason_that_could_forge_a_log_line_is_refused_named(
    admin, caplog, reason, problem
):
    with caplog.at_level(logging.WARNING, logger="trading.switches"):
        page = admin.post(SWITCHES, {"action": "kill_on", "reason": reason}, follow=True)
    assert "Nothing changed" in page.content.decode()
    assert problem in page.content.decode()
    assert kill_switch_active() is False
    assert not [r for r in caplog.records if r.name == "trading.switches"]


# --- Staff without permissions, view-only, change ---------------------------------------------


def test_staff_without_permissions_are_refused_every_setting_page(client, django_user_model):
    login(client, django_user_model)
    for url in (CHANGELIST, SWITCHES, EFFECTIVE, ADD):
        assert client.get(url).status_code == 403, url
    assert client.post(SWITCHES, {"action": "kill_on"}).status_code == 403
    assert kill_switch_active() is False


def test_view_only_staff_see_the_pages_and_change_nothing(client, django_user_model):
    Setting.put(OVERRIDES_KEY, {"strikes": {"offset": 1}})
    login(client, django_user_model, "view_setting")
    for url in (CHANGELIST, SWITCHES, EFFECTIVE):
        assert client.get(url).status_code == 200, url
    change = f"{CHANGELIST}{pk(OVERRIDES_KEY)}/change/"
    assert client.get(change).context["has_change_permission"] is False
    assert client.post(change, {"key": OVERRIDES_KEY, "value": "{}"}).status_code == 403
    assert client.post(SWITCHES, {"action": "trading_off"}).status_code == 403
    assert Setting.get(OVERRIDES_KEY) == {"strikes": {"offset": 1}}
    assert trading_enabled() is True


def test_change_permission_flips_switches_and_edits_the_overrides(client, django_user_model):
    Setting.put(OVERRIDES_KEY, {"strikes": {"offset": 1}})
    login(client, django_user_model, "change_setting")
    assert client.post(SWITCHES, {"action": "trading_off"}).status_code == 302
    assert trading_enabled() is False
    change = f"{CHANGELIST}{pk(OVERRIDES_KEY)}/change/"
    shown = client.get(change).context["adminform"].form["overrides_version"].value()
    form = {"value": '{"strikes": {"offset": 2}}', "overrides_version": shown}
    response = client.post(change, form)
    assert response.status_code == 302
    assert Setting.get(OVERRIDES_KEY) == {"strikes": {"offset": 2}}


# --- Writing algo.overrides needs change_setting, as in the API --------------------------------

RISK = {"risk": {"max_trades_per_day": 2}}


def add_overrides(client: Client) -> object:
    return client.post(ADD, {"key": OVERRIDES_KEY, "value": json.dumps(RISK)})


@pytest.mark.parametrize(
    "codenames", [("add_setting",), ("add_setting", "view_setting")], ids=["add", "add+view"]
)
def test_adding_the_overrides_row_needs_the_change_permission(client, django_user_model, codenames):
    # The defect: add_setting alone stored risk overrides the API refuses it (403).
    login(client, django_user_model, *codenames)
    response = add_overrides(client)
    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == ["key"]
    assert "needs the permission trading.change_setting" in response.content.decode()
    assert not Setting.objects.filter(key=OVERRIDES_KEY).exists()
    assert client.post(ADD, {"key": "notes.ops", "value": "{}"}).status_code == 302


def test_add_and_change_permissions_add_the_overrides_row(client, django_user_model):
    login(client, django_user_model, "add_setting", "change_setting")
    assert add_overrides(client).status_code == 302
    assert Setting.get(OVERRIDES_KEY) == RISK


def delete_page(key: str) -> str:
    return f"{CHANGELIST}{pk(key)}/delete/"


@pytest.mark.parametrize(
    "codenames",
    [("delete_setting",), ("delete_setting", "view_setting"), ("change_setting",)],
    ids=["delete", "delete+view", "change"],
)
def test_deleting_the_overrides_row_needs_change_and_delete(client, django_user_model, codenames):
    # The defect: delete_setting alone cleared every override (the API refuses it: 403).
    Setting.put(OVERRIDES_KEY, RISK)
    Setting.put("notes.ops", {})
    login(client, django_user_model, *codenames)
    version = overrides_version(RISK)
    assert client.get(delete_page(OVERRIDES_KEY)).status_code == 403
    form = {"post": "yes", "overrides_version": version}
    assert client.post(delete_page(OVERRIDES_KEY), form).status_code == 403
    assert Setting.get(OVERRIDES_KEY) == RISK
    expected = 302 if "delete_setting" in codenames else 403
    assert client.post(delete_page("notes.ops"), {"post": "yes"}).status_code == expected


def test_change_and_delete_delete_the_overrides_row_at_the_version_shown(client, django_user_model):
    Setting.put(OVERRIDES_KEY, RISK)
    login(client, django_user_model, "change_setting", "delete_setting")
    page = client.get(delete_page(OVERRIDES_KEY))
    assert page.status_code == 200
    version = page.context["overrides_version"]
    assert f'name="overrides_version" value="{version}"' in page.content.decode()
    response = client.post(
        delete_page(OVERRIDES_KEY), {"post": "yes", "overrides_version": version}
    )
    assert response.status_code == 302
    assert not Setting.objects.filter(key=OVERRIDES_KEY).exists()


@pytest.mark.parametrize("seen", [None, "stale", "x" * 100_000], ids=["none", "stale", "huge"])
def test_deleting_the_overrides_at_another_version_deletes_nothing(admin, seen):
    Setting.put(OVERRIDES_KEY, RISK)
    url = delete_page(OVERRIDES_KEY)
    form = {"post": "yes"} if seen is None else {"post": "yes", "overrides_version": seen}
    page = admin.post(url, form, follow=True)
    text = page.content.decode()
    assert "Nothing deleted: the overrides changed since you opened this page" in text
    assert "x" * 81 not in text
    assert Setting.get(OVERRIDES_KEY) == RISK


def test_the_bulk_delete_refuses_a_selection_with_the_overrides_row(admin):
    Setting.put(OVERRIDES_KEY, RISK)
    Setting.put("notes.ops", {})
    selected = [str(pk(OVERRIDES_KEY)), str(pk("notes.ops"))]
    action = {"action": "delete_selected", "_selected_action": selected}
    for form in (action, {**action, "post": "yes"}):
        page = admin.post(CHANGELIST, form, follow=True)
        assert f"delete {OVERRIDES_KEY} from its own page" in page.content.decode()
    assert Setting.get(OVERRIDES_KEY) == RISK
    assert Setting.get("notes.ops") == {}
    only_notes = {**action, "_selected_action": [str(pk("notes.ops"))], "post": "yes"}
    assert admin.post(CHANGELIST, only_notes).status_code == 302
    assert Setting.get("notes.ops") is None
