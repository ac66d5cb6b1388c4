"""Credentials the broker refuses are a state, not a retry storm (real processes, simulator).

Each worker is pointed at a separately started simulator with only its printed settings, as a
deployment would be. With every REST call answering DH-901, or the feed's token expiring
(807), the worker that meets it records ``broker:auth:{worker}``, /ready answers 503 naming
it, and the process stops with one line and exit code 1 after a handful of calls, instead of
restarting (run_trader) or retrying (candle seeding) with the dead token.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import time as dtime
from pathlib import Path

import pytest
from django.test import override_settings

from tests.support.market import away_from_wall
from trading.dhan.sim.server import SimConfig, Simulator

ROOT = Path(__file__).resolve().parents[2]
REFUSED = "the broker refused the credentials"


@pytest.fixture
def sim():
    day, start = away_from_wall(dtime(11, 0), dtime(14, 0))
    simulator = Simulator(
        SimConfig(
            seed=2, speed=60.0, start=start, trading_date=day, strikes_each_side=2, weeklies=1
        )
    ).start()
    yield simulator
    simulator.stop()


def env_for(tmp_path: Path, sim: Simulator, redis_url: str, **extra: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    environ.update(dict(line.split("=", 1) for line in sim.settings_lines()))
    environ.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'auth.sqlite3'}",
        REDIS_URL=redis_url,
        DJANGO_DEBUG="true",
        **extra,
    )
    return environ


def manage(env: dict[str, str], *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def ready(redis_url: str, client) -> dict:
    with override_settings(REDIS_URL=redis_url):
        response = client.get("/ready")
    assert response.status_code == 503
    return response.json()


@pytest.mark.django_db
def test_rest_refusing_the_token_stops_run_trader_once_and_ready_names_it(
    tmp_path, sim, redis_url, redis_client, client
):
    env = env_for(tmp_path, sim, redis_url)
    assert manage(env, "migrate", "-v0").returncode == 0
    sim.faults.rest_error, sim.faults.rest_error_share = "DH-901", 1.0
    started = time.monotonic()
    done = manage(env, "run_trader")
    assert done.returncode == 1, done.stderr
    assert time.monotonic() - started < 60
    line = last_line(done.stderr)
    assert line.startswith("CommandError: feed_hub: feed_hub (candle seeding): " + REFUSED), line
    assert "DH-901" in line
    assert "restarting in" not in done.stderr  # never restarted with the dead token
    assert sim.stats["rest_calls"] <= 3, sim.stats
    body = ready(redis_url, client)
    assert body["checks"]["broker_auth"] == "failed"
    assert any(
        p.startswith("broker: authentication failed in feed_hub (candle seeding):")
        for p in body["problems"]
    ), body["problems"]


@pytest.mark.django_db
def test_an_expired_feed_token_stops_run_trader_instead_of_restarting_the_hub(
    tmp_path, sim, redis_url, redis_client, client
):
    env = env_for(tmp_path, sim, redis_url)
    assert manage(env, "migrate", "-v0").returncode == 0
    sim.faults.token_expires_at = time.time() + 6  # the feed answers 807 after that
    done = manage(env, "run_trader")
    assert done.returncode == 1, done.stderr
    line = last_line(done.stderr)
    assert line.startswith("CommandError: feed_hub: feed_hub (market feed): " + REFUSED), line
    assert "807" in line
    assert "restarting in" not in done.stderr
    assert sim.stats["feed_connections_opened"] <= 2, sim.stats
    body = ready(redis_url, client)
    assert any("authentication failed in feed_hub (market feed)" in p for p in body["problems"])


def test_the_split_hub_stops_on_a_refused_token_instead_of_seeding_every_second(
    tmp_path, sim, redis_url, redis_client
):
    env = env_for(tmp_path, sim, redis_url)
    assert manage(env, "migrate", "-v0").returncode == 0
    sim.faults.rest_error, sim.faults.rest_error_share = "DH-901", 1.0
    done = manage(env, "run_feed_hub")
    assert done.returncode == 1, done.stderr
    assert last_line(done.stderr).startswith("CommandError: feed_hub (candle seeding): " + REFUSED)
    assert sim.stats["rest_calls"] == 1, sim.stats  # the first refusal ends it


def test_the_split_engine_stops_on_a_refused_token(tmp_path, sim, redis_url, redis_client):
    env = env_for(tmp_path, sim, redis_url)
    assert manage(env, "migrate", "-v0").returncode == 0
    imported = manage(env, "import_instruments", "--url", sim.scrip_master_url)
    assert imported.returncode == 0, imported.stderr
    hub = subprocess.Popen(
        [sys.executable, "manage.py", "run_feed_hub", "--no-seed"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        sim.faults.rest_error, sim.faults.rest_error_share = "DH-901", 1.0
        done = manage(env, "run_signal_engine")
    finally:
        hub.terminate()
        hub.wait(10)
    assert done.returncode == 1, done.stderr
    line = last_line(done.stderr)
    assert line.startswith("CommandError: signal_engine (history): " + REFUSED), line
    assert sim.stats["rest_calls"] <= 2, sim.stats


def test_run_trader_without_credentials_stops_at_start_with_one_line(tmp_path, sim, redis_url):
    env = env_for(tmp_path, sim, redis_url, DHANHQ_CLIENT_ID="", DHANHQ_ACCESS_TOKEN="")
    for name in ("CLIENT_ID", "ACCESS_TOKEN"):
        env.pop(name, None)
    assert manage(env, "migrate", "-v0").returncode == 0
    done = manage(env, "run_trader", timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "CommandError: DHANHQ_CLIENT_ID and DHANHQ_ACCESS_TOKEN not set: run_trader needs "
        "Dhan credentials (or --sim for the built-in simulator)"
    )
