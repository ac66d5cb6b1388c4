"""instruments.scrip_master: both formats, every normalisation, and whole-file failures. No DB."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from instruments.scrip_master import STAGING_COLUMNS, ScripMasterError, ScripMasterParser

pytestmark = [pytest.mark.catalog]

FIXTURES = Path(__file__).resolve().parent / "fixtures"
COMPACT_HEADER = (
    "SEM_EXM_EXCH_ID,SEM_SEGMENT,SEM_SMST_SECURITY_ID,SEM_INSTRUMENT_NAME,SEM_EXPIRY_CODE,"
    "SEM_TRADING_SYMBOL,SEM_LOT_UNITS,SEM_CUSTOM_SYMBOL,SEM_EXPIRY_DATE,SEM_STRIKE_PRICE,"
    "SEM_OPTION_TYPE,SEM_TICK_SIZE,SEM_EXPIRY_FLAG,SEM_EXCH_INSTRUMENT_TYPE,SEM_SERIES,"
    "SM_SYMBOL_NAME"
)
NIFTY_INDEX = "NSE,I,13,INDEX,0,NIFTY,1,Nifty 50,0001-01-01,,XX,0.05,,INDEX,X,NIFTY"
SENSEX_INDEX = "BSE,I,51,INDEX,0,SENSEX,1,Sensex,0001-01-01,,XX,0.01,,INDEX,X,SENSEX"
RELIANCE = (
    "NSE,E,2885,EQUITY,0,RELIANCE,1,Reliance Industries,,,,10,NA,ES,EQ,RELIANCE INDUSTRIES LTD"
)
NIFTY_CE = (
    "NSE,D,44430,OPTIDX,0,NIFTY-Oct2024-25800-CE,25.0,NIFTY 24 OCT 25800 CALL,"
    "2024-10-24 14:30:00,25800.00000,CE,5.0000,W,OP,,"
)
NIFTY_CE_OCT10 = (
    "NSE,D,37372,OPTIDX,0,NIFTY-Oct2024-19600-CE,25.0,NIFTY 10 OCT 19600 CALL,"
    "2024-10-10 14:30:00,19600.00000,CE,5.0000,W,OP,,"
)
NIFTY_FUT = (
    "NSE,D,35006,FUTIDX,0,NIFTY-Oct2024-FUT,25.0,NIFTY OCT FUT,2024-10-31 14:30:00,-0.01000,XX,"
    "10.0000,M,FUT,,"
)
SENSEX_PE = (
    "BSE,D,1123767,OPTIDX,0,SENSEX-Oct2024-78700-PE,10.0,SENSEX 11 OCT 78700 PUT,"
    "2024-10-11 15:30:00,78700.00000,PE,5.0000,W,OPTIDX,,BSXOPT"
)
TEST_EQUITY = "NSE,E,17001,EQUITY,0,011NSETEST,1,NSE Test,,,,5,NA,ES,EQ,011NSETEST"
CRUDE_FUT = (
    "MCX,M,447777,FUTCOM,0,CRUDEOIL-19Nov2024-FUT,100.0,CRUDEOIL NOV FUT,2024-11-19 23:30:00,"
    "-0.01000,XX,100.0000,M,FUTCOM,,"
)


def compact(*rows: str, header: str = COMPACT_HEADER) -> bytes:
    return ("\n".join((header, *rows)) + "\n").encode()


INTEGER_COLUMNS = ("security_id", "lot_size", "underlying_security_id", "expiry_code")


def as_dict(row: tuple) -> dict:
    """A staging row keyed by STAGING_COLUMNS, whole numbers as int whatever the parser's
    wire representation (it may hand them over as text for the database's bulk load)."""
    values = dict(zip(STAGING_COLUMNS, row, strict=True))
    for column in INTEGER_COLUMNS:
        if values[column] is not None:
            values[column] = int(values[column])
    if values["expiry_date"] is not None:
        values["expiry_date"] = str(values["expiry_date"])
    return values


def parse(data: bytes, **kwargs: object) -> tuple[list[dict], ScripMasterParser]:
    """Rows as dicts; expiry_at kept as the aware datetime the parser computed."""
    kwargs.setdefault("format_datetime", lambda dt: dt)
    parser = ScripMasterParser(**kwargs)
    rows = [as_dict(row) for row in parser.rows(io.BytesIO(data))]
    return rows, parser


def parse_one(line: str, **kwargs: object) -> dict:
    rows, _ = parse(compact(line), **kwargs)
    assert len(rows) == 1
    return rows[0]


def fails(data: bytes, **kwargs: object) -> str:
    parser = ScripMasterParser(**kwargs)
    with pytest.raises(ScripMasterError) as caught:
        list(parser.rows(io.BytesIO(data)))
    return str(caught.value)


# -- formats ------------------------------------------------------------------------------------


def test_it_reads_the_compact_fixture_and_reports_the_format():
    rows, parser = parse((FIXTURES / "compact_catalog.csv").read_bytes())
    report = parser.report
    assert (report.format, report.columns) == ("compact", 16)
    assert (report.rows_read, report.accepted, len(rows)) == (22, 20, 20)
    assert report.rejected_total == 0
    assert dict(report.dropped) == {"test instrument": 1, "exchange MCX not enabled": 1}


@pytest.mark.parametrize(
    ("name", "columns"), [("detailed_2025_07.csv", 39), ("detailed_2026_04.csv", 31)]
)
def test_it_reads_both_detailed_header_variants(name, columns):
    rows, parser = parse((FIXTURES / name).read_bytes())
    assert (parser.report.format, parser.report.columns) == ("detailed", columns)
    assert parser.report.rejected_total == 0
    assert dict(parser.report.dropped) == {"test instrument": 1}
    by_id = {row["security_id"]: row for row in rows}
    assert set(by_id) == {13, 51, 2885, 44430, 44431, 35006, 1123771}

    nifty = by_id[13]
    assert (nifty["kind"], nifty["exchange_segment"], nifty["trading_symbol"]) == (
        "I",
        "IDX_I",
        "NIFTY",
    )
    assert (nifty["display_name"], nifty["isin"], nifty["series"], nifty["expiry_flag"]) == (
        "Nifty 50",
        "",  # NA
        "",  # NA
        "",  # N is neither weekly nor monthly
    )
    assert Decimal(nifty["tick_size"]) == Decimal("0.05")
    assert Decimal(by_id[51]["tick_size"]) == Decimal("0.01")

    # Equities: the trading symbol is UNDERLYING_SYMBOL, SYMBOL_NAME is the company.
    reliance = by_id[2885]
    assert (reliance["trading_symbol"], reliance["symbol_name"], reliance["isin"]) == (
        "RELIANCE",
        "RELIANCE INDUSTRIES LTD",
        "INE002A01018",
    )
    assert Decimal(reliance["tick_size"]) == Decimal("0.10")

    # Derivatives: the trading symbol is SYMBOL_NAME, the underlying UNDERLYING_SYMBOL.
    call = by_id[44430]
    assert (call["kind"], call["exchange_segment"], call["trading_symbol"]) == (
        "D",
        "NSE_FNO",
        "NIFTY-Oct2024-25800-CE",
    )
    assert (call["underlying_symbol"], call["underlying_security_id"]) == ("NIFTY", 26000)
    assert (Decimal(call["strike"]), call["option_type"], call["lot_size"]) == (
        Decimal("25800"),
        "CE",
        25,
    )
    assert call["expiry_at"] == datetime(2024, 10, 10, 9, 0, tzinfo=UTC)
    assert by_id[35006]["strike"] is None
    assert by_id[1123771]["expiry_at"] == datetime(2024, 10, 11, 10, 0, tzinfo=UTC)


def test_both_detailed_variants_normalise_to_the_same_rows():
    old, _ = parse((FIXTURES / "detailed_2025_07.csv").read_bytes())
    new, _ = parse((FIXTURES / "detailed_2026_04.csv").read_bytes())
    assert old == new


def test_it_selects_columns_by_name_not_by_position():
    records = [line.split(",") for line in (COMPACT_HEADER, NIFTY_INDEX, NIFTY_CE, NIFTY_FUT)]
    order = list(reversed(range(16)))
    shuffled = "\n".join(",".join(record[i] for i in order) for record in records) + "\n"
    straight, _ = parse(compact(NIFTY_INDEX, NIFTY_CE, NIFTY_FUT))
    reordered, _ = parse(shuffled.encode())
    assert reordered == straight


def test_it_accepts_a_byte_order_mark_and_crlf_line_endings():
    data = ("\ufeff" + "\r\n".join((COMPACT_HEADER, NIFTY_INDEX, NIFTY_CE)) + "\r\n").encode()
    rows, parser = parse(data)
    assert [row["security_id"] for row in rows] == [13, 44430]
    assert rows[1]["display_name"] == "NIFTY 24 OCT 25800 CALL"
    assert parser.report.warnings == []


def test_blank_lines_are_skipped_and_line_numbers_stay_physical():
    bad = NIFTY_CE.replace(",25.0,", ",lots,")
    rows, parser = parse(compact(NIFTY_INDEX, "", "", bad, SENSEX_INDEX))
    assert [row["security_id"] for row in rows] == [13, 51]
    assert parser.report.rows_read == 3
    assert [(p.line, p.reason) for p in parser.report.samples] == [(5, "lot_size")]


def test_quoted_fields_may_hold_commas_and_quotes():
    line = RELIANCE.replace("Reliance Industries", '"Reliance Industries, ""RIL"""')
    assert parse_one(line)["display_name"] == 'Reliance Industries, "RIL"'


def test_it_reads_the_pandas_rewritten_float_style_too():
    # The real sample's options were re-written by pandas: 19600.0 strike, 5.0 tick.
    line = (
        "NSE,D,37372,OPTIDX,0,NIFTY-Oct2024-19600-CE,25.0,NIFTY 10 OCT 19600 CALL,"
        "2024-10-10 14:30:00,19600.0,CE,5.0,W,OP,,"
    )
    row = parse_one(line)
    assert (Decimal(row["strike"]), Decimal(row["tick_size"]), row["lot_size"]) == (
        Decimal("19600"),
        Decimal("0.05"),
        25,
    )


def test_it_parses_the_real_samples_without_rejecting_a_row(real_sample, shared_dhan):
    rows, parser = parse((shared_dhan / real_sample.name).read_bytes())
    assert parser.report.rows_read == real_sample.rows
    assert parser.report.rejected_total == 0
    assert len(rows) == real_sample.rows
    by_segment: dict[str, int] = {}
    for row in rows:
        by_segment[row["exchange_segment"]] = by_segment.get(row["exchange_segment"], 0) + 1
    assert by_segment == real_sample.by_segment


# -- normalisation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "rupees"),
    [
        (NIFTY_CE, "0.05"),  # 5.0000 paise
        (NIFTY_FUT, "0.10"),  # 10.0000 paise
        (RELIANCE, "0.10"),  # 10 paise
        (TEST_EQUITY.replace("011NSETEST", "IDEA"), "0.05"),  # 5 paise
        (SENSEX_PE, "0.05"),
    ],
    ids=["option 5.0000", "future 10.0000", "equity 10", "equity 5", "bse option 5.0000"],
)
def test_it_converts_the_tick_size_from_paise_on_non_index_rows(line, rupees):
    assert Decimal(parse_one(line)["tick_size"]) == Decimal(rupees)


