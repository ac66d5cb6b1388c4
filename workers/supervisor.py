"""Embedded mode: every long-running component as a thread of one process, kept alive.

``Supervisor`` runs one thread per component. A component is anything with
``run(stop: threading.Event)`` that blocks until ``stop`` is set. A component that raises, or
whose ``run()`` returns while the supervisor is not stopping, is logged with its traceback and
started again (a fresh instance from its factory) after a capped exponential backoff with
jitter: 1 s doubling to 30 s, back to 1 s once a run lasted ``healthy_after`` seconds (the
zulip worker model: one bad state never becomes a hot crash loop, and a component that was
healthy for a while restarts quickly). Backoff sleeps wait on the shared stop Event, so
``stop()`` never waits out a backoff.

Restarting heals faults (a dropped connection, a Redis blip), not configuration: an exception
of one of the ``fatal`` types (the caller's list, e.g. a missing setting, an invalid config,
credentials the broker refuses) is not retried. It is logged once at CRITICAL, every component
is stopped, and ``run_forever`` returns 1 with the reason in ``fatal_error``: a crash loop
that re-sends dead credentials to the broker every few seconds is worse than stopping.

``ScheduledJobs`` is a component that runs ``settings.CELERY_BEAT_SCHEDULE`` in-process, because
embedded mode has no ``celery beat``: each due task is executed synchronously in its own thread
with ``app.tasks[name].apply()``.

Adding a component to ``run_trader`` is one line::

    supervisor.add("exit_engine", lambda: ExitEngine(...), critical=True)
"""

from __future__ import annotations

import copy
import logging
import random
import signal
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import FrameType
from typing import Any, Protocol

from celery import Celery
from celery.schedules import BaseSchedule, maybe_schedule

from config_schema.text import first_line

log = logging.getLogger(__name__)

STARTING = "starting"
RUNNING = "running"
BACKOFF = "backoff"
STOPPED = "stopped"
# The supervising thread itself died (a BaseException such as SystemExit), or the component
# raised one of the supervisor's fatal exceptions (it is not restarted).
FAILED = "failed"

# Backoff delays are scaled by a random factor in [1 - JITTER, 1]: components that crashed
# together (Redis went away) do not all come back in the same instant, and the cap holds.
JITTER = 0.2
# How often run_forever looks at the signal flag. Signal handlers only set a plain attribute
# (taking a lock in a handler can deadlock against the interrupted main thread), so the main
# loop polls it in short slices.
_POLL = 0.2


class Component(Protocol):
    """A long-running piece of the system, supervised as one thread."""

    name: str

    def run(self, stop: threading.Event) -> None:
        """Block until ``stop`` is set, then return. Raising (or returning early) is a crash."""
        ...


@dataclass
class _Slot:
    name: str
    factory: Callable[[], Component]
    critical: bool
    state: str = STOPPED
    restarts: int = 0
    last_error: str | None = None
    started_at: float | None = None  # epoch seconds of the current (last) run
    thread: threading.Thread | None = None


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return first[:300]


