"""instruments.importer: atomic, guarded imports into the catalog (PostgreSQL and SQLite)."""

from __future__ import annotations

import dataclasses
import os
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import transaction

from instruments.config import catalog_config
from instruments.importer import (
    ImportFailed,
    catalog_status,
    catalog_totals,
    clear_catalog,
    file_fingerprint,
    last_import,
)
from instruments.models import CatalogImport, Derivative, Instrument
from instruments.source import cache_path
from tests.support.rows import hold

pytestmark = [pytest.mark.catalog, pytest.mark.django_db(transaction=True)]

IST = ZoneInfo("Asia/Kolkata")
BEFORE_ANY_EXPIRY = datetime(2024, 10, 1, 10, 0, tzinfo=IST)  # first fixture expiry: 9 Oct
BY_SEGMENT = {"BSE_EQ": 1, "BSE_FNO": 2, "IDX_I": 3, "NSE_EQ": 1, "NSE_FNO": 13}
BY_INSTRUMENT = {"EQUITY": 2, "FUTIDX": 2, "INDEX": 3, "OPTIDX": 12, "OPTSTK": 1}
DROPPED = {"test instrument": 1, "exchange MCX not enabled": 1}
# Contracts of the compact fixture expiring 9, 10 and 11 Oct 2024 (BANKNIFTY, NIFTY, SENSEX).
EXPIRING_BY_11_OCT = {35036, 35037, 44428, 44429, 44430, 44431, 44432, 44433, 1123771, 1123772}
CRUDE_ROW = (
    "MCX,M,447777,FUTCOM,0,CRUDEOIL-19Nov2024-FUT,100.0,CRUDEOIL NOV FUT,2024-11-19 23:30:00,"
    "-0.01000,XX,100.0000,M,FUTCOM,,"
).split(",")


def derivative(security_id: int) -> Derivative:
    return Derivative.objects.get(security_id=security_id)


def instrument(exchange_segment: str, security_id: int) -> Instrument:
    return Instrument.objects.get(exchange_segment=exchange_segment, security_id=security_id)


def failures() -> list[tuple[str, str, str]]:
    """The failed runs logged, oldest first: (source, fingerprint, error)."""
    return list(
        CatalogImport.objects.filter(outcome=CatalogImport.Outcome.FAILED)
        .order_by("id")
        .values_list("source", "fingerprint", "error")
    )


# -- a first import -----------------------------------------------------------------------------


def test_it_imports_the_compact_fixture(import_file, compact_file):
    result = import_file(compact_file)

    assert result.status == "imported"
    stats = result.stats
    assert stats["format"] == "compact (16 columns)"
    assert (stats["rows_read"], stats["accepted"]) == (22, 20)
    assert (stats["inserted"], stats["updated"], stats["unchanged"]) == (20, 0, 0)
    assert (stats["removed"], stats["flagged_inactive"]) == (0, 0)
    assert stats["rejected"] == {}
    assert stats["rejected_samples"] == []
    assert stats["dropped"] == DROPPED
    assert stats["totals"] == {
        "total": 20,
        "by_segment": BY_SEGMENT,
        "by_instrument": BY_INSTRUMENT,
    }
    assert (Instrument.objects.count(), Derivative.objects.count()) == (5, 15)


def test_it_records_the_import_as_a_catalog_import(import_file, compact_file, freeze):
    freeze(BEFORE_ANY_EXPIRY)
    result = import_file(compact_file)

    recorded = CatalogImport.objects.get()
    assert recorded == last_import()
    assert recorded.outcome == CatalogImport.Outcome.IMPORTED
    assert (recorded.started_at, recorded.finished_at) == (BEFORE_ANY_EXPIRY, BEFORE_ANY_EXPIRY)
    assert result.stats["imported_at"] == "2024-10-01T10:00:00+05:30"
    assert recorded.source == f"file {compact_file}"
    assert recorded.file_format == "compact (16 columns)"
    assert recorded.fingerprint == result.stats["fingerprint"]
    assert (recorded.rows_read, recorded.accepted) == (22, 20)
    assert (recorded.inserted, recorded.updated, recorded.unchanged) == (20, 0, 0)
    assert (recorded.removed, recorded.flagged_inactive) == (0, 0)
    assert (recorded.rejected, recorded.rejected_samples) == ({}, [])
    assert recorded.dropped == DROPPED
    assert recorded.totals == {
        "total": 20,
        "by_segment": BY_SEGMENT,
        "by_instrument": BY_INSTRUMENT,
    }
    assert set(recorded.phases_seconds) == {
        "load_catalog_index",
        "parse_and_write",
        "update_and_link",
        "remove_missing",
    }
    assert recorded.duration_seconds == result.stats["duration_seconds"]
    assert (recorded.warnings, recorded.error) == ([], "")


def test_rejected_rows_are_recorded_by_reason(import_file, compact_variant):
    one_bad = compact_variant(change={44428: {"SEM_LOT_UNITS": "x"}})

    result = import_file(one_bad, max_bad_row_share=0.10)

    recorded = last_import()
    assert recorded.rejected == result.stats["rejected"] == {"lot_size": 1}
    assert recorded.rejected_total == 1
    assert recorded.rejected_samples == result.stats["rejected_samples"]
    assert [p["reason"] for p in recorded.rejected_samples] == ["lot_size"]


