"""The market-feed hub: Dhan feed -> decoded ticks -> tick store + bus; index candles; health.

    hub = FeedHub(realtime, feed_factory=..., rest=..., config=HubConfig(...))
    hub.run(stop_event)            # a supervisor Component; returns when stop is set

Threads and data flow (one process, ``manage.py run_feed_hub`` or inside ``run_trader``)::

    feed socket thread(s), FeedClient(inline=True): read 64 KiB, decode every frame of it,
        _on_packets(burst) + _on_drained():
        TickMerger.merge (zero LTP never clobbers, per-key seq)  -> pending (latest per key)
        index ticks -> CandleBuilder -> closed candles           -> pending events
    writer thread: pending -> TickStore.publish (one Redis round trip per batch)
                   candles -> EventBus "candle" + kv list ``candles:{key}:{tf}``
    run() loop (0.25 s): subscriptions refresh from the DB, candle clock, health, heartbeat,
                   kv ``health:feed`` / ``feed:subscriptions``, the 30 s log line

Why merge on the socket thread: the merge is a few microseconds per tick and never blocks
(it only touches memory), so the FeedClient's dispatcher thread would add a thread hop per
burst and nothing else. That hop (a wake-up plus GIL hand-overs) was most of a tick's latency
and a third of the hub's CPU (bench/feed_hub.py: p50 3 -> 1 ms, 43k -> 73k ticks/s).

Why a separate writer thread: a Redis round trip on the socket thread would stall reading
(and Dhan's pings). The writer takes everything pending in one swap, so its batch grows with
the load: one tick per round trip when quiet (lowest latency), thousands when busy (highest
throughput). ``pending`` is a dict keyed by instrument, so while Redis is slow or down it
holds at most one record per subscribed instrument (the latest): memory is bounded by the
subscriptions whatever the tick rate, and consumers are coalescing anyway.

Redis outage: ``publish`` raises StoreUnavailable; health turns stale with that reason, the
writer retries with backoff (0.1 s doubling to 2 s), and on recovery re-publishes the whole
latest snapshot and rewrites the kv state, because a restarted Redis is empty.

Market time: the hub owns the system's market clock (``workers/market_clock.py``). Every
index tick's exchange time feeds it; it is written to kv ``market:clock`` every state pass so
the other workers follow the same clock. The session and calendar (``market`` of
``config/algo.yml``) are judged on it, never on the wall clock, so the hub does the same at
03:00 on a Sunday against a simulator as at 11:00 on a Tuesday against Dhan.

Candles: built from index ticks by exchange time (``workers/candles.py``); candles close on the
market clock, so a simulator or replay at 60x closes them at the right market minute and a
quiet feed still closes them. Once market time is known from the feed and the session has
opened (a hub started before the open waits for it), and again after every gap (health was
stale/down because connections were down), the day's 1-minute candles are fetched from Dhan's
intraday chart API and seeded, so indicators see no hole.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from trading.config.types import MarketConfig
from trading.dhan.errors import AuthFailure
from trading.dhan.feed_codec import FeedMode, Packet, decode_frame
from trading.rules.market import INDEX_SEGMENT, is_open, session_open_at
from workers.broker_auth import clear_auth_failure, report_auth_failure
from workers.candles import Candle, CandleBuilder, aggregate
from workers.chart_history import index_minutes
from workers.health import DOWN, HEALTHY, FeedHealth, FeedObservation
from workers.heartbeat import Heartbeat
from workers.market_clock import MarketClock
from workers.realtime.keys import (
    CANDLE_TOPIC,
    FEED_CANDIDATES,
    FEED_HEALTH,
    FEED_HEALTH_TOPIC,
    FEED_SUBSCRIPTIONS,
    MARKET_CLOCK,
    candles_key,
)
from workers.realtime.merger import TickMerger
from workers.realtime.record import TickRecord
from workers.realtime.redis_client import StoreRefused, StoreUnavailable
from workers.realtime.services import Realtime
from workers.subscriptions import desired_subscriptions, parse_watchlist

logger = logging.getLogger(__name__)

__all__ = ["FeedHub", "HubConfig"]

CANDLE_HISTORY = 500  # candles kept per index and timeframe in the kv list
_INDEX_PREFIX = INDEX_SEGMENT + ":"
_BURST_FRAMES = 256  # frames merged and published together at most (see _on_packets)


class FeedLike(Protocol):
    """What the hub needs from ``trading.dhan.feed.FeedClient`` (a replay source can fake it)."""

    state: str
    error: Exception | None

    def subscribe(self, instruments: Iterable[str], mode: FeedMode | str | int) -> None: ...
    def unsubscribe(self, instruments: Iterable[str]) -> None: ...
    def start(self) -> object: ...
    def stop(self, timeout: float = 10.0) -> None: ...
    def stats(self) -> Any: ...


FeedFactory = Callable[..., FeedLike]
"""``factory(on_packets, frame_hook=..., on_drained=...) -> FeedLike``: FeedClient.from_settings
in production; both keywords go to the FeedClient."""


class FeedHubFailed(RuntimeError):
    """The feed client stopped on a fatal error (data plan, too many instruments): a restart
    with the same settings fails the same way, so nothing restarts it (run_feed_hub exits 1,
    run_trader stops). An authentication failure is the :class:`BrokerAuthFailed` kind."""


@dataclass(slots=True)
class HubConfig:
    index_mode: FeedMode = FeedMode.QUOTE  # DHANHQ_WS_MODE: indices and other non-F&O rows
    env_watchlist: list[str] = field(default_factory=list)  # DHANHQ_WS_WATCHLIST, raw entries
    refresh_interval: float = 0.5  # subscriptions re-read from the DB (the 1 s promise)
    loop_interval: float = 0.25
    stale_after: float = 5.0
    down_after: float = 30.0
    state_interval: float = 1.0  # health / heartbeat / subscriptions written to kv
    log_interval: float = 30.0  # the heartbeat log line
    timeframes: tuple[int, ...] = (60, 300)
    seed_candles: bool = True
    # The session and calendar (config/algo.yml ``market``); None: the effective config's.
    market: MarketConfig | None = None
    # "Is the session open now?" for health and the stall watchdog; None: the session and
    # calendar judged on the market clock (tests and benchmarks force it).
    market_open: Callable[[], bool] | None = None
    name: str = "feed_hub"


@dataclass(slots=True)
class _Counters:
    packets: int = 0
    ticks: int = 0
    published: int = 0
    publish_batches: int = 0
    store_errors: int = 0
    candles: int = 0
    subscription_changes: int = 0
    lag_sum: float = 0.0  # receive -> published, seconds, since the last log line
    lag_max: float = 0.0
    lag_n: int = 0


class FeedHub:
    """See the module docstring. ``run(stop)`` is the whole life of one hub."""

    def __init__(
        self,
        realtime: Realtime,
        *,
        feed_factory: FeedFactory,
        rest: Any | None = None,
        config: HubConfig | None = None,
        recorder: Any | None = None,
        clock: Callable[[], float] = time.time,
        market_clock: MarketClock | None = None,
    ) -> None:
        self.realtime = realtime
        self.config = config or HubConfig()
        self.rest = rest
        self.recorder = recorder
        self.clock = clock
        self._feed_factory = feed_factory
        self.feed: FeedLike | None = None
        self.merger = TickMerger()
        self.candles = CandleBuilder(self.config.timeframes)
        self.health = FeedHealth(self.config.stale_after, self.config.down_after)
        self.heartbeat = Heartbeat(realtime.kv, self.config.name)
        self.counters = _Counters()
        self.env_keys = parse_watchlist(self.config.env_watchlist)
        # After the watchlist: a malformed entry is named before the database is touched.
        self.market = self.config.market or _configured_market()
        # ``clock`` is the wall clock for the hub's own pacing (state writes, log lines);
        # market time is ``market_clock``, learnt from the index ticks' exchange times.
        self.market_clock = market_clock or MarketClock(name="feed hub: market clock")
        self.subscribed: dict[str, FeedMode] = {}
        self._normalised: dict[str, str] = {}  # raw key -> checked SEG:SID (see _desired)
        self._last_candidates: list[str] = []
        self.watched: frozenset[str] = frozenset()
        self.last_error: str | None = None
        self._candle_lock = threading.Lock()  # the builder: socket thread vs seeding
        self._pending: dict[str, TickRecord] = {}
        self._pending_lock = threading.Lock()
        self._pending_events: deque[Candle] = deque(maxlen=10_000)
        self._wake_writer = threading.Event()
        self._writer_idle = False
        # One publisher at a time: the writer thread, or a caller of flush() (replay, tests).
        self._flush_lock = threading.Lock()
        self._burst: list[list[Packet]] = []
        self._burst_lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self._stopping = threading.Event()
        self._store_ok = True
        self._store_error: str | None = None
        self._resync_store = False
        self._last_index_tick: dict[str, float | None] = {}
        self._last_tick_at: float | None = None
        self._seed_due = self.config.seed_candles
        self._seed_after = 0.0  # wall time before which a failed seeding is not retried
        self._seed_failures = 0
        self._gap = False  # connections were down since the last seeding
        self._reconnects_seen = 0
        self._next_refresh = 0.0
        self._next_state = 0.0
        self._next_log = 0.0
        self._log_mark = (0.0, 0)  # (time, ticks) at the last log line

    # -- the Component interface -------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Start, loop until ``stop`` is set, shut down. Raises FeedHubFailed on a fatal feed
        error (the supervisor restarts with backoff; run_feed_hub exits non-zero)."""
        clear_auth_failure(self.realtime.kv, self.config.name)
        self.start()
        try:
            while not stop.is_set():
                self.step()
                feed = self.feed
                if feed is not None and feed.state == "failed":
                    if isinstance(feed.error, AuthFailure):
                        raise report_auth_failure(
                            self.realtime.kv, self.config.name, "market feed", feed.error
                        )
                    raise FeedHubFailed(f"feed client failed: {feed.error}")
                stop.wait(self.config.loop_interval)
        finally:
            try:
                self.shutdown()
            finally:
                from django.db import connections

                connections.close_all()  # this thread's (a restarted hub must not leak one)

    def start(self) -> None:
        """Validate the watchlist, warm the merger from the store, subscribe, start threads.

        A bad watchlist row or position key is logged and skipped (the environment's entries
        were checked by the constructor, which raises WatchlistError naming a bad one).
        """
        wanted, watched = self._desired()
        self._warm(wanted)
        hook = self.recorder.write if self.recorder is not None else None
        # inline: the hub's callbacks only merge into memory and never block (the writer
        # thread talks to the store), so they run on the socket thread: one thread hop fewer.
        self.feed = self._feed_factory(
            self._on_packets, frame_hook=hook, on_drained=self._on_drained, inline=True
        )
        self._apply(wanted, watched)
        self._writer = threading.Thread(
            target=self._write_loop, name="feed-hub-writer", daemon=True
        )
        self._writer.start()
        self.feed.start()
        now = self.clock()
        self._next_log = now + self.config.log_interval
        self._log_mark = (now, 0)
        logger.info(
            "feed hub started: %d instruments (%d watchlisted), index mode %s",
            len(self.subscribed),
            len(self.watched),
            self.config.index_mode.name.lower(),
        )

    def shutdown(self, timeout: float = 4.0) -> None:
        """Stop the feed, flush what is pending, stop the writer; bounded by ``timeout``."""
        deadline = time.monotonic() + timeout
        if self.feed is not None:
            self.feed.stop(timeout=max(0.5, timeout / 2))
        self._stopping.set()
        self._wake_writer.set()
        if self._writer is not None:
            self._writer.join(max(0.1, deadline - time.monotonic()))
        if self.recorder is not None:
            self.recorder.close()
        try:
            self.heartbeat.beat("stopped", **self._heartbeat_fields())
        except Exception as exc:  # a dead Redis must not turn a clean stop into a crash
            logger.warning("feed hub: last heartbeat not written: %s", exc)
        logger.info("feed hub stopped: %s", self._summary())

    # -- one pass of the loop ----------------------------------------------------------------

    def step(self) -> None:
        """Refresh subscriptions, seed/advance candles, evaluate health, write state."""
        now = self.clock()
        if now >= self._next_refresh:
            self._next_refresh = now + self.config.refresh_interval
            self.refresh_subscriptions()
        if (
            self._seed_due
            and self.rest is not None
            and now >= self._seed_after
            and self._session_started()
        ):
            self._seed_due = False
            self.seed_candles()
        self._advance_candles()
        self._observe_health(now)
        if now >= self._next_state:
            self._next_state = now + self.config.state_interval
            self._write_state(now)
        if now >= self._next_log:
            self._next_log = now + self.config.log_interval
            self._log_line(now)

    def refresh_subscriptions(self) -> bool:
        """Diff the database's wanted set against the subscriptions; True when it changed.
        A database error is logged and retried next pass (the current set stays)."""
        from django.db import close_old_connections

        close_old_connections()
        try:
            wanted, watched = self._desired()
        except Exception as exc:
            self.last_error = f"subscription refresh failed: {exc}"
            logger.warning(
                "feed hub: %s (keeping %d subscriptions)", self.last_error, len(self.subscribed)
            )
            return False
        return self._apply(wanted, watched)

    # -- subscriptions -----------------------------------------------------------------------

    def _desired(self) -> tuple[dict[str, FeedMode], frozenset[str]]:
        wanted, watched = desired_subscriptions(self.env_keys, self.config.index_mode)
        for key in self._candidates():
            wanted.setdefault(key, FeedMode.FULL)
        good: dict[str, FeedMode] = {}
        normalised = self._normalised
        for key, mode in wanted.items():
            normal = normalised.get(key)
            if normal is None:
                # Each key is checked once, not every refresh: this runs twice a second and
                # holds the GIL the socket thread needs (thousands of keys, ~3 us each).
                try:
                    (normal,) = parse_watchlist([key], source="watchlist/position")
                except ValueError as exc:
                    # One bad instrument never sinks the others; remembered as "" so it is
                    # logged once, not on every refresh.
                    logger.error("feed hub: skipping %s", exc)
                    normal = ""
                normalised[key] = normal
            if normal:
                good[normal] = mode
        return good, watched

    def _candidates(self) -> list[str]:
        """The option contracts the signal engine may pick next (kv ``feed:candidates``,
        written with a TTL on every candle), subscribed in full mode so their ticks and depth
        are fresh when a signal comes. On a store error the last known set stays."""
        try:
            record = self.realtime.kv.get(FEED_CANDIDATES)
        except StoreUnavailable:
            return self._last_candidates
        keys = record.get("keys") if isinstance(record, dict) else None
        if not isinstance(keys, list):
            keys = []
        self._last_candidates = [k for k in keys if isinstance(k, str)]
        return self._last_candidates

    def _apply(self, wanted: dict[str, FeedMode], watched: frozenset[str]) -> bool:
        feed = self.feed
        assert feed is not None
        current = self.subscribed
        if wanted == current:  # the usual case, compared in C
            self.watched = watched
            return False
        # Watchlisted instruments stay even if a row was just deactivated in the same pass as
        # a position closing: ``wanted`` already holds every watchlisted key.
        removed = [key for key in current if key not in wanted]
        by_mode: dict[FeedMode, list[str]] = {}
        for key, mode in wanted.items():
            if current.get(key) != mode:
                by_mode.setdefault(mode, []).append(key)
        if not removed and not by_mode:
            self.watched = watched
            return False
        if removed:
            feed.unsubscribe(removed)
        for mode, keys in by_mode.items():
            feed.subscribe(keys, mode)
        self.subscribed = dict(wanted)
        self.watched = watched
        for key in removed:
            self._last_index_tick.pop(key, None)
        for key in wanted:
            if key.startswith(INDEX_SEGMENT + ":"):
                self._last_index_tick.setdefault(key, None)
        self.counters.subscription_changes += 1
        added = sum(len(v) for v in by_mode.values())
        if current:  # the first subscription is logged by start()
            logger.info(
                "feed hub: subscriptions %d (+%d -%d)%s",
                len(wanted),
                added,
                len(removed),
                f", removed {', '.join(removed[:5])}" if removed else "",
            )
        self._write_subscriptions()
        return True

    def _warm(self, wanted: dict[str, FeedMode]) -> None:
        """Load the store's latest records so a first zero-LTP tick after a restart cannot
        clobber a good price and sequence numbers keep increasing."""
        try:
            self.merger.load(self.realtime.ticks.get_many(list(wanted)).values())
        except StoreUnavailable as exc:
            self._store_down(exc)

    # -- the socket thread (inline feed callbacks) -------------------------------------------

    def _on_packets(self, packets: list[Packet]) -> None:
        """FeedClient callback (socket thread, inline), one read's packets: queued for the burst.

        Frames are merged per burst (``_take_burst``), not one by one: the per-call work
        (locks, counters, loops) then happens once per burst. A burst longer than
        ``_BURST_FRAMES`` is handled at once, so a feed that never pauses still gets merged
        and published and this list stays bounded."""
        with self._burst_lock:
            burst = self._burst
            burst.append(packets)
            full = len(burst) >= _BURST_FRAMES
        if full:
            self._on_drained()

    def _take_burst(self) -> None:
        """Merge every queued frame (any thread; the merger only ever runs under the lock)."""
        with self._burst_lock:
            burst = self._burst
            if not burst:
                return
            self._burst = []
            if len(burst) == 1:
                self._process(burst[0])
            else:
                self._process([packet for frame in burst for packet in frame])

    def _process(self, packets: list[Packet]) -> None:
        """Merge packets into records, queue them for the store, feed the index candles."""
        records = self.merger.merge(packets)
        if not records:
            return
        counters = self.counters
        counters.packets += len(packets)
        counters.ticks += len(records)
        with self._pending_lock:
            pending = self._pending
            for record in records:
                pending[record.key] = record
        self._last_tick_at = records[-1].receive_time
        closed: list[Candle] = []
        observe = self.market_clock.observe
        for record in records:
            key = record.key
            if key[:6] == _INDEX_PREFIX:  # a slice compare: this runs per tick
                self._last_index_tick[key] = record.receive_time
                exchange_time = record.exchange_time
                if exchange_time is not None and record.ltp > 0:
                    # Index LTTs are the market clock: indices tick every second in session,
                    # while an option's LTT is its last trade, which may be minutes old.
                    observe(exchange_time, record.receive_time)
                    with self._candle_lock:
                        closed.extend(self.candles.on_tick(key, record.ltp, exchange_time))
        if closed:
            self._pending_events.extend(closed)

    def _on_drained(self) -> None:
        """End of a burst (socket thread): merge it and hand it to the writer thread.

        The writer publishes while this thread goes back to reading (a Redis round trip here
        would stall the feed).
        The writer is only woken when it sleeps: an Event.set() per burst costs more than
        the merge of a small one.
        """
        self._take_burst()
        if self._writer_idle:
            self._wake_writer.set()

    def ingest_frame(self, data: bytes, received: float) -> None:
        """Decode one raw frame and process it as if it came from the feed (replay)."""
        packets = decode_frame(data, datetime.fromtimestamp(received, UTC))
        with self._burst_lock:
            self._process(packets)

    # -- the writer thread -------------------------------------------------------------------

    def _write_loop(self) -> None:
        delay = 0.1
        while True:
            # Clear, announce idleness, re-check: a burst merged between the last flush and
            # the wait either sees _writer_idle and sets the event, or is found by the check.
            self._wake_writer.clear()
            self._writer_idle = True
            if not self._pending and not self._pending_events and not self._burst:
                self._wake_writer.wait(0.5)
            self._writer_idle = False
            stopping = self._stopping.is_set()
            try:
                self.flush()
                delay = 0.1
            except StoreUnavailable as exc:
                self._store_down(exc)
                if stopping:
                    logger.warning("feed hub: stopping with the tick store unavailable")
                    return
                self._stopping.wait(delay)
                delay = min(delay * 2, 2.0)
                self._wake_writer.set()
                continue
            except StoreRefused as exc:
                # Redis refused this process: the refusal's listener stops the process (one
                # line); retrying would only repeat the refusal.
                self.last_error = str(exc)
                return
            except Exception:
                self.last_error = "writer failed; see the traceback"
                logger.exception("feed hub: writer pass failed; retrying")
                if stopping:
                    return  # a pass that fails while stopping would fail in a hot loop
                self._stopping.wait(delay)
                continue
            if stopping:
                return

    def flush(self) -> int:
        """Publish everything pending (ticks, then candle events); the number of ticks.

        Raises StoreUnavailable; what was pending stays pending (merged with newer ticks)."""
        with self._flush_lock:
            return self._flush_locked()

    def _flush_locked(self) -> int:
        self._take_burst()
        if self._resync_store:
            self._resync()
        with self._pending_lock:
            batch = self._pending
            self._pending = {}
        if batch:
            records = list(batch.values())
            try:
                self.realtime.ticks.publish(records)
            except Exception:
                with self._pending_lock:
                    # Newer ticks that arrived meanwhile win over the failed batch.
                    batch.update(self._pending)
                    self._pending = batch
                raise
            now = time.time()
            counters = self.counters
            counters.published += len(records)
            counters.publish_batches += 1
            # The batch's oldest tick: how long a tick waited for the store, at worst.
            lag = now - min(record.receive_time for record in records)
            counters.lag_sum += lag
            counters.lag_n += 1
            if lag > counters.lag_max:
                counters.lag_max = lag
        self._publish_candles()
        if not self._store_ok:
            self._store_up()
        return len(batch)

    def _publish_candles(self) -> None:
        events = self._pending_events
        kv = self.realtime.kv
        while events:
            candle = events[0]
            payload = candle.as_dict()
            kv.push_capped(candles_key(candle.key, candle.timeframe), payload, CANDLE_HISTORY)
            self.realtime.events.publish(CANDLE_TOPIC, payload)
            events.popleft()
            self.counters.candles += 1

    def _store_down(self, exc: Exception) -> None:
        self.counters.store_errors += 1
        if self._store_ok:
            logger.error("feed hub: tick store unavailable: %s", exc)
        self._store_ok = False
        self._store_error = str(exc)
        self._resync_store = True

    def _store_up(self) -> None:
        logger.info("feed hub: tick store reachable again")
        self._store_ok = True
        self._store_error = None

    def _resync(self) -> None:
        """After an outage: the store may have restarted empty. Re-publish every latest
        record, the candle history and the subscription set."""
        snapshot = list(self.merger.snapshot().values())
        if snapshot:
            self.realtime.ticks.publish(snapshot)
        for key in list(self._last_index_tick):
            self._store_history(key)
        self._write_subscriptions()
        self._resync_store = False
        logger.info("feed hub: re-published %d ticks and the candle history", len(snapshot))

    # -- candles -----------------------------------------------------------------------------

    def _session_started(self) -> bool:
        """Market time is known from the feed and today's session has opened: seeding the
        day's candles makes sense (before the open there is nothing to seed)."""
        clock = self.market_clock
        if not clock.synced:
            return False
        now = clock.datetime()
        return self.market.is_trading_day(now.date()) and now > session_open_at(
            self.market, now.date()
        )

    def _advance_candles(self) -> None:
        if not self.market_clock.synced:
            return
        now = self.market_clock.now()
        with self._candle_lock:
            closed = self.candles.advance(now)
        if closed:
            self._pending_events.extend(closed)
            self._wake_writer.set()

    def seed_candles(self) -> int:
        """Fetch today's 1-minute candles of every subscribed index from the intraday chart
        API and seed the builder (1m, and 5m aggregated). Failures are logged, not raised;
        returns the number of candles accepted. Called once market time is known from the
        feed (``_session_started``)."""
        now = self.market_clock.datetime()
        session_open = session_open_at(self.market, now.date())
        if now <= session_open:
            return 0
        accepted = 0
        failed = False
        for key in sorted(self._last_index_tick):
            try:
                minutes = index_minutes(self.rest, key, session_open, now)
            except AuthFailure as exc:
                # Every other call would fail the same way: stop, loudly, once.
                raise report_auth_failure(
                    self.realtime.kv, self.config.name, "candle seeding", exc
                ) from None
            except Exception as exc:
                self.last_error = f"candle seeding for {key} failed: {exc}"
                logger.warning("feed hub: %s", self.last_error)
                failed = True
                continue
            seeds = minutes + [
                c for tf in self.config.timeframes if tf != 60 for c in aggregate(minutes, tf)
            ]
            with self._candle_lock:
                taken = self.candles.seed(seeds)
            accepted += len(taken)
            try:
                self._store_history(key)
            except StoreUnavailable as exc:
                self._store_down(exc)
        if failed:
            # Try again later, 1 s doubling to 60 s: a broker having trouble is not hammered.
            self._seed_failures += 1
            self._seed_due = True
            self._seed_after = self.clock() + min(60.0, 2.0 ** (self._seed_failures - 1))
        else:
            self._seed_failures = 0
        if accepted:
            logger.info("feed hub: seeded %d candles from the intraday chart API", accepted)
        return accepted

    def _store_history(self, key: str) -> None:
        """Rewrite ``candles:{key}:{tf}`` from the builder (after seeding or a store outage),
        one round trip per timeframe."""
        with self._candle_lock:
            histories = {tf: self.candles.history(key, tf) for tf in self.config.timeframes}
        for tf, history in histories.items():
            self.realtime.kv.replace_list(
                candles_key(key, tf), [c.as_dict() for c in history], CANDLE_HISTORY
            )

    # -- health, state, logs -----------------------------------------------------------------

    def _observe_health(self, now: float) -> None:
        feed = self.feed
        stats = feed.stats() if feed is not None else None
        shards = stats.shards if stats is not None else ()
        reconnects = stats.reconnects if stats is not None else 0
        reconnected = max(0, reconnects - self._reconnects_seen)
        self._reconnects_seen = reconnects
        obs = FeedObservation(
            now=now,
            client_state=feed.state if feed is not None else "stopped",
            connections=len(shards),
            connected=sum(1 for s in shards if s.state == "connected"),
            market_open=self.market_open(),
            last_index_tick=dict(self._last_index_tick),
            store_ok=self._store_ok,
            store_error=self._store_error,
            reconnected=reconnected,
        )
        transition = self.health.observe(obs)
        if reconnected or (obs.connections and obs.connected < obs.connections):
            self._gap = True
        if transition is None:
            return
        if transition.state == HEALTHY and self._gap and self.config.seed_candles:
            self._gap = False
            self._seed_due = True  # backfill the minutes the gap may have cost
        record = self.health.as_record(now)
        try:
            self.realtime.events.publish(FEED_HEALTH_TOPIC, record)
            self.realtime.kv.put(FEED_HEALTH, record, ttl=10.0)
        except StoreUnavailable as exc:
            self._store_down(exc)

    def market_open(self) -> bool:
        """The session is open by the market clock (the wall clock until the feed has shown
        market time). Health and the feed's stall watchdog only expect ticks when it is."""
        forced = self.config.market_open
        if forced is None:
            return is_open(self.market, self.market_clock.datetime())
        try:
            return bool(forced())
        except Exception:
            logger.exception("feed hub: market_open() failed; assuming open")
            return True

    def _write_state(self, now: float) -> None:
        try:
            clock = self.market_clock.as_record()
            if clock is not None:
                self.realtime.kv.put(MARKET_CLOCK, clock)
            self.realtime.kv.put(FEED_HEALTH, self.health.as_record(now), ttl=10.0)
            self.heartbeat.beat(
                "running" if self.health.state != DOWN else "degraded", **self._heartbeat_fields()
            )
        except StoreUnavailable as exc:
            self._store_down(exc)

    def _write_subscriptions(self) -> None:
        try:
            self.realtime.kv.put(
                FEED_SUBSCRIPTIONS,
                {
                    "instruments": {k: m.name.lower() for k, m in self.subscribed.items()},
                    "at": time.time(),
                },
            )
        except StoreUnavailable as exc:
            self._store_down(exc)

    def _heartbeat_fields(self) -> dict[str, Any]:
        feed = self.feed
        stats = feed.stats() if feed is not None else None
        c = self.counters
        clock = self.market_clock
        return {
            "connected": bool(stats and any(s.state == "connected" for s in stats.shards)),
            "market_time": clock.datetime().isoformat() if clock.synced else None,
            "last_tick_at": self._last_tick_at,
            "health": self.health.state,
            "counts": {
                "subscriptions": len(self.subscribed),
                "ticks": c.ticks,
                "published": c.published,
                "candles": c.candles,
                "store_errors": c.store_errors,
                "dropped_frames": stats.dropped_frames if stats else 0,
                "bad_packets": stats.bad_packets if stats else 0,
                "reconnects": stats.reconnects if stats else 0,
            },
            "last_error": self.last_error,
        }

    def _log_line(self, now: float) -> None:
        then, ticks_then = self._log_mark
        c = self.counters
        rate = (c.ticks - ticks_then) / (now - then) if now > then else 0.0
        self._log_mark = (now, c.ticks)
        lag_avg = c.lag_sum / c.lag_n * 1000 if c.lag_n else 0.0
        lag_max = c.lag_max * 1000
        c.lag_sum, c.lag_n, c.lag_max = 0.0, 0, 0.0
        logger.info(
            "feed hub: %s, %.0f ticks/s, %d subscriptions, lag avg %.1f ms max %.1f ms, %s",
            self.health.state,
            rate,
            len(self.subscribed),
            lag_avg,
            lag_max,
            self._summary(),
        )

    def _summary(self) -> str:
        c = self.counters
        feed = self.feed
        stats = feed.stats() if feed is not None else None
        dropped = stats.dropped_frames if stats else 0
        return (
            f"{c.ticks} ticks, {c.published} published in {c.publish_batches} batches, "
            f"{c.candles} candles, {dropped} frames dropped, {c.store_errors} store errors"
        )


