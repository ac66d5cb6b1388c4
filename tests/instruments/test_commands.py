"""The catalog's management commands: import_instruments, instruments_status, clear_instruments."""

from __future__ import annotations

import io
import json
import os
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.management import ManagementUtility, call_command
from django.core.management.base import CommandError

from instruments.importer import last_import
from instruments.models import CatalogImport, Derivative, Instrument
from instruments.source import cache_path
from tests.support.rows import hold

# Every test here imports more than once: each import must commit, as in production.
pytestmark = [pytest.mark.catalog, pytest.mark.django_db(transaction=True)]

IST = ZoneInfo("Asia/Kolkata")
BEFORE_ANY_EXPIRY = datetime(2024, 10, 1, 10, 0, tzinfo=IST)
EXPIRING_BY_11_OCT = {35036, 35037, 44428, 44429, 44430, 44431, 44432, 44433, 1123771, 1123772}
STATUS_KEYS = {"last_imported_at", "age_seconds", "stale", "total", "counts", "last_failure"}


def run(name: str, *args: str) -> tuple[str, str]:
    """Run a command as `manage.py name args`; returns (stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    call_command(name, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def run_json(name: str, *args: str) -> dict:
    out, _ = run(name, *args, "--json")
    return json.loads(out)


def status_exit_code(*args: str) -> int:
    """instruments_status's exit code (it calls sys.exit(1) when empty or stale)."""
    try:
        run("instruments_status", *args)
    except SystemExit as exc:
        return exc.code
    return 0


# -- import_instruments -------------------------------------------------------------------------


def test_import_prints_a_summary(compact_file):
    out, _ = run("import_instruments", "--file", str(compact_file))

    assert f"Imported file {compact_file} [compact (16 columns)]" in out
    assert "rows read 22: inserted 20, updated 0, unchanged 0; removed 0" in out
    assert "dropped: exchange MCX not enabled 1, test instrument 1" in out
    assert "catalog: 20 contracts" in out
    assert "NSE_FNO" in out
    assert Derivative.objects.count() == 15


def test_import_says_how_many_stored_contracts_its_rejected_rows_kept(
    compact_file, compact_variant
):
    run("import_instruments", "--file", str(compact_file))
    bad = compact_variant(change={44428: {"SEM_LOT_UNITS": "abc"}})
    out, _ = run("import_instruments", "--file", str(bad), "--max-bad-row-share", "0.1")
    assert "rejected: lot_size 1" in out
    assert "stored contracts kept as they were because their rows were rejected: 1" in out
    assert "removed 0" in out
    assert Derivative.objects.filter(security_id=44428).exists()


def test_import_json_output_parses(compact_file):
    summary = run_json("import_instruments", "--file", str(compact_file))

    assert summary["status"] == "imported"
    assert (summary["rows_read"], summary["accepted"], summary["inserted"]) == (22, 20, 20)
    assert summary["totals"]["by_segment"]["IDX_I"] == 3
    assert summary["dropped"] == {"test instrument": 1, "exchange MCX not enabled": 1}


def test_import_of_the_same_file_is_unchanged_unless_forced(compact_file):
    run("import_instruments", "--file", str(compact_file))

    out, _ = run("import_instruments", "--file", str(compact_file))
    assert out.startswith(f"Unchanged: file {compact_file} is the file imported at")
    assert "use --force to re-import" in out
    assert run_json("import_instruments", "--file", str(compact_file))["status"] == "unchanged"

    forced = run_json("import_instruments", "--file", str(compact_file), "--force")
    assert (forced["status"], forced["unchanged"]) == ("imported", 20)


def test_import_downloads_from_a_url(compact_file, http_server):
    url = http_server.serve("/detailed-or-not.csv", compact_file.read_bytes())

    summary = run_json("import_instruments", "--url", url)

    assert summary["status"] == "imported"
    assert url in summary["source"]
    assert http_server.requests == ["/detailed-or-not.csv"]
    assert Instrument.objects.filter(exchange_segment="IDX_I", security_id=13).exists()


def test_import_without_a_source_uses_dhans_url_from_settings(compact_file, http_server, settings):
    settings.INSTRUMENTS_SCRIP_MASTER_URL = http_server.serve(
        "/api-scrip-master.csv", compact_file.read_bytes()
    )
    assert run_json("import_instruments")["accepted"] == 20
    assert run_json("import_instruments")["status"] == "unchanged"  # fresh cache, same file
    assert http_server.requests == ["/api-scrip-master.csv"]


