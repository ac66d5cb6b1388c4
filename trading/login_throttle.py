"""Wrong passwords are not free: after ``MAX_FAILURES`` for one user name from one client
address within ``WINDOW`` seconds, that pair is refused without its password being checked
until the window has passed. One counter for every way in that takes a password: the admin's
login page and the API's HTTP Basic (trading/api/auth.py).

Keyed on the pair, not the address alone: behind a proxy every client shares an address, and
one guesser must not lock every operator out (nor, keyed on the name alone, lock an operator
out from everywhere in an emergency).

Where the count lives: in Django's cache, which is per process (the default local-memory
cache), and, when ``REDIS_URL`` is set, in Redis too, one count for every web process (with
gunicorn's ``WEB_CONCURRENCY`` workers, a guesser gets one allowance, not one a worker). A
pair is refused when either count has reached the allowance. When Redis does not answer
(within ``REDIS_TIMEOUT``), the process's own count goes on alone, as without Redis, Redis is
left alone for ``REDIS_PAUSE`` seconds and that is said at WARNING once a pause: a login
never fails, nor waits long, because Redis is down."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache

__all__ = ["MAX_FAILURES", "WINDOW", "locked", "record_failure", "refusal"]

logger = logging.getLogger(__name__)

MAX_FAILURES = 10
WINDOW = 300  # seconds
SHARED_PREFIX = "algo:login-failures:"  # the Redis keys (tests use their own)
REDIS_TIMEOUT = 0.25  # seconds a connect or a reply may take before the local count decides
REDIS_PAUSE = 30.0  # seconds Redis is left alone after it did not answer

_lock = threading.Lock()
_client: Any = None  # redis.Redis for _client_url, made at first use
_client_url: str | None = None
_paused_until = 0.0


def _key(name: str, address: str) -> str:
    digest = hashlib.sha256(f"{name}\x00{address}".encode()).hexdigest()[:32]
    return f"login-failures:{digest}"


def locked(name: str, address: str) -> bool:
    """Whether this user name from this address has used up its wrong passwords."""
    key = _key(name, address)
    if cache.get(key, 0) >= MAX_FAILURES:
        return True
    shared = _on_redis(lambda client: client.get(SHARED_PREFIX + key))
    return shared is not None and int(shared) >= MAX_FAILURES


def record_failure(name: str, address: str) -> None:
    """One more wrong password for this user name from this address (the window starts at
    the first)."""
    key = _key(name, address)
    if not cache.add(key, 1, WINDOW):
        try:
            cache.incr(key)
        except ValueError:  # expired between the two calls
            cache.add(key, 1, WINDOW)
    _on_redis(lambda client: _count(client, SHARED_PREFIX + key))


def refusal() -> str:
    """What a refused login is told."""
    return (
        f"{MAX_FAILURES} wrong passwords for this user from this address: try again in "
        f"{WINDOW // 60} minutes"
    )


def _count(client: Any, name: str) -> int:
    """One more in the shared count; its window starts at the first, as in the cache."""
    pipe = client.pipeline(transaction=True)
    pipe.set(name, 0, ex=WINDOW, nx=True)  # INCR keeps the key's time to live
    pipe.incr(name)
    return pipe.execute()[-1]


def _on_redis(call: Callable[[Any], Any]) -> Any:
    """``call(client)`` on the shared Redis; None when REDIS_URL is not set, Redis is paused
    or it did not answer (then it is paused, and that is said)."""
    global _paused_until
    url = getattr(settings, "REDIS_URL", None)
    if not url or time.monotonic() < _paused_until:
        return None
    try:
        return call(_redis(url))
    except (redis.RedisError, OSError) as exc:
        _paused_until = time.monotonic() + REDIS_PAUSE
        logger.warning(
            "wrong-password counts: Redis did not answer (%s: %s); this process counts "
            "alone for the next %.0f s",
            type(exc).__name__,
            exc,
            REDIS_PAUSE,
        )
        return None


def _redis(url: str) -> Any:
    global _client, _client_url
    with _lock:
        if _client is None or _client_url != url:
            _client = redis.Redis.from_url(
                url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
            )
            _client_url = url
        return _client
