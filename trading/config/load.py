"""``config/algo.yml`` (+ an overrides mapping) -> a validated ``AlgoConfig``.

The schema below says, key by key, what the file accepts (``config_schema`` rules, validated by
pydantic); the keys are the fields of the frozen dataclasses of ``trading.config.types``, which
is what the rules receive. Every problem of a document is reported at once, one line each:
``algo.yml: risk.max_trades_per_day: expected a whole number between 1 and 100, got 'eight'``.

Money and quantities have upper bounds a retail or small-prop trader could never legitimately
exceed (the ``MAX_*`` constants; config/algo.yml states them too): a limit written as ``"1e30"``
or with a stray exponent is refused, not taken as "no limit".

No Django here: the default file and the stored overrides are ``trading.config.store``'s.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import fields, is_dataclass, replace
from datetime import date, time
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

from config_schema import ConfigError
from config_schema.reading import read_yaml_file
from config_schema.schema import (
    Problem,
    Rule,
    adapter,
    choice,
    clock,
    day,
    flag,
    found,
    items,
    money,
    nullable,
    number,
    section,
    symbol,
    validate,
    whole,
)
from config_schema.text import hhmm, join, money_text, shown
from trading.config.types import (
    AlgoConfig,
    BreakevenExit,
    ClockExit,
    DailyLossLimit,
    DangerZoneExit,
    ExitsConfig,
    FeedConfig,
    HolyGrailParams,
    IndexConfig,
    LossStreak,
    MarketConfig,
    OrdersConfig,
    PaperConfig,
    PeakGivebackExit,
    PremiumBand,
    PremiumStallExit,
    RiskConfig,
    SignalsConfig,
    SizingConfig,
    StopLossExit,
    StrikesConfig,
    SupertrendParams,
    SwitchExit,
    TakeProfitExit,
    TimeStopExit,
    TrailingExit,
    TrailTier,
    Window,
)

OVERRIDES_KEY = "algo.overrides"  # the Setting row holding the operator's override mapping
OVERRIDES_SOURCE = f"Setting {OVERRIDES_KEY}"

# -- sanity bounds (rupees; units) ----------------------------------------------------------------
# Far above anything a retail or small-prop account means, far below what a typo makes of them.
MAX_SEED_CASH_RUPEES = 100_000_000  # Rs 10 crore of paper cash
MAX_DAILY_LOSS_RUPEES = 10_000_000  # Rs 1 crore lost in a day
MAX_RISK_PER_TRADE_RUPEES = 1_000_000  # Rs 10 lakh risked on one entry
MAX_PREMIUM_RUPEES = 100_000  # Rs 1 lakh per unit: no index option costs more than its index
MAX_FREEZE_QUANTITY = 100_000  # units per order (NIFTY's exchange freeze is 1,800)
MAX_OPEN_INTEREST = 1_000_000_000  # units; the busiest strikes hold about 10^7
# An override deeper than this is no config (algo.yml nests 4 levels); refused before anything
# recurses over it.
MAX_OVERRIDE_DEPTH = 16

_JSON_VALUES = "a JSON value (mappings, lists, strings, numbers, true/false, null)"


# -- cross-field checks ---------------------------------------------------------------------------


# The exchanges' day (NSE and BSE equity derivatives trade 09:15-15:30 IST; pre-open from
# 09:00): a session outside it would let the time exit fall after the real close.
_EXCHANGE_DAY = (time(9, 0), time(15, 30))


_HOLIDAY_YEARS = (date(2000, 1, 1), date(2099, 12, 31))  # as the API's date filters


def _check_session(market: MarketConfig) -> Iterable[Problem]:
    low, high = _EXCHANGE_DAY
    within = f"within the exchanges' day ({hhmm(low)}-{hhmm(high)} IST)"
    if not low <= market.session_open <= high:
        yield found(("session_open",), market.session_open, f"a time {within}")
    if not low <= market.session_close <= high:
        yield found(("session_close",), market.session_close, f"a time {within}")
    if market.session_open >= market.session_close:
        expected = f"a time after session_open ({hhmm(market.session_open)})"
        yield found(("session_close",), market.session_close, expected)


def _check_window(window: Window) -> Iterable[Problem]:
    if window.start >= window.end:
        yield found(("end",), window.end, f"a time after start ({hhmm(window.start)})")


def _check_band(band: PremiumBand) -> Iterable[Problem]:
    if band.min > band.max:
        yield found(("max",), band.max, f"an amount at least min ({money_text(band.min)})")


def _check_confirmation(signals: SignalsConfig) -> Iterable[Problem]:
    confirm, primary = signals.confirm_timeframe_minutes, signals.timeframe_minutes
    if confirm is not None and (confirm <= primary or confirm % primary):
        expected = f"null or a multiple of timeframe_minutes ({primary}) larger than it"
        yield found(("confirm_timeframe_minutes",), confirm, expected)


def _check_macd(params: HolyGrailParams) -> Iterable[Problem]:
    if params.macd_fast >= params.macd_slow:
        expected = f"a period longer than macd_fast ({params.macd_fast})"
        yield found(("macd_slow",), params.macd_slow, expected)


def _check_loss_limit(limit: DailyLossLimit) -> Iterable[Problem]:
    if limit.rupees is None and limit.pct_of_capital is None:
        both = {"rupees": None, "pct_of_capital": None}
        yield found((), both, "at least one of rupees, pct_of_capital set (not null)")


def _check_tiers(trailing: TrailingExit) -> Iterable[Problem]:
    """Tiers ascend in peak gain above the arming gain, each trailing tighter than before."""
    peak, trail = ("arm_gain_pct", trailing.arm_gain_pct), ("trail_pct", trailing.trail_pct)
    for i, tier in enumerate(trailing.tiers):
        if tier.peak_gain_pct <= peak[1]:
            expected = f"a gain above {peak[0]} ({peak[1]:g})"
            yield found(("tiers", i, "peak_gain_pct"), tier.peak_gain_pct, expected)
        if tier.trail_pct >= trail[1]:
            expected = f"a trail below {trail[0]} ({trail[1]:g})"
            yield found(("tiers", i, "trail_pct"), tier.trail_pct, expected)
        peak = (f"tiers[{i}].peak_gain_pct", tier.peak_gain_pct)
        trail = (f"tiers[{i}].trail_pct", tier.trail_pct)


def _check_giveback(rule: PeakGivebackExit) -> Iterable[Problem]:
    if rule.giveback_to_pct >= rule.peak_gain_pct:
        expected = f"a gain below peak_gain_pct ({rule.peak_gain_pct:g})"
        yield found(("giveback_to_pct",), rule.giveback_to_pct, expected)


def _check_clock_times(config: AlgoConfig) -> Iterable[Problem]:
    """Entry windows inside the session; the expiry-day exit at or before the time exit; both,
    and the expiry cutoff, after the open and at or before the close."""
    start, close = config.market.session_open, config.market.session_close
    session = f"a time within the session ({hhmm(start)}-{hhmm(close)})"
    for item in config.indices:
        window, label = item.entry_window, f"[{item.key}]"
        if window.start < start:
            yield found(("indices", label, "entry_window", "start"), window.start, session)
        if window.end > close:
            yield found(("indices", label, "entry_window", "end"), window.end, session)
    exits = config.exits
    clocks = {
        ("exits", "expiry_day", "at"): exits.expiry_day.at,
        ("exits", "time_exit", "at"): exits.time_exit.at,
        ("strikes", "expiry_cutoff"): config.strikes.expiry_cutoff,
    }
    for loc, moment in clocks.items():
        if not start < moment <= close:
            yield found(loc, moment, session)
    if exits.expiry_day.at > exits.time_exit.at:
        expected = f"a time at or before exits.time_exit.at ({hhmm(exits.time_exit.at)})"
        yield found(("exits", "expiry_day", "at"), exits.expiry_day.at, expected)


def _check_subscriptions(config: AlgoConfig) -> Iterable[Problem]:
    """The engine subscribes ``subscribe_width`` strikes around ATM: the offset strike must be
    among them or its tick is never fresh when a signal comes."""
    widest = max(abs(item.offset(config.strikes)) for item in config.indices)
    if config.strikes.subscribe_width < widest:
        expected = f"a width of at least the largest strike offset ({widest})"
        yield found(("strikes", "subscribe_width"), config.strikes.subscribe_width, expected)


# -- the schema -----------------------------------------------------------------------------------

_FRACTION = number(0, 1, above=True)  # a share: above 0, at most 1
_GAIN = number(0, 10, above=True)  # a gain on the premium: above 0, at most 1000 %
_PERIOD = whole(1, 500)  # candles
_PREMIUM = money(MAX_PREMIUM_RUPEES)

_INDEX = section(
    IndexConfig,
    {
        "key": symbol(),
        "enabled": flag(),
        "entry_window": section(Window, {"start": clock(), "end": clock()}, (_check_window,)),
        "premium_band": section(PremiumBand, {"min": _PREMIUM, "max": _PREMIUM}, (_check_band,)),
        "strike_offset": nullable(whole(-10, 10)),
        "max_trades_per_day": whole(1, 100),
        "max_concurrent": whole(1, 10),
        "cooldown_seconds": whole(0, 86400),
        "cooldown_after_loss_seconds": whole(0, 86400),
        "freeze_quantity": nullable(whole(1, MAX_FREEZE_QUANTITY)),
    },
)

_SIGNALS = section(
    SignalsConfig,
    {
        "strategy": choice("supertrend", "holy_grail"),
        "timeframe_minutes": whole(1, 60),
        "confirm_timeframe_minutes": nullable(whole(2, 375)),
        "supertrend": section(
            SupertrendParams, {"period": _PERIOD, "multiplier": number(0, 20, above=True)}
        ),
        "adx_period": _PERIOD,
        "adx_min": number(0, 100),
        "holy_grail": section(
            HolyGrailParams,
            {
                "sma_period": _PERIOD,
                "ema_period": _PERIOD,
                "macd_fast": _PERIOD,
                "macd_slow": _PERIOD,
                "macd_signal": _PERIOD,
                "rsi_period": _PERIOD,
                "rsi_midline": number(0, 100),
                "adx_min": number(0, 100),
            },
            (_check_macd,),
        ),
        "history_days": whole(0, 30),
        "max_candle_age_seconds": whole(1, 3600),
    },
    (_check_confirmation,),
)

_RISK = section(
    RiskConfig,
    {
        "daily_loss_limit": section(
            DailyLossLimit,
            {
                "rupees": nullable(money(MAX_DAILY_LOSS_RUPEES)),
                "pct_of_capital": nullable(_FRACTION),
            },
            (_check_loss_limit,),
        ),
        "max_trades_per_day": whole(1, 100),
        "max_concurrent": whole(1, 50),
        "loss_streak": section(
            LossStreak, {"count": whole(1, 100), "pause_minutes": whole(0, 1440)}
        ),
        "sizing": section(
            SizingConfig,
            {
                "risk_per_trade_rupees": money(MAX_RISK_PER_TRADE_RUPEES),
                "capital_alloc_pct": _FRACTION,
                "max_lots": whole(1, 1000),
            },
        ),
    },
)


def _switch(model: type, **knobs: Rule) -> Rule:
    """An exit rule: ``enabled`` plus its knobs."""
    return section(model, {"enabled": flag(), **knobs})


_EXITS = section(
    ExitsConfig,
    {
        "kill_switch": _switch(SwitchExit),
        "daily_loss_limit": _switch(SwitchExit),
        "expiry_day": _switch(ClockExit, at=clock()),
        "time_exit": _switch(ClockExit, at=clock()),
        "stop_loss": _switch(StopLossExit, sl_pct=_FRACTION),
        "breakeven": _switch(BreakevenExit, arm_gain_pct=_GAIN),
        "trailing": section(
            TrailingExit,
            {
                "enabled": flag(),
                "arm_gain_pct": _GAIN,
                "trail_pct": _FRACTION,
                "tiers": items(
                    section(TrailTier, {"peak_gain_pct": _GAIN, "trail_pct": _FRACTION}),
                    "a list of tiers {peak_gain_pct, trail_pct}",
                    max_items=20,
                ),
            },
            (_check_tiers,),
        ),
        "take_profit": _switch(TakeProfitExit, tp_pct=_GAIN, defer_when_trailing=flag()),
        "danger_zone": _switch(
            DangerZoneExit,
            loss_pct=_FRACTION,
            loss_seconds=whole(0, 3600),
            underlying_adverse_pct=_FRACTION,
        ),
        "peak_giveback": section(
            PeakGivebackExit,
            {"enabled": flag(), "peak_gain_pct": _GAIN, "giveback_to_pct": number(-1, 10)},
            (_check_giveback,),
        ),
        "premium_stall": _switch(PremiumStallExit, minutes=whole(1, 375)),
        "time_stop": _switch(TimeStopExit, max_hold_minutes=whole(1, 375)),
    },
)

ALGO_SCHEMA = section(
    AlgoConfig,
    {
        "market": section(
            MarketConfig,
            {
                "session_open": clock(),
                "session_close": clock(),
                "holidays": items(
                    day("an ISO date YYYY-MM-DD from 2000-01-01 to 2099-12-31", *_HOLIDAY_YEARS),
                    "a list of ISO dates",
                    build=frozenset,
                ),
            },
            (_check_session,),
        ),
        "indices": items(_INDEX, "a list of indices (at least 1)", key="key", min_items=1),
        "signals": _SIGNALS,
        "strikes": section(
            StrikesConfig,
            {
                "offset": whole(-10, 10),
                "expiry_cutoff": clock(),
                "max_spread_pct": _FRACTION,
                "min_oi": whole(0, MAX_OPEN_INTEREST),
                "subscribe_width": whole(0, 20),
            },
        ),
        "feed": section(
            FeedConfig,
            {
                "index_stale_seconds": number(0, 600, above=True),
                "option_stale_seconds": number(0, 600, above=True),
            },
        ),
        "risk": _RISK,
        "exits": _EXITS,
        "orders": section(
            OrdersConfig,
            {
                "limit_buffer_pct": number(0, 0.5),
                "max_chases": whole(0, 20),
                "chase_interval_ms": whole(50, 60000),
            },
        ),
        "paper": section(
            PaperConfig,
            {
                "slippage_bps": whole(0, 1000),
                "latency_ms": whole(0, 60000),
                "seed_cash": money(MAX_SEED_CASH_RUPEES),
            },
        ),
    },
    (_check_clock_times, _check_subscriptions),
    build=partial(AlgoConfig, version=""),  # the version is stamped once the whole is valid
    exclude=("version",),
)
_ALGO = adapter(ALGO_SCHEMA)


# -- the interface --------------------------------------------------------------------------------


def parse_algo_config(data: Any, source: str = "algo.yml") -> AlgoConfig:
    """Validate ``data`` (the YAML's mapping) into an AlgoConfig with its version stamped.

    Raises ConfigError listing EVERY problem, one line each:
    ``{source}: {key.path}: expected {what}, got {value!r}`` (also unknown and missing keys).
    """
    config = validate(_ALGO, data, source)
    return replace(config, version=config_version(config_as_dict(config)))


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, frozenset):
        return [_plain(item) for item in sorted(value)]
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, Decimal):
        return money_text(value)
    if isinstance(value, time):
        return hhmm(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def config_as_dict(config: AlgoConfig) -> dict[str, Any]:
    """The config as plain JSON/YAML values in the file's layout (times "HH:MM", dates ISO,
    amounts as canonical strings, holidays sorted). ``version`` is left out: the result is a
    valid algo.yml (it parses back to the same config), and the version is its hash."""
    plain = _plain(config)
    plain.pop("version")
    return plain


def config_version(data: Mapping[str, Any]) -> str:
    """12 hex chars of sha256 over the canonical JSON (sorted keys, no spaces) of ``data``,
    the plain form of a validated config (config_as_dict). A ``version`` key is ignored. The
    same config gives the same version in every process; key order does not matter."""
    body = {key: value for key, value in data.items() if key != "version"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _keyed(items: Any) -> bool:
    """A list of mappings that each have a ``key`` (``indices``)."""
    return isinstance(items, list) and all(
        isinstance(item, Mapping) and "key" in item for item in items
    )


_NO_OVERRIDE = object()


def _merge_keyed(items: list[Any], overrides: Mapping[str, Any], name: str) -> list[Any]:
    """Merge ``{KEY: mapping}`` into the list item with that key (case-insensitive); a key no
    item has is appended as a new item (validation then asks for its missing keys). A value
    that is not a mapping replaces the item (validation then names it). An override naming
    another ``key`` is refused: ``{"indices": {"NIFTY": {"key": "FOO"}}}`` would rename NIFTY
    (the index would leave the config, and an unknown one take its place)."""
    by_key = {str(key).upper(): value for key, value in overrides.items()}
    for key, override in by_key.items():
        if isinstance(override, Mapping) and "key" in override:
            if str(override["key"]).strip().upper() != key:
                raise ConfigError(
                    f"{OVERRIDES_SOURCE}: {join(join(name, key), 'key')}: expected {key!r} "
                    f"(an override cannot rename an item of {name}), "
                    f"got {shown(override['key'])}"
                )
    merged = []
    for item in items:
        override = by_key.pop(str(item["key"]).upper(), _NO_OVERRIDE)
        if override is _NO_OVERRIDE:
            merged.append(copy.deepcopy(item))
        elif isinstance(override, Mapping):
            merged.append(deep_merge(item, override))
        else:
            merged.append(copy.deepcopy(override))
    for key, override in by_key.items():
        merged.append({"key": key, **override} if isinstance(override, Mapping) else override)
    return merged


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``overrides`` over ``base``, neither modified: mappings merge recursively; lists and
    scalars replace. A keyed list (``indices``) may be overridden per item with a mapping by
    key: ``{"indices": {"NIFTY": {"enabled": false}}}`` merges into the NIFTY item only (a
    list value still replaces the whole list)."""
    merged = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(current, value)
        elif isinstance(value, Mapping) and _keyed(current):
            merged[key] = _merge_keyed(current, value, key)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _json_problem(overrides: Any) -> str | None:
    """The first place where ``overrides`` is not plain JSON of sane depth, as a problem line
    (None when it is). Iterative: 10,000 levels of nesting must not overflow the stack of the
    check meant to refuse them."""
    stack: list[tuple[Any, str, int]] = [(overrides, "", 1)]
    while stack:
        value, path, depth = stack.pop()
        where = path or "(top level)"
        if depth > MAX_OVERRIDE_DEPTH:
            return f"{where}: expected at most {MAX_OVERRIDE_DEPTH} levels of nesting, got more"
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    return f"{where}: expected text keys (JSON), got the key {shown(key)}"
                stack.append((item, join(path, key), depth + 1))
        elif isinstance(value, list):
            stack.extend((item, join(path, i), depth + 1) for i, item in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            return f"{where}: expected {_JSON_VALUES}, got {shown(value)}"
        elif not (value is None or isinstance(value, bool | int | float | str)):
            return f"{where}: expected {_JSON_VALUES}, got a {type(value).__name__} {shown(value)}"
    return None


def check_overrides(overrides: Any) -> None:
    """ConfigError unless ``overrides`` is a mapping of plain JSON values nested at most
    MAX_OVERRIDE_DEPTH deep (what a Setting stores and the API carries)."""
    if not isinstance(overrides, Mapping):
        raise ConfigError(
            f"{OVERRIDES_SOURCE}: (top level): expected a mapping of keys to values, "
            f"got {shown(overrides)}"
        )
    problem = _json_problem(overrides)
    if problem is not None:
        raise ConfigError(f"{OVERRIDES_SOURCE}: {problem}")


def load_algo_file(path: Path, overrides: Any = None) -> AlgoConfig:
    """The file ``path`` with ``overrides`` merged over it (``trading.config.store``'s
    ``load_algo_config`` defaults the file to the configured one).

    The file is validated alone first, so a problem found after merging is the overrides'
    doing and is reported with the source ``Setting algo.overrides`` and the key path."""
    file = Path(path)
    data = read_yaml_file(file)
    config = parse_algo_config(data, file.name)
    if overrides is None or overrides == {}:
        return config
    check_overrides(overrides)
    return parse_algo_config(deep_merge(data, overrides), OVERRIDES_SOURCE)
