"""``manage.py run_exit_engine``: the exit engine (split mode).

Watches every open position tick by tick (and on a 1 s sweep for the clock exits, the kill
switch, the daily loss limit and a stale feed), exits by the rules of config/algo.yml
``exits`` through the order router, keeps the exit states (peak, protective stop) on the
positions so a restart continues them, and keeps the PnL cache ``pnl:{id}``. On start it
continues every claimed exit before it reads a tick. Two may run on one database without
selling a position twice (a decision claims the position first; the loser backs off), but
one is the design. Needs REDIS_URL (the feed hub's ticks and market clock); run_trader runs
the same component in embedded mode.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from workers.exit_engine import exit_engine_from_settings
from workers.process import run_split_worker


class Command(BaseCommand):
    help = "Run the exit engine: exit rules on every tick and a 1 s sweep; the PnL cache."

    def handle(self, *args: Any, **options: Any) -> None:
        run_split_worker(
            "exit engine",
            "the feed hub's ticks and market clock",
            lambda realtime, live: exit_engine_from_settings(realtime, live=live),
            self.stderr.write,
        )
