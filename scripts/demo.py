"""`make demo`: the product end to end on embedded defaults (SQLite, no Redis, paper mode).

A fresh demo database (each run deletes the previous one), migrated; the built-in Dhan
simulator on loopback on the next trading day of config/algo.yml's calendar; its scrip master
imported over HTTP into the catalog (so expiries are current); a look at the market at the
open through REST (funds, quotes, option chain). Then one whole simulated session, 09:15 to
15:30 market time, at SPEED x: ``manage.py run_trader --sim`` in this process, with every
component run_trader has (feed hub, signal engine, order manager as the paper broker, exit
engine, and whatever joins its list), a progress line every PROGRESS_MINUTES
of market time and at the close, and at the end the signal engine's decisions, the paper ledger
checked against the fills and ``manage.py day_report``: every trade with its exit type and
reason, the totals. Whatever the exit rules left open SQUARE_OFF_AFTER past their square-off
time (``exits.time_exit.at``) is exited by hand (MANUAL), so the day ends flat.

``SEED=`` picks the simulator's seed (the market: its paths, hence the signals). Two runs of
one seed trade the same market but not the same trades: at SPEED x a wall-clock millisecond of
thread scheduling is a tenth of a market second, enough to change which ticks build a candle,
move a fill to another tick or a decision across a gate (README, "make demo").
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import threading
import time
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trading.dhan.sim.server import Simulator

ROOT = Path(__file__).resolve().parent.parent
# ALGO_DEMO_DB moves the demo's database (the suite runs the demo on a temp file).
DEMO_DB = Path(os.environ.get("ALGO_DEMO_DB") or ROOT / "var" / "demo.sqlite3").resolve()
# Market seconds per wall second: the 22,500 s session in about three minutes on two cores.
# Much faster and the feed's ticks (4 a second per instrument) grow too sparse in market time
# for the candles' freshness limit and the exit rules' seconds.
SPEED = 120.0
# Feed packets per instrument per wall second (run_trader --sim-ticks): 10 market seconds apart
# at SPEED, where the default 4 would leave 30 (a candle's whole freshness limit).
TICKS = 12.0
REGIME = "random"
DEFAULT_SEED = 3
MAX_SEED = 2**32 - 1
PROGRESS_MINUTES = 10
# After the exit rules' own square-off (exits.time_exit.at), anything still open is exited by
# hand, so the day ends flat and the ledger closes (with the time exit on, nothing is left).
SQUARE_OFF_AFTER = timedelta(minutes=5)
OPEN_STATES = ("pending", "active", "exiting")


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def main() -> int:
    sys.path.insert(0, str(ROOT))
    seed = _seed()
    DEMO_DB.parent.mkdir(parents=True, exist_ok=True)
    _fresh_database()
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

    started = time.monotonic()
    print(
        f"algo-scalper demo: embedded mode, a fresh SQLite database at {_shown(DEMO_DB)}, "
        f"paper mode, SEED={seed}"
    )
    step("migrate")
    call_command("migrate", verbosity=0)
    print("database schema is up to date")

    from trading.dhan.sim.server import SimConfig, Simulator

    step("start the built-in Dhan simulator (loopback, market time standing at the open)")
    from trading.config.store import effective_algo_config
    from trading.rules.market import IST

    config = effective_algo_config()
    print(f"algo config {config.version} (config/algo.yml; `manage.py check_config` prints it)")
    # A trading day by the config's calendar (a holiday would block every entry). This
    # simulator runs at 1x: the REST look below takes a few wall seconds, which at the day's
    # speed would eat the first hour; the day gets its own simulator, the same market.
    day = config.market.next_trading_day(datetime.now(IST).date())
    sim = Simulator(SimConfig(seed=seed, trading_date=day, regime=REGIME)).start()
    try:
        for line in sim.settings_lines()[:3]:
            print(line)
        print(f"simulated trading day {sim.market.trading_date}, market time {sim.now():%H:%M:%S}")
        code = _with_simulator(sim, call_command, CommandError, catalog, timezone)
    finally:
        sim.stop()
    if code:
        return code

    step(
        f"a whole trading day: run_trader --sim at {SPEED:g}x, {config.market.session_open:%H:%M}"
        f" to {config.market.session_close:%H:%M} market time (about "
        f"{_session_seconds(config) / SPEED / 60:.0f} minutes)"
    )
    code = _trading_day(day, seed, call_command)
    code = _summary() or code
    step("the day report (`manage.py day_report` prints it again)")
    call_command("day_report", date=day, mode="paper")

    step("done")
    print(f"the demo took {time.monotonic() - started:.0f} s")
    _how_to_look()
    print("Run `make test` for the full suite (starts throwaway PostgreSQL and Redis).")
    return code


def _session_seconds(config: Any) -> float:
    open_at = datetime.combine(date.min, config.market.session_open)
    return (datetime.combine(date.min, config.market.session_close) - open_at).total_seconds()


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

    return 0


def _seed() -> int:
    """SEED= (the Makefile passes it through): the simulator's seed, i.e. which market."""
    text = os.environ.get("SEED", "").strip()
    if not text:
        return DEFAULT_SEED
    if not text.isdigit() or int(text) > MAX_SEED:
        raise SystemExit(f"SEED must be a whole number from 0 to {MAX_SEED}, got {text!r}")
    return int(text)


