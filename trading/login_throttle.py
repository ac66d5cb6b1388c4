"""Wrong passwords are not free: after ``MAX_FAILURES`` for one user name from one client
address within ``WINDOW`` seconds, that pair is refused without its password being checked
until the window has passed. One counter for every way in that takes a password: the admin's
login page and the API's HTTP Basic (trading/api/auth.py).

Keyed on the pair, not the address alone: behind a proxy every client shares an address, and
one guesser must not lock every operator out (nor, keyed on the name alone, lock an operator
out from everywhere in an emergency). The count lives in Django's cache: per process with the
default local-memory cache, so with N web workers a guesser gets at most N times the
allowance (a shared cache, Redis, makes it one allowance)."""

from __future__ import annotations

import hashlib

from django.core.cache import cache

__all__ = ["MAX_FAILURES", "WINDOW", "locked", "record_failure", "refusal"]

MAX_FAILURES = 10
WINDOW = 300  # seconds


def _key(name: str, address: str) -> str:
    digest = hashlib.sha256(f"{name}\x00{address}".encode()).hexdigest()[:32]
    return f"login-failures:{digest}"


def locked(name: str, address: str) -> bool:
    """Whether this user name from this address has used up its wrong passwords."""
    return cache.get(_key(name, address), 0) >= MAX_FAILURES


def record_failure(name: str, address: str) -> None:
    """One more wrong password for this user name from this address (the window starts at
    the first)."""
    key = _key(name, address)
    if not cache.add(key, 1, WINDOW):
        try:
            cache.incr(key)
        except ValueError:  # expired between the two calls
            cache.add(key, 1, WINDOW)


def refusal() -> str:
    """What a refused login is told."""
    return (
        f"{MAX_FAILURES} wrong passwords for this user from this address: try again in "
        f"{WINDOW // 60} minutes"
    )
