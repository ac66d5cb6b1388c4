"""Client-side rate limiting per Dhan API category, so the broker never has to say DH-904.

Dhan limits requests per category (orders, data, quotes, option chain, non-trading) over
several windows at once: orders are 10/s, 250/min, 1000/h and 7000/day (PROTOCOL.md 1.3).
Limits come from configuration (config/ratelimits.yml via :func:`load_limits`), never from
this module.

Two implementations of one interface, ``acquire(category, *, block=True, timeout=None)``:

* :class:`InProcessRateLimiter` - thread-safe, for embedded mode (one process, no Redis);
* :class:`RedisRateLimiter` - one budget shared by every process of a split deployment, the
  check-and-record done atomically by a single Lua script.

``acquire`` returns once the call may be sent (the slot is then used). When a limit is full:

* a cap whose window is a day (>= ``fail_fast_window``, 86400 s) raises
  :class:`~trading.dhan.errors.DailyCapExceeded` at once: sleeping until tomorrow is never
  what a trading loop wants;
* shorter windows sleep until a slot frees (re-checking, since other threads or processes
  compete for it), or raise :class:`~trading.dhan.errors.RateLimited` with ``retry_after`` when
  ``block=False`` or when the wait would overrun ``timeout``.

Algorithm: an exact sliding-window log (one timestamp per admitted request and limit). Chosen
over GCRA / token buckets because Dhan does not say how it counts: a GCRA with burst N and rate
N/W admits almost 2N requests in some W-long interval (a full burst, then a refill), which a
broker counting per sliding or fixed window would punish with DH-904. A sliding log never
admits more than N in ANY interval of length W, so it satisfies every way the broker might
count, fixed windows at any alignment included. Its memory is bounded by the caps themselves
(7000 + 1000 + 250 + 10 timestamps for orders; the data API's 100000/day is the largest, a few
MB), and entries older than the window are dropped on every call.
"""

from __future__ import annotations

import abc
import logging
import math
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Protocol

from pydantic import PlainValidator, WrapValidator

from config_schema.reading import read_yaml_file
from config_schema.schema import Rule, adapter, fail, items, note, report, validate
from config_schema.text import shown
from trading.dhan.errors import DailyCapExceeded, RateLimited
from trading.rules.market import IST

__all__ = [
    "DAY",
    "DEFAULT_LIMITS_FILE",
    "InProcessRateLimiter",
    "Limit",
    "Limits",
    "RateLimiter",
    "RedisRateLimiter",
    "limiter_from_settings",
    "load_limits",
    "parse_limits",
]

log = logging.getLogger(__name__)

DAY = 86400.0
DEFAULT_LIMITS_FILE = Path(__file__).resolve().parents[2] / "config" / "ratelimits.yml"