def _configured_market() -> MarketConfig:
    from trading.config.store import algo_config

    return algo_config().market


def hub_from_settings(
    realtime: Realtime,
    *,
    record_dir: str | None = None,
    rest: Any | None = None,
    seed_candles: bool = True,
    stall_timeout: float = 30.0,
) -> FeedHub:
    """A hub on the Dhan settings (``DHANHQ_*``): FeedClient.from_settings for the feed, the
    REST client for candle seeding, ``DHANHQ_WS_MODE`` / ``DHANHQ_WS_WATCHLIST``. Raises
    WatchlistError for a malformed ``DHANHQ_WS_WATCHLIST`` entry and ImproperlyConfigured
    without credentials."""
    from django.conf import settings

    from trading.dhan.feed import FeedClient

    config = HubConfig(
        index_mode=FeedMode[settings.DHANHQ_WS_MODE.upper()],
        env_watchlist=list(settings.DHANHQ_WS_WATCHLIST),
        seed_candles=seed_candles,
    )
    hub: FeedHub | None = None

    def market_open() -> bool:
        # The hub exists by the time the feed's stall watchdog asks (it starts the feed).
        return hub.market_open() if hub is not None else False

    def feed_factory(on_packets: Callable[[list[Packet]], object], **hooks: Any) -> FeedLike:
        return FeedClient.from_settings(
            on_packets,
            subscribe_watchlist=False,  # the hub subscribes the whole union itself
            **hooks,  # frame_hook (recorder), on_drained and inline (see FeedHub.start)
            market_open=market_open,
            stall_timeout=stall_timeout,
        )

    if rest is None and seed_candles:
        from trading.dhan.rest import DhanRestClient

        rest = DhanRestClient.from_settings()
    recorder = None
    if record_dir:
        from pathlib import Path

        from workers.recorder import FrameRecorder

        recorder = FrameRecorder(Path(record_dir))
        recorder.start()
    hub = FeedHub(realtime, feed_factory=feed_factory, rest=rest, config=config, recorder=recorder)
    return hub
