"""``manage.py check_config [--file PATH] [--no-overrides] [--charges PATH]``.

Validates the algo config (file + the Setting overrides, as the processes will use it) and the
charges table. Valid: prints the effective algo config as YAML (a valid algo.yml itself) with
both versions as comments. Invalid: every problem on stderr, one a line, and exit
code 1.

With the overrides (the database is read), each index of the config is also looked up in the
instrument catalog as the signal engine resolves it: an enabled index the catalog does not
list is a problem (the signal engine would skip it all day); a disabled one, or a catalog with
no index at all (not imported yet), is a warning.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from config_schema import ConfigError
from config_schema.text import first_line
from trading.config.load import OVERRIDES_SOURCE, config_as_dict, load_algo_file
from trading.config.store import stored_overrides
from trading.config.types import AlgoConfig


class Command(BaseCommand):
    help = (
        "Validate config/algo.yml (with the Setting algo.overrides) and config/charges.yml; "
        "print the effective algo config and the versions. Exit code 1 when invalid."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--file", type=Path, help="algo config file (default: ALGO_CONFIG_FILE)"
        )
        parser.add_argument(
            "--overrides",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="apply the overrides stored in the database (default) or check the file alone",
        )
        parser.add_argument(
            "--charges", type=Path, help="charges file (default: CHARGES_CONFIG_FILE)"
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        problems: list[str] = []
        algo_file = opts["file"] or Path(settings.ALGO_CONFIG_FILE)
        charges_file = opts["charges"] or Path(settings.CHARGES_CONFIG_FILE)
        read = len(problems)
        overrides = self._overrides(problems) if opts["overrides"] else None
        database = opts["overrides"] and len(problems) == read  # the database answered
        config = self._algo(algo_file, overrides, problems)
        charges = self._charges(charges_file, problems)
        warnings = self._catalog(config, problems) if database and config is not None else []
        if problems:
            for line in problems:
                self.stderr.write(line)
            raise CommandError(f"invalid configuration: {len(problems)} problem(s)", returncode=1)
        assert config is not None and charges is not None  # no problems: both loaded
        for line in [*config.exits.safety_off(), *warnings]:  # valid, but said
            self.stderr.write(f"warning: {line}")
        with_overrides = f" + {OVERRIDES_SOURCE}" if overrides else ""
        self.stdout.write(f"# effective algo config: {algo_file}{with_overrides}")
        self.stdout.write(yaml.safe_dump(config_as_dict(config), sort_keys=False).rstrip())
        self.stdout.write(f"# algo config version: {config.version}")
        self.stdout.write(
            f"# charges: {charges_file}, version {charges.version}, "
            f"{len(charges.rates)} rate set(s)"
        )

    @staticmethod
    def _overrides(problems: list[str]) -> Any:
        try:
            return stored_overrides()
        except DatabaseError as exc:
            problems.append(
                f"{OVERRIDES_SOURCE}: cannot read the database ({exc}); "
                "run migrate, or pass --no-overrides to check the file alone"
            )
            return None

    @staticmethod
    def _algo(path: Path, overrides: Any, problems: list[str]) -> AlgoConfig | None:
        try:
            return load_algo_file(path, overrides)
        except ConfigError as exc:
            problems.extend(exc.problems)
            return None

    @staticmethod
    def _catalog(config: AlgoConfig, problems: list[str]) -> list[str]:
        """Each index of the config in the catalog (instruments.catalog.index_by_name, as the
        signal engine resolves it): an enabled one missing is a problem; returns the warnings
        (a disabled one missing, a catalog with no index, a catalog that cannot be read)."""
        from instruments.catalog import CatalogError, index_by_name
        from instruments.models import ExchangeSegment, Instrument

        try:
            indices = Instrument.objects.filter(
                exchange_segment=ExchangeSegment.IDX_I, is_active=True
            )
            if not indices.exists():
                return [
                    "catalog: it lists no index (import it: manage.py import_instruments); "
                    "the index keys were not checked"
                ]
            missing = []
            for index in config.indices:
                try:
                    index_by_name(index.key)
                except CatalogError:
                    missing.append(index)
        except DatabaseError as exc:
            return [f"catalog: not read ({first_line(exc)}); the index keys were not checked"]
        warnings = []
        for index in missing:
            line = f"catalog: indices.{index.key}: no index named {index.key!r} in the catalog"
            if index.enabled:
                problems.append(f"{line}; the signal engine would skip it (fix the key)")
            else:
                warnings.append(f"{line} (the index is disabled)")
        return warnings

    @staticmethod
    def _charges(path: Path, problems: list[str]) -> Any:
        from trading.charges import load_charges_config

        try:
            return load_charges_config(path)
        except ConfigError as exc:
            problems.extend(exc.problems)
            return None
