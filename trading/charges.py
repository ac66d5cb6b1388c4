"""``config/charges.yml`` -> a validated ``ChargesTable`` (trading.rules.charges).

Every problem in the file is collected and reported at once, one line each, naming the file,
the row and the field: ``charges.yml: rates[1].stt_sell: expected a fraction between 0 and 1,
got -0.001``. Unknown keys, missing keys, wrong types, negative rates, an ``effective_to``
before its ``effective_from``, overlapping rows and days covered by no row are all refused.

Not pure (reads files and Django settings); the rules take the resulting table as a value.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from trading.config.load import ConfigError, read_yaml_file
from trading.rules.charges import ChargeRates, ChargesTable

DEFAULT_SOURCE = "charges.yml"
EXCHANGES = ("NSE", "BSE")  # every row must list both: index options trade on both
TOP_KEYS = ("rates",)
ROW_KEYS = (
    "effective_from",
    "effective_to",
    "brokerage_per_order",
    "stt_sell",
    "exchange_txn",
    "ipft",
    "sebi_per_crore",
    "stamp_buy",
    "gst",
)
FRACTIONS = ("stt_sell", "stamp_buy", "gst")  # decimal fractions of the turnover (or of a sum)
RUPEES = ("brokerage_per_order", "sebi_per_crore")
BY_EXCHANGE = ("exchange_txn", "ipft")


class _Problems:
    """Collects problem lines in the shared format (see trading.config.load)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: list[str] = []

    def add(self, path: str, text: str) -> None:
        self.lines.append(f"{self.source}: {path}: {text}")

    def expected(self, path: str, what: str, value: Any) -> None:
        self.add(path, f"expected {what}, got {value!r}")

    def unknown(self, path: str, allowed: tuple[str, ...]) -> None:
        self.add(path, f"unknown key (expected one of {', '.join(allowed)})")

    def missing(self, path: str) -> None:
        self.add(path, "missing required key")


def _decimal(value: Any, path: str, what: str, upper: Decimal | None, out: _Problems) -> Any:
    """A non-negative number (YAML int/float, or a decimal string for exactness) as a Decimal,
    at most ``upper`` when given; None (and a problem) otherwise. Floats go through their
    shortest repr, so ``0.0003503`` is exactly 0.0003503."""
    number: Decimal | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = Decimal(str(value))
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            number = None
    too_big = number is not None and upper is not None and number > upper
    if number is None or not number.is_finite() or number < 0 or too_big:
        out.expected(path, what, value)
        return None
    return number


def _date(value: Any, path: str, out: _Problems, *, nullable: bool = False) -> Any:
    """A calendar date (YAML ``2026-04-01`` or the same quoted); None allowed when nullable.
    Returns the date, None for a valid null, or ``...`` (Ellipsis) for an invalid value."""
    if value is None and nullable:
        return None
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    what = "a date YYYY-MM-DD or null (open-ended)" if nullable else "a date YYYY-MM-DD"
    out.expected(path, what, value)
    return ...


def _by_exchange(value: Any, path: str, out: _Problems) -> dict[str, Decimal] | None:
    if not isinstance(value, dict):
        out.expected(path, f"a mapping of {', '.join(EXCHANGES)} to fractions", value)
        return None
    rates: dict[str, Decimal] = {}
    ok = True
    for key in value:
        if key not in EXCHANGES:
            out.unknown(f"{path}.{key}", EXCHANGES)
            ok = False
    for exchange in EXCHANGES:
        if exchange not in value:
            out.missing(f"{path}.{exchange}")
            ok = False
            continue
        rate = _decimal(
            value[exchange], f"{path}.{exchange}", "a fraction between 0 and 1", Decimal(1), out
        )
        if rate is None:
            ok = False
        else:
            rates[exchange] = rate
    return rates if ok else None


def _row(data: Any, path: str, out: _Problems) -> ChargeRates | None:
    if not isinstance(data, dict):
        out.expected(path, "a mapping (one rate set)", data)
        return None
    before = len(out.lines)
    for key in data:
        if key not in ROW_KEYS:
            out.unknown(f"{path}.{key}", ROW_KEYS)
    for key in ROW_KEYS:
        if key not in data:
            out.missing(f"{path}.{key}")
    values: dict[str, Any] = {}
    if "effective_from" in data:
        values["effective_from"] = _date(data["effective_from"], f"{path}.effective_from", out)
    if "effective_to" in data:
        values["effective_to"] = _date(
            data["effective_to"], f"{path}.effective_to", out, nullable=True
        )
    for key in FRACTIONS:
        if key in data:
            values[key] = _decimal(
                data[key], f"{path}.{key}", "a fraction between 0 and 1", Decimal(1), out
            )
    for key in RUPEES:
        if key in data:
            values[key] = _decimal(data[key], f"{path}.{key}", "rupees >= 0", None, out)
    for key in BY_EXCHANGE:
        if key in data:
            values[key] = _by_exchange(data[key], f"{path}.{key}", out)
    start, end = values.get("effective_from"), values.get("effective_to")
    if isinstance(start, date) and isinstance(end, date) and end < start:
        out.add(
            f"{path}.effective_to",
            f"{end.isoformat()} is before effective_from {start.isoformat()}",
        )
    if len(out.lines) > before:
        return None
    return ChargeRates(**values)


