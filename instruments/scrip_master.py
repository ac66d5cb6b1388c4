"""Parse and normalise Dhan's scrip master CSV (compact and detailed variants). Pure: no Django.

Facts from ../shared/dhan/PROTOCOL.md section 4, normalised here so the rest of the product never
sees the file's quirks:

* columns are selected by name (the detailed file has had 39 and 31 columns);
* tick size is in paise on every non-index row (``5.0`` = Rs 0.05) and in rupees on index rows;
* strike ``-0.01000`` is a sentinel on futures, blank on equities and indices;
* the underlying's name is blank on NSE derivatives: it is derived from the trading symbol
  (``NIFTY-Oct2024-19600-CE`` -> ``NIFTY``);
* expiry times are IST wall-clock times (14:30 NSE, 15:30 BSE in real files); ``0001-01-01`` and
  blank mean "no expiry";
* exchange test instruments (``011NSETEST``) are dropped, as are unknown exchanges (counted).

``ScripMasterParser.rows()`` streams normalised rows (tuples in ``STAGING_COLUMNS`` order) from an
iterator of raw byte lines and keeps counts in a ``ParseReport``; whole-file problems (bad header,
binary junk, a truncated last line, no rows) raise ``ScripMasterError``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import operator
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import BinaryIO
from zoneinfo import ZoneInfo

# The catalog's own copy of the zone: instruments never imports trading (an import contract),
# so it cannot take trading.rules.market.IST; tests/instruments/test_scrip_master.py checks
# the two are the same zone.
IST = ZoneInfo("Asia/Kolkata")

# Bump when normalisation changes so an unchanged file is still re-imported once.
# 2: values the catalog cannot hold are rejected (bounds below), so a file imported under 1
# is read again under the new rules.
NORMALISER_VERSION = "2"

SEGMENTS: dict[tuple[str, str], str] = {
    ("NSE", "I"): "IDX_I",
    ("BSE", "I"): "IDX_I",
    ("NSE", "E"): "NSE_EQ",
    ("NSE", "D"): "NSE_FNO",
    ("NSE", "C"): "NSE_CURRENCY",
    ("BSE", "E"): "BSE_EQ",
    ("BSE", "D"): "BSE_FNO",
    ("BSE", "C"): "BSE_CURRENCY",
    ("MCX", "M"): "MCX_COMM",
}
KNOWN_EXCHANGES = frozenset(exchange for exchange, _ in SEGMENTS)
_SEGMENT_NUMBER = {name: i for i, name in enumerate(sorted(set(SEGMENTS.values())))}

# Normalised row layout: ``kind`` then the catalog tables' own column order (instruments use
# [1:17], derivatives [1:23]), so the importer writes rows without rearranging them.
STAGING_COLUMNS = (
    "kind",  # "I" instrument (no expiry) or "D" derivative
    "exchange",
    "segment",
    "exchange_segment",
    "security_id",
    "instrument",
    "instrument_type",
    "trading_symbol",
    "display_name",
    "symbol_name",
    "isin",
    "series",
    "lot_size",
    "tick_size",
    "underlying_security_id",
    "underlying_symbol",
    "row_hash",
    "expiry_date",
    "expiry_at",
    "strike",
    "option_type",
    "expiry_flag",
    "expiry_code",
)

# Logical field -> column name in each format. None: the format has no such column.
COMPACT = {
    "exchange": "SEM_EXM_EXCH_ID",
    "segment": "SEM_SEGMENT",
    "security_id": "SEM_SMST_SECURITY_ID",
    "instrument": "SEM_INSTRUMENT_NAME",
    "expiry_code": "SEM_EXPIRY_CODE",
    "trading_symbol": "SEM_TRADING_SYMBOL",
    "lot_size": "SEM_LOT_UNITS",
    "display_name": "SEM_CUSTOM_SYMBOL",
    "expiry": "SEM_EXPIRY_DATE",
    "strike": "SEM_STRIKE_PRICE",
    "option_type": "SEM_OPTION_TYPE",
    "tick_size": "SEM_TICK_SIZE",
    "expiry_flag": "SEM_EXPIRY_FLAG",
    "instrument_type": "SEM_EXCH_INSTRUMENT_TYPE",
    "series": "SEM_SERIES",
    "symbol_name": "SM_SYMBOL_NAME",
    "isin": None,
    "underlying_security_id": None,
    "underlying_symbol": None,
}
DETAILED = {
    "exchange": "EXCH_ID",
    "segment": "SEGMENT",
    "security_id": "SECURITY_ID",
    "instrument": "INSTRUMENT",
    "expiry_code": None,
    "trading_symbol": None,  # derived: SYMBOL_NAME on derivatives, UNDERLYING_SYMBOL otherwise
    "lot_size": "LOT_SIZE",
    "display_name": "DISPLAY_NAME",
    "expiry": "SM_EXPIRY_DATE",
    "strike": "STRIKE_PRICE",
    "option_type": "OPTION_TYPE",
    "tick_size": "TICK_SIZE",
    "expiry_flag": "EXPIRY_FLAG",
    "instrument_type": "INSTRUMENT_TYPE",
    "series": "SERIES",
    "symbol_name": "SYMBOL_NAME",
    "isin": "ISIN",
    "underlying_security_id": "UNDERLYING_SECURITY_ID",
    "underlying_symbol": "UNDERLYING_SYMBOL",
}
# The order in which ``_row`` unpacks a record.
FIELDS = (
    "exchange",
    "segment",
    "security_id",
    "instrument",
    "expiry_code",
    "trading_symbol",
    "lot_size",
    "display_name",
    "expiry",
    "strike",
    "option_type",
    "tick_size",
    "expiry_flag",
    "instrument_type",
    "series",
    "symbol_name",
    "isin",
    "underlying_security_id",
    "underlying_symbol",
)
_REQUIRED = (
    "exchange",
    "segment",
    "security_id",
    "instrument",
    "lot_size",
    "expiry",
    "strike",
    "option_type",
    "tick_size",
)
_REQUIRED_BY_FORMAT = {
    "compact": (*_REQUIRED, "trading_symbol"),
    "detailed": (*_REQUIRED, "symbol_name", "underlying_symbol"),
}

_TEST_SYMBOL = re.compile(r"(NSE|BSE|MCX)TEST")

# -- what a row may hold (a value outside these is a rejected row, counted under its column) --
# Security ids travel in the feed header's u32 field (PROTOCOL.md 2.x, ``<BHBI``), and the
# watchlist and DHANHQ_WS_WATCHLIST allow the same range.
MAX_SECURITY_ID = 4_294_967_295
# Units per lot. Real NSE/BSE index options use 10-140 (PROTOCOL.md 5: NIFTY 25/75/65, SENSEX
# 10/20, MIDCPNIFTY up to 140); the real sample's largest lot is 12,000 (a BSE SME equity);
# NSE's JPYINR currency contract is 100,000 yen. A figure above this is a typo or junk.
MAX_LOT_SIZE = 100_000
# Expiry years a contract may carry (the file's 0001-01-01 "no expiry" never reaches here).
EXPIRY_YEARS = range(2000, 2100)
# The catalog's numeric columns (instruments.models; tests/instruments check these match):
# Derivative.strike numeric(14, 4), Scrip.tick_size numeric(12, 4), in rupees.
STRIKE_DIGITS = (14, 4)
TICK_DIGITS = (12, 4)
# The catalog's text columns a file value goes into, with their lengths (same check).
TEXT_LIMITS = {
    "instrument": 16,
    "instrument_type": 16,
    "trading_symbol": 64,
    "display_name": 128,
    "symbol_name": 128,
    "isin": 12,
    "series": 8,
    "underlying_symbol": 64,
}
# Numbers are ASCII: Decimal() and int() also read other scripts' digits (Arabic-Indic
# U+0661 U+0660 as 10), underscores (1_000) and padding. Whole-number columns take no exponent
# either (1e9).
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_WHOLE = re.compile(r"[0-9]+(?:\.0*)?")  # Dhan writes lots as 25 or 25.0
# Control characters (C0, DEL, C1) and the Unicode line and paragraph separators: no value of
# a scrip master holds them (a quoted newline inside a symbol is junk).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_EXPIRY_FLAGS = {"W": "W", "M": "M"}
_NO_VALUE = frozenset({"", "NA", "XX", "N/A"})
# A date-only expiry expires at the exchange's close (the catalog's default time of day).
_SESSION_CLOSE = time(15, 30)


class ScripMasterError(ValueError):
    """The file as a whole is unusable; nothing from it may be imported."""


@dataclass
class RowProblem:
    line: int
    reason: str
    detail: str


@dataclass
class ParseReport:
    """What the parser saw. ``rejected`` are malformed rows; ``dropped`` are filtered by policy."""

    format: str = ""
    columns: int = 0
    rows_read: int = 0
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    samples: list[RowProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # (exchange segment, security id) of each rejected row whose key could still be read: the
    # importer keeps those contracts as stored instead of taking them for gone from the file.
    rejected_keys: list[tuple[str, int]] = field(default_factory=list)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


class _Corrupt(Exception):
    """A row shows the whole file is corrupt (not just one bad row)."""


class _RowError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        self.reason, self.detail = reason, detail


def _aware_expiry(raw: str) -> datetime | None:
    """IST wall-clock expiry -> aware datetime; None for blank/``0001-01-01`` (no expiry)."""
    if raw in _NO_VALUE or raw.startswith("0001-01-01"):
        return None
    try:
        if len(raw) > 10:
            naive = datetime.strptime(raw[:19], "%Y-%m-%d %H:%M:%S")
        else:
            naive = datetime.combine(date.fromisoformat(raw), _SESSION_CLOSE)
    except ValueError:
        raise _RowError("expiry", f"expiry {raw!r} is not YYYY-MM-DD[ HH:MM:SS]") from None
    if naive.year not in EXPIRY_YEARS or not raw.isascii():
        raise _RowError(
            "expiry",
            f"expiry {raw!r} is outside the years {EXPIRY_YEARS[0]}-{EXPIRY_YEARS[-1]}"
            if raw.isascii()
            else f"expiry {raw!r} is not written in ASCII digits",
        )
    return naive.replace(tzinfo=IST)


def _decimal(raw: str, what: str) -> Decimal:
    """A decimal number in ASCII digits (an exponent allowed); anything else rejects the row."""
    if _DECIMAL.fullmatch(raw) is None:
        raise _RowError(what, f"{what} {raw!r} is not a number in ASCII digits")
    try:
        return Decimal(raw)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid numbers
        raise _RowError(what, f"{what} {raw!r} is not a number") from None


def _fits(value: Decimal, digits: tuple[int, int]) -> bool:
    """``value`` is stored exactly by a numeric(max_digits, places) column."""
    max_digits, places = digits
    _sign, figures, exponent = value.normalize().as_tuple()
    assert isinstance(exponent, int)  # finite: _decimal admits no NaN or Infinity
    integer_digits = len(figures) + exponent
    return -exponent <= places and integer_digits <= max_digits - places


def _ends_with_newline(fh: BinaryIO) -> bool:
    start = fh.tell()
    fh.seek(0, io.SEEK_END)
    size = fh.tell()
    if size == 0:
        fh.seek(start)
        return True
    fh.seek(size - 1)
    last = fh.read(1)
    fh.seek(start)
    return last == b"\n"


def _locate_corruption(fh: BinaryIO, name: str, exc: Exception, line: int) -> str:
    """Error path only: re-read the file to name the first line that is not UTF-8 CSV text;
    otherwise the CSV reader's own complaint at ``line``, the line it was reading (a field
    over the csv module's size limit, say)."""
    fh.seek(0)
    for number, raw in enumerate(fh, 1):
        if b"\x00" in raw:
            return f"{name}: line {number}: contains NUL bytes: the file is binary or corrupt"
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            return (
                f"{name}: line {number}: not UTF-8 text (byte 0x{raw[bad.start]:02x} at column "
                f"{bad.start + 1}): the file is binary or corrupt"
            )
    return f"{name}: line {line}: unreadable CSV ({exc})"


