"""Dhan live market-feed client (WebSocket v2, PROTOCOL.md section 2) on websocket-client.

    client = FeedClient(url, client_id, token_provider, on_packets)
    client.subscribe(["IDX_I:13", "NSE_FNO:55796"], "quote")
    client.start()
    ...
    client.subscribe(["NSE_FNO:55797"], "full")      # while connected
    client.stop()

Threads: one per connection ("shard") that only reads the socket (64 KiB at a time, frames
split by :func:`ws_support.split_frames`; websocket-client does the handshake, TLS, sends,
pongs and the close), decodes frames with :func:`trading.dhan.feed_codec.decode_frame`
(several packets per frame are fine) and hands the packet list of each frame to one
dispatcher thread through a bounded drop-oldest buffer (:class:`ws_support.Dispatcher`); the
user's ``on_packets(list[Packet])`` runs on the dispatcher thread only. A slow callback
therefore never stops a socket from reading (and from answering the server's pings: Dhan
closes a connection after 40 s without a pong, DhanHQ-py #72); frames it could not keep up
with are dropped oldest first and counted in ``stats().dropped_frames`` / ``dropped_packets``.

Sharding: Dhan allows 5 connections of 5,000 instruments each (100 per subscribe message).
New instruments fill the first connection with room, then open the next one; asking for more
than ``max_connections * max_instruments_per_connection`` raises ValueError before anything
changes. A connection whose instruments are all unsubscribed stays open (cheap, and the next
subscribe reuses it).

Reconnect: any drop (network error, close frame, a disconnect packet with a non-fatal code,
the stall watchdog) makes that shard reconnect after a capped exponential delay with jitter
(:class:`ws_support.ReconnectPolicy`), re-reading the token from ``token_provider`` first and
re-sending every subscription of the shard. The schedule resets after a connection stayed
healthy for ``policy.healthy_after`` seconds. An HTTP 429 on the upgrade, or disconnect code
805 (another session took one of the 5 slots), uses the long schedule.

Fatal (no reconnect storm): disconnect codes 806 (no data plan), 807 (token expired), 808/809
(auth failed, token invalid), 810 (client id invalid), an HTTP 401/403 on the upgrade
(:class:`AuthFailure`), and 804 (too many instruments: a configuration bug a reconnect would
repeat; :class:`Rejected`). The client then stops every shard, ``state`` becomes
``"failed"``, ``error`` holds the exception, ``wait()`` returns it and ``on_fatal(error)`` is
called once (on the socket thread that saw it: keep it short). One exception: on 807/808/809,
if the token provider already returns a *different* token than the one the connection used
(the token was rotated while the connection was open), the shard reconnects with it instead.

Stall watchdog: a connection that delivers no data frame for ``stall_timeout`` seconds while
``market_open()`` is true is torn down and reconnected (Dhan's pings keep a stalled socket
"alive", so only data counts). After hours Dhan sends one packet per instrument and then
nothing (DhanHQ-py #74), hence the market-hours callable, which the caller supplies (the feed
hub judges the session of config/algo.yml on its market clock); without one the watchdog is
always armed.

stop() sends ``{"RequestCode":12}``, closes each socket with a timeout, and joins every thread
with a timeout; a dead socket cannot make it hang (cf. DhanHQ-py #139, where the SDK's
``close_connection()`` blocks forever). The access token and client id never appear in logs
or exception texts (the URL carries both).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import websocket
from websocket import ABNF

from trading.dhan.errors import AuthFailure, DhanError, RateLimited, Rejected, redact
from trading.dhan.feed_codec import (
    DISCONNECT_REASONS,
    MAX_INSTRUMENTS_PER_CONNECTION,
    Disconnect,
    FeedMode,
    FeedStats,
    InstrumentRef,
    Packet,
    decode_frame,
    disconnect_message,
    split_instrument_key,
    subscribe_messages,
    unsubscribe_messages,
)
from trading.dhan.ws_support import (
    Backoff,
    ClientState,
    Dispatcher,
    FatalStop,
    ReconnectPolicy,
    handshake_error,
    split_frames,
)
from trading.rules.market import instrument_key

__all__ = ["FeedClient", "FeedClientStats", "ShardStats", "feed_url"]

logger = logging.getLogger(__name__)

MAX_CONNECTIONS = 5
# Codes after which reconnecting cannot help (see the module docstring).
_AUTH_CODES = frozenset({806, 807, 808, 809, 810})
_TOKEN_CODES = frozenset({807, 808, 809})  # a rotated token may cure these
_TOO_MANY_INSTRUMENTS = 804
_TOO_MANY_CONNECTIONS = 805

_OP_BINARY = ABNF.OPCODE_BINARY
_OP_CLOSE = ABNF.OPCODE_CLOSE
_OP_PING = ABNF.OPCODE_PING
_OP_PONG = ABNF.OPCODE_PONG
_READ_SIZE = 1 << 16


def feed_url(base_url: str, token: str, client_id: str) -> str:
    """``{base}?version=2&token=..&clientId=..&authType=2`` (PROTOCOL.md 2.1). Holds secrets."""
    query = urlencode({"version": 2, "token": token, "clientId": client_id, "authType": 2})
    return f"{base_url}{'&' if '?' in base_url else '?'}{query}"


@dataclass(frozen=True, slots=True)
class ShardStats:
    """One connection. Times are ``time.time()`` epochs (None: never)."""

    index: int
    state: str
    instruments: int
    connects: int  # successful upgrades
    reconnects: int  # connection attempts scheduled after a drop or a failed attempt
    frames: int
    packets: int
    bad_packets: int  # garbage + truncated + unknown codes, skipped (FeedStats)
    stalls: int
    last_frame_at: float | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class FeedClientStats:
    """A snapshot of the whole client; sums over shards plus the dispatcher's counters."""

    state: str
    frames: int
    packets: int
    bad_packets: int
    reconnects: int
    dropped_frames: int  # frames discarded because the callback fell behind (drop-oldest)
    dropped_packets: int
    pending_frames: int  # decoded, waiting for the callback
    callback_errors: int
    last_frame_at: float | None
    shards: tuple[ShardStats, ...]

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__slots__ if k != "shards"}
        out["shards"] = [{k: getattr(s, k) for k in s.__slots__} for s in self.shards]
        return out


