"""Feed health: one state other processes read (entry gates, exit engine, /ready, dashboard).

    healthy  every connection is up and every subscribed index ticked within ``stale_after``
             seconds (the index condition only counts while the market is open)
    stale    a connection is down, an index has been silent for ``stale_after`` seconds in
             market hours, or the tick store is unreachable: prices may be old; entries are
             blocked and exits price positions from the REST quote API
    down     the feed client stopped (fatal error: auth, data plan) or no connection has been
             up for ``down_after`` seconds: there is no market data at all

The state machine is pure (inputs in, transition out) so every edge is a unit test; the hub
feeds it once per loop pass and logs only transitions: once on entry to stale or down (with
the reason) and once on recovery (with how long it lasted), never per tick.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

HEALTHY = "healthy"
STALE = "stale"
DOWN = "down"


@dataclass(frozen=True, slots=True)
class FeedObservation:
    """What the hub knows at ``now`` (epoch seconds)."""

    now: float
    client_state: str  # ClientState of the FeedClient ("running", "failed", "stopped", ...)
    connections: int  # connections the client has (0 before the first subscription)
    connected: int  # of those, currently connected
    market_open: bool
    last_index_tick: dict[str, float | None]  # subscribed index key -> receive time of last tick
    store_ok: bool = True
    store_error: str | None = None
    # Reconnections since the previous observation: a drop shorter than the observation
    # interval would otherwise never be seen (the ticks it cost are still missing).
    reconnected: int = 0


@dataclass(slots=True)
class Transition:
    previous: str
    state: str
    reason: str
    lasted: float  # seconds spent in ``previous``
    reason_was_starting: bool = False  # the first verdict after start: not a "recovery"


@dataclass(slots=True)
class FeedHealth:
    """``observe()`` updates; ``state``, ``reason`` and ``since`` describe the current state."""

    stale_after: float = 5.0
    down_after: float = 30.0
    state: str = STALE  # nothing has been seen yet: not healthy until proven
    reason: str = "starting"
    since: float = 0.0
    _no_connection_since: float | None = field(default=None, repr=False)
    _started: float | None = field(default=None, repr=False)

    def evaluate(self, obs: FeedObservation) -> tuple[str, str]:
        """The state and reason for ``obs`` (pure apart from the 'no connection since' clock)."""
        if self._started is None:
            self._started = obs.now
        if obs.client_state in ("failed", "stopped"):
            return DOWN, f"feed client {obs.client_state}"
        if obs.connections and obs.connected == 0:
            if self._no_connection_since is None:
                self._no_connection_since = obs.now
        elif obs.connected:
            self._no_connection_since = None
        if self._no_connection_since is not None:
            silent = obs.now - self._no_connection_since
            if silent >= self.down_after:
                return DOWN, f"no feed connection for {silent:.0f} s"
        reasons = []
        if obs.connected < obs.connections:
            reasons.append(
                f"{obs.connections - obs.connected} of {obs.connections} connections down"
            )
        if obs.reconnected:
            reasons.append(f"{obs.reconnected} feed reconnection(s) since the last check")
        if not obs.store_ok:
            reasons.append(f"tick store unavailable ({obs.store_error or 'error'})")
        if obs.market_open:
            for key, last in sorted(obs.last_index_tick.items()):
                quiet_since = last if last is not None else self._started
                if obs.now - quiet_since >= self.stale_after:
                    what = "no tick yet" if last is None else f"no tick for {obs.now - last:.1f} s"
                    reasons.append(f"{key}: {what}")
        if obs.connections == 0 and obs.last_index_tick:
            reasons.append("not connected yet")
        if reasons:
            return STALE, "; ".join(reasons)
        return HEALTHY, "all connections up, indices ticking"

    def observe(self, obs: FeedObservation) -> Transition | None:
        """Update from ``obs``; a Transition when the state changed (the caller publishes it)."""
        state, reason = self.evaluate(obs)
        if state == self.state:
            self.reason = reason  # e.g. the silent seconds grow; no log
            return None
        transition = Transition(
            self.state,
            state,
            reason,
            obs.now - self.since if self.since else 0,
            reason_was_starting=self.since == 0,
        )
        self.state, self.reason, self.since = state, reason, obs.now
        if transition.reason_was_starting:
            logger.log(
                logging.INFO if state == HEALTHY else logging.WARNING, "feed %s: %s", state, reason
            )
        elif state == HEALTHY:
            logger.info(
                "feed healthy again after %.1f s %s (%s)",
                transition.lasted,
                transition.previous,
                reason,
            )
        elif state == STALE:
            logger.warning("feed STALE: %s", reason)
        else:
            logger.error("feed DOWN: %s", reason)
        return transition

    def as_record(self, now: float) -> dict[str, object]:
        """The shape written to kv ``health:feed`` (see /ready)."""
        return {"state": self.state, "since": self.since, "reason": self.reason, "at": now}
