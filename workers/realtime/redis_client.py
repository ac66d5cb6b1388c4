"""The Redis client of the realtime layer: connections, failures, and the RESP batch writer.

Everything here is shared by the Redis tick store, event bus and key-value store:

* ``StoreUnavailable`` and ``Unavailable``: a Redis that cannot be reached is one exception
  the callers know (the feed hub marks feed health stale, readers treat data as unknown).
* ``client_for`` / ``make_connection``: a redis-py client from a URL, and a connection of its
  own configured like a client's pool (for the pub/sub reader and the batch writer, which
  speak raw RESP on it).
* ``ScriptBatchWriter``: the hand-written RESP writer. One Lua EVALSHA per batch, written as
  raw RESP on a dedicated connection, batches pipelined (bench/pubsub.py compares it with a
  redis-py pipeline on hiredis).

The pub/sub reader is in ``pubsub_reader.py``. redis is imported only where a Redis
implementation is built, so embedded mode never needs it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis

__all__ = [
    "ScriptBatchWriter",
    "StoreUnavailable",
    "Unavailable",
    "client_for",
    "glob_escape",
    "make_connection",
    "pack_command",
    "redis_errors",
]


class StoreUnavailable(ConnectionError):
    """Redis could not be reached (connection refused, reset or timed out).

    The caller carries on without the store: the feed hub marks feed health stale and keeps
    merging (the next publish reconnects), readers treat their data as unknown. Nothing is
    retried here, so a dead Redis costs one failed round trip per call, not a retry storm.
    """


def client_for(url_or_client: str | redis.Redis) -> redis.Redis:
    """A client for a ``redis://`` URL, or the given client itself."""
    import redis

    if isinstance(url_or_client, str):
        return redis.Redis.from_url(url_or_client)
    return url_or_client


def make_connection(client: redis.Redis, **overrides: Any) -> redis.connection.AbstractConnection:
    """A connection of its own, configured like ``client``'s pool (URL, auth, db, TLS)."""
    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, **overrides}
    # Maintenance (push) notifications need RESP3 handling that raw RESP use bypasses; the
    # pool's handler also belongs to pooled connections only.
    kwargs.pop("maint_notifications_pool_handler", None)
    kwargs["maint_notifications_config"] = None
    return pool.connection_class(**kwargs)


def redis_errors() -> tuple[type[BaseException], ...]:
    """What makes Redis unavailable for our purposes: no connection, a timeout, a replica
    that became read-only in a failover, or a full Redis (maxmemory with noeviction)."""
    import redis

    return (
        redis.ConnectionError,
        redis.TimeoutError,
        redis.exceptions.ReadOnlyError,
        redis.exceptions.OutOfMemoryError,
        OSError,
    )


def glob_escape(text: str) -> str:
    """``text`` with Redis glob characters escaped, to match it literally in SCAN MATCH."""
    out = []
    for char in text:
        if char in "*?[]\\":
            out.append("\\")
        out.append(char)
    return "".join(out)


class Unavailable:
    """Context manager turning Redis connection failures into StoreUnavailable."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if (
            exc is not None
            and isinstance(exc, redis_errors())
            and not isinstance(exc, StoreUnavailable)
        ):
            raise StoreUnavailable(f"Redis unavailable ({self.what}): {exc}") from exc


def pack_command(command: bytes, *args: bytes) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n$%d\r\n%b\r\n" % (len(args) + 1, len(command), command)]
    parts.extend(b"$%d\r\n%b\r\n" % (len(arg), arg) for arg in args)
    return b"".join(parts)


class ScriptBatchWriter:
    """Runs one Lua script over batches of keys and arguments: one EVALSHA per batch, written
    as raw RESP on a connection of its own, every batch of a ``run`` pipelined.

    The caller encodes each batch's KEYS and ARGV as RESP bulk strings (``$n\\r\\n...\\r\\n``)
    while it builds them, so nothing is formatted or copied twice; ``run`` takes the batches
    lazily, so batch n+1 is encoded while Redis runs batch n. The script is loaded on first
    use and again after NOSCRIPT (Redis restarted, SCRIPT FLUSH). After a connection failure
    the connection is dropped and the next ``run`` starts afresh. Not thread-safe: the caller
    serialises ``run`` calls.
    """

    def __init__(self, client: redis.Redis, script: str) -> None:
        self._client = client
        self._script = script
        self._conn: Any = None
        self._sha = b""

    def run(self, batches: Iterable[tuple[int, bytes]]) -> None:
        """Run the script once per ``(n, body)``: ``body`` is n keys then n arguments, each
        a RESP bulk string. Redis errors propagate (wrap the call in ``Unavailable``); a
        script error is raised after every reply was read, so the connection stays in step."""
        if self._conn is None:
            self._conn = make_connection(self._client)
        conn = self._conn
        try:
            if not self._sha:
                self._load_script()
            sent = []
            for batch in batches:
                conn.send_packed_command([self._evalsha_head(batch[0]) + batch[1]], False)
                sent.append(batch)
            failed = self._read_replies(len(sent))
            if failed:
                # NOSCRIPT (Redis restarted or SCRIPT FLUSH): load it and resend those.
                self._load_script()
                for index in failed:
                    count, body = sent[index]
                    conn.send_packed_command([self._evalsha_head(count) + body], False)
                if self._read_replies(len(failed)):
                    raise RuntimeError("batch script vanished again right after loading")
        except Exception as exc:
            if isinstance(exc, redis_errors()):
                conn.disconnect()  # unknown state: the next call starts afresh
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.disconnect()
            self._conn = None

    def _evalsha_head(self, count: int) -> bytes:
        digits = b"%d" % count
        return b"*%d\r\n$7\r\nEVALSHA\r\n$40\r\n%b\r\n$%d\r\n%b\r\n" % (
            2 * count + 3,
            self._sha,
            len(digits),
            digits,
        )

    def _read_replies(self, count: int) -> list[int]:
        """Read ``count`` EVALSHA replies (all of them, so the connection stays in step);
        the indexes that failed with NOSCRIPT. Any other error is raised after reading."""
        import redis

        failed: list[int] = []
        error: Exception | None = None
        for index in range(count):
            try:
                self._conn.read_response()
            except redis.exceptions.NoScriptError:
                failed.append(index)
            except redis.ResponseError as exc:
                error = error or exc
        if error is not None:
            raise error
        return failed

    def _load_script(self) -> None:
        conn = self._conn
        conn.send_command("SCRIPT", "LOAD", self._script, check_health=False)
        sha = conn.read_response()
        self._sha = sha if isinstance(sha, bytes) else str(sha).encode()
