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
    from trading.dhan.ratelimit import InProcessRateLimiter, load_limits
    from trading.dhan.rest import DhanRestClient
    from trading.dhan.rest_types import (
        ExpiryListRequest,
        MarketQuoteRequest,
        OptionChainRequest,
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

        step("paper trading: feed hub, signal engine, order manager, PnL monitor (run_trader's)")
        code = _paper_trading(sim, rest)
        if code:
            return code

    step("done")
    _how_to_look()
    print("Run `make test` for the full suite (starts throwaway PostgreSQL and Redis).")
    return 0


def _paper_trading(sim: Simulator, rest: Any) -> int:
    """The workers of run_trader on the in-memory cache and bus, paper mode: the feed hub, the
    signal engine routing its entries, the order manager playing the broker (the paper fill
    rules on the simulator's depth), the PnL monitor; then a direct exit of every position
    (the manual exit's path) and the paper ledger."""
    import threading

    from trading.dhan.feed import FeedClient
    from trading.dhan.feed_codec import FeedMode
    from trading.models import Fill, LedgerEntry, Order, PositionTracker, TradingSignal
    from trading.orders.ledger import check_ledger, ledger_figures, paper_cash
    from trading.rules.vocab import ExitType
    from workers.feed_hub import FeedHub, HubConfig
    from workers.orders import manager_for
    from workers.pnl import PnlMonitor
    from workers.realtime.event_bus import MemoryEventBus
    from workers.realtime.kv_store import MemoryKeyValueStore
    from workers.realtime.services import Realtime
    from workers.realtime.tick_store import MemoryTickStore
    from workers.signal_engine import SignalEngine

    # Each run shows its own session: the demo database is the demo's alone.
    LedgerEntry.objects.all().delete()
    Fill.objects.all().delete()
    Order.objects.all().delete()
    PositionTracker.objects.all().delete()
    TradingSignal.objects.all().delete()
    realtime = Realtime(ticks=MemoryTickStore(), events=MemoryEventBus(), kv=MemoryKeyValueStore())

    def feed(on_packets: Any, **hooks: Any) -> FeedClient:
        return FeedClient(
            sim.ws_url, sim.client_id, lambda: sim.token, on_packets, market_open=lambda: True,
            **hooks,
        )

    # Market time comes from the simulator's feed (the hub's clock, which every other
    # worker follows), as it would from Dhan's: the demo works at any hour of any day.
    config = HubConfig(index_mode=FeedMode.TICKER)
    hub = FeedHub(realtime, feed_factory=feed, rest=rest, config=config)
    engine = SignalEngine(realtime, rest=rest)
    manager = manager_for(realtime, live=False)
    workers = (hub, engine, manager, PnlMonitor(realtime))
    stop = threading.Event()
    threads = [threading.Thread(target=w.run, args=(stop,), daemon=True) for w in workers]
    for thread in threads:
        thread.start()
    try:
        opened = _wait(lambda: PositionTracker.objects.filter(status="active").exists(), 40.0)
        time.sleep(3)  # a few more candles: the caps and the open position's gates engage
        code = _signals(TradingSignal)
        if code:
            return code
        if not opened:
            print("no entry filled within 40 s", file=sys.stderr)
            return 1
        step("the routed entries: journal, fills against the depth, positions")
        _orders(Order, "entry")
        for position in PositionTracker.objects.exclude(status="cancelled").order_by("pk"):
            symbol = position.derivative.trading_symbol
            print(
                f"  position #{position.pk} {position.underlying} {symbol}: {position.status}, "
                f"{position.quantity} units at {position.entry_price}"
            )
        seed = engine.seed_cash()
        figures = ledger_figures()
        print(
            f"paper ledger: opening Rs {seed:,.2f}, premium paid Rs {figures.premium:,.2f}, "
            f"charges Rs {figures.charges:,.2f}, cash Rs {paper_cash(seed):,.2f}"
        )

        step("a direct exit of every open position (the manual exit: claim, then the router)")
        for position in PositionTracker.objects.filter(status="active"):
            result = manager.router.exit_position(position.pk, ExitType.MANUAL, "demo")
            print(f"  position #{position.pk}: claimed, {result.detail}")
        done = _wait(
            lambda: not PositionTracker.objects.filter(status__in=("active", "exiting")).exists(),
            20.0,
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    _orders(Order, "exit")
    for position in PositionTracker.objects.filter(status="exited").order_by("pk"):
        print(
            f"  position #{position.pk}: sold at {position.exit_price}, gross Rs "
            f"{position.gross_pnl}, charges Rs {position.charges}, net Rs {position.realized_pnl}"
        )
    figures = ledger_figures()
    problems = check_ledger()
    print(
        f"paper ledger: premium Rs {figures.premium:,.2f}, proceeds Rs {figures.proceeds:,.2f}, "
        f"charges Rs {figures.charges:,.2f}; cash Rs {paper_cash(seed):,.2f} "
        f"({'matches the fills' if not problems else '; '.join(problems)})"
    )
    if not done or problems:
        print("an exit did not complete, or the ledger disagrees with the fills", file=sys.stderr)
        return 1
    return 0


def _orders(Order: Any, leg: str) -> None:
    for order in Order.objects.filter(leg=leg).order_by("pk"):
        fills = ", ".join(f"{f.quantity} @ {f.price:.2f}" for f in order.fills.order_by("pk"))
        print(
            f"  {order.correlation_id} {order.side} {order.quantity} limit {order.limit_price:.2f}"
            f" -> {order.status}, filled {order.filled_quantity} ({fills or 'no fill'}), "
            f"charges Rs {order.charges}"
        )


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
    print(f"{len(rows)} decisions, {intents} routed to the paper broker")
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
