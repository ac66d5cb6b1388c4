"""GET /healthz: liveness for Docker, compose and Railway; no database, no auth."""

from __future__ import annotations

import pytest
from django.urls import resolve, reverse

from algo_scalper import views


def test_healthz_answers_200_with_status_ok_without_login_or_database(client):
    # No `db` fixture here: pytest-django fails any query the view makes. A liveness probe must
    # not go down with the database, or the platform restarts a web process that is fine.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_healthz_answers_the_host_names_the_container_healthchecks_use(client, host):
    assert client.get("/healthz", HTTP_HOST=host).status_code == 200


def test_the_healthz_url_name_resolves_to_the_view():
    assert reverse("healthz") == "/healthz"
    assert resolve("/healthz").func is views.healthz
