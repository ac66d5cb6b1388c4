"""How the API knows who calls: the admin's session (a browser logged in to ``/admin/``) or HTTP
Basic (a script: ``curl -u user:password``), each then checked against the model permissions
(trading/api/permissions.py).

HTTP Basic sends the password with every call, so a wrong one must not be cheap to retry:
wrong passwords are counted per (user name, client address) with the admin's login page
(trading/login_throttle.py), and a pair that has used up its allowance is answered 429 (with
Retry-After) without the password being checked. Over plain HTTP the password crosses the
network in clear: run the web process behind TLS (``DJANGO_HTTPS=true``, README
"Configuration")."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from rest_framework.authentication import BasicAuthentication, SessionAuthentication
from rest_framework.exceptions import AuthenticationFailed, Throttled
from rest_framework.request import Request

from trading.login_throttle import MAX_FAILURES, WINDOW, locked, record_failure, refusal

__all__ = ["MAX_FAILURES", "WINDOW", "SessionAuthentication", "ThrottledBasicAuthentication"]


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


class ThrottledBasicAuthentication(BasicAuthentication):
    """HTTP Basic with wrong passwords counted per (user name, client address): see the module
    docstring."""

    def authenticate(self, request: Request) -> Any:
        name = _user_name(request)
        if name is None:
            return super().authenticate(request)  # no Basic header, or DRF names its problem
        address = request.META.get("REMOTE_ADDR", "")
        if locked(name, address):
            raise Throttled(wait=WINDOW, detail=refusal())
        try:
            return super().authenticate(request)
        except AuthenticationFailed:
            record_failure(name, address)
            raise
