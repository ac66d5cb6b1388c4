"""POST /api/positions/{id}/exit/: the manual exit claims the position once (MANUAL), 409 for
a position that is not active, the same permission as the admin's, bad bodies a 400."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from tests.support.rows import make_position
from trading.models import PositionTracker

pytestmark = pytest.mark.django_db


def exit_url(pk: int) -> str:
    return f"/api/positions/{pk}/exit/"


def test_a_manual_exit_claims_the_position_for_the_order_manager(admin_api):
    position = make_position()
    answer = admin_api.post(exit_url(position.pk), {"reason": "news"}, format="json")
    assert answer.status_code == 202, answer.content
    assert answer.json()["status"] == "exiting"
    position.refresh_from_db()
    assert position.status == "exiting" and position.exit_type == "MANUAL"
    assert position.exit_reason == "manual exit by ops: news"


def test_exiting_a_position_already_exiting_answers_409_and_changes_nothing(admin_api):
    position = make_position()
    assert admin_api.post(exit_url(position.pk), {}, format="json").status_code == 202
    again = admin_api.post(exit_url(position.pk), {"reason": "twice"}, format="json")
    assert again.status_code == 409
    assert "is exiting, not active" in again.json()["detail"]
    assert PositionTracker.objects.get().exit_reason == "manual exit by ops"


@pytest.mark.parametrize("status", ["pending", "exited", "cancelled"])
def test_a_position_that_is_not_active_answers_409(admin_api, status):
    position = make_position(status=status)
    assert admin_api.post(exit_url(position.pk), {}, format="json").status_code == 409
    position.refresh_from_db()
    assert position.status == status and position.exit_type == ""


def test_an_unknown_position_answers_404(admin_api):
    assert admin_api.post(exit_url(424242), {}, format="json").status_code == 404


@pytest.mark.parametrize(
    "body",
    ['{"reason": 5}', '{"reason": "x", "quantity": 65}', "[1]", '{"reason": "' + "y" * 201 + '"}'],
)
def test_a_bad_body_is_a_400_and_the_position_stays_active(admin_api, body):
    position = make_position()
    answer = admin_api.post(exit_url(position.pk), body, content_type="application/json")
    assert answer.status_code == 400, answer.content
    position.refresh_from_db()
    assert position.status == "active"


@pytest.mark.parametrize(
    ("codenames", "allowed"),
    [((), False), (("view_positiontracker",), False), (("change_positiontracker",), True)],
)
def test_it_needs_the_change_permission_on_positions_as_the_admin(
    django_user_model, codenames, allowed
):
    user = django_user_model.objects.create_user("op", "op@example.com", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    api = APIClient()
    api.force_authenticate(user)
    position = make_position()
    answer = api.post(exit_url(position.pk), {}, format="json")
    assert answer.status_code == (202 if allowed else 403)
    position.refresh_from_db()
    assert position.status == ("exiting" if allowed else "active")
