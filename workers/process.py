"""One worker per process (split mode): run a component until SIGTERM or SIGINT.

The handlers only set the stop event (healthchecks' sendalerts model): the component notices at
its next pass and returns after its own shutdown, so a platform restart never cuts a write.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from trading.shutdown import SignalStop


def run_until_stopped(run: Callable[[threading.Event], None], name: str) -> None:
    """Call ``run(stop)`` with a stop event that SIGTERM and SIGINT set (:class:`SignalStop`)."""
    from django.core.management.base import CommandError

    from workers.realtime.redis_client import StoreRefused, on_refused, refused

    stops = SignalStop(name, logging.getLogger(f"workers.{name.replace(' ', '_')}"))
    # Redis refusing this process (a wrong password) stops it, whichever thread met it and
    # whether or not that thread's component let the exception through: one line, exit 1.
    forget = on_refused(lambda error: stops.event.set())
    try:
        run(stops.event)
    except StoreRefused as exc:
        raise CommandError(str(exc)) from None
    finally:
        forget()
        stops.close()
    error = refused()
    if error is not None:
        raise CommandError(str(error))


def check_redis_at_start(url: str | None, name: str) -> None:
    """One PING before anything starts: Redis refusing this process (wrong password, no such
    DB index) ends it with one line naming REDIS_URL (CommandError); a Redis that cannot be
    reached yet is said once, and the components wait for it."""
    from django.core.management.base import CommandError

    from workers.realtime.redis_client import StoreRefused, check_redis, masked_url

    if not url:
        return
    try:
        unreachable = check_redis(url)
    except StoreRefused as exc:
        raise CommandError(str(exc)) from None
    if unreachable is not None:
        logging.getLogger(f"workers.{name.replace(' ', '_')}").warning(
            "%s: Redis at REDIS_URL %s not reachable at start (%s); waiting for it",
            name,
            masked_url(url),
            unreachable,
        )


def run_split_worker(
    name: str, sees: str, build: Callable[[Any, bool], Any], say: Callable[[str], None]
) -> None:
    """A split-mode worker command's body: the Realtime on Redis (``sees`` says what the
    worker reads from other processes, for the error without REDIS_URL), the trading mode
    said, ``build(realtime, live)``, run until SIGTERM/SIGINT. A broken config file (algo.yml,
    charges.yml) before anything starts, a configuration error at build and credentials the
    broker refuses end it with one line (CommandError)."""
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management.base import CommandError

    from config_schema import ConfigError
    from trading.config.store import config_at_start
    from trading.mode import trading_mode
    from workers.broker_auth import BrokerAuthFailed
    from workers.realtime.services import realtime_from_settings

    realtime = realtime_from_settings()
    if realtime.redis_url is None:
        realtime.close()
        raise CommandError(
            f"REDIS_URL is not set: the {name} cannot see {sees} from another process (for "
            "one process, use manage.py run_trader)"
        )
    try:
        config_at_start()  # algo.yml and charges.yml, each named, before anything starts
        check_redis_at_start(realtime.redis_url, name)
    except ConfigError as exc:
        realtime.close()
        raise CommandError(str(exc)) from None
    except CommandError:
        realtime.close()
        raise
    mode = trading_mode()
    say(f"trading mode: {mode.name.upper()} ({mode.reason})")
    try:
        worker = build(realtime, mode.live)
    except (ConfigError, ImproperlyConfigured) as exc:
        realtime.close()
        raise CommandError(str(exc)) from None
    try:
        run_until_stopped(worker.run, name)
    except BrokerAuthFailed as exc:
        raise CommandError(str(exc)) from None
    finally:
        realtime.close()


def check_record_dir(path: str | None) -> None:
    """``--record DIR`` checked before anything starts: the directory is created and a probe
    file written and removed there. A directory that cannot be written ends the command with
    one line (CommandError) instead of a run that records nothing and exits 0."""
    import os
    import tempfile

    from django.core.management.base import CommandError

    if not path:
        return
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".record-probe-"):
            pass
    except OSError as exc:
        raise CommandError(
            f"--record {path}: cannot write there ({exc.strerror or type(exc).__name__})"
        ) from None
