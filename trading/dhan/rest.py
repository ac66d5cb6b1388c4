"""Dhan v2 REST client: one pooled HTTP session, typed calls, bounded retries, exactly-once orders.

Every public method sends one :class:`~trading.dhan.rest_types.Endpoint` with its typed request
(``to_wire()``) and returns the typed response (``from_wire()``). Before **every** HTTP request
(first attempts, retries and look-ups alike) the client takes a slot of the endpoint's
``rate_category`` from the :class:`~trading.dhan.ratelimit.RateLimiter`, so retries spend the
same budget the broker counts.

Failures become exactly one error of :mod:`trading.dhan.errors` (the broker's answer through
``error_from_response``, a transport failure through ``error_from_exception``):

============================== ===============================================================
failure                        what this client does
============================== ===============================================================
Retryable / RateLimited        reads: wait ``backoff_delays`` (capped, full jitter) and resend,
                               at most ``max_attempts`` sends in all, then raise the last error
AuthFailure, Rejected          raise at once, never resent
order placement                resent **only** when the request provably never reached Dhan:
                               nothing could be sent (connection refused, connect timeout) or
                               Dhan refused it at the door (HTTP 429 / DH-904)
placement, outcome unknown     read timeout, connection lost after sending, a 5xx or an
                               unreadable 200: never resent. Resolved by
                               ``GET /orders/external/{correlationId}``, a few spaced look-ups
                               (Dhan may take a moment to list it); found -> that order's status
                               is returned; still missing -> :class:`UnknownOutcome` with
                               ``correlation_id`` set
modify / cancel, same cases    same resend rule as a placement. An unknown outcome is resolved
                               by ``GET /orders/{orderId}``: if the order now is what was asked
                               (cancel: CANCELLED; modify: same orderType, quantity, price and
                               triggerPrice) its status is returned, because the request is in
                               effect whoever applied it; otherwise :class:`UnknownOutcome` with
                               ``order_id`` and ``order`` (the Order found, or None) so the
                               caller decides. Re-sending a cancel is harmless; re-sending a
                               modify spends one of Dhan's 25 modifications per order
============================== ===============================================================

Why a placement is never resent on an unknown outcome: the request may have created the order,
and a second POST would double a position with real money. The correlation id is the only way to
find that order again, so when the caller gives none the client generates one before sending.

Secrets: the access token comes from ``token_provider`` on every request (a renewed token is used
without a restart) and is sent only in the ``access-token`` header. It and the client id are
passed as ``secrets`` to every error (whose messages are redacted) and never logged; the client's
``repr`` shows neither.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import secrets as _secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import requests
import urllib3.exceptions as u3ex
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from trading.dhan.errors import (
    AuthFailure,
    DhanError,
    RateLimited,
    Rejected,
    Retryable,
    UnknownOutcome,
    backoff_ceiling,
    backoff_delays,
    error_from_exception,
    error_from_response,
    redact,
)
from trading.dhan.ratelimit import RateLimiter, limiter_from_settings
from trading.dhan.rest_types import (
    BadResponse,
    CancelOrderRequest,
    ChartResponse,
    DailyChartRequest,
    Endpoint,
    ExpiryListRequest,
    ExpiryListResponse,
    FundLimit,
    HoldingsResponse,
    IntradayChartRequest,
    KillSwitchRequest,
    KillSwitchResponse,
    MarketQuoteRequest,
    ModifyOrderRequest,
    NoParams,
    OptionChainRequest,
    OptionChainResponse,
    Order,
    OrderBookResponse,
    OrderByCorrelationIdRequest,
    OrderByIdRequest,
    OrderLookupResponse,
    OrderStatusResponse,
    PlaceOrderRequest,
    PositionsResponse,
    Profile,
    QuoteResponse,
    RenewTokenResponse,
    SendsParams,
    TradeBookResponse,
)
from trading.dhan.vocab import KillSwitchStatus, OrderStatus

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_LOOKUP_DELAYS",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_ORDER_READ_TIMEOUT",
    "DEFAULT_POOL_SIZE",
    "DEFAULT_RATE_LIMIT_TIMEOUT",
    "DEFAULT_READ_TIMEOUT",
    "DhanRestClient",
    "TokenProvider",
    "new_correlation_id",
]

log = logging.getLogger(__name__)

# Seconds. 3.05: just above a multiple of 3 s, the classic TCP SYN retransmission interval, so a
# single lost SYN is retried by the kernel before we give up (requests' own advice).
DEFAULT_CONNECT_TIMEOUT = 3.05
DEFAULT_READ_TIMEOUT = 10.0
# A placement that has not answered in 5 s is resolved by correlation id rather than waited for:
# an order whose fate we do not know blocks the strategy more than a look-up costs.
DEFAULT_ORDER_READ_TIMEOUT = 5.0
# Sends per call in all (first attempt included) for Retryable failures.
DEFAULT_MAX_ATTEMPTS = 4
# Waits before each look-up of an order whose placement/modify/cancel outcome is unknown: Dhan
# may list a just-accepted order a moment late. 7.5 s in all.
DEFAULT_LOOKUP_DELAYS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
# Connections kept per host; more threads than this still work (extra connections are opened
# and discarded), they just do not stay pooled.
DEFAULT_POOL_SIZE = 10
# Longest wait for a local rate-limit slot before failing with RateLimited: waiting out an
# hourly order cap inside a trading loop is never right (daily caps fail at once anyway).
DEFAULT_RATE_LIMIT_TIMEOUT = 30.0

TokenProvider = Callable[[], str | None]
"""Returns the current access token; called before every request (so a renewal needs no restart)."""

_T = TypeVar("_T")

# Writes on an order: resent only when provably not received, resolved by a look-up otherwise.
# The kill switch is in the orders rate category but is idempotent (activating twice is the same
# state), so it is retried like a read.
_ORDER_WRITES = frozenset({Endpoint.PLACE_ORDER, Endpoint.MODIFY_ORDER, Endpoint.CANCEL_ORDER})
# Order states that no later event changes: a look-up that sees one stops waiting.
_FINAL_STATES = frozenset(
    {
        OrderStatus.TRADED,
        OrderStatus.CANCELLED,
        OrderStatus.REJECTED,
        OrderStatus.EXPIRED,
        OrderStatus.CLOSED,
    }
)
# Transport exceptions that come out of requests/urllib3 (requests wraps most of them, but a body
# cut short can surface as a urllib3 or socket error).
_TRANSPORT_ERRORS = (requests.RequestException, u3ex.HTTPError, OSError)
# Log lines quote at most this much of a (redacted) broker message.
_LOG_MESSAGE_CHARS = 200


def new_correlation_id() -> str:
    """A fresh correlation id for an order placement, e.g. ``as-19a2b3c4d5e-0f1e2d3c`` (23 chars).

    Dhan accepts at most 25 characters of ``[A-Za-z0-9 _-]`` (measured). The millisecond
    timestamp makes ids sort by creation and read well in logs; 32 random bits make two ids of the
    same millisecond (several processes) collide with probability 2**-32. Unique per placement is
    what matters: the id is the only handle on an order whose placement answer was lost.
    """
    return f"as-{time.time_ns() // 1_000_000:x}-{_secrets.token_hex(4)}"


def _set_outcome_details(
    err: UnknownOutcome,
    *,
    correlation_id: str | None = None,
    order_id: str | None = None,
    order: Order | None = None,
) -> UnknownOutcome:
    """Attach what the caller needs to continue: ``correlation_id`` (placement), ``order_id`` and
    ``order`` (the Order last seen by a look-up, or None); declared on UnknownOutcome."""
    err.correlation_id = correlation_id
    err.order_id = order_id
    err.order = order
    return err


class DhanRestClient:
    """Typed, rate-limited, retrying client for Dhan's v2 REST API (see the module docstring).

    Thread-safe in the way ``requests.Session`` is in practice (one pooled session shared by
    threads, no per-call state on the client). Use as a context manager or call :meth:`close`.

    ``sleep`` (backoff and look-up spacing) and ``rng`` (jitter) are injectable so tests need no
    real waits; ``correlation_ids`` makes generated correlation ids predictable in tests;
    ``session`` replaces the pooled session (tests that script transport failures).
    """

    def __init__(
        self,
        *,
        base_url: str,
        client_id: str,
        token_provider: TokenProvider,
        limiter: RateLimiter | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        order_read_timeout: float = DEFAULT_ORDER_READ_TIMEOUT,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
        lookup_delays: Sequence[float] = DEFAULT_LOOKUP_DELAYS,
        rate_limit_timeout: float | None = DEFAULT_RATE_LIMIT_TIMEOUT,
        pool_size: int = DEFAULT_POOL_SIZE,
        sleep: Callable[[float], object] = time.sleep,
        rng: random.Random | None = None,
        correlation_ids: Callable[[], str] = new_correlation_id,
        session: requests.Session | None = None,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url: expected an http(s) URL, got {base_url!r}")
        if not isinstance(client_id, str) or not client_id.strip():
            raise ValueError("client_id: required (Dhan's data APIs refuse calls without it)")
        for name, value in (
            ("connect_timeout", connect_timeout),
            ("read_timeout", read_timeout),
            ("order_read_timeout", order_read_timeout),
        ):
            if not value > 0:
                raise ValueError(f"{name}: expected seconds > 0, got {value!r}")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError(f"max_attempts: expected an integer >= 1, got {max_attempts!r}")
        if not lookup_delays or any(d < 0 for d in lookup_delays):
            raise ValueError(f"lookup_delays: expected one or more waits >= 0, got {lookup_delays}")
        if pool_size < 1:
            raise ValueError(f"pool_size: expected >= 1, got {pool_size!r}")
        self.base_url = base_url.rstrip("/")
        self._client_id = client_id
        self._token_provider = token_provider
        self._limiter = limiter if limiter is not None else limiter_from_settings()
        self.connect_timeout = float(connect_timeout)
        self.read_timeout = float(read_timeout)
        self.order_read_timeout = float(order_read_timeout)
        self.max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self.lookup_delays = tuple(float(d) for d in lookup_delays)
        self.rate_limit_timeout = rate_limit_timeout
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._correlation_ids = correlation_ids
        # Tokens used recently: an error raised just after a renewal may quote the previous one.
        self._recent_tokens: deque[str] = deque(maxlen=4)
        # ``session`` is for tests that script transport failures; it is closed by close().
        self._session = session if session is not None else _new_session(pool_size, self.base_url)

    @classmethod
    def from_settings(
        cls,
        *,
        token_provider: TokenProvider | None = None,
        limiter: RateLimiter | None = None,
        **overrides: Any,
    ) -> Self:
        """A client configured from Django settings.

        ``DHANHQ_BASE_URL``, ``DHANHQ_CLIENT_ID`` (required); the token is read from
        ``settings.DHANHQ_ACCESS_TOKEN`` on every request unless ``token_provider`` is given.
        Optional settings: ``DHANHQ_CONNECT_TIMEOUT``, ``DHANHQ_READ_TIMEOUT``,
        ``DHANHQ_ORDER_READ_TIMEOUT`` (seconds), ``DHANHQ_REST_MAX_ATTEMPTS``. ``overrides``
        are passed to the constructor as they are. The limiter defaults to
        ``limiter_from_settings()`` (Redis-backed when ``REDIS_URL`` is set).
        """
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured

        client_id = getattr(settings, "DHANHQ_CLIENT_ID", None)
        if not client_id:
            raise ImproperlyConfigured(
                "DHANHQ_CLIENT_ID is not set: the Dhan REST client needs the account's client id"
            )
        if token_provider is None:

            def token_provider() -> str | None:
                # Read at call time, not captured now: whatever updates the setting (a token
                # renewal job, override_settings in tests) is seen by the next request.
                return getattr(settings, "DHANHQ_ACCESS_TOKEN", None)

        kwargs: dict[str, Any] = {
            "base_url": settings.DHANHQ_BASE_URL,
            "connect_timeout": settings.DHANHQ_CONNECT_TIMEOUT,
            "read_timeout": settings.DHANHQ_READ_TIMEOUT,
            "order_read_timeout": settings.DHANHQ_ORDER_READ_TIMEOUT,
            "max_attempts": settings.DHANHQ_REST_MAX_ATTEMPTS,
        }
        kwargs.update(overrides)
        return cls(
            client_id=client_id,
            token_provider=token_provider,
            limiter=limiter if limiter is not None else limiter_from_settings(),
            **kwargs,
        )

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the pooled connections. Idempotent."""
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        # Neither the token nor the client id; the URL is redacted in case someone put
        # credentials in it.
        return f"DhanRestClient(base_url={redact(self.base_url, self._secrets())!r})"

    # -- orders ----------------------------------------------------------------------------------

    def place_order(self, request: PlaceOrderRequest) -> OrderStatusResponse:
        """``POST /orders``, exactly once. Returns ``{orderId, orderStatus}``.

        A request without ``correlationId`` gets one from ``correlation_ids`` before it is sent.
        Resent only when it provably never reached Dhan; an unknown outcome is resolved by
        correlation id (the found order's status is returned) and otherwise raises
        :class:`UnknownOutcome` with ``correlation_id`` set. Never sends the placement twice
        after it may have arrived.

        A caller that later retries an unresolved placement itself must look up
        ``err.correlation_id`` first and, if it resends, reuse that id: a request without one
        would get a fresh id here, and Dhan could not tell the two orders apart.
        """
        if request.correlationId is None:
            # replace() re-runs the request's validation on the generated id.
            request = dataclasses.replace(request, correlationId=self._correlation_ids())
        correlation_id = request.correlationId
        assert correlation_id is not None  # for the type checker: set just above

        def resolve(cause: UnknownOutcome) -> OrderStatusResponse:
            return self._resolve_placement(correlation_id, cause)

        return self._order_write(
            Endpoint.PLACE_ORDER,
            request,
            lambda body: OrderStatusResponse.from_wire(body, Endpoint.PLACE_ORDER),
            resolve,
        )

    def modify_order(self, request: ModifyOrderRequest) -> OrderStatusResponse:
        """``PUT /orders/{orderId}``. Same resend rule as a placement; an unknown outcome is
        resolved by ``GET /orders/{orderId}`` (see the module docstring)."""

        def resolve(cause: UnknownOutcome) -> OrderStatusResponse:
            return self._resolve_order_write(
                Endpoint.MODIFY_ORDER,
                request.orderId,
                cause,
                wanted=lambda order: _modify_in_effect(order, request),
            )

        return self._order_write(
            Endpoint.MODIFY_ORDER,
            request,
            lambda body: OrderStatusResponse.from_wire(body, Endpoint.MODIFY_ORDER),
            resolve,
            path_params=request.path_params(),
        )

    def cancel_order(self, request: CancelOrderRequest) -> OrderStatusResponse:
        """``DELETE /orders/{orderId}``. Same resend rule as a placement; an unknown outcome is
        resolved by ``GET /orders/{orderId}``: CANCELLED there is success."""

        def resolve(cause: UnknownOutcome) -> OrderStatusResponse:
            return self._resolve_order_write(
                Endpoint.CANCEL_ORDER,
                request.orderId,
                cause,
                wanted=lambda order: order.orderStatus == OrderStatus.CANCELLED,
            )

        return self._order_write(
            Endpoint.CANCEL_ORDER,
            request,
            lambda body: OrderStatusResponse.from_wire(body, Endpoint.CANCEL_ORDER),
            resolve,
            path_params=request.path_params(),
        )

    def order_book(self) -> OrderBookResponse:
        """``GET /orders``: today's orders."""
        return self._read(Endpoint.ORDER_BOOK, NoParams(), OrderBookResponse.from_wire)

    def order_by_id(self, request: OrderByIdRequest) -> OrderLookupResponse:
        """``GET /orders/{orderId}``; ``order`` is None for an id Dhan does not know."""
        return self._read(
            Endpoint.ORDER_BY_ID,
            request,
            lambda body: OrderLookupResponse.from_wire(body, Endpoint.ORDER_BY_ID),
            path_params=request.path_params(),
        )

    def order_by_correlation_id(self, request: OrderByCorrelationIdRequest) -> OrderLookupResponse:
        """``GET /orders/external/{correlationId}``; ``order`` is None when Dhan does not know
        the id (it answers 404 DH-906 for that, mapped here to "not found")."""
        return self._read(
            Endpoint.ORDER_BY_CORRELATION_ID,
            request,
            lambda body: OrderLookupResponse.from_wire(body, Endpoint.ORDER_BY_CORRELATION_ID),
            path_params=request.path_params(),
            fallback=_not_found_lookup,
        )

    def trade_book(self) -> TradeBookResponse:
        """``GET /trades``: today's fills."""
        return self._read(Endpoint.TRADE_BOOK, NoParams(), TradeBookResponse.from_wire)

    # -- portfolio, funds, profile ---------------------------------------------------------------

    def positions(self) -> PositionsResponse:
        """``GET /positions``."""
        return self._read(Endpoint.POSITIONS, NoParams(), PositionsResponse.from_wire)

    def holdings(self) -> HoldingsResponse:
        """``GET /holdings``. Live Dhan answers an empty portfolio with 500 DH-1111: that is
        returned as an empty response, not raised."""
        return self._read(
            Endpoint.HOLDINGS, NoParams(), HoldingsResponse.from_wire, fallback=_no_holdings
        )

    def fund_limit(self) -> FundLimit:
        """``GET /fundlimit``."""
        return self._read(Endpoint.FUND_LIMIT, NoParams(), FundLimit.from_wire)

    def profile(self) -> Profile:
        """``GET /profile`` (``tokenValidity`` tells when the token expires)."""
        return self._read(Endpoint.PROFILE, NoParams(), Profile.from_wire)

    # -- kill switch, token ----------------------------------------------------------------------

    def kill_switch(self, request: KillSwitchRequest | bool) -> KillSwitchResponse:
        """``POST /killswitch?killSwitchStatus=ACTIVATE|DEACTIVATE``; ``True`` activates.

        Retried like a read: setting the same state twice is harmless."""
        if isinstance(request, bool):
            request = KillSwitchRequest(
                KillSwitchStatus.ACTIVATE if request else KillSwitchStatus.DEACTIVATE
            )
        return self._read(
            Endpoint.KILL_SWITCH,
            request,
            lambda body: KillSwitchResponse.from_wire(body, Endpoint.KILL_SWITCH),
        )

    def kill_switch_status(self) -> KillSwitchResponse:
        """``GET /killswitch``."""
        return self._read(
            Endpoint.KILL_SWITCH_STATUS,
            NoParams(),
            lambda body: KillSwitchResponse.from_wire(body, Endpoint.KILL_SWITCH_STATUS),
        )

    def renew_token(self) -> RenewTokenResponse:
        """``GET /RenewToken``: extends the current token (Dhan: by 24 h).

        The client does not keep the answer: store ``accessToken`` where ``token_provider``
        reads it, and the next request uses it."""
        return self._read(Endpoint.RENEW_TOKEN, NoParams(), RenewTokenResponse.from_wire)

    # -- market data -----------------------------------------------------------------------------

    def quote_ltp(self, request: MarketQuoteRequest) -> QuoteResponse:
        """``POST /marketfeed/ltp``."""
        return self._quote(Endpoint.QUOTE_LTP, request)

    def quote_ohlc(self, request: MarketQuoteRequest) -> QuoteResponse:
        """``POST /marketfeed/ohlc``."""
        return self._quote(Endpoint.QUOTE_OHLC, request)

    def quote_full(self, request: MarketQuoteRequest) -> QuoteResponse:
        """``POST /marketfeed/quote``."""
        return self._quote(Endpoint.QUOTE_FULL, request)

    def intraday_chart(self, request: IntradayChartRequest) -> ChartResponse:
        """``POST /charts/intraday``."""
        return self._read(
            Endpoint.CHART_INTRADAY,
            request,
            lambda body: ChartResponse.from_wire(body, Endpoint.CHART_INTRADAY),
        )

    def daily_chart(self, request: DailyChartRequest) -> ChartResponse:
        """``POST /charts/historical`` (``toDate`` exclusive)."""
        return self._read(
            Endpoint.CHART_DAILY,
            request,
            lambda body: ChartResponse.from_wire(body, Endpoint.CHART_DAILY),
        )

    def expiry_list(self, request: ExpiryListRequest) -> ExpiryListResponse:
        """``POST /optionchain/expirylist``."""
        return self._read(Endpoint.EXPIRY_LIST, request, ExpiryListResponse.from_wire)

    def option_chain(self, request: OptionChainRequest) -> OptionChainResponse:
        """``POST /optionchain``."""
        return self._read(Endpoint.OPTION_CHAIN, request, OptionChainResponse.from_wire)

    def _quote(self, endpoint: Endpoint, request: MarketQuoteRequest) -> QuoteResponse:
        return self._read(endpoint, request, lambda body: QuoteResponse.from_wire(body, endpoint))

    # -- the retry loops -------------------------------------------------------------------------

    def _read(
        self,
        endpoint: Endpoint,
        request: Any,
        parse: Callable[[bytes], _T],
        *,
        path_params: dict[str, str] | None = None,
        fallback: Callable[[DhanError], _T | None] | None = None,
    ) -> _T:
        """Send an idempotent request, resending Retryable failures with backoff.

        ``fallback`` turns a specific error into a result (holdings' DH-1111 -> empty) before
        anything is logged or raised. Errors of the local limiter (``RateLimited`` after its
        timeout, ``DailyCapExceeded``) are raised as they are: the limiter already waited.
        """
        delays = self._backoff()
        for attempt in range(1, self.max_attempts + 1):
            self._acquire(endpoint)
            try:
                response = self._send(endpoint, request, path_params, self.read_timeout)
            except DhanError as err:
                if fallback is not None:
                    result = fallback(err)
                    if result is not None:
                        return result
                if not isinstance(err, Retryable) or attempt == self.max_attempts:
                    self._log_failure(endpoint, err, attempt, "giving up")
                    raise
                wait = self._wait(err, attempt, delays)
                self._log_failure(endpoint, err, attempt, f"retrying in {wait:.2f} s")
                self._sleep(wait)
                continue
            # A 200 we cannot read is raised (BadResponse), not retried: the same answer would
            # come again, and the caller must see that Dhan's format changed.
            return parse(response.content)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _order_write(
        self,
        endpoint: Endpoint,
        request: Any,
        parse: Callable[[bytes], OrderStatusResponse],
        resolve: Callable[[UnknownOutcome], OrderStatusResponse],
        *,
        path_params: dict[str, str] | None = None,
    ) -> OrderStatusResponse:
        """Send an order write: resend only what provably never reached Dhan, resolve the rest.

        ``_send`` classifies order writes strictly: ``Retryable`` (RateLimited included) means
        nothing was executed (refused connection, connect timeout, HTTP 429 / DH-904);
        ``UnknownOutcome`` means it may have been (read timeout, connection lost after sending,
        5xx). The latter goes to ``resolve`` and is never resent.
        """
        delays = self._backoff()
        for attempt in range(1, self.max_attempts + 1):
            self._acquire(endpoint)
            try:
                response = self._send(endpoint, request, path_params, self.order_read_timeout)
            except UnknownOutcome as err:
                self._log_failure(endpoint, err, attempt, "outcome unknown, looking the order up")
                return resolve(err)
            except DhanError as err:
                if not isinstance(err, Retryable) or attempt == self.max_attempts:
                    self._log_failure(endpoint, err, attempt, "giving up")
                    raise
                wait = self._wait(err, attempt, delays)
                self._log_failure(
                    endpoint, err, attempt, f"not received by Dhan, resending in {wait:.2f} s"
                )
                self._sleep(wait)
                continue
            try:
                return parse(response.content)
            except BadResponse as exc:
                # Dhan said 200, so the order most likely exists, but we cannot read its id.
                err = UnknownOutcome(
                    f"{endpoint.name} answered HTTP {response.status_code} with a body we cannot "
                    f"read: {exc}",
                    status=response.status_code,
                    secrets=self._secrets(),
                )
                err.__cause__ = exc
                self._log_failure(endpoint, err, attempt, "outcome unknown, looking the order up")
                return resolve(err)
        raise AssertionError("unreachable: the last attempt returns or raises")

    # -- resolving unknown outcomes --------------------------------------------------------------

    def _resolve_placement(self, correlation_id: str, cause: UnknownOutcome) -> OrderStatusResponse:
        """Find a placement of unknown outcome by its correlation id; never re-send it."""
        endpoint = Endpoint.ORDER_BY_CORRELATION_ID
        order, problem = self._look_up(
            endpoint,
            OrderByCorrelationIdRequest(correlation_id),
            {"correlation_id": correlation_id},
            settled=lambda order: order is not None,
            what=f"correlation id {correlation_id}",
        )
        if order is not None:
            log.warning(
                "dhan %s: outcome resolved by correlation id %s: order %s is %s",
                Endpoint.PLACE_ORDER.name,
                correlation_id,
                order.orderId,
                order.orderStatus,
            )
            return OrderStatusResponse(orderId=order.orderId, orderStatus=order.orderStatus)
        why = f" (last look-up: {type(problem).__name__}: {problem})" if problem else ""
        err = UnknownOutcome(
            f"order placement with correlation id {correlation_id} may or may not exist: not "
            f"found after {len(self.lookup_delays)} look-ups{why}. Do not place it again before "
            f"GET /orders/external/{correlation_id} finds nothing for sure. Cause: {cause.message}",
            status=cause.status,
            code=cause.code,
            error_type=cause.error_type,
            secrets=self._secrets(),
        )
        err.__cause__ = cause
        raise _set_outcome_details(err, correlation_id=correlation_id)

    def _resolve_order_write(
        self,
        endpoint: Endpoint,
        order_id: str,
        cause: UnknownOutcome,
        *,
        wanted: Callable[[Order], bool],
    ) -> OrderStatusResponse:
        """Look an order up after a modify/cancel of unknown outcome: return its status if it is
        now what the request asked for, else raise UnknownOutcome with what was found."""
        order, problem = self._look_up(
            Endpoint.ORDER_BY_ID,
            OrderByIdRequest(order_id),
            {"order_id": order_id},
            settled=lambda order: (
                order is not None and (wanted(order) or order.orderStatus in _FINAL_STATES)
            ),
            what=f"order {order_id}",
        )
        if order is not None and wanted(order):
            log.warning(
                "dhan %s: outcome resolved by look-up: order %s is %s as requested",
                endpoint.name,
                order_id,
                order.orderStatus,
            )
            return OrderStatusResponse(orderId=order.orderId, orderStatus=order.orderStatus)
        if order is not None:
            seen = f"the order is {order.orderStatus}, not as requested"
        elif problem is not None:
            seen = f"the look-up failed: {type(problem).__name__}: {problem}"
        else:
            seen = "Dhan does not know the order"
        err = UnknownOutcome(
            f"{endpoint.name} of order {order_id}: outcome unknown ({cause.message}); {seen}",
            status=cause.status,
            code=cause.code,
            error_type=cause.error_type,
            secrets=self._secrets(),
        )
        err.__cause__ = cause
        raise _set_outcome_details(err, order_id=order_id, order=order)

    def _look_up(
        self,
        endpoint: Endpoint,
        request: Any,
        path_params: dict[str, str],
        *,
        settled: Callable[[Order | None], bool],
        what: str,
    ) -> tuple[Order | None, BaseException | None]:
        """Spaced single-attempt look-ups (``lookup_delays``) until ``settled(order)``.

        Returns the last order seen (None if never found) and the last look-up error. Every
        failure is "not known yet" except AuthFailure, which stops the look-ups (no later one
        can succeed).
        """
        order: Order | None = None
        problem: BaseException | None = None
        total = len(self.lookup_delays)
        for number, delay in enumerate(self.lookup_delays, start=1):
            self._sleep(delay)
            try:
                self._acquire(endpoint)
                response = self._send(endpoint, request, path_params, self.read_timeout)
                order = OrderLookupResponse.from_wire(response.content, endpoint).order
                problem = None
            except AuthFailure as err:
                self._log_failure(endpoint, err, number, f"look-up of {what} abandoned", total)
                return order, err
            except (DhanError, BadResponse) as err:
                # 404 DH-906 (unknown correlation id), timeouts, 5xx: not known yet.
                problem = err
                if isinstance(err, DhanError):
                    self._log_failure(endpoint, err, number, f"look-up of {what}", total)
                else:
                    log.warning(
                        "dhan %s: look-up of %s: unreadable answer: %s", endpoint.name, what, err
                    )
                continue
            if settled(order):
                return order, None
            log.warning(
                "dhan %s: look-up %d/%d of %s: %s",
                endpoint.name,
                number,
                total,
                what,
                "not found yet" if order is None else f"{order.orderStatus}, not settled yet",
            )
        return order, problem

    # -- one HTTP exchange -----------------------------------------------------------------------

    def _acquire(self, endpoint: Endpoint) -> None:
        self._limiter.acquire(endpoint.rate_category.value, timeout=self.rate_limit_timeout)

    def _send(
        self,
        endpoint: Endpoint,
        request: Any,
        path_params: dict[str, str] | None,
        read_timeout: float,
    ) -> requests.Response:
        """One request; returns a 2xx response or raises the classified DhanError."""
        url = self.base_url + endpoint.url_path(**(path_params or {}))
        kwargs: dict[str, Any] = {}
        if endpoint.sends is SendsParams.JSON:
            kwargs["json"] = request.to_wire()
        elif endpoint.sends is SendsParams.QUERY:
            kwargs["params"] = request.to_wire()
        headers = self._headers(endpoint)
        try:
            response = self._session.request(
                endpoint.method,
                url,
                headers=headers,
                timeout=(self.connect_timeout, read_timeout),
                # A redirected POST /orders could be replayed elsewhere; Dhan's API never
                # redirects, so a 3xx is an error (Rejected), not something to follow.
                allow_redirects=False,
                **kwargs,
            )
            # Read the whole body here, inside the try: a body cut short is a transport error.
            content = response.content
        except _TRANSPORT_ERRORS as exc:
            raise self._exception_error(endpoint, exc) from exc
        if 200 <= response.status_code < 300:
            return response
        raise self._response_error(endpoint, response.status_code, content)

    def _headers(self, endpoint: Endpoint) -> dict[str, str]:
        token = self._token_provider()
        if not isinstance(token, str) or not token.strip():
            raise AuthFailure(
                "no Dhan access token: the token provider returned nothing (set "
                "DHANHQ_ACCESS_TOKEN or renew the token)"
            )
        if not self._recent_tokens or self._recent_tokens[-1] != token:
            self._recent_tokens.append(token)
        headers = {"access-token": token, "client-id": self._client_id}
        if endpoint is Endpoint.RENEW_TOKEN:
            # The SDK sends the client id under this name for the renewal (PROTOCOL.md 1.12).
            headers["dhanClientId"] = self._client_id
        return headers

    def _exception_error(self, endpoint: Endpoint, exc: BaseException) -> DhanError:
        if endpoint not in _ORDER_WRITES:
            return error_from_exception(exc, secrets=self._secrets())
        err = error_from_exception(exc, is_order_placement=True, secrets=self._secrets())
        return self._relabel(endpoint, err, lambda: error_from_exception(exc, secrets=()))

    def _response_error(self, endpoint: Endpoint, status: int, body: bytes) -> DhanError:
        if endpoint not in _ORDER_WRITES:
            return error_from_response(status, body, secrets=self._secrets())
        err = error_from_response(status, body, is_order_placement=True, secrets=self._secrets())
        return self._relabel(endpoint, err, lambda: error_from_response(status, body))

    def _relabel(
        self, endpoint: Endpoint, err: DhanError, plain: Callable[[], DhanError]
    ) -> DhanError:
        """errors.py words an UnknownOutcome for a placement; say modify/cancel when it is one.

        The classification (``is_order_placement=True``: may the request have been executed?)
        is the same for every order write, only the message differs.
        """
        if endpoint is Endpoint.PLACE_ORDER or not isinstance(err, UnknownOutcome):
            return err
        base = plain()
        relabelled = UnknownOutcome(
            f"{endpoint.name} may have reached the broker: {base.message}",
            status=err.status,
            code=err.code,
            error_type=err.error_type,
            secrets=self._secrets(),
        )
        relabelled.__cause__ = err.__cause__
        return relabelled

    # -- helpers ---------------------------------------------------------------------------------

    def _secrets(self) -> tuple[str, ...]:
        return (*self._recent_tokens, self._client_id)

    def _backoff(self) -> list[float]:
        return backoff_delays(
            self.max_attempts - 1, base=self._backoff_base, cap=self._backoff_cap, rng=self._rng
        )

    def _wait(self, err: DhanError, attempt: int, delays: list[float]) -> float:
        """Seconds before resend number ``attempt``: the jittered delay; for a rate limit at
        least half its ceiling ("equal jitter": the broker said slow down, a near-zero wait
        would hit the same wall) and at least ``retry_after`` when known."""
        wait = delays[attempt - 1]
        if isinstance(err, RateLimited):
            ceiling = backoff_ceiling(attempt - 1, base=self._backoff_base, cap=self._backoff_cap)
            wait = max(wait, ceiling / 2, err.retry_after or 0.0)
        return wait

    def _log_failure(
        self,
        endpoint: Endpoint,
        err: DhanError,
        attempt: int,
        action: str,
        attempts: int | None = None,
    ) -> None:
        # The path template (no ids), status, code and the redacted message: never a header.
        log.warning(
            "dhan %s %s (%s) failed, attempt %d/%d: %s status=%s code=%s: %s; %s",
            endpoint.method,
            endpoint.path,
            endpoint.name,
            attempt,
            attempts or self.max_attempts,
            type(err).__name__,
            err.status,
            err.code,
            redact(err.message, self._secrets())[:_LOG_MESSAGE_CHARS],
            action,
        )


