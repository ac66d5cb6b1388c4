"""``config/algo.yml`` (+ an overrides mapping) -> a validated ``AlgoConfig``.

Schema-driven: every section is a table of fields (YAML key -> spec; the keys are the fields of
the frozen dataclasses of ``trading.config.types``, which is what the rules receive). No Django
here: the default file and the stored overrides are ``trading.config.store``'s.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, is_dataclass, replace
from datetime import date, time
from decimal import Decimal, InvalidOperation
from functools import partial
from pathlib import Path
from typing import Any

import yaml

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


class ConfigError(ValueError):
    """A configuration file or override is invalid. The message names the source (file name or
    ``Setting algo.overrides``), every offending key path, the value found and what was
    expected; ``problems`` holds the same lines one by one. The caller refuses to start (or
    to save the override) and shows the message as it is."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems) if problems else [message]


# # Schema-driven: every section is a table of fields (YAML key -> spec; the keys are the
# dataclass field names). A spec converts one value or says what it expected; a section reports
# unknown and missing keys, builds its dataclass and runs its cross-field checks. Nothing stops
# at the first problem: the operator sees everything to fix in one run.

OVERRIDES_KEY = "algo.overrides"  # the Setting row holding the operator's override mapping
OVERRIDES_SOURCE = f"Setting {OVERRIDES_KEY}"

_BAD = object()  # the result of a value that failed (its problem is already reported)

# A cross-field check yields (key path below its section, value, what was expected).
Found = tuple[str, Any, str]
Check = Callable[[Any], Iterable[Found]]


class _Invalid(Exception):
    """A spec's ``convert`` refuses a value; ``args[0]``, when given, is a more precise
    expectation than the spec's own."""


class _Report:
    """The problems found so far, one line each: source, key path, value, expectation."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def bad(self, path: str, expected: str, value: Any) -> None:
        where = path or "(top level)"
        self.problems.append(f"{self.source}: {where}: expected {expected}, got {_shown(value)}")

    def note(self, path: str, text: str) -> None:
        self.problems.append(f"{self.source}: {path}: {text}")


def _hhmm(moment: time) -> str:
    return moment.strftime("%H:%M")


def _money_text(amount: Decimal) -> str:
    """Canonical text of an amount: no exponent, no trailing zeros (``100000``, ``20.5``)."""
    return format(amount.normalize(), "f")


def _shown(value: Any) -> str:
    """A value as the operator wrote it: times "HH:MM", dates ISO, amounts plain."""
    if isinstance(value, time):
        return repr(_hhmm(value))
    if isinstance(value, date):
        return repr(value.isoformat())
    if isinstance(value, Decimal):
        return _money_text(value)
    return repr(value)


def _join(path: str, key: object) -> str:
    if key == "":
        return path
    return f"{path}.{key}" if path else str(key)


def _span(low: float, high: float | None, above: bool) -> str:
    start = f"above {low:g}" if above else f"at least {low:g}"
    if high is None:
        return start
    return f"{start} and at most {high:g}" if above else f"between {low:g} and {high:g}"


def _within(value: float | Decimal, low: float, high: float | None, above: bool) -> bool:
    if value < low or (above and value == low):
        return False
    return high is None or value <= high


class _Spec:
    """One field's rule. ``parse`` returns the converted value, or ``_BAD`` after reporting."""

    expected = "a value"

    def convert(self, value: Any) -> Any:
        raise NotImplementedError

    def parse(self, value: Any, path: str, report: _Report) -> Any:
        try:
            return self.convert(value)
        except _Invalid as exc:
            report.bad(path, exc.args[0] if exc.args else self.expected, value)
            return _BAD


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)  # True is not 1 here


@dataclass(frozen=True)
class _Whole(_Spec):
    low: int
    high: int | None = None

    @property
    def expected(self) -> str:
        return f"a whole number {_span(self.low, self.high, False)}"

    def convert(self, value: Any) -> int:
        if not (_is_number(value) and isinstance(value, int)):
            raise _Invalid
        if not _within(value, self.low, self.high, False):
            raise _Invalid
        return value


@dataclass(frozen=True)
class _Number(_Spec):
    low: float
    high: float | None = None
    above: bool = False  # the low end excluded

    @property
    def expected(self) -> str:
        return f"a number {_span(self.low, self.high, self.above)}"

    def convert(self, value: Any) -> float:
        if not _is_number(value) or not math.isfinite(value):
            raise _Invalid
        if not _within(value, self.low, self.high, self.above):
            raise _Invalid
        return float(value)


