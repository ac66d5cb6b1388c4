"""``manage.py day_report [--date YYYY-MM-DD] [--mode paper|live]``: one trading date's trades.

Prints trading/report.py's report: every closed trade with its exit type and reason, the
totals (win rate, gross and net PnL, charges, max drawdown), the PnL by exit type and the
positions that did not close. Without ``--date``: the latest date with a position (of that
mode). Dates are the market's (IST), as the positions record them.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from trading.models import TradingMode
from trading.report import latest_trading_date, load_day, render

EARLIEST, LATEST = date(2000, 1, 1), date(2099, 12, 31)


def _date(text: str) -> date:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--date must be YYYY-MM-DD, got {text!r}") from None
    if not EARLIEST <= day <= LATEST:
        raise CommandError(f"--date must be from {EARLIEST} to {LATEST}, got {text!r}")
    return day


class Command(BaseCommand):
    help = "Print the day report: closed trades, totals, win rate, drawdown, PnL by exit type."

    def add_arguments(self, parser: CommandParser) -> None:
        # Checked in handle(), not by argparse types: call_command(date=...) skips them.
        parser.add_argument("--date", help="trading date, YYYY-MM-DD (default: the latest)")
        parser.add_argument(
            "--mode", choices=TradingMode.values, help="paper or live (default: both)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        mode = options["mode"]
        if mode is not None and mode not in TradingMode.values:
            raise CommandError(f"--mode must be paper or live, got {mode!r}")
        if options["date"] is not None:
            day = options["date"] if isinstance(options["date"], date) else _date(options["date"])
        else:
            found = latest_trading_date(mode)
            if found is None:
                which = f"{mode} " if mode else ""
                self.stdout.write(f"no {which}position in the database: nothing to report")
                return
            day = found
        for line in render(load_day(day, mode)):
            self.stdout.write(line)
