"""The effective algo config of this deployment: the configured file + the stored overrides.

Django-backed: the file is ``settings.ALGO_CONFIG_FILE``; the operator's overrides live in the
``Setting`` row ``algo.overrides`` (written by the admin or ``PUT /api/config/overrides/``,
always through :func:`save_overrides`, which validates first). Each process keeps one cached
copy of the effective config (:func:`algo_config`), replaced by :func:`reload_algo_config`.
"""

from __future__ import annotations

import logging
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings

from config_schema import ConfigError
from config_schema.text import shown
from trading.config.load import OVERRIDES_KEY, OVERRIDES_SOURCE, load_algo_file
from trading.config.types import AlgoConfig
from trading.models import Setting

logger = logging.getLogger(__name__)


def algo_config_file() -> Path:
    """settings.ALGO_CONFIG_FILE (config/algo.yml, or ALGO_CONFIG_DIR's)."""
    return Path(settings.ALGO_CONFIG_FILE)


def load_algo_config(path: Path | None = None, overrides: Any = None) -> AlgoConfig:
    """The file (default: the configured one) with ``overrides`` merged over it; ConfigError
    naming the file, or ``Setting algo.overrides`` for a problem the overrides make."""
    return load_algo_file(algo_config_file() if path is None else path, overrides)


def stored_overrides() -> Any:
    """The override mapping stored in the Setting row (``{}`` when there is none)."""
    stored = Setting.get(OVERRIDES_KEY)
    return {} if stored is None else stored


def effective_algo_config() -> AlgoConfig:
    """Read now: the file plus the stored overrides (Django and the database needed). The
    file is validated before the database is read, so a bad file is named even where the
    database is not reachable or not migrated yet."""
    path = algo_config_file()
    load_algo_file(path)
    return load_algo_file(path, stored_overrides())


_CACHE: dict[str, AlgoConfig] = {}
_CACHE_LOCK = threading.Lock()


def config_at_start() -> AlgoConfig:
    """What a worker checks before it does anything: the effective algo config and the
    charges table (config/charges.yml), each validated now. ConfigError naming the file, the
    key path or row and the field, for the command to say in one line and exit 1: a broken
    charges file found only when the first fill is booked is found after orders are on the
    wire (a fill then cannot be booked)."""
    from trading.charges import charges_table

    charges_table()  # a file only: before the algo config's read of the database
    config = effective_algo_config()
    for line in config.exits.safety_off():
        logger.warning("algo config %s: %s", config.version, line)
    return config


def reload_algo_config() -> AlgoConfig:
    """Re-read file + overrides and replace this process's cached copy (raises when invalid,
    keeping the previous copy)."""
    with _CACHE_LOCK:
        config = effective_algo_config()
        _CACHE["config"] = config
    return config


def clear_algo_config_cache() -> None:
    """Forget this process's copy (tests; the next algo_config() reads file + overrides)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def algo_config() -> AlgoConfig:
    """The effective config, read once per process. An edit (file or overrides) reaches a
    long-running process when it calls reload_algo_config(); save_overrides refreshes the
    copy of the process that saved."""
    cached = _CACHE.get("config")
    return cached if cached is not None else reload_algo_config()


def save_overrides(overrides: Any) -> AlgoConfig:
    """Validate file + ``overrides`` and store them as the Setting (replacing the previous
    overrides; ``{}`` clears them) only when valid; else ConfigError and nothing stored.

    ``overrides`` must be a mapping of plain JSON values: None (a null body) is refused rather
    than taken as "no overrides", so clearing every override is always an explicit ``{}``.
    Whatever JSON value comes in (huge numbers, deep nesting, lone surrogates, long strings),
    the only exception is ConfigError."""
    if overrides is None:
        raise ConfigError(
            f"{OVERRIDES_SOURCE}: (top level): expected a mapping of keys to values ({{}} "
            f"clears every override), got {shown(overrides)}"
        )
    config = load_algo_config(None, overrides)
    Setting.put(OVERRIDES_KEY, overrides)
    with _CACHE_LOCK:
        _CACHE["config"] = config
    return config


def paper_seed_cash() -> Decimal:
    """The paper ledger's opening cash: env PAPER_SEED_CASH when set, else algo.yml
    ``paper.seed_cash`` (with overrides)."""
    from_env = getattr(settings, "PAPER_SEED_CASH", None)
    return Decimal(from_env) if from_env is not None else algo_config().paper.seed_cash
