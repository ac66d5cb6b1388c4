"""GET /ready: readiness (database, Redis in split mode, feed health, worker heartbeats)."""

from __future__ import annotations

import socket
import time

import pytest
from django.db import OperationalError
from django.test import override_settings
from django.urls import resolve, reverse

from algo_scalper import views
from workers.heartbeat import Heartbeat
from workers.realtime.kv_store import DbKeyValueStore, RedisKeyValueStore

TOKEN = "eyJhbGciOiJIUzUxMiJ9.eyJpc3MiOiJkaGFuIn0.c2lnbmF0dXJlc2lnbmF0dXJl"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthy(**overrides: object) -> dict:
    now = time.time()
    return {"state": "healthy", "since": now - 60, "reason": "", "at": now, **overrides}


@pytest.fixture
def embedded(settings) -> DbKeyValueStore:
    """Embedded mode: no Redis; health and heartbeats are Setting rows."""
    settings.REDIS_URL = None
    return DbKeyValueStore()


@pytest.mark.django_db
def test_ready_is_200_when_database_feed_and_workers_are_fine(client, embedded):
    embedded.put("health:feed", healthy(), ttl=10)
    Heartbeat(embedded, "feed_hub").beat("running", connected=1)
    Heartbeat(embedded, "pnl").beat("running", positions=0)

    response = client.get("/ready")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"]
    body = response.json()
    assert body["status"] == "ready"
    assert body["problems"] == []
    checks = body["checks"]
    assert checks["database"] == "ok"
    assert checks["redis"] == "not configured"
    assert checks["feed"]["state"] == "healthy"
    assert set(checks["workers"]) == {"feed_hub", "pnl"}
    assert checks["workers"]["pnl"]["fresh"] is True
    assert checks["workers"]["pnl"]["state"] == "running"


@pytest.mark.django_db
def test_a_stale_feed_is_still_ready_only_down_is_not(client, embedded):
    embedded.put("health:feed", healthy(state="stale", reason="NIFTY silent 6 s"), ttl=10)
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.json()["checks"]["feed"]["reason"] == "NIFTY silent 6 s"


@pytest.mark.django_db
def test_without_a_feed_health_record_it_is_not_ready(client, embedded):
    Heartbeat(embedded, "pnl").beat("running")

    response = client.get("/ready")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert body["checks"]["feed"] == {"state": "absent"}
    assert body["problems"] == ["feed: no health record (is the feed hub running?)"]


@pytest.mark.django_db
def test_an_expired_feed_health_record_counts_as_absent(client, embedded):
    embedded.clock = lambda: time.time() - 60  # written a minute ago with a 10 s TTL
    embedded.put("health:feed", healthy(), ttl=10)
    assert client.get("/ready").status_code == 503


@pytest.mark.django_db
def test_a_feed_that_is_down_makes_it_not_ready_with_the_reason(client, embedded):
    embedded.put("health:feed", healthy(state="down", reason="auth failure 807"), ttl=10)

    response = client.get("/ready")

    assert response.status_code == 503
    assert response.json()["problems"] == ["feed: down (auth failure 807)"]
    assert response.json()["checks"]["feed"]["state"] == "down"


@pytest.mark.django_db
def test_a_stale_heartbeat_makes_it_not_ready(client, embedded):
    embedded.put("health:feed", healthy(), ttl=10)
    Heartbeat(embedded, "feed_hub").beat("running")
    # Present but old: a writer whose clock is behind, or a store that did not expire it.
    Heartbeat(embedded, "pnl", ttl=15.0, clock=lambda: time.time() - 100).beat("running")

    response = client.get("/ready")

    assert response.status_code == 503
    body = response.json()
    assert body["problems"] == ["worker pnl: heartbeat is stale"]
    assert body["checks"]["workers"]["pnl"]["fresh"] is False
    assert body["checks"]["workers"]["pnl"]["age"] >= 99
    assert body["checks"]["workers"]["feed_hub"]["fresh"] is True


