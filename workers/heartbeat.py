"""Worker heartbeats and the database-backed key-value store of embedded mode.

A heartbeat is a small record each long-running component rewrites every few seconds with a TTL:
``hb:{name}`` = {"name", "pid", "host", "state", "at" (epoch s), "ttl", **fields}. A record that
expired is gone, so "present" already means "alive recently"; /ready also checks ``at`` against
``ttl`` (clock skew between machines, or a store that does not expire keys).

Where the records live: Redis in split mode (RedisKeyValueStore, workers/ticks.py); in embedded
mode the ``Setting`` table (DbKeyValueStore below), so a web process started next to
``run_trader`` reads the trader's heartbeats and feed health without any Redis.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction

if TYPE_CHECKING:
    from workers.ticks import KeyValueStore

logger = logging.getLogger(__name__)

HEARTBEAT_PREFIX = "hb:"
DEFAULT_TTL = 15.0
RESERVED_FIELDS = frozenset({"name", "pid", "host", "state", "at", "ttl"})


class Heartbeat:
    """Writes one component's heartbeat. ``beat()`` is cheap enough to call every few seconds."""

    def __init__(
        self,
        kv: KeyValueStore,
        name: str,
        *,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not name or ":" in name:
            raise ValueError(f"heartbeat name must be non-empty without ':', got {name!r}")
        if ttl <= 0:
            raise ValueError(f"heartbeat ttl must be positive, got {ttl!r}")
        self.kv = kv
        self.name = name
        self.ttl = ttl
        self.clock = clock
        self._pid = os.getpid()
        self._host = socket.gethostname()

    @property
    def key(self) -> str:
        return f"{HEARTBEAT_PREFIX}{self.name}"

    def beat(self, state: str, **fields: Any) -> dict[str, Any]:
        """Write the record (TTL ``ttl``) and return it. ``fields`` are JSON values such as
        connected, last_tick_at, counts, last_error; they may not reuse a reserved name."""
        clash = RESERVED_FIELDS.intersection(fields)
        if clash:
            raise ValueError(f"heartbeat fields may not override {sorted(clash)}")
        record: dict[str, Any] = {
            "name": self.name,
            "pid": self._pid,
            "host": self._host,
            "state": state,
            "at": self.clock(),
            "ttl": self.ttl,
            **fields,
        }
        self.kv.put(self.key, record, ttl=self.ttl)
        return record

    def clear(self) -> None:
        """Remove the record: a component that stopped cleanly is absent, not stale."""
        self.kv.delete(self.key)


def read_heartbeats(kv: KeyValueStore) -> dict[str, dict[str, Any]]:
    """Every heartbeat present (not expired), by component name."""
    return {
        name.removeprefix(HEARTBEAT_PREFIX): record
        for name, record in kv.get_prefix(HEARTBEAT_PREFIX).items()
    }


def heartbeat_age(record: dict[str, Any], now: float) -> float | None:
    """Seconds since the beat, or None when ``at`` is missing or not a number."""
    at = record.get("at")
    if isinstance(at, bool) or not isinstance(at, int | float):
        return None
    return now - at


def is_fresh(record: dict[str, Any], now: float) -> bool:
    """True when the beat is younger than its own ``ttl`` (DEFAULT_TTL when absent)."""
    age = heartbeat_age(record, now)
    ttl = record.get("ttl", DEFAULT_TTL)
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        ttl = DEFAULT_TTL
    return age is not None and age <= ttl


class DbKeyValueStore:
    """KeyValueStore over ``trading.models.Setting`` rows keyed ``kv:{name}`` (embedded mode).

    Row value: ``{"value": {...}, "expires_at": epoch}`` for put() (no "expires_at" without a
    TTL), ``{"items": [...]}`` for push_capped(). An expired value reads as absent; expired rows
    are deleted by an occasional sweep inside put() (at most once a minute), so readers never
    write.
    A name holds either a value or a list, like a Redis key holds one type: reading it the
    other way raises TypeError. Not for the tick hot path: one query per call.
    """

    ROW_PREFIX = "kv:"
    PURGE_INTERVAL = 60.0

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._next_purge = 0.0

    def _row_key(self, name: str) -> str:
        from trading.models import Setting

        key = f"{self.ROW_PREFIX}{name}"
        limit = Setting._meta.get_field("key").max_length
        if not name or (limit is not None and len(key) > limit):
            raise ValueError(f"kv name must be 1..{limit} characters with its prefix: {name!r}")
        return key

    def _expired(self, row: dict[str, Any], now: float) -> bool:
        expires_at = row.get("expires_at")
        return isinstance(expires_at, int | float) and expires_at <= now

    def put(self, name: str, value: dict, ttl: float | None = None) -> None:
        if ttl is not None and ttl <= 0:
            raise ValueError(f"ttl must be positive or None, got {ttl!r}")
        now = self.clock()
        # No "expires_at" key at all without a TTL: on Postgres a JSON null sorts below every
        # number, so {"expires_at": null} would match the purge's ``<= now`` and be deleted.
        row: dict[str, Any] = {"value": value}
        if ttl is not None:
            row["expires_at"] = now + ttl
        self._write(self._row_key(name), row)
        if now >= self._next_purge:
            self._next_purge = now + self.PURGE_INTERVAL
            self.purge_expired()

    def _write(self, key: str, row: dict[str, Any]) -> None:
        from trading.models import Setting

        # update first: the common case (a heartbeat rewriting its row) is one UPDATE. Two
        # writers creating the same row race on the unique key; the loser updates instead.
        if Setting.objects.filter(key=key).update(value=row):
            return
        try:
            with transaction.atomic():
                Setting.objects.create(key=key, value=row)
        except IntegrityError:
            Setting.objects.filter(key=key).update(value=row)

    def _read(self, name: str) -> dict[str, Any] | None:
        from trading.models import Setting

        row = Setting.get(self._row_key(name))
        return row if isinstance(row, dict) else None

    def get(self, name: str) -> dict | None:
        row = self._read(name)
        if row is None:
            return None
        if "items" in row:
            raise TypeError(f"kv {name!r} holds a list (push_capped), not a value")
        if self._expired(row, self.clock()):
            return None
        value = row.get("value")
        return value if isinstance(value, dict) else None

    def get_prefix(self, prefix: str) -> dict[str, dict]:
        from trading.models import Setting

        now = self.clock()
        start = f"{self.ROW_PREFIX}{prefix}"
        found: dict[str, dict] = {}
        rows = Setting.objects.filter(key__startswith=start).values_list("key", "value")
        for key, row in rows:
            # startswith is LIKE on SQLite, case-insensitive for ASCII: recheck exactly.
            if not key.startswith(start) or not isinstance(row, dict) or "items" in row:
                continue
            if self._expired(row, now) or not isinstance(row.get("value"), dict):
                continue
            found[key.removeprefix(self.ROW_PREFIX)] = row["value"]
        return found

    def delete(self, name: str) -> None:
        from trading.models import Setting

        Setting.objects.filter(key=self._row_key(name)).delete()

    def push_capped(self, name: str, value: dict, maxlen: int) -> None:
        from trading.models import Setting

        if maxlen < 1:
            raise ValueError(f"maxlen must be at least 1, got {maxlen!r}")
        key = self._row_key(name)
        for _attempt in range(2):
            try:
                with transaction.atomic():
                    # Row lock (Postgres) so two appenders never lose each other's item.
                    current = (
                        Setting.objects.select_for_update()
                        .filter(key=key)
                        .values_list("value", flat=True)
                        .first()
                    )
                    if current is None:
                        Setting.objects.create(key=key, value={"items": [value]})
                        return
                    if not isinstance(current, dict) or "items" not in current:
                        raise TypeError(f"kv {name!r} holds a value (put), not a list")
                    items = [*current["items"], value][-maxlen:]
                    Setting.objects.filter(key=key).update(value={"items": items})
                    return
            except IntegrityError:
                continue  # another appender created the row first: append to theirs
        raise RuntimeError(f"kv {name!r}: could not append after a create race")

    def replace_list(self, name: str, values: Sequence[dict], maxlen: int) -> None:
        from trading.models import Setting

        if maxlen < 1:
            raise ValueError(f"maxlen must be at least 1, got {maxlen!r}")
        Setting.objects.update_or_create(
            key=self._row_key(name), defaults={"value": {"items": list(values[-maxlen:])}}
        )

    def get_list(self, name: str) -> list[dict]:
        row = self._read(name)
        if row is None:
            return []
        if "items" not in row:
            raise TypeError(f"kv {name!r} holds a value (put), not a list")
        items = row["items"]
        return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []

    def close(self) -> None:
        """Nothing to release: Django owns the connections (same shape as the other stores)."""

    def purge_expired(self) -> int:
        """Delete expired value rows; returns how many. Each delete is conditional on the row
        still being expired, so a writer renewing it concurrently is never undone."""
        from trading.models import Setting

        now = self.clock()
        deleted, _ = Setting.objects.filter(
            key__startswith=self.ROW_PREFIX, value__expires_at__lte=now
        ).delete()
        return deleted


def kv_from_settings(redis_client: Any = None) -> KeyValueStore:
    """RedisKeyValueStore on settings.REDIS_URL when set (split mode), else DbKeyValueStore.

    ``redis_client``: an already configured client to use instead of one built from the URL
    (/ready passes one with short socket timeouts).
    """
    from django.conf import settings

    if settings.REDIS_URL:
        from workers.ticks import RedisKeyValueStore

        return RedisKeyValueStore(redis_client if redis_client is not None else settings.REDIS_URL)
    return DbKeyValueStore()
