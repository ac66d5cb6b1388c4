"""trading.config.load and .store: config/algo.yml -> AlgoConfig; every problem named; overrides;
version."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from datetime import date, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from config_schema import ConfigError
from config_schema.reading import read_yaml_file
from trading.config import load as algo_load
from trading.config import store as algo
from trading.config.load import (
    OVERRIDES_KEY,
    config_as_dict,
    config_version,
    deep_merge,
    parse_algo_config,
)
from trading.config.store import load_algo_config

ROOT = Path(__file__).resolve().parents[2]
ALGO_YML = ROOT / "config" / "algo.yml"
DELETE = object()  # edit() removes the key


@pytest.fixture(autouse=True)
def _fresh_cache():
    algo.clear_algo_config_cache()
    yield
    algo.clear_algo_config_cache()


def shipped() -> dict[str, Any]:
    return read_yaml_file(ALGO_YML)


def edit(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """Set (or with DELETE remove) ``a.b.0.c`` in ``data``; digits index lists."""
    *parents, last = [int(part) if part.isdigit() else part for part in dotted.split(".")]
    node: Any = data
    for part in parents:
        node = node[part]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return data


def problems_of(*edits: tuple[str, Any]) -> list[str]:
    data = shipped()
    for dotted, value in edits:
        edit(data, dotted, value)
    with pytest.raises(ConfigError) as excinfo:
        parse_algo_config(data)
    return excinfo.value.problems


# -- the shipped file -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attribute", "expected"),
    [
        ("market.session_open", time(9, 15)),
        ("market.session_close", time(15, 30)),
        ("signals.strategy", "supertrend"),
        ("signals.timeframe_minutes", 1),
        ("signals.supertrend.period", 10),
        ("signals.supertrend.multiplier", 2.0),
        ("signals.adx_period", 14),
        ("signals.adx_min", 18.0),
        ("signals.history_days", 5),
        ("signals.max_candle_age_seconds", 30),
        ("strikes.offset", 0),
        ("strikes.expiry_cutoff", time(13, 0)),
        ("strikes.max_spread_pct", 0.015),
        ("strikes.subscribe_width", 2),
        ("feed.index_stale_seconds", 5.0),
        ("feed.option_stale_seconds", 2.0),
        ("risk.max_trades_per_day", 8),
        ("risk.max_concurrent", 3),
        ("risk.loss_streak.count", 3),
        ("risk.loss_streak.pause_minutes", 30),
        ("exits.expiry_day.at", time(15, 10)),
        ("exits.time_exit.at", time(15, 15)),
        ("exits.stop_loss.sl_pct", 0.12),
        ("exits.breakeven.arm_gain_pct", 0.08),
        ("exits.trailing.arm_gain_pct", 0.15),
        ("exits.trailing.trail_pct", 0.10),
        ("exits.trailing.tiers", ()),
        ("exits.take_profit.tp_pct", 0.40),
        ("exits.danger_zone.loss_pct", 0.06),
        ("exits.danger_zone.loss_seconds", 120),
        ("exits.danger_zone.underlying_adverse_pct", 0.004),
        ("exits.peak_giveback.peak_gain_pct", 0.10),
        ("exits.peak_giveback.giveback_to_pct", -0.02),
        ("exits.premium_stall.minutes", 3),
        ("exits.time_stop.enabled", False),
        ("orders.limit_buffer_pct", 0.02),
        ("orders.max_chases", 3),
        ("orders.chase_interval_ms", 1000),
        ("paper.slippage_bps", 25),
        ("paper.latency_ms", 150),
        ("paper.seed_cash", Decimal("100000")),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_the_shipped_file_has_the_domain_defaults(attribute, expected):
    value: Any = load_algo_config(ALGO_YML)
    for part in attribute.split("."):
        value = getattr(value, part)
    assert value == expected


@pytest.mark.parametrize("key", ["NIFTY", "BANKNIFTY", "FINNIFTY", "SENSEX"])
def test_every_index_is_enabled_with_the_default_caps_and_window(key):
    item = load_algo_config(ALGO_YML).index(key.lower())
    assert item.enabled
    assert (item.entry_window.start, item.entry_window.end) == (time(9, 20), time(15, 0))
    assert (item.max_trades_per_day, item.max_concurrent) == (4, 1)
    assert (item.cooldown_seconds, item.cooldown_after_loss_seconds) == (180, 600)
    assert item.premium_band.min < item.premium_band.max


def simulated_atm_premiums(key: str) -> list[tuple[float, int]]:
    """(ATM call premium at 10:00, lot) of ``key``'s nearest expiry on one trading day a week
    over a monthly expiry cycle (the day after one last-Tuesday expiry to the next), priced by
    the simulator the demo and run_trader --sim trade against."""
    from datetime import datetime, timedelta

    from trading.dhan.sim.market import Market
    from trading.rules.market import IST

    found = []
    for day in (date(2026, 11, 25) + timedelta(weeks=w) for w in range(5)):
        market = Market(day, strikes_each_side=2, weeklies=1, monthlies=1)
        market.advance(datetime.combine(day, time(10, 0), IST))
        spot = market.index_level(key)
        calls = [
            c
            for c in market.contracts.values()
            if c.instrument == "OPTIDX" and c.underlying == key and c.option_type == "CE"
        ]
        atm = min(calls, key=lambda c: (c.expiry, abs(c.strike - spot)))
        found.append((market.fair_value(atm.security_id)[0], atm.lot))
    return found


@pytest.mark.parametrize("key", ["NIFTY", "BANKNIFTY", "FINNIFTY", "SENSEX"])
def test_the_default_paper_account_buys_a_lot_of_every_default_index_at_the_money(key):
    # Under risk_per_trade_rupees 2,000 every FINNIFTY and BANKNIFTY entry was "zero lots": the
    # risk of one lot at the typical (median over an expiry cycle) ATM premium must fit.
    from trading.rules.sizing import size_entry

    config = load_algo_config(ALGO_YML)
    assert config.index(key.lower()).enabled
    premiums = sorted(simulated_atm_premiums(key))
    premium, lot = premiums[len(premiums) // 2]
    band = config.index(key.lower()).premium_band
    assert band.min <= Decimal(f"{premium:.2f}") <= band.max
    size = size_entry(
        Decimal(f"{premium:.2f}"),
        lot,
        config.paper.seed_cash,
        config.risk.sizing,
        config.exits.stop_loss.sl_pct,
        freeze_quantity=lot * 100,
    )
    assert size.lots >= 1, size.reason


def test_the_holidays_are_weekdays_of_the_current_list():
    holidays = load_algo_config(ALGO_YML).market.holidays
    assert date(2026, 1, 26) in holidays
    assert all(day.weekday() < 5 for day in holidays)  # a weekend "holiday" is a typo


def walk_sections(rule: Any, path: str = "") -> list[tuple[str, Any]]:
    found = []
    if rule.fields is not None:
        found.append((path or "(top)", rule))
        for key, child in rule.fields.items():
            found += walk_sections(child, f"{path}.{key}" if path else key)
    elif rule.item is not None:
        found += walk_sections(rule.item, f"{path}[]")
    return found


SECTIONS = walk_sections(algo_load.ALGO_SCHEMA)


@pytest.mark.parametrize(("path", "section"), SECTIONS, ids=lambda v: str(v))
def test_every_dataclass_field_has_a_yaml_key_and_no_more(path, section):
    from dataclasses import fields

    wanted = {f.name for f in fields(section.model)} - {"version"}
    assert set(section.fields) == wanted, path


def test_every_dataclass_of_the_config_has_a_section_of_the_schema():
    import dataclasses
    import typing

    def reachable(model: type) -> set[type]:
        seen = {model}
        for hint in typing.get_type_hints(model).values():
            for part in (hint, *typing.get_args(hint)):
                if dataclasses.is_dataclass(part) and part not in seen:
                    seen |= reachable(part)
        return seen

    assert {section.model for _, section in SECTIONS} == reachable(algo_load.AlgoConfig)


def test_a_schema_section_that_misses_or_adds_a_field_is_refused_when_it_is_built():
    from config_schema.schema import flag, section
    from trading.config.types import SwitchExit, TakeProfitExit

    with pytest.raises(TypeError, match="its fields are"):
        section(TakeProfitExit, {"enabled": flag()})
    with pytest.raises(TypeError, match="its fields are"):
        section(SwitchExit, {"enabled": flag(), "colour": flag()})


# -- one message per kind of problem --------------------------------------------------------------

TOP = "market, indices, signals, strikes, feed, risk, exits, orders, paper"

BAD_VALUES = [
    # unknown and missing keys
    ("colour", "blue", f"algo.yml: colour: unknown key (expected one of {TOP})"),
    (
        "risk.sizing.max_lot",
        3,
        "algo.yml: risk.sizing.max_lot: unknown key "
        "(expected one of risk_per_trade_rupees, capital_alloc_pct, max_lots)",
    ),
    ("paper.latency_ms", DELETE, "algo.yml: paper.latency_ms: missing required key"),
    ("indices.0.enabled", DELETE, "algo.yml: indices[NIFTY].enabled: missing required key"),
    # whole numbers
    (
        "risk.max_trades_per_day",
        "eight",
        "algo.yml: risk.max_trades_per_day: expected a whole number between 1 and 100, got 'eight'",
    ),
    (
        "risk.max_concurrent",
        True,
        "algo.yml: risk.max_concurrent: expected a whole number between 1 and 50, got True",
    ),
    (
        "signals.adx_period",
        14.5,
        "algo.yml: signals.adx_period: expected a whole number between 1 and 500, got 14.5",
    ),
    (
        "risk.max_trades_per_day",
        0,
        "algo.yml: risk.max_trades_per_day: expected a whole number between 1 and 100, got 0",
    ),
    (
        "strikes.min_oi",
        -1,
        "algo.yml: strikes.min_oi: expected a whole number between 0 and 1000000000, got -1",
    ),
    (
        "indices.2.strike_offset",
        11,
        "algo.yml: indices[FINNIFTY].strike_offset: "
        "expected a whole number between -10 and 10 or null, got 11",
    ),
    # numbers and fractions
    (
        "signals.adx_min",
        False,
        "algo.yml: signals.adx_min: expected a number between 0 and 100, got False",
    ),
    (
        "strikes.max_spread_pct",
        1.5,
        "algo.yml: strikes.max_spread_pct: expected a number above 0 and at most 1, got 1.5",
    ),
    (
        "exits.stop_loss.sl_pct",
        0,
        "algo.yml: exits.stop_loss.sl_pct: expected a number above 0 and at most 1, got 0",
    ),
    (
        "signals.supertrend.multiplier",
        float("nan"),
        "algo.yml: signals.supertrend.multiplier: expected a number above 0 and at most 20, "
        "got nan",
    ),
    (
        "feed.index_stale_seconds",
        "5",
        "algo.yml: feed.index_stale_seconds: expected a number above 0 and at most 600, got '5'",
    ),
    # money
    (
        "paper.seed_cash",
        "lots",
        "algo.yml: paper.seed_cash: expected an amount in rupees, to the paisa, above 0 and at "
        "most 100000000, got 'lots'",
    ),
    (
        "risk.sizing.risk_per_trade_rupees",
        True,
        "algo.yml: risk.sizing.risk_per_trade_rupees: expected an amount in rupees, to the paisa, "
        "above 0 and at most 1000000, got True",
    ),
    (
        "indices.0.premium_band.min",
        "-5",
        "algo.yml: indices[NIFTY].premium_band.min: expected an amount in rupees, to the paisa, "
        "above 0 and at most 100000, got '-5'",
    ),
    (
        "risk.daily_loss_limit.rupees",
        "Infinity",
        "algo.yml: risk.daily_loss_limit.rupees: expected an amount in rupees, to the paisa, "
        "above 0 and at most 10000000 or null, "
        "got 'Infinity'",
    ),
    (
        "risk.daily_loss_limit.rupees",
        "1e3",
        "algo.yml: risk.daily_loss_limit.rupees: expected an amount in rupees, to the paisa, "
        "above 0 and at most 10000000 or null, "
        "got '1e3'",
    ),
    (
        "risk.daily_loss_limit.rupees",
        "1_000",
        "algo.yml: risk.daily_loss_limit.rupees: expected an amount in rupees, to the paisa, "
        "above 0 and at most 10000000 or null, "
        "got '1_000'",
    ),
    (
        "risk.daily_loss_limit.rupees",
        "+100",
        "algo.yml: risk.daily_loss_limit.rupees: expected an amount in rupees, to the paisa, "
        "above 0 and at most 10000000 or null, "
        "got '+100'",
    ),
    # times and dates
    (
        "exits.time_exit.at",
        900,
        'algo.yml: exits.time_exit.at: expected a time of day "HH:MM" (IST) in quotes '
        "(YAML reads unquoted 15:00 as 900), got 900",
    ),
    (
        "market.session_open",
        "9:15",
        "algo.yml: market.session_open: expected a time of day \"HH:MM\" (IST), got '9:15'",
    ),
    (
        "strikes.expiry_cutoff",
        "24:00",
        "algo.yml: strikes.expiry_cutoff: expected a time of day \"HH:MM\" (IST), got '24:00'",
    ),
    (
        "market.holidays",
        ["2026-02-30"],
        "algo.yml: market.holidays[0]: expected an ISO date YYYY-MM-DD from 2000-01-01 to "
        "2099-12-31, got '2026-02-30'",
    ),
    (
        "market.holidays",
        ["9999-12-31"],
        "algo.yml: market.holidays[0]: expected an ISO date YYYY-MM-DD from 2000-01-01 to "
        "2099-12-31, got '9999-12-31'",
    ),
    (
        "market.session_open",
        "00:00",
        "algo.yml: market.session_open: expected a time within the exchanges' day "
        "(09:00-15:30 IST), got '00:00'",
    ),
    (
        "market.session_close",
        "23:59",
        "algo.yml: market.session_close: expected a time within the exchanges' day "
        "(09:00-15:30 IST), got '23:59'",
    ),
    (
        "market.holidays",
        "2026-01-26",
        "algo.yml: market.holidays: expected a list of ISO dates, got '2026-01-26'",
    ),
    # flags, choices, symbols, shapes
    (
        "exits.trailing.enabled",
        "yes",
        "algo.yml: exits.trailing.enabled: expected true or false, got 'yes'",
    ),
    (
        "signals.strategy",
        "macd",
        "algo.yml: signals.strategy: expected one of 'supertrend', 'holy_grail', got 'macd'",
    ),
    (
        "indices.3.key",
        "SEN SEX",
        "algo.yml: indices[3].key: expected an index symbol of letters and digits (NIFTY), "
        "got 'SEN SEX'",
    ),
    (
        "feed",
        5,
        "algo.yml: feed: expected a mapping with keys index_stale_seconds, "
        "option_stale_seconds, got 5",
    ),
    ("indices", [], "algo.yml: indices: expected a list of indices (at least 1), got []"),
]


@pytest.mark.parametrize(
    ("dotted", "value", "message"),
    BAD_VALUES,
    ids=[f"{dotted}={value!r}" for dotted, value, _ in BAD_VALUES],
)
def test_a_bad_value_is_named_with_its_path_value_and_expectation(dotted, value, message):
    assert problems_of((dotted, value)) == [message]


CROSS_FIELD = [
    (
        "window end before start",
        [("indices.0.entry_window.end", "09:10")],
        "algo.yml: indices[NIFTY].entry_window.end: expected a time after start (09:20), "
        "got '09:10'",
    ),
    (
        "window outside the session",
        [("indices.1.entry_window.start", "09:00")],
        "algo.yml: indices[BANKNIFTY].entry_window.start: "
        "expected a time within the session (09:15-15:30), got '09:00'",
    ),
    (
        "premium band upside down",
        [("indices.0.premium_band.min", 700)],
        "algo.yml: indices[NIFTY].premium_band.max: expected an amount at least min (700), got 600",
    ),
    (
        "confirmation not a multiple",
        [("signals.timeframe_minutes", 2), ("signals.confirm_timeframe_minutes", 5)],
        "algo.yml: signals.confirm_timeframe_minutes: "
        "expected null or a multiple of timeframe_minutes (2) larger than it, got 5",
    ),
    (
        "confirmation not larger",
        [("signals.timeframe_minutes", 5), ("signals.confirm_timeframe_minutes", 5)],
        "algo.yml: signals.confirm_timeframe_minutes: "
        "expected null or a multiple of timeframe_minutes (5) larger than it, got 5",
    ),
    (
        "index key repeated",
        [("indices.1.key", "nifty")],
        "algo.yml: indices[1].key: expected a key no earlier item uses, got 'NIFTY'",
    ),
    (
        "no daily loss limit",
        [("risk.daily_loss_limit.rupees", None), ("risk.daily_loss_limit.pct_of_capital", None)],
        "algo.yml: risk.daily_loss_limit: expected at least one of rupees, pct_of_capital set "
        "(not null), got {'rupees': None, 'pct_of_capital': None}",
    ),
    (
        "tiers not ascending",
        [
            (
                "exits.trailing.tiers",
                [
                    {"peak_gain_pct": 0.3, "trail_pct": 0.08},
                    {"peak_gain_pct": 0.25, "trail_pct": 0.06},
                ],
            )
        ],
        "algo.yml: exits.trailing.tiers[1].peak_gain_pct: "
        "expected a gain above tiers[0].peak_gain_pct (0.3), got 0.25",
    ),
    (
        "tier not tighter",
        [("exits.trailing.tiers", [{"peak_gain_pct": 0.3, "trail_pct": 0.12}])],
        "algo.yml: exits.trailing.tiers[0].trail_pct: expected a trail below trail_pct (0.1), "
        "got 0.12",
    ),
    (
        "expiry exit after the time exit",
        [("exits.expiry_day.at", "15:20")],
        "algo.yml: exits.expiry_day.at: expected a time at or before exits.time_exit.at "
        "(15:15), got '15:20'",
    ),
    (
        "time exit after the close",
        [("exits.time_exit.at", "15:45"), ("exits.expiry_day.at", "15:00")],
        "algo.yml: exits.time_exit.at: expected a time within the session (09:15-15:30), "
        "got '15:45'",
    ),
    (
        "session upside down",
        [("market.session_close", "09:00")],
        "algo.yml: market.session_close: expected a time after session_open (09:15), got '09:00'",
    ),
    (
        "macd slow not slower",
        [("signals.holy_grail.macd_slow", 12)],
        "algo.yml: signals.holy_grail.macd_slow: expected a period longer than macd_fast (12), "
        "got 12",
    ),
    (
        "giveback above the peak",
        [("exits.peak_giveback.giveback_to_pct", 0.2)],
        "algo.yml: exits.peak_giveback.giveback_to_pct: expected a gain below peak_gain_pct "
        "(0.1), got 0.2",
    ),
    (
        "offset strike not subscribed",
        [("strikes.offset", 3)],
        "algo.yml: strikes.subscribe_width: "
        "expected a width of at least the largest strike offset (3), got 2",
    ),
]


@pytest.mark.parametrize(
    ("edits", "message"), [case[1:] for case in CROSS_FIELD], ids=[case[0] for case in CROSS_FIELD]
)
def test_a_cross_field_problem_is_named(edits, message):
    assert problems_of(*edits) == [message]


def test_every_problem_is_reported_at_once_in_one_error():
    data = edit(shipped(), "risk.max_trades_per_day", "eight")
    edit(data, "paper", {"slippage_bps": -1, "latency_ms": 150, "seed_cash": 1, "tip": 0})
    edit(data, "indices.1.enabled", "no")
    with pytest.raises(ConfigError) as excinfo:
        parse_algo_config(data)
    problems = excinfo.value.problems
    assert [line.split(":")[1].strip() for line in problems] == [
        "indices[BANKNIFTY].enabled",
        "risk.max_trades_per_day",
        "paper.tip",
        "paper.slippage_bps",
    ]
    assert str(excinfo.value) == "\n".join(problems)


@pytest.mark.parametrize("data", [None, ["market"], "market: {}"], ids=["empty", "list", "text"])
def test_a_document_that_is_not_a_mapping_is_refused(data):
    with pytest.raises(ConfigError) as excinfo:
        parse_algo_config(data, "mine.yml")
    assert excinfo.value.problems == [
        f"mine.yml: (top level): expected a mapping with keys {TOP}, got {data!r}"
    ]


@pytest.mark.parametrize(
    ("written", "amount"),
    [(100000, "100000"), (2500.5, "2500.5"), ("1500.25", "1500.25"), (0.1, "0.1")],
    ids=["int", "float", "string", "float-not-binary"],
)
def test_money_is_read_exactly_as_a_decimal(written, amount):
    config = parse_algo_config(edit(shipped(), "paper.seed_cash", written))
    assert config.paper.seed_cash == Decimal(amount)
    assert str(config.paper.seed_cash) == amount


def test_dates_and_times_may_be_written_as_strings_as_json_carries_them():
    data = edit(shipped(), "market.holidays", ["2026-08-15"])
    config = parse_algo_config(data)
    assert config.market.holidays == frozenset({date(2026, 8, 15)})


# -- files ----------------------------------------------------------------------------------------


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yml: cannot read: No such file"):
        load_algo_config(tmp_path / "nope.yml")


def test_a_file_that_is_not_yaml_is_named(tmp_path):
    path = tmp_path / "algo.yml"
    path.write_text("market: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^algo\.yml: not valid YAML"):
        load_algo_config(path)


def test_an_unquoted_time_in_the_file_gets_the_quoting_hint(tmp_path):
    path = tmp_path / "algo.yml"
    text = ALGO_YML.read_text(encoding="utf-8").replace('at: "15:15"', "at: 15:15")
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"exits\.time_exit\.at: .* in quotes .* got '15:15'"):
        load_algo_config(path)


# -- plain form and version -----------------------------------------------------------------------


def test_the_plain_form_is_json_and_parses_back_to_the_same_config():
    config = load_algo_config(ALGO_YML)
    plain = config_as_dict(config)
    assert json.loads(json.dumps(plain)) == plain
    assert parse_algo_config(plain) == config
    assert config_version(plain) == config.version


def reordered(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: reordered(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [reordered(item) for item in value]
    return value


def test_the_version_ignores_key_order_and_spelling_of_the_same_values():
    base = parse_algo_config(shipped())
    assert parse_algo_config(reordered(shipped())).version == base.version
    spelled = edit(shipped(), "paper.seed_cash", "100000.00")
    assert parse_algo_config(spelled).version == base.version
    assert len(base.version) == 12
    int(base.version, 16)


@pytest.mark.parametrize(
    ("dotted", "value"),
    [("signals.adx_min", 19), ("indices.3.enabled", False), ("market.holidays", [])],
    ids=["number", "index flag", "holidays"],
)
def test_the_version_changes_with_the_content(dotted, value):
    base = parse_algo_config(shipped())
    assert parse_algo_config(edit(shipped(), dotted, value)).version != base.version


def test_the_version_is_the_same_in_another_process():
    code = (
        "from pathlib import Path; from trading.config.load import load_algo_file; "
        f"print(load_algo_file(Path({str(ALGO_YML)!r})).version)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == load_algo_config(ALGO_YML).version


# -- deep_merge -----------------------------------------------------------------------------------

INDICES = [
    {"key": "NIFTY", "enabled": True, "band": {"min": 1}},
    {"key": "SENSEX", "enabled": True},
]

MERGES = [
    ("mappings merge", {"a": {"x": 1, "y": 2}}, {"a": {"y": 3}}, {"a": {"x": 1, "y": 3}}),
    ("lists replace", {"a": [1, 2]}, {"a": [3]}, {"a": [3]}),
    ("scalars replace mappings", {"a": {"x": 1}}, {"a": 5}, {"a": 5}),
    ("new keys are added", {"a": 1}, {"b": 2}, {"a": 1, "b": 2}),
    ("null is a value", {"a": 1}, {"a": None}, {"a": None}),
    (
        "an index by its key",
        {"indices": INDICES},
        {"indices": {"sensex": {"enabled": False}}},
        {"indices": [INDICES[0], {"key": "SENSEX", "enabled": False}]},
    ),
    (
        "inside an index item",
        {"indices": INDICES},
        {"indices": {"NIFTY": {"band": {"max": 9}}}},
        {"indices": [{"key": "NIFTY", "enabled": True, "band": {"min": 1, "max": 9}}, INDICES[1]]},
    ),
    (
        "a new index is appended",
        {"indices": INDICES},
        {"indices": {"BANKEX": {"enabled": True}}},
        {"indices": [*INDICES, {"key": "BANKEX", "enabled": True}]},
    ),
    ("a list of indices replaces", {"indices": INDICES}, {"indices": []}, {"indices": []}),
]


@pytest.mark.parametrize(
    ("base", "overrides", "merged"), [m[1:] for m in MERGES], ids=[m[0] for m in MERGES]
)
def test_deep_merge(base, overrides, merged):
    before = (copy.deepcopy(base), copy.deepcopy(overrides))
    assert deep_merge(base, overrides) == merged
    assert (base, overrides) == before  # inputs untouched


# -- overrides ------------------------------------------------------------------------------------


def test_overrides_change_the_config_and_its_version():
    plain = load_algo_config(ALGO_YML)
    merged = load_algo_config(
        ALGO_YML, {"signals": {"adx_min": 22}, "indices": {"BANKNIFTY": {"enabled": False}}}
    )
    assert merged.signals.adx_min == 22
    assert [i.key for i in merged.enabled_indices()] == ["NIFTY", "FINNIFTY", "SENSEX"]
    assert merged.version != plain.version


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"risk": {"max_trades_per_day": "eight"}},
            "Setting algo.overrides: risk.max_trades_per_day: "
            "expected a whole number between 1 and 100, got 'eight'",
        ),
        (
            {"risk": {"max_trade": 3}},
            "Setting algo.overrides: risk.max_trade: unknown key (expected one of "
            "daily_loss_limit, max_trades_per_day, max_concurrent, loss_streak, sizing)",
        ),
        (
            {"indices": {"SENSEX": {"premium_band": {"max": 5}}}},
            "Setting algo.overrides: indices[SENSEX].premium_band.max: "
            "expected an amount at least min (20), got 5",
        ),
        (
            {"indices": {"MIDCPNIFTY": {"enabled": True}}},
            "Setting algo.overrides: indices[MIDCPNIFTY].entry_window: missing required key",
        ),
        (
            ["risk"],
            "Setting algo.overrides: (top level): expected a mapping of keys to values, "
            "got ['risk']",
        ),
    ],
    ids=["bad value", "unknown key", "per index", "new index incomplete", "not a mapping"],
)
def test_a_bad_override_is_named_as_the_overrides_fault(overrides, message):
    with pytest.raises(ConfigError) as excinfo:
        load_algo_config(ALGO_YML, overrides)
    assert message in excinfo.value.problems


def test_a_bad_file_is_blamed_on_the_file_even_with_overrides(tmp_path):
    path = tmp_path / "algo.yml"
    path.write_text(yaml.safe_dump(edit(shipped(), "orders.max_chases", -1)), encoding="utf-8")
    with pytest.raises(ConfigError) as excinfo:
        load_algo_config(path, {"orders": {"max_chases": 2}})
    assert excinfo.value.problems == [
        "algo.yml: orders.max_chases: expected a whole number between 0 and 20, got -1"
    ]


# -- stored overrides, cache, paper cash (database) -----------------------------------------------


@pytest.fixture
def algo_file(settings, tmp_path) -> Path:
    path = tmp_path / "algo.yml"
    path.write_text(ALGO_YML.read_text(encoding="utf-8"), encoding="utf-8")
    settings.ALGO_CONFIG_FILE = path
    return path


@pytest.mark.django_db
def test_valid_overrides_are_stored_and_become_effective(algo_file):
    from trading.models import Setting

    config = algo.save_overrides({"risk": {"max_concurrent": 2}})
    assert Setting.get(OVERRIDES_KEY) == {"risk": {"max_concurrent": 2}}
    assert config.risk.max_concurrent == 2
    assert algo.effective_algo_config() == config
    assert algo.algo_config() == config


@pytest.mark.django_db
@pytest.mark.parametrize(
    "overrides",
    [{"risk": {"max_concurrent": 0}}, {"paper": {"seed_cash": Decimal(5)}}, "risk"],
    ids=["invalid", "not json", "not a mapping"],
)
def test_invalid_overrides_are_refused_and_nothing_is_stored(algo_file, overrides):
    from trading.models import Setting

    algo.save_overrides({"risk": {"max_concurrent": 2}})
    with pytest.raises(ConfigError, match=r"^Setting algo\.overrides: "):
        algo.save_overrides(overrides)
    assert Setting.get(OVERRIDES_KEY) == {"risk": {"max_concurrent": 2}}
    assert algo.algo_config().risk.max_concurrent == 2


@pytest.mark.django_db
def test_the_cached_config_changes_only_on_reload(algo_file):
    from trading.models import Setting

    first = algo.algo_config()
    Setting.put(OVERRIDES_KEY, {"signals": {"adx_min": 25}})  # written by another process
    assert algo.algo_config() is first
    assert algo.reload_algo_config().signals.adx_min == 25
    assert algo.algo_config().signals.adx_min == 25


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("env", "override", "expected"),
    [
        (Decimal("250000"), None, Decimal("250000")),
        (Decimal("250000"), "75000", Decimal("250000")),
        (None, None, Decimal("100000")),
        (None, "75000", Decimal("75000")),
    ],
    ids=["env", "env beats the config", "algo.yml", "algo.yml with an override"],
)
def test_the_paper_seed_cash_comes_from_env_else_the_config(
    settings, algo_file, env, override, expected
):
    settings.PAPER_SEED_CASH = env
    if override is not None:
        algo.save_overrides({"paper": {"seed_cash": override}})
    assert algo.paper_seed_cash() == expected


# -- sanity bounds, hostile values, files that are not clean YAML (issue 11, section 6) -----------

BOUNDED = [
    ("risk.daily_loss_limit.rupees", 10_000_000, "above 0 and at most 10000000 or null"),
    ("risk.sizing.risk_per_trade_rupees", 1_000_000, "above 0 and at most 1000000"),
    ("paper.seed_cash", 100_000_000, "above 0 and at most 100000000"),
    ("indices.0.premium_band.max", 100_000, "above 0 and at most 100000"),
]


@pytest.mark.parametrize(("dotted", "ceiling", "span"), BOUNDED, ids=[b[0] for b in BOUNDED])
@pytest.mark.parametrize(
    "written",
    ["1e30", "1e999999", "1e999999999", 1e20, 10**20, "\u0665\u0660\u0660\u0660", "\uff15\uff10"],
    ids=["1e30", "1e999999", "1e999999999", "float 1e20", "int 10**20", "arabic", "fullwidth"],
)
def test_money_above_its_ceiling_or_in_other_digits_is_refused(dotted, ceiling, span, written):
    (problem,) = problems_of((dotted, written))
    path = dotted.replace("indices.0", "indices[NIFTY]")
    assert problem.startswith(
        f"algo.yml: {path}: expected an amount in rupees, to the paisa, {span}"
    )


@pytest.mark.parametrize(("dotted", "ceiling", "span"), BOUNDED, ids=[b[0] for b in BOUNDED])
def test_money_at_its_ceiling_is_accepted(dotted, ceiling, span):
    data = edit(shipped(), "indices.0.premium_band.min", 20)
    config = parse_algo_config(edit(data, dotted, str(ceiling)))
    value: Any = config
    for part in dotted.split("."):
        value = value[int(part)] if part.isdigit() else getattr(value, part)
    assert value == Decimal(ceiling)


@pytest.mark.parametrize(
    ("dotted", "written", "expected"),
    [
        pytest.param(
            "indices.1.freeze_quantity",
            10**20,
            "a whole number between 1 and 100000 or null",
            id="freeze quantity",
        ),
        pytest.param(
            "risk.sizing.max_lots", 10**20, "a whole number between 1 and 1000", id="max lots"
        ),
        pytest.param(
            "strikes.min_oi",
            10**20,
            "a whole number between 0 and 1000000000",
            id="min oi",
        ),
        pytest.param(
            "risk.daily_loss_limit.pct_of_capital",
            float("inf"),
            "a number above 0 and at most 1",
            id="loss limit pct",
        ),
    ],
)
def test_quantities_have_ceilings_too(dotted, written, expected):
    (problem,) = problems_of((dotted, written))
    assert f": expected {expected}" in problem


def write_algo(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "algo.yml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_duplicated_key_in_the_file_is_refused_not_last_one_wins(tmp_path):
    text = ALGO_YML.read_text(encoding="utf-8").replace(
        "    rupees: 10000\n", "    rupees: 10000\n    rupees: 500000\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_algo_config(write_algo(tmp_path, text))
    (problem,) = caught.value.problems
    assert "algo.yml: line " in problem
    assert ": risk.daily_loss_limit.rupees: duplicate key (first at line " in problem


def test_an_unquoted_impossible_holiday_is_named_by_its_key_path(tmp_path):
    text = ALGO_YML.read_text(encoding="utf-8").replace("- 2026-03-03", "- 2026-02-30")
    with pytest.raises(ConfigError) as caught:
        load_algo_config(write_algo(tmp_path, text))
    assert caught.value.problems == [
        "algo.yml: market.holidays[1]: expected an ISO date YYYY-MM-DD from 2000-01-01 to "
        "2099-12-31, got '2026-02-30'"
    ]


def test_an_unquoted_huge_seed_cash_is_a_problem_not_an_overflow(tmp_path):
    text = ALGO_YML.read_text(encoding="utf-8").replace(
        "seed_cash: 100000 ", "seed_cash: 1e999999999 "
    )
    with pytest.raises(ConfigError) as caught:
        load_algo_config(write_algo(tmp_path, text))
    assert caught.value.problems == [
        "algo.yml: paper.seed_cash: expected an amount in rupees, to the paisa, above 0 and at "
        "most 100000000, got '1e999999999'"
    ]


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "algo.yml"
    path.write_bytes(ALGO_YML.read_bytes().replace(b"Republic Day", b"R\xe9public Day"))
    with pytest.raises(ConfigError, match=r"^algo\.yml: line \d+: not UTF-8 text \(byte 0xe9"):
        load_algo_config(path)


HOSTILE_OVERRIDES = [
    pytest.param(
        {"paper": {"seed_cash": "1e999999999"}},
        "paper.seed_cash: expected an amount in rupees",
        id="seed cash 1e999999999: decimal.Overflow",
    ),
    pytest.param(
        {"paper": {"seed_cash": 10**5000}},
        "got a whole number of about 5001 digits",
        id="seed cash of 5001 digits: ValueError in str()",
    ),
    pytest.param(
        {"risk": {"max_concurrent": 10**5000}},
        "risk.max_concurrent: expected a whole number",
        id="count of 5001 digits: ValueError in repr()",
    ),
    pytest.param(
        {"signals": {"adx_min": 10**400}},
        "signals.adx_min: expected a number between 0 and 100",
        id="number of 401 digits: OverflowError",
    ),
    pytest.param(
        {"\ud800": 1},
        "'\\ud800': unknown key (expected one of market, indices",
        id="lone surrogate key: printed raw, unencodable",
    ),
    pytest.param({"signals": {"strategy": "\udfff"}}, "got '\\udfff'", id="lone surrogate value"),
    pytest.param(
        {"indices": {"\ud800": {"enabled": False}}},
        "expected an index symbol",
        id="lone surrogate index",
    ),
    pytest.param(
        {"signals": {"strategy": "x" * 1_000_000}},
        "signals.strategy: expected one of",
        id="a megabyte string: a megabyte message",
    ),
    pytest.param(
        {"x" * 100_000: 1},
        "unknown key (expected one of market",
        id="a 100 kB key: a 100 kB message",
    ),
    pytest.param(
        {"paper": {"seed_cash": float("nan")}},
        "paper.seed_cash: expected a JSON value",
        id="NaN is no JSON",
    ),
    pytest.param(
        {"paper": {1: 2}}, "paper: expected text keys (JSON), got the key 1", id="int key"
    ),
    pytest.param(
        {"paper": {"seed_cash": Decimal(5)}}, "got a Decimal 5", id="a Decimal is no JSON"
    ),
    pytest.param(
        {"indices": {"FINNIFTY": []}},
        "indices[2]: expected a mapping with keys key, enabled",
        id="an index replaced by a list: AttributeError",
    ),
    pytest.param(
        {"indices": {"NIFTY": None}},
        "indices[0]: expected a mapping with keys key, enabled",
        id="an index replaced by null: silently ignored",
    ),
]


@pytest.mark.parametrize(("overrides", "said"), HOSTILE_OVERRIDES)
def test_hostile_overrides_are_a_config_error_naming_them(overrides, said):
    with pytest.raises(ConfigError) as caught:
        load_algo_config(ALGO_YML, overrides)
    assert caught.value.problems[0].startswith("Setting algo.overrides: ")
    assert any(said in line for line in caught.value.problems), caught.value.problems
    assert all(len(line) < 1000 for line in caught.value.problems)


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize("depth", [17, 800, 100_000])
def test_deeply_nested_overrides_are_refused_before_anything_recurses(depth):
    with pytest.raises(ConfigError) as caught:
        load_algo_config(ALGO_YML, {"risk": nested(depth)})
    (problem,) = caught.value.problems
    assert problem.startswith("Setting algo.overrides: risk.a.a.a.")
    assert problem.endswith(": expected at most 16 levels of nesting, got more")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"paper": {"seed_cash": "1e999999999"}}, id="1e999999999"),
        pytest.param({"risk": {"daily_loss_limit": {"rupees": "1e30"}}}, id="1e30"),
        pytest.param({"risk": nested(800)}, id="nesting 800"),
        pytest.param({"\ud800": {"\udfff": "\ud800"}}, id="lone surrogates"),
        pytest.param(None, id="null clears every override"),
    ],
)
def test_save_overrides_refuses_hostile_values_and_stores_nothing(algo_file, overrides):
    from trading.models import Setting

    algo.save_overrides({"risk": {"max_concurrent": 2}})
    with pytest.raises(ConfigError, match=r"^Setting algo\.overrides: "):
        algo.save_overrides(overrides)
    assert Setting.get(OVERRIDES_KEY) == {"risk": {"max_concurrent": 2}}