def _fresh_database() -> None:
    """Each run starts from an empty demo database: its report is that run's day alone (and a
    kill switch or an override left by an earlier run cannot change what this one does)."""
    for suffix in ("", "-journal", "-wal", "-shm"):
        Path(f"{DEMO_DB}{suffix}").unlink(missing_ok=True)


class _Progress:
    """The day as it goes, read the way the web process reads it: market time from the feed
    hub's clock record (kv ``market:clock``, in the database in embedded mode), positions and
    PnL from their rows. A line every PROGRESS_MINUTES of market time; at SQUARE_OFF a manual
    exit of whatever the exit rules left open; once the session is over and no order works,
    SIGINT to this process, which stops run_trader as Ctrl-C would."""

    def __init__(self, open_at: datetime, square_off: datetime, close: datetime) -> None:
        from workers.market_clock import MarketClock

        self.open_at = open_at
        self.square_off = square_off
        self.close = close
        # The feed hub already says once that the simulated market time is not the wall's.
        self.clock = MarketClock(name="demo", wall_warning=math.inf)
        self.finished = threading.Event()  # run_trader returned: never signal after that
        self.signalled = False
        self.last: datetime | None = None  # the latest market time seen
        self.squared_off = False
        self.timed_out = False
        self.thread = threading.Thread(target=self._run, name="demo-progress", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.finished.set()
        self.thread.join(10)

    def _market_now(self) -> datetime | None:
        from workers.realtime.keys import MARKET_CLOCK
        from workers.realtime.kv_store import DbKeyValueStore

        if not self.clock.follow(DbKeyValueStore().get(MARKET_CLOCK)) and not self.clock.synced:
            return None
        return self.clock.datetime()

    def _run(self) -> None:
        from django.db import close_old_connections, connection

        next_line = self.open_at
        settled_since: float | None = None
        # A feed that never reaches the close (it should not) must not keep the demo forever.
        deadline = time.monotonic() + 2 * (self.close - self.open_at).total_seconds() / SPEED + 60
        try:
            while not self.finished.wait(0.25):
                if time.monotonic() > deadline:
                    self.timed_out = True
                    self._interrupt()
                    return
                close_old_connections()
                try:
                    now = self._market_now()
                    if now is None:
                        continue
                    self.last = now
                    while now >= next_line and next_line <= self.close:
                        print(self._line(next_line), flush=True)
                        # Every PROGRESS_MINUTES from the open, and the close itself.
                        after = next_line + timedelta(minutes=PROGRESS_MINUTES)
                        next_line = self.close if next_line < self.close < after else after
                    if now >= self.square_off and not self.squared_off:
                        self.squared_off = True
                        self._square_off()
                    if now < self.close:
                        continue
                    # The session is over: the paper broker expires what still works; wait
                    # for that (a few wall seconds at most), then stop the trader.
                    working = self._orders_working()
                    if working and settled_since is None:
                        settled_since = time.monotonic()
                    if not working or time.monotonic() - settled_since > 10:
                        self._interrupt()
                        return
                except Exception as exc:  # a busy database: the next pass reads again
                    logging.getLogger("demo").warning("progress: %s", exc)
        finally:
            connection.close()

    def _interrupt(self) -> None:
        if not self.finished.is_set():
            self.signalled = True
            os.kill(os.getpid(), signal.SIGINT)

    def _line(self, at: datetime) -> str:
        from django.db.models import Sum

        from trading.models import PositionStatus, PositionTracker, TradingSignal

        rows = PositionTracker.objects.all()
        open_rows = rows.filter(status__in=OPEN_STATES)
        exited = rows.filter(status=PositionStatus.EXITED)
        realized = exited.aggregate(total=Sum("realized_pnl"))["total"] or Decimal(0)
        unrealized = open_rows.aggregate(total=Sum("unrealized_pnl_net"))["total"] or Decimal(0)
        entries = rows.exclude(status=PositionStatus.CANCELLED).count()
        return (
            f"  {at:%H:%M}  open {open_rows.count()}  closed {exited.count()}  "
            f"net PnL Rs {realized + unrealized:+,.2f} (realized {realized:+,.2f}, open "
            f"{unrealized:+,.2f})  entries {entries}, decisions {TradingSignal.objects.count()}"
        )

    def _square_off(self) -> None:
        """The operator's manual exit (the admin action's path: claim, then the order manager
        sends the exit orders) of positions still open after the exit rules' square-off."""
        from trading.models import PositionStatus, PositionTracker
        from trading.orders.journal import claim_exit
        from trading.rules.vocab import ExitType

        why = "demo: still open after the exit rules' square-off time"
        claimed = []
        for pk in PositionTracker.objects.filter(status=PositionStatus.ACTIVE).values_list(
            "pk", flat=True
        ):
            if claim_exit(pk, ExitType.MANUAL, why):
                claimed.append(pk)
        if claimed:
            print(
                f"  {self.square_off:%H:%M}  no exit rule closed position(s) "
                f"{', '.join(f'#{pk}' for pk in claimed)}: exited by hand (MANUAL)",
                flush=True,
            )

    @staticmethod
    def _orders_working() -> bool:
        from trading.models import Order
        from trading.orders.states import WORKING

        return Order.objects.filter(status__in=WORKING).exists()


def _trading_day(day: date, seed: int, call_command: Any) -> int:
    """run_trader --sim in this process for the whole session, with the progress lines."""
    from trading.config.store import effective_algo_config
    from trading.rules.market import IST

    config = effective_algo_config()
    open_at = datetime.combine(day, config.market.session_open, IST)
    close = datetime.combine(day, config.market.session_close, IST)
    square_off = datetime.combine(day, config.exits.time_exit.at, IST) + SQUARE_OFF_AFTER
    progress = _Progress(open_at, square_off, close)
    # The day's INFO lines (a decision per index per minute) would bury the progress lines:
    # warnings and errors still show, and run_trader's own start and stop lines.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)
    logging.getLogger("workers.run_trader").setLevel(logging.INFO)
    progress.start()
    failed: str | None = None
    try:
        call_command(
            "run_trader",
            sim=True,
            sim_speed=SPEED,
            sim_ticks=TICKS,
            sim_seed=seed,
            sim_date=day,
            sim_start=config.market.session_open,
            sim_regime=REGIME,
        )
    except KeyboardInterrupt:
        # Ctrl-C (or the progress thread's SIGINT) outside run_trader's own handler: the day
        # ends here; the report shows what happened until now.
        failed = None if progress.signalled else "interrupted"
    except Exception as exc:  # CommandError: run_trader says why in one line
        failed = str(exc)
    finally:
        progress.stop()
        root.setLevel(level)
    if progress.timed_out:
        failed = "the market clock did not reach the close in time"
    if failed:
        print(f"run_trader stopped: {failed}", file=sys.stderr)
        return 1
    last = "never synced" if progress.last is None else f"{progress.last:%H:%M:%S}"
    print(f"run_trader stopped; market time {last}")
    return 0


def _summary() -> int:
    """The signal engine's decisions by outcome, the blocking gates, and the paper ledger."""
    from django.db.models import Count

    from trading.config.store import paper_seed_cash
    from trading.models import TradingSignal
    from trading.orders.ledger import check_ledger, ledger_figures, paper_cash

    step("the signal engine's decisions (one per index per closed 1-minute candle)")
    outcomes = dict(
        TradingSignal.objects.values_list("outcome").annotate(n=Count("id")).order_by()
    )
    total = sum(outcomes.values())
    print(
        f"{total} decisions: "
        + ", ".join(f"{n} {name}" for name, n in sorted(outcomes.items(), key=lambda i: -i[1]))
    )
    gates = (
        TradingSignal.objects.filter(outcome="blocked")
        .values_list("gate")
        .annotate(n=Count("id"))
        .order_by("-n")
    )
    if gates:
        print("blocked by: " + ", ".join(f"{gate} {n}" for gate, n in gates))
    intents = outcomes.get("intent", 0)
    print(f"{intents} routed to the paper broker")
    seed = paper_seed_cash()
    figures = ledger_figures()
    problems = check_ledger()
    print(
        f"paper ledger: opening Rs {seed:,.2f}, premium Rs {figures.premium:,.2f}, proceeds "
        f"Rs {figures.proceeds:,.2f}, charges Rs {figures.charges:,.2f}; cash Rs "
        f"{paper_cash(seed):,.2f} ({'matches the fills' if not problems else '; '.join(problems)})"
    )
    if not total or not intents:
        print("the signal engine routed no entry all day", file=sys.stderr)
        return 1
    if problems:
        print("the ledger disagrees with the fills", file=sys.stderr)
        return 1
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