class _Fatal(Exception):
    """Internal: a shard thread hit a fatal error; carries the DhanError."""

    def __init__(self, error: DhanError) -> None:
        super().__init__(str(error))
        self.error = error


class _Shard:
    """One feed connection and the instruments it carries. Its thread owns the socket reads and
    ``feed_stats``; ``lock`` guards ``subscriptions`` and ``ws`` against the caller's
    subscribe/unsubscribe."""

    def __init__(self, client: FeedClient, index: int) -> None:
        self.client = client
        self.index = index
        self.subscriptions: dict[str, FeedMode] = {}
        self.lock = threading.Lock()
        self.ws: websocket.WebSocket | None = None  # set only while subscribed and receiving
        self.thread: threading.Thread | None = None
        self.state = ClientState.NEW
        self.feed_stats = FeedStats()
        self.connects = 0
        self.reconnects = 0
        self.stalls = 0
        self.last_frame = 0.0  # time.monotonic() of the last data frame; 0.0: none yet
        self.subscribed_at = 0.0  # time.monotonic() of the last (re)subscription
        self.last_error: str | None = None
        self.rng = random.Random(client._rng.random())
        self.backoff = Backoff(client.policy.base, client.policy.cap, self.rng)
        self.slow_backoff = Backoff(
            client.policy.rate_limited_base, client.policy.rate_limited_cap, self.rng
        )

    # -- thread ------------------------------------------------------------------------------

    def start(self) -> None:
        self.thread = threading.Thread(
            target=self._run, name=f"dhan-feed-{self.index}", daemon=True
        )
        self.thread.start()

    def _run(self) -> None:
        client = self.client
        stop = client._stop_event
        try:
            while not stop.is_set():
                delay = self._connect_and_receive()
                if stop.is_set():
                    break
                self.reconnects += 1
                self.state = ClientState.BACKOFF
                logger.info("feed shard %d: reconnecting in %.2f s", self.index, delay)
                stop.wait(delay)
        except _Fatal as fatal:
            client._fail(fatal.error)
        except Exception as exc:  # a bug of ours: loud, and the client must not look alive
            logger.exception("feed shard %d: unexpected error; stopping the client", self.index)
            client._fail(DhanError(f"feed shard {self.index} crashed: {exc!r}"))
        finally:
            self.state = ClientState.FAILED if client.error is not None else ClientState.STOPPED

    def _connect_and_receive(self) -> float:
        """One connection's life; returns the delay before the next attempt. Raises _Fatal."""
        client = self.client
        self.state = ClientState.CONNECTING
        try:
            token = client._token_provider()
        except Exception as exc:
            # The provider reads a file/DB/Redis: a transient failure there is a retry.
            self.last_error = f"token provider failed: {type(exc).__name__}"
            logger.warning("feed shard %d: token provider failed: %r", self.index, exc)
            return self.backoff.next_delay()
        secrets = (token, client.client_id)
        try:
            ws = websocket.create_connection(
                feed_url(client.url, token, client.client_id),
                timeout=client.connect_timeout,
                skip_utf8_validation=True,
                enable_multithread=True,
            )
        except Exception as exc:
            error = handshake_error(exc, secrets)
            self.last_error = str(error)
            if isinstance(error, AuthFailure):
                raise _Fatal(error) from exc
            logger.warning("feed shard %d: connect failed: %s", self.index, error)
            if isinstance(error, RateLimited):
                return self.slow_backoff.next_delay()
            return self.backoff.next_delay()

        connected_at = time.monotonic()
        self.connects += 1
        try:
            ws.settimeout(client.poll_interval)
            self._subscribe_all(ws)
            self.state = ClientState.CONNECTED
            logger.info(
                "feed shard %d: connected, %d instruments", self.index, len(self.subscriptions)
            )
            slow = self._receive(ws, token, connected_at)
        except (websocket.WebSocketException, OSError) as exc:
            # Drops are expected events: WebSocketConnectionClosedException, resets, timeouts
            # of a send. Redacted: some messages quote the request line.
            self.last_error = redact(f"{type(exc).__name__}: {exc}", secrets)
            logger.warning("feed shard %d: connection lost: %s", self.index, self.last_error)
            slow = False
        finally:
            with self.lock:
                self.ws = None
            self._close(ws)
        if time.monotonic() - connected_at >= client.policy.healthy_after:
            self.backoff.reset()
            self.slow_backoff.reset()
        return self.slow_backoff.next_delay() if slow else self.backoff.next_delay()

    def _subscribe_all(self, ws: websocket.WebSocket) -> None:
        # Under the lock, so a concurrent subscribe() either lands in this snapshot or sees
        # self.ws set and sends its own message: never lost (at worst sent twice, harmless).
        with self.lock:
            for mode, keys in _by_mode(self.subscriptions).items():
                for message in subscribe_messages(keys, mode):
                    ws.send(message)
            self.ws = ws
        self.subscribed_at = time.monotonic()  # the stall clock starts at subscription

    def _receive(self, ws: websocket.WebSocket, token: str, connected_at: float) -> bool:
        """Read until the connection ends; True when the next delay is the long one.

        Reads the socket 64 KiB at a time and splits frames with :func:`split_frames` (see
        there for why not ``ws.recv_data()``); pings are answered through ``ws.pong``.
        """
        client = self.client
        put = client._dispatcher.put
        inline = client.inline
        burst: list[Packet] = []  # inline mode: the packets of one socket read
        stats = self.feed_stats
        sock = ws.sock
        recv = sock.recv
        monotonic = time.monotonic
        now = datetime.now
        disconnects_seen = stats.disconnect
        hook = client.frame_hook
        # websocket-client reads the handshake byte by byte, so this is empty; but nothing it
        # may have buffered must be lost.
        buf = b"".join(ws.frame_buffer.recv_buffer)
        ws.frame_buffer.recv_buffer = []
        fragments: list[bytes] = []
        fragment_opcode = 0
        received = now(UTC)
        while True:
            frames, used = split_frames(buf)
            if used:
                buf = buf[used:]
            for first, payload in frames:
                opcode = first & 0x0F
                if opcode == _OP_BINARY and first & 0x80:
                    data = payload  # the common case: a whole binary frame
                elif opcode <= _OP_BINARY:
                    # Fragmented message (opcode 0 continues a text/binary one). A text frame
                    # is not something the feed sends: decode_frame counts it as garbage.
                    if opcode:
                        fragments, fragment_opcode = [payload], opcode
                    elif fragment_opcode:
                        fragments.append(payload)
                    else:
                        raise websocket.WebSocketProtocolException("continuation without a start")
                    if not first & 0x80:
                        continue
                    data = b"".join(fragments)
                    fragments, fragment_opcode = [], 0
                elif opcode == _OP_PING:
                    ws.pong(payload)
                    continue
                elif opcode == _OP_PONG:
                    continue
                elif opcode == _OP_CLOSE:
                    self.last_error = "server closed the connection"
                    logger.warning("feed shard %d: %s", self.index, self.last_error)
                    return False  # _close() answers it with our close frame
                else:
                    raise websocket.WebSocketProtocolException(f"unknown opcode {opcode}")
                self.last_frame = monotonic()
                if hook is not None:
                    hook(data, received.timestamp())
                packets = decode_frame(data, received, stats)
                if packets:
                    if inline:
                        burst += packets
                    else:
                        put(packets)
                if stats.disconnect != disconnects_seen:
                    disconnects_seen = stats.disconnect
                    for packet in packets:
                        if type(packet) is Disconnect:
                            if burst:
                                client._deliver_inline(burst)
                            return self._on_disconnect(packet, token)
            if burst:
                client._deliver_inline(burst)
                burst = []
            if client._stopping:  # a plain attribute: Event.is_set() per read is dearer
                self._polite_close(ws)
                return False
            try:
                chunk = recv(_READ_SIZE)
            except TimeoutError:
                # The poll tick: check stop and the stall watchdog, then keep reading. The
                # partial frame in buf, if any, stays for the next read.
                if client._stopping:
                    self._polite_close(ws)
                    return False
                if self._stalled():
                    return False
                continue
            if not chunk:
                raise websocket.WebSocketConnectionClosedException(
                    "the server closed the TCP connection"
                )
            buf = buf + chunk if buf else chunk
            # One receive time per read: every frame in it arrived together.
            received = now(UTC)

    def _stalled(self) -> bool:
        client = self.client
        quiet_since = max(self.last_frame, self.subscribed_at)
        market_open = client._market_open
        if time.monotonic() - quiet_since > client.stall_timeout and (
            market_open is None or market_open()
        ):
            self.stalls += 1
            self.last_error = f"no data for {client.stall_timeout:.1f} s (stalled)"
            logger.warning("feed shard %d: %s; reconnecting", self.index, self.last_error)
            return True
        return False

    def _on_disconnect(self, packet: Disconnect, token: str) -> bool:
        """Code-50 packet: raise _Fatal, or say which reconnect schedule to use."""
        code = packet.reason_code
        reason = DISCONNECT_REASONS.get(code, "unknown reason")
        self.last_error = f"disconnect packet {code}: {reason}"
        if code in _AUTH_CODES:
            if code in _TOKEN_CODES and self._token_rotated(token):
                logger.warning(
                    "feed shard %d: %s; the token provider has a new token, reconnecting",
                    self.index,
                    self.last_error,
                )
                return False
            raise _Fatal(
                AuthFailure(
                    f"feed disconnected with {code} ({reason}); stopping the feed, a new "
                    "access token or data plan is needed",
                    code=str(code),
                )
            )
        if code == _TOO_MANY_INSTRUMENTS:
            raise _Fatal(
                Rejected(
                    f"feed disconnected with 804 ({reason}) on a connection holding "
                    f"{len(self.subscriptions)} instruments; check max_instruments_per_connection",
                    code="804",
                )
            )
        logger.warning("feed shard %d: %s; reconnecting", self.index, self.last_error)
        return code == _TOO_MANY_CONNECTIONS

    def _token_rotated(self, used: str) -> bool:
        try:
            return self.client._token_provider() != used
        except Exception:
            return False

    def _polite_close(self, ws: websocket.WebSocket) -> None:
        # RequestCode 12 first, as the SDK does, so the server frees the slot at once.
        try:
            ws.send(disconnect_message())
        except (websocket.WebSocketException, OSError):
            pass

    def _close(self, ws: websocket.WebSocket) -> None:
        try:
            # close() waits for the server's close frame at most close_timeout, and its sends
            # are bounded by the poll-interval socket timeout: no hang on a dead peer.
            ws.close(timeout=self.client.close_timeout)
        except Exception:  # already dead: just release the descriptor
            ws.shutdown()

    # -- caller side (under the client's lock) -----------------------------------------------

    def send_changes(self, added: dict[str, FeedMode], removed: dict[str, FeedMode]) -> None:
        """Record and, when connected, send subscribe/unsubscribe messages."""
        with self.lock:
            for key in removed:
                self.subscriptions.pop(key, None)
            self.subscriptions.update(added)
            ws = self.ws
            if ws is None:
                return  # the next (re)connect sends the whole set
            messages: list[str] = []
            for mode, keys in _by_mode(removed).items():
                messages.extend(unsubscribe_messages(keys, mode))
            for mode, keys in _by_mode(added).items():
                messages.extend(subscribe_messages(keys, mode))
            try:
                for message in messages:
                    ws.send(message)
            except (websocket.WebSocketException, OSError) as exc:
                # A half-sent frame would corrupt the stream: cut the connection; the socket
                # thread reconnects and re-sends the whole (already updated) set.
                logger.warning(
                    "feed shard %d: sending a subscription change failed (%s); reconnecting",
                    self.index,
                    type(exc).__name__,
                )
                ws.abort()

    def snapshot(self) -> ShardStats:
        s = self.feed_stats
        return ShardStats(
            index=self.index,
            state=self.state,
            instruments=len(self.subscriptions),
            connects=self.connects,
            reconnects=self.reconnects,
            frames=s.frames,
            packets=s.packets,
            bad_packets=s.garbage + s.truncated + s.unknown,
            stalls=self.stalls,
            last_frame_at=_wall(self.last_frame) if self.last_frame else None,
            last_error=self.last_error,
        )


