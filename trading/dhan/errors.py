"""Dhan API errors, named by what the caller must do about them.

Modelled on freqtrade's ``exceptions.py``: every class says, in its docstring, how the caller
reacts. The REST client turns each failed HTTP exchange into exactly one of these with
:func:`error_from_response` (the broker answered) or :func:`error_from_exception` (the network
failed), so no caller ever parses a Dhan error body or a ``requests`` exception itself.

=================== ============================================================================
class               caller's response
=================== ============================================================================
Retryable           back off (:func:`backoff_delays`) and send the same request again
RateLimited         a Retryable: the broker throttled us; back off harder, fix the local limiter
AuthFailure         stop trading, alert a human, do not retry or reconnect in a loop
Rejected            record the reason on the order / request, do not retry it unchanged
UnknownOutcome      an order placement may or may not exist: look it up by correlation id,
                    never re-send it blindly
DailyCapExceeded    raised client-side before sending: a daily cap is spent; fail fast
=================== ============================================================================

Secrets: Dhan's JWT access token and the client id must never reach a log line or an API
response (ARCHITECTURE "Secrets"). Error texts come from the broker, from HTML error pages and
from ``requests`` exception messages (which embed URLs), so every text is passed through
:func:`redact` before it is stored; ``str()``/``repr()`` only ever show the redacted text.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Mapping
from datetime import datetime

import requests.exceptions as rex
import urllib3.exceptions as u3ex

__all__ = [
    "AuthFailure",
    "DailyCapExceeded",
    "DhanError",
    "RateLimited",
    "Rejected",
    "Retryable",
    "UnknownOutcome",
    "backoff_ceiling",
    "backoff_delays",
    "error_from_exception",
    "error_from_response",
    "redact",
]

# How much of a non-JSON body (HTML error page) is kept in the message: enough to recognise
# "502 Bad Gateway" from a load balancer, not a whole page in every log line.
_SNIPPET_CHARS = 200

_REDACTED = "***"
# A JWT is three base64url parts; Dhan's access tokens start with the encoded '{"' header, i.e.
# "eyJ". Partial tokens (a truncated message) are caught by the first part alone.
_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*){0,2}")
# "access-token: X", "token=X", '"clientId": "X"', "dhanClientId=X"... as they appear in
# headers, query strings (the feed WS URL carries both) and JSON bodies.
_SECRET_FIELD_RE = re.compile(
    r"""(?ix)
    (?P<key>\b(?:access[-_]?token|token|client[-_]?id|dhan[-_]?client[-_]?id)\b["']?\s*[:=]\s*["']?)
    (?P<value>[^\s"'&,;}\]]+)
    """
)


def redact(text: str | None, secrets: Iterable[str] = ()) -> str:
    """Return ``text`` with anything that looks like a credential replaced by ``***``.

    Removes JWTs (``eyJ...``), values of token / client-id fields, and every exact string in
    ``secrets`` (the client passes its access token and client id, since a bare 10-digit client
    id cannot be told apart from an order id by shape alone). Idempotent.
    """
    if not text:
        return ""
    for secret in secrets:
        # Very short "secrets" would shred ordinary text; a real token or client id is longer.
        if secret and len(secret) >= 4:
            text = text.replace(secret, _REDACTED)
    text = _JWT_RE.sub(_REDACTED, text)
    return _SECRET_FIELD_RE.sub(lambda m: m.group("key") + _REDACTED, text)


class DhanError(Exception):
    """Base of every Dhan adapter error.

    Attributes: ``status`` (HTTP status, ``None`` when no response came), ``code`` (``"DH-904"``,
    ``"807"``; ``None`` when the body had none), ``error_type`` (``"Rate_Limit"``; for the gateway
    404 shape its ``error`` field), ``message`` (redacted), ``retry_after`` (seconds, when known).

    Caller: catch a subclass. A bare ``DhanError`` is a case this module could not classify
    (e.g. a malformed request that was never sent: a bug); log it and let it surface.

    Every argument but the message is keyword-only and optional, so instances pickle (Celery
    results, multiprocessing) through ``BaseException``'s default ``cls(*args)`` protocol.
    """

    def __init__(
        self,
        message: str = "",
        *,
        status: int | None = None,
        code: str | None = None,
        error_type: str | None = None,
        retry_after: float | None = None,
        secrets: Iterable[str] = (),
    ) -> None:
        secrets = tuple(secrets)
        self.message = redact(message, secrets)
        self.status = status
        self.code = code
        self.error_type = redact(error_type, secrets) or None
        self.retry_after = retry_after
        # Only the redacted text goes into args: tracebacks and pickles print args.
        super().__init__(self.message)

    def __str__(self) -> str:
        tags = []
        if self.status is not None:
            tags.append(f"HTTP {self.status}")
        if self.code:
            tags.append(self.code)
        if self.error_type:
            tags.append(self.error_type)
        prefix = f"[{' '.join(tags)}] " if tags else ""
        return f"{prefix}{self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"error_type={self.error_type!r}, message={self.message!r})"
        )


class Retryable(DhanError):
    """The request did not take effect and may succeed if sent again.

    Network errors before anything was sent, timeouts of idempotent reads, HTTP 5xx, DH-908
    (internal error), DH-909 (backend network error), data-API 800.

    Caller: wait (``backoff_delays``) and resend the same request, a bounded number of times;
    then give up loudly. Never used for an order placement whose fate is unknown (that is
    :class:`UnknownOutcome`).
    """


class RateLimited(Retryable):
    """The broker (DH-904 / HTTP 429 / data-API 805) or our own limiter refused for rate.

    Dhan sends no ``Retry-After``; ``retry_after`` is set only when the local limiter knows when
    a slot frees. Nothing was executed, so this is safe to retry even for an order placement.

    Caller: back off (at least ``retry_after`` when set) and retry; if the broker says it, our
    client-side limiter's configuration is too generous: log it as a warning.
    """


class AuthFailure(DhanError):
    """The credentials or the account's entitlements are not valid.

    DH-901 (token invalid/expired), DH-902 (no Trading / Data API access), DH-906 with message
    "Invalid Token", data-API 806 (Data APIs not subscribed), 807 (token expired), 808
    (authentication failed), 809 (token invalid), 810 (client id invalid), any unclassified 401.

    Caller: stop trading (no new orders), alert a human, do not retry and do not reconnect in a
    loop: a fresh token is needed, and retries only burn the rate budget.
    """


class Rejected(DhanError):
    """The broker understood the request and refused it; the same request will fail again.

    DH-903 (account), DH-905 (input), DH-906 (order error, e.g. market closed), DH-907 (no
    data), DH-911 (IP not whitelisted), DH-1111 (no holdings), data-API 804, 811, 812, 813,
    814, and any unclassified 4xx.

    Caller: record ``code`` and ``message`` on the order / request and do not retry it
    unchanged. (For ``GET /holdings``, DH-1111 means "empty portfolio": treat it as ``[]``.)
    """


class UnknownOutcome(DhanError):
    """An order placement may have reached the broker, but we did not get its answer.

    A read timeout, a connection dropped after the request was written, a chunked body cut
    short, or a 5xx / gateway error page in answer to a placement.

    Caller: look the order up by its correlation id (``GET /orders/external/{correlationId}``)
    and continue from what the broker has; never re-send the placement before that lookup says
    the order does not exist. Re-sending blindly can double a position with real money.

    When the REST client has already tried that lookup and still does not know, it sets
    ``correlation_id`` (placement), ``order_id`` and ``order`` (the order last seen, for a modify
    or cancel). Plain instance attributes, so they survive a pickle.
    """

    correlation_id: str | None = None
    order_id: str | None = None
    order: object | None = None  # rest_types.Order (not imported here: errors.py stays leaf)


class DailyCapExceeded(DhanError):
    """Client-side: this call would break a rate cap whose window is a day.

    Raised by the rate limiter before anything is sent. ``category`` (e.g. ``"orders"``),
    ``cap`` (requests allowed), ``window`` (seconds), ``resets_at`` (aware datetime when the
    next slot frees), ``retry_after`` (seconds until then).

    Caller: fail fast; do not sleep until tomorrow. Stop starting work in this category for the
    day and alert: either the cap in config/ratelimits.yml is wrong or something is looping.
    """

    def __init__(
        self,
        message: str = "",
        *,
        category: str | None = None,
        cap: int | None = None,
        window: float | None = None,
        resets_at: datetime | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.category = category
        self.cap = cap
        self.window = window
        self.resets_at = resets_at


# ---------------------------------------------------------------------------------------------
# Classification of broker error codes. Codes are compared as strings: the trading API sends
# "DH-904", the data APIs send "811" as a JSON object key, and one recording shows a bare int.

_RATE_LIMIT_CODES = frozenset({"DH-904", "805"})  # 805: too many requests / connections
_RETRYABLE_CODES = frozenset({"DH-908", "DH-909", "800"})
# DH-902 (no Trading/Data API access on the account) is not in the brief's list of auth codes,
# but like 806 it is an account entitlement: every retry fails the same way until a human acts.
_AUTH_CODES = frozenset({"DH-901", "DH-902", "806", "807", "808", "809", "810"})
# DH-1111 arrives with HTTP 500 ("No holdings available") yet is a definite answer, not a
# server fault: without this entry it would be retried as a 5xx.
_REJECTED_CODES = frozenset(
    {"DH-903", "DH-905", "DH-906", "DH-907", "DH-911", "DH-1111"}
    | {"804", "811", "812", "813", "814"}
)
# DH-906 doubles as "token expired" on some endpoints (PROTOCOL 1.1 / 6); only its message
# tells the two apart.
_INVALID_TOKEN_MESSAGES = frozenset({"invalid token"})
_FAILED_STATUSES = frozenset({"failed", "failure", "error"})


def _class_for(code: str | None, message: str, status: int | None) -> type[DhanError]:
    """The error class for a broker answer, from its code first and its HTTP status second."""
    if code == "DH-906" and message.strip().rstrip(".").lower() in _INVALID_TOKEN_MESSAGES:
        return AuthFailure
    if code in _RATE_LIMIT_CODES:
        return RateLimited
    if code in _AUTH_CODES:
        return AuthFailure
    if code in _REJECTED_CODES:
        return Rejected
    if code in _RETRYABLE_CODES:
        return Retryable
    # Unknown or absent code (DH-910 "Others", gateway pages, empty bodies): the HTTP status.
    if status is None or status >= 500:
        return Retryable
    if status == 429:
        return RateLimited
    if status == 401:
        return AuthFailure
    if status == 408:  # the server gave up waiting for our request: it was not processed
        return Retryable
    return Rejected


def _decode_body(body: bytes | str | Mapping | None) -> tuple[Mapping | None, str]:
    """Return (parsed JSON object or None, the text for a message when there is no object)."""
    if body is None:
        return None, ""
    if isinstance(body, Mapping):
        return body, ""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else str(body)
    text = text.strip()
    if not text:
        return None, ""
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, Mapping):
        return parsed, ""
    return None, " ".join(text.split())[:_SNIPPET_CHARS]


def _fields(obj: Mapping) -> tuple[str | None, str | None, str]:
    """(code, error_type, message) from any of Dhan's error shapes; all None/"" if none fits."""
    if {"errorCode", "errorType", "errorMessage"} & obj.keys():
        code = obj.get("errorCode")
        etype = obj.get("errorType")
        return (
            str(code) if code not in (None, "") else None,
            str(etype) if etype not in (None, "") else None,
            str(obj.get("errorMessage") or ""),
        )
    data = obj.get("data")
    status = obj.get("status")
    if isinstance(status, str) and status.lower() in _FAILED_STATUSES:
        # Data-API shape {"data": {"811": "Invalid Expiry Date"}, "status": "failed"}: the code
        # is the (only) key of "data". The SDK misses this shape entirely (DhanHQ-py #138).
        if isinstance(data, Mapping) and data:
            code, text = next(iter(data.items()))
            return str(code), None, str(text)
        return None, None, str(data or "")
    if "error" in obj and isinstance(status, int):
        # Gateway shape for unknown paths: {"timestamp":..,"status":404,"error":"Not Found",
        # "path":"/v2/..."}. No Dhan code; the path says which URL we got wrong.
        path = obj.get("path")
        text = str(obj.get("message") or obj.get("error") or "")
        return None, str(obj.get("error")), f"{text} ({path})" if path else text
    return None, None, ""


def error_from_response(
    status: int,
    body: bytes | str | Mapping | None,
    *,
    is_order_placement: bool = False,
    secrets: Iterable[str] = (),
) -> DhanError:
    """Map a failed HTTP answer from Dhan to the error the caller must handle.

    ``status`` is the HTTP status, ``body`` the raw or parsed body (any of Dhan's error shapes,
    an HTML page, empty). Classification is by error code when the body carries one, else by
    status: 5xx Retryable, 401 AuthFailure, 429 RateLimited, other 4xx Rejected.

    ``is_order_placement``: a placement answered by a server fault (5xx, DH-908/909, gateway
    page) may already have created the order behind the gateway, so it becomes
    :class:`UnknownOutcome` instead of Retryable. Rate limits stay RateLimited (refused at the
    door, nothing executed).

    ``secrets``: exact strings (access token, client id) to redact from the message. Pure:
    no I/O, never raises for a malformed body.
    """
    obj, text = _decode_body(body)
    code, error_type, message = _fields(obj) if obj is not None else (None, None, "")
    if not message:
        if obj:
            text = " ".join(json.dumps(obj, default=str).split())[:_SNIPPET_CHARS]
        message = f"HTTP {status}: {text}" if text else f"HTTP {status} with an empty body"
    cls = _class_for(code, message, status)
    if is_order_placement and cls is Retryable:
        cls = UnknownOutcome
        message = f"order placement answered HTTP {status}, outcome unknown: {message}"
    return cls(message, status=status, code=code, error_type=error_type, secrets=secrets)


# ---------------------------------------------------------------------------------------------
# Network failures (no HTTP answer at all).

# Raised before a single byte of the request left this machine: retrying can never double an
# order. urllib3's NewConnectionError (refused, unreachable; NameResolutionError is a subclass)
# itself subclasses ConnectTimeoutError.
_NOT_SENT = (
    rex.ConnectTimeout,
    u3ex.ConnectTimeoutError,
    ConnectionRefusedError,
)
# The request is malformed; it never left the process and resending it cannot help: a bug.
_INVALID_REQUEST = (
    rex.InvalidURL,
    rex.MissingSchema,
    rex.InvalidSchema,
    rex.InvalidHeader,
    rex.URLRequired,
    rex.InvalidJSONError,
)
# The request may have been written (fully or partly) before things went wrong.
_AMBIGUOUS = (
    rex.Timeout,  # ReadTimeout; ConnectTimeout is caught earlier by _NOT_SENT
    rex.ConnectionError,
    rex.ChunkedEncodingError,
    rex.ContentDecodingError,
    rex.RetryError,
    TimeoutError,
    ConnectionError,  # builtin: ConnectionResetError, BrokenPipeError...
)


def _chain(exc: BaseException) -> Iterable[BaseException]:
    """The exception and everything it wraps: args, __cause__, __context__, urllib3 .reason."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        nested = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        nested.extend(current.args)
        todo.extend(e for e in nested if isinstance(e, BaseException))


def error_from_exception(
    exc: BaseException, *, is_order_placement: bool = False, secrets: Iterable[str] = ()
) -> DhanError:
    """Map a transport exception (``requests``/``urllib3``/socket) to the caller's response.

    * Connect timeout, connection refused, DNS failure: nothing was sent -> :class:`Retryable`,
      also for an order placement.
    * Read timeout, connection reset or dropped mid-response, truncated chunked body: the
      request may have reached Dhan -> :class:`UnknownOutcome` for an order placement,
      :class:`Retryable` otherwise.
    * A malformed request (invalid URL, header, JSON) -> bare :class:`DhanError` (a bug).
    * Anything else: :class:`UnknownOutcome` for a placement (we cannot prove nothing was
      sent), bare :class:`DhanError` otherwise.

    The returned error has ``__cause__`` set to ``exc``. Pure; never raises.
    """
    detail = f"{type(exc).__name__}: {exc}"
    err: DhanError
    if any(isinstance(e, _NOT_SENT) for e in _chain(exc)):
        err = Retryable(f"nothing was sent: {detail}", secrets=secrets)
    elif isinstance(exc, _INVALID_REQUEST):
        err = DhanError(f"request was never sent (invalid request): {detail}", secrets=secrets)
    elif is_order_placement:
        err = UnknownOutcome(
            f"order placement may have reached the broker: {detail}", secrets=secrets
        )
    elif isinstance(exc, _AMBIGUOUS):
        err = Retryable(detail, secrets=secrets)
    else:
        err = DhanError(f"unexpected error: {detail}", secrets=secrets)
    err.__cause__ = exc
    return err


# ---------------------------------------------------------------------------------------------
# Backoff.


def backoff_ceiling(attempt: int, *, base: float = 0.5, cap: float = 8.0) -> float:
    """Upper bound of the delay before retry ``attempt`` (0-based): ``min(cap, base * 2**n)``."""
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    # Cap the exponent too: 2**attempt overflows a float long before anyone retries that often.
    return min(cap, base * 2 ** min(attempt, 64))


def backoff_delays(
    attempts: int = 5,
    *,
    base: float = 0.5,
    cap: float = 8.0,
    rng: random.Random | None = None,
) -> list[float]:
    """Delays (seconds) before each of ``attempts`` retries: capped exponential, full jitter.

    Delay ``n`` is uniform in ``[0, min(cap, base * 2**n)]`` ("full jitter", AWS architecture
    blog "Exponential Backoff And Jitter"): several processes that hit the same 429 or 5xx at
    once spread their retries instead of stampeding the broker together again. Pass a seeded
    ``random.Random`` for reproducible delays; the default uses a fresh unseeded one.
    """
    if attempts < 0:
        raise ValueError(f"attempts must be >= 0, got {attempts}")
    if base <= 0 or cap <= 0:
        raise ValueError(f"base and cap must be positive, got base={base}, cap={cap}")
    rng = rng or random.Random()
    return [rng.uniform(0.0, backoff_ceiling(n, base=base, cap=cap)) for n in range(attempts)]