def test_nifty_is_idx_i_13_and_its_options_link_to_it(import_file, compact_file):
    import_file(compact_file)
    nifty = instrument("IDX_I", 13)
    assert (nifty.trading_symbol, nifty.display_name, nifty.exchange) == (
        "NIFTY",
        "Nifty 50",
        "NSE",
    )
    assert nifty.key == "IDX_I:13"

    call = derivative(44430)
    assert call.underlying == nifty
    assert (call.underlying_symbol, call.underlying_security_id) == ("NIFTY", 13)
    assert derivative(35006).underlying == nifty  # the future too
    assert set(nifty.derivatives.values_list("security_id", flat=True)) == {
        44428, 44429, 44430, 44431, 44432, 44433, 44501, 44502, 35006, 35007,
    }  # fmt: skip


def test_sensex_options_link_to_idx_i_51_with_a_tick_of_five_paise(import_file, compact_file):
    import_file(compact_file)
    sensex = instrument("IDX_I", 51)
    options = Derivative.objects.filter(exchange_segment="BSE_FNO")
    assert options.count() == 2
    for option in options:
        assert option.underlying == sensex
        assert option.tick_size == Decimal("0.05")
        assert (option.symbol_name, option.instrument_type) == ("BSXOPT", "OPTIDX")


def test_a_stock_option_links_to_the_equity_on_its_own_exchange(import_file, compact_file):
    import_file(compact_file)
    assert derivative(60001).underlying == instrument("NSE_EQ", 2885)  # not BSE_EQ 500325


def test_tick_sizes_are_rupees_whatever_the_file_used(import_file, compact_file):
    import_file(compact_file)
    assert derivative(44430).tick_size == Decimal("0.05")  # 5.0000 paise
    assert derivative(35006).tick_size == Decimal("0.10")  # 10.0000 paise
    assert instrument("NSE_EQ", 2885).tick_size == Decimal("0.10")  # 10 paise
    assert instrument("BSE_EQ", 500325).tick_size == Decimal("0.05")  # 5 paise
    assert instrument("IDX_I", 13).tick_size == Decimal("0.05")  # index rows: rupees
    assert instrument("IDX_I", 51).tick_size == Decimal("0.01")


def test_strikes_option_types_and_expiries_are_normalised(import_file, compact_file):
    import_file(compact_file)
    call = derivative(44430)
    assert (call.strike, call.option_type, call.lot_size, call.expiry_flag) == (
        Decimal("25800"),
        "CE",
        25,
        "W",
    )
    assert call.is_option
    future = derivative(35006)
    assert (future.strike, future.option_type, future.expiry_flag) == (None, "", "M")
    assert not future.is_option

    # IST wall-clock expiries are stored aware: 14:30 IST is 09:00 UTC.
    assert call.expiry_date == date(2024, 10, 10)
    assert call.expiry_at == datetime(2024, 10, 10, 9, 0, tzinfo=UTC)
    assert call.expiry_at.astimezone(IST).time().isoformat() == "14:30:00"
    bse = derivative(1123771)
    assert bse.expiry_at == datetime(2024, 10, 11, 10, 0, tzinfo=UTC)  # 15:30 IST


def test_equities_and_indices_keep_their_names(import_file, compact_file):
    import_file(compact_file)
    reliance = instrument("NSE_EQ", 2885)
    assert (reliance.trading_symbol, reliance.symbol_name, reliance.series) == (
        "RELIANCE",
        "RELIANCE INDUSTRIES LTD",
        "EQ",
    )
    assert (reliance.instrument, reliance.instrument_type, reliance.lot_size) == ("EQUITY", "ES", 1)
    assert not Instrument.objects.filter(trading_symbol="011NSETEST").exists()


@pytest.mark.parametrize(("variant", "columns"), [("2025-07", 39), ("2026-04", 31)])
def test_both_detailed_header_variants_import(import_file, detailed_files, variant, columns):
    result = import_file(detailed_files[variant])

    stats = result.stats
    assert stats["format"] == f"detailed ({columns} columns)"
    assert (stats["rows_read"], stats["accepted"], stats["rejected"]) == (8, 7, {})
    assert stats["dropped"] == {"test instrument": 1}
    assert stats["totals"]["by_segment"] == {"BSE_FNO": 1, "IDX_I": 2, "NSE_EQ": 1, "NSE_FNO": 3}

    nifty = instrument("IDX_I", 13)
    assert (nifty.trading_symbol, nifty.isin, nifty.series, nifty.tick_size) == (
        "NIFTY",
        "",
        "",
        Decimal("0.05"),
    )
    reliance = instrument("NSE_EQ", 2885)
    assert (reliance.trading_symbol, reliance.isin, reliance.tick_size) == (
        "RELIANCE",
        "INE002A01018",
        Decimal("0.10"),
    )
    call = derivative(44430)
    assert (call.trading_symbol, call.underlying_symbol) == ("NIFTY-Oct2024-25800-CE", "NIFTY")
    # The file's UNDERLYING_SECURITY_ID for NIFTY options is 26000, not the index's 13: the link
    # goes by symbol to IDX_I 13.
    assert call.underlying == nifty
    assert (call.strike, call.tick_size) == (Decimal("25800"), Decimal("0.05"))
    assert call.expiry_at == datetime(2024, 10, 10, 9, 0, tzinfo=UTC)
    assert derivative(35006).strike is None
    assert derivative(1123771).underlying == instrument("IDX_I", 51)


