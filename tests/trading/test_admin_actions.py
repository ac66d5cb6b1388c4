"""The admin's other actions (the Setting and watchlist bulk delete, "Mark resolved") and the
watchlist's list save, with the row ids a POST names checked first: a malformed id is named
and nothing changes; an id with no row is named (Django passed them to ``pk__in``: a 500)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from trading.models import ReconciliationMismatch, Setting, WatchlistItem

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

BAD_IDS = ["abc", "", "-1", "9" * 30, "\u00b2"]
WATCHLIST = "/admin/trading/watchlistitem/"
MISMATCHES = "/admin/trading/reconciliationmismatch/"


@pytest.fixture
def staff(client: Client, django_user_model) -> Client:
    user = django_user_model.objects.create_superuser("ops", "ops@example.com", None)
    client.force_login(user)
    return client


def act(client: Client, url: str, action: str, ids: list[str], **extra: str) -> str:
    form = {"action": action, "_selected_action": ids, **extra}
    page = client.post(url, form, follow=True)
    assert page.status_code == 200
    return page.content.decode()


def make_mismatch() -> ReconciliationMismatch:
    return ReconciliationMismatch.objects.create(
        kind="broker_only",
        exchange_segment="NSE_FNO",
        security_id=60001,
        broker_quantity=75,
        database_quantity=0,
        detail="open at the broker, not in the journal",
        found_at=timezone.now(),
    )


def make_item() -> WatchlistItem:
    return WatchlistItem.objects.create(exchange_segment="NSE_EQ", security_id=1333, label="x")


@pytest.mark.parametrize("bad", BAD_IDS)
def test_the_setting_bulk_delete_names_a_malformed_id_and_deletes_nothing(staff, bad):
    Setting.put("notes.ops", {})
    row = str(Setting.objects.get(key="notes.ops").pk)
    for extra in ({}, {"post": "yes"}):
        text = act(staff, "/admin/trading/setting/", "delete_selected", [row, bad], **extra)
        assert "Nothing done: not a setting id: " in text
    assert Setting.get("notes.ops") == {}


@pytest.mark.parametrize("bad", BAD_IDS)
def test_mark_resolved_names_a_malformed_id_and_resolves_nothing(staff, bad):
    mismatch = make_mismatch()
    text = act(staff, MISMATCHES, "mark_resolved", [str(mismatch.pk), bad])
    assert "Nothing done: not a mismatch id: " in text
    mismatch.refresh_from_db()
    assert mismatch.resolved_at is None


def test_mark_resolved_names_an_id_with_no_mismatch(staff):
    mismatch = make_mismatch()
    text = act(staff, MISMATCHES, "mark_resolved", ["99999", str(mismatch.pk)])
    assert "No mismatch #99999" in text
    assert "1 mismatch(es) marked resolved" in text


@pytest.mark.parametrize("bad", BAD_IDS)
def test_the_watchlist_bulk_delete_names_a_malformed_id(staff, bad):
    item = make_item()
    text = act(staff, WATCHLIST, "delete_selected", [str(item.pk), bad], post="yes")
    assert "Nothing done: not a watchlist item id: " in text
    assert WatchlistItem.objects.filter(pk=item.pk).exists()


def list_save(client: Client, rows: list[tuple[str, str]], total: int | None = None) -> object:
    form = {
        "form-TOTAL_FORMS": str(len(rows) if total is None else total),
        "form-INITIAL_FORMS": str(len(rows)),
        "_save": "Save",
    }
    for i, (pk, mode) in enumerate(rows):
        form |= {f"form-{i}-id": pk, f"form-{i}-mode": mode, f"form-{i}-active": "on"}
    return client.post(WATCHLIST, form, follow=True)


@pytest.mark.parametrize(
    ("pk", "problem"),
    [
        ("999999", "No watchlist item #999999"),
        ("abc", "Nothing done: not a watchlist item id: &#x27;abc&#x27;"),
        ("9" * 30, "Nothing done: not a watchlist item id: "),
    ],
    ids=["deleted meanwhile", "abc", "30 digits"],
)
def test_a_list_save_naming_a_row_that_is_not_there_saves_nothing(staff, pk, problem):
    # The defect: a 500 (WatchlistItem.clean() raised an error on exchange_segment, a field
    # the list's form does not have, for the blank row Django built in its place).
    item = make_item()
    page = list_save(staff, [(str(item.pk), "full"), (pk, "full")])
    assert page.status_code == 200
    assert problem in page.content.decode()
    item.refresh_from_db()
    assert item.mode == ""


def test_a_list_save_with_more_forms_than_rows_saves_nothing(staff):
    item = make_item()
    page = list_save(staff, [(str(item.pk), "full")], total=2)
    assert "the list edits rows, it adds none" in page.content.decode()
    item.refresh_from_db()
    assert item.mode == ""
    assert not WatchlistItem.objects.filter(label="").exists()


# --- The watchlist's forms: WatchlistItem.clean() on the list's form, labels, ASCII ids -------


@pytest.mark.parametrize(
    ("columns", "problem"),
    [
        ({"exchange_segment": "NSE_XX"}, "exchange_segment: "),
        ({"label": "a\nb"}, "label: the label holds a control character (U+000A)"),
    ],
    ids=["bad segment", "bad label"],
)
def test_a_list_save_of_a_row_its_clean_refuses_is_a_row_error_not_a_500(staff, columns, problem):
    # clean() named exchange_segment or label, fields the list's form lacks: a ValueError.
    item = WatchlistItem.objects.create(
        **{"exchange_segment": "NSE_EQ", "security_id": 1333, "label": "x", **columns}
    )
    page = list_save(staff, [(str(item.pk), "full")])
    assert page.status_code == 200
    form = page.context["cl"].formset.forms[0]
    assert [e for e in form.non_field_errors() if e.startswith(problem)]
    item.refresh_from_db()
    assert item.mode == ""


def add_item(client: Client, **fields: str) -> object:
    form = {"exchange_segment": "NSE_EQ", "security_id": "2885", "label": "", "mode": ""}
    return client.post(f"{WATCHLIST}add/", {**form, **fields})


@pytest.mark.parametrize(
    "label", ["a\nb", "ok\x1b[31m", "bell\x07", "\u202egnp.exe", "zero\u200bwidth", "a\u2028b"]
)
def test_a_label_with_a_control_or_invisible_character_is_refused_named(staff, label):
    response = add_item(staff, label=label)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["label"]
    assert errors["label"][0].startswith("the label holds ")
    assert not WatchlistItem.objects.filter(security_id=2885).exists()


@pytest.mark.parametrize("security_id", ["\u0663", "\u0968\u0968", "\uff15"])
def test_a_security_id_in_other_digits_is_refused_named(staff, security_id):
    # int("٣") is 3: an Arabic-Indic digit was stored as security id 3.
    response = add_item(staff, security_id=security_id)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["security_id"] == [
        "write it in ASCII digits (0-9)"
    ]
    assert WatchlistItem.objects.filter(label="").count() == 0


def test_a_plain_label_and_ascii_id_are_added(staff):
    assert add_item(staff, label="RELIANCE (cash)", security_id=" 2885 ").status_code == 302
    assert WatchlistItem.objects.get(security_id=2885).label == "RELIANCE (cash)"


@pytest.mark.parametrize("term", ["9" * 30, "9" * 5000, "\u00b2"])
def test_the_watchlist_search_with_no_security_id_is_no_500(staff, term):
    make_item()
    response = staff.get(WATCHLIST, {"q": term})
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == []
