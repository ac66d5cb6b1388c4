"""The JSON text of events and key-value values, the same in memory and in Redis.

The in-memory bus and stores go through this too, so a value that would fail in split mode
(not serialisable, NaN) fails in embedded mode as well, and every reader gets its own copy.
"""

from __future__ import annotations

import json

__all__ = ["json_text"]


def json_text(value: object, what: str) -> str:
    """``value`` as compact strict JSON; ValueError naming ``what`` when it is not JSON."""
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not JSON-serialisable: {exc}") from None