def _copy_escape(value: str) -> str:
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )


def _control(fields: tuple[str, ...]) -> _RowError | None:
    """The rejection for the first field holding a control character, or None."""
    for name, value in zip(FIELDS, fields, strict=True):
        found = _CONTROL.search(value)
        if found is not None:
            return _RowError(
                name,
                f"{name.replace('_', ' ')} {value[:80]!r} holds a control character "
                f"(U+{ord(found.group()):04X})",
            )
    return None


def _too_long(**values: str) -> _RowError:
    """The rejection for the first value longer than its catalog column (error path only)."""
    for name, value in values.items():
        if len(value) > TEXT_LIMITS[name]:
            return _RowError(
                name,
                f"{name.replace('_', ' ')} {value[:40]!r}... is {len(value)} characters long "
                f"(the catalog holds {TEXT_LIMITS[name]})",
            )
    raise AssertionError("no value is too long")  # pragma: no cover


# SEM_EXPIRY_CODE is informative (0 near, 1 next, 2 far): a value that is not a small ASCII
# integer reads as 0, as blank and NA always have.
_EXPIRY_CODES = frozenset({"0", "1", "2", "3"})


def _expiry_code(raw: str) -> str:
    digits = raw[1:] if raw.startswith("-") else raw
    if digits.isascii() and digits.isdigit() and len(digits) <= 4:
        return str(int(raw))
    return "0"


