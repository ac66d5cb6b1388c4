"""Feed health state machine: every edge, and transitions logged once."""

from __future__ import annotations

import logging

import pytest

from workers.health import DOWN, HEALTHY, STALE, FeedHealth, FeedObservation

INDICES = ("IDX_I:13", "IDX_I:25")


def obs(now: float, **overrides: object) -> FeedObservation:
    values: dict[str, object] = {
        "now": now,
        "client_state": "running",
        "connections": 1,
        "connected": 1,
        "market_open": True,
        "last_index_tick": {key: now - 0.5 for key in INDICES},
    }
    values.update(overrides)
    return FeedObservation(**values)  # type: ignore[arg-type]


def test_it_is_healthy_when_connected_and_every_index_ticks():
    health = FeedHealth()
    health.observe(obs(100.0))
    assert health.state == HEALTHY


@pytest.mark.parametrize(
    ("overrides", "state", "reason"),
    [
        ({"connected": 0, "connections": 2}, STALE, "2 of 2 connections down"),
        ({"connected": 1, "connections": 2}, STALE, "1 of 2 connections down"),
        ({"store_ok": False, "store_error": "refused"}, STALE, "tick store unavailable (refused)"),
        ({"last_index_tick": {"IDX_I:13": 94.0, "IDX_I:25": 99.5}}, STALE, "IDX_I:13: no tick"),
        ({"client_state": "failed"}, DOWN, "feed client failed"),
        ({"client_state": "stopped"}, DOWN, "feed client stopped"),
    ],
)
def test_each_condition_gives_its_state_and_names_the_reason(overrides, state, reason):
    health = FeedHealth(stale_after=5.0)
    health.observe(obs(100.0, **overrides))
    assert health.state == state
    assert reason in health.reason


def test_a_quiet_index_is_not_stale_outside_market_hours():
    health = FeedHealth(stale_after=5.0)
    health.observe(obs(100.0, market_open=False, last_index_tick={"IDX_I:13": 10.0}))
    assert health.state == HEALTHY


def test_an_index_that_never_ticked_gets_stale_after_the_threshold_from_the_start():
    health = FeedHealth(stale_after=5.0)
    health.observe(obs(100.0, last_index_tick={"IDX_I:13": None}))
    assert health.state == HEALTHY  # just started: not yet
    health.observe(obs(105.5, last_index_tick={"IDX_I:13": None}))
    assert health.state == STALE
    assert "IDX_I:13: no tick yet" in health.reason


def test_no_connection_for_long_enough_is_down_then_recovers_to_healthy():
    health = FeedHealth(stale_after=5.0, down_after=30.0)
    health.observe(obs(100.0))
    health.observe(obs(101.0, connected=0))
    assert health.state == STALE
    health.observe(obs(131.0, connected=0))
    assert health.state == DOWN
    assert "no feed connection for 30 s" in health.reason
    health.observe(obs(132.0))
    assert health.state == HEALTHY


def test_transitions_are_logged_once_on_entry_and_once_on_recovery(caplog):
    health = FeedHealth(stale_after=5.0)
    caplog.set_level(logging.INFO, logger="workers.health")
    health.observe(obs(100.0))
    caplog.clear()
    for t in range(101, 110):
        health.observe(obs(float(t), connected=0))
    health.observe(obs(110.0))
    health.observe(obs(111.0))
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert messages[0].startswith("feed STALE: 1 of 1 connections down")
    assert messages[1].startswith("feed healthy again after 9.0 s stale")


def test_observe_returns_the_transition_and_the_record_describes_the_state():
    health = FeedHealth()
    first = health.observe(obs(100.0))
    assert first is not None and (first.previous, first.state) == (STALE, HEALTHY)
    assert health.observe(obs(101.0)) is None
    record = health.as_record(101.0)
    assert record == {"state": HEALTHY, "since": 100.0, "reason": health.reason, "at": 101.0}


def test_a_drop_shorter_than_the_check_interval_still_shows_as_stale_once():
    health = FeedHealth()
    health.observe(obs(100.0))
    health.observe(obs(100.25, reconnected=1))  # connected again by the time we looked
    assert health.state == STALE
    assert "1 feed reconnection(s) since the last check" in health.reason
    health.observe(obs(100.5))
    assert health.state == HEALTHY