# Category names end up inside Redis keys and log lines: keep them plain.
_CATEGORY_RE = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``count`` requests in any ``window`` seconds."""

    count: int
    window: float

    def describe(self) -> str:
        return f"{self.count} requests per {self.window:g} s"


Limits = dict[str, tuple[Limit, ...]]


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _limit(item: Any) -> Limit:
    """One ``[count, window_seconds]`` pair (also ``{count: .., window: ..}`` or a Limit)."""
    if isinstance(item, Mapping):
        unknown = set(item) - {"count", "window"}
        if unknown:
            report([note((), f"unknown keys {sorted(map(str, unknown))}")], item)
        count, window = item.get("count"), item.get("window")
    elif isinstance(item, Limit):
        count, window = item.count, item.window
    elif isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 2:
        count, window = item
    else:
        fail("[count, window_seconds] or {count: .., window: ..}")
    problems = []
    if not isinstance(count, int) or isinstance(count, bool) or count <= 0:
        problems.append(note((), f"count must be a positive integer, got {shown(count)}"))
    if not _is_number(window) or not 0 < window < math.inf:
        problems.append(note((), f"window must be a positive number, got {shown(window)}"))
    if problems:
        report(problems, item)
    return Limit(count=count, window=float(window))


def _limits(value: Any, handler: Callable[[Any], Any]) -> Limits:
    """The whole mapping: plain category names, each a non-empty list of limits whose windows
    differ. Problems at the top level are notes without a key path (``ratelimits.yml:
    category names are lowercase identifiers, got 'Orders!'``)."""
    if not isinstance(value, Mapping) or not value:
        expected = "expected a mapping of category -> list of [count, window]"
        report([note((), f"{expected}, got {shown(value)}")], value)
    bad = [
        note((), f"category names are lowercase identifiers, got {shown(category)}")
        for category in value
        if not isinstance(category, str) or not _CATEGORY_RE.fullmatch(category)
    ]
    if bad:
        report(bad, value)
    limits: Limits = handler({category: items for category, items in value.items()})
    repeats = [
        note((category, i), f"window {limit.window:g} s repeats {category}[{j}]")
        for category, parsed in limits.items()
        for i, limit in enumerate(parsed)
        for j, earlier in enumerate(parsed[:i])
        if earlier.window == limit.window
    ]
    if repeats:
        report(repeats, value)
    return limits


_PAIRS = items(
    Rule("[count, window_seconds]", Annotated[Any, PlainValidator(_limit)]),
    "a non-empty list of [count, window]",
    min_items=1,
)
_SCHEMA = adapter(Rule("limits", Annotated[dict[str, _PAIRS.type], WrapValidator(_limits)]))


def parse_limits(data: object, source: str = "ratelimits.yml") -> Limits:
    """Validate a ``{category: [(count, window_seconds), ...]}`` mapping into :data:`Limits`.

    Each pair may also be written ``{count: 10, window: 1}``. Every problem raises together
    in one :class:`~config_schema.ConfigError`, each with its key path, e.g.
    ``ratelimits.yml: orders[1]: window must be a positive number, got 'x'``.
    """
    return validate(_SCHEMA, data, source)


def load_limits(path: str | os.PathLike[str] = DEFAULT_LIMITS_FILE) -> Limits:
    """Read and validate a rate-limit YAML file (format: config/ratelimits.yml)."""
    path = Path(path)
    return parse_limits(read_yaml_file(path), source=path.name)


class RateLimiter(Protocol):
    """What the REST client needs: wait for (or be refused) a slot in a category."""

    def acquire(self, category: str, *, block: bool = True, timeout: float | None = None) -> None:
        """Return when a request in ``category`` may be sent; see the module docstring."""
        ...


# One denied limit: (the limit, seconds until it has a free slot).
_Denial = tuple[Limit, float]


class _SlidingWindowLimiter(abc.ABC):
    """The acquire loop shared by both back ends; subclasses implement ``_try_acquire``.

    ``clock`` (monotonic seconds) times ``timeout``; ``sleep(seconds)`` waits and may return
    True to mean "interrupted" (so ``sleep=stop_event.wait`` makes every wait end at shutdown,
    raising RateLimited instead of sending); ``wall_clock`` (epoch seconds) only dates
    ``DailyCapExceeded.resets_at``. All three are injectable so tests need no real time.
    """

    def __init__(
        self,
        limits: Mapping[str, Iterable[Any]],
        *,
        fail_fast_window: float = DAY,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.limits: Limits = parse_limits(
            {k: list(v) for k, v in limits.items()}, source="rate limits"
        )
        self.fail_fast_window = fail_fast_window
        self._clock = clock
        self._sleep = sleep
        self._wall_clock = wall_clock

    @abc.abstractmethod
    def _try_acquire(self, category: str, limits: tuple[Limit, ...]) -> list[_Denial]:
        """Atomically: if every limit has room, record one request and return []."""

    def acquire(self, category: str, *, block: bool = True, timeout: float | None = None) -> None:
        """Take one slot in ``category`` or raise; see the module docstring for the contract.

        Raises ``ValueError`` for a category that is not configured (a bug, not a rate event).
        """
        try:
            limits = self.limits[category]
        except KeyError:
            raise ValueError(
                f"unknown rate-limit category {category!r}; configured: {sorted(self.limits)}"
            ) from None
        deadline = None if timeout is None else self._clock() + timeout
        while True:
            denials = self._try_acquire(category, limits)
            if not denials:
                return
            daily = [d for d in denials if d[0].window >= self.fail_fast_window]
            if daily:
                limit, wait = max(daily, key=lambda d: d[1])
                raise self._daily_cap_exceeded(category, limit, wait)
            limit, wait = max(denials, key=lambda d: d[1])
            if not block:
                raise self._rate_limited(category, limit, wait, "not waiting (block=False)")
            if deadline is not None and self._clock() + wait > deadline:
                # Waiting out the timeout only to fail then would just delay the failure.
                raise self._rate_limited(category, limit, wait, f"exceeds timeout {timeout:g} s")
            if self._sleep(wait) is True:
                raise self._rate_limited(category, limit, wait, "wait interrupted")
            # Loop: another thread/process may have taken the slot while we slept.

    def _rate_limited(self, category: str, limit: Limit, wait: float, why: str) -> RateLimited:
        return RateLimited(
            f"{category}: {limit.describe()} in use; next slot in {wait:.3f} s; {why}",
            retry_after=wait,
        )

    def _daily_cap_exceeded(self, category: str, limit: Limit, wait: float) -> DailyCapExceeded:
        resets_at = datetime.fromtimestamp(self._wall_clock() + wait, tz=IST)
        return DailyCapExceeded(
            f"{category}: daily cap of {limit.describe()} reached; next slot frees at "
            f"{resets_at.isoformat(timespec='seconds')} (in {wait / 3600:.1f} h); not waiting",
            category=category,
            cap=limit.count,
            window=limit.window,
            resets_at=resets_at,
            retry_after=wait,
        )


class InProcessRateLimiter(_SlidingWindowLimiter):
    """Sliding-window-log limiter for one process; safe to share between threads.

    One lock guards check-and-record (never held while sleeping). Waiters are not served in
    FIFO order: after a sleep every waiter re-checks, and whoever gets the lock first wins.
    """

    def __init__(
        self,
        limits: Mapping[str, Iterable[Any]],
        *,
        fail_fast_window: float = DAY,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            limits,
            fail_fast_window=fail_fast_window,
            clock=clock,
            sleep=sleep,
            wall_clock=wall_clock,
        )
        self._lock = threading.Lock()
        # One deque of admission times per (category, limit), oldest first.
        self._logs: dict[str, tuple[deque[float], ...]] = {
            category: tuple(deque() for _ in limits) for category, limits in self.limits.items()
        }

    def _try_acquire(self, category: str, limits: tuple[Limit, ...]) -> list[_Denial]:
        logs = self._logs[category]
        with self._lock:
            now = self._clock()
            denials: list[_Denial] = []
            for limit, entries in zip(limits, logs, strict=True):
                cutoff = now - limit.window
                while entries and entries[0] <= cutoff:
                    entries.popleft()
                if len(entries) >= limit.count:
                    # The oldest entry whose expiry brings the count below the cap.
                    blocker = entries[len(entries) - limit.count]
                    denials.append((limit, blocker + limit.window - now))
            if not denials:
                for entries in logs:
                    entries.append(now)
            return denials


# KEYS: one sorted set per limit of the category, members = admitted requests, scores = Redis
# server time in microseconds. ARGV[1]: a unique member id; ARGV[2k], ARGV[2k+1]: count and
# window (microseconds) of KEYS[k]. Returns {} when admitted, else a flat list
# {k1, wait_us1, k2, wait_us2, ...} of the denied limits.
#
# Why one script: a check (ZCARD) and a record (ZADD) sent separately race between processes,
# and both could take the last slot. A script runs atomically on the server. Time comes from
# the server's TIME (not each client's clock) so processes on different hosts agree on the
# window; Redis >= 5 replicates a script's effects, so calling TIME in it is allowed.
# Every write refreshes the key's TTL to its window (+1 s): once a category goes idle its keys
# expire, and ZREMRANGEBYSCORE trims older entries on every call, so nothing grows unbounded.
_ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local denied = {}
for k = 1, #KEYS do
  local count = tonumber(ARGV[2 * k])
  local window = tonumber(ARGV[2 * k + 1])
  redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', now - window)
  local n = redis.call('ZCARD', KEYS[k])
  if n >= count then
    local blocker = redis.call('ZRANGE', KEYS[k], n - count, n - count, 'WITHSCORES')
    denied[#denied + 1] = k
    denied[#denied + 1] = math.ceil(tonumber(blocker[2]) + window - now)
  end
end
if #denied > 0 then
  return denied
end
for k = 1, #KEYS do
  local window = tonumber(ARGV[2 * k + 1])
  redis.call('ZADD', KEYS[k], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[k], math.ceil(window / 1000) + 1000)
end
return denied
"""


