"""``manage.py clear_instruments --yes``: empty the catalog (referenced contracts are kept)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from instruments.importer import clear_catalog


class Command(BaseCommand):
    help = (
        "Delete every instrument and derivative that nothing refers to; contracts referenced by "
        "positions or orders are flagged inactive instead. Requires --yes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--yes", action="store_true", help="confirm: really clear the catalog")

    def handle(self, *args: Any, **opts: Any) -> None:
        if not opts["yes"]:
            raise CommandError("refusing to clear the catalog without --yes")
        result = clear_catalog()
        self.stdout.write(
            f"Cleared the catalog: deleted {result['deleted']:,} contracts, "
            f"kept {result['flagged_inactive']:,} still referenced (flagged inactive)."
        )
