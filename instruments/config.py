"""``config/instruments.yml``: loaded once, validated, frozen.

Errors name the file and the key path (``instruments.yml: guards.max_bad_row_share: expected a
number between 0 and 1, got 2``), every problem of the file at once, so an operator can fix an
edit before restarting anything. The schema is a ``config_schema`` one, like every
configuration file's; the catalog imports nothing of ``trading``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config_schema import ConfigError
from config_schema.reading import read_yaml_file
from config_schema.schema import (
    adapter,
    choice,
    items,
    mapping,
    number,
    plain,
    section,
    validate,
    whole,
)

KNOWN_EXCHANGES = ("NSE", "BSE", "MCX")
# Units per order. Exchange freeze quantities are in the thousands (NIFTY 1,800); a figure
# above this is a typo, and an order split by it would not be split at all.
MAX_FREEZE_QUANTITY = 100_000


@dataclass(frozen=True)
class CatalogConfig:
    url: str
    cache_max_age_hours: float
    download_timeout_seconds: float
    exchanges: tuple[str, ...]
    max_bad_row_share: float
    max_removal_share: float
    freeze_quantity: dict[str, int]


def _url(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ValueError
    return value


def _catalog(**sections: Any) -> CatalogConfig:
    """The file's four sections flattened into one CatalogConfig."""
    freeze = sections["freeze_quantity"]
    return CatalogConfig(
        **sections["source"],
        exchanges=sections["filter"]["exchanges"],
        **sections["guards"],
        freeze_quantity={symbol.upper(): units for symbol, units in freeze.items()},
    )


_SHARE = number(0, 1)
_SCHEMA = adapter(
    section(
        "instruments",
        {
            "source": section(
                "source",
                {
                    "url": plain("an http(s) URL", _url),
                    "cache_max_age_hours": number(0, 8760),
                    "download_timeout_seconds": number(1, 3600),
                },
                build=dict,
            ),
            "filter": section(
                "filter",
                {
                    "exchanges": items(
                        choice(*KNOWN_EXCHANGES), "a non-empty list of exchanges", min_items=1
                    )
                },
                build=dict,
            ),
            "guards": section(
                "guards",
                {"max_bad_row_share": _SHARE, "max_removal_share": _SHARE},
                build=dict,
            ),
            # Free-form: underlying symbol -> units.
            "freeze_quantity": mapping(
                whole(1, MAX_FREEZE_QUANTITY), "a mapping of underlying symbol to units"
            ),
        },
        build=_catalog,
    )
)


def parse_catalog_config(data: Any, name: str = "instruments.yml") -> CatalogConfig:
    """Validate the parsed YAML; ConfigError listing every problem, naming ``name``."""
    return validate(_SCHEMA, data, name)


def load_catalog_config(path: Path) -> CatalogConfig:
    path = Path(path)
    return parse_catalog_config(read_yaml_file(path), path.name)


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