@dataclass(frozen=True)
class _Money(_Spec):
    """Rupees: a number or a numeric string, kept exact as Decimal (via ``str``)."""

    low: float = 0
    above: bool = True

    @property
    def expected(self) -> str:
        return f"an amount in rupees {_span(self.low, None, self.above)}"

    def convert(self, value: Any) -> Decimal:
        if not (_is_number(value) or isinstance(value, str)):
            raise _Invalid
        try:
            amount = Decimal(str(value).strip())
        except InvalidOperation:
            raise _Invalid from None
        if not amount.is_finite() or not _within(amount, self.low, None, self.above):
            raise _Invalid
        return amount


_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


class _Clock(_Spec):
    expected = 'a time of day "HH:MM" (IST)'

    def convert(self, value: Any) -> time:
        if isinstance(value, time):
            return value.replace(second=0, microsecond=0, tzinfo=None)
        if isinstance(value, int) and not isinstance(value, bool):
            # YAML 1.1 reads an unquoted 15:00 as the base-60 number 900.
            raise _Invalid(f"{self.expected} in quotes (YAML reads unquoted 15:00 as 900)")
        match = _HHMM.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise _Invalid
        return time(int(match[1]), int(match[2]))


_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


class _Day(_Spec):
    expected = "an ISO date YYYY-MM-DD"

    def convert(self, value: Any) -> date:
        if isinstance(value, date) and not hasattr(value, "hour"):
            return value
        if isinstance(value, str) and _ISO_DAY.fullmatch(value):
            try:
                return date.fromisoformat(value)
            except ValueError:
                raise _Invalid from None
        raise _Invalid


