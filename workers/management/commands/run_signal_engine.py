"""``manage.py run_signal_engine``: the signal engine as its own process (split mode).

Thin, like healthchecks' sendalerts: build the engine from settings, install SIGTERM/SIGINT
handlers that only set the stop event, run. An invalid algo config stops it at start with the
message (``manage.py check_config`` shows the same before a restart). Needs REDIS_URL to see the
feed hub's candles; without it, use ``manage.py run_trader``.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from workers.process import run_split_worker
from workers.signal_engine import engine_from_settings


class Command(BaseCommand):
    help = "Run the signal engine: index candles -> signals -> gates -> strike -> sized intent."

    def handle(self, *args: Any, **options: Any) -> None:
        run_split_worker(
            "signal engine",
            "the feed hub's candles",
            lambda realtime, live: engine_from_settings(realtime, live=live),
            self.stderr.write,
        )
