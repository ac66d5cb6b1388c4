"""The operator's switches, stored as Setting rows (admin, API): read by the entry gates.

* ``trading.switch`` ``{"enabled": bool}``: off halts new entries (open positions keep their
  exits). Missing = on: a fresh install trades (in paper mode by default).
* ``trading.kill_switch`` ``{"active": bool, "reason": str}``: on halts entries and (exit
  engine) flattens every position; the daily loss limit sets it by itself. Missing = off.

A row whose value is not the documented shape is read as the SAFE state (switch off, kill switch
on) and logged: a typo in the admin must never be read as "trade".
"""

from __future__ import annotations

import json
import logging
from typing import Any

logger = logging.getLogger(__name__)

TRADING_SWITCH_KEY = "trading.switch"
KILL_SWITCH_KEY = "trading.kill_switch"


def _flag(key: str, field: str, missing: bool, safe: bool) -> bool:
    from trading.models import Setting

    value: Any = Setting.get(key)
    if value is None:
        return missing
    if isinstance(value, dict) and isinstance(value.get(field), bool):
        return value[field]
    logger.error(
        "Setting %s is %r, expected {%r: true|false}; treating it as %s",
        key,
        value,
        field,
        safe,
    )
    return safe


def trading_enabled() -> bool:
    return _flag(TRADING_SWITCH_KEY, "enabled", missing=True, safe=False)


def kill_switch_active() -> bool:
    return _flag(KILL_SWITCH_KEY, "active", missing=False, safe=True)


def set_trading_enabled(enabled: bool) -> None:
    from trading.models import Setting

    Setting.put(TRADING_SWITCH_KEY, {"enabled": bool(enabled)})


def set_kill_switch(active: bool, reason: str = "") -> None:
    from trading.models import Setting

    Setting.put(KILL_SWITCH_KEY, {"active": bool(active), "reason": reason})


def kill_switch_reason() -> str:
    """The stored reason of the kill switch; for a malformed row (read as ACTIVE by
    trading.switches) a sentence saying so, so the operator sees why entries are halted."""
    from trading.models import Setting

    value = Setting.get(KILL_SWITCH_KEY)
    if value is None:
        return ""
    if isinstance(value, dict) and isinstance(value.get("active"), bool):
        reason = value.get("reason", "")
        return reason if isinstance(reason, str) else str(reason)
    return f"the Setting {KILL_SWITCH_KEY} is malformed ({value!r}): read as active"


def switches_state() -> dict[str, Any]:
    """The switches as the entry gates read them (trading.switches), for the API and admin."""
    return {
        "trading_enabled": trading_enabled(),
        "kill_switch": {"active": kill_switch_active(), "reason": kill_switch_reason()},
    }


def switch_problem(key: str, value: Any) -> str | None:
    """Why ``value`` is not a valid row for a switch key (None when it is, or for other keys).
    trading.switches reads a malformed row as the safe state; refusing it here means a typo
    in the admin is shown at once instead of silently halting trading (the Setting admin
    form checks with it)."""
    if key == TRADING_SWITCH_KEY:
        if isinstance(value, dict) and set(value) == {"enabled"}:
            if isinstance(value["enabled"], bool):
                return None
        return f'Setting {key}: expected {{"enabled": true|false}}, got {json.dumps(value)}'
    if key == KILL_SWITCH_KEY:
        if isinstance(value, dict) and set(value) <= {"active", "reason"}:
            if isinstance(value.get("active"), bool) and isinstance(value.get("reason", ""), str):
                return None
        return (
            f'Setting {key}: expected {{"active": true|false, "reason": "text"}}, '
            f"got {json.dumps(value)}"
        )
    return None
