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


@pytest.fixture
def shared(monkeypatch, settings):
    """The counts shared through Redis (REDIS_URL set, as in split mode), under a key prefix
    of this test's own; the module's client and pause start afresh."""
    import secrets

    from trading import login_throttle

    monkeypatch.setattr(login_throttle, "SHARED_PREFIX", f"test-{secrets.token_hex(4)}:")
    monkeypatch.setattr(login_throttle, "_client", None)
    monkeypatch.setattr(login_throttle, "_paused_until", 0.0)
    return login_throttle


def test_with_redis_every_web_process_counts_against_one_allowance(
    operators, shared, settings, redis_url
):
    """A second web process has a cache of its own (emptied here): the pair that used up its
    wrong passwords on the first is refused there too, from the count in Redis, which ends
    with the window."""
    import redis

    settings.REDIS_URL = redis_url
    client = Client()
    for _ in range(MAX_FAILURES):
        login(client, "ops", "guess")
    cache.clear()  # what another web process holds
    refused = login(Client(), "ops", "right-password-1")
    assert "wrong passwords for this user from this address" in refused.content.decode()
    assert login(Client(), "desk", "right-password-2").status_code == 302
    counted = redis.Redis.from_url(redis_url)
    keys = counted.keys(f"{shared.SHARED_PREFIX}*")
    assert len(keys) == 1
    assert int(counted.get(keys[0])) == MAX_FAILURES
    assert 0 < counted.ttl(keys[0]) <= shared.WINDOW
    counted.delete(*keys)
    counted.close()


@pytest.mark.parametrize("down", ["refused", "silent"])
def test_with_redis_down_logins_go_on_and_each_process_counts_alone(
    operators, shared, settings, caplog, down
):
    """Redis refusing connections, or accepting them and never answering: a login is decided
    on the process's own count (the right password logs in, the allowance still holds), Redis
    is left alone for a while after the first failure (one warning, not one a login)."""
    import logging
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    if down == "silent":
        listener.listen(16)  # connects, never answers
    else:
        listener.close()  # nothing listens: refused
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    try:
        with caplog.at_level(logging.WARNING, logger="trading.login_throttle"):
            assert login(Client(), "desk", "right-password-2").status_code == 302
            client = Client()
            for _ in range(MAX_FAILURES):
                login(client, "ops", "guess")
            refused = login(client, "ops", "right-password-1")
    finally:
        listener.close()
    assert "wrong passwords for this user from this address" in refused.content.decode()
    warnings = [r for r in caplog.records if r.name == "trading.login_throttle"]
    assert len(warnings) == 1
    assert "Redis did not answer" in warnings[0].getMessage()