@pytest.mark.parametrize(
    ("line", "rupees"), [(NIFTY_INDEX, "0.05"), (SENSEX_INDEX, "0.01")], ids=["NSE", "BSE"]
)
def test_it_keeps_the_tick_size_of_index_rows_in_rupees(line, rupees):
    assert Decimal(parse_one(line)["tick_size"]) == Decimal(rupees)


def test_the_futures_strike_sentinel_becomes_null():
    row = parse_one(NIFTY_FUT)
    assert (row["kind"], row["strike"], row["option_type"]) == ("D", None, "")


@pytest.mark.parametrize("line", [NIFTY_INDEX, RELIANCE], ids=["index", "equity"])
def test_a_blank_strike_on_an_index_or_equity_is_null(line):
    row = parse_one(line)
    assert (row["kind"], row["strike"], row["expiry_date"], row["expiry_at"]) == (
        "I",
        None,
        None,
        None,
    )
    assert row["option_type"] == ""  # XX on the index row, blank on the equity


def test_an_option_strike_is_plain_rupees():
    assert Decimal(parse_one(NIFTY_CE)["strike"]) == Decimal("25800")


@pytest.mark.parametrize(
    ("line", "underlying"),
    [
        (NIFTY_CE, "NIFTY"),
        (NIFTY_FUT, "NIFTY"),
        (
            "NSE,D,35036,OPTIDX,0,BANKNIFTY-Oct2024-61900-CE,15.0,BANKNIFTY 09 OCT 61900 CALL,"
            "2024-10-09 14:30:00,61900.00000,CE,5.0000,W,OP,,",
            "BANKNIFTY",
        ),
        (SENSEX_PE, "SENSEX"),  # SM_SYMBOL_NAME says BSXOPT: the symbol wins
    ],
    ids=["nifty option", "nifty future", "banknifty option", "sensex bsxopt"],
)
def test_a_blank_underlying_name_is_derived_from_the_trading_symbol(line, underlying):
    assert parse_one(line)["underlying_symbol"] == underlying


