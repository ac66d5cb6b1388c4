"""Pieces shared by the two Dhan WebSocket clients (``feed.py`` and ``order_updates.py``).

* :class:`ReconnectPolicy` / :class:`Backoff`: capped exponential reconnect delays with jitter,
  a longer schedule for a throttled handshake (HTTP 429), reset after a healthy connection.
* :class:`Dispatcher`: the bounded hand-off from socket threads to the one thread that runs
  user callbacks, so a slow consumer never blocks a socket (see its docstring for the policy).
* :func:`handshake_error`: a failed connect / upgrade as the :mod:`trading.dhan.errors` class
  that says what to do (retry, back off harder, stop).
* :func:`split_frames`: the feed's inbound WebSocket frame parser (why it exists: see there).

No Django here; the clients' ``from_settings()`` read the settings.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import websocket

from trading.dhan.errors import (
    AuthFailure,
    DhanError,
    RateLimited,
    Retryable,
    backoff_ceiling,
    redact,
)

__all__ = [
    "MAX_FRAME_PAYLOAD",
    "Backoff",
    "ClientState",
    "Dispatcher",
    "ReconnectPolicy",
    "handshake_error",
    "split_frames",
]

T = TypeVar("T")


class ClientState:
    """States of a client and of each feed connection (plain strings: they go into stats/logs)."""

    NEW = "new"  # constructed, not started
    CONNECTING = "connecting"  # TCP + WebSocket upgrade (and subscribe / login) in progress
    CONNECTED = "connected"  # receiving
    BACKOFF = "backoff"  # waiting before the next connection attempt
    RUNNING = "running"  # client level: started, not stopped
    STOPPED = "stopped"  # stop() was called (or the connection's thread ended with it)
    FAILED = "failed"  # a fatal error (auth failure...) stopped it; see ``error``


class FatalStop:
    """The fatal-stop lifecycle both WebSocket clients share: ``_fail`` and ``wait``.

    The client's ``__init__`` sets ``_lock``, ``error``, ``state``, ``_stop_event``, ``_done``,
    ``_dispatcher``, ``_on_fatal`` and ``_log``; ``_fail_name`` names it in logs.
    """

    _fail_name = "client"
    _lock: threading.Lock
    error: DhanError | None
    state: str
    _stop_event: threading.Event
    _done: threading.Event
    _dispatcher: Dispatcher[Any]
    _on_fatal: Callable[[DhanError], object] | None
    _log: logging.Logger
    _stopping = False

    def wait(self, timeout: float | None = None) -> DhanError | None:
        """Block until the client stops or fails (or ``timeout``); the fatal error, if any."""
        self._done.wait(timeout)
        return self.error

    def _fail(self, error: DhanError) -> None:
        """Stop for good on ``error`` (once; not after a stop()) and tell ``on_fatal``."""
        with self._lock:
            if self.error is not None or self.state == ClientState.STOPPED:
                return
            self.error = error
            self.state = ClientState.FAILED
        self._log.critical("dhan %s stopped: %s", self._fail_name, error)
        self._stopping = True
        self._stop_event.set()
        self._dispatcher.request_stop()
        self._done.set()
        if self._on_fatal is not None:
            try:
                self._on_fatal(error)
            except Exception:
                self._log.exception("%s on_fatal callback failed", self._fail_name)


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """How long to wait before reconnecting, in seconds.

    ``base``/``cap``: ordinary drops (network, server restart, stall): ``base`` doubling up to
    ``cap`` (zulip's 1 s doubling to 30 s). ``rate_limited_base``/``rate_limited_cap``: an HTTP
    429 on the handshake or a 805 "too many connections" disconnect: the broker is refusing us,
    and hammering it keeps the block alive (the Ruby gem waits 60 s; OpenAlgo gives up).
    ``healthy_after``: a connection that stayed up this long resets both schedules, so one
    flaky minute in the afternoon does not start at the 30 s delay the morning's outage reached.
    """

    base: float = 1.0
    cap: float = 30.0
    rate_limited_base: float = 30.0
    rate_limited_cap: float = 120.0
    healthy_after: float = 60.0

    def __post_init__(self) -> None:
        for name in ("base", "cap", "rate_limited_base", "rate_limited_cap"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ReconnectPolicy.{name} must be positive")
        if self.healthy_after < 0:
            raise ValueError("ReconnectPolicy.healthy_after must be >= 0")


class Backoff:
    """Reconnect delays: capped exponential with "equal jitter".

    Delay ``n`` is uniform in ``[c/2, c]`` with ``c = min(cap, base * 2**n)``
    (:func:`trading.dhan.errors.backoff_ceiling`). Unlike the REST retries' full jitter this keeps
    a floor of half the ceiling: a reconnect loop against a dead host must never spin at ~0 s,
    while five shards that dropped together still spread out. Not thread-safe: one per
    connection thread.
    """

    def __init__(self, base: float, cap: float, rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = backoff_ceiling(self.attempt, base=self.base, cap=self.cap)
        self.attempt += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


def handshake_error(exc: BaseException, secrets: tuple[str, ...] = ()) -> DhanError:
    """A failed connect / WebSocket upgrade as the error class that says what to do.

    * HTTP 429 on the upgrade -> :class:`RateLimited` (data plan inactive or client throttled:
      back off on the long schedule).
    * HTTP 401 / 403 -> :class:`AuthFailure` (stop: a reconnect cannot fix credentials).
    * Anything else (other statuses, refused, DNS, timeouts, TLS, a cut mid-handshake) ->
      :class:`Retryable`.

    The message is redacted (the feed URL carries the token and the client id).
    """
    detail = redact(f"{type(exc).__name__}: {exc}", secrets)
    if isinstance(exc, websocket.WebSocketBadStatusException):
        status = exc.status_code
        # The exception text includes the response headers and body: keep only the status line.
        detail = f"WebSocket upgrade answered HTTP {status}"
        if status == 429:
            return RateLimited(detail, status=status)
        if status in (401, 403):
            return AuthFailure(detail, status=status)
        return Retryable(detail, status=status)
    return Retryable(f"connection failed: {detail}")


class Dispatcher(Generic[T]):
    """Bounded hand-off from socket threads to one consumer thread that runs the callback.

    Policy: **drop oldest**. The buffer holds at most ``capacity`` items (a feed frame's
    packet list, or one order update); when a socket thread hands over an item and the buffer is
    full, the oldest item is discarded and counted (``dropped`` items, ``dropped_weight`` e.g.
    packets). Why not block: a socket thread that stops reading stops answering pings, and Dhan
    closes the feed after 40 s without a pong (DhanHQ-py #72), which loses everything. Why
    oldest rather than newest: every consumer keeps the latest value per instrument (the tick
    cache), so the newest frames are the ones worth having; a non-zero ``dropped`` is the
    signal that the consumer is too slow. Why not coalesce per instrument (keep only the
    latest tick per key): it costs a dict update per packet on the socket thread plus a locked
    swap, reorders packets across instruments, and merges away the intermediate trades a
    candle builder needs; drop-oldest keeps arrival order at the cost of one deque append.
    Memory is bounded by ``capacity`` items (plus one per producer thread in a race) times the
    largest item.

    Latency: after a wake-up the consumer sleeps ``linger`` seconds (default 0.5 ms) before
    draining, so a burst of frames costs one thread hand-over instead of one per frame; a tick
    reaches the callback at most about ``linger`` later than without it (Dhan's ticks are tens
    of milliseconds apart per instrument; 0 disables it).

    ``on_drained``: called on the dispatcher thread each time it has emptied the buffer after
    delivering at least one item (the end of a burst), e.g. to write a batch.

    Thread-safety: ``put`` may be called from several threads; the callback runs only on the
    dispatcher's own thread, one item at a time, in arrival order. An exception from the
    callback is logged with the item's context and counted; the next item is delivered (one
    poison item must never stop the feed).
    """

    def __init__(
        self,
        name: str,
        handler: Callable[[T], object],
        *,
        capacity: int = 10_000,
        weigh: Callable[[T], int] | None = None,
        heartbeat: Callable[[], object] | None = None,
        heartbeat_interval: float = 60.0,
        linger: float = 0.0005,
        logger: logging.Logger | None = None,
        on_drained: Callable[[], object] | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"dispatcher capacity must be >= 1, got {capacity}")
        self.name = name
        self.capacity = capacity
        self._handler = handler
        self._weigh = weigh
        self._heartbeat = heartbeat
        self._heartbeat_interval = heartbeat_interval
        self._linger = linger
        self._on_drained = on_drained
        self._log = logger or logging.getLogger(__name__)
        self._items: deque[T] = deque()
        self._lock = threading.Lock()  # drop counters only (the slow path of put)
        self._wakeup = threading.Event()
        # True while the consumer is (about to be) asleep: producers only pay for
        # Event.set() then, not on every item.
        self._idle = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.delivered = 0
        self.dropped = 0
        self.dropped_weight = 0
        self.handler_errors = 0

    # -- producer side (socket threads) ------------------------------------------------------

    def put(self, item: T) -> None:
        """Queue ``item`` for the callback; never blocks on the consumer.

        Hot path (once per feed frame): no lock unless the buffer is full. ``deque.append`` /
        ``popleft`` are atomic, so producers and the consumer need no lock to share it; with
        several producers the length may overshoot ``capacity`` by at most one item each.
        """
        items = self._items
        if len(items) >= self.capacity:
            self._drop_oldest()
        items.append(item)
        if self._idle:
            self._wakeup.set()

    def _drop_oldest(self) -> None:
        # Only the counters need the lock (several socket threads); the item popped is the one
        # counted, so the figures are exact even if the consumer popped concurrently.
        with self._lock:
            while len(self._items) >= self.capacity:
                try:
                    old = self._items.popleft()
                except IndexError:  # the consumer emptied it meanwhile
                    return
                self.dropped += 1
                self.dropped_weight += self._weigh(old) if self._weigh else 1

    @property
    def pending(self) -> int:
        return len(self._items)

    # -- consumer side -----------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the thread to finish (it delivers what is queued first); does not wait."""
        self._stopping = True
        self._wakeup.set()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop and join; False (and an error log) when the callback is still busy after
        ``timeout`` seconds. The thread is a daemon: a stuck callback never blocks exit."""
        self.request_stop()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        if thread.is_alive():
            self._log.error(
                "%s: callback still running after %.1f s at stop; %d items left undelivered",
                self.name,
                timeout,
                self.pending,
            )
            return False
        return True

    def _run(self) -> None:
        items = self._items
        popleft = items.popleft
        handler = self._handler
        next_beat = time.monotonic() + self._heartbeat_interval
        on_drained = self._on_drained
        while True:
            delivered = self.delivered
            while True:
                try:
                    item = popleft()
                except IndexError:
                    break
                try:
                    handler(item)
                except Exception:
                    self.handler_errors += 1
                    self._log.exception(
                        "%s: callback failed on %s; skipping it", self.name, _describe(item)
                    )
                self.delivered += 1
            if on_drained is not None and self.delivered != delivered:
                # The burst is handled: a consumer that batches (the feed hub writes to Redis
                # once per burst) acts now, on this thread, with no extra thread hop.
                try:
                    on_drained()
                except Exception:
                    self.handler_errors += 1
                    self._log.exception("%s: on_drained callback failed", self.name)
            if self._heartbeat is not None and time.monotonic() >= next_beat:
                next_beat = time.monotonic() + self._heartbeat_interval
                try:
                    self._heartbeat()
                except Exception:
                    self._log.exception("%s: heartbeat failed", self.name)
            if self._stopping:
                return
            # Sleep until a producer sees _idle and sets the event. Clear first, then re-check
            # the buffer: an item put between the check and the wait has set the event.
            self._wakeup.clear()
            self._idle = True
            if not items and not self._stopping:
                self._wakeup.wait(min(1.0, self._heartbeat_interval))
            self._idle = False
            if self._linger:
                # Let a burst accumulate: one wake-up (and one GIL hand-over between the
                # socket thread and this one) per burst instead of per frame. Waking per frame
                # cost ~2/3 of the throughput in bench/feed_client.py. Bounded added latency.
                time.sleep(self._linger)


def _describe(item: object) -> str:
    # Enough to find the culprit in a log without dumping a whole frame (or an order's raw
    # dict, which holds the client id).
    if isinstance(item, list):
        head = item[0] if item else None
        return f"a frame of {len(item)} packets (first: {type(head).__name__} {_key(head)})"
    return f"{type(item).__name__} {_key(item)}"


def _key(item: object) -> str:
    for attr in ("key", "order_id"):
        value = getattr(item, attr, None)
        if value is not None:
            return str(value)
    return ""


# ---------------------------------------------------------------------------------------------
# Inbound frames

# Far above anything Dhan sends (a frame is one or a few packets of <= 162 bytes); a length field
# beyond it is corruption or abuse, and is refused before any memory is reserved for it.
MAX_FRAME_PAYLOAD = 1 << 24


def split_frames(
    buf: bytes, max_payload: int = MAX_FRAME_PAYLOAD
) -> tuple[list[tuple[int, bytes]], int]:
    """The complete WebSocket frames at the start of ``buf``, as sent by a server (RFC 6455 5.2).

    Returns ``([(first_byte, payload), ...], bytes_consumed)``; the caller keeps
    ``buf[bytes_consumed:]`` (an incomplete frame) and appends the next read to it.
    ``first_byte & 0x80`` is FIN and ``first_byte & 0x0F`` the opcode; fragmentation and
    control frames are the caller's business.

    Why the feed does not use websocket-client's ``recv_data()``: it issues two or three socket
    reads per frame (header, extended length, payload), each a syscall that also drops and
    retakes the GIL, and Dhan sends one small packet per frame. Reading 64 KiB at a time and
    splitting here costs a fraction of that (bench/feed_client.py). websocket-client still does
    the handshake, TLS, every send (subscriptions, pongs) and the close.

    Raises ``websocket.WebSocketProtocolException`` for what a client must fail the connection
    on: a masked frame (servers never mask), RSV bits (no extension was negotiated) or a payload
    longer than ``max_payload``.
    """
    frames: list[tuple[int, bytes]] = []
    append = frames.append
    n = len(buf)
    pos = 0
    while n - pos >= 2:
        b1 = buf[pos + 1]
        if b1 & 0x80:
            raise websocket.WebSocketProtocolException("the server sent a masked frame")
        length = b1 & 0x7F
        if length < 126:
            start = pos + 2
        elif length == 126:
            if n - pos < 4:
                break
            length = (buf[pos + 2] << 8) | buf[pos + 3]
            start = pos + 4
        else:
            if n - pos < 10:
                break
            length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
            start = pos + 10
        if length > max_payload:
            raise websocket.WebSocketProtocolException(
                f"frame of {length} bytes exceeds the {max_payload}-byte limit"
            )
        end = start + length
        if end > n:
            break
        b0 = buf[pos]
        if b0 & 0x70:
            raise websocket.WebSocketProtocolException(f"frame with RSV bits set ({b0:#04x})")
        append((b0, buf[start:end]))
        pos = end
    return frames, pos
