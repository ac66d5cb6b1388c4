"""instruments.synthetic: generated scrip masters are in Dhan's exact style and import cleanly."""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path

import pytest

import instruments
from instruments.models import Derivative, Instrument
from instruments.synthetic import (
    COMPACT_HEADER,
    generate,
    last_weekday_of_month,
    main,
    monthly_expiries,
    weekly_expiries,
    write_compact,
)

pytestmark = [pytest.mark.catalog]

TODAY = date(2026, 11, 23)  # a Monday
DEMO = Path(instruments.__file__).resolve().parent / "fixtures" / "demo_scrip_master.csv"
TUESDAY, THURSDAY = 1, 3


def written(rows: object) -> str:
    out = io.StringIO()
    write_compact(out, rows)
    return out.getvalue()


def records(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture(scope="module")
def small_demo() -> str:
    return written(
        generate(TODAY, strikes_each_side=3, weeklies=2, monthlies=2, stocks=4, extras=True)
    )


# -- format -------------------------------------------------------------------------------------


def test_the_header_is_dhans_compact_header():
    assert ",".join(COMPACT_HEADER) == (
        "SEM_EXM_EXCH_ID,SEM_SEGMENT,SEM_SMST_SECURITY_ID,SEM_INSTRUMENT_NAME,SEM_EXPIRY_CODE,"
        "SEM_TRADING_SYMBOL,SEM_LOT_UNITS,SEM_CUSTOM_SYMBOL,SEM_EXPIRY_DATE,SEM_STRIKE_PRICE,"
        "SEM_OPTION_TYPE,SEM_TICK_SIZE,SEM_EXPIRY_FLAG,SEM_EXCH_INSTRUMENT_TYPE,SEM_SERIES,"
        "SM_SYMBOL_NAME"
    )


def test_rows_are_written_in_the_real_files_style(small_demo):
    rows = records(small_demo)
    nifty = next(r for r in rows if r["SEM_TRADING_SYMBOL"] == "NIFTY")
    assert (nifty["SEM_EXPIRY_DATE"], nifty["SEM_TICK_SIZE"], nifty["SEM_OPTION_TYPE"]) == (
        "0001-01-01",
        "0.05",
        "XX",
    )
    sensex = next(r for r in rows if r["SEM_TRADING_SYMBOL"] == "SENSEX")
    assert (sensex["SEM_SMST_SECURITY_ID"], sensex["SEM_TICK_SIZE"]) == ("51", "0.01")

    option = next(r for r in rows if r["SEM_TRADING_SYMBOL"].startswith("NIFTY-"))
    assert option["SEM_STRIKE_PRICE"].endswith(".00000")
    assert (option["SEM_TICK_SIZE"], option["SEM_LOT_UNITS"]) == ("5.0000", "65.0")
    assert option["SEM_EXPIRY_DATE"].endswith(" 14:30:00")
    assert (option["SEM_EXCH_INSTRUMENT_TYPE"], option["SM_SYMBOL_NAME"]) == ("OP", "")

    future = next(r for r in rows if r["SEM_INSTRUMENT_NAME"] == "FUTIDX")
    assert (future["SEM_STRIKE_PRICE"], future["SEM_OPTION_TYPE"]) == ("-0.01000", "XX")
    assert future["SEM_TRADING_SYMBOL"].endswith("-FUT")

    bse = next(r for r in rows if r["SEM_TRADING_SYMBOL"].startswith("SENSEX-"))
    assert (bse["SEM_EXCH_INSTRUMENT_TYPE"], bse["SM_SYMBOL_NAME"]) == ("OPTIDX", "BSXOPT")
    assert bse["SEM_EXPIRY_DATE"].endswith(" 15:30:00")


def test_weekly_expiries_fall_on_the_exchanges_expiry_day(small_demo):
    rows = records(small_demo)

    def weekdays(prefix: str) -> set[int]:
        return {
            date.fromisoformat(r["SEM_EXPIRY_DATE"][:10]).weekday()
            for r in rows
            if r["SEM_TRADING_SYMBOL"].startswith(prefix) and r["SEM_OPTION_TYPE"] in ("CE", "PE")
        }

    assert weekdays("NIFTY-") == {TUESDAY}
    assert weekdays("SENSEX-") == {THURSDAY}


def test_expiry_calendars():
    assert last_weekday_of_month(2026, 11, TUESDAY) == date(2026, 11, 24)
    assert monthly_expiries(TODAY, TUESDAY, 2) == [date(2026, 11, 24), date(2026, 12, 29)]
    assert monthly_expiries(date(2026, 11, 25), TUESDAY, 1) == [date(2026, 12, 29)]
    assert weekly_expiries(TODAY, THURSDAY, 2) == [date(2026, 11, 26), date(2026, 12, 3)]


def test_the_same_seed_writes_the_same_file():
    first = written(generate(TODAY, rows=9000, strikes_each_side=1, weeklies=1, monthlies=1))
    again = written(generate(TODAY, rows=9000, strikes_each_side=1, weeklies=1, monthlies=1))
    assert first == again


def test_the_command_line_writes_the_requested_rows(capsys):
    assert main(["--rows", "300", "--today", "2026-11-23"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ",".join(COMPACT_HEADER)
    assert len(lines) == 301


# -- imports ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_generated_file_has_the_requested_rows_and_imports_without_rejects(
    import_file, write_file
):
    # Past the 8,008 index and equity rows, so index and stock F&O are included too.
    text = written(generate(TODAY, rows=9000, strikes_each_side=2, weeklies=2, monthlies=2))
    assert len(text.splitlines()) == 9001
    path = write_file("synthetic.csv", text)

    stats = import_file(path).stats

    assert (stats["rows_read"], stats["accepted"]) == (9000, 9000)
    assert (stats["rejected"], stats["dropped"]) == ({}, {})
    assert stats["totals"]["total"] == 9000
    assert set(stats["totals"]["by_instrument"]) == {
        "INDEX",
        "EQUITY",
        "OPTIDX",
        "FUTIDX",
        "OPTSTK",
        "FUTSTK",
    }
    assert not Derivative.objects.filter(underlying__isnull=True).exists()
    nifty_option = Derivative.objects.filter(underlying_symbol="NIFTY", option_type="CE").first()
    assert nifty_option.underlying.key == "IDX_I:13"


@pytest.mark.django_db
def test_the_generated_demo_drops_one_test_instrument_and_one_mcx_row(
    import_file, write_file, small_demo
):
    stats = import_file(write_file("demo.csv", small_demo)).stats
    assert stats["rows_read"] == len(small_demo.splitlines()) - 1
    assert stats["rejected"] == {}
    assert stats["dropped"] == {"test instrument": 1, "exchange MCX not enabled": 1}


@pytest.mark.django_db
def test_the_shipped_demo_catalog_imports_cleanly(import_file):
    lines = DEMO.read_text(encoding="utf-8").splitlines()

    stats = import_file(DEMO).stats

    assert stats["rows_read"] == len(lines) - 1
    assert stats["accepted"] == len(lines) - 3
    assert stats["rejected"] == {}
    assert stats["dropped"] == {"test instrument": 1, "exchange MCX not enabled": 1}
    nifty = Instrument.objects.get(exchange_segment="IDX_I", security_id=13)
    assert nifty.trading_symbol == "NIFTY"
    assert nifty.derivatives.filter(option_type="CE").exists()
    sensex = Instrument.objects.get(exchange_segment="IDX_I", security_id=51)
    assert sensex.derivatives.filter(exchange_segment="BSE_FNO").exists()