def test_switching_between_the_detailed_variants_rewrites_nothing(import_file, detailed_files):
    import_file(detailed_files["2025-07"])
    result = import_file(detailed_files["2026-04"])  # another file, the same contracts
    assert result.status == "imported"
    stats = result.stats
    assert (stats["inserted"], stats["updated"], stats["unchanged"], stats["removed"]) == (
        0,
        0,
        7,
        0,
    )


def test_awkward_characters_in_names_survive_the_bulk_load(import_file, compact_variant):
    # A backslash is COPY's escape character; quotes and commas are the CSV's own. (A tab or
    # any other control character rejects the row: test_scrip_master.py.)
    name = 'Reliance "Industries", Ltd \\ A\\tB Société ₹'
    path = compact_variant(change={2885: {"SEM_CUSTOM_SYMBOL": name}})
    import_file(path)
    assert instrument("NSE_EQ", 2885).display_name == name


def test_a_file_without_a_final_line_ending_imports_with_a_warning(
    import_file, compact_file, write_file
):
    path = write_file("no-eol.csv", compact_file.read_bytes().rstrip(b"\n"))
    result = import_file(path)
    assert result.stats["accepted"] == 20
    assert any("does not end with a line ending" in w for w in result.warnings)


def test_the_real_samples_import(import_file, shared_dhan, real_sample):
    result = import_file(shared_dhan / real_sample.name)

    stats = result.stats
    assert (stats["rows_read"], stats["accepted"]) == (real_sample.rows, real_sample.rows)
    assert (stats["rejected"], stats["dropped"]) == ({}, {})
    assert stats["totals"]["by_segment"] == real_sample.by_segment
    assert stats["totals"]["total"] == real_sample.rows
    nifty = instrument("IDX_I", 13)
    assert (nifty.trading_symbol, nifty.exchange) == ("NIFTY", "NSE")


def test_the_real_compact_sample_links_every_option_to_its_index(
    import_file, shared_dhan, real_compact_sample
):
    import_file(shared_dhan / real_compact_sample.name)

    sensex = instrument("IDX_I", 51)
    assert sensex.trading_symbol == "SENSEX"
    sensex_options = Derivative.objects.filter(underlying_symbol="SENSEX")
    assert sensex_options.count() > 0
    assert set(sensex_options.values_list("underlying_id", flat=True)) == {sensex.id}
    assert set(sensex_options.values_list("tick_size", flat=True)) == {Decimal("0.05")}
    assert set(sensex_options.values_list("exchange_segment", flat=True)) == {"BSE_FNO"}
    assert not Derivative.objects.filter(underlying__isnull=True).exists()
    assert instrument("IDX_I", 25).derivatives.filter(option_type="CE").exists()  # BANKNIFTY


# -- drops and rejects --------------------------------------------------------------------------


def test_mcx_is_imported_only_when_enabled_in_the_config(import_file, compact_file):
    result = import_file(compact_file)
    assert not Derivative.objects.filter(exchange="MCX").exists()
    assert result.stats["dropped"]["exchange MCX not enabled"] == 1

    with_mcx = dataclasses.replace(catalog_config(), exchanges=("NSE", "BSE", "MCX"))
    result = import_file(compact_file, config=with_mcx)
    assert result.status == "imported"  # the same file, normalised differently: not "unchanged"
    assert result.stats["dropped"] == {"test instrument": 1}
    crude = Derivative.objects.get(exchange_segment="MCX_COMM", security_id=447777)
    assert (crude.underlying, crude.strike, crude.tick_size) == (None, None, Decimal("1"))
    assert crude.expiry_at == datetime(2024, 11, 19, 18, 0, tzinfo=UTC)  # 23:30 IST


def test_unknown_exchanges_are_dropped_and_counted(import_file, compact_variant):
    ncdex = ["NCDEX", *CRUDE_ROW[1:]]
    result = import_file(compact_variant(add=[ncdex]))
    assert result.stats["dropped"] == {**DROPPED, "unknown exchange": 1}
    assert result.stats["accepted"] == 20


def test_a_duplicate_key_is_rejected_and_the_first_row_wins(import_file, compact_variant):
    header_row = "NSE,D,44430,OPTIDX,0,NIFTY-Oct2024-25800-CE,25.0,SECOND COPY,2024-10-10 14:30:00,"
    duplicate = (header_row + "25800.00000,CE,5.0000,W,OP,,").split(",")
    result = import_file(compact_variant(add=[duplicate]), max_bad_row_share=0.5)

    assert result.stats["rejected"] == {"duplicate": 1}
    assert result.stats["rejected_samples"] == [
        {"line": 24, "reason": "duplicate", "detail": "NSE_FNO:44430 appears twice"}
    ]
    assert derivative(44430).display_name == "NIFTY 10 OCT 25800 CALL"