class _Flag(_Spec):
    expected = "true or false"

    def convert(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise _Invalid
        return value


@dataclass(frozen=True)
class _Choice(_Spec):
    options: tuple[str, ...]

    @property
    def expected(self) -> str:
        return "one of " + ", ".join(repr(option) for option in self.options)

    def convert(self, value: Any) -> str:
        if value not in self.options:
            raise _Invalid
        return value


_SYMBOL = re.compile(r"[A-Za-z][A-Za-z0-9]*")


class _Symbol(_Spec):
    expected = "an index symbol of letters and digits (NIFTY)"

    def convert(self, value: Any) -> str:
        if not (isinstance(value, str) and _SYMBOL.fullmatch(value)):
            raise _Invalid
        return value.upper()


@dataclass(frozen=True)
class _Nullable(_Spec):
    inner: _Spec

    @property
    def expected(self) -> str:
        return f"{self.inner.expected} or null"

    def convert(self, value: Any) -> Any:
        if value is None:
            return None
        try:
            return self.inner.convert(value)
        except _Invalid as exc:
            raise _Invalid(f"{exc.args[0] if exc.args else self.inner.expected} or null") from None


@dataclass(frozen=True)
class _Items(_Spec):
    """A list; items with a ``key`` are named by it in paths (``indices[NIFTY].enabled``) and
    must not repeat it."""

    item: _Spec
    what: str  # "ISO dates": for the message when the value is not a list
    build: Callable[[list[Any]], Any] = tuple
    key: str | None = None
    min_items: int = 0

    def _label(self, path: str, index: int, raw: Any) -> str:
        name = raw.get(self.key) if self.key and isinstance(raw, Mapping) else None
        named = isinstance(name, str) and _SYMBOL.fullmatch(name)
        return f"{path}[{name.upper()}]" if named else f"{path}[{index}]"

    def parse(self, value: Any, path: str, report: _Report) -> Any:
        if not isinstance(value, list | tuple) or len(value) < self.min_items:
            least = f" (at least {self.min_items})" if self.min_items else ""
            report.bad(path, f"a list of {self.what}{least}", value)
            return _BAD
        items = [
            self.item.parse(raw, self._label(path, i, raw), report) for i, raw in enumerate(value)
        ]
        if any(item is _BAD for item in items):
            return _BAD
        seen: set[Any] = set()
        for i, item in enumerate(items):
            if self.key is not None:
                name = getattr(item, self.key)
                if name in seen:
                    report.bad(f"{path}[{i}].{self.key}", "a key no earlier item uses", name)
                    return _BAD
                seen.add(name)
        return self.build(items)


@dataclass(frozen=True)
class _Section(_Spec):
    """A mapping with exactly these keys, built into ``build(**values)``, then checked."""

    build: Callable[..., Any]
    fields: Mapping[str, _Spec]
    checks: tuple[Check, ...] = ()

    def parse(self, value: Any, path: str, report: _Report) -> Any:
        if not isinstance(value, Mapping):
            report.bad(path, f"a mapping with keys {', '.join(self.fields)}", value)
            return _BAD
        failed = False
        for key in value:
            if key not in self.fields:
                expected = ", ".join(self.fields)
                report.note(_join(path, key), f"unknown key (expected one of {expected})")
                failed = True
        values: dict[str, Any] = {}
        for key, spec in self.fields.items():
            if key not in value:
                report.note(_join(path, key), "missing required key")
                failed = True
                continue
            values[key] = spec.parse(value[key], _join(path, key), report)
            failed = failed or values[key] is _BAD
        if failed:
            return _BAD
        built = self.build(**values)
        found = [problem for check in self.checks for problem in check(built)]
        for key_path, found_value, expected in found:
            report.bad(_join(path, key_path), expected, found_value)
        return _BAD if found else built


# -- cross-field checks ---------------------------------------------------------------------------


def _check_session(market: MarketConfig) -> Iterable[Found]:
    if market.session_open >= market.session_close:
        expected = f"a time after session_open ({_hhmm(market.session_open)})"
        yield "session_close", market.session_close, expected


def _check_window(window: Window) -> Iterable[Found]:
    if window.start >= window.end:
        yield "end", window.end, f"a time after start ({_hhmm(window.start)})"


def _check_band(band: PremiumBand) -> Iterable[Found]:
    if band.min > band.max:
        yield "max", band.max, f"an amount at least min ({_money_text(band.min)})"


def _check_confirmation(signals: SignalsConfig) -> Iterable[Found]:
    confirm, primary = signals.confirm_timeframe_minutes, signals.timeframe_minutes
    if confirm is not None and (confirm <= primary or confirm % primary):
        expected = f"null or a multiple of timeframe_minutes ({primary}) larger than it"
        yield "confirm_timeframe_minutes", confirm, expected


def _check_macd(params: HolyGrailParams) -> Iterable[Found]:
    if params.macd_fast >= params.macd_slow:
        yield "macd_slow", params.macd_slow, f"a period longer than macd_fast ({params.macd_fast})"


def _check_loss_limit(limit: DailyLossLimit) -> Iterable[Found]:
    if limit.rupees is None and limit.pct_of_capital is None:
        both = {"rupees": None, "pct_of_capital": None}
        yield "", both, "at least one of rupees, pct_of_capital set (not null)"


def _check_tiers(trailing: TrailingExit) -> Iterable[Found]:
    """Tiers ascend in peak gain above the arming gain, each trailing tighter than before."""
    peak, trail = ("arm_gain_pct", trailing.arm_gain_pct), ("trail_pct", trailing.trail_pct)
    for i, tier in enumerate(trailing.tiers):
        if tier.peak_gain_pct <= peak[1]:
            expected = f"a gain above {peak[0]} ({peak[1]:g})"
            yield f"tiers[{i}].peak_gain_pct", tier.peak_gain_pct, expected
        if tier.trail_pct >= trail[1]:
            expected = f"a trail below {trail[0]} ({trail[1]:g})"
            yield f"tiers[{i}].trail_pct", tier.trail_pct, expected
        peak = (f"tiers[{i}].peak_gain_pct", tier.peak_gain_pct)
        trail = (f"tiers[{i}].trail_pct", tier.trail_pct)


def _check_giveback(rule: PeakGivebackExit) -> Iterable[Found]:
    if rule.giveback_to_pct >= rule.peak_gain_pct:
        expected = f"a gain below peak_gain_pct ({rule.peak_gain_pct:g})"
        yield "giveback_to_pct", rule.giveback_to_pct, expected


def _check_clock_times(config: AlgoConfig) -> Iterable[Found]:
    """Entry windows inside the session; the expiry-day exit at or before the time exit; both,
    and the expiry cutoff, after the open and at or before the close."""
    start, close = config.market.session_open, config.market.session_close
    session = f"a time within the session ({_hhmm(start)}-{_hhmm(close)})"
    for item in config.indices:
        window = item.entry_window
        if window.start < start:
            yield f"indices[{item.key}].entry_window.start", window.start, session
        if window.end > close:
            yield f"indices[{item.key}].entry_window.end", window.end, session
    exits = config.exits
    clocks = {
        "exits.expiry_day.at": exits.expiry_day.at,
        "exits.time_exit.at": exits.time_exit.at,
        "strikes.expiry_cutoff": config.strikes.expiry_cutoff,
    }
    for key_path, moment in clocks.items():
        if not start < moment <= close:
            yield key_path, moment, session
    if exits.expiry_day.at > exits.time_exit.at:
        expected = f"a time at or before exits.time_exit.at ({_hhmm(exits.time_exit.at)})"
        yield "exits.expiry_day.at", exits.expiry_day.at, expected


def _check_subscriptions(config: AlgoConfig) -> Iterable[Found]:
    """The engine subscribes ``subscribe_width`` strikes around ATM: the offset strike must be
    among them or its tick is never fresh when a signal comes."""
    widest = max(abs(item.offset(config.strikes)) for item in config.indices)
    if config.strikes.subscribe_width < widest:
        expected = f"a width of at least the largest strike offset ({widest})"
        yield "strikes.subscribe_width", config.strikes.subscribe_width, expected


# -- the schema -----------------------------------------------------------------------------------

_FRACTION = _Number(0, 1, above=True)  # a share: above 0, at most 1
_PERIOD = _Whole(1, 500)  # candles

_INDEX = _Section(
    IndexConfig,
    {
        "key": _Symbol(),
        "enabled": _Flag(),
        "entry_window": _Section(Window, {"start": _Clock(), "end": _Clock()}, (_check_window,)),
        "premium_band": _Section(PremiumBand, {"min": _Money(), "max": _Money()}, (_check_band,)),
        "strike_offset": _Nullable(_Whole(-10, 10)),
        "max_trades_per_day": _Whole(1, 100),
        "max_concurrent": _Whole(1, 10),
        "cooldown_seconds": _Whole(0, 86400),
        "cooldown_after_loss_seconds": _Whole(0, 86400),
        "freeze_quantity": _Nullable(_Whole(1)),
    },
)

_SIGNALS = _Section(
    SignalsConfig,
    {
        "strategy": _Choice(("supertrend", "holy_grail")),
        "timeframe_minutes": _Whole(1, 60),
        "confirm_timeframe_minutes": _Nullable(_Whole(2, 375)),
        "supertrend": _Section(
            SupertrendParams, {"period": _PERIOD, "multiplier": _Number(0, 20, above=True)}
        ),
        "adx_period": _PERIOD,
        "adx_min": _Number(0, 100),
        "holy_grail": _Section(
            HolyGrailParams,
            {
                "sma_period": _PERIOD,
                "ema_period": _PERIOD,
                "macd_fast": _PERIOD,
                "macd_slow": _PERIOD,
                "macd_signal": _PERIOD,
                "rsi_period": _PERIOD,
                "rsi_midline": _Number(0, 100),
                "adx_min": _Number(0, 100),
            },
            (_check_macd,),
        ),
        "history_days": _Whole(0, 30),
        "max_candle_age_seconds": _Whole(1, 3600),
    },
    (_check_confirmation,),
)

_RISK = _Section(
    RiskConfig,
    {
        "daily_loss_limit": _Section(
            DailyLossLimit,
            {"rupees": _Nullable(_Money()), "pct_of_capital": _Nullable(_FRACTION)},
            (_check_loss_limit,),
        ),
        "max_trades_per_day": _Whole(1, 100),
        "max_concurrent": _Whole(1, 50),
        "loss_streak": _Section(
            LossStreak, {"count": _Whole(1, 100), "pause_minutes": _Whole(0, 1440)}
        ),
        "sizing": _Section(
            SizingConfig,
            {
                "risk_per_trade_rupees": _Money(),
                "capital_alloc_pct": _FRACTION,
                "max_lots": _Whole(1, 1000),
            },
        ),
    },
)


def _switch(build: Callable[..., Any], **knobs: _Spec) -> _Section:
    """An exit rule: ``enabled`` plus its knobs."""
    return _Section(build, {"enabled": _Flag(), **knobs})


_EXITS = _Section(
    ExitsConfig,
    {
        "kill_switch": _switch(SwitchExit),
        "daily_loss_limit": _switch(SwitchExit),
        "expiry_day": _switch(ClockExit, at=_Clock()),
        "time_exit": _switch(ClockExit, at=_Clock()),
        "stop_loss": _switch(StopLossExit, sl_pct=_Number(0, 1, above=True)),
        "breakeven": _switch(BreakevenExit, arm_gain_pct=_Number(0, 10, above=True)),
        "trailing": _Section(
            TrailingExit,
            {
                "enabled": _Flag(),
                "arm_gain_pct": _Number(0, 10, above=True),
                "trail_pct": _FRACTION,
                "tiers": _Items(
                    _Section(
                        TrailTier,
                        {"peak_gain_pct": _Number(0, 10, above=True), "trail_pct": _FRACTION},
                    ),
                    "tiers {peak_gain_pct, trail_pct}",
                ),
            },
            (_check_tiers,),
        ),
        "take_profit": _switch(
            TakeProfitExit, tp_pct=_Number(0, 10, above=True), defer_when_trailing=_Flag()
        ),
        "danger_zone": _switch(
            DangerZoneExit,
            loss_pct=_FRACTION,
            loss_seconds=_Whole(0, 3600),
            underlying_adverse_pct=_FRACTION,
        ),
        "peak_giveback": _Section(
            PeakGivebackExit,
            {
                "enabled": _Flag(),
                "peak_gain_pct": _Number(0, 10, above=True),
                "giveback_to_pct": _Number(-1, 10),
            },
            (_check_giveback,),
        ),
        "premium_stall": _switch(PremiumStallExit, minutes=_Whole(1, 375)),
        "time_stop": _switch(TimeStopExit, max_hold_minutes=_Whole(1, 375)),
    },
)

_ALGO = _Section(
    partial(AlgoConfig, version=""),  # the version is stamped once the whole is valid
    {
        "market": _Section(
            MarketConfig,
            {
                "session_open": _Clock(),
                "session_close": _Clock(),
                "holidays": _Items(_Day(), "ISO dates", build=frozenset),
            },
            (_check_session,),
        ),
        "indices": _Items(_INDEX, "indices", key="key", min_items=1),
        "signals": _SIGNALS,
        "strikes": _Section(
            StrikesConfig,
            {
                "offset": _Whole(-10, 10),
                "expiry_cutoff": _Clock(),
                "max_spread_pct": _FRACTION,
                "min_oi": _Whole(0),
                "subscribe_width": _Whole(0, 20),
            },
        ),
        "feed": _Section(
            FeedConfig,
            {
                "index_stale_seconds": _Number(0, 600, above=True),
                "option_stale_seconds": _Number(0, 600, above=True),
            },
        ),
        "risk": _RISK,
        "exits": _EXITS,
        "orders": _Section(
            OrdersConfig,
            {
                "limit_buffer_pct": _Number(0, 0.5),
                "max_chases": _Whole(0, 20),
                "chase_interval_ms": _Whole(50, 60000),
            },
        ),
        "paper": _Section(
            PaperConfig,
            {
                "slippage_bps": _Whole(0, 1000),
                "latency_ms": _Whole(0, 60000),
                "seed_cash": _Money(),
            },
        ),
    },
    (_check_clock_times, _check_subscriptions),
)


# -- the interface --------------------------------------------------------------------------------


def parse_algo_config(data: Any, source: str = "algo.yml") -> AlgoConfig:
    """Validate ``data`` (the YAML's mapping) into an AlgoConfig with its version stamped.

    Raises ConfigError listing EVERY problem, one line each:
    ``{source}: {key.path}: expected {what}, got {value!r}`` (also unknown and missing keys).
    """
    report = _Report(source)
    config = _ALGO.parse(data, "", report)
    if report.problems:
        raise ConfigError("\n".join(report.problems), report.problems)
    return replace(config, version=config_version(config_as_dict(config)))


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, frozenset):
        return [_plain(item) for item in sorted(value)]
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, Decimal):
        return _money_text(value)
    if isinstance(value, time):
        return _hhmm(value)
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


def _merge_keyed(items: list[Any], overrides: Mapping[str, Any]) -> list[Any]:
    """Merge ``{KEY: mapping}`` into the list item with that key (case-insensitive); a key no
    item has is appended as a new item (validation then asks for its missing keys)."""
    by_key = {str(key).upper(): value for key, value in overrides.items()}
    merged = []
    for item in items:
        override = by_key.pop(str(item["key"]).upper(), None)
        merged.append(copy.deepcopy(item) if override is None else deep_merge(item, override))
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
            merged[key] = _merge_keyed(current, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def read_yaml_file(path: Path) -> Any:
    """The YAML document in ``path``, any type (the caller's parser judges it); ConfigError
    naming the file when it cannot be read or is not YAML. algo.yml and charges.yml."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{Path(path).name}: not valid YAML: {exc}") from None


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
    if not isinstance(overrides, Mapping):
        raise ConfigError(
            f"{OVERRIDES_SOURCE}: (top level): expected a mapping of keys to values, "
            f"got {overrides!r}"
        )
    return parse_algo_config(deep_merge(data, overrides), OVERRIDES_SOURCE)
