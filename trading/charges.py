"""``config/charges.yml`` -> a validated ``ChargesTable`` (trading.rules.charges).

Every problem in the file is collected and reported at once, one line each, naming the file,
the row and the field: ``charges.yml: rates[1].stt_sell: expected a fraction between 0 and 1,
got -0.001``. Unknown keys, missing keys, wrong types, negative rates, amounts above their
sanity bound, an ``effective_to`` before its ``effective_from``, overlapping rows and days
covered by no row are all refused. The schema is a ``config_schema`` one (pydantic), like
every configuration file's.

Not pure (reads files and Django settings); the rules take the resulting table as a value.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import logging
import os
from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from config_schema import ConfigError
from config_schema.reading import read_yaml_file
from config_schema.schema import (
    Problem,
    adapter,
    day,
    fraction_decimal,
    items,
    note,
    nullable,
    plain,
    section,
    span,
    validate,
)
from config_schema.schema import decimal_of as _decimal_of
from trading.rules.charges import ChargeRates, ChargesTable

logger = logging.getLogger(__name__)

DEFAULT_SOURCE = "charges.yml"
EXCHANGES = ("NSE", "BSE")  # every row must list both: index options trade on both
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
BY_EXCHANGE = ("exchange_txn", "ipft")
# Sanity bounds, rupees: a flat brokerage per order (Dhan's is 20) and the SEBI fee per crore of
# turnover (10). Far above any broker's or regulator's figure, low enough to catch a typo.
MAX_BROKERAGE_RUPEES = 1000
MAX_SEBI_PER_CRORE_RUPEES = 10_000


def _rupees(high: int) -> Any:
    expected = f"rupees {span(0, high)}"

    def convert(value: Any) -> Decimal:
        amount = _decimal_of(value)
        if not 0 <= amount <= high:
            raise ValueError
        return amount

    return plain(expected, convert)


def _fraction(high: str, today: str) -> Any:
    """A rate as a decimal fraction from 0 to ``high`` (a ceiling about ten times the highest
    the rate has been, ``today``): a rate written as a percentage (0.1 meaning 0.1 %, ten
    percent as written) is refused, named, instead of charging a hundred times too much."""
    ceiling = Decimal(high)
    return fraction_decimal(
        f"a fraction from 0 to {high} ({(ceiling * 100).normalize():f} %; {today}: write 0.1 % "
        "as 0.001)",
        ceiling,
    )


def _by_exchange(rate: Any) -> Any:
    """One ``rate`` rule per exchange (EXCHANGES), as a mapping."""
    return section(
        "exchange rates",
        dict.fromkeys(EXCHANGES, rate),
        build=dict,
        expected=f"a mapping of {', '.join(EXCHANGES)} to fractions",
    )


def _check_dates(row: dict[str, Any]) -> Iterable[Problem]:
    start, end = row["effective_from"], row["effective_to"]
    if end is not None and end < start:
        yield note(
            ("effective_to",), f"{end.isoformat()} is before effective_from {start.isoformat()}"
        )


def _check_coverage(table: tuple[ChargeRates, ...]) -> Iterable[Problem]:
    """Rows sorted by start must chain day after day: no overlap, no gap, open end last."""
    rows = sorted(enumerate(table), key=lambda item: item[1].effective_from)
    for (i, earlier), (j, later) in itertools.pairwise(rows):
        if earlier.effective_to is None:
            yield note(
                (i, "effective_to"),
                f"null (open-ended) but rates[{j}] starts on {later.effective_from}: only the "
                "last row may be open-ended (close this one the day before)",
            )
            continue
        next_day = date.fromordinal(earlier.effective_to.toordinal() + 1)
        if later.effective_from < next_day:
            yield note(
                (j, "effective_from"),
                f"{later.effective_from} overlaps rates[{i}] ({earlier.span})",
            )
        elif later.effective_from > next_day:
            last_gap_day = date.fromordinal(later.effective_from.toordinal() - 1)
            yield note(
                (j, "effective_from"),
                f"expected {next_day} (the day after rates[{i}] ends), got "
                f"{later.effective_from}: no rates in force {next_day}..{last_gap_day}",
            )


_ROW = section(
    ChargeRates,
    {
        "effective_from": day("a date YYYY-MM-DD"),
        "effective_to": nullable(day(), "a date YYYY-MM-DD or null (open-ended)"),
        "brokerage_per_order": _rupees(MAX_BROKERAGE_RUPEES),
        "stt_sell": _fraction("0.01", "today 0.15 %"),
        "exchange_txn": _by_exchange(_fraction("0.001", "today 0.03503 %")),
        "ipft": _by_exchange(_fraction("0.0001", "today 0.0005 %")),
        "sebi_per_crore": _rupees(MAX_SEBI_PER_CRORE_RUPEES),
        "stamp_buy": _fraction("0.001", "today 0.003 %"),
        "gst": _fraction("0.5", "today 18 %"),
    },
    (_check_dates,),
    build=dict,  # ChargeRates refuses reversed dates itself: checked first, built by the list
    expected="a mapping (one rate set)",
)

_SCHEMA = adapter(
    section(
        "charges",
        {
            "rates": items(
                _ROW,
                "a non-empty list of rate sets",
                min_items=1,
                build=lambda rows: tuple(ChargeRates(**row) for row in rows),
                checks=(_check_coverage,),
            )
        },
        build=lambda rates: rates,
        expected="a mapping with the key 'rates'",
    )
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
    rows = validate(_SCHEMA, data, source)
    ordered = tuple(sorted(rows, key=lambda rates: rates.effective_from))
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


# The last table each path gave, and the version of a file found broken (said once): see
# charges_table.
_LAST_GOOD: dict[str, ChargesTable] = {}
_BROKEN: dict[str, tuple[int, ConfigError]] = {}


def charges_table() -> ChargesTable:
    """The effective charges table, re-read when the file changes on disk (by mtime).
    ConfigError when the file is missing or invalid and no good table was read before in this
    process (every worker reads it at its start: trading.config.store.config_at_start, so a
    broken file stops it there, named). A file broken after a good read (an edit in progress,
    a typo) keeps the last good table, said once per version of the file at ERROR: a fill must
    be booked with the charges in force, not lost to an exception after the order has filled
    at the broker. Called per position per PnL mark: the path is built as a string and stat'ed
    with os.stat (a Path object per call was most of its cost)."""
    from django.conf import settings

    configured = getattr(settings, "CHARGES_CONFIG_FILE", None)
    path = str(configured) if configured else os.path.join(settings.CONFIG_DIR, DEFAULT_SOURCE)
    try:
        mtime_ns = os.stat(path).st_mtime_ns
    except OSError:
        problem = ConfigError(f"{path}: missing (CHARGES_CONFIG_FILE / ALGO_CONFIG_DIR)")
        return _last_good(path, -1, problem)
    broken = _BROKEN.get(path)
    if broken is not None and broken[0] == mtime_ns:
        return _last_good(path, mtime_ns, broken[1])
    try:
        table = _cached(path, mtime_ns)
    except ConfigError as exc:
        return _last_good(path, mtime_ns, exc)
    _LAST_GOOD[path] = table
    _BROKEN.pop(path, None)
    return table


def _last_good(path: str, mtime_ns: int, problem: ConfigError) -> ChargesTable:
    """The last good table of ``path`` (the file at ``mtime_ns``, -1 when missing, is broken
    by ``problem``: said once); ``problem`` raised when there is none."""
    good = _LAST_GOOD.get(path)
    if good is None:
        raise problem
    said = _BROKEN.get(path)
    if said is None or said[0] != mtime_ns:
        _BROKEN[path] = (mtime_ns, problem)
        logger.error("%s; the charges read before stay in force until the file is fixed", problem)
    return good