class RedisRateLimiter(_SlidingWindowLimiter):
    """Sliding-window-log limiter whose budget is shared by every process using one Redis.

    Keys are ``{prefix}:{{category}}:{window}``, e.g. ``ratelimit:{orders}:60``: the braces are
    a Redis Cluster hash tag, so all keys of a category live in one slot and the multi-key
    script also works on a cluster.

    If Redis is unreachable, acquire falls back to an in-process limiter with the same limits
    and logs a warning: the broker's own limit (DH-904, a Retryable) is the backstop, whereas
    refusing every order, exits included, because a cache is down would not be. Redis holds
    nothing here that cannot be lost (ARCHITECTURE: "Anything in Redis can be lost").
    """

    def __init__(
        self,
        client: Any,
        limits: Mapping[str, Iterable[Any]],
        *,
        key_prefix: str = "ratelimit",
        fail_fast_window: float = DAY,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        import redis.exceptions

        super().__init__(
            limits,
            fail_fast_window=fail_fast_window,
            clock=clock,
            sleep=sleep,
            wall_clock=wall_clock,
        )
        self._client = client
        self._redis_errors = redis.exceptions.RedisError
        # register_script sends EVALSHA and reloads the script itself after a NOSCRIPT (Redis
        # restart, SCRIPT FLUSH).
        self._script = client.register_script(_ACQUIRE_LUA)
        self._keys = {
            category: [f"{key_prefix}:{{{category}}}:{limit.window:g}" for limit in limits]
            for category, limits in self.limits.items()
        }
        self._args = {
            category: [
                value
                for limit in limits
                for value in (limit.count, round(limit.window * 1_000_000))
            ]
            for category, limits in self.limits.items()
        }
        self._fallback = InProcessRateLimiter(self.limits, clock=clock)
        self._warned = False

    def keys(self, category: str) -> list[str]:
        """The Redis keys of ``category``, one per limit, in configuration order."""
        return list(self._keys[category])

    def _try_acquire(self, category: str, limits: tuple[Limit, ...]) -> list[_Denial]:
        # A random member: two admissions in the same microsecond from two processes must not
        # collapse into one sorted-set entry (ZADD of an existing member only moves its score).
        member = os.urandom(8).hex()
        try:
            reply = self._script(keys=self._keys[category], args=[member, *self._args[category]])
        except self._redis_errors as exc:
            if not self._warned:
                log.warning(
                    "rate limiter: Redis unavailable (%s); limiting per process until it is back",
                    exc,
                )
                self._warned = True
            return self._fallback._try_acquire(category, limits)
        if self._warned:
            log.warning("rate limiter: Redis is back; limits are shared again")
            self._warned = False
        return [
            (limits[int(reply[i]) - 1], max(float(reply[i + 1]), 0.0) / 1_000_000)
            for i in range(0, len(reply), 2)
        ]


def limiter_from_settings(path: str | os.PathLike[str] | None = None) -> RateLimiter:
    """The limiter for this deployment: Redis-backed when ``settings.REDIS_URL`` is set.

    Limits come from ``path``, else ``settings.DHAN_RATELIMITS_FILE`` when defined, else
    config/ratelimits.yml. Django is imported here only, so the rest of this module works in
    pure tests and tools without Django settings.
    """
    from django.conf import settings

    limits = load_limits(path or getattr(settings, "DHAN_RATELIMITS_FILE", DEFAULT_LIMITS_FILE))
    redis_url = getattr(settings, "REDIS_URL", None)
    if redis_url:
        import redis

        return RedisRateLimiter(redis.Redis.from_url(redis_url), limits)
    return InProcessRateLimiter(limits)
