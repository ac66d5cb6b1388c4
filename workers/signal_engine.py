"""The signal engine: on each candle close of each enabled index, decide whether to enter.

One decision, in the order of ../shared/DOMAIN.md "Entry" (the maths is in ``trading/rules``;
this module only gathers the inputs and records the outcome):

1. **Signal** (``rules.signals``): the primary-timeframe candle updates the index's indicator
   state incrementally; the optional confirmation timeframe must agree. A ``TradingSignal`` row
   is written for every evaluation: direction, confidence, indicator values, candle time and
   the config version. The row is also the record that the candle was processed: a unique
   constraint on (index, timeframe, candle start) means a restarted (or second) engine never
   decides the same candle twice.
2. **Gates** (``rules.gates``), first block wins; the gate name and reason go on the row.
3. **Strike** (``rules.strikes``) from the catalog's contracts and the live option ticks; a
   block is recorded as gate ``strike``, then ``no_averaging`` for the chosen contract.
4. **Size** (``rules.sizing``) from the cash: the paper ledger, or the broker's fund limit live;
   zero lots (or unknown cash) is recorded as gate ``sizing``.
5. **Intent**: the sized :class:`~trading.orders.intent.EntryIntent` is written on the row
   *before* it is handed to the order router (journal first), outcome ``intent``.

Candles arrive as ``candle`` events from the feed hub. Events are at most once (a Redis blip
loses them), so every few seconds the engine also compares the hub's candle history
(``candles:{key}:{tf}`` in the kv store) with what it has fed, and feeds what it missed; a
candle seen more than ``signals.max_candle_age_seconds`` after its close is recorded with
outcome ``stale`` and never traded. At start the indicators are warmed from Dhan's intraday
chart (``signals.history_days`` of 1-minute candles), so the first live candle is decided on
warm indicators; history candles are fed, not decided.

The option contracts a signal could pick (``strikes.subscribe_width`` strikes each side of
ATM, both types, the expiry the rules would choose) are published as kv ``feed:candidates``;
the feed hub subscribes them in full mode, so their ticks and depth are fresh when a signal
comes.

Two clocks: ``clock`` is market time (epoch s) for every rule (entry window, cooldowns, the
candle's age, the trading day): by default a :class:`~workers.market_clock.MarketClock` that
follows the feed hub's (kv ``market:clock``), so the engine trades whatever day the feed
carries, Dhan's or a simulator's, at any hour of the wall clock. Until that clock is known the
engine waits (it neither loads contracts for a guessed day nor warms indicators on a guessed
history) and says so in its heartbeat. ``wall`` is the real clock for tick freshness, because
the feed's receive times are real.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, close_old_connections, connections, transaction
from django.db.models import Q, Sum

from config_schema import ConfigError
from trading.config.types import AlgoConfig, IndexConfig
from trading.dhan.errors import AuthFailure
from trading.models import PositionStatus, PositionTracker, SignalOutcome, TradingSignal
from trading.orders.intent import EntryIntent, EntryRouter, marketable_limit
from trading.rules import gates, sizing, strikes
from trading.rules.market import INDEX_SEGMENT, IST, instrument_key
from trading.rules.signals import Signal, SignalState, confirm
from trading.rules.vocab import Direction, Gate
from workers.broker_auth import BrokerAuthFailed, clear_auth_failure, report_auth_failure
from workers.candles import Candle, aggregate
from workers.chart_history import index_minutes
from workers.heartbeat import Heartbeat
from workers.market_clock import MarketClock
from workers.realtime.keys import (
    CANDLE_TOPIC,
    FEED_CANDIDATES,
    FEED_HEALTH,
    MARKET_CLOCK,
    candles_key,
)
from workers.realtime.record import TickRecord
from workers.realtime.redis_client import StoreUnavailable
from workers.realtime.services import Realtime

logger = logging.getLogger(__name__)

CANDIDATES_TTL = 600.0  # seconds: the hub drops them if the engine stops refreshing
# Decisions worth a line in the log at INFO or above; avoid signals (most candles) are DEBUG.
_LOG_LEVELS = {
    SignalOutcome.INTENT: logging.INFO,
    SignalOutcome.BLOCKED: logging.INFO,
    SignalOutcome.STALE: logging.WARNING,  # the engine or the bus lagged
    SignalOutcome.REJECTED: logging.WARNING,
}
OPEN_STATUSES = (PositionStatus.PENDING, PositionStatus.ACTIVE, PositionStatus.EXITING)


def _money(value: float | Decimal | None) -> Decimal | None:
    """A tick price (float32 widened) as rupees to the paisa."""
    if value is None:
        return None
    return value if isinstance(value, Decimal) else Decimal(f"{value:.2f}")


@dataclass
class IndexRuntime:
    """What the engine keeps per enabled index."""

    config: IndexConfig
    key: str  # IDX_I:13
    states: dict[int, SignalState]  # timeframe (s) -> incremental indicators
    last_fed: dict[int, float] = field(default_factory=dict)  # timeframe -> candle start fed
    contracts: list[strikes.OptionContract] = field(default_factory=list)
    contracts_day: date | None = None
    candidates: tuple[str, ...] = ()
    last_close: float | None = None


@dataclass
class EngineCounters:
    candles: int = 0
    signals: int = 0
    intents: int = 0
    blocked: int = 0
    stale: int = 0
    duplicates: int = 0
    errors: int = 0


class SignalEngine:
    """See the module docstring. ``run(stop)`` is a supervisor component; the ``handle_*``
    methods are one unit of work each, for tests."""

    name = "signal_engine"

    def __init__(
        self,
        realtime: Realtime,
        *,
        rest: Any | None = None,
        router: EntryRouter | None = None,
        config_source: Callable[[], AlgoConfig] | None = None,
        live: bool = False,
        clock: Callable[[], float] | None = None,
        wall: Callable[[], float] = time.time,
        wait_timeout: float = 0.25,
        catchup_interval: float = 5.0,
        config_interval: float = 10.0,
        heartbeat_interval: float = 5.0,
        log_interval: float = 60.0,
    ) -> None:
        if config_source is None:
            from trading.config.store import effective_algo_config

            config_source = effective_algo_config
        self.realtime = realtime
        self.rest = rest
        if router is None:
            # The order router of this process, priced on its market clock (paper or live);
            # the broker's acks are written off the sending thread (trading/orders/acks.py).
            from trading.orders.acks import AckWriter
            from workers.orders import router_for

            router = router_for(
                realtime,
                live=live,
                clock=lambda: self.clock(),
                config_source=lambda: self.config,
                acks=AckWriter(name="signal-engine-acks"),
            )
        self.router: EntryRouter = router
        self.config_source = config_source
        self.live = live
        # None: follow the feed hub's market clock through kv (every process agrees on it).
        self.clock: Callable[[], float] = clock or MarketClock(wall, name="signal engine")
        self.wall = wall
        self.wait_timeout = wait_timeout
        self.catchup_interval = catchup_interval
        self.config_interval = config_interval
        self.heartbeat_interval = heartbeat_interval
        self.log_interval = log_interval
        self.heartbeat = Heartbeat(realtime.kv, self.name)
        self.counters = EngineCounters()
        self.config: AlgoConfig = config_source()
        self.indices: dict[str, IndexRuntime] = {}  # IDX_I:13 -> runtime
        self.last_error: str | None = None
        self.last_decision: dict[str, Any] | None = None
        self._capital: tuple[date, Decimal] | None = None  # live: (day, start-of-day limit)
        self.started = False
        self._next_clock = 0.0
        self._next_catchup = 0.0
        # (index key, timeframe) -> the newest candle start the last catch-up pass saw unfed
        self._catchup_seen: dict[tuple[str, int], float] = {}
        self._next_config = 0.0
        self._next_beat = 0.0
        self._next_log = 0.0

    # -- the component ---------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        clear_auth_failure(self.realtime.kv, self.name)
        subscription = self.realtime.events.subscribe([CANDLE_TOPIC])
        try:
            while not stop.is_set():
                if not self.started:
                    if not self.handle_start():
                        stop.wait(self.wait_timeout)
                        continue
                self.handle_events(subscription, self.wait_timeout)
                self.step()
        finally:
            subscription.close()
            acks = getattr(self.router, "acks", None)
            if acks is not None:
                acks.close()  # the last answers written before the last heartbeat
            try:
                self.heartbeat.beat("stopped", **self._heartbeat_fields())
            except Exception as exc:  # a dead store must not turn a clean stop into a crash
                logger.warning("signal engine: last heartbeat not written: %s", exc)
            logger.info("signal engine stopped: %s", self._summary())
            connections.close_all()  # this thread's (a component restarted must not leak one)

    def handle_start(self) -> bool:
        """Start once market time is known (True when started). Until then only the clock is
        followed and a waiting heartbeat written, so a trading day is never guessed from the
        wall clock."""
        now = self.wall()
        if now >= self._next_clock:
            self._next_clock = now + 1.0
            self.handle_clock()
        if self.market_time_known():
            self.start()
            return True
        if now >= self._next_beat:
            self._next_beat = now + self.heartbeat_interval
            logger.info("signal engine: waiting for market time from the feed hub")
            try:
                self.heartbeat.beat("waiting", **self._heartbeat_fields())
            except StoreUnavailable as exc:
                logger.warning("signal engine: heartbeat not written: %s", exc)
        return False

    def handle_clock(self) -> bool:
        """Follow the feed hub's market clock (kv ``market:clock``); True when it was read.
        A store error or no record yet keeps the clock as it is (it runs on by itself)."""
        clock = self.clock
        if not isinstance(clock, MarketClock):
            return False
        try:
            record = self.realtime.kv.get(MARKET_CLOCK)
        except StoreUnavailable as exc:
            logger.warning("signal engine: market clock not read: %s", exc)
            return False
        return clock.follow(record)

    def market_time_known(self) -> bool:
        """An injected clock (tests, a replay) is market time by definition; the default one
        once it has followed the hub's."""
        clock = self.clock
        return clock.synced if isinstance(clock, MarketClock) else True

    def start(self) -> None:
        """Resolve the enabled indices in the catalog, load their contracts, warm indicators."""
        self.started = True
        self._next_beat = 0.0  # the next pass says "running" at once, not "waiting"
        self._sync_indices()
        if not self.indices:
            logger.error("signal engine: no enabled index could be set up; nothing to decide")
        self.publish_candidates()
        logger.info(
            "signal engine started: %s, config %s, primary %d m%s",
            ", ".join(f"{r.config.key} ({r.key})" for r in self.indices.values()) or "no index",
            self.config.version,
            self.config.signals.timeframe_minutes,
            (
                f", confirmation {self.config.signals.confirm_timeframe_minutes} m"
                if self.config.signals.confirm_timeframe_minutes
                else ""
            ),
        )

    def step(self) -> None:
        """The periodic chores of one pass: market clock, config reload, missed-candle
        catch-up, heartbeat."""
        now = self.wall()
        if now >= self._next_clock:
            self._next_clock = now + 1.0
            self.handle_clock()
        if now >= self._next_config:
            self._next_config = now + self.config_interval
            self.handle_config()
        if now >= self._next_catchup:
            self._next_catchup = now + self.catchup_interval
            self.handle_catchup()
        if now >= self._next_beat:
            self._next_beat = now + self.heartbeat_interval
            try:
                self.heartbeat.beat("running", **self._heartbeat_fields())
            except StoreUnavailable as exc:
                logger.warning("signal engine: heartbeat not written: %s", exc)
        if now >= self._next_log:
            self._next_log = now + self.log_interval
            logger.info("signal engine: %s", self._summary())

    # -- timeframes ------------------------------------------------------------------------------

    @property
    def primary(self) -> int:
        return self.config.signals.timeframe_minutes * 60

    @property
    def confirmation(self) -> int | None:
        minutes = self.config.signals.confirm_timeframe_minutes
        return minutes * 60 if minutes else None

    def timeframes(self) -> tuple[int, ...]:
        second = self.confirmation
        return (self.primary,) if second is None else (self.primary, second)

    # -- set-up ----------------------------------------------------------------------------------

    def _sync_indices(self) -> None:
        """Make ``self.indices`` match the enabled indices of the current config."""
        from instruments.catalog import CatalogError, index_by_name

        wanted = {c.key: c for c in self.config.enabled_indices()}
        for key, runtime in list(self.indices.items()):
            cfg = wanted.get(runtime.config.key)
            if cfg is None:
                logger.info("signal engine: %s disabled by the config", runtime.config.key)
                del self.indices[key]
            else:
                runtime.config = cfg
        known = {r.config.key for r in self.indices.values()}
        for cfg in wanted.values():
            if cfg.key in known:
                continue
            try:
                instrument = index_by_name(cfg.key)
            except CatalogError as exc:
                self.last_error = str(exc)
                logger.error("signal engine: %s is enabled but %s; it is skipped", cfg.key, exc)
                continue
            key = instrument_key(INDEX_SEGMENT, instrument.security_id)
            runtime = IndexRuntime(
                cfg, key, {tf: SignalState(self.config.signals) for tf in self.timeframes()}
            )
            self.indices[key] = runtime
            self._load_contracts(runtime)
            self.warm(runtime)

    def _load_contracts(self, runtime: IndexRuntime) -> None:
        """The option contracts of the next two expiries (the rules pick one of them)."""
        from instruments.catalog import expiries
        from instruments.models import Derivative, OptionType

        today = self._market_now().date()
        nearest = expiries(runtime.config.key, today)[:2]
        rows = Derivative.objects.filter(
            underlying__trading_symbol=runtime.config.key,
            underlying__exchange_segment=INDEX_SEGMENT,
            is_active=True,
            option_type__in=(OptionType.CALL, OptionType.PUT),
            expiry_date__in=nearest,
        ).values_list(
            "exchange_segment",
            "security_id",
            "trading_symbol",
            "expiry_date",
            "strike",
            "option_type",
            "lot_size",
            "tick_size",
        )
        runtime.contracts = [
            strikes.OptionContract(
                exchange_segment=seg,
                security_id=sid,
                symbol=symbol,
                underlying=runtime.config.key,
                expiry=expiry,
                strike=strike,
                option_type=kind,
                lot_size=lot,
                tick_size=tick,
            )
            for seg, sid, symbol, expiry, strike, kind, lot, tick in rows
        ]
        runtime.contracts_day = today
        if not runtime.contracts:
            logger.error(
                "signal engine: the catalog lists no %s options expiring on or after %s: "
                "every %s entry will be blocked (import the scrip master)",
                runtime.config.key,
                today,
                runtime.config.key,
            )

    def warm(self, runtime: IndexRuntime) -> int:
        """Feed history into the index's indicators without deciding anything: 1-minute
        candles from the intraday chart API (aggregated for longer timeframes), else the hub's
        candle history. Returns the number of primary candles fed."""
        minutes = self._chart_history(runtime)
        now = self.clock()
        fed = 0
        for tf in self.timeframes():
            series = minutes if tf == 60 else aggregate(minutes, tf)
            if not series:
                series = self._kv_history(runtime.key, tf)
            for candle in series:
                if candle.end <= now:
                    fed += self._feed(runtime, candle, decide=False) and tf == self.primary
        state = runtime.states[self.primary]
        logger.info(
            "signal engine: %s warmed with %d candles (%s)",
            runtime.config.key,
            fed,
            "ready" if state.warm else f"{state.candles} of {state.needed} needed",
        )
        return fed

    def _chart_history(self, runtime: IndexRuntime) -> list[Candle]:
        if self.rest is None:
            return []
        now = self._market_now()
        opening = self.config.market.session_open
        start = (now - timedelta(days=self.config.signals.history_days)).replace(
            hour=opening.hour, minute=opening.minute, second=0, microsecond=0
        )
        try:
            return index_minutes(self.rest, runtime.key, start, now)
        except AuthFailure as exc:
            raise report_auth_failure(self.realtime.kv, self.name, "history", exc) from None
        except Exception as exc:
            self.last_error = f"history for {runtime.config.key} failed: {exc}"
            logger.warning("signal engine: %s; falling back to the hub's candles", self.last_error)
            return []

    def _kv_history(self, key: str, timeframe: int, after: float | None = None) -> list[Candle]:
        """The hub's candle history of ``key``, only the candles starting after ``after``
        (the others are skipped before they are parsed: catch-up reads this every few s)."""
        try:
            rows = self.realtime.kv.get_list(candles_key(key, timeframe))
        except StoreUnavailable as exc:
            logger.warning("signal engine: candle history of %s unreadable: %s", key, exc)
            return []
        out = []
        for row in rows:
            try:
                if after is not None and row["start"] <= after:
                    continue
                out.append(Candle.from_dict(row))
            except (KeyError, TypeError, ValueError) as exc:
                logger.warning("signal engine: skipping a bad candle in %s: %s", key, exc)
        return out

    # -- candles in ------------------------------------------------------------------------------

    def handle_events(self, subscription: Any, timeout: float) -> int:
        """Wait up to ``timeout`` for candle events, take every one waiting, feed them in time
        order (at equal close times the longer timeframe first, so a 5-minute confirmation
        closing with a 1-minute candle is known before that candle is decided). Returns the
        number of candles fed."""
        first = subscription.get(timeout)
        if first is None:
            return 0
        close_old_connections()
        events = [first]
        while (more := subscription.get(0)) is not None:
            events.append(more)
        candles = []
        for _topic, payload in events:
            try:
                candles.append(Candle.from_dict(payload))
            except (KeyError, TypeError, ValueError) as exc:
                logger.warning("signal engine: skipping a malformed candle event: %s", exc)
        return self.handle_candles(candles)

    def handle_candles(self, candles: Iterable[Candle]) -> int:
        fed = 0
        for candle in sorted(candles, key=lambda c: (c.end, -c.timeframe)):
            runtime = self.indices.get(candle.key)
            if runtime is None or candle.timeframe not in runtime.states:
                continue
            self._fill_gap(runtime, candle)
            fed += self._feed(runtime, candle, decide=True)
        return fed

    def handle_catchup(self) -> int:
        """Feed candles the hub closed but whose events never arrived (Redis pub/sub is at
        most once). Returns the number fed.

        A candle is taken as lost only when the previous pass saw it in the history too: one
        the hub closed a moment ago has its event on the way (the hub writes the history,
        then publishes), and feeding it here would call it lost when it is not."""
        close_old_connections()
        fed = 0
        for runtime in list(self.indices.values()):
            for tf in sorted(runtime.states, reverse=True):
                history = self._kv_history(runtime.key, tf, runtime.last_fed.get(tf))
                seen = self._catchup_seen.get((runtime.key, tf))
                if history:
                    self._catchup_seen[(runtime.key, tf)] = history[-1].start
                for candle in history:
                    if seen is None or candle.start > seen:
                        break  # new since the last pass: its event may still come
                    fed += self._feed(runtime, candle, decide=True)
        if fed:
            logger.warning("signal engine: caught up %d candles whose events were lost", fed)
        return fed

    def _fill_gap(self, runtime: IndexRuntime, candle: Candle) -> None:
        last = runtime.last_fed.get(candle.timeframe)
        if last is None or candle.start <= last + candle.timeframe:
            return
        for missed in self._kv_history(runtime.key, candle.timeframe, last):
            if missed.start < candle.start:
                self._feed(runtime, missed, decide=True)

    def _feed(self, runtime: IndexRuntime, candle: Candle, *, decide: bool) -> bool:
        """Update the indicators with ``candle`` once (older or repeated candles are ignored);
        decide on it when it is a primary candle and ``decide``."""
        tf = candle.timeframe
        state = runtime.states.get(tf)
        last = runtime.last_fed.get(tf)
        if state is None or (last is not None and candle.start <= last):
            return False
        signal = state.update(candle.high, candle.low, candle.close)
        runtime.last_fed[tf] = candle.start
        self.counters.candles += 1
        if tf == self.primary:
            runtime.last_close = candle.close
            if decide:
                try:
                    self.decide(runtime, candle, signal)
                except BrokerAuthFailed:
                    raise  # not one bad decision: no decision can be acted on any more
                except Exception as exc:
                    # One bad decision (a database hiccup) must not stop the engine: the row,
                    # if written, says pending; the next candle is decided normally.
                    self.counters.errors += 1
                    self.last_error = f"{runtime.config.key} {candle.start_datetime}: {exc}"
                    logger.exception("signal engine: deciding %s failed", runtime.config.key)
        return True

    # -- the decision ----------------------------------------------------------------------------

    def decide(self, runtime: IndexRuntime, candle: Candle, signal: Signal) -> TradingSignal | None:
        """Steps 1-5 of the module docstring for one closed primary candle. Returns the row,
        or None when another engine (or an earlier run) already decided this candle."""
        cfg = self.config
        now = self._market_now()
        second = self.confirmation
        if second is not None:
            # The confirmation state's latest signal: a "warming up" avoid until it has enough
            # candles, which blocks entries rather than letting the primary through alone.
            signal = confirm(signal, runtime.states[second].last, label=f"{second // 60}m")
        row = self._claim(runtime, candle, signal)
        if row is None:
            self.counters.duplicates += 1
            return None
        self.counters.signals += 1
        self._refresh_contracts(runtime, now)
        self.publish_candidates(runtime, spot=candle.close, now=now)
        age = now.timestamp() - candle.end
        if age > cfg.signals.max_candle_age_seconds:
            self.counters.stale += 1
            return self._finish(
                row,
                SignalOutcome.STALE,
                now,
                block_reason=(
                    f"seen {age:.0f} s after the candle closed "
                    f"(limit {cfg.signals.max_candle_age_seconds} s)"
                ),
            )
        if signal.direction == Direction.AVOID:
            return self._finish(row, SignalOutcome.AVOID, now)
        direction = signal.direction
        state = self.risk_state(runtime, now)
        verdict = gates.check_entry(runtime.config, direction, now, state, cfg)
        if not verdict.allowed:
            return self._block(row, now, verdict.gate, verdict.reason)
        spot = self._spot(runtime, candle)
        quotes = _QuoteView(self.realtime, self.wall)
        choice = strikes.choose_strike(
            direction,
            spot,
            now,
            runtime.contracts,
            quotes,
            runtime.config,
            cfg.strikes,
            cfg.feed,
        )
        if not choice.ok:
            return self._block(row, now, Gate.STRIKE, choice.reason)
        contract = choice.contract
        verdict = gates.check_contract(contract.key, state)
        if not verdict.allowed:
            return self._block(row, now, verdict.gate, verdict.reason)
        quote = quotes[contract.key]
        reference = _money(quote.ask if quote.ask else quote.ltp)
        cash = self.available_cash()
        if cash is None:
            return self._block(row, now, Gate.SIZING, f"cash unknown: {self.last_error}")
        size = sizing.size_entry(
            reference,
            contract.lot_size,
            cash,
            cfg.risk.sizing,
            cfg.exits.stop_loss.sl_pct,
            self._freeze_quantity(runtime.config),
        )
        if not size.ok:
            return self._block(row, now, Gate.SIZING, size.reason)
        intent = EntryIntent(
            signal_id=row.pk,
            index=runtime.config.key,
            direction=direction,
            exchange_segment=contract.exchange_segment,
            security_id=contract.security_id,
            symbol=contract.symbol,
            expiry=contract.expiry,
            strike=contract.strike,
            option_type=contract.option_type,
            lot_size=contract.lot_size,
            tick_size=contract.tick_size,
            lots=size.lots,
            quantity=size.quantity,
            orders=size.orders,
            reference_price=reference,
            limit_price=marketable_limit(
                reference, cfg.orders.limit_buffer_pct, contract.tick_size
            ),
            config_version=cfg.version,
            decided_at=now,
            underlying_price=_money(spot),
        )
        recorded = intent.as_dict()
        recorded["size"] = {
            "risk_lots": size.risk_lots,
            "allocation_lots": size.allocation_lots,
            "affordable_lots": size.affordable_lots,
            "max_lots": size.max_lots,
            "cash": str(cash),
        }
        recorded["strike_choice"] = {
            "expiry": str(choice.expiry),
            "atm": str(choice.atm),
            "tried": [list(t) for t in choice.tried],
        }
        # Journal first: the intent is on the row before the router sees it.
        row.intent = recorded
        self._finish(row, SignalOutcome.INTENT, now)
        self.counters.intents += 1
        try:
            result = self.router.place_entry(intent)
        except AuthFailure as exc:
            raise report_auth_failure(self.realtime.kv, self.name, "orders", exc) from None
        except Exception as exc:
            logger.exception("signal engine: the order router failed on signal %d", row.pk)
            return self._finish(
                row, SignalOutcome.REJECTED, now, block_reason=f"order router error: {exc}"
            )
        if result.status == "rejected":
            return self._finish(row, SignalOutcome.REJECTED, now, block_reason=result.detail)
        TradingSignal.objects.filter(pk=row.pk).update(block_reason=result.detail)
        return row

    def _claim(self, runtime: IndexRuntime, candle: Candle, signal: Signal) -> TradingSignal | None:
        try:
            with transaction.atomic():
                return TradingSignal.objects.create(
                    index=runtime.config.key,
                    timeframe=candle.timeframe,
                    candle_start=candle.start_datetime,
                    close=_money(candle.close),
                    direction=str(signal.direction),
                    confidence=round(float(signal.confidence), 6),
                    indicators=_json_values(signal.values),
                    reason=signal.reason[:200],
                    config_version=self.config.version,
                )
        except IntegrityError:
            logger.info(
                "signal engine: %s %s already decided (restart or another engine); skipped",
                runtime.config.key,
                candle.start_datetime,
            )
            return None

    def _finish(
        self,
        row: TradingSignal,
        outcome: str,
        now: datetime,
        *,
        gate: str = "",
        block_reason: str = "",
    ) -> TradingSignal:
        row.outcome = outcome
        row.gate = gate
        row.block_reason = block_reason
        row.decided_at = now
        row.save(update_fields=["outcome", "gate", "block_reason", "decided_at", "intent"])
        self.last_decision = {
            "index": row.index,
            "candle": row.candle_start.isoformat(),
            "direction": row.direction,
            "outcome": outcome,
            "gate": gate,
        }
        level = _LOG_LEVELS.get(outcome, logging.DEBUG)
        logger.log(
            level,
            "signal engine: %s %s %s (%.2f) -> %s%s",
            row.index,
            f"{row.candle_start.astimezone(IST):%H:%M}",
            row.direction,
            row.confidence,
            outcome,
            f" [{gate}] {block_reason}" if gate else (f" {block_reason}" if block_reason else ""),
        )
        return row

    def _block(
        self, row: TradingSignal, now: datetime, gate: str | None, reason: str | None
    ) -> TradingSignal:
        self.counters.blocked += 1
        return self._finish(
            row, SignalOutcome.BLOCKED, now, gate=gate or "unknown", block_reason=reason or ""
        )

    # -- inputs ----------------------------------------------------------------------------------

    def _market_now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), IST)

    def _spot(self, runtime: IndexRuntime, candle: Candle) -> float:
        """The index's latest tick when it is fresh, else the candle's close."""
        try:
            record = self.realtime.ticks.get(runtime.key)
        except StoreUnavailable:
            record = None
        if record is not None and record.ltp > 0:
            if self.wall() - record.receive_time <= self.config.feed.index_stale_seconds:
                return record.ltp
        return candle.close

    def risk_state(self, runtime: IndexRuntime, now: datetime) -> gates.RiskState:
        """Everything the gates read, from the database, the switches and the feed health."""
        from trading.switches import kill_switch_active, trading_enabled

        # The day is the market's: positions count by their market times (opened_at, exited_at),
        # so a simulated day counts as that day whatever the wall clock says.
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        rows = list(
            PositionTracker.objects.filter(
                Q(status__in=OPEN_STATUSES)
                | Q(opened_at__gte=day_start)
                | Q(exited_at__gte=day_start)
            ).values(
                "status",
                "underlying",
                "direction",
                "exchange_segment",
                "security_id",
                "opened_at",
                "created_at",
                "exited_at",
                "realized_pnl",
                "unrealized_pnl_net",
            )
        )
        open_positions = tuple(
            gates.OpenPosition(
                index=r["underlying"],
                direction=r["direction"],
                contract_key=instrument_key(r["exchange_segment"], r["security_id"]),
                opened_at=r["opened_at"] or r["created_at"],
            )
            for r in rows
            if r["status"] in OPEN_STATUSES
        )
        closed = sorted(
            (r for r in rows if r["status"] == PositionStatus.EXITED and r["exited_at"]),
            key=lambda r: r["exited_at"],
        )
        closed_today = tuple(
            gates.ClosedTrade(
                index=r["underlying"],
                direction=r["direction"],
                exited_at=r["exited_at"],
                pnl=r["realized_pnl"] or Decimal(0),
            )
            for r in closed
            if r["exited_at"] >= day_start
        )
        entries: dict[str, int] = {}
        for r in rows:
            opened = r["opened_at"]
            if opened and opened >= day_start and r["status"] != PositionStatus.CANCELLED:
                entries[r["underlying"]] = entries.get(r["underlying"], 0) + 1
        open_pnl = sum(
            (r["unrealized_pnl_net"] or Decimal(0) for r in rows if r["status"] in OPEN_STATUSES),
            Decimal(0),
        )
        return gates.RiskState(
            trading_enabled=trading_enabled(),
            kill_switch=kill_switch_active(),
            feed_state=self._feed_state(),
            index_tick_age=self._tick_age(runtime.key),
            capital=self.capital(day_start),
            realized_pnl_today=sum((t.pnl for t in closed_today), Decimal(0)),
            open_pnl=open_pnl,
            entries_today=entries,
            open_positions=open_positions,
            closed_today=closed_today,
        )

    def _feed_state(self) -> str:
        try:
            record = self.realtime.kv.get(FEED_HEALTH)
        except StoreUnavailable:
            return "unknown"
        if not isinstance(record, dict):
            return "unknown"
        return str(record.get("state") or "unknown")

    def _tick_age(self, key: str) -> float | None:
        try:
            record = self.realtime.ticks.get(key)
        except StoreUnavailable:
            return None
        if record is None:
            return None
        return max(0.0, self.wall() - record.receive_time)

    def capital(self, day_start: datetime) -> Decimal:
        """The capital the daily loss limit's percentage is of: paper, the seed cash plus the
        net PnL booked before today; live, the broker's start-of-day limit."""
        if self.live:
            # The start-of-day limit does not change intraday: the last value read today
            # serves when a refresh fails. Never read today: 0, which makes a percentage loss
            # limit block entries (fail safe) until the broker answers.
            funds = self._funds()
            if funds is not None:
                self._capital = (day_start.date(), funds.sodLimit or funds.availabelBalance)
            known = self._capital
            return known[1] if known is not None and known[0] == day_start.date() else Decimal(0)
        booked = PositionTracker.objects.filter(
            status=PositionStatus.EXITED, exited_at__lt=day_start
        ).aggregate(total=Sum("realized_pnl"))["total"]
        return self.seed_cash() + (booked or Decimal(0))

    def available_cash(self) -> Decimal | None:
        """Cash an entry may use: paper, the paper ledger (opening cash + every premium,
        proceeds and charge booked from the fills) less what working buy orders may still
        spend at their limits; live, the broker's available balance (None when unreadable)."""
        if self.live:
            funds = self._funds()
            return None if funds is None else funds.availabelBalance
        from trading.models import Order, OrderSide
        from trading.orders.ledger import paper_cash
        from trading.orders.states import WORKING

        reserved = Decimal(0)
        for quantity, filled, limit in Order.objects.filter(
            side=OrderSide.BUY, status__in=WORKING
        ).values_list("quantity", "filled_quantity", "limit_price"):
            reserved += (quantity - filled) * limit
        return paper_cash(self.seed_cash()) - reserved

    def seed_cash(self) -> Decimal:
        """The paper ledger's opening cash: PAPER_SEED_CASH when set, else the config's."""
        from django.conf import settings

        from_env = getattr(settings, "PAPER_SEED_CASH", None)
        return Decimal(from_env) if from_env is not None else self.config.paper.seed_cash

    def _funds(self) -> Any:
        if self.rest is None:
            self.last_error = "no broker client to read the fund limit"
            return None
        try:
            return self.rest.fund_limit()
        except AuthFailure as exc:
            raise report_auth_failure(self.realtime.kv, self.name, "funds", exc) from None
        except Exception as exc:
            self.last_error = f"fund limit unreadable: {exc}"
            logger.warning("signal engine: %s", self.last_error)
            return None

    def _freeze_quantity(self, index: IndexConfig) -> int:
        if index.freeze_quantity is not None:
            return index.freeze_quantity
        from instruments.catalog import freeze_quantity

        return freeze_quantity(index.key)

    def _refresh_contracts(self, runtime: IndexRuntime, now: datetime) -> None:
        if runtime.contracts_day != now.date():
            self._load_contracts(runtime)

    # -- candidate subscriptions -----------------------------------------------------------------

    def publish_candidates(
        self,
        runtime: IndexRuntime | None = None,
        *,
        spot: float | None = None,
        now: datetime | None = None,
    ) -> None:
        """Recompute one index's candidate contracts (or every index's) and publish the union
        as kv ``feed:candidates`` for the feed hub."""
        now = now or self._market_now()
        targets = [runtime] if runtime is not None else list(self.indices.values())
        for item in targets:
            level = spot if item is runtime and spot is not None else self._level(item)
            if level is None or not item.contracts:
                continue
            picked = strikes.candidate_contracts(level, now, item.contracts, self.config.strikes)
            item.candidates = tuple(c.key for c in picked)
        keys = sorted({k for item in self.indices.values() for k in item.candidates})
        try:
            self.realtime.kv.put(
                FEED_CANDIDATES, {"keys": keys, "at": self.wall()}, ttl=CANDIDATES_TTL
            )
        except StoreUnavailable as exc:
            logger.warning("signal engine: candidate contracts not published: %s", exc)

    def _level(self, runtime: IndexRuntime) -> float | None:
        try:
            record = self.realtime.ticks.get(runtime.key)
        except StoreUnavailable:
            record = None
        if record is not None and record.ltp > 0:
            return record.ltp
        return runtime.last_close

    # -- config ----------------------------------------------------------------------------------

    def handle_config(self) -> bool:
        """Re-read the effective config (file + overrides); True when its version changed. An
        invalid config keeps the last good one and says so loudly."""
        try:
            fresh = self.config_source()
        except ConfigError as exc:
            self.last_error = str(exc)
            logger.error(
                "signal engine: config invalid, keeping version %s:\n%s", self.config.version, exc
            )
            return False
        except Exception as exc:  # the database is away: keep going on the last config
            logger.warning("signal engine: config not re-read: %s", exc)
            return False
        if fresh.version == self.config.version:
            return False
        old = self.config
        logger.warning("signal engine: config changed %s -> %s", old.version, fresh.version)
        self.config = fresh
        if old.signals != fresh.signals:
            # New indicator parameters: every index starts over from history.
            self.indices.clear()
        self._sync_indices()
        self.publish_candidates()
        return True

    # -- state -----------------------------------------------------------------------------------

    def _heartbeat_fields(self) -> dict[str, Any]:
        indices = {}
        for runtime in self.indices.values():
            state = runtime.states.get(self.primary)
            last = runtime.last_fed.get(self.primary)
            indices[runtime.config.key] = {
                "key": runtime.key,
                "warm": bool(state and state.warm),
                "candles": state.candles if state else 0,
                "last_candle": (
                    datetime.fromtimestamp(last, IST).isoformat() if last is not None else None
                ),
                "candidates": len(runtime.candidates),
            }
        fields = {
            "config_version": self.config.version,
            "market_time": self._market_now().isoformat() if self.market_time_known() else None,
            "indices": indices,
            "counters": vars(self.counters).copy(),
            "last_decision": self.last_decision,
            "last_error": self.last_error,
        }
        acks = getattr(self.router, "acks", None)
        if acks is not None:
            fields["acks"] = acks.describe()
        return fields

    def _summary(self) -> str:
        c = self.counters
        return (
            f"{len(self.indices)} indices, {c.candles} candles, {c.signals} signals, "
            f"{c.intents} intents, {c.blocked} blocked, {c.stale} stale, {c.errors} errors"
        )


