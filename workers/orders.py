"""The order router and the order manager as the workers build them (paper or live).

One place decides the gateway: live only when ``trading.mode.trading_mode()`` says so
(PAPER_MODE=false AND ENABLE_ORDER=true AND credentials), else paper; a paper system never
builds a live gateway. The router prices from the tick store's latest record of a contract,
and only when it is fresh (``feed.option_stale_seconds``, the same limit the entry rules use):
it never prices an order from an old tick.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

from trading.config.types import AlgoConfig
from trading.models import PositionTracker
from trading.orders.acks import AckWriter
from trading.orders.router import OrderRouter, Quote
from workers.realtime.redis_client import StoreUnavailable
from workers.realtime.services import Realtime

logger = logging.getLogger(__name__)

__all__ = [
    "ReloadingConfig",
    "RestQuotes",
    "exit_freeze_quantity",
    "journal_charges",
    "router_for",
    "tick_quote",
]


def tick_quote(
    realtime: Realtime,
    config_source: Callable[[], AlgoConfig],
    wall: Callable[[], float] = time.time,
) -> Quote:
    """(bid, ask, ltp) of a contract from the tick store, None when absent or older than
    ``feed.option_stale_seconds`` (receive time against the wall clock: the feed's age)."""

    def quote(key: str) -> tuple[Decimal | None, Decimal | None, Decimal | None] | None:
        try:
            record = realtime.ticks.get(key)
        except StoreUnavailable:
            return None
        if record is None:
            return None
        return record_quote(record, config_source().feed.option_stale_seconds, wall())

    return quote


def record_quote(
    record: Any, stale_seconds: float, wall: float
) -> tuple[Decimal | None, Decimal | None, Decimal | None] | None:
    """A tick record's (bid, ask, ltp) in rupees, None when it is older than ``stale_seconds``
    at ``wall`` (its receive time against the wall clock: the feed's age)."""
    if wall - record.receive_time > stale_seconds:
        return None
    return (_money(record.bid), _money(record.ask), _money(record.ltp))


class RestQuotes:
    """Live mode's answer to a stale feed: the contract's quote from Dhan's REST market-quote
    API (``/marketfeed/quote``: LTP and five-level depth) instead of an old tick. Rate-limited
    twice: at most one request per contract every ``min_interval`` seconds (the answer is kept
    that long) and the REST client's own limiter (Dhan's quote endpoint allows 1 request/s).
    A failed request answers None (no price: nothing is priced from a guess) and is retried
    after ``min_interval``; an authentication failure propagates (trading stops loudly)."""

    def __init__(
        self,
        rest: Any,
        *,
        min_interval: float = 2.0,
        wall: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rest = rest
        self.min_interval = min_interval
        self.wall = wall
        self.requests = 0
        self.failures = 0
        self._last: dict[str, tuple[float, Any]] = {}

    def __call__(self, key: str) -> tuple[Decimal | None, Decimal | None, Decimal | None] | None:
        from trading.dhan.errors import AuthFailure
        from trading.dhan.rest_types import MarketQuoteRequest
        from trading.rules.market import split_key

        now = self.wall()
        seen = self._last.get(key)
        if seen is not None and now - seen[0] < self.min_interval:
            return seen[1]
        segment, security_id = split_key(key)
        value = None
        self.requests += 1
        try:
            answer = self.rest.quote_full(MarketQuoteRequest({segment: [int(security_id)]}))
            quote = answer.get(segment, int(security_id))
        except AuthFailure:
            raise
        except Exception as exc:  # a fault of the request: no price now, asked again later
            self.failures += 1
            logger.warning("REST quote of %s failed: %s", key, exc)
            quote = None
        if quote is not None and quote.last_price and quote.last_price > 0:
            bid = ask = None
            depth = quote.depth
            if depth is not None:
                bid = next((level.price for level in depth.buy if level.price > 0), None)
                ask = next((level.price for level in depth.sell if level.price > 0), None)
            value = (bid, ask, Decimal(quote.last_price))
        self._last[key] = (now, value)
        return value


def fresh_or_rest(ticks: Quote, rest: RestQuotes) -> Quote:
    """The fresh tick when there is one, else the REST quote (live mode's stale feed)."""

    def quote(key: str) -> tuple[Decimal | None, Decimal | None, Decimal | None] | None:
        answer = ticks(key)
        return answer if answer is not None else rest(key)

    return quote


def _money(value: float | None) -> Decimal | None:
    return None if not value or value <= 0 else Decimal(f"{value:.2f}")


def exit_freeze_quantity(config_source: Callable[[], AlgoConfig]) -> Callable[[Any], int]:
    """Units one exit order may carry: the index's ``freeze_quantity`` in algo.yml, else the
    catalog's (config/instruments.yml)."""

    def freeze(position: PositionTracker) -> int:
        from instruments.catalog import freeze_quantity

        for index in config_source().indices:
            if index.key == position.underlying and index.freeze_quantity is not None:
                return index.freeze_quantity
        return freeze_quantity(position.underlying)

    return freeze


def journal_charges(segment: str, side: str, quantity: int, turnover: Decimal, on: date) -> Decimal:
    """The charges of one executed order (config/charges.yml at the rates of ``on``), or the
    flat ``PAPER_CHARGES_PER_ORDER`` when that is set."""
    from django.conf import settings

    from trading.charges import charges_table
    from trading.rules.charges import exchange_of, order_charges

    flat = getattr(settings, "PAPER_CHARGES_PER_ORDER", None)
    if flat is not None:
        return Decimal(flat)
    price = turnover / quantity
    return order_charges(exchange_of(segment), side, quantity, price, on, charges_table()).total


def router_for(
    realtime: Realtime,
    *,
    live: bool,
    clock: Callable[[], float],
    config_source: Callable[[], AlgoConfig],
    gateway: Any | None = None,
    rest_quotes: RestQuotes | None = None,
    acks: AckWriter | None = None,
) -> OrderRouter:
    """The router of this process: the paper gateway, or the live one when ``live``. Orders
    are priced from a fresh tick; in live mode, when the feed is stale, from ``rest_quotes``
    (Dhan's REST quote; paper waits for a fresh tick: it never fills at an old price)."""
    if gateway is None:
        if live:
            from trading.orders.live import live_gateway_from_settings

            gateway = live_gateway_from_settings()
        else:
            from trading.orders.gateway import PaperGateway

            gateway = PaperGateway()
    quote = tick_quote(realtime, config_source)
    if live and rest_quotes is None and getattr(gateway, "rest", None) is not None:
        # The gateway's own client: one rate limiter for every request of this process.
        rest_quotes = RestQuotes(gateway.rest)
    if live and rest_quotes is not None:
        quote = fresh_or_rest(quote, rest_quotes)
    return OrderRouter(
        gateway,
        config_source=config_source,
        clock=clock,
        quote=quote,
        freeze_quantity=exit_freeze_quantity(config_source),
        acks=acks,
    )


class ReloadingConfig:
    """The effective config (file + overrides), re-read at most every ``interval`` seconds;
    an invalid edit keeps the last good config (the signal engine's policy). Calling it gives
    the config held.

    A re-read is two parses of config/algo.yml and a database read: 3-5 ms of interpreter
    and a round trip, which a caller on a hot path paid once every interval. Measured in the
    exit engine's route process (bench/exit_engine.py, a trace of each route): the step
    before the claim, 0.4 ms at p50, was 14 ms at p99, and 2.8 ms with no re-read. So a process
    with a thread off its hot path calls :meth:`refresh_elsewhere` and has that thread call
    :meth:`refresh` (every second, say): the hot path then only reads what is held."""

    def __init__(self, interval: float = 10.0) -> None:
        from trading.config.store import effective_algo_config

        self.interval = interval
        self._read = effective_algo_config
        self._config = effective_algo_config()
        self._next = time.monotonic() + interval
        self._elsewhere = False

    def __call__(self) -> AlgoConfig:
        if not self._elsewhere and time.monotonic() >= self._next:
            self.refresh()
        return self._config

    def refresh_elsewhere(self, elsewhere: bool = True) -> None:
        """From now on a call never re-reads: :meth:`refresh`, called by another thread,
        does (``False``: calls re-read when due again)."""
        self._elsewhere = elsewhere

    def refresh(self) -> None:
        """Re-read when due (at most every ``interval`` seconds)."""
        from config_schema import ConfigError

        if time.monotonic() < self._next:
            return
        self._next = time.monotonic() + self.interval
        try:
            self._config = self._read()
        except ConfigError:
            pass  # the last good one stays; the signal engine says so loudly
        except Exception as exc:  # the database is away for a moment
            logger.warning("config not re-read (keeping the last good one): %s", exc)


def reloading_config(interval: float = 10.0) -> ReloadingConfig:
    """The effective config re-read at most every ``interval`` seconds (ReloadingConfig)."""
    return ReloadingConfig(interval)


def manager_for(realtime: Realtime, *, live: bool, gateway: Any | None = None) -> Any:
    """The order manager of this process: the paper broker in paper mode; in live mode
    Dhan's order-update stream (and its REST fallback) through the live gateway."""
    from trading.orders.paper import PaperBroker
    from workers.market_clock import MarketClock
    from workers.order_manager import OrderManager

    config_source = reloading_config()
    clock = MarketClock(name="order manager")
    router = router_for(
        realtime, live=live, clock=clock, config_source=config_source, gateway=gateway
    )
    if live:
        manager = OrderManager(
            realtime, router, config_source=config_source, charges=journal_charges, clock=clock
        )
        from trading.dhan.order_updates import OrderUpdateClient

        manager.stream = OrderUpdateClient.from_settings(manager.on_update)
        return manager

    def tick(key: str) -> Any:
        try:
            return realtime.ticks.get(key)
        except StoreUnavailable:
            return None

    return OrderManager(
        realtime,
        router,
        config_source=config_source,
        charges=journal_charges,
        paper_broker=PaperBroker(tick, config_source),
        clock=clock,
    )