def _by_mode(subscriptions: dict[str, FeedMode]) -> dict[FeedMode, list[str]]:
    grouped: dict[FeedMode, list[str]] = {}
    for key, mode in subscriptions.items():
        grouped.setdefault(mode, []).append(key)
    return grouped


def _wall(monotonic_time: float) -> float:
    return time.time() - (time.monotonic() - monotonic_time)


def _mode(mode: FeedMode | str | int) -> FeedMode:
    if isinstance(mode, FeedMode):
        return mode
    if isinstance(mode, str):
        try:
            return FeedMode[mode.upper()]
        except KeyError:
            raise ValueError(
                f"unknown feed mode {mode!r}; expected ticker, quote or full"
            ) from None
    return FeedMode(mode)


def _normalise(instruments: Iterable[InstrumentRef]) -> list[str]:
    """The valid keys, normalised; a bad one (no such segment, an id beyond the feed's u32) is
    logged and skipped, so one bad instrument never sinks the batch it came with."""
    keys: list[str] = []
    seen: set[str] = set()
    for ref in instruments:
        raw = ref if isinstance(ref, str) else instrument_key(ref[0], ref[1])
        try:
            seg, sid = split_instrument_key(raw)
        except ValueError as exc:
            logger.error("feed: skipping instrument %r: %s", raw, exc)
            continue
        key = instrument_key(seg, sid)
        if key not in seen:
            seen.add(key)
            keys.append(key)
    return keys


