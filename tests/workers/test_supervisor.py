"""Supervisor (restart, backoff, stop, signals) and ScheduledJobs (beat in-process).

Backoff sleeps are replaced by a recorder and the "healthy run" clock by a counter, so no test
waits out a real backoff; the few real waits are polls of a fraction of a second.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from celery import Celery
from django.conf import settings

from tests.support.waiting import wait_until
from workers.supervisor import ScheduledJobs, Supervisor

IST = ZoneInfo("Asia/Kolkata")


class Top:
    """An rng whose jitter factor is always the top of its range: exact delays."""

    def uniform(self, a: float, b: float) -> float:
        return b


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Step:
    """One run of a scripted component."""

    def __init__(self, action: Any, n: int, clock: Clock, blocked: threading.Event) -> None:
        self.name = "scripted"
        self.action, self.n, self.clock, self.blocked = action, n, clock, blocked

    def run(self, stop: threading.Event) -> None:
        if self.action == "raise":
            raise RuntimeError(f"boom {self.n}")
        if isinstance(self.action, tuple):  # ("healthy", seconds): ran that long, then crashed
            self.clock.t += self.action[1]
            raise RuntimeError(f"boom {self.n} after a healthy run")
        if self.action == "return":
            return
        self.blocked.set()
        stop.wait()


def scripted(steps: list[Any], clock: Clock, blocked: threading.Event) -> Callable[[], Step]:
    script = iter(enumerate(steps, 1))

    def factory() -> Step:
        n, action = next(script)
        return Step(action, n, clock, blocked)

    return factory


@pytest.fixture
def supervisors() -> Iterator[list[Supervisor]]:
    made: list[Supervisor] = []
    yield made
    for sup in made:
        sup.stop(timeout=2.0)


def recording_supervisor(
    supervisors: list[Supervisor], delays: list[float], **kwargs: Any
) -> Supervisor:
    kwargs.setdefault("rng", Top())
    sup = Supervisor(sleep=delays.append, **kwargs)
    supervisors.append(sup)
    return sup


def test_a_crashing_component_restarts_with_a_growing_backoff_reset_by_a_healthy_run(supervisors):
    delays: list[float] = []
    clock, blocked = Clock(), threading.Event()
    sup = recording_supervisor(supervisors, delays, clock=clock, healthy_after=60.0)
    steps = ["raise", "raise", "raise", ("healthy", 61.0), "raise", "block"]
    sup.add("engine", scripted(steps, clock, blocked))
    sup.start()
    assert blocked.wait(5)

    assert delays == [1.0, 2.0, 4.0, 1.0, 2.0]
    status = sup.status()["engine"]
    assert status["state"] == "running"
    assert status["restarts"] == 5
    assert status["last_error"] == "RuntimeError: boom 5"
    assert status["started_at"] is not None


def test_the_backoff_is_capped(supervisors):
    delays: list[float] = []
    clock, blocked = Clock(), threading.Event()
    sup = recording_supervisor(supervisors, delays, clock=clock)
    sup.add("engine", scripted(["raise"] * 7 + ["block"], clock, blocked))
    sup.start()
    assert blocked.wait(5)

    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_the_jitter_shortens_a_delay_by_at_most_a_fifth(supervisors):
    delays: list[float] = []
    clock, blocked = Clock(), threading.Event()
    sup = recording_supervisor(supervisors, delays, clock=clock, rng=random.Random(7))
    sup.add("engine", scripted(["raise"] * 7 + ["block"], clock, blocked))
    sup.start()
    assert blocked.wait(5)

    for delay, raw in zip(delays, [1, 2, 4, 8, 16, 30, 30], strict=True):
        assert 0.8 * raw <= delay <= raw


def test_a_component_whose_run_returns_early_is_restarted(supervisors):
    delays: list[float] = []
    clock, blocked = Clock(), threading.Event()
    sup = recording_supervisor(supervisors, delays, clock=clock)
    sup.add("engine", scripted(["return", "block"], clock, blocked))
    sup.start()
    assert blocked.wait(5)

    status = sup.status()["engine"]
    assert status["restarts"] == 1
    assert status["last_error"] == "run() returned without being stopped"
    assert delays == [1.0]


def test_a_factory_that_raises_counts_as_a_crash(supervisors):
    delays: list[float] = []
    clock, blocked = Clock(), threading.Event()
    calls = []
    inner = scripted(["block"], clock, blocked)

    def factory() -> Step:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("database not ready\nsecond line")
        return inner()

    sup = recording_supervisor(supervisors, delays, clock=clock)
    sup.add("engine", factory)
    sup.start()
    assert blocked.wait(5)

    assert sup.status()["engine"]["last_error"] == "ConnectionError: database not ready"


class Misconfigured(Exception):
    """Stands for a fault no restart can heal (a missing setting, refused credentials)."""


def test_a_fatal_error_is_not_restarted_and_stops_every_component(supervisors, caplog):
    delays: list[float] = []
    clock, blocked = Clock(), threading.Event()
    sup = recording_supervisor(supervisors, delays, clock=clock, fatal=(Misconfigured,))
    sup.add("engine", scripted(["block"], clock, blocked))

    def refused() -> Step:
        raise Misconfigured("DHANHQ_CLIENT_ID is not set\n(more detail)")

    sup.add("feed_hub", refused)
    with caplog.at_level(logging.CRITICAL):
        code = sup.run_forever(install_signals=False, stop_timeout=2.0)

    assert code == 1
    assert delays == []  # no backoff, no restart
    assert sup.fatal_error == "feed_hub: DHANHQ_CLIENT_ID is not set"
    status = sup.status()
    assert status["feed_hub"]["state"] == "failed" and status["feed_hub"]["restarts"] == 0
    assert status["engine"]["state"] == "stopped"  # stopped with the rest, not left running
    assert "component feed_hub cannot run: DHANHQ_CLIENT_ID is not set" in caplog.text


def test_a_crash_is_logged_with_its_traceback_and_critical_components_log_critical(
    supervisors, caplog
):
    delays: list[float] = []
    clock = Clock()
    plain_blocked, critical_blocked = threading.Event(), threading.Event()
    sup = recording_supervisor(supervisors, delays, clock=clock)
    sup.add("plain", scripted(["raise", "block"], clock, plain_blocked))
    sup.add("vital", scripted(["raise", "block"], clock, critical_blocked), critical=True)
    with caplog.at_level(logging.INFO, logger="workers.supervisor"):
        sup.start()
        assert plain_blocked.wait(5) and critical_blocked.wait(5)

    crashes = {r.getMessage().split()[1]: r for r in caplog.records if "crashed" in r.message}
    assert crashes["plain"].levelno == logging.ERROR
    assert crashes["vital"].levelno == logging.CRITICAL
    assert crashes["vital"].exc_info is not None
    assert sup.status()["vital"]["critical"] is True


def test_stop_interrupts_a_component_in_backoff():
    class AlwaysCrashes:
        name = "crashy"

        def run(self, stop: threading.Event) -> None:
            raise RuntimeError("down")

    # An hour of backoff, waited on the real stop Event: only an interruptible wait lets
    # stop() succeed within its timeout.
    sup = Supervisor(backoff_base=3600.0, backoff_cap=3600.0)
    sup.add("crashy", AlwaysCrashes)
    sup.start()
    wait_until(lambda: sup.status()["crashy"]["state"] == "backoff", "crashy in backoff")

    assert sup.stop(timeout=5.0) is True
    assert sup.status()["crashy"]["state"] == "stopped"


def test_a_component_that_ignores_stop_is_reported_without_hanging(caplog):
    release = threading.Event()
    running = threading.Event()

    class Stubborn:
        name = "stubborn"

        def run(self, stop: threading.Event) -> None:
            running.set()
            release.wait(30)  # never looks at stop

    class Polite:
        name = "polite"

        def run(self, stop: threading.Event) -> None:
            stop.wait()

    sup = Supervisor()
    sup.add("stubborn", Stubborn)
    sup.add("polite", Polite)
    sup.start()
    assert running.wait(5)
    try:
        with caplog.at_level(logging.ERROR, logger="workers.supervisor"):
            assert sup.stop(timeout=0.1) is False
        assert "component stubborn did not stop" in caplog.text
        assert "polite" not in caplog.text
        assert sup.status()["polite"]["state"] == "stopped"
    finally:
        release.set()
    assert sup.stop(timeout=5.0) is True


def test_a_component_name_is_registered_once():
    sup = Supervisor()
    sup.add("a", lambda: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="already registered"):
        sup.add("a", lambda: None)  # type: ignore[arg-type,return-value]


def test_a_component_added_after_start_is_started(supervisors):
    started = threading.Event()

    class Late:
        name = "late"

        def run(self, stop: threading.Event) -> None:
            started.set()
            stop.wait()

    sup = Supervisor()
    supervisors.append(sup)
    sup.start()
    sup.add("late", Late)
    assert started.wait(5)


class Waiter:
    """Blocks until stopped; tells the test when it runs."""

    name = "waiter"

    def __init__(self, running: threading.Event) -> None:
        self.running = running

    def run(self, stop: threading.Event) -> None:
        self.running.set()
        stop.wait()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_run_forever_stops_cleanly_on_a_signal_and_restores_the_handlers(signum):
    assert threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signum)
    running = threading.Event()
    sup = Supervisor()
    sup.add("waiter", lambda: Waiter(running))

    # The component runs only after run_forever installed its handlers, so the signal can
    # never reach pytest's own (default) handler.
    def send() -> None:
        if running.wait(5):
            os.kill(os.getpid(), signum)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    assert sup.run_forever() == 0
    sender.join(5)

    assert sup.status()["waiter"]["state"] == "stopped"
    assert signal.getsignal(signum) is before


def test_run_forever_publishes_status_at_each_heartbeat_and_stops_when_told():
    running = threading.Event()
    published: list[dict[str, dict[str, Any]]] = []
    sup = Supervisor(heartbeat_interval=0.01, on_status=published.append)
    sup.add("waiter", lambda: Waiter(running))

    def stop_after_two_beats() -> None:
        wait_until(lambda: len(published) >= 2 and running.is_set(), "two status beats")
        sup.stop(timeout=5.0)

    stopper = threading.Thread(target=stop_after_two_beats, daemon=True)
    stopper.start()
    assert sup.run_forever(install_signals=False) == 0
    stopper.join(5)

    assert set(published[-1]) == {"waiter"}
    assert set(published[-1]["waiter"]) >= {"state", "restarts", "last_error", "started_at"}


def test_a_failing_status_hook_does_not_stop_run_forever(caplog):
    running = threading.Event()
    beats: list[int] = []

    def hook(status: dict[str, dict[str, Any]]) -> None:
        beats.append(1)
        raise RuntimeError("kv down")

    sup = Supervisor(heartbeat_interval=0.01, on_status=hook)
    sup.add("waiter", lambda: Waiter(running))
    stopper = threading.Thread(
        target=lambda: (wait_until(lambda: len(beats) >= 2, "two beats"), sup.stop(timeout=5.0)),
        daemon=True,
    )
    stopper.start()
    assert sup.run_forever(install_signals=False) == 0
    stopper.join(5)
    assert "on_status hook failed" in caplog.text


def test_run_forever_returns_1_when_a_component_does_not_stop_and_off_main_thread_skips_signals(
    caplog,
):
    release = threading.Event()
    running = threading.Event()

    class Stubborn:
        name = "stubborn"

        def run(self, stop: threading.Event) -> None:
            running.set()
            release.wait(30)

    sup = Supervisor()
    sup.add("stubborn", Stubborn)
    codes: list[int] = []
    runner = threading.Thread(
        target=lambda: codes.append(sup.run_forever(stop_timeout=0.1)), daemon=True
    )
    try:
        runner.start()
        assert running.wait(5)
        sup.stop_event.set()
        runner.join(5)
        assert codes == [1]
        assert "no signal handlers installed" in caplog.text
    finally:
        release.set()


# --- ScheduledJobs ------------------------------------------------------------------------


class FakeNow:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


class FakeSchedule:
    """Due when one of `due_times` lies in (last_run_at, now]."""

    def __init__(self, now: FakeNow, due_times: list[datetime]) -> None:
        self.clock, self.due_times = now, due_times

    def is_due(self, last_run_at: datetime) -> tuple[bool, float]:
        now = self.clock()
        due = any(last_run_at < t <= now for t in self.due_times)
        upcoming = [(t - now).total_seconds() for t in self.due_times if t > now]
        return due, min(upcoming, default=60.0)


T0 = datetime(2025, 1, 10, 7, 59, tzinfo=IST)  # a Friday


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> Celery:
    # These jobs touch no database; an earlier test's connection object must not make
    # close_old_connections() query it (pytest-django refuses database access here).
    monkeypatch.setattr("django.db.close_old_connections", lambda: None)
    app = Celery("test-supervisor", set_as_current=False)
    app.conf.timezone = "Asia/Kolkata"
    app.conf.enable_utc = False
    app.calls = []  # type: ignore[attr-defined]

    @app.task(shared=False, name="t.add")
    def add(x: int, y: int = 0) -> int:
        app.calls.append(("add", x, y))  # type: ignore[attr-defined]
        return x + y

    @app.task(shared=False, name="t.fail")
    def fail() -> None:
        app.calls.append(("fail",))  # type: ignore[attr-defined]
        raise ValueError("scrip master unreachable")

    # Not the real task's name: instruments.tasks registers refresh_catalog as a shared task,
    # which every Celery app (this one too) picks up, so that name would reach the real
    # import (and try to download the scrip master).
    @app.task(shared=False, name="t.refresh")
    def refresh() -> str:
        app.calls.append(("refresh",))  # type: ignore[attr-defined]
        return "ok"

    return app


def test_a_due_job_runs_exactly_once_per_due_time(app):
    now = FakeNow(T0)
    due = [T0 + timedelta(seconds=s) for s in (10, 20, 30)]
    jobs = ScheduledJobs(
        {
            "sum": {
                "task": "t.add",
                "schedule": FakeSchedule(now, due),
                "args": (2,),
                "kwargs": {"y": 3},
            }
        },
        app=app,
        now=now,
    )

    assert jobs.run_pending() == 10.0
    now.now = T0 + timedelta(seconds=10)
    jobs.run_pending()
    jobs.run_pending()  # same instant: already ran
    now.now = T0 + timedelta(seconds=15)
    jobs.run_pending()
    assert app.calls == [("add", 2, 3)]

    now.now = T0 + timedelta(seconds=35)  # 20 and 30 both passed: one catch-up run, as beat
    jobs.run_pending()
    jobs.run_pending()
    assert app.calls == [("add", 2, 3)] * 2
    assert jobs.status()["sum"]["runs"] == 2
    assert jobs.status()["sum"]["last_outcome"] == "success"


def test_a_failing_job_is_logged_and_the_others_still_run(app, caplog):
    now = FakeNow(T0)
    due = [T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)]
    jobs = ScheduledJobs(
        {
            "broken": {"task": "t.fail", "schedule": FakeSchedule(now, due)},
            "unknown": {"task": "t.missing", "schedule": FakeSchedule(now, due)},
            "sum": {"task": "t.add", "schedule": FakeSchedule(now, due), "args": (1, 1)},
        },
        app=app,
        now=now,
    )
    with caplog.at_level(logging.INFO, logger="workers.supervisor"):
        for seconds in (1, 2):
            now.now = T0 + timedelta(seconds=seconds)
            jobs.run_pending()

    assert app.calls == [("fail",), ("add", 1, 1), ("fail",), ("add", 1, 1)]
    status = jobs.status()
    assert status["broken"]["failures"] == 2
    assert status["broken"]["last_outcome"] == "error: ValueError: scrip master unreachable"
    assert status["unknown"]["failures"] == 2
    assert status["sum"]["failures"] == 0
    assert "job broken (t.fail) failed" in caplog.text
    assert "scrip master unreachable" in caplog.text
    assert "job unknown (t.missing) failed" in caplog.text


def test_a_schedule_that_raises_disables_only_its_job(app, caplog):
    class Raises:
        def is_due(self, last_run_at: datetime) -> tuple[bool, float]:
            raise TypeError("bad schedule")

    now = FakeNow(T0)
    jobs = ScheduledJobs(
        {
            "bad": {"task": "t.add", "schedule": Raises()},
            "sum": {"task": "t.add", "schedule": FakeSchedule(now, [T0]), "args": (1,)},
        },
        app=app,
        now=now,
    )
    now.now = T0
    jobs.run_pending()
    jobs.run_pending()

    assert jobs.status()["bad"]["broken"] == "TypeError: bad schedule"
    assert caplog.text.count("schedule failed") == 1


def test_the_catalog_refresh_crontab_runs_at_0800_ist_on_weekdays_only(app):
    entry = settings.CELERY_BEAT_SCHEDULE["refresh-instrument-catalog"]
    original = entry["schedule"]
    now = FakeNow(T0)  # Friday 07:59 IST
    jobs = ScheduledJobs({"refresh": {**entry, "task": "t.refresh"}}, app=app, now=now)

    jobs.run_pending()
    assert app.calls == []
    now.now = T0 + timedelta(minutes=1)  # Friday 08:00
    jobs.run_pending()
    now.now = T0 + timedelta(minutes=1, seconds=30)
    jobs.run_pending()
    assert app.calls == [("refresh",)]
    now.now = T0 + timedelta(days=1, minutes=1)  # Saturday 08:00
    jobs.run_pending()
    assert app.calls == [("refresh",)]
    now.now = T0 + timedelta(days=3, minutes=1)  # Monday 08:00
    jobs.run_pending()
    assert app.calls == [("refresh",)] * 2

    # The settings' schedule object is shared: it kept its own app and clock.
    assert original.nowfun is None


def test_a_numeric_schedule_means_every_n_seconds(app):
    now = FakeNow(T0)
    jobs = ScheduledJobs(
        {"sum": {"task": "t.add", "schedule": 30.0, "args": (4,)}}, app=app, now=now
    )
    now.now = T0 + timedelta(seconds=29)
    jobs.run_pending()
    assert app.calls == []
    now.now = T0 + timedelta(seconds=30)
    jobs.run_pending()
    assert app.calls == [("add", 4, 0)]


def test_run_trader_hands_in_the_celery_beat_schedule_and_the_projects_app():
    from algo_scalper.celery import app as project_app
    from workers.management.commands.run_trader import Command

    added: dict[str, Any] = {}

    class Recorder:
        def add(self, name: str, factory: Any, **kwargs: Any) -> None:
            added[name] = factory

    Command.components(Recorder(), None, {"record": None, "no_seed": True}, live=False)
    jobs = added["scheduled_jobs"]()
    assert jobs.app is project_app
    assert [job.task for job in jobs.jobs] == [
        entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()
    ]


def test_scheduled_jobs_keeps_running_past_failures_and_stops_when_told(app):
    class AlwaysDue:
        def is_due(self, last_run_at: datetime) -> tuple[bool, float]:
            return True, 0.01

    jobs = ScheduledJobs({"broken": {"task": "t.fail", "schedule": AlwaysDue()}}, app=app)
    stop = threading.Event()
    thread = threading.Thread(target=jobs.run, args=(stop,), daemon=True)
    thread.start()
    wait_until(lambda: jobs.status()["broken"]["failures"] >= 3, "three failed runs")
    stop.set()
    thread.join(5)
    assert not thread.is_alive()


def test_scheduled_jobs_is_a_supervised_component(app):
    ran = threading.Event()

    class Once:
        def is_due(self, last_run_at: datetime) -> tuple[bool, float]:
            return (not ran.is_set()), 0.01

    @app.task(shared=False, name="t.mark")
    def mark() -> None:
        ran.set()

    sup = Supervisor()
    sup.add(
        "scheduled_jobs",
        lambda: ScheduledJobs({"m": {"task": "t.mark", "schedule": Once()}}, app=app),
    )
    sup.start()
    try:
        assert ran.wait(5)
        assert sup.status()["scheduled_jobs"]["restarts"] == 0
    finally:
        assert sup.stop(timeout=5.0)


def test_a_component_may_stop_the_supervisor_itself():
    class Quitter:
        name = "quitter"

        def __init__(self, sup: Supervisor) -> None:
            self.sup = sup

        def run(self, stop: threading.Event) -> None:
            self.ok = self.sup.stop(timeout=1.0)  # must not try to join its own thread

    sup = Supervisor()
    sup.add("quitter", lambda: Quitter(sup))
    sup.start()
    wait_until(lambda: sup.status()["quitter"]["state"] == "stopped", "the quitter stopped")
    assert sup.status()["quitter"]["restarts"] == 0
    assert sup.stop(timeout=5.0) is True
