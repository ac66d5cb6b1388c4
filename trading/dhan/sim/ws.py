"""The server side of RFC 6455 WebSockets, just enough for the simulator.

Why hand-rolled and not a library: the simulator must misbehave on purpose (cut the TCP
connection without a close frame, stall with the socket open, answer the upgrade with a 429,
send a garbage frame, stream pre-framed bytes at full speed with one ``sendall``), and it runs
on the standard library's threading HTTP server next to the REST endpoints. A server library
would hide exactly the socket-level control the fault tests need. The client side, where
correctness matters to the product, is websocket-client.

Scope: text, binary, continuation, ping, pong and close frames; client frames must be masked
(RFC 6455 5.1); no extensions (no permessage-deflate), no subprotocols.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TOO_BIG = 1009

MAX_MESSAGE = 1 << 20  # client requests are small JSON; anything near this is a bug or abuse


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (RFC 6455 4.2.2)."""
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()  # noqa: S324 (protocol-mandated)
    return base64.b64encode(digest).decode("ascii")


def frame(opcode: int, payload: bytes = b"") -> bytes:
    """One unmasked, final server frame."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


def binary_frames(payloads: list[bytes]) -> bytes:
    """Several binary frames back to back, ready for one ``sendall``."""
    return b"".join([frame(OP_BINARY, p) for p in payloads])


def _unmask(payload: bytes, mask: bytes) -> bytes:
    n = len(payload)
    if not n:
        return payload
    # XOR as one big integer: far faster than a Python loop over bytes.
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


class ProtocolError(Exception):
    """The peer broke RFC 6455; the connection is closed with 1002 (or 1009 when too big)."""

    def __init__(self, message: str, code: int = CLOSE_PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Message:
    """A complete data message: ``text`` is set for text messages, ``data`` for binary."""

    opcode: int
    data: bytes

    @property
    def text(self) -> str | None:
        return self.data.decode("utf-8") if self.opcode == OP_TEXT else None


class ServerWebSocket:
    """One accepted connection. Writes are serialised by a lock so a streaming thread and the
    reading thread (pong, close echo) can share the socket."""

    def __init__(self, sock: socket.socket, rfile: BinaryIO) -> None:
        self.sock = sock
        self.rfile = rfile
        self._send_lock = threading.Lock()
        self.closed = threading.Event()
        self.close_code: int | None = None

    # -- writing -------------------------------------------------------------------------------

    def send_raw(self, data: bytes) -> bool:
        """Write pre-framed bytes. False (and the connection marked closed) when the peer is
        gone: a streaming loop stops on False instead of handling socket exceptions."""
        if self.closed.is_set():
            return False
        try:
            with self._send_lock:
                self.sock.sendall(data)
        except OSError:
            self.closed.set()
            return False
        return True

    def send_binary(self, payload: bytes) -> bool:
        return self.send_raw(frame(OP_BINARY, payload))

    def send_text(self, text: str) -> bool:
        return self.send_raw(frame(OP_TEXT, text.encode("utf-8")))

    def ping(self, payload: bytes = b"") -> bool:
        return self.send_raw(frame(OP_PING, payload))

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Send a close frame and shut the socket (we do not wait for the echo: a simulator
        closing is the end of the conversation)."""
        if not self.closed.is_set():
            self.send_raw(frame(OP_CLOSE, struct.pack("!H", code) + reason.encode()[:120]))
        self.abort()

    def abort(self) -> None:
        """Cut the TCP connection without a close frame: what a network drop looks like."""
        self.closed.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- reading -------------------------------------------------------------------------------

    def _read_exact(self, n: int) -> bytes:
        data = self.rfile.read(n)
        if data is None or len(data) < n:
            raise EOFError("connection closed by peer")
        return data

    def _read_frame(self) -> tuple[bool, int, bytes]:
        b0, b1 = self._read_exact(2)
        if b0 & 0x70:
            raise ProtocolError("reserved bits set (no extension was negotiated)")
        fin, opcode = bool(b0 & 0x80), b0 & 0x0F
        if not b1 & 0x80:
            raise ProtocolError("client frames must be masked")
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._read_exact(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._read_exact(8))
        if n > MAX_MESSAGE:
            raise ProtocolError(f"frame of {n} bytes is too big", CLOSE_TOO_BIG)
        mask = self._read_exact(4)
        return fin, opcode, _unmask(self._read_exact(n), mask)

    def recv(self) -> Message | None:
        """The next data message, answering pings on the way. None when the connection ended
        (close frame, EOF, or a protocol error, after which a close frame was sent)."""
        parts: list[bytes] = []
        first_opcode: int | None = None
        try:
            while True:
                fin, opcode, payload = self._read_frame()
                if opcode == OP_PING:
                    self.send_raw(frame(OP_PONG, payload))
                    continue
                if opcode == OP_PONG:
                    continue
                if opcode == OP_CLOSE:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                    self.close_code = code
                    self.close(CLOSE_NORMAL if code is None else code)
                    return None
                if opcode == OP_CONTINUATION:
                    if first_opcode is None:
                        raise ProtocolError("continuation frame without a first frame")
                elif opcode in (OP_TEXT, OP_BINARY):
                    if first_opcode is not None:
                        raise ProtocolError("new data frame inside a fragmented message")
                    first_opcode = opcode
                else:
                    raise ProtocolError(f"unknown opcode {opcode:#x}")
                parts.append(payload)
                if sum(map(len, parts)) > MAX_MESSAGE:
                    raise ProtocolError("message too big", CLOSE_TOO_BIG)
                if fin:
                    return Message(first_opcode, b"".join(parts))
        except ProtocolError as exc:
            self.close(exc.code, str(exc))
            return None
        except (EOFError, OSError, ValueError):
            self.abort()
            return None


HandshakeReject = Callable[[int, str], None]


def upgrade_headers_problem(headers: object) -> str | None:
    """Why an HTTP request is not a valid WebSocket upgrade, or None when it is."""
    get = headers.get  # type: ignore[attr-defined]
    if "websocket" not in (get("Upgrade") or "").lower():
        return "missing 'Upgrade: websocket'"
    if "upgrade" not in (get("Connection") or "").lower():
        return "missing 'Connection: Upgrade'"
    if (get("Sec-WebSocket-Version") or "").strip() != "13":
        return "Sec-WebSocket-Version must be 13"
    key = (get("Sec-WebSocket-Key") or "").strip()
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return "Sec-WebSocket-Key must be 16 bytes, base64"
    except ValueError:
        return "Sec-WebSocket-Key is not base64"
    return None


def handshake_response(key: str) -> bytes:
    return (
        "HTTP/1.1 101 Switching Protocols\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_key(key.strip())}\r\n\r\n"
    ).encode("ascii")
