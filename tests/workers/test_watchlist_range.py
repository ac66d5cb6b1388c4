"""One watchlist entry outside the feed's u32 security-id field never takes the feed down: it
is refused where it is entered (environment: one line and exit 1 at start; admin and model
validation: a form error), and one that got into the database anyway is skipped and logged
while every other instrument stays subscribed."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from tests.algo_scalper.conftest import clean_environ
from tests.support.waiting import wait_until
from trading.dhan.feed import FeedClient
from trading.dhan.feed_codec import instrument_key
from trading.models import FEED_MAX_SECURITY_ID, WatchlistItem
from workers.subscriptions import MAX_SECURITY_ID

from .hubkit import INDICES, make_hub, memory_realtime, seed_watchlist, sim_subscriptions

ROOT = Path(__file__).resolve().parents[2]
TOO_BIG = 99_999_999_999  # fits the database's bigint, not the feed's u32


def test_both_limits_are_the_feed_codecs_u32():
    assert MAX_SECURITY_ID == FEED_MAX_SECURITY_ID == 2**32 - 1
    assert instrument_key("IDX_I", MAX_SECURITY_ID) == f"IDX_I:{MAX_SECURITY_ID}"
    with pytest.raises(ValueError, match="u32"):
        instrument_key("IDX_I", MAX_SECURITY_ID + 1)


@pytest.mark.parametrize("command", ["run_feed_hub", "run_trader"])
def test_an_out_of_range_env_entry_stops_the_worker_at_start_with_one_line(command, tmp_path):
    env = {
        **clean_environ(),
        "DJANGO_DEBUG": "true",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "DHANHQ_CLIENT_ID": "1000000001",
        "DHANHQ_ACCESS_TOKEN": "not-a-real-token",
        "DHANHQ_WS_WATCHLIST": "IDX_I:13,IDX_I:99999999999999999999",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    proc = subprocess.run(
        [sys.executable, "manage.py", command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "DHANHQ_WS_WATCHLIST" in line]
    assert len(errors) == 1, proc.stderr
    assert "entry 2 'IDX_I:99999999999999999999'" in errors[0]
    assert "above 4294967295" in errors[0]


@pytest.mark.django_db
@pytest.mark.parametrize("security_id", [TOO_BIG, 2**32])
def test_the_model_refuses_an_id_the_feed_cannot_carry(security_id):
    item = WatchlistItem(exchange_segment="IDX_I", security_id=security_id, label="bad")
    with pytest.raises(ValidationError) as excinfo:
        item.full_clean()
    assert list(excinfo.value.message_dict) == ["security_id"]
    assert "4294967295" in str(excinfo.value)
    WatchlistItem(exchange_segment="IDX_I", security_id=2**32 - 1).full_clean()


@pytest.mark.django_db
def test_the_admin_refuses_an_id_the_feed_cannot_carry(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("ops", "o@example.com", None))
    form = {"exchange_segment": "IDX_I", "security_id": str(TOO_BIG), "mode": "", "active": "on"}
    response = client.post("/admin/trading/watchlistitem/add/", form)
    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == ["security_id"]
    assert not WatchlistItem.objects.filter(security_id=TOO_BIG).exists()


def test_the_feed_client_skips_a_bad_key_and_subscribes_the_rest(caplog):
    client = FeedClient("ws://127.0.0.1:9/feed", "1000000001", lambda: "tok", lambda p: None)
    with caplog.at_level(logging.ERROR, logger="trading.dhan.feed"):
        client.subscribe(["IDX_I:13", f"IDX_I:{TOO_BIG}", "13", "IDX_I:25"], "ticker")
    assert set(client.subscriptions) == {"IDX_I:13", "IDX_I:25"}
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert f"IDX_I:{TOO_BIG}" in logged and "u32" in logged
    assert "'13'" in logged


@pytest.mark.django_db(transaction=True)
def test_a_bad_row_in_the_database_never_sinks_the_others(sim, running, caplog):
    # As saved before the model validated the range (or by a raw UPDATE).
    seed_watchlist()
    WatchlistItem.objects.create(exchange_segment="IDX_I", security_id=TOO_BIG, label="bad")
    hub = make_hub(sim, memory_realtime())
    with caplog.at_level(logging.ERROR, logger="workers.feed_hub"):
        run = running(hub)  # starts, subscribes, refreshes twice a second
        wait_until(lambda: set(INDICES) <= set(sim_subscriptions(sim)), "the indices subscribed")
        # A second bad row while running: skipped too; the first one is logged only once.
        WatchlistItem.objects.create(exchange_segment="IDX_I", security_id=2**32, label="bad2")
        wait_until(
            lambda: any("4294967296" in r.getMessage() for r in caplog.records),
            "the second bad row logged",
        )
    assert set(run.hub.subscribed) == set(INDICES)
    about_first = [r for r in caplog.records if str(TOO_BIG) in r.getMessage()]
    assert len(about_first) == 1
