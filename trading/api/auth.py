"""How the API knows who calls: the admin's session (a browser logged in to ``/admin/``) or HTTP
Basic (a script: ``curl -u user:password``), each then checked against the model permissions
(trading/api/permissions.py).

HTTP Basic sends the password with every call, so a wrong one must not be cheap to retry:
after ``MAX_FAILURES`` wrong passwords for one user name from one client address within
``WINDOW`` seconds, that pair is answered 429 (with Retry-After) until the window has passed,
without the password being checked. Keyed on the pair, not the address alone: behind a proxy
every client shares an address, and one guesser must not lock every operator out; the admin's
login page and a session already open are not affected. The count lives in Django's cache (per
process with the default local-memory cache: with N web workers a guesser gets at most N times
the allowance). Over plain HTTP the password crosses the network in clear: run the web process
behind TLS (``DJANGO_HTTPS=true``, README "Configuration")."""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

from django.core.cache import cache
from rest_framework.authentication import BasicAuthentication, SessionAuthentication
from rest_framework.exceptions import AuthenticationFailed, Throttled
from rest_framework.request import Request

__all__ = ["MAX_FAILURES", "WINDOW", "SessionAuthentication", "ThrottledBasicAuthentication"]

MAX_FAILURES = 10
WINDOW = 300  # seconds


def _user_name(request: Request) -> str | None:
    """The user name of a Basic Authorization header; None when there is none to read."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return decoded.partition(":")[0]


def _key(request: Request, name: str) -> str:
    address = request.META.get("REMOTE_ADDR", "")
    digest = hashlib.sha256(f"{name}\x00{address}".encode()).hexdigest()[:32]
    return f"api:basic-failures:{digest}"


class ThrottledBasicAuthentication(BasicAuthentication):
    """HTTP Basic with wrong passwords counted per (user name, client address): see the module
    docstring."""

    def authenticate(self, request: Request) -> Any:
        name = _user_name(request)
        if name is None:
            return super().authenticate(request)  # no Basic header, or DRF names its problem
        key = _key(request, name)
        if cache.get(key, 0) >= MAX_FAILURES:
            raise Throttled(
                wait=WINDOW,
                detail=(
                    f"{MAX_FAILURES} wrong passwords for this user from this address: "
                    f"try again in {WINDOW // 60} minutes"
                ),
            )
        try:
            return super().authenticate(request)
        except AuthenticationFailed:
            if not cache.add(key, 1, WINDOW):
                try:
                    cache.incr(key)
                except ValueError:  # expired between the two calls
                    cache.add(key, 1, WINDOW)
            raise
