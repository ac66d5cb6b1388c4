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