def test_a_bse_option_keeps_its_symbol_name_and_exchange_instrument_type():
    row = parse_one(SENSEX_PE)
    assert (row["exchange_segment"], row["symbol_name"], row["instrument_type"]) == (
        "BSE_FNO",
        "BSXOPT",
        "OPTIDX",
    )


def test_ist_expiry_times_are_aware():
    nse = parse_one(NIFTY_CE_OCT10)
    assert nse["expiry_at"] == datetime(2024, 10, 10, 9, 0, tzinfo=UTC)  # 14:30 IST
    assert nse["expiry_at"].utcoffset() is not None
    assert nse["expiry_date"] == date(2024, 10, 10).isoformat()
    bse = parse_one(SENSEX_PE)
    assert bse["expiry_at"] == datetime(2024, 10, 11, 10, 0, tzinfo=UTC)  # 15:30 IST


def test_the_default_datetime_text_carries_the_ist_offset():
    row = parse_one(NIFTY_CE_OCT10, format_datetime=lambda dt: dt.isoformat(sep=" "))
    assert row["expiry_at"] == "2024-10-10 14:30:00+05:30"


def test_weekly_and_monthly_flags_are_kept_and_na_is_blank():
    assert parse_one(NIFTY_CE)["expiry_flag"] == "W"
    assert parse_one(NIFTY_FUT)["expiry_flag"] == "M"
    assert parse_one(RELIANCE)["expiry_flag"] == ""


