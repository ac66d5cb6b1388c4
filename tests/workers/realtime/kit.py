"""Shared by the tests of workers/realtime/: packets, records and bounded waits."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from trading.dhan.feed_codec import QuoteTick, TickerTick
from workers.realtime.record import TickRecord

REPO = Path(__file__).resolve().parents[3]


RECEIVED = datetime(2026, 11, 23, 5, 0, 0, 250000, tzinfo=UTC)


LTT = 1795410000 + 19800  # IST-shifted epoch of 1795410000


def until(condition: Callable[[], object], timeout: float = 10.0) -> bool:
    """Poll ``condition`` until true or ``timeout`` (bounded waits, no timing assertions)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return bool(condition())


def ticker(
    sid: int, ltp: float, ltt: int = LTT, received: datetime | None = RECEIVED
) -> TickerTick:
    return TickerTick(2, 2, sid, ltp, ltt, received)


def quote(sid: int, ltp: float, ltt: int = LTT) -> QuoteTick:
    return QuoteTick(
        4, 2, sid, ltp, 75, ltt, 151.5, 12000, 500, 600, 150.0, 0.0, 155.0, 149.0, RECEIVED
    )


def record(
    key: str = "NSE_FNO:1", seq: int = 1, ltp: float = 100.0, **fields: object
) -> TickRecord:
    return TickRecord(key, seq, ltp, 1795410000.0, 1795410000.5, **fields)  # type: ignore[arg-type]


DEPTH = tuple((10 * i, 20 * i, i, i + 1, 100.0 - i, 100.5 + i) for i in range(1, 6))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(sub: object, key: str, seq: int, timeout: float = 10.0) -> TickRecord | None:
    """Drain ``sub`` until ``key`` arrives with at least ``seq``; the record or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = sub.wait(0.2)  # type: ignore[attr-defined]
        rec = got.get(key)
        if rec is not None and rec.seq >= seq:
            return rec
    return None


class Clock:
    """A settable clock (epoch seconds) for TTL tests."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
