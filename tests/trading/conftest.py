"""Fixtures of the trading tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from trading.config import store as algo

# The project's own config/algo.yml, whatever ALGO_CONFIG_DIR the environment sets.
ALGO_YML = Path(__file__).resolve().parents[2] / "config" / "algo.yml"


@pytest.fixture
def project_algo_config(settings) -> Iterator[Path]:
    """settings.ALGO_CONFIG_FILE = the project's algo.yml, with a fresh config cache before
    and after (the cache is per process)."""
    settings.ALGO_CONFIG_FILE = ALGO_YML
    algo.clear_algo_config_cache()
    yield ALGO_YML
    algo.clear_algo_config_cache()