def test_import_warns_on_stderr_when_it_falls_back_to_the_cache(
    compact_file, http_server, settings
):
    url = http_server.serve("/api-scrip-master.csv", b"", status=500)
    settings.INSTRUMENTS_SCRIP_MASTER_URL = url
    cached = cache_path(settings.INSTRUMENTS_CACHE_DIR, url)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(compact_file.read_bytes())
    then = time.time() - 48 * 3600
    os.utime(cached, (then, then))

    out, err = run("import_instruments")

    assert "Imported cached copy of" in out
    assert "warning: download of" in err
    assert "HTTP 500" in err


def test_import_refuses_file_and_url_together(compact_file):
    with pytest.raises(CommandError, match="not allowed with argument"):
        run("import_instruments", "--file", str(compact_file), "--url", "http://127.0.0.1:9/x")


def test_import_bad_row_share_can_be_raised_for_one_run(compact_variant):
    two_bad = compact_variant(change={44428: {"SEM_LOT_UNITS": "x"}, 44429: {"SEM_LOT_UNITS": "x"}})
    with pytest.raises(CommandError, match="2 of 22 rows are malformed"):
        run("import_instruments", "--file", str(two_bad))

    out, _ = run("import_instruments", "--file", str(two_bad), "--max-bad-row-share", "0.1")
    assert "rejected: lot_size 2" in out
    assert "line 8: lot_size: " in out
    assert "line 9: lot_size: " in out
    assert Derivative.objects.count() == 13


@pytest.mark.parametrize("share", ["1.5", "-0.1"])
def test_import_rejects_a_bad_row_share_outside_zero_to_one(compact_file, share):
    with pytest.raises(CommandError, match="--max-bad-row-share must be between 0 and 1"):
        run("import_instruments", "--file", str(compact_file), "--max-bad-row-share", share)
    assert not Instrument.objects.exists()


def test_import_large_removal_needs_the_flag(compact_file, compact_variant, snapshot, freeze):
    freeze(BEFORE_ANY_EXPIRY)
    run("import_instruments", "--file", str(compact_file))
    before = snapshot()
    smaller = str(compact_variant(drop=EXPIRING_BY_11_OCT))

    with pytest.raises(CommandError) as caught:
        run("import_instruments", "--file", smaller)
    assert "import failed, the catalog is unchanged" in str(caught.value)
    assert "refusing to remove 10 of 20 contracts" in str(caught.value)
    assert "--allow-large-removal" in str(caught.value)
    assert snapshot() == before

    summary = run_json("import_instruments", "--file", smaller, "--allow-large-removal")
    assert (summary["status"], summary["removed"]) == ("imported", 10)


def test_import_keeps_mcx_when_the_config_file_enables_it(compact_file, edit_config):
    edit_config(lambda data: data["filter"].update(exchanges=["NSE", "BSE", "MCX"]))

    summary = run_json("import_instruments", "--file", str(compact_file))

    assert summary["dropped"] == {"test instrument": 1}
    assert summary["totals"]["by_segment"]["MCX_COMM"] == 1
    assert Derivative.objects.filter(exchange="MCX", security_id=447777).exists()


def test_import_guards_come_from_the_config_file(
    compact_file, compact_variant, edit_config, freeze
):
    freeze(BEFORE_ANY_EXPIRY)
    edit_config(lambda data: data["guards"].update(max_removal_share=0.6))
    run("import_instruments", "--file", str(compact_file))

    summary = run_json(
        "import_instruments", "--file", str(compact_variant(drop=EXPIRING_BY_11_OCT))
    )

    assert summary["removed"] == 10  # 50% of the unexpired catalog, under the configured 60%


def test_import_with_an_invalid_config_fails_naming_the_key(compact_file, edit_config):
    edit_config(lambda data: data["guards"].update(max_bad_row_share=2))
    with pytest.raises(CommandError) as caught:
        run("import_instruments", "--file", str(compact_file))
    assert "instruments.yml: guards.max_bad_row_share: expected a number between 0 and 1" in str(
        caught.value
    )
    assert not Instrument.objects.exists()