def test_bad_rows_are_skipped_and_counted_by_reason_with_their_first_lines(
    import_file, compact_variant
):
    good = (
        "NSE,D,44430,OPTIDX,0,NIFTY-Oct2024-25800-CE,25.0,X,2024-10-10 14:30:00,25800.00000,CE,"
        "5.0000,W,OP,,"
    )

    def bad(security_id: int, position: int, value: str) -> list[str]:
        row = good.replace("44430", str(security_id)).split(",")
        row[position] = value
        return row

    rows = [
        bad(90001, 6, "lots"),  # line 24: lot size
        bad(90002, 9, "abc"),  # line 25: strike
        bad(90003, 8, "10/10/2024"),  # line 26: expiry
        bad(90004, 6, "-1"),  # line 27: lot size
        bad(90005, 10, "YY"),  # line 28: option type
        bad(90006, 11, "five"),  # line 29: tick size (past the first five samples)
    ]
    result = import_file(compact_variant(add=rows), max_bad_row_share=0.5)

    stats = result.stats
    assert (stats["rows_read"], stats["accepted"]) == (28, 20)
    assert stats["rejected"] == {
        "lot_size": 2,
        "strike": 1,
        "expiry": 1,
        "option_type": 1,
        "tick_size": 1,
    }
    samples = [(p["line"], p["reason"]) for p in stats["rejected_samples"]]
    assert samples == [
        (24, "lot_size"),
        (25, "strike"),
        (26, "expiry"),
        (27, "lot_size"),
        (28, "option_type"),
    ]
    assert all(p["detail"] for p in stats["rejected_samples"])
    assert not Derivative.objects.filter(security_id__in=range(90001, 90007)).exists()


# The probe's absurd values (one appended row each), which used to be imported with nothing
# rejected: a 1e300 strike broke catalog.strikes() on SQLite and was a traceback on PostgreSQL.
ABSURD = {
    "strike 1e300": (9, "1e300", "strike"),
    "lot size 1e9": (6, "1e9", "lot_size"),
    "lot size 1e10": (6, "1e10", "lot_size"),
    "lot size in Arabic-Indic digits": (6, "\u0661\u0660", "lot_size"),
    "tick size 0": (11, "0", "tick_size"),
    "security id 99999999999": (2, "99999999999", "security_id"),
    "a newline in the trading symbol": (5, "NIFTY-Oct2024\n-25800-CE", "trading_symbol"),
    "expiry year 9999": (8, "9999-10-10 14:30:00", "expiry"),
}


@pytest.mark.parametrize(("position", "value", "reason"), ABSURD.values(), ids=ABSURD.keys())
def test_an_absurd_value_is_rejected_and_the_catalog_stays_readable(
    import_file, compact_variant, position, value, reason
):
    from instruments import catalog

    row = (
        "NSE,D,90001,OPTIDX,0,NIFTY-Oct2024-26000-CE,25.0,NIFTY 10 OCT 26000 CALL,"
        "2024-10-10 14:30:00,26000.00000,CE,5.0000,W,OP,,"
    ).split(",")
    row[position] = value
    result = import_file(compact_variant(add=[row]), max_bad_row_share=0.10)

    assert result.stats["rejected"] == {reason: 1}
    assert (result.stats["accepted"], Derivative.objects.count()) == (20, 15)
    expiry = date(2024, 10, 10)
    assert catalog.strikes("NIFTY", expiry) == [Decimal(k) for k in ("25700", "25800", "25900")]
    assert catalog.nearest_strike("NIFTY", expiry, 25810) == Decimal("25800")
    assert max(Derivative.objects.values_list("lot_size", flat=True)) == 250


def test_a_rejected_row_leaves_its_stored_contract_as_it_was(
    import_file, compact_file, compact_variant, freeze
):
    # The probe: SEM_LOT_UNITS=abc on rows of stored contracts (under max_bad_row_share)
    # deleted them as if they had left the file. 44429 also changed its name: not applied.
    freeze(BEFORE_ANY_EXPIRY)
    import_file(compact_file)
    stored = {
        sid: Derivative.objects.filter(security_id=sid).values().get() for sid in (44428, 44429)
    }
    bad = compact_variant(
        change={
            44428: {"SEM_LOT_UNITS": "abc"},
            44429: {"SEM_LOT_UNITS": "abc", "SEM_CUSTOM_SYMBOL": "RENAMED"},
        }
    )

    freeze(BEFORE_ANY_EXPIRY + timedelta(hours=1))
    stats = import_file(bad, max_bad_row_share=0.10).stats

    assert stats["rejected"] == {"lot_size": 2}
    assert (stats["removed"], stats["flagged_inactive"], stats["kept_rejected"]) == (0, 0, 2)
    assert (stats["inserted"], stats["updated"]) == (0, 0)
    assert Derivative.objects.count() == 15
    for sid, before in stored.items():
        assert Derivative.objects.filter(security_id=sid).values().get() == before
    assert last_import().kept_rejected == 2


def test_a_rejected_row_whose_key_cannot_be_read_does_not_keep_a_contract(
    import_file, compact_file, compact_variant
):
    import_file(compact_file)
    # 44428's row loses its security id: nothing says which stored contract it was.
    bad = compact_variant(change={44428: {"SEM_SMST_SECURITY_ID": "44428x"}})
    stats = import_file(bad, max_bad_row_share=0.10, allow_large_removal=True).stats
    assert stats["rejected"] == {"security_id": 1}
    assert (stats["removed"], stats["kept_rejected"]) == (1, 0)
    assert not Derivative.objects.filter(security_id=44428).exists()


def test_a_rejected_duplicate_and_a_rejected_new_contract_keep_nothing(
    import_file, compact_file, compact_variant
):
    import_file(compact_file)
    duplicate = (
        "NSE,D,44430,OPTIDX,0,NIFTY-Oct2024-25800-CE,lots,NIFTY 10 OCT 25800 CALL,"
        "2024-10-10 14:30:00,25800.00000,CE,5.0000,W,OP,,"
    ).split(",")
    new = [*duplicate[:2], "90001", *duplicate[3:]]
    stats = import_file(
        compact_variant(add=[duplicate, new], change={44431: {"SEM_CUSTOM_SYMBOL": "NEW NAME"}}),
        max_bad_row_share=0.10,
    ).stats
    # 44430's good row (listed first) was accepted; the second copy keeps nothing extra.
    assert stats["rejected"] == {"lot_size": 2}
    assert (stats["kept_rejected"], stats["removed"], stats["updated"]) == (0, 0, 1)
    assert derivative(44431).display_name == "NEW NAME"
    assert not Derivative.objects.filter(security_id=90001).exists()