class FeedClient(FatalStop):
    """The market-feed client; see the module docstring.

    ``url``: ``DHANHQ_WS_URL`` (``wss://api-feed.dhan.co``; the query string is added here).
    ``token_provider``: returns the current access token; called before every connection
    attempt (and on 807/808/809 to detect a rotation). ``on_packets``: called on the dispatcher
    thread with the decoded packets of one frame (ticks, OI, prev close, market status and
    disconnect packets), in arrival order per connection. ``market_open``: the stall
    watchdog only fires while it returns True. ``on_fatal``: called once with the error that
    stopped the client. ``frame_hook(data, received_epoch)``: every raw data frame, on the
    socket thread, before decoding (a recorder). ``on_drained()``: on the dispatcher thread
    after each burst of frames (see ``ws_support.Dispatcher``).
    """

    _fail_name = "feed"
    _log = logger

    def __init__(
        self,
        url: str,
        client_id: str,
        token_provider: Callable[[], str],
        on_packets: Callable[[list[Packet]], object],
        *,
        max_connections: int = MAX_CONNECTIONS,
        max_instruments_per_connection: int = MAX_INSTRUMENTS_PER_CONNECTION,
        policy: ReconnectPolicy | None = None,
        stall_timeout: float = 30.0,
        market_open: Callable[[], bool] | None = None,
        on_fatal: Callable[[DhanError], object] | None = None,
        connect_timeout: float = 10.0,
        poll_interval: float = 0.5,
        close_timeout: float = 2.0,
        buffer_capacity: int = 10_000,
        heartbeat_interval: float = 60.0,
        rng: random.Random | None = None,
        frame_hook: Callable[[bytes, float], object] | None = None,
        on_drained: Callable[[], object] | None = None,
        inline: bool = False,
    ) -> None:
        if not 1 <= max_connections <= MAX_CONNECTIONS:
            raise ValueError(f"max_connections must be 1..{MAX_CONNECTIONS}, got {max_connections}")
        if not 1 <= max_instruments_per_connection <= MAX_INSTRUMENTS_PER_CONNECTION:
            raise ValueError(
                "max_instruments_per_connection must be 1.."
                f"{MAX_INSTRUMENTS_PER_CONNECTION}, got {max_instruments_per_connection}"
            )
        if not client_id:
            raise ValueError("FeedClient needs a client id")
        if stall_timeout <= 0 or poll_interval <= 0:
            raise ValueError("stall_timeout and poll_interval must be positive")
        self.url = url
        self.client_id = str(client_id)
        self.max_connections = max_connections
        self.max_instruments_per_connection = max_instruments_per_connection
        self.policy = policy or ReconnectPolicy()
        self.stall_timeout = stall_timeout
        self.connect_timeout = connect_timeout
        # The socket read timeout: how quickly stop() and the stall watchdog are noticed.
        self.poll_interval = min(poll_interval, stall_timeout / 2)
        self.close_timeout = close_timeout
        self._token_provider = token_provider
        self._market_open = market_open
        self._on_fatal = on_fatal
        # Called on the socket thread with every data frame's raw bytes and its receive time
        # (epoch seconds), before decoding: the feed hub's recorder. Must be cheap and must
        # not raise (an exception would count as a connection failure).
        self.frame_hook = frame_hook
        # Inline: on_packets runs on the socket thread, once per socket read with every packet
        # of that read, then on_drained; no dispatcher thread in between. For a consumer that
        # is fast and never blocks (the feed hub merges into memory and publishes from its own
        # thread): it saves a thread hop per burst, most of a tick's latency. The callback is
        # serialised across connections; a slow one delays reading (and pongs), so only use
        # it for that kind of consumer.
        self.inline = inline
        self._inline_lock = threading.Lock()
        self._inline_callback = on_packets
        self._inline_drained = on_drained
        self.inline_errors = 0
        self._rng = rng or random.Random()
        self._lock = threading.Lock()  # shards list, key -> shard map, state transitions
        self._shards: list[_Shard] = []
        self._shard_of: dict[str, _Shard] = {}
        self._stop_event = threading.Event()
        self._stopping = False  # mirrors _stop_event for the per-frame check
        self._done = threading.Event()  # set when stopped or failed: wait() returns
        self.state = ClientState.NEW
        self.error: DhanError | None = None
        self._dispatcher: Dispatcher[list[Packet]] = Dispatcher(
            "dhan-feed-dispatch",
            on_packets,
            capacity=buffer_capacity,
            weigh=len,
            heartbeat=self._heartbeat,
            heartbeat_interval=heartbeat_interval,
            logger=logger,
            on_drained=on_drained,
        )

    @classmethod
    def from_settings(
        cls,
        on_packets: Callable[[list[Packet]], object],
        *,
        token_provider: Callable[[], str] | None = None,
        subscribe_watchlist: bool = True,
        **kwargs: Any,
    ) -> FeedClient:
        """A client on ``DHANHQ_WS_URL`` / ``DHANHQ_CLIENT_ID``; the token is re-read from
        ``DHANHQ_ACCESS_TOKEN`` unless a ``token_provider`` is given; ``DHANHQ_WS_WATCHLIST``
        is subscribed in ``DHANHQ_WS_MODE``. ImproperlyConfigured without credentials."""
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured

        if not settings.DHANHQ_CLIENT_ID:
            raise ImproperlyConfigured("DHANHQ_CLIENT_ID is not set: the feed needs it")
        if token_provider is None:
            if not settings.DHANHQ_ACCESS_TOKEN:
                raise ImproperlyConfigured("DHANHQ_ACCESS_TOKEN is not set: the feed needs it")

            def token_provider() -> str:
                return settings.DHANHQ_ACCESS_TOKEN

        client = cls(
            settings.DHANHQ_WS_URL, settings.DHANHQ_CLIENT_ID, token_provider, on_packets, **kwargs
        )
        if subscribe_watchlist and settings.DHANHQ_WS_WATCHLIST:
            client.subscribe(settings.DHANHQ_WS_WATCHLIST, settings.DHANHQ_WS_MODE)
        return client

    def _deliver_inline(self, packets: list[Packet]) -> None:
        with self._inline_lock:
            try:
                self._inline_callback(packets)
                if self._inline_drained is not None:
                    self._inline_drained()
            except Exception:
                # One poison burst must not kill the connection: logged, counted, skipped.
                self.inline_errors += 1
                logger.exception("feed callback failed on a burst of %d packets", len(packets))

    # -- subscriptions -----------------------------------------------------------------------

    @property
    def subscriptions(self) -> dict[str, FeedMode]:
        """Every subscribed instrument key -> mode (a copy)."""
        with self._lock:
            return {key: shard.subscriptions[key] for key, shard in self._shard_of.items()}

    def subscribe(self, instruments: Iterable[InstrumentRef], mode: FeedMode | str | int) -> None:
        """Subscribe instruments (``"SEG:SID"`` keys or ``(segment, id)`` pairs) in ``mode``.

        Works before start() and while connected. An instrument already subscribed in another
        mode is moved to ``mode`` (unsubscribed in the old one first). A bad key is logged and
        skipped, the others subscribed. Raises ValueError for a bad mode or when the
        instruments would not fit in the connections allowed, before changing anything.
        """
        new_mode = _mode(mode)
        keys = _normalise(instruments)
        with self._lock:
            self._check_usable()
            fresh = [k for k in keys if k not in self._shard_of]
            free = sum(
                self.max_instruments_per_connection - len(s.subscriptions) for s in self._shards
            )
            free += (self.max_connections - len(self._shards)) * self.max_instruments_per_connection
            if len(fresh) > free:
                raise ValueError(
                    f"cannot subscribe {len(fresh)} more instruments: {len(self._shard_of)} are "
                    f"subscribed and {self.max_connections} connections x "
                    f"{self.max_instruments_per_connection} instruments allow "
                    f"{self.max_connections * self.max_instruments_per_connection}"
                )
            changes: dict[_Shard, tuple[dict[str, FeedMode], dict[str, FeedMode]]] = {}
            for key in keys:
                shard = self._shard_of.get(key)
                if shard is not None:
                    old = shard.subscriptions.get(key)
                    if old == new_mode:
                        continue
                    added, removed = changes.setdefault(shard, ({}, {}))
                    if old is not None:
                        removed[key] = old
                    added[key] = new_mode
                    continue
                shard = self._shard_with_room(changes)
                changes.setdefault(shard, ({}, {}))[0][key] = new_mode
                self._shard_of[key] = shard
            new_shards = [s for s in changes if s.thread is None]
            for shard, (added, removed) in changes.items():
                shard.send_changes(added, removed)
            if self.state == ClientState.RUNNING:
                for shard in new_shards:
                    shard.start()

    def unsubscribe(self, instruments: Iterable[InstrumentRef]) -> None:
        """Unsubscribe instruments, each in the mode it was subscribed in; unknown: ignored."""
        keys = _normalise(instruments)
        with self._lock:
            self._check_usable()
            changes: dict[_Shard, dict[str, FeedMode]] = {}
            for key in keys:
                shard = self._shard_of.pop(key, None)
                if shard is not None:
                    changes.setdefault(shard, {})[key] = shard.subscriptions[key]
            for shard, removed in changes.items():
                shard.send_changes({}, removed)

    def _shard_with_room(self, pending: dict[_Shard, tuple[dict, dict]]) -> _Shard:
        for shard in self._shards:
            added = pending.get(shard, ({}, {}))[0]
            if len(shard.subscriptions) + len(added) < self.max_instruments_per_connection:
                return shard
        shard = _Shard(self, len(self._shards))  # capacity was checked by the caller
        self._shards.append(shard)
        return shard

    def _check_usable(self) -> None:
        if self.state == ClientState.FAILED:
            raise RuntimeError(f"the feed client failed and is stopped: {self.error}")
        if self.state == ClientState.STOPPED:
            raise RuntimeError("the feed client is stopped")

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FeedClient:
        """Start the dispatcher and one thread per connection needed; returns self."""
        with self._lock:
            if self.state != ClientState.NEW:
                raise RuntimeError(f"start() on a feed client that is {self.state}")
            self.state = ClientState.RUNNING
            self._dispatcher.start()
            for shard in self._shards:
                shard.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Send the disconnect request, close every connection and join every thread, each
        bounded by ``timeout`` overall. Safe to call twice and after a fatal error."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if self.state in (ClientState.NEW, ClientState.RUNNING):
                self.state = ClientState.STOPPED
            shards = list(self._shards)
        self._stopping = True
        self._stop_event.set()
        for shard in shards:
            if shard.thread is not None and shard.thread is not threading.current_thread():
                shard.thread.join(max(0.0, deadline - time.monotonic()))
        for shard in shards:
            if shard.thread is not None and shard.thread.is_alive():
                # Stuck in a connect or a send: cut the socket under it and give it a moment.
                ws = shard.ws
                if ws is not None:
                    ws.abort()
                shard.thread.join(min(1.0, max(0.0, deadline - time.monotonic())))
                if shard.thread.is_alive():
                    logger.error("feed shard %d: thread did not stop in time", shard.index)
        self._dispatcher.stop(max(0.1, deadline - time.monotonic()))
        self._done.set()

    # -- observability -----------------------------------------------------------------------

    def stats(self) -> FeedClientStats:
        with self._lock:
            shards = tuple(s.snapshot() for s in self._shards)
        dispatcher = self._dispatcher
        last = [s.last_frame_at for s in shards if s.last_frame_at is not None]
        return FeedClientStats(
            state=self.state,
            frames=sum(s.frames for s in shards),
            packets=sum(s.packets for s in shards),
            bad_packets=sum(s.bad_packets for s in shards),
            reconnects=sum(s.reconnects for s in shards),
            dropped_frames=dispatcher.dropped,
            dropped_packets=dispatcher.dropped_weight,
            pending_frames=dispatcher.pending,
            callback_errors=dispatcher.handler_errors + self.inline_errors,
            last_frame_at=max(last) if last else None,
            shards=shards,
        )

    def _heartbeat(self) -> None:
        s = self.stats()
        logger.info(
            "feed: %s, %d connections (%s), %d frames, %d packets, %d bad, %d reconnects, "
            "%d dropped, %d pending",
            s.state,
            len(s.shards),
            ", ".join(f"{x.index}:{x.state}/{x.instruments}" for x in s.shards),
            s.frames,
            s.packets,
            s.bad_packets,
            s.reconnects,
            s.dropped_frames,
            s.pending_frames,
        )

    def __repr__(self) -> str:
        # No URL: it would be the place a token leaks from in a traceback.
        return f"<FeedClient {self.state}, {len(self._shard_of)} instruments>"
