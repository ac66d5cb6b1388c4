"""The hand-written Redis pub/sub reader: one connection, one daemon thread, reconnects.

It reads raw RESP straight off the socket, many messages per ``recv``, and hands each chunk's
messages to its handler at once (the tick store coalesces them per key before taking any
subscription's lock). redis-py's own ``PubSub.get_message`` returns one message per call;
bench/pubsub.py measures the two on the same load.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from workers.realtime.redis_client import (
    Outage,
    client_url,
    make_connection,
    pack_command,
    refused_error,
    report_refused,
)

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

__all__ = ["ListenerHandler", "PubSubListener", "RedisReplyError", "parse_replies"]


class ListenerHandler(Protocol):
    """Who gets what the reader reads (the Redis tick store, the Redis event bus)."""

    def _on_messages(self, messages: list[tuple[bytes, bytes, bool]]) -> None: ...
    def _on_subscribed(self, channels: list[bytes], patterns: list[bytes]) -> None: ...


class PubSubListener:
    """One pub/sub connection read by one daemon thread, with reconnects.

    Reads raw RESP (protocol 2) straight off the socket and hands each chunk's messages to the
    handler as ``(channel, payload, from_pattern)``; subscribe confirmations go to
    ``_on_subscribed`` so the handler can fetch current values once the subscription is live
    (a value read before that could miss a publish in between). On connection loss it
    reconnects with capped backoff (0.1 s doubling to 5 s) and resubscribes everything, which
    triggers those confirmations again. A silent connection is probed with PING every
    ``ping_interval`` s and dropped when the probe gets no answer.
    """

    def __init__(
        self,
        client: redis.Redis,
        handler: ListenerHandler,
        name: str,
        *,
        ping_interval: float = 5.0,
    ) -> None:
        self._client = client
        self._handler = handler
        self._name = name
        self._ping_interval = ping_interval
        self._lock = threading.Lock()
        self._channels: set[bytes] = set()
        self._patterns: set[bytes] = set()
        self._sock: socket.socket | None = None
        self._conn: Any = None
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()
        # Channels/patterns Redis confirmed on the current connection (guarded by _confirmed).
        self._confirmed = threading.Condition(threading.Lock())
        self._confirmed_names: set[bytes] = set()
        self.reconnects = 0
        self.last_error: str | None = None
        # Said once when the connection is lost and once when it is back, not per attempt.
        self._outage = Outage(log, f"{name} pub/sub")

    def start(self) -> None:
        with self._lock:
            if self._thread is None and not self._closed.is_set():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def subscribe(self, channels: Iterable[bytes], *, pattern: bool = False) -> None:
        target = self._patterns if pattern else self._channels
        with self._lock:
            new = [c for c in channels if c not in target]
            target.update(new)
            if new:
                self._send(b"PSUBSCRIBE" if pattern else b"SUBSCRIBE", new)
        self.start()

    def wait_subscribed(self, channels: Iterable[bytes], timeout: float) -> bool:
        """Block until Redis confirmed every one of ``channels`` (or ``timeout``)."""
        wanted = set(channels)
        with self._confirmed:
            return self._confirmed.wait_for(lambda: wanted <= self._confirmed_names, timeout)

    def unsubscribe(self, channels: Iterable[bytes], *, pattern: bool = False) -> None:
        target = self._patterns if pattern else self._channels
        with self._lock:
            gone = [c for c in channels if c in target]
            target.difference_update(gone)
            with self._confirmed:
                self._confirmed_names.difference_update(gone)
            if gone:
                self._send(b"PUNSUBSCRIBE" if pattern else b"UNSUBSCRIBE", gone)

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            self._shutdown_socket()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)

    def _send(self, command: bytes, args: Sequence[bytes]) -> None:
        """Write a command if connected (caller holds the lock). A failure is left for the
        reader to notice; the reconnect resubscribes from the sets."""
        if self._sock is None:
            return
        # At most 1,000 channels per command; a command without arguments (PING) is sent once.
        chunks = [args[start : start + 1000] for start in range(0, len(args), 1000)] or [()]
        for chunk in chunks:
            try:
                self._sock.sendall(pack_command(command, *chunk))
            except OSError:
                self._shutdown_socket()
                return

    def _shutdown_socket(self) -> None:
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _run(self) -> None:
        backoff = 0.1
        while not self._closed.is_set():
            try:
                self._connect()
                backoff = 0.1
                self._outage.recovered()
                self._read_loop()
            except Exception as exc:  # the listener must survive anything
                if self._closed.is_set():
                    break
                refused = refused_error(exc, client_url(self._client))
                if refused is not None:
                    # A wrong password does not heal by reconnecting: stop, and let the
                    # process's refusal listener stop the process (one line, named).
                    self.last_error = str(refused)
                    report_refused(refused)
                    break
                self.last_error = f"{type(exc).__name__}: {exc}"
                self._outage.failed(self.last_error)  # said once, not per attempt
            finally:
                self.connected.clear()
                with self._confirmed:
                    self._confirmed_names.clear()
                with self._lock:
                    self._sock = None
                    conn, self._conn = self._conn, None
                if conn is not None:
                    try:
                        conn.disconnect()
                    except Exception:  # noqa: S110 - already broken
                        pass
            if self._closed.wait(backoff):
                break
            backoff = min(backoff * 2, 5.0)
            self.reconnects += 1

    def _connect(self) -> None:
        # Protocol 2 whatever the client uses: the reader below parses RESP2 pub/sub arrays.
        conn = make_connection(
            self._client,
            protocol=2,
            # Bounds the connect handshake (a hung Redis accepts TCP and never answers);
            # reads are then bounded by the ping interval below.
            socket_timeout=max(2 * self._ping_interval, 1.0),
            health_check_interval=0,
            # Named for CLIENT LIST; Redis refuses spaces in a client name.
            client_name="".join(c if c.isprintable() and c != " " else "_" for c in self._name),
        )
        self._conn = conn
        conn.connect()
        sock = conn._sock
        sock.settimeout(self._ping_interval)
        with self._lock:
            if self._closed.is_set():
                raise ConnectionError("closed")
            self._sock = sock
            if self._channels:
                self._send(b"SUBSCRIBE", sorted(self._channels))
            if self._patterns:
                self._send(b"PSUBSCRIBE", sorted(self._patterns))
        self.connected.set()

    def _read_loop(self) -> None:
        sock = self._sock
        assert sock is not None
        buffer = b""
        probing = False
        handler = self._handler
        while not self._closed.is_set():
            try:
                data = sock.recv(262144)
            except TimeoutError:
                if probing:
                    raise ConnectionError("no answer to PING") from None
                probing = True
                with self._lock:
                    self._send(b"PING", ())
                continue
            if not data:
                raise ConnectionError("connection closed by Redis")
            probing = False
            buffer = buffer + data if buffer else data
            replies, used = parse_replies(buffer)
            buffer = buffer[used:]
            if not replies:
                continue
            messages: list[tuple[bytes, bytes, bool]] = []
            channels: list[bytes] = []
            patterns: list[bytes] = []
            for reply in replies:
                kind = reply[0]
                if kind == b"message":
                    messages.append((reply[1], reply[2], False))
                elif kind == b"pmessage":
                    messages.append((reply[2], reply[3], True))
                elif kind == b"subscribe":
                    channels.append(reply[1])
                elif kind == b"psubscribe":
                    patterns.append(reply[1])
            if messages:
                handler._on_messages(messages)
            if channels or patterns:
                handler._on_subscribed(channels, patterns)
                with self._confirmed:
                    self._confirmed_names.update(channels)
                    self._confirmed_names.update(patterns)
                    self._confirmed.notify_all()


class RedisReplyError(ConnectionError):
    """Redis answered the pub/sub connection with an error: the reader reconnects."""


def parse_replies(buf: bytes) -> tuple[list[list[bytes]], int]:
    """Parse complete RESP2 array replies (pub/sub pushes) from ``buf``.

    Returns the replies (each a list of bulk strings; integers as their digits) and how many
    bytes they used; an incomplete tail is left for the next read.
    """
    out: list[list[bytes]] = []
    append = out.append
    find = buf.find
    size = len(buf)
    pos = 0
    while pos < size:
        first = buf[pos]
        end = find(b"\r\n", pos)
        if end < 0:
            break
        if first != 42:  # not '*': an error or a simple string
            if first == 45:  # '-'
                raise RedisReplyError(buf[pos + 1 : end].decode("utf-8", "replace"))
            pos = end + 2
            continue
        count = int(buf[pos + 1 : end])
        p = end + 2
        items: list[bytes] = []
        complete = True
        for _ in range(count):
            end = find(b"\r\n", p)
            if end < 0:
                complete = False
                break
            if buf[p] == 36:  # '$' bulk string
                length = int(buf[p + 1 : end])
                start = end + 2
                stop = start + length
                if stop + 2 > size:
                    complete = False
                    break
                items.append(buf[start:stop])
                p = stop + 2
            else:  # ':' integer (subscription count)
                items.append(buf[p + 1 : end])
                p = end + 2
        if not complete:
            break
        append(items)
        pos = p
    return out, pos