def test_import_of_a_corrupted_file_fails_and_changes_nothing(
    corruption, compact_file, write_file, snapshot, freeze
):
    freeze(BEFORE_ANY_EXPIRY)
    run("import_instruments", "--file", str(compact_file))
    before = snapshot()
    bad = write_file("bad.csv", corruption.build(compact_file.read_bytes()))

    with pytest.raises(CommandError) as caught:
        run("import_instruments", "--file", str(bad))

    message = str(caught.value)
    assert message.startswith("import failed, the catalog is unchanged: ")
    for fragment in corruption.message:
        assert fragment in message
    assert snapshot() == before


def test_import_of_a_bad_file_exits_non_zero_from_the_command_line(
    compact_file, write_file, snapshot, capsys
):
    run("import_instruments", "--file", str(compact_file))
    before = snapshot()
    html = write_file("page.csv", b"<html><body>Service Unavailable</body></html>\n")

    with pytest.raises(SystemExit) as exited:
        ManagementUtility(["manage.py", "import_instruments", "--file", str(html)]).execute()

    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "CommandError: import failed, the catalog is unchanged" in err
    assert "HTML page" in err
    assert snapshot() == before


def test_import_of_a_missing_file_fails_clearly(tmp_path):
    with pytest.raises(CommandError, match=r"nowhere\.csv: no such file"):
        run("import_instruments", "--file", str(tmp_path / "nowhere.csv"))


def test_import_of_a_directory_says_it_is_a_directory(tmp_path):
    folder = tmp_path / "adir.csv"
    folder.mkdir()
    with pytest.raises(CommandError) as caught:
        run("import_instruments", "--file", str(folder))
    assert str(caught.value) == (
        f"import failed, the catalog is unchanged: {folder}: is a directory, not a scrip "
        "master file"
    )
    assert CatalogImport.objects.get().error == f"{folder}: is a directory, not a scrip master file"


def test_import_of_a_file_with_a_huge_field_names_the_line(compact_variant):
    longline = compact_variant(change={2885: {"SEM_CUSTOM_SYMBOL": "R" * 200_000}})
    with pytest.raises(CommandError) as caught:
        run("import_instruments", "--file", str(longline))
    # RELIANCE is the fixture's fifth line.
    assert f"{longline.name}: line 5: unreadable CSV (field larger than field limit" in str(
        caught.value
    )


# -- instruments_status -------------------------------------------------------------------------


def test_status_of_an_empty_catalog_exits_1():
    assert status_exit_code() == 1
    assert status_exit_code("--json") == 1


def test_status_says_empty_in_words(capsys):
    out = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("instruments_status", stdout=out)
    assert "Catalog is EMPTY" in out.getvalue()


def test_status_json_of_an_empty_catalog():
    out = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("instruments_status", "--json", stdout=out)
    assert exited.value.code == 1
    status = json.loads(out.getvalue())
    assert set(status) == STATUS_KEYS
    assert (status["total"], status["stale"], status["last_imported_at"]) == (0, True, None)
    assert status["counts"] == {"by_segment": {}, "by_instrument": {}}
    assert status["last_failure"] is None


def test_status_of_a_fresh_catalog_exits_0_with_its_counts(compact_file, freeze):
    freeze(BEFORE_ANY_EXPIRY)
    run("import_instruments", "--file", str(compact_file))
    freeze(BEFORE_ANY_EXPIRY + timedelta(hours=1))

    status = run_json("instruments_status")  # returns: exit code 0

    assert set(status) == STATUS_KEYS
    assert status["last_imported_at"] == "2024-10-01T10:00:00+05:30"
    assert (status["age_seconds"], status["stale"], status["total"]) == (3600.0, False, 20)
    assert set(status["counts"]) == {"by_segment", "by_instrument"}
    assert status["counts"]["by_segment"] == {
        "BSE_EQ": 1,
        "BSE_FNO": 2,
        "IDX_I": 3,
        "NSE_EQ": 1,
        "NSE_FNO": 13,
    }
    assert status["counts"]["by_instrument"]["OPTIDX"] == 12
    out, _ = run("instruments_status")
    assert "Catalog: 20 active contracts" in out
    assert "fresh" in out
    assert status_exit_code() == 0


