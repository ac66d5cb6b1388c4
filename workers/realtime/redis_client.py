"""The Redis client of the realtime layer: connections, failures, and the RESP batch writer.

Everything here is shared by the Redis tick store, event bus and key-value store:

* ``StoreUnavailable`` and ``Unavailable``: a Redis that cannot be reached is one exception
  the callers know (the feed hub marks feed health stale, readers treat data as unknown).
* ``StoreRefused``: a Redis that answers but refuses this process (wrong or missing password,
  a DB index it does not have). No retry heals that: the process stops, named (``refusal``,
  ``on_refused``, ``check_redis``).
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

import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from config_schema.text import masked_url as masked_url_of

if TYPE_CHECKING:
    import redis

__all__ = [
    "Outage",
    "ScriptBatchWriter",
    "StoreRefused",
    "StoreUnavailable",
    "Unavailable",
    "check_redis",
    "client_for",
    "client_url",
    "glob_escape",
    "make_connection",
    "masked_url",
    "on_refused",
    "pack_command",
    "redis_errors",
    "refusal",
    "refused",
    "refused_error",
    "report_refused",
    "reset_refused",
]

log = logging.getLogger(__name__)


class StoreUnavailable(ConnectionError):
    """Redis could not be reached (connection refused, reset or timed out).

    The caller carries on without the store: the feed hub marks feed health stale and keeps
    merging (the next publish reconnects), readers treat their data as unknown. Nothing is
    retried here, so a dead Redis costs one failed round trip per call, not a retry storm.
    """


class StoreRefused(Exception):
    """Redis answered and refused this process: a wrong or missing password (WRONGPASS,
    NOAUTH, "HELLO must be called with the client already authenticated"), or a DB index the
    server does not have.

    Not a ``StoreUnavailable`` (so no handler of an outage retries it): the caller stops.
    The message is one line naming REDIS_URL with its password masked. The first refusal in a
    process is also reported to every ``on_refused`` listener, so a process whose component
    swallowed the exception still stops (run_trader's supervisor, a split worker's stop event).
    """


_refused_lock = threading.Lock()
_refused: StoreRefused | None = None
_listeners: list[Callable[[StoreRefused], object]] = []


def masked_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``: safe to print."""
    return masked_url_of(url, "<REDIS_URL not shown>")


def client_url(client: Any) -> str:
    """The URL a client (or connection) talks to, rebuilt from its settings, password masked."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None)
    if kwargs is None:
        kwargs = getattr(client, "__dict__", {})
    if kwargs.get("path"):
        return f"unix://{kwargs['path']}"
    auth = ":***@" if kwargs.get("password") else ""
    if kwargs.get("username"):
        auth = f"{kwargs['username']}{auth or '@'}"
    where = f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
    return f"redis://{auth}{where}"


def refusal(exc: BaseException) -> str | None:
    """Why Redis refused us, when ``exc`` is a refusal no retry heals; None otherwise."""
    import redis

    text = str(exc).strip()
    upper = text.upper()
    if not isinstance(exc, redis.RedisError):
        return None
    if upper.startswith("NOAUTH") or "ALREADY AUTHENTICATED" in upper:
        return "Redis requires a password and none was accepted: set it in REDIS_URL"
    if upper.startswith("WRONGPASS") or isinstance(
        exc, redis.AuthenticationError | redis.AuthenticationWrongNumberOfArgsError
    ):
        return f"Redis refused the credentials ({text}): check the password in REDIS_URL"
    if "DB INDEX IS OUT OF RANGE" in upper or upper.startswith("INVALID DATABASE"):
        return f"Redis has no such database ({text}): check the DB index in REDIS_URL"
    return None


def refused_error(exc: BaseException, url: str) -> StoreRefused | None:
    """``exc`` as a StoreRefused naming REDIS_URL (masked) when it is a refusal, else None."""
    why = refusal(exc)
    if why is None:
        return None
    return StoreRefused(f"REDIS_URL {masked_url(url)}: {why}")


def report_refused(error: StoreRefused) -> StoreRefused:
    """Record the process's first refusal and tell the listeners (once); returns ``error``."""
    global _refused
    with _refused_lock:
        if _refused is not None:
            return error
        _refused = error
        listeners = list(_listeners)
    for listener in listeners:
        try:
            listener(error)
        except Exception:
            log.exception("a Redis refusal listener failed")
    return error


def refused() -> StoreRefused | None:
    """The first refusal this process met, or None."""
    return _refused


def on_refused(listener: Callable[[StoreRefused], object]) -> Callable[[], None]:
    """Call ``listener(error)`` at the process's first refusal (at once if there was one);
    returns a function that removes the listener."""
    with _refused_lock:
        _listeners.append(listener)
        already = _refused
    if already is not None:
        listener(already)

    def remove() -> None:
        with _refused_lock:
            if listener in _listeners:
                _listeners.remove(listener)

    return remove


def reset_refused() -> None:
    """Forget the recorded refusal (tests)."""
    global _refused
    with _refused_lock:
        _refused = None


def check_redis(url: str) -> str | None:
    """One PING at start. Raises ``StoreRefused`` (one line naming REDIS_URL, masked) when
    Redis refuses this process; returns the reason when it cannot be reached now (the caller
    starts anyway: its components wait for Redis), None when it answered."""
    client = client_for(url)
    try:
        client.ping()
    except Exception as exc:
        error = refused_error(exc, url)
        if error is not None:
            raise error from None
        if isinstance(exc, redis_errors()):
            return f"{type(exc).__name__}: {exc}"
        raise
    finally:
        client.close()
    return None


class Outage:
    """One component's view of a Redis outage, logged twice: once on entry (the first failure,
    one line, no traceback) and once on recovery, with how long it lasted and how many calls
    failed meanwhile. Thread-safe; ``failed`` and ``recovered`` are cheap when nothing changes.
    """

    def __init__(
        self, logger: logging.Logger, who: str, *, clock: Callable[[], float] | None = None
    ) -> None:
        import time

        self._log = logger
        self._who = who
        self._clock = clock or time.monotonic
        self._lock = threading.Lock()
        self.failures = 0
        self._since = 0.0

    @property
    def down(self) -> bool:
        return self.failures > 0

    def failed(self, exc: BaseException | str) -> None:
        with self._lock:
            self.failures += 1
            first = self.failures == 1
            if first:
                self._since = self._clock()
        if first:
            self._log.warning("%s: %s; retrying until Redis is back", self._who, exc)

    def recovered(self) -> None:
        if not self.failures:
            return
        with self._lock:
            failures, self.failures = self.failures, 0
            lasted = self._clock() - self._since
        if failures:
            self._log.warning(
                "%s: Redis is back after %.1f s (%d failed call(s) meanwhile)",
                self._who,
                lasted,
                failures,
            )


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

    def __init__(self, what: str, client: Any = None) -> None:
        self.what = what
        self.client = client  # names the URL (masked) when Redis refuses us

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if exc is None or isinstance(exc, StoreUnavailable | StoreRefused):
            return
        if refusal(exc) is not None:
            # Checked before redis_errors(): redis-py's AuthenticationError is a ConnectionError.
            error = refused_error(exc, client_url(self.client) if self.client else "")
            assert error is not None
            raise report_refused(error) from None
        if isinstance(exc, redis_errors()):
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
