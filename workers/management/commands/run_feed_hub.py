"""``manage.py run_feed_hub``: the market-feed hub as its own process (split mode).

Thin, like healthchecks' sendalerts: parse arguments, build the hub from settings, install
SIGTERM/SIGINT handlers that only set the stop event, run. A malformed watchlist entry or
missing credentials stop it at start with the message; a fatal feed error (auth, data plan)
exits non-zero so the platform's restart policy and alerts see it.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from config_schema import ConfigError
from workers.broker_auth import BrokerAuthFailed
from workers.feed_hub import FeedHubFailed, hub_from_settings
from workers.process import check_record_dir, check_redis_at_start, run_until_stopped
from workers.realtime.services import realtime_from_settings
from workers.subscriptions import WatchlistError

logger = logging.getLogger("workers.feed_hub")


class Command(BaseCommand):
    help = "Run the market-feed hub: Dhan feed -> tick cache + bus, index candles, feed health."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--record",
            metavar="DIR",
            help="append every raw feed frame with its receive time to hourly gzip files in DIR",
        )
        parser.add_argument(
            "--no-seed",
            action="store_true",
            help="do not seed index candles from Dhan's intraday chart API",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        check_record_dir(options["record"])
        realtime = realtime_from_settings()
        if realtime.redis_url is None:
            logger.warning(
                "REDIS_URL is not set: ticks stay inside this process and no other process "
                "sees them (for one process on a laptop, use manage.py run_trader)"
            )
        try:
            check_redis_at_start(realtime.redis_url, "feed hub")
        except CommandError:
            realtime.close()
            raise
        try:
            hub = hub_from_settings(
                realtime, record_dir=options["record"], seed_candles=not options["no_seed"]
            )
        except (WatchlistError, ImproperlyConfigured, ConfigError) as exc:
            raise CommandError(str(exc)) from None
        try:
            run_until_stopped(hub.run, "feed hub")
        except WatchlistError as exc:
            raise CommandError(str(exc)) from None
        except (FeedHubFailed, BrokerAuthFailed) as exc:
            raise CommandError(str(exc)) from None
        finally:
            realtime.close()
