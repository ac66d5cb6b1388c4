"""Market time from the market: a clock that follows the exchange times the feed carries.

ARCHITECTURE.md: "Market time ... comes from the market: a clock that follows the exchange
times in the feed ... and keeps advancing while the feed is quiet". Every worker reads market
time here, never from the wall clock, so the whole system behaves the same at 03:00 on a Sunday
as at 11:00 on a Tuesday, and a worker pointed at the simulator trades the simulator's day.

The model: ``market = anchor_exchange + rate * (wall - anchor_wall)``.

* The feed hub calls :meth:`MarketClock.observe` with each index tick's exchange time (Dhan's
  LTT, whole seconds) and its receive time. The anchor moves only when the exchange time
  advances: the moment an LTT turns from k to k+1 is the best estimate that the market is at
  k+1 (while it stays k, the market is somewhere in [k, k+1)).
* ``rate`` is the exchange seconds per wall second over the last ``window`` wall seconds: 1
  live (snapped to exactly 1 within ``snap``, since the estimate from whole-second LTTs is
  noisy), the simulator's speed against it, a replay's. Between ticks the clock runs on at
  that rate, so a feed that stalls at 15:14 still reaches the 15:15 square-off.
* Until the exchange time has been seen to *advance* the clock is not ``synced`` and answers
  the wall clock. One packet is not enough: outside the session Dhan answers a subscription
  with the last trade of the previous session, whose LTT is hours old and does not move; the
  clock must not mistake that for the present. Callers that need market time to act (candle
  seeding, warming indicators) wait for ``synced``.
* Sanity checks: an exchange time before 2000 or not a number is ignored; market time never
  goes backwards (readers see a monotonic clock); observations far behind the clock (a
  simulator restarted on an earlier time, a new day's replay) are ignored until they persist
  for ``rebase_after`` wall seconds, then the clock starts over from them and says so; a
  synced clock far from the wall clock is logged once (a simulator, a replay, or a machine
  with a wrong clock; live the two agree to within the feed's latency).

Other processes follow the hub's clock through the key-value record ``market:clock``
(:meth:`as_record` / :meth:`follow`), written by the hub every second: a follower computes the
same formula from the same anchor, so every process agrees on market time and keeps advancing
while the hub is away.

Thread safety: one writer (the feed's socket thread, or :meth:`follow`'s caller), any number
of readers; the anchor is one tuple replaced whole, which is atomic under the GIL.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from trading.rules.market import IST

logger = logging.getLogger(__name__)

__all__ = ["MarketClock"]

_EARLIEST = 946_684_800.0  # 2000-01-01: an exchange time before it is garbage, not a date


class MarketClock:
    """See the module docstring. ``now()`` is market time in epoch seconds."""

    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        *,
        window: float = 60.0,
        snap: float = 0.05,
        behind_tolerance: float = 300.0,
        rebase_after: float = 5.0,
        wall_warning: float = 120.0,
        name: str = "market clock",
    ) -> None:
        self.wall = wall
        self.window = window  # wall seconds of samples the rate is estimated over
        self.snap = snap  # a rate within this of 1 is taken as exactly 1 (live)
        self.behind_tolerance = behind_tolerance  # market s behind the clock that is a restart
        self.rebase_after = rebase_after  # wall s such observations must persist
        self.wall_warning = wall_warning  # market s away from the wall clock worth a log line
        self.name = name
        # (anchor exchange time, anchor wall time, rate); None until synced.
        self._anchor: tuple[float, float, float] | None = None
        self._seen: deque[tuple[float, float]] = deque(maxlen=3)  # before the sync
        self._samples: deque[tuple[float, float]] = deque(maxlen=4096)  # (wall, exchange)
        self._last_read = 0.0  # the monotonic floor readers see
        self._behind_since: float | None = None
        self._warned = False

    # -- reading ---------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        """True once market time is known from the market (or from a followed record)."""
        return self._anchor is not None

    @property
    def rate(self) -> float | None:
        anchor = self._anchor
        return None if anchor is None else anchor[2]

    def now(self) -> float:
        """Market time, epoch seconds; the wall clock until synced. Never goes backwards."""
        wall = self.wall()
        anchor = self._anchor
        if anchor is None:
            return wall
        exchange, at, rate = anchor
        value = exchange + rate * (wall - at)
        if value < self._last_read:
            return self._last_read
        self._last_read = value
        return value

    __call__ = now

    def datetime(self) -> datetime:
        """Market time as an aware datetime in IST."""
        return datetime.fromtimestamp(self.now(), IST)

    # -- learning from the feed ------------------------------------------------------------

    def observe(self, exchange_time: float, wall_time: float) -> None:
        """One tick's exchange time (epoch s) and its receive time (wall, epoch s)."""
        anchor = self._anchor
        if anchor is not None and exchange_time <= anchor[0]:
            if anchor[0] - exchange_time > self.behind_tolerance:
                self._behind(exchange_time, wall_time)
            else:
                self._behind_since = None
            return  # the usual case: the same whole second again
        if not exchange_time >= _EARLIEST or math.isinf(exchange_time):
            return
        if anchor is None:
            self._learn(exchange_time, wall_time)
            return
        self._behind_since = None
        samples = self._samples
        samples.append((wall_time, exchange_time))
        horizon = wall_time - self.window
        while len(samples) > 2 and samples[0][0] < horizon:
            samples.popleft()
        rate = self._estimate(anchor[2])
        self._anchor = (exchange_time, wall_time, rate)

    def _learn(self, exchange_time: float, wall_time: float) -> None:
        """Before the sync: wait for two advances of the exchange time (three distinct,
        increasing values) and estimate the rate from the last two only. The first value may be
        a snapshot of an old trade (a subscription answered outside the session, then the open's
        first tick): a rate measured from it would be absurd."""
        seen = self._seen
        if seen and (exchange_time < seen[-1][1] or wall_time < seen[-1][0]):
            seen.clear()  # went backwards: start over
        if seen and exchange_time == seen[-1][1]:
            return  # not advancing: the same whole second (or a snapshot) again
        seen.append((wall_time, exchange_time))
        if len(seen) < 3 or seen[-1][0] <= seen[-2][0]:
            return
        self._samples.clear()
        self._samples.extend(list(seen)[-2:])
        seen.clear()
        rate = self._estimate(None)
        self._anchor = (exchange_time, wall_time, rate)
        self._last_read = 0.0
        self._report_sync(exchange_time, wall_time, rate)

    def _estimate(self, previous: float | None) -> float:
        """Exchange seconds per wall second over the samples' span."""
        first_wall, first_exchange = self._samples[0]
        last_wall, last_exchange = self._samples[-1]
        span = last_wall - first_wall
        if span <= 0 or last_exchange <= first_exchange:
            return previous if previous is not None else 1.0
        rate = (last_exchange - first_exchange) / span
        if abs(rate - 1.0) <= self.snap:
            return 1.0
        if previous is not None and span < 1.0:
            # Whole-second LTTs over a sub-second span say little: keep the previous rate
            # until the window holds a second of wall time.
            return previous
        return rate

    def _behind(self, exchange_time: float, wall_time: float) -> None:
        """Exchange times far behind the clock: ignored, unless they persist (a restart)."""
        if self._behind_since is None:
            self._behind_since = wall_time
            return
        if wall_time - self._behind_since < self.rebase_after:
            return
        logger.warning(
            "%s: the feed's exchange time went back to %s and stayed there for %.0f s: "
            "starting over from it",
            self.name,
            f"{datetime.fromtimestamp(exchange_time, IST):%Y-%m-%d %H:%M:%S}",
            wall_time - self._behind_since,
        )
        self._anchor = None
        self._samples.clear()
        self._behind_since = None
        self._warned = False
        self._seen.append((wall_time, exchange_time))

    def _report_sync(self, exchange_time: float, wall_time: float, rate: float) -> None:
        moment = datetime.fromtimestamp(exchange_time, IST)
        logger.info(
            "%s: synced to the feed at %s IST, %g market s per wall s",
            self.name,
            f"{moment:%Y-%m-%d %H:%M:%S}",
            rate,
        )
        away = exchange_time - wall_time
        if abs(away) > self.wall_warning and not self._warned:
            self._warned = True
            logger.warning(
                "%s: market time from the feed is %s %s this machine's clock (a simulator or "
                "a replay; live, check the machine's clock)",
                self.name,
                _duration(abs(away)),
                "ahead of" if away > 0 else "behind",
            )

    # -- sharing with other processes ------------------------------------------------------

    def as_record(self) -> dict[str, Any] | None:
        """The anchor for ``market:clock`` (None until synced)."""
        anchor = self._anchor
        if anchor is None:
            return None
        exchange, at, rate = anchor
        return {"exchange_time": exchange, "wall_time": at, "rate": rate}

    def follow(self, record: Mapping[str, Any] | None) -> bool:
        """Take the anchor of another process's clock (kv ``market:clock``); True when the
        record was usable. A missing or malformed record leaves the clock as it is, so a
        follower keeps running on the last anchor while the hub is away."""
        if not isinstance(record, Mapping):
            return False
        try:
            exchange = float(record["exchange_time"])
            at = float(record["wall_time"])
            rate = float(record["rate"])
        except (KeyError, TypeError, ValueError):
            return False
        if not (exchange >= _EARLIEST and math.isfinite(at) and 0 < rate < 1e6):
            return False
        previous = self._anchor
        if previous is not None and exchange < previous[0] - self.behind_tolerance:
            self._last_read = 0.0  # the hub started over (a new day, a new simulator)
        self._anchor = (exchange, at, rate)
        if previous is None:
            self._report_sync(exchange, at, rate)
        return True


def _duration(seconds: float) -> str:
    days, rest = divmod(int(seconds), 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes = rest // 60
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {int(seconds) % 60} s"
