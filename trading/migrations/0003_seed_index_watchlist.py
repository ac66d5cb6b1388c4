"""Seed the watchlist with the four traded indices (Dhan security ids from the scrip master:
NIFTY 13, BANKNIFTY 25, FINNIFTY 27, SENSEX 51, all IDX_I). Rows an operator already has are
left as they are; reversing removes only untouched seed rows."""

from django.db import migrations

SEED = [
    ("IDX_I", 13, "NIFTY"),
    ("IDX_I", 25, "BANKNIFTY"),
    ("IDX_I", 27, "FINNIFTY"),
    ("IDX_I", 51, "SENSEX"),
]


def seed(apps, schema_editor):  # noqa: ANN001, ANN201 - migration signature
    item = apps.get_model("trading", "WatchlistItem")
    for segment, security_id, label in SEED:
        item.objects.get_or_create(
            exchange_segment=segment, security_id=security_id, defaults={"label": label}
        )


def unseed(apps, schema_editor):  # noqa: ANN001, ANN201 - migration signature
    item = apps.get_model("trading", "WatchlistItem")
    for segment, security_id, label in SEED:
        item.objects.filter(
            exchange_segment=segment, security_id=security_id, label=label, mode=""
        ).delete()


class Migration(migrations.Migration):
    dependencies = [("trading", "0002_realtime")]
    operations = [migrations.RunPython(seed, unseed)]
