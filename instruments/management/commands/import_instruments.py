"""``manage.py import_instruments [--file F | --url U] [--force] [--allow-large-removal]``."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from config_schema import ConfigError
from instruments.importer import ImportFailed, ImportOptions, ImportResult, import_catalog
from instruments.progress import ProgressReporter


class Command(BaseCommand):
    help = (
        "Import Dhan's scrip master into the instrument catalog (atomic: a bad file changes "
        "nothing). Default source: Dhan's URL through a 24 h disk cache."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        source = parser.add_mutually_exclusive_group()
        source.add_argument("--file", help="import this local CSV (compact or detailed format)")
        source.add_argument("--url", help="download the scrip master from this URL")
        parser.add_argument(
            "--force",
            action="store_true",
            help="re-download and re-import even when the file is unchanged (reimport)",
        )
        parser.add_argument(
            "--allow-large-removal",
            action="store_true",
            help="accept a file removing more unexpired contracts than guards.max_removal_share",
        )
        parser.add_argument(
            "--max-bad-row-share",
            type=float,
            help="override guards.max_bad_row_share for this run (0..1)",
        )
        parser.add_argument("--json", action="store_true", help="print the summary as JSON")

    def handle(self, *args: Any, **opts: Any) -> None:
        share = opts["max_bad_row_share"]
        if share is not None and not 0 <= share <= 1:
            raise CommandError(f"--max-bad-row-share must be between 0 and 1, got {share}")
        options = ImportOptions(
            file=opts["file"],
            url=opts["url"],
            force=opts["force"],
            allow_large_removal=opts["allow_large_removal"],
            max_bad_row_share=share,
            progress=None if opts["json"] else ProgressReporter(self.stderr._out),
        )
        try:
            result = import_catalog(options)
        except (ImportFailed, ConfigError) as exc:
            raise CommandError(f"import failed, the catalog is unchanged: {exc}") from None
        for warning in result.warnings:
            self.stderr.write(f"warning: {warning}")
        if opts["json"]:
            self.stdout.write(json.dumps({"status": result.status, **result.stats}, indent=2))
            return
        self.stdout.write(summary(result))


def summary(result: ImportResult) -> str:
    s = result.stats
    if result.status == "unchanged":
        return (
            f"Unchanged: {s['source']} is the file imported at {s['last_imported_at']}; "
            "nothing written (use --force to re-import). "
            f"Catalog: {s['totals'].get('total', 0):,} contracts."
        )
    lines = [
        f"Imported {s['source']} [{s['format']}] in {s['duration_seconds']:.2f} s",
        f"  rows read {s['rows_read']:,}: inserted {s['inserted']:,}, updated {s['updated']:,}, "
        f"unchanged {s['unchanged']:,}; removed {s['removed']:,}, "
        f"flagged inactive {s['flagged_inactive']:,}",
    ]
    for label, counts in (("rejected", s["rejected"]), ("dropped", s["dropped"])):
        if counts:
            parts = ", ".join(f"{reason} {n:,}" for reason, n in sorted(counts.items()))
            lines.append(f"  {label}: {parts}")
    for problem in s["rejected_samples"]:
        lines.append(f"    line {problem['line']}: {problem['reason']}: {problem['detail']}")
    if s["rejected"]:
        lines.append(
            "  stored contracts kept as they were because their rows were rejected: "
            f"{s['kept_rejected']:,}"
        )
    totals = s["totals"]
    lines.append(f"  catalog: {totals['total']:,} contracts")
    lines.extend(f"    {seg:<14}{n:>10,}" for seg, n in totals["by_segment"].items())
    return "\n".join(lines)