def test_test_instruments_are_dropped_and_counted():
    rows, parser = parse(compact(NIFTY_INDEX, TEST_EQUITY, RELIANCE))
    assert [row["security_id"] for row in rows] == [13, 2885]
    assert dict(parser.report.dropped) == {"test instrument": 1}
    assert parser.report.rejected_total == 0


def test_unknown_exchanges_are_dropped_and_counted():
    ncdex = "NCDEX,D,9001,FUTCOM,0,GUARSEED-Nov2024-FUT,5.0,GUARSEED NOV FUT,2024-11-20 17:00:00,"
    ncdex += "-0.01000,XX,100.0000,M,FUTCOM,,"
    rows, parser = parse(compact(NIFTY_INDEX, ncdex, ncdex.replace("9001", "9002")))
    assert [row["security_id"] for row in rows] == [13]
    assert dict(parser.report.dropped) == {"unknown exchange": 2}
    assert parser.report.rejected_total == 0


def test_mcx_is_dropped_unless_enabled():
    rows, parser = parse(compact(NIFTY_INDEX, CRUDE_FUT))
    assert [row["security_id"] for row in rows] == [13]
    assert dict(parser.report.dropped) == {"exchange MCX not enabled": 1}

    rows, parser = parse(compact(NIFTY_INDEX, CRUDE_FUT), exchanges=("NSE", "BSE", "MCX"))
    crude = rows[1]
    assert (crude["exchange_segment"], crude["kind"], crude["strike"]) == ("MCX_COMM", "D", None)
    assert crude["expiry_at"] == datetime(2024, 11, 19, 18, 0, tzinfo=UTC)  # 23:30 IST
    assert Decimal(crude["tick_size"]) == Decimal("1")
    assert dict(parser.report.dropped) == {}


