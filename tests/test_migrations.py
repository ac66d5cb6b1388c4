"""Every model change ships with its migration (a missing one would break a deploy's migrate)."""

import io

import pytest
from django.core.management import call_command


@pytest.mark.catalog
@pytest.mark.django_db
def test_no_model_change_is_missing_a_migration():
    out = io.StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=out)
    except SystemExit as exc:
        pytest.fail(f"makemigrations --check found changes without a migration:\n{out.getvalue()}")
        raise AssertionError from exc
