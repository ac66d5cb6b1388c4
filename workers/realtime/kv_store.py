"""The key-value stores: small JSON values with TTL (feed health, heartbeats, PnL snapshots)
and capped lists (recent candles). Names are in ``keys``.

* ``MemoryKeyValueStore``: one process (embedded mode, tests); TTL expires on read.
* ``RedisKeyValueStore``: split mode, key ``{prefix}kv:{name}``.
* ``DbKeyValueStore``: embedded mode's store for what another process must read (heartbeats
  and feed health for /ready in a web process started next to ``run_trader``), in the
  ``Setting`` table; one query per call, never on the tick hot path.

``kv_from_settings`` picks Redis when ``REDIS_URL`` is set, else the database.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from django.db import IntegrityError, transaction

from workers.realtime.json_values import json_text
from workers.realtime.keys import DEFAULT_PREFIX, KV_NAMESPACE, SETTING_ROW_PREFIX
from workers.realtime.redis_client import Unavailable, client_for, glob_escape

if TYPE_CHECKING:
    import redis

__all__ = [
    "DbKeyValueStore",
    "KeyValueStore",
    "MemoryKeyValueStore",
    "RedisKeyValueStore",
    "kv_from_settings",
]


class KeyValueStore(Protocol):
    def put(self, name: str, value: dict, ttl: float | None = None) -> None: ...

    def put_many(self, values: Mapping[str, dict]) -> None:
        """Every ``name: value`` (no TTL), in one round trip where the store has round trips."""
        ...

    def get(self, name: str) -> dict | None: ...

    def get_prefix(self, prefix: str) -> dict[str, dict]: ...

    def delete(self, name: str) -> None: ...

    def push_capped(self, name: str, value: dict, maxlen: int) -> None: ...

    def replace_list(self, name: str, values: Sequence[dict], maxlen: int) -> None:
        """Make the list exactly the last ``maxlen`` of ``values``, in one round trip."""
        ...

    def get_list(self, name: str) -> list[dict]: ...


def _check_ttl(ttl: float | None) -> None:
    if ttl is not None and not ttl > 0:
        raise ValueError(f"ttl must be a positive number of seconds or None, got {ttl!r}")


class MemoryKeyValueStore:
    """In-process KeyValueStore. Values are stored as JSON text (copies, and the same
    serialisability rules as Redis); TTL expires on read by ``clock`` (monotonic seconds)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._values: dict[str, tuple[str, float | None]] = {}
        self._lists: dict[str, deque[str]] = {}

    def put(self, name: str, value: dict, ttl: float | None = None) -> None:
        _check_ttl(ttl)
        text = json_text(value, f"value for {name!r}")
        expires = None if ttl is None else self._clock() + ttl
        with self._lock:
            self._values[name] = (text, expires)

    def put_many(self, values: Mapping[str, dict]) -> None:
        for name, value in values.items():
            self.put(name, value)

    def get(self, name: str) -> dict | None:
        with self._lock:
            entry = self._values.get(name)
            if entry is None:
                return None
            if entry[1] is not None and self._clock() >= entry[1]:
                del self._values[name]
                return None
        return json.loads(entry[0])

    def get_prefix(self, prefix: str) -> dict[str, dict]:
        now = self._clock()
        with self._lock:
            live = {}
            for name, (text, expires) in list(self._values.items()):
                if expires is not None and now >= expires:
                    del self._values[name]
                elif name.startswith(prefix):
                    live[name] = text
        return {name: json.loads(text) for name, text in live.items()}

    def delete(self, name: str) -> None:
        with self._lock:
            self._values.pop(name, None)
            self._lists.pop(name, None)

    def push_capped(self, name: str, value: dict, maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen must be at least 1, got {maxlen}")
        text = json_text(value, f"list item for {name!r}")
        with self._lock:
            items = self._lists.get(name)
            if items is None or items.maxlen != maxlen:
                items = self._lists[name] = deque(items or (), maxlen=maxlen)
            items.append(text)

    def replace_list(self, name: str, values: Sequence[dict], maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen must be at least 1, got {maxlen}")
        texts = [json_text(value, f"list item for {name!r}") for value in values]
        with self._lock:
            self._lists[name] = deque(texts, maxlen=maxlen)

    def get_list(self, name: str) -> list[dict]:
        with self._lock:
            texts = list(self._lists.get(name, ()))
        return [json.loads(text) for text in texts]

    def close(self) -> None:
        return None


class RedisKeyValueStore:
    """KeyValueStore over Redis: key ``{prefix}kv:{name}``, JSON text, TTL as PX."""

    def __init__(self, url_or_client: str | redis.Redis, *, prefix: str = DEFAULT_PREFIX) -> None:
        self._client = client_for(url_or_client)
        self.prefix = prefix
        self._key_prefix = prefix + KV_NAMESPACE

    def put(self, name: str, value: dict, ttl: float | None = None) -> None:
        _check_ttl(ttl)
        text = json_text(value, f"value for {name!r}")
        px = None if ttl is None else max(1, round(ttl * 1000))
        with Unavailable("writing a value", self._client):
            self._client.set(self._key_prefix + name, text, px=px)

    def put_many(self, values: Mapping[str, dict]) -> None:
        texts = {
            self._key_prefix + name: json_text(value, f"value for {name!r}")
            for name, value in values.items()
        }
        if not texts:
            return
        with Unavailable("writing values", self._client):
            self._client.mset(texts)

    def get(self, name: str) -> dict | None:
        with Unavailable("reading a value", self._client):
            data = self._client.get(self._key_prefix + name)
        return None if data is None else json.loads(data)

    def get_prefix(self, prefix: str) -> dict[str, dict]:
        match = glob_escape(self._key_prefix + prefix) + "*"
        cut = len(self._key_prefix)
        out: dict[str, dict] = {}
        with Unavailable("reading values", self._client):
            names = list(dict.fromkeys(self._client.scan_iter(match=match, count=1000)))
            for start in range(0, len(names), 1000):
                chunk = names[start : start + 1000]
                # A list under the same name reads as nil in MGET; an expired key too.
                for name, data in zip(chunk, self._client.mget(chunk), strict=True):
                    if data is not None:
                        out[name[cut:].decode()] = json.loads(data)
        return out

    def delete(self, name: str) -> None:
        with Unavailable("deleting a value", self._client):
            self._client.delete(self._key_prefix + name)

    def push_capped(self, name: str, value: dict, maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen must be at least 1, got {maxlen}")
        text = json_text(value, f"list item for {name!r}")
        key = self._key_prefix + name
        with Unavailable("appending to a list", self._client):
            pipe = self._client.pipeline(transaction=True)
            pipe.rpush(key, text)
            pipe.ltrim(key, -maxlen, -1)
            pipe.execute()

    def replace_list(self, name: str, values: Sequence[dict], maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen must be at least 1, got {maxlen}")
        texts = [json_text(value, f"list item for {name!r}") for value in values[-maxlen:]]
        key = self._key_prefix + name
        with Unavailable("replacing a list", self._client):
            pipe = self._client.pipeline(transaction=True)  # readers never see it half-built
            pipe.delete(key)
            if texts:
                pipe.rpush(key, *texts)
            pipe.execute()

    def get_list(self, name: str) -> list[dict]:
        with Unavailable("reading a list", self._client):
            items = self._client.lrange(self._key_prefix + name, 0, -1)
        return [json.loads(item) for item in items]

    def close(self) -> None:
        self._client.close()


class DbKeyValueStore:
    """KeyValueStore over ``trading.models.Setting`` rows keyed ``kv:{name}`` (embedded mode).

    Row value: ``{"value": {...}, "expires_at": epoch}`` for put() (no "expires_at" without a
    TTL), ``{"items": [...]}`` for push_capped(). An expired value reads as absent; expired rows
    are deleted by an occasional sweep inside put() (at most once a minute), so readers never
    write.
    A name holds either a value or a list, like a Redis key holds one type: reading it the
    other way raises TypeError. Not for the tick hot path: one query per call.
    """

    ROW_PREFIX = SETTING_ROW_PREFIX
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
        json_text(value, f"value for {name!r}")  # NaN, sets, ...: refused as by every store
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

    def put_many(self, values: Mapping[str, dict]) -> None:
        with transaction.atomic():  # one commit: on SQLite one file sync, not one per value
            for name, value in values.items():
                self.put(name, value)

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
        return RedisKeyValueStore(redis_client if redis_client is not None else settings.REDIS_URL)
    return DbKeyValueStore()
