"""``manage.py run_order_updates``: the one process that owns order events (split mode).

Live: Dhan's order-update WebSocket (REST polling of working orders while it is down);
paper: the paper broker matching paper orders against the feed hub's ticks. Either way it
applies every event to the order journal, the positions and the paper ledger, re-prices
unfilled orders, resolves orders whose send had no answer and drives claimed exits. Exactly
one of these may run per database (run_trader runs the same component in embedded mode).
Needs REDIS_URL (the ticks, the market clock); thin, like the other run_* commands.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from config_schema import ConfigError
from trading.mode import trading_mode
from workers.broker_auth import BrokerAuthFailed
from workers.orders import manager_for
from workers.process import run_until_stopped
from workers.realtime.services import realtime_from_settings


class Command(BaseCommand):
    help = "Run the order manager: order events -> journal, positions, ledger; chases; exits."

    def handle(self, *args: Any, **options: Any) -> None:
        realtime = realtime_from_settings()
        if realtime.redis_url is None:
            realtime.close()
            raise CommandError(
                "REDIS_URL is not set: the order manager cannot see the feed hub's ticks and "
                "market clock from another process (for one process, use manage.py run_trader)"
            )
        mode = trading_mode()
        self.stderr.write(f"trading mode: {mode.name.upper()} ({mode.reason})")
        try:
            manager = manager_for(realtime, live=mode.live)
        except (ConfigError, ImproperlyConfigured) as exc:
            realtime.close()
            raise CommandError(str(exc)) from None
        try:
            run_until_stopped(manager.run, "order manager")
        except BrokerAuthFailed as exc:
            raise CommandError(str(exc)) from None
        finally:
            realtime.close()