def _check_coverage(rows: list[tuple[int, ChargeRates]], out: _Problems) -> None:
    """Rows sorted by start must chain day after day: no overlap, no gap, open end last."""
    rows = sorted(rows, key=lambda item: item[1].effective_from)
    for (i, earlier), (j, later) in itertools.pairwise(rows):
        if earlier.effective_to is None:
            out.add(
                f"rates[{i}].effective_to",
                f"null (open-ended) but rates[{j}] starts on {later.effective_from}: only the "
                "last row may be open-ended (close this one the day before)",
            )
            continue
        next_day = date.fromordinal(earlier.effective_to.toordinal() + 1)
        if later.effective_from < next_day:
            out.add(
                f"rates[{j}].effective_from",
                f"{later.effective_from} overlaps rates[{i}] ({earlier.span})",
            )
        elif later.effective_from > next_day:
            last_gap_day = date.fromordinal(later.effective_from.toordinal() - 1)
            out.add(
                f"rates[{j}].effective_from",
                f"expected {next_day} (the day after rates[{i}] ends), got "
                f"{later.effective_from}: no rates in force {next_day}..{last_gap_day}",
            )


def charges_version(table_rates: tuple[ChargeRates, ...]) -> str:
    """12 hex chars of sha256 over the canonical JSON of the validated rates (key order and
    YAML spelling do not matter; any rate or date change does)."""
    rows = []
    for rates in table_rates:
        row: dict[str, Any] = {}
        for key in ROW_KEYS:
            value = getattr(rates, key)
            if key in BY_EXCHANGE:
                row[key] = {name: str(rate.normalize()) for name, rate in value.items()}
            elif isinstance(value, Decimal):
                row[key] = str(value.normalize())
            else:
                row[key] = None if value is None else value.isoformat()
        rows.append(row)
    canonical = json.dumps(rows, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def parse_charges_config(data: Any, source: str = DEFAULT_SOURCE) -> ChargesTable:
    """Validate the parsed YAML; ConfigError(message, problems) listing every problem."""
    out = _Problems(source)
    if not isinstance(data, dict):
        out.expected("(top level)", "a mapping with the key 'rates'", data)
        raise ConfigError("\n".join(out.lines), out.lines)
    for key in data:
        if key not in TOP_KEYS:
            out.unknown(str(key), TOP_KEYS)
    raw_rows = data.get("rates")
    rows: list[tuple[int, ChargeRates]] = []
    if "rates" not in data:
        out.missing("rates")
    elif not isinstance(raw_rows, list) or not raw_rows:
        out.expected("rates", "a non-empty list of rate sets", raw_rows)
    else:
        for i, raw in enumerate(raw_rows):
            rates = _row(raw, f"rates[{i}]", out)
            if rates is not None:
                rows.append((i, rates))
        if len(rows) == len(raw_rows):  # coverage only makes sense when every row is valid
            _check_coverage(rows, out)
    if out.lines:
        raise ConfigError("\n".join(out.lines), out.lines)
    ordered = tuple(sorted((rates for _, rates in rows), key=lambda rates: rates.effective_from))
    return ChargesTable(rates=ordered, version=charges_version(ordered))


def load_charges_config(path: Path) -> ChargesTable:
    """Read and validate a charges file; ConfigError naming the file (and row, field)."""
    path = Path(path)
    return parse_charges_config(read_yaml_file(path), path.name)


@functools.lru_cache(maxsize=4)
def _cached(path: str, mtime_ns: int) -> ChargesTable:
    return load_charges_config(Path(path))


def charges_config_path() -> Path:
    """settings.CHARGES_CONFIG_FILE (else CONFIG_DIR / charges.yml)."""
    from django.conf import settings

    configured = getattr(settings, "CHARGES_CONFIG_FILE", None)
    return Path(configured) if configured else Path(settings.CONFIG_DIR) / DEFAULT_SOURCE


def charges_table() -> ChargesTable:
    """The effective charges table, re-read when the file changes on disk (by mtime).
    ConfigError when the file is missing or invalid."""
    path = charges_config_path()
    try:
        mtime_ns = path.stat().st_mtime_ns
    except OSError:
        raise ConfigError(f"{path}: missing (CHARGES_CONFIG_FILE / ALGO_CONFIG_DIR)") from None
    return _cached(str(path), mtime_ns)
