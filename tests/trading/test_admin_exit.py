"""The positions admin's "Exit the selected positions": a manual exit claimed like any exit
(the order manager sends it), active positions only, the change permission on positions."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from tests.support.rows import make_position
from trading.models import PositionTracker

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/trading/positiontracker/"


def login(client: Client, django_user_model, *codenames: str) -> Client:
    user = django_user_model.objects.create_user("ops", "ops@example.com", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return client


def exit_selected(client: Client, *pks: int) -> object:
    return client.post(
        CHANGELIST,
        {"action": "exit_positions", "_selected_action": [str(pk) for pk in pks]},
        follow=True,
    )


def test_it_claims_the_active_positions_and_names_the_others(client, django_user_model):
    staff = login(client, django_user_model, "view_positiontracker", "change_positiontracker")
    active = make_position()
    done = make_position(status="exited")
    page = exit_selected(staff, active.pk, done.pk)
    text = page.content.decode()
    assert "1 position(s) claimed for a manual exit" in text
    assert f"#{done.pk} (exited)" in text
    active.refresh_from_db()
    assert (active.status, active.exit_type) == ("exiting", "MANUAL")
    assert active.exit_reason == "manual exit by ops (admin)"
    assert PositionTracker.objects.get(pk=done.pk).status == "exited"


def test_without_the_change_permission_the_action_is_not_offered(client, django_user_model):
    viewer = login(client, django_user_model, "view_positiontracker")
    position = make_position()
    page = viewer.get(CHANGELIST)
    assert page.status_code == 200 and "exit_positions" not in page.content.decode()
    exit_selected(viewer, position.pk)
    position.refresh_from_db()
    assert position.status == "active"


@pytest.mark.embedded  # the 30-digit id was a 500 on SQLite only
@pytest.mark.parametrize("bad", ["abc", "", "-1", "0", "9" * 30, "\u0663", "1.0"])
def test_a_malformed_id_is_named_and_nothing_is_exited(client, django_user_model, bad):
    # Django passes the ids straight to pk__in: "abc" or "" was a 500 (ValueError), 30
    # digits one on SQLite (OverflowError).
    staff = login(client, django_user_model, "view_positiontracker", "change_positiontracker")
    position = make_position()
    page = exit_selected_raw(staff, [str(position.pk), bad])
    assert page.status_code == 200
    text = page.content.decode()
    assert "Nothing done: not a position id: " in text
    assert "claimed" not in text
    position.refresh_from_db()
    assert position.status == "active"


@pytest.mark.embedded
def test_an_id_with_no_position_is_named_and_the_others_are_exited(client, django_user_model):
    staff = login(client, django_user_model, "view_positiontracker", "change_positiontracker")
    position = make_position()
    page = exit_selected_raw(staff, ["99999"])
    assert "No position #99999" in page.content.decode()  # the action said nothing at all
    page = exit_selected_raw(staff, ["99999", str(position.pk)])
    text = page.content.decode()
    assert "No position #99999" in text
    assert "1 position(s) claimed for a manual exit" in text
    position.refresh_from_db()
    assert position.status == "exiting"


def exit_selected_raw(client: Client, ids: list[str]) -> object:
    return client.post(
        CHANGELIST, {"action": "exit_positions", "_selected_action": ids}, follow=True
    )
