"""Wrong passwords are counted per (user name, client address) on every way in that takes a
password, the admin's login page and the API's HTTP Basic, with one allowance between them
(trading/login_throttle.py)."""

from __future__ import annotations

import base64

import pytest
from django.core.cache import cache
from django.test import Client

from trading.login_throttle import MAX_FAILURES

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"


@pytest.fixture(autouse=True)
def fresh_counts():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def operators(django_user_model) -> None:
    django_user_model.objects.create_superuser("ops", "o@example.com", "right-password-1")
    django_user_model.objects.create_superuser("desk", "d@example.com", "right-password-2")


def login(client: Client, name: str, password: str, address: str = "127.0.0.1") -> object:
    return client.post(LOGIN, {"username": name, "password": password}, REMOTE_ADDR=address)


def test_the_admin_login_refuses_a_pair_that_used_up_its_wrong_passwords(operators):
    client = Client()
    for _ in range(MAX_FAILURES):
        assert login(client, "ops", "guess").status_code == 200  # the form again
    refused = login(client, "ops", "right-password-1")
    assert refused.status_code == 200
    assert "wrong passwords for this user from this address" in refused.content.decode()
    assert "_auth_user_id" not in client.session
    # Another user from that address, and that user from another address, log in.
    assert login(Client(), "desk", "right-password-2").status_code == 302
    assert login(Client(), "ops", "right-password-1", address="10.0.0.9").status_code == 302


def test_the_admin_login_and_the_api_share_one_allowance(operators):
    client = Client()
    for _ in range(MAX_FAILURES):
        login(client, "ops", "guess")
    token = base64.b64encode(b"ops:right-password-1").decode()
    answer = Client().get("/api/switches/", HTTP_AUTHORIZATION=f"Basic {token}")
    assert answer.status_code == 429


def test_a_right_password_before_the_limit_logs_in(operators):
    client = Client()
    for _ in range(MAX_FAILURES - 1):
        login(client, "ops", "guess")
    assert login(client, "ops", "right-password-1").status_code == 302