def _text(value: Decimal) -> str:
    """Plain decimal text without exponent or trailing zeros (``19600``, ``0.05``)."""
    text = format(value.normalize(), "f")
    return text


class ScripMasterParser:
    """Streams normalised rows out of a scrip master.

    ``format_datetime`` turns an aware expiry into the text the target database stores, so the
    loader can pass rows through without touching them again (hot loop: ~250k rows).
    """

    def __init__(
        self,
        *,
        exchanges: Iterable[str] = ("NSE", "BSE"),
        format_datetime: Callable[[datetime], str] = lambda dt: dt.isoformat(sep=" "),
        max_samples: int = 5,
        name: str = "scrip master",
        null: str | None = None,
    ) -> None:
        """``null`` is what an absent value becomes: None, or ``"\\N"`` for PostgreSQL's COPY
        text format (then the few values holding a backslash, tab or line break are escaped)."""
        self.null = null
        self.copy_text = null == "\\N"
        self.exchanges = frozenset(exchanges)
        self.format_datetime = format_datetime
        self.max_samples = max_samples
        self.name = name
        self.report = ParseReport()
        # Few distinct values repeat across hundreds of thousands of rows: parse each once.
        self._expiry_cache: dict[str, tuple[str, str] | None] = {}
        self._tick_cache: dict[tuple[str, bool], str] = {}
        self._strike_cache: dict[str, str | None] = {}
        self._lot_cache: dict[str, str] = {}
        self._seen: set[int] = set()

    # -- whole file -----------------------------------------------------------------------------

    def rows(
        self, fh: BinaryIO, progress: Callable[[int, int], None] | None = None
    ) -> Iterator[tuple]:
        """Normalised rows from a seekable binary file. ``progress(bytes_read, rows)`` is called
        every 20,000 rows. Raises ScripMasterError for whole-file problems (possibly after some
        rows were yielded: the caller's transaction must roll back)."""
        ends_with_newline = _ends_with_newline(fh)
        text = io.TextIOWrapper(fh, encoding="utf-8", errors="strict", newline="")
        reader = csv.reader(text)
        report = self.report
        try:
            header = next(reader, None)
            if header is None:
                raise ScripMasterError(f"{self.name}: the file is empty")
            pick, width, detailed = self._resolve_header(header)
            last_bad_line = 0
            for record in reader:
                if not record:
                    continue  # blank line
                report.rows_read += 1
                if progress is not None and report.rows_read % 20000 == 0:
                    progress(fh.tell(), report.rows_read)
                try:
                    if len(record) != width:
                        raise _RowError("field count", f"{len(record)} fields, expected {width}")
                    record.append("")  # what a column absent from this format reads as
                    row = self._row(tuple(map(str.strip, pick(record))), detailed)
                except _Corrupt as exc:
                    raise ScripMasterError(f"{self.name}: line {reader.line_num}: {exc}") from None
                except _RowError as problem:
                    last_bad_line = reader.line_num
                    self._reject(reader.line_num, problem.reason, problem.detail)
                    if problem.reason != "field count":  # columns where the header says
                        key = self._readable_key(pick(record))
                        if key is not None:
                            report.rejected_keys.append(key)
                    continue
                if row is not None:
                    report.accepted += 1
                    yield row
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ScripMasterError(
                _locate_corruption(fh, self.name, exc, reader.line_num)
            ) from None
        finally:
            text.detach()  # leave the caller's file open
        if last_bad_line and last_bad_line == reader.line_num and not ends_with_newline:
            raise ScripMasterError(
                f"{self.name}: truncated: the last line ({last_bad_line}) is incomplete and has "
                "no line ending (a download cut off mid-way?)"
            )
        if not ends_with_newline:
            report.warnings.append(f"{self.name}: the file does not end with a line ending")
        if report.rows_read == 0:
            raise ScripMasterError(f"{self.name}: the file has a header but no rows")

    def _resolve_header(self, header: list[str]) -> tuple[Callable[[list[str]], tuple], int, bool]:
        names = [h.strip().lstrip("\ufeff").upper() for h in header]
        if "SEM_SMST_SECURITY_ID" in names:
            fmt, mapping = "compact", COMPACT
        elif "SECURITY_ID" in names and "EXCH_ID" in names:
            fmt, mapping = "detailed", DETAILED
        else:
            shown = ",".join(header[:6])[:120]
            hint = " (it looks like an HTML page)" if "<" in shown else ""
            raise ScripMasterError(
                f"{self.name}: line 1: not a Dhan scrip master header{hint}: expected the "
                f"compact (SEM_EXM_EXCH_ID,...) or detailed (EXCH_ID,...) columns, got {shown!r}"
            )
        position = {name: i for i, name in enumerate(names)}
        missing = [mapping[f] for f in _REQUIRED_BY_FORMAT[fmt] if mapping[f] not in position]
        if missing:
            raise ScripMasterError(
                f"{self.name}: line 1: the {fmt} header lacks required column(s) "
                f"{', '.join(str(m) for m in missing)}"
            )
        self.report.format = fmt
        self.report.columns = len(names)
        width = len(names)
        # A column this format lacks reads the blank appended at index ``width``.
        indices = [position.get(mapping[f], width) if mapping[f] else width for f in FIELDS]
        return operator.itemgetter(*indices), width, fmt == "detailed"

    def _readable_key(self, fields: tuple[str, ...]) -> tuple[str, int] | None:
        """A rejected row's (exchange segment, security id) when both read cleanly and its
        exchange is imported; None otherwise (error path only)."""
        exchange, segment, raw_id = (value.strip().upper() for value in fields[:3])
        exchange_segment = SEGMENTS.get((exchange, segment))
        if exchange not in self.exchanges or exchange_segment is None:
            return None
        if not (raw_id.isascii() and raw_id.isdigit()) or not 0 < int(raw_id) <= MAX_SECURITY_ID:
            return None
        return exchange_segment, int(raw_id)

    def _reject(self, line: int, reason: str, detail: str) -> None:
        self.report.rejected[reason] += 1
        if len(self.report.samples) < self.max_samples:
            self.report.samples.append(RowProblem(line, reason, detail))

    # -- one row --------------------------------------------------------------------------------

    def _row(self, fields: tuple[str, ...], detailed: bool) -> tuple | None:
        """One record (``FIELDS`` order, stripped) -> staging tuple, or None when filtered."""
        (exchange, segment, raw_id, instrument, code, trading_symbol, lot, display, expiry,
         raw_strike, option_type, tick, expiry_flag, instrument_type, series, symbol_name, isin,
         raw_underlying_id, underlying_symbol) = fields  # fmt: skip
        # Dhan writes codes in upper case; upper() only runs when a lookup misses.
        if exchange not in self.exchanges:
            exchange = exchange.upper()
            if exchange not in KNOWN_EXCHANGES:
                self.report.dropped["unknown exchange"] += 1
                return None
            if exchange not in self.exchanges:
                self.report.dropped[f"exchange {exchange} not enabled"] += 1
                return None
        exchange_segment = SEGMENTS.get((exchange, segment))
        if exchange_segment is None:
            segment = segment.upper()
            exchange_segment = SEGMENTS.get((exchange, segment))
            if exchange_segment is None:
                raise _RowError("segment", f"unknown segment {segment!r} for exchange {exchange}")
        if not raw_id.isdigit() or not raw_id.isascii() or raw_id.strip("0") == "":
            raise _RowError(
                "security_id", f"security id {raw_id!r} is not a positive integer in ASCII digits"
            )
        security_id = int(raw_id)
        if security_id > MAX_SECURITY_ID:
            raise _RowError(
                "security_id", f"security id {raw_id!r} is above {MAX_SECURITY_ID} (32 bits)"
            )
        if not instrument.isupper():
            instrument = instrument.upper()
            if not instrument:
                raise _RowError("instrument", "blank instrument code")
        is_derivative = instrument.startswith(("OPT", "FUT"))
        if underlying_symbol in _NO_VALUE:
            underlying_symbol = ""
        if detailed:
            # The detailed file has no trading-symbol column: derivatives carry it in
            # SYMBOL_NAME, other rows in UNDERLYING_SYMBOL (SYMBOL_NAME is the company name).
            trading_symbol = symbol_name if is_derivative else (underlying_symbol or symbol_name)
        if not trading_symbol:
            raise _RowError("trading_symbol", "blank trading symbol")
        if ("TEST" in trading_symbol or "TEST" in symbol_name) and _TEST_SYMBOL.search(
            trading_symbol + " " + symbol_name
        ):
            self.report.dropped["test instrument"] += 1
            return None

        lot_size = self._lot_cache.get(lot) or self._lot(lot)
        tick_size = self._tick_cache.get((tick, segment == "I")) or self._tick(tick, segment == "I")

        expiry_date = expiry_at = strike = None
        if is_derivative:
            parsed = (
                self._expiry_cache[expiry] if expiry in self._expiry_cache else self._expiry(expiry)
            )
            if parsed is None:
                raise _RowError("expiry", f"{instrument} without an expiry date")
            expiry_date, expiry_at = parsed
            if not underlying_symbol:
                underlying_symbol = trading_symbol.split("-", 1)[0].strip()
            if instrument.startswith("OPT"):
                if option_type not in ("CE", "PE"):
                    option_type = option_type.upper()
                if option_type not in ("CE", "PE"):
                    raise _RowError("option_type", f"option type {option_type!r} is not CE/PE")
                strike = (
                    self._strike_cache[raw_strike]
                    if raw_strike in self._strike_cache
                    else self._strike(raw_strike)
                )
                if strike is None:
                    raise _RowError("strike", f"option strike {raw_strike!r} is not positive")
            else:
                option_type = ""
        else:
            option_type = ""

        null = self.null
        if raw_underlying_id.isdigit():
            underlying_id = raw_underlying_id.lstrip("0") or null
            if not raw_underlying_id.isascii() or (
                len(raw_underlying_id) > 9 and int(raw_underlying_id) > MAX_SECURITY_ID
            ):
                raise _RowError(
                    "underlying_security_id",
                    f"underlying security id {raw_underlying_id!r} is not an ASCII integer up "
                    f"to {MAX_SECURITY_ID}",
                )
        else:
            underlying_id = null  # blank or NA

        # The hash covers the raw fields (normalisation is a function of them and the version).
        joined = "\x1f".join((NORMALISER_VERSION, *fields))
        if "\x00" in joined:  # csv accepts NUL characters; a text scrip master never has them
            raise _Corrupt("contains NUL bytes: the file is binary or corrupt")
        # isprintable() is the fast test (a tenth of a regex search): false for every control
        # character and separator, and for a few harmless ones (a no-break space) that the
        # regex then lets through.
        if not "".join(fields).isprintable() and (problem := _control(fields)) is not None:
            raise problem
        if (
            len(trading_symbol) > 64
            or len(display) > 128
            or len(symbol_name) > 128
            or len(underlying_symbol) > 64
            or len(instrument) > 16
            or len(instrument_type) > 16
            or len(series) > 8
            or len(isin) > 12
        ):
            raise _too_long(
                instrument=instrument,
                instrument_type=instrument_type,
                trading_symbol=trading_symbol,
                display_name=display,
                symbol_name=symbol_name,
                isin=isin,
                series=series,
                underlying_symbol=underlying_symbol,
            )

        seen = self._seen
        key = (_SEGMENT_NUMBER[exchange_segment] << 48) | security_id
        if key in seen:
            raise _RowError("duplicate", f"{exchange_segment}:{security_id} appears twice")
        seen.add(key)

        digest = hashlib.md5(joined.encode(), usedforsecurity=False).hexdigest()
        values = (
            "D" if is_derivative else "I",
            exchange,
            segment,
            exchange_segment,
            raw_id if raw_id[0] != "0" else str(security_id),
            instrument,
            instrument_type
            if instrument_type.isupper() or not instrument_type
            else instrument_type.upper(),
            trading_symbol,
            display,
            symbol_name,
            "" if isin in _NO_VALUE else isin,
            "" if series in _NO_VALUE else series,
            lot_size,
            tick_size,
            underlying_id,
            underlying_symbol,
            digest,
            null if expiry_date is None else expiry_date,
            null if expiry_at is None else expiry_at,
            null if strike is None else strike,
            option_type,
            expiry_flag
            if expiry_flag in _EXPIRY_FLAGS
            else _EXPIRY_FLAGS.get(expiry_flag.upper(), ""),
            code if code in _EXPIRY_CODES else _expiry_code(code),
        )
        # Tabs and line breaks were refused above (control characters): only a backslash
        # needs COPY's escaping.
        if self.copy_text and "\\" in joined:
            values = tuple(v if v == null else _copy_escape(v) for v in values)
        return values

    def _lot(self, raw: str) -> str:
        lot = self._lot_cache.get(raw)
        if lot is None:
            if _WHOLE.fullmatch(raw) is None or (units := int(raw.split(".", 1)[0])) <= 0:
                raise _RowError(
                    "lot_size", f"lot size {raw!r} is not a positive whole number in ASCII digits"
                )
            if units > MAX_LOT_SIZE:
                raise _RowError(
                    "lot_size", f"lot size {raw!r} is above {MAX_LOT_SIZE:,} units per lot"
                )
            lot = self._lot_cache[raw] = str(units)
        return lot

    def _tick(self, raw: str, is_index: bool) -> str:
        cached = self._tick_cache.get((raw, is_index))
        if cached is None:
            value = _decimal(raw, "tick_size") if raw else Decimal(0)
            if value < 0:
                raise _RowError("tick_size", f"tick size {raw!r} is negative")
            # An order price is rounded to the tick: every traded row needs one. Index rows are
            # not traded, and Dhan's real file has 0 there (GIFTNIFTY): kept as it is.
            if value == 0 and not is_index:
                raise _RowError("tick_size", f"tick size {raw!r} is not positive")
            # Index rows carry rupees; every other row carries paise.
            rupees = value if is_index else value / 100
            if not _fits(rupees, TICK_DIGITS):
                raise _RowError(
                    "tick_size",
                    f"tick size {raw!r} (Rs {_text(rupees)}) does not fit the catalog "
                    f"(at most {TICK_DIGITS[0] - TICK_DIGITS[1]} digits before the point and "
                    f"{TICK_DIGITS[1]} after)",
                )
            cached = _text(rupees)
            self._tick_cache[(raw, is_index)] = cached
        return cached

    def _strike(self, raw: str) -> str | None:
        if raw not in self._strike_cache:
            value = _decimal(raw, "strike") if raw else Decimal(0)
            # -0.01 is Dhan's "no strike" sentinel (futures); non-positive is never a strike.
            if value > 0 and not _fits(value, STRIKE_DIGITS):
                raise _RowError(
                    "strike",
                    f"strike {raw!r} does not fit the catalog (at most "
                    f"{STRIKE_DIGITS[0] - STRIKE_DIGITS[1]} digits before the point and "
                    f"{STRIKE_DIGITS[1]} after)",
                )
            self._strike_cache[raw] = _text(value) if value > 0 else None
        return self._strike_cache[raw]

    def _expiry(self, raw: str) -> tuple[str, str] | None:
        if raw not in self._expiry_cache:
            aware = _aware_expiry(raw)
            self._expiry_cache[raw] = (
                None if aware is None else (aware.date().isoformat(), self.format_datetime(aware))
            )
        return self._expiry_cache[raw]