def test_a_duplicate_key_is_rejected_and_the_first_row_kept():
    second = NIFTY_CE.replace("NIFTY 24 OCT", "DUPLICATE")
    rows, parser = parse(compact(NIFTY_INDEX, NIFTY_CE, second))
    assert [row["display_name"] for row in rows] == ["Nifty 50", "NIFTY 24 OCT 25800 CALL"]
    assert dict(parser.report.rejected) == {"duplicate": 1}
    assert [(p.line, p.reason) for p in parser.report.samples] == [(4, "duplicate")]
    assert "NSE_FNO:44430" in parser.report.samples[0].detail


def test_the_same_security_id_in_two_segments_is_not_a_duplicate():
    # Security ids are unique per exchange segment only.
    rows, parser = parse(compact(NIFTY_INDEX, RELIANCE.replace(",2885,", ",13,")))
    assert [(row["exchange_segment"], row["security_id"]) for row in rows] == [
        ("IDX_I", 13),
        ("NSE_EQ", 13),
    ]
    assert parser.report.rejected_total == 0


BAD_ROWS = [
    ("field count", NIFTY_CE + ",extra"),
    ("security_id", NIFTY_CE.replace(",44430,", ",44x30,")),
    ("lot_size", NIFTY_CE.replace(",25.0,", ",0,")),
    ("tick_size", NIFTY_CE.replace(",5.0000,", ",-5,")),
    ("expiry", NIFTY_CE.replace("2024-10-24 14:30:00", "24/10/2024")),
    ("option_type", NIFTY_CE.replace(",CE,", ",XX,")),
    ("strike", NIFTY_CE.replace(",25800.00000,", ",-0.01000,")),
    ("segment", NIFTY_CE.replace("NSE,D,", "NSE,Q,")),
    ("trading_symbol", RELIANCE.replace(",RELIANCE,", ",,")),
]


@pytest.mark.parametrize(("reason", "line"), BAD_ROWS, ids=[reason for reason, _ in BAD_ROWS])
def test_a_malformed_row_is_skipped_and_counted_by_reason(reason, line):
    rows, parser = parse(compact(NIFTY_INDEX, line, SENSEX_INDEX))
    assert [row["security_id"] for row in rows] == [13, 51]
    assert dict(parser.report.rejected) == {reason: 1}
    assert [(p.line, p.reason) for p in parser.report.samples] == [(3, reason)]


