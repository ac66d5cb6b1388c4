"""Shared by the tests of workers/realtime/: packets, records and a wait for a record."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from tests.support.waiting import WAIT, wait_until
from trading.dhan.feed_codec import QuoteTick, TickerTick
from workers.realtime.record import TickRecord

REPO = Path(__file__).resolve().parents[3]


RECEIVED = datetime(2026, 11, 23, 5, 0, 0, 250000, tzinfo=UTC)


LTT = 1795410000 + 19800  # IST-shifted epoch of 1795410000


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


def wait_for(sub: object, key: str, seq: int, timeout: float = WAIT) -> TickRecord:
    """Drain ``sub`` until ``key`` arrives with ``seq`` or a later one; that record. The
    subscription's own wait blocks between polls, so there is no extra sleep."""

    def arrived() -> TickRecord | None:
        rec = sub.wait(0.2).get(key)  # type: ignore[attr-defined]
        return rec if rec is not None and rec.seq >= seq else None

    return wait_until(arrived, f"{key} at seq {seq} or later", timeout, interval=0)


class Clock:
    """A settable clock (epoch seconds) for TTL tests."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
