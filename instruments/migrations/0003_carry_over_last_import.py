"""Move the last import's stats from the trading app's ``Setting`` rows into ``CatalogImport``.

Before this, the importer kept its stats in ``Setting`` rows (``instruments.last_import``, with
``instruments.last_imported_at`` beside it). Carrying the last one over keeps the catalog's age
(``instruments_status``) and the unchanged-file shortcut working across the upgrade; the old rows
are then removed, as nothing reads them any more.

The catalog's code never imports the trading app. This migration reaches its table only by name,
through the migration state, and depends on trading's first migration only when that app is
installed (the pattern of Django's "migrating data between third-party apps" how-to): the
catalog still migrates on its own. A stats row that does not parse (edited by hand) is dropped
rather than failing the deploy's migrate: the next import writes a fresh one.

Reversing writes the old rows back from the latest import, so the previous release finds them.
"""

from datetime import datetime, timedelta

from django.apps import apps as global_apps
from django.db import migrations
from django.utils import timezone

LAST_IMPORT = "instruments.last_import"
LAST_IMPORTED_AT = "instruments.last_imported_at"
COUNTS = ("rows_read", "accepted", "inserted", "updated", "unchanged", "removed", "flagged_inactive")
MAPPINGS = ("rejected", "dropped", "totals", "phases_seconds")


def _count(value):
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _moment(text):
    """An aware datetime from the stats' ISO text, or None."""
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo is not None else None


def _row(stats):
    """CatalogImport fields from the old stats dict, or None when it does not parse."""
    if not isinstance(stats, dict):
        return None
    started_at = _moment(stats.get("imported_at"))
    if started_at is None:
        return None
    duration = stats.get("duration_seconds")
    duration = float(duration) if isinstance(duration, int | float) and duration >= 0 else 0.0
    samples = stats.get("rejected_samples")
    return {
        "started_at": started_at,
        "finished_at": started_at + timedelta(seconds=duration),
        "outcome": "imported",
        "source": str(stats.get("source", "")),
        "file_format": str(stats.get("format", ""))[:64],
        "fingerprint": str(stats.get("fingerprint", ""))[:64],
        "duration_seconds": duration,
        "rejected_samples": samples if isinstance(samples, list) else [],
        **{name: _count(stats.get(name)) for name in COUNTS},
        **{
            name: stats[name] if isinstance(stats.get(name), dict) else {}
            for name in MAPPINGS
        },
    }


def _setting_model(apps):
    try:
        return apps.get_model("trading", "Setting")
    except LookupError:  # the trading app is not installed: there is nothing to carry
        return None


def carry_over(apps, schema_editor):
    setting = _setting_model(apps)
    if setting is None:
        return
    stats = setting.objects.filter(key=LAST_IMPORT).values_list("value", flat=True).first()
    row = _row(stats)
    if row is not None:
        apps.get_model("instruments", "CatalogImport").objects.create(**row)
    setting.objects.filter(key__in=[LAST_IMPORT, LAST_IMPORTED_AT]).delete()


def restore(apps, schema_editor):
    setting = _setting_model(apps)
    if setting is None:
        return
    catalog_import = apps.get_model("instruments", "CatalogImport")
    last = catalog_import.objects.filter(outcome="imported").order_by("-started_at", "-id").first()
    if last is None:
        return
    imported_at = timezone.localtime(last.started_at).isoformat()
    stats = {
        "imported_at": imported_at,
        "duration_seconds": last.duration_seconds,
        "source": last.source,
        "format": last.file_format,
        "fingerprint": last.fingerprint,
        **{name: getattr(last, name) for name in COUNTS},
        "rejected": last.rejected,
        "dropped": last.dropped,
        "rejected_samples": last.rejected_samples,
        "totals": last.totals,
        "phases_seconds": last.phases_seconds,
    }
    setting.objects.update_or_create(key=LAST_IMPORT, defaults={"value": stats})
    setting.objects.update_or_create(key=LAST_IMPORTED_AT, defaults={"value": imported_at})


class Migration(migrations.Migration):
    dependencies = [("instruments", "0002_catalog_import")]
    if global_apps.is_installed("trading"):
        dependencies.append(("trading", "0001_initial"))

    operations = [migrations.RunPython(carry_over, restore)]