def test_the_bad_row_share_limit_can_be_raised_for_one_run(import_file, compact_variant):
    two_bad = compact_variant(change={44428: {"SEM_LOT_UNITS": "x"}, 44429: {"SEM_LOT_UNITS": "x"}})
    with pytest.raises(ImportFailed, match=r"2 of 22 rows are malformed \(9\.1%"):
        import_file(two_bad)
    with pytest.raises(ImportFailed, match=r"the limit is 5\.0%"):
        import_file(two_bad, max_bad_row_share=0.05)
    assert not Instrument.objects.exists()

    result = import_file(two_bad, max_bad_row_share=0.10)
    assert result.stats["rejected"] == {"lot_size": 2}
    assert result.stats["accepted"] == 18


# -- corrupted files ----------------------------------------------------------------------------


def test_a_corrupted_file_leaves_the_previous_catalog_intact(
    corruption, import_file, compact_file, write_file, snapshot, freeze
):
    freeze(BEFORE_ANY_EXPIRY)
    import_file(compact_file)
    before = snapshot()
    bad = write_file("bad.csv", corruption.build(compact_file.read_bytes()))

    with pytest.raises(ImportFailed) as caught:
        import_file(bad)

    message = str(caught.value)
    for fragment in corruption.message:
        assert fragment in message
    assert "bad.csv" in message
    assert snapshot() == before
    assert failures() == [(f"file {bad}", file_fingerprint(bad, catalog_config()), message)]
    assert last_import().started_at == BEFORE_ANY_EXPIRY  # still the good file's import


def test_a_corrupted_file_into_an_empty_catalog_imports_nothing(
    corruption, import_file, compact_file, write_file, freeze
):
    freeze(BEFORE_ANY_EXPIRY)
    bad = write_file("bad.csv", corruption.build(compact_file.read_bytes()))
    if corruption.name == "large removal":
        # Nothing to remove from an empty catalog: the index rows import.
        assert import_file(bad).stats["accepted"] == 3
        return
    with pytest.raises(ImportFailed) as caught:
        import_file(bad)
    assert not Instrument.objects.exists()
    assert not Derivative.objects.exists()
    assert last_import() is None
    assert [error for _, _, error in failures()] == [str(caught.value)]


# A value the database refuses although the parser let it through (the probe's 1e300 strike on
# PostgreSQL before the parser's bounds): here a negative lot size, which the lot column's
# CHECK (lot_size >= 0) refuses on both databases. A new contract reaches the database through
# COPY on PostgreSQL (psycopg's own error), a changed one through the staging UPDATE (Django's).
REFUSED_BY_THE_DATABASE = {
    "new contract": {
        "add": [
            (
                "NSE,D,60002,OPTSTK,0,RELIANCE-Oct2024-2900-CE,250.0,RELIANCE 31 OCT 2900 CALL,"
                "2024-10-31 14:30:00,2900.00000,CE,5.0000,M,OP,,"
            ).split(",")
        ]
    },
    "changed contract": {"change": {60001: {"SEM_CUSTOM_SYMBOL": "RELIANCE OCT 2800 CALL"}}},
}


@pytest.mark.parametrize("variant", REFUSED_BY_THE_DATABASE.values(), ids=REFUSED_BY_THE_DATABASE)
def test_a_value_the_database_refuses_is_a_recorded_failed_run(
    import_file, compact_file, compact_variant, snapshot, freeze, monkeypatch, variant
):
    from instruments.scrip_master import ScripMasterParser

    freeze(BEFORE_ANY_EXPIRY)
    import_file(compact_file)
    before = snapshot()
    freeze(BEFORE_ANY_EXPIRY + timedelta(hours=1))
    path = compact_variant(**variant)
    real_lot = ScripMasterParser._lot
    # Only this contract's lot (250.0) turns negative; the cache is bypassed for it.
    monkeypatch.setattr(
        ScripMasterParser,
        "_lot",
        lambda self, raw: "-250" if raw == "250.0" else real_lot(self, raw),
    )

    with pytest.raises(ImportFailed) as caught:
        import_file(path)

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"file {path}: the database refused the import (")
    assert "lot_size" in message
    assert message.endswith("); nothing was changed")
    assert snapshot() == before
    assert failures() == [(f"file {path}", file_fingerprint(path, catalog_config()), message)]
    assert catalog_status()["last_failure"]["error"] == message