def _new_session(pool_size: int, base_url: str) -> requests.Session:
    """One pooled session with JSON headers and **no** automatic retries.

    urllib3's retries are off (``total=0``; ``read=False`` re-raises read errors as they are,
    so a read timeout stays a ``ReadTimeout``): a transparent resend of ``POST /orders`` after a
    read error could place the order twice, and our own retries are rate-limited and logged.
    """
    session = requests.Session()
    adapter = HTTPAdapter(
        pool_connections=1,  # one host
        pool_maxsize=pool_size,
        max_retries=Retry(total=0, read=False, redirect=False),
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers.update({"Content-Type": "application/json", "Accept": "application/json"})
    # The environment's proxies (HTTPS_PROXY, NO_PROXY for this host, ALL_PROXY) and CA bundle
    # (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE) are read once, here: with trust_env on, requests
    # scans os.environ on every request, 0.3 to 0.8 ms of each order's round trip (profiled,
    # bench/orders.py), and a worker's environment does not change while it runs.
    session.trust_env = False
    session.proxies.update(requests.utils.get_environ_proxies(base_url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    return session


def _modify_in_effect(order: Order, request: ModifyOrderRequest) -> bool:
    """True when the order already carries what the modify asked for (whoever applied it)."""
    return (
        order.orderType == request.orderType
        and order.quantity == request.quantity
        and order.price == request.price
        and (request.triggerPrice is None or order.triggerPrice == request.triggerPrice)
    )


def _not_found_lookup(err: DhanError) -> OrderLookupResponse | None:
    """``GET /orders/external/{id}`` answers an unknown id with 404 DH-906 (PROTOCOL.md 1.5).
    A gateway 404 without a Dhan code (wrong base URL) stays an error."""
    if isinstance(err, Rejected) and err.status == 404 and err.code == "DH-906":
        return OrderLookupResponse(None)
    return None


def _no_holdings(err: DhanError) -> HoldingsResponse | None:
    """Live Dhan answers an empty portfolio with 500 DH-1111 (PROTOCOL.md 1.6)."""
    if isinstance(err, Rejected) and err.code == "DH-1111":
        return HoldingsResponse(())
    return None