def test_status_older_than_24_hours_is_stale_and_exits_1(compact_file, freeze):
    freeze(BEFORE_ANY_EXPIRY)
    run("import_instruments", "--file", str(compact_file))
    freeze(BEFORE_ANY_EXPIRY + timedelta(hours=23, minutes=59))
    assert status_exit_code() == 0
    freeze(BEFORE_ANY_EXPIRY + timedelta(hours=25))

    out = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("instruments_status", "--json", stdout=out)

    assert exited.value.code == 1
    status = json.loads(out.getvalue())
    assert (status["stale"], status["age_seconds"], status["total"]) == (True, 90000.0, 20)
    text = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("instruments_status", stdout=text)
    assert "STALE" in text.getvalue()


def test_an_unchanged_import_does_not_refresh_the_age(compact_file, freeze):
    # "unchanged" writes nothing, so the status keeps the time of the last real import.
    freeze(BEFORE_ANY_EXPIRY)
    run("import_instruments", "--file", str(compact_file))
    freeze(BEFORE_ANY_EXPIRY + timedelta(hours=2))
    run("import_instruments", "--file", str(compact_file))
    assert last_import().started_at == BEFORE_ANY_EXPIRY
    assert CatalogImport.objects.count() == 1
    assert run_json("instruments_status")["age_seconds"] == 7200.0


def test_status_shows_a_refresh_that_failed_since_the_last_import(
    compact_file, compact_variant, freeze
):
    freeze(BEFORE_ANY_EXPIRY)
    run("import_instruments", "--file", str(compact_file))
    freeze(BEFORE_ANY_EXPIRY + timedelta(hours=1))
    smaller = str(compact_variant(drop=EXPIRING_BY_11_OCT))
    with pytest.raises(CommandError):
        run("import_instruments", "--file", smaller)

    out, _ = run("instruments_status")  # still fresh: the catalog it kept is an hour old

    assert "Catalog: 20 active contracts, last imported 2024-10-01T10:00:00+05:30" in out
    assert (
        f"Last run FAILED at 2024-10-01T11:00:00+05:30 (file {smaller}): "
        f"{os.path.basename(smaller)}: refusing to remove 10 of 20 contracts"
    ) in out
    status = run_json("instruments_status")
    assert status["last_failure"]["at"] == "2024-10-01T11:00:00+05:30"
    assert "--allow-large-removal" in status["last_failure"]["error"]


def test_status_of_an_empty_catalog_shows_why_the_import_failed(tmp_path, freeze):
    freeze(BEFORE_ANY_EXPIRY)
    with pytest.raises(CommandError):
        run("import_instruments", "--file", str(tmp_path / "nowhere.csv"))
    out = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("instruments_status", stdout=out)
    assert out.getvalue().splitlines() == [
        "Catalog is EMPTY: run `manage.py import_instruments`.",
        f"Last run FAILED at 2024-10-01T10:00:00+05:30 (file {tmp_path / 'nowhere.csv'}): "
        f"{tmp_path / 'nowhere.csv'}: no such file",
    ]


# -- clear_instruments --------------------------------------------------------------------------


def test_clear_refuses_without_yes(compact_file, snapshot):
    run("import_instruments", "--file", str(compact_file))
    before = snapshot()
    with pytest.raises(CommandError, match="refusing to clear the catalog without --yes"):
        run("clear_instruments")
    assert snapshot() == before


def test_clear_deletes_an_unreferenced_catalog(compact_file):
    run("import_instruments", "--file", str(compact_file))

    out, _ = run("clear_instruments", "--yes")

    assert "deleted 20 contracts, kept 0 still referenced" in out
    assert not Instrument.objects.exists()
    assert not Derivative.objects.exists()
    assert status_exit_code() == 1


def test_clear_keeps_referenced_contracts_flagged_inactive(compact_file):
    run("import_instruments", "--file", str(compact_file))
    held = Derivative.objects.get(security_id=44430)
    position = hold(held)  # one lot: 25

    out, _ = run("clear_instruments", "--yes")

    # The held option, and NIFTY which that option still points at, stay (inactive).
    assert "deleted 18 contracts, kept 2 still referenced (flagged inactive)" in out
    assert list(Derivative.objects.values_list("security_id", "is_active")) == [(44430, False)]
    assert list(Instrument.objects.values_list("security_id", "is_active")) == [(13, False)]
    position.refresh_from_db()
    assert position.derivative_id == held.id
