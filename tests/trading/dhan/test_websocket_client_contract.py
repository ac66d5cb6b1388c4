"""The parts of websocket-client that trading/dhan/feed.py reads beyond its documented API.

FeedShard._receive reads the socket itself, 64 KiB at a time (bench/feed_client.py: 3.6-4.1x
websocket-client's own per-frame receive), so it takes ``WebSocket.sock`` and, once after the
handshake, empties ``WebSocket.frame_buffer.recv_buffer`` (bytes websocket-client may have
buffered). ``frame_buffer`` is internal: a release may rename it without notice. pyproject.toml
pins websocket-client to the major version tested; these tests fail, naming the attribute and
the pin, when a real ``websocket.WebSocket`` no longer has what the feed client reads.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import websocket
from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parents[3] / "pyproject.toml"


def pinned() -> Requirement:
    data = tomllib.loads(PYPROJECT.read_text())
    for line in data["project"]["dependencies"]:
        requirement = Requirement(line)
        if requirement.name == "websocket-client":
            return requirement
    raise AssertionError("pyproject.toml does not list websocket-client")


def why(attribute: str) -> str:
    return (
        f"websocket-client {websocket.__version__}: websocket.WebSocket has no {attribute}, "
        f"which trading/dhan/feed.py (FeedShard._receive) reads; pyproject.toml pins "
        f"{pinned()}. Adapt feed.py to this release (or keep the pin) before upgrading."
    )


def test_the_installed_websocket_client_is_inside_the_pin() -> None:
    requirement = pinned()
    installed = Version(websocket.__version__)
    assert requirement.specifier, f"{requirement} has no upper bound: pin the major version"
    assert installed in requirement.specifier, (
        f"websocket-client {installed} is installed but pyproject.toml pins {requirement}"
    )
    assert not requirement.specifier.contains(f"{installed.major + 1}.0"), (
        f"{requirement} admits websocket-client {installed.major + 1}.0, an untested major "
        "version: the feed client reads its internals (frame_buffer)"
    )


def test_a_websocket_has_the_frame_buffer_the_feed_client_empties() -> None:
    ws = websocket.WebSocket()
    assert hasattr(ws, "frame_buffer"), why("frame_buffer")
    assert isinstance(getattr(ws.frame_buffer, "recv_buffer", None), list), why(
        "frame_buffer.recv_buffer (a list of bytes)"
    )


def test_a_websocket_has_the_socket_and_pong_the_feed_client_uses() -> None:
    ws = websocket.WebSocket()
    assert hasattr(ws, "sock"), why("sock")
    assert callable(getattr(ws, "pong", None)), why("pong()")