class _QuoteView(Mapping[str, strikes.OptionQuote]):
    """Option quotes read from the tick store on demand (the rules ask for a few keys)."""

    def __init__(self, realtime: Realtime, wall: Callable[[], float]) -> None:
        self._ticks = realtime.ticks
        self._wall = wall
        self._cache: dict[str, strikes.OptionQuote | None] = {}

    def _quote(self, key: str) -> strikes.OptionQuote | None:
        if key not in self._cache:
            try:
                record = self._ticks.get(key)
            except StoreUnavailable:
                record = None
            self._cache[key] = None if record is None else _as_quote(record, self._wall())
        return self._cache[key]

    def __getitem__(self, key: str) -> strikes.OptionQuote:
        quote = self._quote(key)
        if quote is None:
            raise KeyError(key)
        return quote

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._quote(key) is not None

    def __iter__(self) -> Any:
        return iter([k for k, v in self._cache.items() if v is not None])

    def __len__(self) -> int:
        return sum(1 for v in self._cache.values() if v is not None)


def _as_quote(record: TickRecord, wall_now: float) -> strikes.OptionQuote:
    return strikes.OptionQuote(
        ltp=record.ltp,
        # An empty side of the book (0) is passed as it is: the liquidity rule blocks it.
        # None means no quote or depth was ever seen, and then the spread is not checked.
        bid=record.bid,
        ask=record.ask,
        oi=record.oi,
        age_seconds=max(0.0, wall_now - record.receive_time),
    )


def _json_values(values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, float):
            out[name] = None if value != value else round(value, 6)  # NaN -> null
        elif isinstance(value, Decimal):
            out[name] = str(value)
        else:
            out[name] = value
    return out


def engine_from_settings(
    realtime: Realtime,
    *,
    router: EntryRouter | None = None,
    live: bool | None = None,
    clock: Callable[[], float] | None = None,
    rest: Any | None = None,
) -> SignalEngine:
    """The engine as run_signal_engine and run_trader build it."""
    if live is None:
        from trading.mode import trading_mode

        live = trading_mode().live
    if rest is None:
        from trading.dhan.rest import DhanRestClient

        rest = DhanRestClient.from_settings()
    return SignalEngine(realtime, rest=rest, router=router, live=live, clock=clock)
