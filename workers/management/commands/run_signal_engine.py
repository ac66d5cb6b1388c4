"""``manage.py run_signal_engine``: the signal engine as its own process (split mode).

Thin, like healthchecks' sendalerts: build the engine from settings, install SIGTERM/SIGINT
handlers that only set the stop event, run. An invalid algo config stops it at start with the
message (``manage.py check_config`` shows the same before a restart). Needs REDIS_URL to see the
feed hub's candles; without it, use ``manage.py run_trader``.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from config_schema import ConfigError
from workers.broker_auth import BrokerAuthFailed
from workers.process import run_until_stopped
from workers.realtime.services import realtime_from_settings
from workers.signal_engine import engine_from_settings


class Command(BaseCommand):
    help = "Run the signal engine: index candles -> signals -> gates -> strike -> sized intent."

    def handle(self, *args: Any, **options: Any) -> None:
        realtime = realtime_from_settings()
        if realtime.redis_url is None:
            realtime.close()
            raise CommandError(
                "REDIS_URL is not set: the signal engine cannot see the feed hub's candles from "
                "another process (for one process on a laptop, use manage.py run_trader)"
            )
        try:
            engine = engine_from_settings(realtime)
        except (ConfigError, ImproperlyConfigured) as exc:
            realtime.close()
            raise CommandError(str(exc)) from None
        try:
            run_until_stopped(engine.run, "signal engine")
        except BrokerAuthFailed as exc:
            raise CommandError(str(exc)) from None
        finally:
            realtime.close()
