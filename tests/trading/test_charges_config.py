"""trading.charges: config/charges.yml loads; a bad file is refused naming file, row and field."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings as django_settings

from config_schema import ConfigError
from trading.charges import charges_table, load_charges_config, parse_charges_config
from trading.rules.charges import round_trip

REAL_FILE = Path(django_settings.BASE_DIR) / "config" / "charges.yml"
NAME = "my-charges.yml"  # not the default name: proves messages carry the file's own name


def real_data() -> dict[str, Any]:
    return yaml.safe_load(REAL_FILE.read_text(encoding="utf-8"))


def write(tmp_path: Path, data: Any, name: str = NAME) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


# -- the real file --------------------------------------------------------------------------------


def test_the_real_charges_file_loads_with_the_stt_change_on_the_first_of_april_2026():
    table = load_charges_config(REAL_FILE)
    assert table.rates_on(date(2026, 3, 31)).stt_sell == Decimal("0.001")
    assert table.rates_on(date(2026, 4, 1)).stt_sell == Decimal("0.0015")
    assert table.rates[-1].effective_to is None
    assert len(table.version) == 12


def test_the_real_charges_file_gives_the_domain_check_value():
    # DOMAIN.md: NIFTY, 1 lot of 65, buy 100, sell 110 -> about Rs 64 (worked out component by
    # component in tests/trading/rules/test_charges.py: 26.33 + 37.60).
    table = load_charges_config(REAL_FILE)
    total = round_trip("NSE", 65, Decimal("100"), Decimal("110"), date(2026, 5, 4), table).total
    assert total == Decimal("63.93")


def test_charges_table_reads_the_configured_file_and_rereads_it_when_it_changes(tmp_path, settings):
    path = write(tmp_path, real_data(), "charges.yml")
    settings.CHARGES_CONFIG_FILE = path
    first = charges_table()
    assert charges_table() is first  # cached while the file is unchanged

    data = real_data()
    data["rates"][1]["stt_sell"] = 0.002
    write(tmp_path, data, "charges.yml")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))

    second = charges_table()
    assert second.rates_on(date(2026, 4, 1)).stt_sell == Decimal("0.002")
    assert second.version != first.version


def test_a_missing_configured_charges_file_is_a_config_error_naming_it(tmp_path, settings):
    settings.CHARGES_CONFIG_FILE = tmp_path / "absent.yml"
    with pytest.raises(ConfigError, match=r"absent\.yml: missing"):
        charges_table()


def _touch_later(path: Path, seconds: int) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + seconds * 1_000_000_000))


def test_a_file_broken_after_a_good_read_keeps_the_last_good_table_said_once(
    tmp_path, settings, caplog
):
    # A fill must be booked with the charges in force: an edit that breaks the file while the
    # workers run (a probe found every fill failing to book) keeps what was read, loudly.
    path = write(tmp_path, real_data(), "charges.yml")
    settings.CHARGES_CONFIG_FILE = path
    good = charges_table()
    data = real_data()
    data["rates"][0]["brokerage_per_order"] = -20
    write(tmp_path, data, "charges.yml")
    _touch_later(path, 1)
    with caplog.at_level("ERROR", logger="trading.charges"):
        assert charges_table() is good
        assert charges_table() is good
    (said,) = [r.getMessage() for r in caplog.records]
    assert "rates[0].brokerage_per_order" in said and "stay in force" in said

    # Fixed: the new table is read; broken again later: said again, once.
    fixed = real_data()
    fixed["rates"][1]["stt_sell"] = 0.002
    write(tmp_path, fixed, "charges.yml")
    _touch_later(path, 2)
    assert charges_table().rates_on(date(2026, 4, 1)).stt_sell == Decimal("0.002")
    path.unlink()
    caplog.clear()
    with caplog.at_level("ERROR", logger="trading.charges"):
        assert charges_table().rates_on(date(2026, 4, 1)).stt_sell == Decimal("0.002")
        charges_table()
    assert len(caplog.records) == 1 and "missing" in caplog.records[0].getMessage()


def test_a_file_broken_before_any_good_read_is_a_config_error(tmp_path, settings):
    data = real_data()
    data["rates"][0]["brokerage_per_order"] = -20
    settings.CHARGES_CONFIG_FILE = write(tmp_path, data, "never-good.yml")
    with pytest.raises(ConfigError, match=r"never-good\.yml: rates\[0\]\.brokerage_per_order"):
        charges_table()


def test_the_version_follows_the_content_not_the_key_order():
    data = real_data()
    reordered = {"rates": [dict(reversed(list(row.items()))) for row in data["rates"]]}
    changed = copy.deepcopy(data)
    changed["rates"][0]["exchange_txn"]["BSE"] = 0.0003
    version = parse_charges_config(data).version
    assert parse_charges_config(reordered).version == version
    assert parse_charges_config(changed).version != version


# -- bad files ------------------------------------------------------------------------------------

Edit = Callable[[dict[str, Any]], None]


def _set(row: int, key: str, value: Any) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        data["rates"][row][key] = value

    return edit


def _set_exchange(row: int, key: str, exchange: str, value: Any) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        data["rates"][row][key][exchange] = value

    return edit


def _delete(row: int, key: str, exchange: str | None = None) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        if exchange is None:
            del data["rates"][row][key]
        else:
            del data["rates"][row][key][exchange]

    return edit


def _top(key: str, value: Any) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        data[key] = value

    return edit


BAD = [
    pytest.param(
        _set(0, "brokerage", 20),
        "rates[0].brokerage: unknown key (expected one of effective_from, effective_to,",
        id="unknown-key-in-a-row",
    ),
    pytest.param(_top("fees", {}), "fees: unknown key (expected one of rates)", id="unknown-top"),
    pytest.param(
        _set_exchange(1, "exchange_txn", "MCX", 0.0003),
        "rates[1].exchange_txn.MCX: unknown key (expected one of NSE, BSE)",
        id="unknown-exchange",
    ),
    pytest.param(_delete(1, "gst"), "rates[1].gst: missing required key", id="missing-key"),
    pytest.param(
        _delete(0, "ipft", "BSE"), "rates[0].ipft.BSE: missing required key", id="missing-exchange"
    ),
    pytest.param(
        _set(1, "stt_sell", "lots"),
        "rates[1].stt_sell: expected a fraction from 0 to 0.01 (1 %; today 0.15 %: "
        "write 0.1 % as 0.001), got 'lots'",
        id="text-rate",
    ),
    pytest.param(
        _set(1, "brokerage_per_order", True),
        "rates[1].brokerage_per_order: expected rupees between 0 and 1000, got True",
        id="boolean-rupees",
    ),
    pytest.param(
        _set(0, "exchange_txn", 0.0003503),
        "rates[0].exchange_txn: expected a mapping of NSE, BSE to fractions, got 0.0003503",
        id="rate-instead-of-a-mapping",
    ),
    pytest.param(
        _set(0, "effective_from", "first of October"),
        "rates[0].effective_from: expected a date YYYY-MM-DD, got 'first of October'",
        id="text-date",
    ),
    pytest.param(
        _set(1, "stt_sell", -0.0015),
        "rates[1].stt_sell: expected a fraction from 0 to 0.01 (1 %; today 0.15 %: "
        "write 0.1 % as 0.001), got -0.0015",
        id="negative-rate",
    ),
    pytest.param(
        _set_exchange(0, "ipft", "NSE", -0.000005),
        "rates[0].ipft.NSE: expected a fraction from 0 to 0.0001 (0.01 %; "
        "today 0.0005 %: write 0.1 % as 0.001), got -5e-06",
        id="negative-exchange-rate",
    ),
    pytest.param(
        _set(1, "stt_sell", 0.1),
        "rates[1].stt_sell: expected a fraction from 0 to 0.01 (1 %; today 0.15 %: "
        "write 0.1 % as 0.001), got 0.1",
        id="stt-written-as-a-percentage",
    ),
    pytest.param(
        _set(1, "sebi_per_crore", -10),
        "rates[1].sebi_per_crore: expected rupees between 0 and 10000, got -10",
        id="negative-rupees",
    ),
    pytest.param(
        _set(0, "gst", 18),
        "rates[0].gst: expected a fraction from 0 to 0.5 (50 %; today 18 %: "
        "write 0.1 % as 0.001), got 18",
        id="percent-written-as-a-whole-number",
    ),
    pytest.param(
        _set(0, "effective_to", date(2024, 9, 1)),
        "rates[0].effective_to: 2024-09-01 is before effective_from 2024-10-01",
        id="ends-before-it-starts",
    ),
    pytest.param(
        _set(1, "effective_from", date(2026, 3, 15)),
        "rates[1].effective_from: 2026-03-15 overlaps rates[0] (2024-10-01..2026-03-31)",
        id="overlapping-rows",
    ),
    pytest.param(
        _set(1, "effective_from", date(2026, 4, 5)),
        "rates[1].effective_from: expected 2026-04-01 (the day after rates[0] ends), got "
        "2026-04-05: no rates in force 2026-04-01..2026-04-04",
        id="gap-between-rows",
    ),
    pytest.param(
        _set(0, "effective_to", None),
        "rates[0].effective_to: null (open-ended) but rates[1] starts on 2026-04-01",
        id="open-ended-row-not-last",
    ),
    pytest.param(
        _top("rates", []), "rates: expected a non-empty list of rate sets, got []", id="no-rows"
    ),
    pytest.param(
        _set(0, "brokerage_per_order", "20 rupees"),
        "rates[0].brokerage_per_order: expected rupees between 0 and 1000, got '20 rupees'",
        id="unparseable-rupees",
    ),
]


@pytest.mark.parametrize(("edit", "problem"), BAD)
def test_a_bad_charges_file_is_refused_naming_the_file_the_row_and_the_field(
    tmp_path, edit, problem
):
    data = real_data()
    edit(data)
    with pytest.raises(ConfigError) as caught:
        load_charges_config(write(tmp_path, data))
    expected = f"{NAME}: {problem}"
    assert any(line.startswith(expected) for line in caught.value.problems), caught.value.problems
    assert expected in str(caught.value)


def test_every_problem_of_a_file_is_reported_at_once(tmp_path):
    data = real_data()
    del data["rates"][0]["stamp_buy"]
    data["rates"][1]["gst"] = -1
    with pytest.raises(ConfigError) as caught:
        load_charges_config(write(tmp_path, data))
    assert caught.value.problems == [
        f"{NAME}: rates[0].stamp_buy: missing required key",
        f"{NAME}: rates[1].gst: expected a fraction from 0 to 0.5 (50 %; today 18 %: "
        "write 0.1 % as 0.001), got -1",
    ]


def test_a_decimal_string_is_taken_exactly(tmp_path):
    data = real_data()
    data["rates"][1]["exchange_txn"]["NSE"] = "0.0003503"
    table = load_charges_config(write(tmp_path, data))
    assert table.rates[1].exchange_txn["NSE"] == Decimal("0.0003503")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("rates: [", "not valid YAML", id="broken-yaml"),
        pytest.param("- 1\n- 2\n", "expected a mapping with the key 'rates'", id="top-level-list"),
    ],
)
def test_a_file_that_is_not_a_charges_mapping_is_refused_naming_it(tmp_path, content, message):
    path = tmp_path / NAME
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=f"{NAME}: .*{message}"):
        load_charges_config(path)


def test_an_unreadable_file_is_refused_naming_its_path(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_charges_config(tmp_path / "nowhere.yml")
