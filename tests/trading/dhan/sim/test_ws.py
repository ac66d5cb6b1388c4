"""The simulator's server-side WebSocket framing (pure parts)."""

from __future__ import annotations

import io
import os
import socket
import struct

import pytest

from trading.dhan.sim import ws
from trading.dhan.sim.server import java_double


def test_the_accept_key_matches_the_rfc_example():
    # RFC 6455 section 1.3.
    assert ws.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize(
    ("size", "header_len"), [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)]
)
def test_frames_use_the_shortest_length_encoding(size, header_len):
    data = ws.frame(ws.OP_BINARY, b"x" * size)
    assert len(data) == header_len + size
    assert data[0] == 0x82  # FIN + binary, unmasked (servers never mask)


def _client_frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True) -> bytes:
    key = os.urandom(4)
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([(0x80 if mask else 0) | n])
    else:
        head += bytes([(0x80 if mask else 0) | 126]) + struct.pack("!H", n)
    if not mask:
        return head + payload
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


class _Sock:
    """Collects what the server side writes (pongs, close frames)."""

    def __init__(self) -> None:
        self.sent = b""

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def shutdown(self, how: int) -> None:
        pass


def _server(data: bytes) -> tuple[ws.ServerWebSocket, _Sock]:
    sock = _Sock()
    return ws.ServerWebSocket(sock, io.BytesIO(data)), sock  # type: ignore[arg-type]


def test_a_masked_text_message_is_unmasked():
    conn, _ = _server(_client_frame(ws.OP_TEXT, b'{"RequestCode":12}'))
    message = conn.recv()
    assert message is not None and message.text == '{"RequestCode":12}'


def test_fragments_are_joined_and_pings_answered_in_between():
    data = (
        _client_frame(ws.OP_TEXT, b"hel", fin=False)
        + _client_frame(ws.OP_PING, b"p")
        + _client_frame(ws.OP_CONTINUATION, b"lo")
    )
    conn, sock = _server(data)
    message = conn.recv()
    assert message is not None and message.text == "hello"
    assert sock.sent == ws.frame(ws.OP_PONG, b"p")


def test_an_unmasked_client_frame_is_a_protocol_error():
    conn, sock = _server(_client_frame(ws.OP_TEXT, b"hi", mask=False))
    assert conn.recv() is None
    assert sock.sent[0] == 0x88  # a close frame, with code 1002 and the reason
    assert sock.sent[2:4] == struct.pack("!H", 1002)
    assert conn.closed.is_set()


def test_a_close_frame_is_echoed_and_ends_the_connection():
    conn, sock = _server(_client_frame(ws.OP_CLOSE, struct.pack("!H", 1000)))
    assert conn.recv() is None
    assert conn.close_code == 1000
    assert sock.sent.startswith(ws.frame(ws.OP_CLOSE, struct.pack("!H", 1000)))


def test_end_of_stream_ends_the_connection_without_a_close_frame():
    conn, sock = _server(b"\x81")  # half a header
    assert conn.recv() is None
    assert sock.sent == b""


def test_sending_on_a_dead_socket_returns_false_instead_of_raising():
    left, right = socket.socketpair()
    right.close()
    conn = ws.ServerWebSocket(left, left.makefile("rb"))
    results = [conn.send_binary(b"x" * 65536) for _ in range(50)]
    assert results[-1] is False
    assert conn.closed.is_set()
    left.close()


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ({}, "Upgrade"),
        ({"Upgrade": "websocket"}, "Connection"),
        ({"Upgrade": "websocket", "Connection": "Upgrade"}, "Version"),
        (
            {
                "Upgrade": "websocket",
                "Connection": "keep-alive, Upgrade",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "short",
            },
            "Key",
        ),
    ],
)
def test_a_bad_upgrade_request_is_named(headers, problem):
    assert problem in (ws.upgrade_headers_problem(headers) or "")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (4428248.0, "4428248.0"),
        (10542765.0, "1.0542765E7"),
        (1641753000.0, "1.641753E9"),
        (0.0, "0.0"),
        (245.5, "245.5"),
        (12.0, "12.0"),
    ],
)
def test_chart_numbers_are_written_as_java_doubles(value, text):
    # Dhan's chart arrays come from Java's Double.toString (PROTOCOL.md 1.9).
    assert java_double(value) == text
    assert float(text) == value