@pytest.mark.django_db
def test_a_worker_that_reported_stopped_makes_it_not_ready(client, embedded):
    embedded.put("health:feed", healthy(), ttl=10)
    Heartbeat(embedded, "run_trader").beat("stopped")

    response = client.get("/ready")

    assert response.status_code == 503
    assert response.json()["problems"] == ["worker run_trader: stopped"]


@pytest.mark.django_db
def test_an_unreachable_database_makes_it_not_ready_without_the_driver_message(
    client, embedded, monkeypatch
):
    def broken_cursor() -> object:
        raise OperationalError(
            'connection to "db.internal" failed: password "hunter2" rejected for postgres'
        )

    monkeypatch.setattr(views.connection, "cursor", broken_cursor)

    response = client.get("/ready")

    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["database"] == "error"
    assert "database: unreachable (OperationalError)" in body["problems"]
    assert "feed: health unknown (its store is unreachable)" in body["problems"]
    assert "hunter2" not in response.content.decode()
    assert "db.internal" not in response.content.decode()


@pytest.mark.django_db
def test_an_unreachable_redis_makes_it_not_ready_without_leaking_its_url(client):
    url = f"redis://:s3cretpass@127.0.0.1:{closed_port()}/0"
    with override_settings(REDIS_URL=url):
        response = client.get("/ready")

    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["redis"] == "error"
    assert body["checks"]["feed"] == {"state": "unknown"}
    assert body["problems"][0].startswith("redis: unreachable (")
    text = response.content.decode()
    assert "s3cretpass" not in text
    assert "127.0.0.1" not in text
    assert "redis://" not in text


@pytest.mark.django_db
def test_in_split_mode_feed_health_and_heartbeats_are_read_from_redis(
    client, redis_url, redis_client
):
    kv = RedisKeyValueStore(redis_client)  # the default prefix, as the workers write it
    kv.put("health:feed", healthy(), ttl=10)
    Heartbeat(kv, "pnl").beat("running")

    with override_settings(REDIS_URL=redis_url):
        response = client.get("/ready")

    assert response.status_code == 200, response.json()
    checks = response.json()["checks"]
    assert checks["redis"] == "ok"
    assert checks["feed"]["state"] == "healthy"
    assert list(checks["workers"]) == ["pnl"]


@pytest.mark.django_db
def test_no_url_token_or_secret_written_by_a_worker_reaches_the_body(client, embedded, settings):
    settings.SENSITIVE_VALUES = ("hunter2-secret",)
    reason = f"connect wss://api-feed.dhan.co?version=2&token={TOKEN} failed; pw hunter2-secret"
    embedded.put("health:feed", healthy(state="down", reason=reason), ttl=10)
    Heartbeat(embedded, "pnl").beat("running", last_error=f"token={TOKEN}")

    response = client.get("/ready")

    text = response.content.decode()
    assert response.status_code == 503
    for leaked in (TOKEN, "api-feed.dhan.co", "hunter2-secret", "token="):
        assert leaked not in text
    assert "last_error" not in text


def test_the_ready_url_name_resolves_to_the_view():
    assert reverse("ready") == "/ready"
    assert resolve("/ready").func is views.ready


@pytest.mark.django_db
def test_credentials_the_broker_refused_make_it_not_ready_naming_the_worker(client, embedded):
    from trading.dhan.errors import AuthFailure
    from workers.broker_auth import clear_auth_failure, report_auth_failure

    embedded.put("health:feed", healthy(), ttl=10)
    Heartbeat(embedded, "signal_engine").beat("running")
    error = AuthFailure(
        "Client ID or user generated access token is invalid or expired.",
        status=401,
        code="DH-901",
        secrets=(TOKEN,),
    )
    report_auth_failure(embedded, "signal_engine", "funds", error)

    response = client.get("/ready")

    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["broker_auth"] == "failed"
    assert body["problems"] == [
        "broker: authentication failed in signal_engine (funds): [HTTP 401 DH-901] Client ID "
        "or user generated access token is invalid or expired."
    ]
    # The worker's restart (with a new token) clears its own record.
    clear_auth_failure(embedded, "signal_engine")
    assert client.get("/ready").status_code == 200