# Values that once went into the catalog unchecked (probe of the bad-environment kind): each is
# a rejected row, counted under its column, never a stored contract.
ABSURD_ROWS = [
    ("strike", NIFTY_CE.replace(",25800.00000,", ",1e300,")),  # numeric(14, 4) holds < 1e10
    ("strike", NIFTY_CE.replace(",25800.00000,", ",10000000000,")),
    ("strike", NIFTY_CE.replace(",25800.00000,", ",25800.00001,")),  # finer than 4 places
    (
        "strike",
        NIFTY_CE.replace(",25800.00000,", ",\u0662\u0665\u0668\u0660\u0660,"),
    ),  # Arabic-Indic digits
    ("strike", NIFTY_CE.replace(",25800.00000,", ",25_800,")),
    ("lot_size", NIFTY_CE.replace(",25.0,", ",1e9,")),  # an exponent in a whole number
    ("lot_size", NIFTY_CE.replace(",25.0,", ",1e10,")),
    ("lot_size", NIFTY_CE.replace(",25.0,", ",1000000000,")),
    ("lot_size", NIFTY_CE.replace(",25.0,", ",100001,")),  # above MAX_LOT_SIZE
    ("lot_size", NIFTY_CE.replace(",25.0,", ",\u0661\u0660,")),  # Arabic-Indic 10
    ("lot_size", NIFTY_CE.replace(",25.0,", ",25.5,")),
    ("tick_size", NIFTY_CE.replace(",5.0000,", ",0,")),
    ("tick_size", NIFTY_CE.replace(",5.0000,", ",,")),
    ("tick_size", NIFTY_CE.replace(",5.0000,", ",0.001,")),  # Rs 0.00001: finer than 4 places
    ("tick_size", NIFTY_CE.replace(",5.0000,", ",1e20,")),
    ("tick_size", NIFTY_CE.replace(",5.0000,", ",\u0665,")),
    ("security_id", NIFTY_CE.replace(",44430,", ",99999999999,")),  # the feed's u32 holds less
    ("security_id", NIFTY_CE.replace(",44430,", ",4294967296,")),
    ("security_id", NIFTY_CE.replace(",44430,", ",\u0664\u0664\u0664\u0663\u0660,")),
    ("security_id", NIFTY_CE.replace(",44430,", ",²,")),  # isdigit() but not int()
    ("trading_symbol", NIFTY_CE.replace("NIFTY-Oct2024-25800-CE", '"NIFTY-Oct2024\n-25800-CE"')),
    ("trading_symbol", NIFTY_CE.replace("NIFTY-Oct2024-25800-CE", "NIFTY-Oct2024\x1b[2J-CE")),
    ("trading_symbol", NIFTY_CE.replace("NIFTY-Oct2024-25800-CE", "NIFTY\u2028-25800-CE")),
    ("trading_symbol", NIFTY_CE.replace("NIFTY-Oct2024-25800-CE", "NIFTY-Oct2024\x1f-CE")),
    ("trading_symbol", NIFTY_CE.replace("NIFTY-Oct2024-25800-CE", "N" * 65)),  # varchar(64)
    ("display_name", NIFTY_CE.replace("NIFTY 24 OCT 25800 CALL", "NIFTY\tCALL")),
    ("display_name", NIFTY_CE.replace("NIFTY 24 OCT 25800 CALL", "C" * 129)),
    ("series", RELIANCE.replace(",EQ,", ",EQUITYSERIES,")),
    ("expiry", NIFTY_CE.replace("2024-10-24 14:30:00", "9999-12-08 14:30:00")),
    ("expiry", NIFTY_CE.replace("2024-10-24 14:30:00", "1999-12-30 14:30:00")),
    ("expiry", NIFTY_CE.replace("2024-10-24 14:30:00", "2100-01-01")),
    ("expiry", NIFTY_CE.replace("2024-10-24 14:30:00", "\u0662\u0660\u0662\u0664-10-24 14:30:00")),
]


@pytest.mark.parametrize(
    ("reason", "line"), ABSURD_ROWS, ids=[f"{i:02d}-{r}" for i, (r, _) in enumerate(ABSURD_ROWS)]
)
def test_an_absurd_value_is_a_rejected_row(reason, line):
    rows, parser = parse(compact(NIFTY_INDEX, line, SENSEX_INDEX))
    assert [row["security_id"] for row in rows] == [13, 51]
    assert dict(parser.report.rejected) == {reason: 1}
    assert [(p.line, p.reason) for p in parser.report.samples] == [(3 + line.count("\n"), reason)]


def test_an_absurd_underlying_security_id_in_the_detailed_file_is_a_rejected_row():
    header, *rows = (FIXTURES / "detailed_2026_04.csv").read_text().splitlines()
    column = header.split(",").index("UNDERLYING_SECURITY_ID")
    nifty = next(r for r in rows if r.startswith("NSE,I,13,"))
    fields = nifty.split(",")
    fields[column] = "99999999999999999999999"  # past bigint: the database would refuse it
    data = "\n".join((header, nifty.replace(",13,", ",14,", 1), ",".join(fields))) + "\n"
    parsed, parser = parse(data.encode())
    assert [row["security_id"] for row in parsed] == [14]
    assert dict(parser.report.rejected) == {"underlying_security_id": 1}


