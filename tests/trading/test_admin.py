"""trading.admin: the algo.overrides and switch Settings are validated before they are stored;
the effective config page shows the merged config or its problems; the switches page flips the
trading switch and the kill switch; signals and positions are view-only; the watchlist is
editable and validated."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from tests.support.rows import ist, make_position, make_signal
from tests.trading.conftest import ALGO_YML
from trading.config import store as algo
from trading.config.load import OVERRIDES_KEY
from trading.config.store import load_algo_config
from trading.models import PositionStatus, PositionTracker, Setting, TradingSignal, WatchlistItem
from trading.switches import (
    KILL_SWITCH_KEY,
    TRADING_SWITCH_KEY,
    kill_switch_active,
    set_kill_switch,
    set_trading_enabled,
    trading_enabled,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("project_algo_config")]

ADD = "/admin/trading/setting/add/"
CHANGELIST = "/admin/trading/setting/"
EFFECTIVE = "/admin/trading/setting/effective-config/"


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


# --- Switch rows in the Setting form ----------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (TRADING_SWITCH_KEY, {"enabled": False}),
        (KILL_SWITCH_KEY, {"active": True, "reason": "manual"}),
        (KILL_SWITCH_KEY, {"active": False}),
        (TRADING_SWITCH_KEY, {"enabled": "false"}),
        (TRADING_SWITCH_KEY, {"enabled": True, "until": "15:00"}),
        (KILL_SWITCH_KEY, {"active": 1}),
        (KILL_SWITCH_KEY, "on"),
    ],
)
def test_the_form_refuses_any_switch_row_and_points_at_the_switches_page(staff, key, value):
    # Switches change only on their own page or through the API, where each change is logged
    # with who made it (tests/trading/test_admin_permissions.py).
    response = add(staff, key, value)
    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == ["key"]
    assert "is changed on the Trading switches page" in response.content.decode()
    assert Setting.get(key) is None


# --- The switches page ------------------------------------------------------------------------

SWITCHES = "/admin/trading/setting/switches/"


def test_the_switches_page_shows_the_state_the_gates_read(staff):
    set_trading_enabled(False)
    set_kill_switch(True, "daily loss limit")
    response = staff.get(SWITCHES)
    page = response.content.decode()
    assert response.status_code == 200
    assert "OFF: no new entries" in page
    assert "ACTIVE: no new entries" in page
    assert "(reason: daily loss limit)" in page
    assert 'value="trading_on"' in page
    assert 'value="kill_off"' in page
    assert SWITCHES in staff.get(CHANGELIST).content.decode()  # linked from the changelist
    assert EFFECTIVE in staff.get(CHANGELIST).content.decode()  # and the old link is kept


def test_the_bulk_delete_of_settings_still_asks_for_confirmation(staff):
    Setting.put("some.key", {"a": 1})
    selected = [str(Setting.objects.get(key="some.key").pk)]
    response = staff.post(CHANGELIST, {"action": "delete_selected", "_selected_action": selected})
    assert response.status_code == 200
    assert "Are you sure" in response.content.decode()
    assert Setting.objects.filter(key="some.key").exists()


def test_a_fresh_install_shows_trading_on_and_the_kill_switch_off(staff):
    page = staff.get(SWITCHES).content.decode()
    assert "ON: new entries allowed" in page
    assert 'value="trading_off"' in page
    assert 'value="kill_on"' in page


def test_turning_trading_off_and_on_goes_through_trading_switches(staff):
    response = staff.post(SWITCHES, {"action": "trading_off"}, follow=True)
    assert response.redirect_chain == [(SWITCHES, 302)]
    assert trading_enabled() is False
    assert "Trading switched OFF: no new entries" in response.content.decode()
    response = staff.post(SWITCHES, {"action": "trading_on"}, follow=True)
    assert trading_enabled() is True
    assert "Trading switched ON" in response.content.decode()


def test_the_kill_switch_is_activated_with_its_reason_and_deactivated(staff):
    response = staff.post(SWITCHES, {"action": "kill_on", "reason": " broker outage "}, follow=True)
    assert kill_switch_active() is True
    assert Setting.get(KILL_SWITCH_KEY) == {"active": True, "reason": "broker outage"}
    assert "Kill switch ACTIVATED" in response.content.decode()
    assert trading_enabled() is True  # the other switch is untouched
    response = staff.post(SWITCHES, {"action": "kill_off"}, follow=True)
    assert kill_switch_active() is False
    assert "Kill switch deactivated" in response.content.decode()


def test_the_kill_switch_texts_say_the_exit_engine_flattens_the_open_positions(staff):
    # README: the exit engine flattens every open position while the kill switch is on. The
    # page and the message said they were NOT flattened, "close them by hand".
    page = staff.get(SWITCHES).content.decode()
    assert "flattens every open position" in page
    response = staff.post(SWITCHES, {"action": "kill_on", "reason": "x"}, follow=True)
    text = response.content.decode()
    assert "the exit engine flattens every open position (exit type KILL_SWITCH)" in text
    assert "by hand" not in text and "not flattened" not in text.lower()
    assert "flattens every open position" in staff.get(SWITCHES).content.decode()


def test_with_the_kill_switch_exit_rule_off_the_texts_say_positions_stay_open(staff):
    Setting.put(OVERRIDES_KEY, {"exits": {"kill_switch": {"enabled": False}}})
    algo.clear_algo_config_cache()
    response = staff.post(SWITCHES, {"action": "kill_on", "reason": "x"}, follow=True)
    text = response.content.decode()
    assert "open positions are NOT flattened: the exit rule exits.kill_switch is switched off" in (
        text
    )
    assert "flattens every open position" not in text


def test_an_unknown_action_changes_nothing_and_says_so(staff):
    response = staff.post(SWITCHES, {"action": "flatten_everything"}, follow=True)
    assert "Nothing changed" in response.content.decode()
    assert Setting.get(TRADING_SWITCH_KEY) is None
    assert Setting.get(KILL_SWITCH_KEY) is None


def test_a_staff_user_who_may_only_view_settings_cannot_flip_a_switch(client, django_user_model):
    viewer = django_user_model.objects.create_user("viewer", "v@example.com", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_setting"))
    client.force_login(viewer)
    page = client.get(SWITCHES)
    assert page.status_code == 200
    assert 'value="trading_off"' not in page.content.decode()
    assert client.post(SWITCHES, {"action": "trading_off"}).status_code == 403
    assert trading_enabled() is True


def test_the_switches_page_is_for_staff_only(client, django_user_model):
    assert "/admin/login/" in client.get(SWITCHES)["Location"]
    client.post(SWITCHES, {"action": "kill_on"})
    client.force_login(django_user_model.objects.create_user("user", "u@example.com"))
    assert "/admin/login/" in client.post(SWITCHES, {"action": "kill_on"})["Location"]
    assert kill_switch_active() is False


# --- Signals: view-only -----------------------------------------------------------------------

SIGNALS = "/admin/trading/tradingsignal/"


def test_the_signal_list_renders_with_ist_times_filters_search_and_dates(staff):
    make_signal(candle_start=ist(2026, 11, 23, 10, 15))
    make_signal(
        index="BANKNIFTY", outcome="blocked", gate="max_trades", block_reason="8 trades today"
    )
    page = staff.get(SIGNALS).content.decode()
    assert "2026-11-23 10:15:00" in page
    assert "BANKNIFTY" in page
    blocked = staff.get(SIGNALS, {"outcome": "blocked"})
    assert [s.index for s in blocked.context["cl"].result_list] == ["BANKNIFTY"]
    found = staff.get(SIGNALS, {"q": "trades today"})
    assert [s.index for s in found.context["cl"].result_list] == ["BANKNIFTY"]
    by_day = staff.get(SIGNALS, {"candle_start__year": 2026, "candle_start__month": 11})
    assert by_day.status_code == 200
    assert len(by_day.context["cl"].result_list) == 2
    assert staff.get(SIGNALS, {"gate": "max_trades", "direction": "bullish"}).status_code == 200


def test_the_signal_page_shows_indicators_and_intent_as_pretty_json(staff):
    signal = make_signal()
    response = staff.get(f"{SIGNALS}{signal.pk}/change/")
    page = response.content.decode()
    assert response.status_code == 200
    assert "<pre>{\n  &quot;adx&quot;: 27.4," in page
    assert "&quot;limit_price&quot;: &quot;101.05&quot;" in page
    assert 'name="_save"' not in page  # view-only


def test_signals_cannot_be_added_edited_or_deleted_in_the_admin(staff):
    signal = make_signal()
    assert staff.get(f"{SIGNALS}add/").status_code == 403
    response = staff.post(f"{SIGNALS}{signal.pk}/change/", {"outcome": "intent", "gate": ""})
    assert response.status_code == 403
    assert staff.post(f"{SIGNALS}{signal.pk}/delete/", {"post": "yes"}).status_code == 403
    assert TradingSignal.objects.get().outcome == "intent"


# --- Positions: view-only ---------------------------------------------------------------------

POSITIONS = "/admin/trading/positiontracker/"


def test_the_position_list_and_page_render(staff):
    position = make_position(realized_pnl="12.50")
    make_position(66001, PositionStatus.EXITED, "BANKNIFTY")
    response = staff.get(POSITIONS)
    assert response.status_code == 200
    assert "NSE_FNO:55796" in response.content.decode()
    active = staff.get(POSITIONS, {"status": "active", "underlying": "NIFTY"})
    assert list(active.context["cl"].result_list) == [position]
    assert staff.get(POSITIONS, {"direction": "bullish"}).status_code == 200
    page = staff.get(f"{POSITIONS}{position.pk}/change/")
    assert page.status_code == 200
    assert "100.0500" in page.content.decode()
    assert 'name="_save"' not in page.content.decode()


def test_a_post_to_the_position_form_changes_nothing(staff):
    position = make_position()
    response = staff.post(
        f"{POSITIONS}{position.pk}/change/",
        {"status": "exited", "quantity": 1, "entry_price": "1", "realized_pnl": "99999"},
    )
    assert response.status_code == 403
    position.refresh_from_db()
    assert (position.status, position.quantity) == (PositionStatus.ACTIVE, 130)
    assert str(position.entry_price) == "100.0500"
    assert position.realized_pnl is None


def test_positions_cannot_be_added_or_deleted_in_the_admin(staff):
    position = make_position()
    assert staff.get(f"{POSITIONS}add/").status_code == 403
    assert staff.post(f"{POSITIONS}{position.pk}/delete/", {"post": "yes"}).status_code == 403
    changelist = staff.post(
        POSITIONS, {"action": "delete_selected", "_selected_action": [position.pk]}, follow=True
    )
    assert changelist.status_code == 200  # no such action: back to the list
    assert "delete_selected" not in changelist.content.decode()
    assert PositionTracker.objects.filter(pk=position.pk).exists()


# --- Watchlist: editable ----------------------------------------------------------------------

WATCHLIST = "/admin/trading/watchlistitem/"


def make_item(**columns: object) -> WatchlistItem:
    values = {"exchange_segment": "NSE_EQ", "security_id": 1333, "label": "HDFCBANK"}
    return WatchlistItem.objects.create(**{**values, **columns})


def test_the_watchlist_list_and_page_render(staff):
    item = make_item()
    response = staff.get(WATCHLIST)
    assert response.status_code == 200
    assert "NSE_EQ:1333" in response.content.decode()
    assert list(staff.get(WATCHLIST, {"q": "1333"}).context["cl"].result_list) == [item]
    assert staff.get(f"{WATCHLIST}{item.pk}/change/").status_code == 200


def test_active_and_mode_are_edited_from_the_list(staff):
    item = make_item()
    response = staff.post(
        WATCHLIST,
        {
            "form-TOTAL_FORMS": "1",
            "form-INITIAL_FORMS": "1",
            "form-0-id": str(item.pk),
            "form-0-mode": "quote",
            # an unchecked checkbox is absent from the POST: active becomes False
            "_save": "Save",
        },
    )
    assert response.status_code == 302
    item.refresh_from_db()
    assert (item.mode, item.active) == ("quote", False)


def test_the_form_validates_with_the_models_clean(staff):
    response = staff.post(
        f"{WATCHLIST}add/",
        {"exchange_segment": "NSE_XX", "security_id": "5", "label": "", "mode": "", "active": "on"},
    )
    assert response.status_code == 200
    assert "exchange_segment" in response.context["adminform"].form.errors
    response = staff.post(
        f"{WATCHLIST}add/",
        {"exchange_segment": "NSE_EQ", "security_id": "0", "label": "", "mode": "", "active": "on"},
    )
    assert "must be a positive Dhan security id" in response.content.decode()
    response = staff.post(
        f"{WATCHLIST}add/",
        {"exchange_segment": "NSE_EQ", "security_id": "2885", "label": "RELIANCE", "mode": "full"},
    )
    assert response.status_code == 302
    added = WatchlistItem.objects.get(security_id=2885)
    assert (added.key, added.mode, added.active) == ("NSE_EQ:2885", "full", False)


def test_an_override_beyond_what_a_decimal_holds_is_a_form_error_not_a_500(staff):
    response = add(staff, OVERRIDES_KEY, {"paper": {"seed_cash": "1e999999999"}})
    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == ["value"]
    assert "paper.seed_cash: expected an amount in rupees" in response.content.decode()
    assert not Setting.objects.filter(key=OVERRIDES_KEY).exists()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"note": "\\ud800"}', "lone surrogate"),
        ('{"note": "a\\u0000b"}', "NUL character"),
        ('{"a":' * 40 + "1" + "}" * 40, "nested deeper than"),
    ],
    ids=["lone surrogate", "NUL", "deep"],
)
def test_a_setting_value_the_database_cannot_store_is_a_form_error(staff, text, problem):
    response = staff.post(ADD, {"key": "notes.ops", "value": text})
    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == ["value"]
    assert problem in response.content.decode()
    assert not Setting.objects.filter(key="notes.ops").exists()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"risk": {"max_trades_per_day": ' + "9" * 4301 + "}}", "an integer of 4,301 digits"),
        ('{"risk": ' + "[" * 2000 + "]" * 2000 + "}", "nested deeper than 32 levels"),
        ('{"risk": {"max_trades_per_day": NaN}}', "NaN is not a number JSON can carry"),
        ('{"risk": {"max_trades_per_day": -Infinity}}', "-Infinity is not a number JSON can"),
        (
            '{"risk": {"max_trades_per_day": 5, "max_trades_per_day": 100}}',
            "duplicate key &#x27;max_trades_per_day&#x27; in an object",
        ),
        ('{"note": "' + "x" * 65536 + '"}', "larger than 65536 bytes (65548)"),
        ('{"risk": ', "Enter a valid JSON value"),
    ],
    ids=["4301 digits", "2000 deep", "NaN", "-Infinity", "duplicate key", "over 64 KiB", "cut"],
)
@pytest.mark.parametrize("key", [OVERRIDES_KEY, "notes.ops"])
def test_json_the_api_refuses_is_a_named_form_error_not_a_500_or_last_wins(
    staff, key, text, problem
):
    # A 4301-digit integer and 2000-deep nesting were 500s (json.loads raised ValueError and
    # RecursionError, Django's JSONField catches neither); a duplicate key silently kept the
    # last value (the API refuses it); there was no size limit (the API's is 64 KiB).
    response = staff.post(ADD, {"key": key, "value": text})
    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == ["value"]
    page = response.content.decode()
    assert problem in page
    assert not Setting.objects.filter(key=key).exists()


def test_json_the_api_refuses_is_refused_on_the_overrides_change_form_too(staff):
    Setting.put(OVERRIDES_KEY, {"risk": {"max_trades_per_day": 5}})
    change = f"{CHANGELIST}{Setting.objects.get(key=OVERRIDES_KEY).pk}/change/"
    shown = staff.get(change).context["adminform"].form["overrides_version"].value()
    for text in (
        '{"risk": {"max_trades_per_day": 5, "max_trades_per_day": 100}}',
        '{"risk": {"max_trades_per_day": ' + "9" * 4301 + "}}",
        '{"risk": ' + "[" * 2000 + "]" * 2000 + "}",
    ):
        response = staff.post(change, {"value": text, "overrides_version": shown})
        assert response.status_code == 200
        assert list(response.context["adminform"].form.errors) == ["value"]
    assert Setting.get(OVERRIDES_KEY) == {"risk": {"max_trades_per_day": 5}}


@pytest.mark.parametrize("text", ["{}", "[]"])
def test_an_empty_mapping_or_list_is_a_value(staff, text):
    # Django's JSONField counted {} and [] as empty and refused them as "required", while the
    # message said to use {}.
    assert staff.post(ADD, {"key": "notes.ops", "value": text}).status_code == 302
    assert Setting.get("notes.ops") == json.loads(text)


def test_an_empty_mapping_clears_the_overrides_in_the_admin(staff):
    Setting.put(OVERRIDES_KEY, {"strikes": {"offset": 1}})
    change = f"{CHANGELIST}{Setting.objects.get(key=OVERRIDES_KEY).pk}/change/"
    shown = staff.get(change).context["adminform"].form["overrides_version"].value()
    response = staff.post(change, {"value": "{}", "overrides_version": shown})
    assert response.status_code == 302
    assert Setting.get(OVERRIDES_KEY) == {}
    assert algo.algo_config().strikes.offset == load_algo_config(ALGO_YML).strikes.offset


@pytest.mark.parametrize("text", ["", "null"])
def test_an_empty_or_null_setting_value_is_a_form_error_not_a_500(staff, text):
    response = staff.post(ADD, {"key": "notes.ops", "value": text})
    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == ["value"]
    assert "Give a JSON value" in response.content.decode()
    assert not Setting.objects.filter(key="notes.ops").exists()


def test_an_overrides_edit_saved_meanwhile_elsewhere_is_not_overwritten(staff):
    Setting.put(OVERRIDES_KEY, {"strikes": {"offset": 1}})
    change = f"{CHANGELIST}{Setting.objects.get(key=OVERRIDES_KEY).pk}/change/"
    opened = staff.get(change).context["adminform"].form["overrides_version"].value()
    Setting.put(OVERRIDES_KEY, {"risk": {"max_trades_per_day": 6}})  # another operator saves
    response = staff.post(
        change, {"value": '{"strikes": {"offset": 2}}', "overrides_version": opened}
    )
    assert response.status_code == 200
    assert "changed since you opened this page" in response.content.decode()
    assert Setting.get(OVERRIDES_KEY) == {"risk": {"max_trades_per_day": 6}}
    current = staff.get(change).context["adminform"].form["overrides_version"].value()
    response = staff.post(
        change, {"value": '{"strikes": {"offset": 2}}', "overrides_version": current}
    )
    assert response.status_code == 302
    assert Setting.get(OVERRIDES_KEY) == {"strikes": {"offset": 2}}
