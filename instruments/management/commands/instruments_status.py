"""``manage.py instruments_status [--json]``: exit code 1 when the catalog is empty or stale."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from instruments.config import catalog_config
from instruments.importer import catalog_status


class Command(BaseCommand):
    help = (
        "Show the instrument catalog's last import, age and counts, and a run that failed since "
        "(exit 1 if empty or stale)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args: Any, **opts: Any) -> None:
        status = catalog_status(max_age_hours=catalog_config().cache_max_age_hours)
        if opts["json"]:
            status.pop("last_import")  # a CatalogImport row: the admin shows it in full
            self.stdout.write(json.dumps(status, indent=2))
        else:
            self.stdout.write(render(status))
        if status["stale"]:
            sys.exit(1)


def render(status: dict[str, Any]) -> str:
    failure = status["last_failure"]
    failed = (
        []
        if failure is None
        else [f"Last run FAILED at {failure['at']} ({failure['source']}): {failure['error']}"]
    )
    if status["total"] == 0:
        return "\n".join(["Catalog is EMPTY: run `manage.py import_instruments`.", *failed])
    age = status["age_seconds"]
    age_text = "never imported" if age is None else f"{age / 3600:.1f} h ago"
    state = "STALE (older than the refresh interval)" if status["stale"] else "fresh"
    lines = [
        f"Catalog: {status['total']:,} active contracts, last imported "
        f"{status['last_imported_at']} ({age_text}), {state}",
        "  by exchange segment:",
        *(f"    {k:<14}{v:>10,}" for k, v in status["counts"]["by_segment"].items()),
        "  by instrument:",
        *(f"    {k:<14}{v:>10,}" for k, v in status["counts"]["by_instrument"].items()),
        *failed,
    ]
    return "\n".join(lines)
