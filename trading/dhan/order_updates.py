"""Dhan order-update WebSocket client (PROTOCOL.md section 3) on websocket-client.

    client = OrderUpdateClient(url, client_id, token_provider, on_update).start()
    ...
    client.stop()

One connection to ``DHANHQ_ORDER_WS_URL``. After the upgrade the client sends the LoginReq
(:func:`order_update_codec.login_message`, MsgCode 42); the server then pushes
``{"Type":"order_alert","Data":{...}}`` text frames, parsed by
:func:`order_update_codec.parse_frame` (PascalCase or camelCase keys, numbers or strings).
Each :class:`OrderUpdate` goes to ``on_update`` on a dispatcher thread through a bounded
drop-oldest buffer (:class:`ws_support.Dispatcher`), so a slow consumer never stops the socket
from reading; a dropped update is counted (``stats()["dropped"]``) and the REST order book
reconciliation catches up on it. Other messages are logged at debug level; an unreadable
frame is logged with its problem and skipped, never fatal.

Reconnect: after any drop, with capped exponential backoff and jitter (reset after a
connection that stayed up ``policy.healthy_after`` seconds), re-reading the token and
re-sending the login. An HTTP 429 on the upgrade uses the long schedule.

Auth failure: Dhan documents no login acknowledgement, and a bad login is simply closed by
the server. So a connection the server ends (close frame or EOF) before sending any message,
within ``login_timeout`` seconds of the login, counts as a failed login. After
``max_login_failures`` of those in a row with the same token the client stops with
:class:`AuthFailure` (``state`` "failed", ``error``, ``wait()`` and ``on_fatal``) instead of
hammering the server with a bad token; a new token from the provider resets the count, and
so does any message received. An HTTP 401/403 on the upgrade stops it at once. Trade-off: a
server that drops an idle connection within ``login_timeout`` looks like a failed login.

No keep-alive is documented for this socket; the server's pings, if any, are answered by
websocket-client. The token and client id never reach a log line.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import websocket
from websocket import ABNF

from trading.dhan.errors import AuthFailure, DhanError, RateLimited, redact
from trading.dhan.order_update_codec import (
    BadOrderUpdate,
    OrderUpdate,
    login_message,
    parse_frame,
)
from trading.dhan.ws_support import (
    Backoff,
    ClientState,
    Dispatcher,
    FatalStop,
    ReconnectPolicy,
    handshake_error,
)

__all__ = ["OrderUpdateClient"]

logger = logging.getLogger(__name__)


class _Fatal(Exception):
    def __init__(self, error: DhanError) -> None:
        super().__init__(str(error))
        self.error = error


class OrderUpdateClient(FatalStop):
    """The order-update client; see the module docstring.

    ``token_provider`` is called before every connection attempt. ``on_update`` runs on the
    dispatcher thread, one :class:`OrderUpdate` at a time in arrival order. ``on_fatal`` is
    called once, on the socket thread, with the error that stopped the client.
    """

    _fail_name = "order updates"
    _log = logger

    def __init__(
        self,
        url: str,
        client_id: str,
        token_provider: Callable[[], str],
        on_update: Callable[[OrderUpdate], object],
        *,
        policy: ReconnectPolicy | None = None,
        on_fatal: Callable[[DhanError], object] | None = None,
        max_login_failures: int = 3,
        login_timeout: float = 5.0,
        connect_timeout: float = 10.0,
        poll_interval: float = 0.5,
        close_timeout: float = 2.0,
        buffer_capacity: int = 10_000,
        rng: random.Random | None = None,
    ) -> None:
        if not client_id:
            raise ValueError("OrderUpdateClient needs a client id")
        if max_login_failures < 1:
            raise ValueError("max_login_failures must be >= 1")
        self.url = url
        self.client_id = str(client_id)
        self.policy = policy or ReconnectPolicy()
        self.max_login_failures = max_login_failures
        self.login_timeout = login_timeout
        self.connect_timeout = connect_timeout
        self.poll_interval = poll_interval
        self.close_timeout = close_timeout
        self._token_provider = token_provider
        self._on_fatal = on_fatal
        rng = rng or random.Random()
        self._backoff = Backoff(self.policy.base, self.policy.cap, rng)
        self._slow_backoff = Backoff(
            self.policy.rate_limited_base, self.policy.rate_limited_cap, rng
        )
        self._stop_event = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._ws: websocket.WebSocket | None = None
        self._dispatcher: Dispatcher[OrderUpdate] = Dispatcher(
            "dhan-order-updates-dispatch", on_update, capacity=buffer_capacity, logger=logger
        )
        self.state = ClientState.NEW
        self.error: DhanError | None = None
        # Counters (read with stats()).
        self.connects = 0
        self.reconnects = 0
        self.messages = 0  # text frames received
        self.updates = 0  # OrderUpdate objects handed to the dispatcher
        self.other_messages = 0
        self.bad_messages = 0
        self.login_failures = 0  # consecutive, with the current token
        self._last_token: str | None = None
        self.last_message_at: float | None = None  # time.time()
        self.last_error: str | None = None

    @classmethod
    def from_settings(
        cls,
        on_update: Callable[[OrderUpdate], object],
        *,
        token_provider: Callable[[], str] | None = None,
        **kwargs: Any,
    ) -> OrderUpdateClient:
        """A client on ``DHANHQ_ORDER_WS_URL`` / ``DHANHQ_CLIENT_ID``; the token is re-read
        from ``DHANHQ_ACCESS_TOKEN`` unless a ``token_provider`` is given."""
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured

        if not settings.DHANHQ_CLIENT_ID:
            raise ImproperlyConfigured("DHANHQ_CLIENT_ID is not set: order updates need it")
        if token_provider is None:
            if not settings.DHANHQ_ACCESS_TOKEN:
                raise ImproperlyConfigured("DHANHQ_ACCESS_TOKEN is not set: order updates need it")

            def token_provider() -> str:
                return settings.DHANHQ_ACCESS_TOKEN

        return cls(
            settings.DHANHQ_ORDER_WS_URL,
            settings.DHANHQ_CLIENT_ID,
            token_provider,
            on_update,
            **kwargs,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> OrderUpdateClient:
        with self._lock:
            if self.state != ClientState.NEW:
                raise RuntimeError(f"start() on an order-update client that is {self.state}")
            self.state = ClientState.RUNNING
        self._dispatcher.start()
        self._thread = threading.Thread(target=self._run, name="dhan-order-updates", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Close the connection and join both threads, bounded by ``timeout`` overall."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if self.state in (ClientState.NEW, ClientState.RUNNING):
                self.state = ClientState.STOPPED
        self._stop_event.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                ws = self._ws
                if ws is not None:
                    ws.abort()  # stuck in a send on a dead socket: cut it under the thread
                thread.join(min(1.0, max(0.0, deadline - time.monotonic())))
                if thread.is_alive():
                    logger.error("order updates: socket thread did not stop in time")
        self._dispatcher.stop(max(0.1, deadline - time.monotonic()))
        self._done.set()

    def stats(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "connected": self._ws is not None,
            "connects": self.connects,
            "reconnects": self.reconnects,
            "messages": self.messages,
            "updates": self.updates,
            "other_messages": self.other_messages,
            "bad_messages": self.bad_messages,
            "login_failures": self.login_failures,
            "dropped": self._dispatcher.dropped,
            "pending": self._dispatcher.pending,
            "callback_errors": self._dispatcher.handler_errors,
            "last_message_at": self.last_message_at,
            "last_error": self.last_error,
        }

    def __repr__(self) -> str:
        return f"<OrderUpdateClient {self.state}>"

    # -- socket thread -----------------------------------------------------------------------

    def _run(self) -> None:
        stop = self._stop_event
        try:
            while not stop.is_set():
                delay = self._connect_and_receive()
                if stop.is_set():
                    break
                self.reconnects += 1
                logger.info("order updates: reconnecting in %.2f s", delay)
                stop.wait(delay)
        except _Fatal as fatal:
            self._fail(fatal.error)
        except Exception as exc:  # a bug of ours: loud, and the client must not look alive
            logger.exception("order updates: unexpected error; stopping")
            self._fail(DhanError(f"order-update client crashed: {exc!r}"))

    def _connect_and_receive(self) -> float:
        """One connection's life; returns the delay before the next attempt. Raises _Fatal."""
        try:
            token = self._token_provider()
        except Exception as exc:
            self.last_error = f"token provider failed: {type(exc).__name__}"
            logger.warning("order updates: token provider failed: %r", exc)
            return self._backoff.next_delay()
        if token != self._last_token:
            self._last_token = token
            self.login_failures = 0  # a new token deserves fresh attempts
        secrets = (token, self.client_id)
        try:
            ws = websocket.create_connection(
                self.url, timeout=self.connect_timeout, enable_multithread=True
            )
        except Exception as exc:
            error = handshake_error(exc, secrets)
            self.last_error = str(error)
            if isinstance(error, AuthFailure):
                raise _Fatal(error) from exc
            logger.warning("order updates: connect failed: %s", error)
            if isinstance(error, RateLimited):
                return self._slow_backoff.next_delay()
            return self._backoff.next_delay()

        self.connects += 1
        connected_at = time.monotonic()
        got_message = False
        server_closed = False
        try:
            ws.settimeout(self.poll_interval)
            ws.send(login_message(self.client_id, token))
            self._ws = ws
            logger.info("order updates: connected, login sent")
            got_message, server_closed = self._receive(ws)
        except websocket.WebSocketConnectionClosedException:
            server_closed = True
            self.last_error = "server closed the connection"
        except (websocket.WebSocketException, OSError) as exc:
            self.last_error = redact(f"{type(exc).__name__}: {exc}", secrets)
            logger.warning("order updates: connection lost: %s", self.last_error)
        finally:
            self._ws = None
            self._close(ws)
        if self._stop_event.is_set():
            return 0.0
        lived = time.monotonic() - connected_at
        if server_closed and not got_message and lived < self.login_timeout:
            self.login_failures += 1
            logger.warning(
                "order updates: the server closed the connection %.1f s after the login "
                "without a message (%d/%d: looks like a rejected login)",
                lived,
                self.login_failures,
                self.max_login_failures,
            )
            if self.login_failures >= self.max_login_failures:
                raise _Fatal(
                    AuthFailure(
                        f"order-update login rejected {self.login_failures} times in a row "
                        "(the server closes the connection right after the LoginReq); a new "
                        "access token is needed"
                    )
                )
        if lived >= self.policy.healthy_after:
            self._backoff.reset()
            self._slow_backoff.reset()
        return self._backoff.next_delay()

    def _receive(self, ws: websocket.WebSocket) -> tuple[bool, bool]:
        """Read until the connection ends: (any message received, the server ended it)."""
        stop = self._stop_event
        put = self._dispatcher.put
        got_message = False
        while True:
            try:
                opcode, data = ws.recv_data()
            except websocket.WebSocketTimeoutException:
                if stop.is_set():
                    return got_message, False
                continue
            if opcode == ABNF.OPCODE_CLOSE:
                self.last_error = "server closed the connection"
                return got_message, True
            if opcode not in (ABNF.OPCODE_TEXT, ABNF.OPCODE_BINARY):
                continue
            got_message = True
            self.login_failures = 0
            self.messages += 1
            self.last_message_at = time.time()
            try:
                results = parse_frame(data)
            except BadOrderUpdate as exc:
                # Never the frame itself in the log: it carries the client id.
                self.bad_messages += 1
                logger.warning("order updates: skipping an unreadable message: %s", exc)
                continue
            for result in results:
                if isinstance(result, OrderUpdate):
                    self.updates += 1
                    put(result)
                else:
                    self.other_messages += 1
                    logger.debug("order updates: message of type %r ignored", result.type)
            if stop.is_set():
                return got_message, False

    def _close(self, ws: websocket.WebSocket) -> None:
        try:
            ws.close(timeout=self.close_timeout)
        except Exception:
            ws.shutdown()