BOUNDARY_ROWS = [
    ("strike", NIFTY_CE.replace(",25800.00000,", ",9999999999.9999,"), "9999999999.9999"),
    ("strike", NIFTY_CE.replace(",25800.00000,", ",2.58E4,"), "25800"),  # an exponent, fits
    ("lot_size", NIFTY_CE.replace(",25.0,", ",100000.0,"), 100_000),
    ("lot_size", NIFTY_CE.replace(",25.0,", ",75,"), 75),
    ("tick_size", NIFTY_CE.replace(",5.0000,", ",0.25,"), "0.0025"),  # currency: 0.25 paise
    ("security_id", NIFTY_CE.replace(",44430,", ",4294967295,"), 4_294_967_295),
    ("expiry_date", NIFTY_CE.replace("2024-10-24 14:30:00", "2099-12-31 14:30:00"), "2099-12-31"),
    ("expiry_date", NIFTY_CE.replace("2024-10-24 14:30:00", "2000-01-03"), "2000-01-03"),
    ("expiry_code", NIFTY_CE.replace(",0,NIFTY-", ",99999,NIFTY-"), 0),  # informative: junk is 0
    ("expiry_code", NIFTY_CE.replace(",0,NIFTY-", ",\u0661,NIFTY-"), 0),
    ("expiry_code", NIFTY_CE.replace(",0,NIFTY-", ",2,NIFTY-"), 2),
]


@pytest.mark.parametrize(
    ("column", "line", "stored"), BOUNDARY_ROWS, ids=[f"{c}={v}" for c, _, v in BOUNDARY_ROWS]
)
def test_values_at_the_bounds_are_accepted(column, line, stored):
    row = parse_one(line)
    value = row[column]
    assert (Decimal(value) if isinstance(stored, str) and column != "expiry_date" else value) == (
        Decimal(stored) if isinstance(stored, str) and column != "expiry_date" else stored
    )


def test_an_index_may_carry_a_zero_tick_as_dhans_real_file_does():
    # GIFTNIFTY in the real compact (2026-06) and detailed (2026-04) samples: an index is not
    # traded, so no order price is rounded to its tick.
    gift = "NSE,I,5024,INDEX,0,GIFTNIFTY,1,Gift Nifty,0001-01-01,,XX,0,,INDEX,X,GIFTNIFTY"
    assert Decimal(parse_one(gift)["tick_size"]) == 0


def test_the_bounds_match_the_catalogs_columns():
    from instruments import scrip_master
    from instruments.models import Derivative, Instrument

    strike = Derivative._meta.get_field("strike")
    tick = Instrument._meta.get_field("tick_size")
    assert scrip_master.STRIKE_DIGITS == (strike.max_digits, strike.decimal_places)
    assert scrip_master.TICK_DIGITS == (tick.max_digits, tick.decimal_places)
    for name, length in scrip_master.TEXT_LIMITS.items():
        assert Derivative._meta.get_field(name).max_length == length, name
    assert scrip_master.MAX_LOT_SIZE < 2**31  # the lot column is a 32-bit integer


def test_a_rejected_row_reports_its_key_when_it_can_be_read():
    rows, parser = parse(
        compact(
            NIFTY_INDEX,
            NIFTY_CE.replace(",25.0,", ",abc,"),  # bad lot: its key reads
            SENSEX_PE.replace(",10.0,", ",abc,").replace("BSE,D,", "bse,d,"),
            NIFTY_CE.replace(",44430,", ",44x30,"),  # no readable security id
            NIFTY_CE.replace("NSE,D,", "NSE,Q,"),  # no known segment
            CRUDE_FUT.replace(",100.0,", ",abc,"),  # MCX: not imported, so nothing to keep
            NIFTY_CE + ",extra",  # the columns are not where the header says
        )
    )
    assert [row["security_id"] for row in rows] == [13]
    assert parser.report.rejected_total == 5
    assert parser.report.rejected_keys == [("NSE_FNO", 44430), ("BSE_FNO", 1123767)]


