"""instruments migration 0003: the last import's stats move from trading's Setting rows into
CatalogImport, and back when the migration is reversed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.apps.registry import Apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from instruments.importer import catalog_status, last_import
from instruments.models import CatalogImport

pytestmark = [pytest.mark.catalog, pytest.mark.django_db(transaction=True)]

IST = ZoneInfo("Asia/Kolkata")
BEFORE = ("instruments", "0002_catalog_import")
AFTER = ("instruments", "0003_carry_over_last_import")
OLD_KEYS = ["instruments.last_import", "instruments.last_imported_at"]
# What the importer stored in Setting before CatalogImport existed (one real run's shape).
OLD_STATS = {
    "imported_at": "2024-10-01T10:00:00+05:30",
    "duration_seconds": 1.5,
    "source": "https://images.dhan.co/api-data/api-scrip-master.csv (123,456 bytes downloaded)",
    "format": "compact (16 columns)",
    "fingerprint": "ab" * 32,
    "rows_read": 22,
    "accepted": 20,
    "inserted": 3,
    "updated": 2,
    "unchanged": 15,
    "removed": 1,
    "flagged_inactive": 1,
    "rejected": {"lot_size": 2},
    "dropped": {"test instrument": 1},
    "rejected_samples": [{"line": 8, "reason": "lot_size", "detail": "'lots' is not a number"}],
    "totals": {"total": 20, "by_segment": {"IDX_I": 3}, "by_instrument": {"INDEX": 3}},
    "phases_seconds": {"load_catalog_index": 0.1, "parse_and_write": 1.2},
}


@pytest.fixture
def migrate() -> Iterator:
    """migrate(target) -> the historical apps at that migration; the schema is restored after."""

    def to(target: tuple[str, str] | None) -> Apps:
        """None: the latest migrations (where the current models, and the importer, apply)."""
        executor = MigrationExecutor(connection)
        if target is None:
            executor.migrate(executor.loader.graph.leaf_nodes())
            return executor.loader.project_state().apps
        executor.migrate([target])
        # The catalog's own graph does not reach trading: add trading's state for its Setting.
        trading = [node for node in executor.loader.graph.leaf_nodes() if node[0] == "trading"]
        return executor.loader.project_state([target, *trading]).apps

    yield to
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def old_rows(apps: Apps) -> dict:
    setting = apps.get_model("trading", "Setting")
    return dict(setting.objects.filter(key__in=OLD_KEYS).values_list("key", "value"))


def test_the_last_import_moves_into_catalog_import_and_the_old_rows_go(migrate):
    apps = migrate(BEFORE)
    setting = apps.get_model("trading", "Setting")
    setting.objects.create(key="instruments.last_import", value=OLD_STATS)
    setting.objects.create(key="instruments.last_imported_at", value=OLD_STATS["imported_at"])
    setting.objects.create(key="trading.kill_switch", value={"on": False})

    apps = migrate(AFTER)

    # The row as 0003 wrote it, through 0003's model (later migrations add columns).
    moved = apps.get_model("instruments", "CatalogImport").objects.get()
    assert moved.outcome == CatalogImport.Outcome.IMPORTED
    assert moved.started_at == datetime(2024, 10, 1, 10, 0, tzinfo=IST)
    assert (moved.finished_at - moved.started_at).total_seconds() == 1.5
    assert (moved.source, moved.file_format) == (OLD_STATS["source"], "compact (16 columns)")
    assert moved.fingerprint == "ab" * 32
    assert (moved.rows_read, moved.accepted, moved.inserted, moved.updated) == (22, 20, 3, 2)
    assert (moved.unchanged, moved.removed, moved.flagged_inactive) == (15, 1, 1)
    assert (moved.rejected, moved.dropped) == (OLD_STATS["rejected"], OLD_STATS["dropped"])
    assert moved.rejected_samples == OLD_STATS["rejected_samples"]
    assert moved.totals == OLD_STATS["totals"]
    assert moved.phases_seconds == OLD_STATS["phases_seconds"]
    assert old_rows(apps) == {}
    # Someone else's row is left alone.
    assert apps.get_model("trading", "Setting").objects.get(key="trading.kill_switch").value == {
        "on": False
    }
    migrate(None)
    assert last_import().pk == moved.pk
    assert catalog_status()["last_imported_at"] == "2024-10-01T10:00:00+05:30"


def test_reversing_writes_the_old_rows_back_from_the_latest_import(migrate):
    apps = migrate(BEFORE)
    apps.get_model("trading", "Setting").objects.create(
        key="instruments.last_import", value=OLD_STATS
    )
    migrate(AFTER)

    apps = migrate(BEFORE)

    assert old_rows(apps) == {
        "instruments.last_import": OLD_STATS,
        "instruments.last_imported_at": "2024-10-01T10:00:00+05:30",
    }


@pytest.mark.parametrize(
    "value",
    [
        "not a dict",
        {"imported_at": "yesterday"},
        {"imported_at": "2024-10-01T10:00:00"},  # no offset: which day it was is unknown
        {"source": "no time at all"},
    ],
    ids=["text", "unparsable time", "naive time", "no time"],
)
def test_stats_that_do_not_parse_are_dropped_without_failing_the_migrate(migrate, value):
    apps = migrate(BEFORE)
    setting = apps.get_model("trading", "Setting")
    setting.objects.create(key="instruments.last_import", value=value)
    setting.objects.create(key="instruments.last_imported_at", value="whenever")

    apps = migrate(AFTER)

    assert not CatalogImport.objects.exists()
    assert old_rows(apps) == {}


def test_odd_counts_in_the_old_stats_become_zero(migrate):
    apps = migrate(BEFORE)
    stats = {**OLD_STATS, "rows_read": "22", "inserted": -3, "updated": True, "rejected": [1]}
    apps.get_model("trading", "Setting").objects.create(key="instruments.last_import", value=stats)

    apps = migrate(AFTER)

    moved = apps.get_model("instruments", "CatalogImport").objects.get()
    assert (moved.rows_read, moved.inserted, moved.updated, moved.accepted) == (0, 0, 0, 20)
    assert moved.rejected == {}


def test_with_nothing_to_carry_the_migration_writes_nothing(migrate):
    apps = migrate(BEFORE)
    migrate(AFTER)
    assert not CatalogImport.objects.exists()
    assert old_rows(apps) == {}