class Supervisor:
    """One thread per component; crashed components restart after a capped, jittered backoff.

    ``sleep(seconds)`` is the backoff wait (default: the shared stop Event's ``wait``, so a stop
    interrupts it); ``clock()`` is the monotonic clock that decides whether a run was healthy
    for ``healthy_after`` seconds. Both exist so tests can drive the backoff without sleeping.
    ``on_status(status)`` is called with ``status()`` at each heartbeat of ``run_forever``
    (e.g. to publish a heartbeat record); its failures are logged, never fatal.
    """

    def __init__(
        self,
        *,
        backoff_base: float = 1.0,
        backoff_cap: float = 30.0,
        healthy_after: float = 60.0,
        rng: random.Random | None = None,
        sleep: Callable[[float], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
        heartbeat_interval: float = 30.0,
        log_interval: float | None = None,
        on_status: Callable[[dict[str, dict[str, Any]]], object] | None = None,
        fatal: tuple[type[BaseException], ...] = (),
    ) -> None:
        self._stop = threading.Event()
        self._fatal_types = fatal
        self.fatal_error: str | None = None  # "component: one line", once a fatal one stopped
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._healthy_after = healthy_after
        self._rng = rng or random.Random()
        self._sleep = sleep or self._stop.wait
        self._clock = clock
        self._heartbeat_interval = heartbeat_interval
        # The log line can be rarer than on_status (a kv heartbeat every 5 s, a line every 30 s).
        self._log_interval = heartbeat_interval if log_interval is None else log_interval
        self._next_log = 0.0
        self._on_status = on_status
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()
        self._started = False
        self._signalled: int | None = None

    @property
    def stop_event(self) -> threading.Event:
        """The Event every component receives; set by ``stop()``."""
        return self._stop

    def add(self, name: str, factory: Callable[[], Component], *, critical: bool = False) -> None:
        """Register a component. ``factory`` is called at each (re)start, in the component's
        thread, so a restart gets a fresh instance. ``critical`` only raises the log level of
        its crashes to CRITICAL; it is restarted like any other."""
        with self._lock:
            if name in self._slots:
                raise ValueError(f"component {name!r} is already registered")
            slot = _Slot(name=name, factory=factory, critical=critical)
            self._slots[name] = slot
            started = self._started
        if started:
            self._launch(slot)

    def start(self) -> None:
        """Start one daemon thread per registered component (daemons: a thread that ignores
        stop can never keep the process alive)."""
        with self._lock:
            if self._started:
                raise RuntimeError("supervisor already started")
            if self._stop.is_set():
                raise RuntimeError("a stopped supervisor cannot be started again")
            self._started = True
            slots = list(self._slots.values())
        for slot in slots:
            self._launch(slot)

    def stop(self, timeout: float = 5.0) -> bool:
        """Set the stop Event and join every thread within ``timeout`` seconds in total.

        Returns True when every component stopped; False when some are still running (each is
        logged by name). Never waits longer than ``timeout``.
        """
        self._stop.set()
        deadline = time.monotonic() + timeout
        stuck: list[str] = []
        for slot in list(self._slots.values()):
            thread = slot.thread
            # A component may ask for a shutdown itself; a thread cannot join itself.
            if thread is None or thread is threading.current_thread():
                continue
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                stuck.append(slot.name)
        for name in stuck:
            log.error("component %s did not stop within %.1fs", name, timeout)
        if not stuck:
            log.info("all components stopped")
        return not stuck

    def run_forever(self, install_signals: bool = True, *, stop_timeout: float = 5.0) -> int:
        """Start the components, log a heartbeat every ``heartbeat_interval`` seconds, and stop
        everything on SIGTERM/SIGINT (or when ``stop()`` is called from another thread).

        Signal handlers are installed only from the main thread, only set a flag, and are
        restored on the way out. Returns 0 when everything stopped cleanly, 1 otherwise.
        """
        previous: dict[int, Any] = {}
        if install_signals:
            if threading.current_thread() is threading.main_thread():
                for signum in (signal.SIGTERM, signal.SIGINT):
                    previous[signum] = signal.signal(signum, self._on_signal)
            else:
                log.warning("run_forever outside the main thread: no signal handlers installed")
        try:
            if not self._started:
                self.start()
            next_beat = time.monotonic()
            while self._signalled is None and not self._stop.is_set():
                now = time.monotonic()
                if now >= next_beat:
                    self._heartbeat()
                    next_beat = now + self._heartbeat_interval
                self._stop.wait(min(_POLL, max(0.0, next_beat - now)))
            if self._signalled is not None:
                log.info("signal %s received: stopping", signal.Signals(self._signalled).name)
            clean = self.stop(stop_timeout)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return 0 if clean and self.fatal_error is None else 1

    def status(self) -> dict[str, dict[str, Any]]:
        """Per component: state (starting/running/backoff/stopped/failed), restarts,
        last_error (one line or None), started_at (epoch s of the current run or None),
        critical. Cheap (a dict copy under a lock): fine to call from a heartbeat writer."""
        with self._lock:
            return {
                slot.name: {
                    "state": slot.state,
                    "restarts": slot.restarts,
                    "last_error": slot.last_error,
                    "started_at": slot.started_at,
                    "critical": slot.critical,
                }
                for slot in self._slots.values()
            }

    # --- internals ---------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signalled = signum

    def _heartbeat(self) -> None:
        status = self.status()
        now = time.monotonic()
        if now >= self._next_log:
            self._next_log = now + self._log_interval
            parts = []
            for name, st in status.items():
                part = f"{name}={st['state']} restarts={st['restarts']}"
                if st["last_error"]:
                    part += f" last_error={st['last_error']!r}"
                parts.append(part)
            log.info("supervisor heartbeat: %s", "; ".join(parts) or "no components")
        if self._on_status is not None:
            try:
                self._on_status(status)
            except Exception:
                log.exception("supervisor on_status hook failed")

    def _launch(self, slot: _Slot) -> None:
        with self._lock:
            slot.state = STARTING
        thread = threading.Thread(
            target=self._supervise, args=(slot,), name=f"component-{slot.name}", daemon=True
        )
        slot.thread = thread
        thread.start()

    def _set(self, slot: _Slot, **fields: Any) -> None:
        with self._lock:
            for key, value in fields.items():
                setattr(slot, key, value)

    def _backoff(self, failures: int) -> float:
        """Delay before restart number ``failures`` of a crash streak (1-based)."""
        # The exponent is bounded so a long streak never overflows a float.
        raw = min(self._backoff_cap, self._backoff_base * 2 ** min(failures - 1, 32))
        return raw * self._rng.uniform(1.0 - JITTER, 1.0)

    def _supervise(self, slot: _Slot) -> None:
        failures = 0  # crashes in a row; a healthy run resets the streak
        level = logging.CRITICAL if slot.critical else logging.ERROR
        try:
            while not self._stop.is_set():
                self._set(slot, state=STARTING)
                began = self._clock()
                try:
                    component = slot.factory()
                    self._set(slot, state=RUNNING, started_at=time.time())
                    component.run(self._stop)
                except Exception as exc:
                    if self._stop.is_set():
                        if isinstance(exc, self._fatal_types):
                            # Stopping for that reason already (said once): no traceback.
                            log.warning("component %s stopped: %s", slot.name, _one_line(exc))
                        else:
                            log.warning(
                                "component %s raised while stopping", slot.name, exc_info=True
                            )
                        break
                    if isinstance(exc, self._fatal_types):
                        self._fatal(slot, exc)
                        break
                    failures = self._streak(failures, began)
                    delay = self._backoff(failures)
                    self._crashed(slot, _one_line(exc))
                    log.log(
                        level,
                        "component %s crashed (crash %d in a row), restarting in %.1fs",
                        slot.name,
                        failures,
                        delay,
                        exc_info=True,
                    )
                else:
                    if self._stop.is_set():
                        break
                    failures = self._streak(failures, began)
                    delay = self._backoff(failures)
                    self._crashed(slot, "run() returned without being stopped")
                    log.log(
                        level,
                        "component %s returned without being stopped (%d in a row), "
                        "restarting in %.1fs",
                        slot.name,
                        failures,
                        delay,
                    )
                self._sleep(delay)
        except BaseException:
            # Not an Exception: SystemExit raised inside a component, say. The thread ends;
            # the state says so instead of pretending the component is merely stopped.
            log.critical("supervisor thread of %s died", slot.name, exc_info=True)
            self._set(slot, state=FAILED)
            raise
        if slot.state != FAILED:
            self._set(slot, state=STOPPED)

    def _fatal(self, slot: _Slot, exc: Exception) -> None:
        """A fault no restart can heal: say so once, stop everything."""
        # The fatal types carry messages written for the operator: the first line, no class.
        line = first_line(exc)[:500]
        with self._lock:
            slot.last_error = line
            slot.state = FAILED
        self.fail(slot.name, line, what=f"component {slot.name}")

    def fail(self, source: str, line: str, *, what: str | None = None) -> None:
        """Stop everything for a fault no restart heals, found by ``source`` (a component, or
        a hook such as a Redis refusal seen by a thread of its own). The first one is logged
        at CRITICAL and becomes ``fatal_error``; a later one with the same reason (every
        component meets the same wrong password) is not repeated."""
        with self._lock:
            first = self.fatal_error is None
            if first:
                self.fatal_error = f"{source}: {line}"
            repeated = not first and self.fatal_error.endswith(f": {line}")
        if first:
            log.critical("%s cannot run: %s; stopping everything", what or source, line)
        elif not repeated:
            log.error("%s cannot run either: %s", what or source, line)
        self._stop.set()

    def _streak(self, failures: int, began: float) -> int:
        if self._clock() - began >= self._healthy_after:
            return 1
        return failures + 1

    def _crashed(self, slot: _Slot, error: str) -> None:
        with self._lock:
            slot.restarts += 1
            slot.last_error = error
            slot.state = BACKOFF


# --- Scheduled jobs (celery beat, in-process) -------------------------------------------------


@dataclass
class _Job:
    name: str
    task: str
    schedule: Any  # a celery schedule (or anything with is_due(last_run_at))
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    last_run_at: datetime
    runs: int = 0
    failures: int = 0
    last_outcome: str | None = None
    broken: str | None = None  # the schedule itself raised; the job is disabled


class ScheduledJobs:
    """Runs a Celery beat schedule in this thread: the embedded mode's ``celery beat``.

    The caller hands in the ``schedule`` (``settings.CELERY_BEAT_SCHEDULE``) and the Celery
    ``app`` whose tasks it names: workers never import the project shell (an import contract),
    so ``run_trader`` passes the app Django configured. ``now()`` (aware datetime) is the
    clock every schedule is evaluated with; by default each schedule's own (the app's clock,
    in CELERY_TIMEZONE). Entries follow beat's
    semantics: a job's ``last_run_at`` starts at construction time (a run missed before the
    process started is not caught up, as with beat without its schedule file), several missed
    due times coalesce into one run, and ``last_run_at`` is the time the run began.

    Tasks run synchronously via ``app.tasks[name].apply(args, kwargs)``. A failing task (or
    an unknown task name) is logged with its traceback and counted; the component carries on.
    Note: under ``apply()`` Celery performs a task's autoretries immediately, one after the
    other, without their countdown.
    """

    name = "scheduled_jobs"

    def __init__(
        self,
        schedule: Mapping[str, Mapping[str, Any]],
        *,
        app: Celery,
        now: Callable[[], datetime] | None = None,
        max_wait: float = 1.0,
    ) -> None:
        self.app = app
        self._nowfun = now
        self._now = now or app.now
        self._max_wait = max_wait
        start = self._now()
        self.jobs: list[_Job] = [self._job(name, entry, start) for name, entry in schedule.items()]

    def _job(self, name: str, entry: Mapping[str, Any], start: datetime) -> _Job:
        sched = entry["schedule"]
        if isinstance(sched, int | float | timedelta):
            sched = maybe_schedule(sched, entry.get("relative", False), app=self.app)
        else:
            # A copy: the settings' schedule objects are shared module state, and giving them
            # our app and clock would leak into anything else that reads them.
            sched = copy.copy(sched)
            if isinstance(sched, BaseSchedule):
                sched.app = self.app
        if isinstance(sched, BaseSchedule) and self._nowfun is not None:
            sched.nowfun = self._now
        return _Job(
            name=name,
            task=entry["task"],
            schedule=sched,
            args=tuple(entry.get("args", ())),
            kwargs=dict(entry.get("kwargs", {})),
            last_run_at=start,
        )

    def run(self, stop: threading.Event) -> None:
        """Run due jobs until ``stop`` is set; waits are at most ``max_wait`` s each."""
        log.info("scheduled jobs: %s", ", ".join(j.name for j in self.jobs) or "none")
        while not stop.is_set():
            wait = self.run_pending()
            stop.wait(min(self._max_wait, max(0.0, wait)))

    def run_pending(self) -> float:
        """Run every job that is due now (each at most once). Returns the seconds until the
        next job is estimated to be due (the caller waits at most ``max_wait`` of it)."""
        next_in = float("inf")
        for job in self.jobs:
            if job.broken:
                continue
            try:
                due, seconds = job.schedule.is_due(job.last_run_at)
            except Exception as exc:
                # A schedule is pure arithmetic: if it raises once it raises every second.
                job.broken = _one_line(exc)
                log.exception("job %s: schedule failed, job disabled", job.name)
                continue
            if due:
                job.last_run_at = self._now()
                self._execute(job)
            next_in = min(next_in, float(seconds))
        return next_in if next_in != float("inf") else float(self._max_wait)

    def status(self) -> dict[str, dict[str, Any]]:
        """Per job: task, last_run_at (ISO), runs, failures, last_outcome, broken."""
        return {
            job.name: {
                "task": job.task,
                "last_run_at": job.last_run_at.isoformat(),
                "runs": job.runs,
                "failures": job.failures,
                "last_outcome": job.last_outcome,
                "broken": job.broken,
            }
            for job in self.jobs
        }

    def _execute(self, job: _Job) -> None:
        from django.db import close_old_connections

        job.runs += 1
        began = time.monotonic()
        # Celery's worker closes stale DB connections around each task; apply() does not.
        close_old_connections()
        try:
            task = self.app.tasks[job.task]
            # throw=False: the outcome is read from the EagerResult whatever
            # task_eager_propagates says.
            result = task.apply(args=job.args, kwargs=job.kwargs, throw=False)
        except Exception as exc:
            job.failures += 1
            job.last_outcome = f"error: {_one_line(exc)}"
            log.exception(
                "job %s (%s) failed after %.2fs", job.name, job.task, time.monotonic() - began
            )
            return
        finally:
            close_old_connections()
        elapsed = time.monotonic() - began
        if result.failed():
            job.failures += 1
            error = result.result
            job.last_outcome = (
                f"error: {_one_line(error)}" if isinstance(error, BaseException) else "error"
            )
            tb = result.traceback or (
                "".join(traceback.format_exception(error))
                if isinstance(error, BaseException)
                else ""
            )
            log.error(
                "job %s (%s) failed after %.2fs: %s\n%s",
                job.name,
                job.task,
                elapsed,
                job.last_outcome,
                tb,
            )
        else:
            job.last_outcome = result.state.lower()
            log.info(
                "job %s (%s) %s in %.2fs: %r",
                job.name,
                job.task,
                job.last_outcome,
                elapsed,
                result.result,
            )
