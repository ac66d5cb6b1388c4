"""Helpers of the two writers of the algo overrides (the API and the Setting admin).

* overrides_version: what a writer must name (If-Match) to replace the stored overrides. A
  digest of the content, not a counter: it needs no extra column or row, an absent row and an
  empty mapping (the same overrides) have the same version, and any writer (the API, the
  admin, ``Setting.put``) changes it by changing the content.
* CONFIG_CRASHES / crash_problem: exceptions other than ConfigError that the config code
  (trading/config.py) raises on some hostile overrides, answered as the client's error.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

logger = logging.getLogger(__name__)

# Raised from inside trading/config.py's merge and validation for some overrides instead of a
# ConfigError naming the key: decimal.Overflow (ArithmeticError) for "1e999999999" rupees,
# AttributeError for {"indices": {"NIFTY": []}} (an index given a list, not a mapping),
# TypeError for kin. The values are the client's, so the answer is a 400, not a 500; the
# config rewrite is to name the key path itself.
CONFIG_CRASHES = (ArithmeticError, AttributeError, TypeError)


def overrides_version(overrides: Any) -> str:
    """16 hex digits of SHA-256 over the canonical JSON of ``overrides`` (None counts as {})."""
    canonical = json.dumps(
        {} if overrides is None else overrides,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()[:16]


def crash_problem(source: str, exc: Exception) -> str:
    """The one-line problem for a CONFIG_CRASHES exception (logged with its traceback, since
    it is a gap in the config validation)."""
    logger.warning("%s: the config validation failed on the overrides", source, exc_info=exc)
    return (
        f"{source}: the overrides do not fit the file's structure or a number is out of range "
        f"({type(exc).__name__}: {exc}); give mappings where config/algo.yml has mappings"
    )
