"""`make demo`: the product end to end on embedded defaults (SQLite, no Redis, paper mode).

Today: migrate a demo database, start the built-in Dhan simulator on loopback (a trending day,
on the next trading day of config/algo.yml's calendar), import its scrip master over HTTP into
the catalog (so expiries are current), then drive the system the way the trader will: REST
(funds, quotes, option chain); the realtime core and the signal engine on the in-memory cache
and bus for 5 s (one paper position on the ATM call: ticks with depth, index candles, feed
health, live PnL; and one recorded decision per index candle: signal, gates, strike, size); and
a one-lot order round trip with its order updates, charged at config/charges.yml's rates.
Order routing and exits turn it into a full paper-trading session.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trading.dhan.sim.server import Simulator

ROOT = Path(__file__).resolve().parent.parent
# ALGO_DEMO_DB moves the demo's database (the suite runs the demo on a temp file).
DEMO_DB = Path(os.environ.get("ALGO_DEMO_DB") or ROOT / "var" / "demo.sqlite3").resolve()


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def main() -> int:
    sys.path.insert(0, str(ROOT))
    DEMO_DB.parent.mkdir(parents=True, exist_ok=True)
    # The demo never touches a configured database: it always uses its own SQLite file.
    os.environ["DATABASE_URL"] = f"sqlite:///{DEMO_DB}"
    os.environ.pop("REDIS_URL", None)
    os.environ["PAPER_MODE"] = "true"
    os.environ.setdefault("DJANGO_DEBUG", "true")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "algo_scalper.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.core.management.base import CommandError
    from django.utils import timezone

    from instruments import catalog

    print(f"algo-scalper demo: embedded mode, SQLite at {_shown(DEMO_DB)}, paper mode")
    step("migrate")
    call_command("migrate", verbosity=0)
    print("database schema is up to date")

    from trading.dhan.sim.server import SimConfig, Simulator

    step("start the built-in Dhan simulator (loopback, market speed 60x, a trending day)")
    from trading.config.store import effective_algo_config
    from trading.rules.market import IST

    config = effective_algo_config()
    print(f"algo config {config.version} (config/algo.yml; `manage.py check_config` prints it)")
    # A trading day by the config's calendar (a holiday would block every entry), trending.
    day = config.market.next_trading_day(datetime.now(IST).date())
    sim = Simulator(
        SimConfig(seed=7, speed=60.0, start=dtime(10, 0), trading_date=day, regime="trend")
    ).start()
    try:
        for line in sim.settings_lines()[:3]:
            print(line)
        print(f"simulated trading day {sim.market.trading_date}, market time {sim.now():%H:%M:%S}")
        return _with_simulator(sim, call_command, CommandError, catalog, timezone)
    finally:
        sim.stop()


def _wait(condition: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _with_simulator(
    sim: Simulator, call_command: Any, CommandError: type[Exception], catalog: Any, timezone: Any
) -> int:
    from trading.dhan.order_updates import OrderUpdateClient
    from trading.dhan.ratelimit import InProcessRateLimiter, load_limits
    from trading.dhan.rest import DhanRestClient
    from trading.dhan.rest_types import (
        ExpiryListRequest,
        MarketQuoteRequest,
        OptionChainRequest,
        PlaceOrderRequest,
    )

    step("import the simulator's scrip master over HTTP (today's expiries)")
    try:
        call_command("import_instruments", url=sim.scrip_master_url)
    except CommandError as exc:
        print(f"import failed: {exc}", file=sys.stderr)
        return 1
    step("catalog status")
    try:
        call_command("instruments_status")
    except SystemExit as exc:  # exit 1 means empty or stale: the demo just imported, so fail
        if exc.code:
            return int(exc.code)

    rest = DhanRestClient(
        base_url=sim.base_url,
        client_id=sim.client_id,
        token_provider=lambda: sim.token,
        limiter=InProcessRateLimiter(load_limits()),
    )
    with rest:
        step("REST: funds, NIFTY spot, and the catalog's answer for the ATM option")
        funds = rest.fund_limit()
        print(f"fund limit: available Rs {funds.availabelBalance:,.2f}")
        nifty = catalog.index_by_name("NIFTY")
        quote = rest.quote_ltp(MarketQuoteRequest({"IDX_I": [int(nifty.security_id)]}))
        spot = quote.get("IDX_I", int(nifty.security_id)).last_price
        expiry = catalog.expiries(nifty, sim.market.trading_date)[0]
        atm = catalog.nearest_strike(nifty, expiry, spot)
        call = catalog.option_contract(nifty, expiry, atm, "CE")
        print(f"NIFTY {spot} -> nearest expiry {expiry}, ATM strike {atm}")
        print(
            f"contract: {call.trading_symbol} = {call.key}, lot {call.lot_size}, tick "
            f"Rs {call.tick_size}, expires {timezone.localtime(call.expiry_at):%Y-%m-%d %H:%M} IST"
        )
        print(f"freeze quantity for NIFTY: {catalog.freeze_quantity('NIFTY')} units per order")

        step("REST: option chain around the ATM strike (1 request per 3 s: the limiter waits)")
        scrip = ExpiryListRequest(int(nifty.security_id), "IDX_I")
        expiries = rest.expiry_list(scrip).expiries
        chain = rest.option_chain(OptionChainRequest(scrip.UnderlyingScrip, "IDX_I", expiries[0]))
        strikes = sorted(chain.oc)
        middle = min(range(len(strikes)), key=lambda i: abs(strikes[i] - atm))
        print(f"{'strike':>8} {'CE bid':>9} {'CE ask':>9} {'PE bid':>9} {'PE ask':>9}")
        for strike in strikes[max(0, middle - 2) : middle + 3]:
            ce, pe = chain.oc[strike].ce, chain.oc[strike].pe
            print(
                f"{strike:>8} {ce.top_bid_price:>9} {ce.top_ask_price:>9} "
                f"{pe.top_bid_price:>9} {pe.top_ask_price:>9}"
            )

        step("realtime core: feed hub + PnL monitor for 5 s (what run_trader runs)")
        code = _realtime(sim, rest, call)
        if code:
            return code

        step("orders: a one-lot round trip on the simulator's own matching engine")
        print(
            "(the simulator plays the broker here; PAPER_MODE trading comes with the order issues)"
        )
        updates: list[Any] = []
        watcher = OrderUpdateClient(
            sim.order_ws_url, sim.client_id, lambda: sim.token, updates.append
        )
        watcher.start()
        # Dhan does not acknowledge the login; the in-process simulator can say it registered
        # us, so no order update is missed.
        if not _wait(lambda: sim.order_connections() == 1):
            print("the order-update feed did not log in within 10 s", file=sys.stderr)
            return 1
        try:
            for side, tag in (("BUY", "demo-open"), ("SELL", "demo-close")):
                book = rest.quote_full(MarketQuoteRequest({"NSE_FNO": [int(call.security_id)]}))
                full = book.get("NSE_FNO", int(call.security_id))
                price = full.depth.sell[0].price if side == "BUY" else full.depth.buy[0].price
                placed = rest.place_order(
                    PlaceOrderRequest(
                        dhanClientId=sim.client_id,
                        correlationId=tag,
                        transactionType=side,
                        exchangeSegment="NSE_FNO",
                        productType="INTRADAY",
                        orderType="LIMIT",
                        validity="DAY",
                        securityId=str(call.security_id),
                        quantity=call.lot_size,
                        price=price,
                    )
                )
                traded = _wait(
                    lambda placed=placed: any(
                        u.order_id == placed.orderId and u.status == "TRADED" for u in updates
                    )
                )
                trail = [u.status for u in updates if u.order_id == placed.orderId]
                print(f"{side} {call.lot_size} @ {price}: order {placed.orderId}, updates {trail}")
                if not traded:
                    print("no TRADED order update within 10 s", file=sys.stderr)
                    return 1
            position = next(iter(rest.positions()))
            from trading.charges import charges_table
            from trading.rules.charges import round_trip

            costs = round_trip(
                "NSE",
                call.lot_size,
                position.buyAvg or Decimal(0),
                position.sellAvg or Decimal(0),
                sim.market.trading_date,
                charges_table(),
            )
            gross = position.realizedProfit or Decimal(0)
            print(
                f"position {position.positionType}: realised P&L Rs {gross} gross, "
                f"charges Rs {costs.total} ({_components(costs)}), net Rs {gross - costs.total}"
            )
        finally:
            watcher.stop()

    step("done")
    _how_to_look()
    print("Run `make test` for the full suite (starts throwaway PostgreSQL and Redis).")
    return 0


def _components(costs: Any) -> str:
    parts = costs.as_dict()
    return ", ".join(f"{k} {v}" for k, v in parts.items() if k != "total" and Decimal(v))


def _realtime(sim: Simulator, rest: Any, call: Any) -> int:
    """The feed hub, the PnL monitor and the signal engine on the in-memory cache and bus, with
    one paper position on the ATM call: ticks in the cache, index candles, feed health, live
    PnL, and a recorded decision per index candle (signal, gates, strike, size)."""
    import threading

    from trading.dhan.feed import FeedClient
    from trading.dhan.feed_codec import FeedMode
    from trading.dhan.rest_types import MarketQuoteRequest
    from trading.models import PositionTracker, TradingSignal
    from workers.feed_hub import FeedHub, HubConfig
    from workers.pnl import PnlCache, PnlMonitor
    from workers.realtime.event_bus import MemoryEventBus
    from workers.realtime.keys import CANDLE_TOPIC, candles_key
    from workers.realtime.kv_store import MemoryKeyValueStore
    from workers.realtime.services import Realtime
    from workers.realtime.tick_store import MemoryTickStore
    from workers.signal_engine import SignalEngine

    realtime = Realtime(ticks=MemoryTickStore(), events=MemoryEventBus(), kv=MemoryKeyValueStore())
    candles = realtime.events.subscribe([CANDLE_TOPIC])
    # A leftover from an interrupted demo must not be subscribed or priced again.
    PositionTracker.objects.filter(status="active").update(status="exited")
    book = rest.quote_full(MarketQuoteRequest({"NSE_FNO": [int(call.security_id)]}))
    ask = book.get("NSE_FNO", int(call.security_id)).depth.sell[0].price
    position = PositionTracker.objects.create(
        derivative=call,
        exchange_segment=call.exchange_segment,
        security_id=call.security_id,
        status="active",
        quantity=call.lot_size,
        entry_price=ask,
        underlying="NIFTY",
        direction="bullish",
    )
    print(f"paper position #{position.pk}: {call.lot_size} x {call.trading_symbol} at {ask}")

    def feed(on_packets: Any, **hooks: Any) -> FeedClient:
        return FeedClient(
            sim.ws_url,
            sim.client_id,
            lambda: sim.token,
            on_packets,
            market_open=lambda: True,
            **hooks,
        )

    hub = FeedHub(
        realtime,
        feed_factory=feed,
        rest=rest,
        # Market time comes from the simulator's feed (the hub's clock, which the engine
        # follows), as it would from Dhan's: the demo works at any hour of any day.
        config=HubConfig(index_mode=FeedMode.TICKER),
    )
    monitor = PnlMonitor(realtime)
    engine = SignalEngine(realtime, rest=rest)
    TradingSignal.objects.all().delete()  # each demo run shows its own decisions
    stop = threading.Event()
    threads = [threading.Thread(target=c.run, args=(stop,)) for c in (hub, monitor, engine)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    print(f"subscribed: {', '.join(sorted(hub.subscribed))}")
    print(f"{hub.counters.ticks} ticks merged into the cache; feed health: {hub.health.state}")
    for key in sorted(hub.subscribed):
        record = realtime.ticks.get(key)
        if record is None:
            continue
        extra = ""
        if record.bid is not None:
            extra = f", bid {record.bid:.2f} x {record.bid_qty}, ask {record.ask:.2f}"
        moment = record.exchange_datetime
        at = f"{moment:%H:%M:%S}" if moment else "no trade"
        print(f"  {key}: LTP {record.ltp:.2f} at {at} IST (seq {record.seq}){extra}")
    closed = []
    while (event := candles.get(0)) is not None:
        closed.append(event[1])
    nifty = [c for c in closed if c["key"] == "IDX_I:13" and c["timeframe"] == 60]
    history = realtime.kv.get_list(candles_key("IDX_I:13", 60))
    print(f"{len(closed)} candles closed live; NIFTY 1m history {len(history)} (seeded + live)")
    if nifty:
        c = nifty[-1]
        print(
            f"  last NIFTY 1m: O {c['open']:.2f} H {c['high']:.2f} "
            f"L {c['low']:.2f} C {c['close']:.2f}"
        )
    snapshot = PnlCache(realtime.kv).get(position.pk)
    PositionTracker.objects.filter(pk=position.pk).update(status="exited")
    if snapshot is None:
        print("no PnL snapshot for the position", file=sys.stderr)
        return 1
    print(
        f"PnL of #{position.pk}: LTP {float(snapshot.ltp):.2f}, gross Rs {snapshot.gross} "
        f"({snapshot.percent}%), peak {snapshot.peak}, trough {snapshot.trough}"
    )
    if hub.health.state != "healthy" or not hub.counters.ticks:
        print("the feed hub did not get healthy", file=sys.stderr)
        return 1
    return _signals(TradingSignal)


def _signals(TradingSignal: Any) -> int:
    """The signal engine's decisions: one row per index per closed candle."""
    from trading.rules.market import IST

    step("signal engine: one recorded decision per index candle (warm from the chart API)")
    rows = list(TradingSignal.objects.order_by("candle_start", "index"))
    for row in rows:
        detail = row.reason or ""
        if row.outcome == "blocked":
            detail = f"[{row.gate}] {row.block_reason}"
        elif row.outcome == "intent":
            i = row.intent
            detail = (
                f"{i['symbol']} x {i['quantity']} ({i['lots']} lots) limit {i['limit_price']}, "
                f"orders {i['orders']}"
            )
        print(
            f"  {row.candle_start.astimezone(IST):%H:%M} {row.index:<9} {row.direction:<8} "
            f"{row.confidence:4.2f} {row.outcome:<8} {detail}"
        )
    if not rows:
        print("the signal engine recorded no decision", file=sys.stderr)
        return 1
    intents = sum(1 for r in rows if r.outcome == "intent")
    print(
        f"{len(rows)} decisions, {intents} sized entry intents (order routing is the next "
        "piece: intents are recorded, nothing is sent)"
    )
    return 0




def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _how_to_look() -> None:
    """What the demo wrote stays in its database: say how to open it in the admin and the API."""
    env = f"DATABASE_URL=sqlite:///{_shown(DEMO_DB)} DJANGO_DEBUG=true"
    print("What the demo did is in its database; to look at it in the admin and the REST API:")
    print(f"  {env} .venv/bin/python manage.py createsuperuser")
    print(f"  {env} .venv/bin/python manage.py runserver")
    print("  then http://127.0.0.1:8000/admin/ (signals, positions, the catalog's imports) and")
    print("  http://127.0.0.1:8000/api/signals/ (logged in to the admin as that user)")


if __name__ == "__main__":
    sys.exit(main())
