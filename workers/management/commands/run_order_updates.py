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

from django.core.management.base import BaseCommand

from workers.orders import manager_for
from workers.process import run_split_worker


class Command(BaseCommand):
    help = "Run the order manager: order events -> journal, positions, ledger; chases; exits."

    def handle(self, *args: Any, **options: Any) -> None:
        run_split_worker(
            "order manager",
            "the feed hub's ticks and market clock",
            lambda realtime, live: manager_for(realtime, live=live),
            self.stderr.write,
        )
