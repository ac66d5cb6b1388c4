"""Helpers of the two writers of the algo overrides (the API and the Setting admin).

* overrides_version: what a writer must name (If-Match) to replace the stored overrides. A
  digest of the content, not a counter: it needs no extra column or row, an absent row and an
  empty mapping (the same overrides) have the same version, and any writer (the API, the
  admin, ``Setting.put``) changes it by changing the content.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

logger = logging.getLogger(__name__)



def overrides_version(overrides: Any) -> str:
    """16 hex digits of SHA-256 over the canonical JSON of ``overrides`` (None counts as {})."""
    canonical = json.dumps(
        {} if overrides is None else overrides,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()[:16]
