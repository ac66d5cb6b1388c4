"""The operator's switches, stored as Setting rows (admin, API): read by the entry gates.

* ``trading.switch`` ``{"enabled": bool}``: off halts new entries (open positions keep their
  exits). Missing = on: a fresh install trades (in paper mode by default).
* ``trading.kill_switch`` ``{"active": bool, "reason": str}``: on halts entries and (exit
  engine) flattens every position; the daily loss limit sets it by itself. Missing = off.

A row whose value is not the documented shape is read as the SAFE state (switch off, kill switch
on) and logged: a stray value must never be read as "trade".

The switches change only through change_switches (the admin's Trading switches page, the API),
which logs who changed what from what to what; the generic Setting admin refuses these rows,
and the rows the workers write (see reserved_setting).
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

TRADING_SWITCH_KEY = "trading.switch"
KILL_SWITCH_KEY = "trading.kill_switch"
SWITCH_KEYS = frozenset({TRADING_SWITCH_KEY, KILL_SWITCH_KEY})
# Setting rows the processes write, never an operator: embedded mode's key-value store
# (workers/realtime/kv_store.py DbKeyValueStore, "kv:<name>": heartbeats, feed health, candle
# history, candidates), which /ready trusts. Spelled here rather than imported so the domain
# does not import the workers; a test checks it against the writer.
WORKER_KEY_PREFIXES = ("kv:", "orders.")


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


def _trading_text(enabled: bool) -> str:
    return "ON" if enabled else "OFF"


def _kill_text(kill: dict[str, Any]) -> str:
    if not kill["active"]:
        return "off"
    return f"ACTIVE (reason: {kill['reason']})" if kill["reason"] else "ACTIVE"


def change_switches(
    by: str,
    via: str,
    *,
    trading: bool | None = None,
    kill: tuple[bool, str] | None = None,
) -> dict[str, Any]:
    """Set the trading switch and/or the kill switch (``(active, reason)``) in one transaction
    and log at WARNING who did it, where (``via``: "in the admin", "through the API") and each
    switch from -> to, so a halt or a resume is never silent. Returns the new switches_state."""
    from django.db import transaction

    with transaction.atomic():  # both or neither
        before = switches_state()
        if kill is not None:
            set_kill_switch(*kill)
        if trading is not None:
            set_trading_enabled(trading)
        after = switches_state()
    changes = []
    if trading is not None:
        was, now = _trading_text(before["trading_enabled"]), _trading_text(after["trading_enabled"])
        changes.append(f"trading {was} -> {now}")
    if kill is not None:
        changes.append(
            f"kill switch {_kill_text(before['kill_switch'])} -> {_kill_text(after['kill_switch'])}"
        )
    logger.warning("Switches changed by %s %s: %s", by, via, "; ".join(changes))
    return after


def reserved_setting(key: str) -> str | None:
    """Why the generic Setting admin must not add, edit or delete the row ``key`` (None: it
    may). Switch rows change on their own page, logged; the workers' rows are theirs."""
    if key in SWITCH_KEYS:
        return (
            f"{key} is changed on the Trading switches page (or with PUT /api/switches/), "
            "where every change is logged with who made it"
        )
    if key.startswith(WORKER_KEY_PREFIXES):
        return (
            f"{key} is written by the workers (heartbeats, feed health, candle history, the "
            "order ids' salt) and read by /ready and the workers: read-only here"
        )
    return None