def test_it_keeps_only_the_first_few_problems_with_their_line_numbers():
    bad = [line for _, line in BAD_ROWS]
    rows, parser = parse(compact(NIFTY_INDEX, *bad, SENSEX_INDEX), max_samples=5)
    assert [row["security_id"] for row in rows] == [13, 51]
    assert parser.report.rejected_total == len(BAD_ROWS)
    assert [p.line for p in parser.report.samples] == [3, 4, 5, 6, 7]
    assert [p.reason for p in parser.report.samples] == [r for r, _ in BAD_ROWS[:5]]


# -- whole-file failures ------------------------------------------------------------------------


def test_an_empty_file_fails():
    assert "the file is empty" in fails(b"", name="master.csv")


def test_a_header_only_file_fails():
    assert "master.csv: the file has a header but no rows" in fails(compact(), name="master.csv")


def test_a_file_that_is_not_a_scrip_master_names_the_header_line():
    message = fails(b"symbol,price\nNIFTY,25800\n")
    assert "line 1: not a Dhan scrip master header" in message
    assert "HTML" not in message


def test_an_html_page_is_called_an_html_page():
    message = fails(b"<!DOCTYPE html>\n<html><body>Access Denied</body></html>\n")
    assert "line 1" in message
    assert "looks like an HTML page" in message


def test_a_header_missing_a_required_column_is_refused():
    header = COMPACT_HEADER.replace(",SEM_LOT_UNITS", "")
    message = fails(compact(header=header))
    assert "lacks required column(s) SEM_LOT_UNITS" in message


def test_a_truncated_last_line_fails_with_its_line_number():
    data = compact(NIFTY_INDEX, NIFTY_CE).rstrip(b"\n")
    data = data[: data.rindex(b",5.0000")]  # cut mid-row, no line ending
    message = fails(data)
    assert "truncated" in message
    assert "last line (3)" in message


def test_a_complete_last_line_without_a_newline_is_accepted_with_a_warning():
    rows, parser = parse(compact(NIFTY_INDEX, NIFTY_CE).rstrip(b"\n"))
    assert [row["security_id"] for row in rows] == [13, 44430]
    assert any("does not end with a line ending" in w for w in parser.report.warnings)


def test_invalid_utf8_names_the_line_and_the_byte():
    data = compact(NIFTY_INDEX, RELIANCE.replace("Reliance", "Reli\xe9nce"), NIFTY_CE)
    data = data.replace("Reliénce".encode(), b"Reli\xe9nce")  # a Latin-1 byte
    message = fails(data)
    assert "line 3" in message
    assert "not UTF-8" in message
    assert "0xe9" in message


def test_nul_bytes_name_the_line():
    data = compact(NIFTY_INDEX, NIFTY_CE, RELIANCE.replace("Reliance", "Rel\x00\x00ance"))
    message = fails(data)
    assert "line 4" in message
    assert "NUL bytes" in message


def test_a_field_over_the_csv_size_limit_names_its_line():
    # The probe: a 200 kB field said "unreadable CSV (field larger than field limit (131072))"
    # and no line, where every other problem names one.
    huge = RELIANCE.replace("Reliance Industries", "R" * 200_000)
    message = fails(compact(NIFTY_INDEX, NIFTY_CE, huge, SENSEX_INDEX), name="longline.csv")
    assert message.startswith("longline.csv: line 4: unreadable CSV (field larger than field limit")


def test_binary_junk_is_refused_naming_the_line():
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x02\x00" + bytes(range(256)) * 4
    message = fails(png)
    assert "line 1" in message
    assert "binary or corrupt" in message


def test_the_catalogs_zone_is_the_markets_zone():
    # instruments keeps its own copy (it may not import trading); it must be the same zone.
    from instruments.scrip_master import IST as catalog_ist
    from trading.rules.market import IST

    assert catalog_ist == IST