def test_a_failed_run_the_database_cannot_record_still_fails_in_one_line(
    import_file, compact_file, monkeypatch
):
    from django.db import OperationalError

    from instruments import importer

    def broken(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly\nThis probably means")

    monkeypatch.setattr(importer, "_import_file", broken)
    monkeypatch.setattr(importer.CatalogImport.objects, "create", broken)
    with pytest.raises(ImportFailed) as caught:
        import_file(compact_file)
    message = str(caught.value)
    assert "\n" not in message
    assert "the database refused the import (OperationalError: server closed the" in message
    assert "(the failed run could not be recorded: OperationalError: server closed" in message


def test_file_order_does_not_matter_for_underlying_links(import_file, write_file, compact_file):
    header, *rows = compact_file.read_text(encoding="utf-8").splitlines(keepends=True)
    reversed_file = write_file("reversed.csv", header + "".join(reversed(rows)))

    import_file(reversed_file)

    assert derivative(44430).underlying == instrument("IDX_I", 13)
    assert derivative(1123771).underlying == instrument("IDX_I", 51)
    assert derivative(60001).underlying == instrument("NSE_EQ", 2885)


def test_underlyings_listed_far_after_their_derivatives_are_still_linked(import_file, write_file):
    import io

    from instruments import importer
    from instruments.synthetic import generate, write_compact

    # Indices and equities last, more than one import chunk after the derivatives' rows.
    chunk = getattr(importer, "CHUNK_ROWS", 20000)
    rows = list(generate(date(2026, 11, 23), rows=chunk + 9000, strikes_each_side=2, weeklies=1))
    out = io.StringIO()
    write_compact(out, iter(rows[::-1]))
    stats = import_file(write_file("reversed-synthetic.csv", out.getvalue())).stats

    assert (stats["accepted"], stats["rejected"]) == (chunk + 9000, {})
    assert not Derivative.objects.filter(underlying__isnull=True).exists()
    nifty_call = Derivative.objects.filter(underlying_symbol="NIFTY", option_type="CE").first()
    assert (nifty_call.underlying.key, nifty_call.underlying_security_id) == ("IDX_I:13", 13)


def test_two_imports_inside_one_outer_transaction_work(import_file, compact_file, compact_variant):
    # A caller's atomic block around two imports (a script, a data migration, a test): the second
    # import must not trip over the first one's temporary tables.
    changed = compact_variant(change={44430: {"SEM_LOT_UNITS": "75.0"}})
    with transaction.atomic():
        import_file(compact_file)
        result = import_file(changed)
    assert (result.stats["inserted"], result.stats["updated"]) == (0, 1)
    assert derivative(44430).lot_size == 75


def test_a_missing_file_fails_clearly(import_file, tmp_path):
    with pytest.raises(ImportFailed, match="no such file"):
        import_file(tmp_path / "nowhere.csv")
    # Never read, so no fingerprint; the log names what was asked for.
    assert failures() == [
        (f"file {tmp_path / 'nowhere.csv'}", "", f"{tmp_path / 'nowhere.csv'}: no such file")
    ]


# -- the unchanged file -------------------------------------------------------------------------


def test_the_same_file_again_writes_nothing(import_file, compact_file, snapshot, freeze):
    freeze(BEFORE_ANY_EXPIRY)
    first = import_file(compact_file)
    before = snapshot()
    freeze(BEFORE_ANY_EXPIRY + timedelta(hours=1))  # any write would now show a new timestamp

    again = import_file(compact_file)

    assert again.status == "unchanged"
    assert again.stats["fingerprint"] == first.stats["fingerprint"]
    assert again.stats["last_imported_at"] == "2024-10-01T10:00:00+05:30"
    assert again.stats["totals"]["total"] == 20
    assert snapshot() == before


def test_force_reimports_the_same_file_without_rewriting_unchanged_rows(
    import_file, compact_file, snapshot, freeze
):
    freeze(BEFORE_ANY_EXPIRY)
    import_file(compact_file)
    before = snapshot()
    freeze(BEFORE_ANY_EXPIRY + timedelta(hours=1))

    forced = import_file(compact_file, force=True)

    assert forced.status == "imported"
    stats = forced.stats
    assert (stats["inserted"], stats["updated"], stats["unchanged"]) == (0, 0, 20)
    after = snapshot()
    assert after["instruments"] == before["instruments"]
    assert after["derivatives"] == before["derivatives"]
    assert last_import().started_at == BEFORE_ANY_EXPIRY + timedelta(hours=1)
    assert CatalogImport.objects.count() == 2


def test_after_clearing_the_same_file_imports_again(import_file, compact_file):
    import_file(compact_file)
    clear_catalog()
    result = import_file(compact_file)
    assert result.status == "imported"
    assert result.stats["inserted"] == 20


# -- updates ------------------------------------------------------------------------------------


def test_a_changed_lot_size_and_display_name_update_only_those_rows(
    import_file, compact_file, compact_variant, freeze
):
    first_at = BEFORE_ANY_EXPIRY
    freeze(first_at)
    import_file(compact_file)
    ids = dict(Derivative.objects.values_list("security_id", "id"))
    later = first_at + timedelta(hours=2)
    freeze(later)
    new_strike = (
        "NSE,D,44434,OPTIDX,0,NIFTY-Oct2024-26000-CE,25.0,NIFTY 10 OCT 26000 CALL,"
        "2024-10-10 14:30:00,26000.00000,CE,5.0000,W,OP,,"
    ).split(",")
    changed = compact_variant(
        change={
            44430: {"SEM_LOT_UNITS": "75.0"},
            2885: {"SEM_CUSTOM_SYMBOL": "Reliance Industries Ltd"},
        },
        add=[new_strike],
    )

    result = import_file(changed)

    stats = result.stats
    assert (stats["accepted"], stats["inserted"], stats["updated"], stats["unchanged"]) == (
        21,
        1,
        2,
        18,
    )
    assert (stats["removed"], stats["flagged_inactive"]) == (0, 0)
    call = derivative(44430)
    assert (call.lot_size, call.id, call.created_at, call.updated_at) == (
        75,
        ids[44430],
        first_at,
        later,
    )
    reliance = instrument("NSE_EQ", 2885)
    assert (reliance.display_name, reliance.updated_at) == ("Reliance Industries Ltd", later)
    assert derivative(44434).underlying == instrument("IDX_I", 13)
    untouched = Derivative.objects.exclude(security_id__in=[44430, 44434])
    assert set(untouched.values_list("updated_at", flat=True)) == {first_at}
    assert Instrument.objects.exclude(security_id=2885).filter(updated_at=later).count() == 0


# -- removals -----------------------------------------------------------------------------------


def test_a_reimport_removes_expired_contracts_but_keeps_a_referenced_one_inactive(
    import_file, compact_file, compact_variant, freeze
):
    freeze(BEFORE_ANY_EXPIRY)
    import_file(compact_file)
    held = derivative(35036)  # BANKNIFTY 9 Oct 51000 CE
    position = hold(held)
    after_expiry = datetime(2024, 10, 10, 8, 0, tzinfo=IST)
    freeze(after_expiry)

    # The next day's file no longer lists the expired BANKNIFTY 9 Oct contracts.
    result = import_file(compact_variant(drop={35036, 35037}))

    assert (result.stats["removed"], result.stats["flagged_inactive"]) == (1, 1)
    assert not Derivative.objects.filter(security_id=35037).exists()
    held.refresh_from_db()
    assert (held.is_active, held.removed_at) == (False, after_expiry)
    position.refresh_from_db()
    assert position.derivative_id == held.id
    assert result.stats["totals"]["total"] == 18  # inactive rows are not counted

    # It comes back in a later file: active again, same row, the position still on it.
    back_at = after_expiry + timedelta(days=1)
    freeze(back_at)
    result = import_file(compact_file)
    assert (result.stats["inserted"], result.stats["updated"]) == (1, 1)  # 35037 anew, 35036
    held.refresh_from_db()
    assert (held.is_active, held.removed_at, held.updated_at) == (True, None, back_at)
    position.refresh_from_db()
    assert position.derivative_id == held.id


def test_an_index_its_derivatives_still_point_at_is_flagged_not_deleted(
    import_file, compact_file, compact_variant, freeze
):
    freeze(BEFORE_ANY_EXPIRY)
    import_file(compact_file)
    result = import_file(compact_variant(drop={25}))  # BANKNIFTY index row gone

    banknifty = instrument("IDX_I", 25)
    assert (banknifty.is_active, result.stats["flagged_inactive"]) == (False, 1)
    assert derivative(35036).underlying == banknifty


def test_expired_contracts_leaving_the_file_do_not_count_toward_the_removal_guard(
    import_file, compact_file, compact_variant, freeze
):
    freeze(BEFORE_ANY_EXPIRY)
    import_file(compact_file)
    freeze(datetime(2024, 10, 12, 8, 0, tzinfo=IST))  # 9, 10 and 11 Oct have expired

    # Half the catalog leaves, but all of it has expired: no guard, no flag needed.
    result = import_file(compact_variant(drop=EXPIRING_BY_11_OCT))

    assert result.stats["removed"] == 10
    assert not Derivative.objects.filter(security_id__in=EXPIRING_BY_11_OCT).exists()


def test_unexpired_contracts_leaving_the_file_count_toward_the_removal_guard(
    import_file, compact_file, compact_variant, snapshot, freeze
):
    freeze(BEFORE_ANY_EXPIRY)
    import_file(compact_file)
    before = snapshot()
    smaller = compact_variant(drop=EXPIRING_BY_11_OCT)

    with pytest.raises(ImportFailed) as caught:
        import_file(smaller)
    assert "refusing to remove 10 of 20 contracts that have not expired (50.0%" in str(caught.value)
    assert "the limit is 10%" in str(caught.value)
    assert snapshot() == before

    result = import_file(smaller, allow_large_removal=True)
    assert result.stats["removed"] == 10


def test_a_contract_expiring_today_has_not_expired_for_the_guard(
    import_file, compact_file, compact_variant, freeze
):
    freeze(BEFORE_ANY_EXPIRY)
    import_file(compact_file)
    freeze(datetime(2024, 10, 10, 8, 0, tzinfo=IST))  # the six NIFTY 10 Oct contracts expire today

    # 9 Oct (2 contracts) has expired; 10 Oct (6) has not: 6 of 20 = 30%.
    with pytest.raises(ImportFailed, match="refusing to remove 6 of 20"):
        import_file(compact_variant(drop={35036, 35037, 44428, 44429, 44430, 44431, 44432, 44433}))


def test_a_small_removal_within_the_limit_needs_no_flag(
    import_file, compact_file, compact_variant, freeze
):
    freeze(BEFORE_ANY_EXPIRY)
    import_file(compact_file)
    result = import_file(compact_variant(drop={44502}))  # 1 of 20 unexpired: 5%
    assert result.stats["removed"] == 1


# -- the default source (Dhan's URL through the cache) ------------------------------------------


def test_it_downloads_dhans_file_once_and_then_uses_the_fresh_cache(
    import_file, compact_file, http_server, settings
):
    from instruments.importer import ImportOptions, import_catalog

    url = http_server.serve("/api-scrip-master.csv", compact_file.read_bytes())
    settings.INSTRUMENTS_SCRIP_MASTER_URL = url

    first = import_catalog(ImportOptions())
    assert first.status == "imported"
    assert url in first.stats["source"]
    assert http_server.requests == ["/api-scrip-master.csv"]

    again = import_catalog(ImportOptions())
    assert again.status == "unchanged"
    assert "cached copy" in again.stats["source"]
    assert http_server.requests == ["/api-scrip-master.csv"]  # no second request


def test_a_failed_download_falls_back_to_the_cached_copy_with_a_warning(
    compact_file, http_server, settings
):
    from instruments.importer import ImportOptions, import_catalog

    url = http_server.url("/api-scrip-master.csv")
    settings.INSTRUMENTS_SCRIP_MASTER_URL = url
    cached = cache_path(settings.INSTRUMENTS_CACHE_DIR, url)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(compact_file.read_bytes())
    stale = time.time() - 30 * 3600
    os.utime(cached, (stale, stale))
    http_server.serve("/api-scrip-master.csv", b"oops", status=500)

    result = import_catalog(ImportOptions())

    assert result.status == "imported"
    assert result.stats["accepted"] == 20
    assert any("HTTP 500" in w and "using the cached copy" in w for w in result.warnings)


def test_a_failed_download_without_a_cache_fails_clearly(http_server, settings):
    from instruments.importer import ImportOptions, import_catalog

    settings.INSTRUMENTS_SCRIP_MASTER_URL = http_server.serve("/master.csv", b"", status=503)
    with pytest.raises(ImportFailed, match="HTTP 503; no cached copy to fall back on") as caught:
        import_catalog(ImportOptions())
    assert not Instrument.objects.exists()
    assert failures() == [(settings.INSTRUMENTS_SCRIP_MASTER_URL, "", str(caught.value))]


def test_progress_is_reported_up_to_the_whole_file(compact_file):
    from instruments.importer import ImportOptions, import_catalog

    calls = []
    import_catalog(ImportOptions(file=compact_file, progress=lambda *a: calls.append(a)))
    size = compact_file.stat().st_size
    assert calls[-1] == (size, size, -1)


# -- status, totals, clearing -------------------------------------------------------------------


def test_the_status_of_an_empty_catalog_is_stale():
    status = catalog_status()
    assert (
        status["total"],
        status["stale"],
        status["last_imported_at"],
        status["age_seconds"],
    ) == (
        0,
        True,
        None,
        None,
    )


def test_the_status_reports_age_staleness_and_counts(import_file, compact_file, freeze):
    freeze(BEFORE_ANY_EXPIRY)
    import_file(compact_file)

    fresh = catalog_status(now=BEFORE_ANY_EXPIRY + timedelta(hours=1))
    assert (fresh["age_seconds"], fresh["stale"], fresh["total"]) == (3600.0, False, 20)
    assert fresh["counts"] == {"by_segment": BY_SEGMENT, "by_instrument": BY_INSTRUMENT}
    assert fresh["last_imported_at"] == "2024-10-01T10:00:00+05:30"

    old = catalog_status(now=BEFORE_ANY_EXPIRY + timedelta(hours=25))
    assert (old["age_seconds"], old["stale"]) == (90000.0, True)
    assert (
        catalog_status(now=BEFORE_ANY_EXPIRY + timedelta(hours=25), max_age_hours=48)["stale"]
        is False
    )


def test_the_status_names_a_run_that_failed_after_the_last_import(
    import_file, compact_file, compact_variant, freeze
):
    freeze(BEFORE_ANY_EXPIRY)
    import_file(compact_file)
    assert catalog_status()["last_failure"] is None
    freeze(BEFORE_ANY_EXPIRY + timedelta(hours=1))
    smaller = compact_variant(drop=EXPIRING_BY_11_OCT)
    with pytest.raises(ImportFailed) as caught:
        import_file(smaller)

    status = catalog_status(now=BEFORE_ANY_EXPIRY + timedelta(hours=2))

    assert status["last_failure"] == {
        "at": "2024-10-01T11:00:00+05:30",
        "source": f"file {smaller}",
        "error": str(caught.value),
    }
    assert status["last_imported_at"] == "2024-10-01T10:00:00+05:30"  # the catalog it kept
    assert status["stale"] is False

    freeze(BEFORE_ANY_EXPIRY + timedelta(hours=3))
    import_file(smaller, allow_large_removal=True)
    assert catalog_status()["last_failure"] is None  # an import since supersedes it


def test_totals_count_active_rows_only(import_file, compact_file):
    import_file(compact_file)
    Derivative.objects.filter(security_id=44430).update(is_active=False)
    totals = catalog_totals()
    assert totals["total"] == 19
    assert totals["by_segment"]["NSE_FNO"] == 12
    assert totals["by_instrument"]["OPTIDX"] == 11


def test_clearing_deletes_unreferenced_rows_and_flags_referenced_ones(import_file, compact_file):
    import_file(compact_file)
    position = hold(derivative(44430))

    result = clear_catalog()

    # The held option stays, and so does NIFTY, which that option still points at.
    assert result == {"deleted": 18, "flagged_inactive": 2}
    assert list(Derivative.objects.values_list("security_id", "is_active")) == [(44430, False)]
    assert list(Instrument.objects.values_list("security_id", "is_active")) == [(13, False)]
    assert derivative(44430).removed_at is not None
    position.refresh_from_db()
    assert position.derivative.security_id == 44430
    assert last_import() is None
    assert not CatalogImport.objects.exists()
    assert catalog_totals()["total"] == 0
