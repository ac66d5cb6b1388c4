"""``config/instruments.yml``: loaded once, validated, frozen.

Errors name the file and the key path (``instruments.yml: guards.max_bad_row_share: expected a
number between 0 and 1, got 2``) so an operator can fix an edit before restarting anything.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

KNOWN_EXCHANGES = ("NSE", "BSE", "MCX")


class ConfigError(ValueError):
    """A configuration file is unreadable or invalid; the message names file and key path."""


@dataclass(frozen=True)
class CatalogConfig:
    url: str
    cache_max_age_hours: float
    download_timeout_seconds: float
    exchanges: tuple[str, ...]
    max_bad_row_share: float
    max_removal_share: float
    freeze_quantity: dict[str, int]


_SCHEMA: dict[str, set[str]] = {
    "source": {"url", "cache_max_age_hours", "download_timeout_seconds"},
    "filter": {"exchanges"},
    "guards": {"max_bad_row_share", "max_removal_share"},
    "freeze_quantity": set(),  # free-form: underlying symbol -> units
}


def _number(name: str, path: str, value: Any, low: float, high: float | None = None) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok and value >= low and (high is None or value <= high):
        return float(value)
    span = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
    raise ConfigError(f"{name}: {path}: expected a number {span}, got {value!r}")


def parse_catalog_config(data: Any, name: str = "instruments.yml") -> CatalogConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: expected a mapping at the top level, got {type(data).__name__}")
    for key in data:
        if key not in _SCHEMA:
            raise ConfigError(f"{name}: {key}: unknown key (expected one of {', '.join(_SCHEMA)})")
    for section, keys in _SCHEMA.items():
        if section not in data:
            raise ConfigError(f"{name}: {section}: missing required section")
        body = data[section]
        if not isinstance(body, dict):
            raise ConfigError(f"{name}: {section}: expected a mapping, got {body!r}")
        for key in keys:
            if key not in body:
                raise ConfigError(f"{name}: {section}.{key}: missing required key")
        if keys:
            for key in body:
                if key not in keys:
                    raise ConfigError(f"{name}: {section}.{key}: unknown key")

    src, flt, guards = data["source"], data["filter"], data["guards"]
    url = src["url"]
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigError(f"{name}: source.url: expected an http(s) URL, got {url!r}")
    exchanges = flt["exchanges"]
    if not isinstance(exchanges, list) or not exchanges:
        raise ConfigError(f"{name}: filter.exchanges: expected a non-empty list, got {exchanges!r}")
    for i, exchange in enumerate(exchanges):
        if exchange not in KNOWN_EXCHANGES:
            raise ConfigError(
                f"{name}: filter.exchanges[{i}]: expected one of "
                f"{', '.join(KNOWN_EXCHANGES)}, got {exchange!r}"
            )
    freeze: dict[str, int] = {}
    for symbol, qty in data["freeze_quantity"].items():
        if not isinstance(qty, int) or isinstance(qty, bool) or qty <= 0:
            raise ConfigError(
                f"{name}: freeze_quantity.{symbol}: expected a positive whole number, got {qty!r}"
            )
        freeze[str(symbol).upper()] = qty
    return CatalogConfig(
        url=url,
        cache_max_age_hours=_number(
            name, "source.cache_max_age_hours", src["cache_max_age_hours"], 0
        ),
        download_timeout_seconds=_number(
            name, "source.download_timeout_seconds", src["download_timeout_seconds"], 1
        ),
        exchanges=tuple(exchanges),
        max_bad_row_share=_number(
            name, "guards.max_bad_row_share", guards["max_bad_row_share"], 0, 1
        ),
        max_removal_share=_number(
            name, "guards.max_removal_share", guards["max_removal_share"], 0, 1
        ),
        freeze_quantity=freeze,
    )


def load_catalog_config(path: Path) -> CatalogConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path.name}: not valid YAML: {exc}") from None
    return parse_catalog_config(data, path.name)


@functools.cache
def _cached(path: str, mtime: float) -> CatalogConfig:
    return load_catalog_config(Path(path))


def catalog_config() -> CatalogConfig:
    """The effective catalog config (re-read when the file changes on disk)."""
    from django.conf import settings

    path = Path(settings.INSTRUMENTS_CONFIG_FILE)
    try:
        mtime = path.stat().st_mtime
    except OSError:
        raise ConfigError(f"{path}: missing (INSTRUMENTS_CONFIG_FILE / ALGO_CONFIG_DIR)") from None
    return _cached(str(path), mtime)
