"""Orders: intent to the order on the wire, and paper intent to fill (issue 12). Not a test.

    .venv/bin/python bench/orders.py [--samples 1000] [--warmup 100] [--reps 200]
                                     [--databases sqlite,postgres,postgres-durable]
                                     [--keep-nagle] [--sim process|in-process]

Each database runs in its own child process (Django is configured once per process):
``sqlite``, a file under var/ as the embedded default opens it (WAL, synchronous=FULL,
BEGIN IMMEDIATE: algo_scalper/settings.py); ``postgres``, PostgreSQL as the test suite starts
it (scripts/services.py: fsync, synchronous_commit and full_page_writes off);
``postgres-durable``, the same server with the three back on (a production server's defaults);
and, on request, ``sqlite-wal``, SQLite in WAL mode with synchronous=NORMAL for every commit
(not the project's setting: what it would give). Each child migrates its empty database,
starts a ``Simulator`` (a crawling market: its book does not move; in its own process unless
``--sim in-process``) and imports its scrip master.

1. **Intent to the order on the wire (live).** ``OrderRouter.place_entry`` with the
   ``LiveGateway`` on a ``DhanRestClient`` against the simulator over loopback HTTP, no
   injected latency: the catalog lookup, the journal (position + order, UNKNOWN, its send
   claimed in the same write), ``POST /orders``, the acknowledgement recorded (TRANSIT). One
   order of one lot at half the bid (it rests; it is cancelled untimed afterwards, so the
   simulator's book stays one order deep). In the same loop, the bare ``rest.place_order``
   of the same kind of order: the HTTP round trip alone. Inside every routed sample the
   journal functions, the gateway and the REST client's ``place_order`` are timed too
   (wrapped, not changed), so the overhead (``place_entry`` minus its own HTTP round
   trip) is known per sample, with its parts; ``p99(total) - p99(bare)`` is printed as well,
   and so is "intent -> the HTTP call": from ``place_entry``'s call to the REST client's
   ``place_order`` call (the database work before the wire; what the client does to build
   and write the request is in the HTTP round trip, as in the bare one). Each sample also
   routes a second entry through the signal engine's router, whose acks an ``AckWriter``
   thread writes (trading/orders/acks.py): its ``place_entry`` ends at the broker's answer,
   and the writer is flushed untimed before the next turn. The three turns (ack on the
   sender's thread, ack writer, bare) take turns going first.
   The rate limiter is the real ``InProcessRateLimiter`` with limits no sample reaches: Dhan's
   10 orders/s would make every 11th sample wait, which is the limit's cost, not the path's.
   The simulator's HTTP handler writes headers and body in two send()s with Nagle's algorithm
   on, which costs ~40 ms per request on loopback (the client's delayed ACK); the bench turns
   on TCP_NODELAY for it (socketserver's ``disable_nagle_algorithm``) unless ``--keep-nagle``.
2. **Database round trips per transition.** Each journal transition on fresh rows: journal an
   entry, claim the send, record the ack, a status event (TRANSIT -> PENDING), a first fill
   (live: cumulative filled/average as Dhan's order updates carry them; paper: a trade and its
   ledger rows), a final fill (TRADED), a final event without a fill (CANCELLED, the entry
   ends). PostgreSQL: round trips on the wire, counted from libpq's protocol trace (one
   ReadyForQuery per round trip, so BEGIN and COMMIT count); SQLite: statements through
   Django's ``execute_wrapper`` plus commits (in-process calls, no network; every autocommit
   write and every COMMIT syncs the file). Then each transition is timed over ``--reps`` rows.
3. **Paper intent to fill.** ``place_entry`` on the ``PaperGateway``, then one
   ``OrderManager.run_once`` (the paper broker matching a fresh full tick with five depth
   levels in a ``MemoryTickStore``; an order of two lots walking two ask levels): from
   ``place_entry`` to the position active. Market time is in the bench's hands: between the
   two calls it moves on by ``paper.latency_ms`` (the modelled decision-to-fill delay of
   config/algo.yml) and the tick arrives, untimed; the figure is the processing time. In
   ``run_trader`` a fill comes ``paper.latency_ms`` + up to one order-manager interval
   (0.05 s) + this after the intent.

Targets (issue 12): journal-and-send overhead p99 under 5 ms; no more than one database round
trip per transition. Nothing asserts; it prints. Measure on a quiet machine (``uptime``).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from import_bench import cpu_model  # noqa: E402 (bench/ is the script's folder on sys.path)

TARGET_OVERHEAD_P99_MS = 5.0
TARGET_ROUND_TRIPS = 1
COUNTED = 5  # first rows/samples whose round trips are counted (and not timed)
DATABASES = ("sqlite", "postgres", "postgres-durable", "sqlite-wal")
DEFAULT_DATABASES = "sqlite,postgres,postgres-durable"
DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
LABELS = {
    "sqlite": "SQLite (file, embedded default: WAL, synchronous=FULL)",
    "postgres": "PostgreSQL (test server: fsync off)",
    "postgres-durable": "PostgreSQL (fsync + synchronous_commit on)",
    "sqlite-wal": "SQLite (WAL, synchronous=NORMAL throughout: not the project's setting)",
}


# -- the parent: machine, databases, summary ----------------------------------------------------


def _cpu_times() -> list[int]:
    """The aggregate line of /proc/stat: user nice system idle iowait irq softirq steal ..."""
    return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run_child(database: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    """One database in its own process; its figures come back as JSON in a file."""
    with tempfile.NamedTemporaryFile(prefix="bench-orders-", suffix=".json") as out:
        argv = [
            sys.executable,
            __file__,
            "--child",
            database,
            "--url",
            url,
            "--json",
            out.name,
            "--samples",
            str(args.samples),
            "--warmup",
            str(args.warmup),
            "--reps",
            str(args.reps),
            "--sim",
            args.sim,
            *(["--keep-nagle"] if args.keep_nagle else []),
        ]
        before, load = _cpu_times(), _loadavg()
        subprocess.run(argv, check=True, cwd=ROOT)
        after = _cpu_times()
        result = json.loads(Path(out.name).read_text())
    delta = [b - a for a, b in zip(before, after, strict=False)]
    result["load"] = f"{load} -> {_loadavg()}"
    result["steal"] = delta[7] / sum(delta[:8]) if sum(delta[:8]) else 0.0
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=1000, help="timed samples per figure")
    parser.add_argument("--warmup", type=int, default=100, help="untimed samples first")
    parser.add_argument("--reps", type=int, default=200, help="timed runs of each transition")
    parser.add_argument(
        "--databases",
        default=DEFAULT_DATABASES,
        help=f"comma-separated, from {', '.join(DATABASES)} (default {DEFAULT_DATABASES})",
    )
    parser.add_argument(
        "--keep-nagle",
        action="store_true",
        help="leave the simulator's HTTP server as shipped (Nagle on: about 40 ms per request)",
    )
    parser.add_argument(
        "--sim",
        choices=("process", "in-process"),
        default="process",
        help="where part 1's simulator runs: its own process (manage.py dhan_sim, as Dhan is "
        "to the trader; default) or threads of the bench's (its HTTP handler and matching "
        "loop then share the bench's GIL)",
    )
    parser.add_argument("--child", choices=DATABASES, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    parser.add_argument("--serve-sim", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sim:
        return serve_sim(args.keep_nagle)
    if args.child:
        return child(args)
    wanted = [name.strip() for name in args.databases.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(DATABASES))
    if unknown:
        parser.error(f"--databases: unknown {unknown}; choose from {', '.join(DATABASES)}")
    for name in ("samples", "warmup", "reps"):
        if getattr(args, name) < (0 if name == "warmup" else 10):
            parser.error(f"--{name}: too small ({getattr(args, name)})")

    from scripts import services

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, CPU {cpu_model()!r}, Python "
        f"{platform.python_version()}, load average {_loadavg()}",
        flush=True,
    )
    results: dict[str, dict[str, Any]] = {}
    for database in wanted:
        print(f"\n=== {LABELS[database]} ===", flush=True)
        if database.startswith("sqlite"):
            path = ROOT / "var" / "bench-orders.sqlite3"
            path.parent.mkdir(exist_ok=True)
            for suffix in ("", "-journal", "-wal", "-shm"):
                path.with_name(path.name + suffix).unlink(missing_ok=True)
            results[database] = run_child(database, f"sqlite:///{path}", args)
        else:
            settings = DURABLE if database == "postgres-durable" else None
            with services.postgres(dbname="bench_orders", settings=settings) as url:
                results[database] = run_child(database, url, args)
    summary(results)
    return 0


def summary(results: dict[str, dict[str, Any]]) -> None:
    print("\nresults (issue 12 targets: journal-and-send overhead p99 < 5 ms; at most one")
    print("database round trip per transition)")
    print(f"  {'':44} {'p50':>8} {'p99':>8}   (ms)")
    for database, result in results.items():
        live = result["live"]
        print(f"  {LABELS[database]}  [load {result['load']}, steal {result['steal']:.0%}]")
        for label, key in (
            ("intent -> on the wire (place_entry)", "total"),
            ("  of which its HTTP place", "inner"),
            ("bare rest.place_order, same run", "bare"),
            ("overhead per sample (total - its HTTP)", "overhead"),
            ("  of it, this thread's CPU", "overhead_cpu"),
            ("  of it, before the wire (intent -> HTTP call)", "to_wire"),
            ("paper intent -> position active", "paper_total"),
        ):
            figures = result["paper"]["total"] if key == "paper_total" else live[key]
            print(f"    {label:<42} {figures['p50']:8.2f} {figures['p99']:8.2f}")
        writer = live["writer"]
        print("    the signal engine's router (the ack written by its AckWriter's thread):")
        for label, key in (
            ("intent -> on the wire (place_entry)", "total"),
            ("overhead per sample (total - its HTTP)", "overhead"),
            ("  of it, this thread's CPU", "overhead_cpu"),
            ("  of it, before the wire (intent -> HTTP call)", "to_wire"),
        ):
            print(f"    {label:<42} {writer[key]['p50']:8.2f} {writer[key]['p99']:8.2f}")
        for name, figures in (("ack on the sender's thread", live), ("ack writer", writer)):
            difference = figures["total"]["p99"] - live["bare"]["p99"]
            overhead = figures["overhead"]["p99"]
            verdict = "MET" if overhead < TARGET_OVERHEAD_P99_MS else "NOT MET"
            print(
                f"    {name}: overhead p99 {overhead:.2f} ms (p99 total - p99 bare: "
                f"{difference:.2f} ms); target < {TARGET_OVERHEAD_P99_MS:g} ms: {verdict}"
            )
    print("\n  database round trips per transition (PostgreSQL: on the wire; SQLite: statements")
    print("  + commits, in process: no round trips, shown for information); target <= 1,")
    print("  judged on the PostgreSQL columns")
    names = list(next(iter(results.values()))["trips"])
    header = "".join(f"{database:>18}" for database in results)
    print(f"    {'transition':<40}{header}")
    for name in names:
        row = "".join(f"{results[database]['trips'][name]['trips']:>18}" for database in results)
        over = any(
            results[d]["trips"][name]["trips"] > TARGET_ROUND_TRIPS
            for d in results
            if not d.startswith("sqlite")
        )
        print(f"    {name:<40}{row}   {'NOT MET' if over else 'met'}")
    print("    paths (several transitions each)")
    for label, pick in (
        ("place_entry, live (intent -> ack)", lambda r: r["live"]["trips"]),
        ("place_entry, paper", lambda r: r["paper"]["trips_place"]),
        ("order-manager pass that fills (paper)", lambda r: r["paper"]["trips_pass"]),
    ):
        row = "".join(f"{'/'.join(map(str, pick(results[d]))):>18}" for d in results)
        print(f"    {label:<40}{row}")


# -- the child: one database ---------------------------------------------------------------------


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p99 (nearest rank), max and mean of seconds, as milliseconds."""
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000

    return {
        "p50": rank(0.50),
        "p99": rank(0.99),
        "max": ordered[-1] * 1000,
        "mean": sum(ordered) / len(ordered) * 1000,
        "n": len(ordered),
    }


def line(label: str, figures: dict[str, float]) -> None:
    print(
        f"  {label:<44} p50 {figures['p50']:7.3f}  p99 {figures['p99']:7.3f}  "
        f"max {figures['max']:7.2f} ms  (n={figures['n']})",
        flush=True,
    )


def setup_django(url: str, workdir: Path, *, wal: bool = False) -> None:
    os.environ.update(
        DATABASE_URL=url,
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),  # a throwaway database's
        DJANGO_DEBUG="false",  # DEBUG keeps every query in memory: not what production runs
        INSTRUMENTS_CACHE_DIR=str(workdir / "cache"),
        PAPER_MODE="true",
    )
    for name in ("REDIS_URL", "PAPER_CHARGES_PER_ORDER"):
        os.environ.pop(name, None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "algo_scalper.settings"
    import django

    django.setup()
    from django.core.management import call_command

    if wal:
        # What a settings change would do (the project keeps synchronous=FULL and relaxes it
        # for the ack alone): synchronous is per connection, so on every connection.
        from django.db.backends.signals import connection_created

        def pragmas(sender: Any, connection: Any, **kwargs: Any) -> None:
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")

        connection_created.connect(pragmas, weak=False)

    call_command("migrate", verbosity=0)


class RoundTrips:
    """Counts what one block of code asks of the database, in order: on PostgreSQL the round
    trips on the wire (libpq's protocol trace: every Query or Sync is answered by one
    ReadyForQuery, so psycopg's own BEGIN and the COMMIT count, which Django's
    ``execute_wrapper`` never sees); on SQLite the statements Django executes and the commits
    (in-process calls, no network)."""

    def __init__(self) -> None:
        from django.db import connections

        self.connection = connections["default"]
        self.statements: list[str] = []  # SQL in order, "COMMIT" included
        self.wire: int | None = None

    @contextlib.contextmanager
    def count(self) -> Iterator[RoundTrips]:
        from django.db import close_old_connections

        connection = self.connection
        # A connection past CONN_MAX_AGE would be replaced inside the block, untraced.
        close_old_connections()
        connection.ensure_connection()
        original_commit = connection._commit
        postgres = connection.vendor == "postgresql"

        def commit() -> Any:
            if not postgres:
                self.statements.append("COMMIT")
            return original_commit()

        def execute(run: Callable[..., Any], sql: str, params: Any, many: bool, ctx: Any) -> Any:
            if not postgres:
                self.statements.append(sql)
            return run(sql, params, many, ctx)

        if postgres:
            import psycopg

            trace_fd, trace_path = tempfile.mkstemp(prefix="bench-orders-trace-")
            pgconn = connection.connection.pgconn
            pgconn.trace(trace_fd)
            pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        connection._commit = commit
        try:
            with connection.execute_wrapper(execute):
                yield self
        finally:
            del connection._commit  # the instance attribute; the method shows through again
            if postgres:
                pgconn.untrace()  # flushes the trace
                rows = Path(trace_path).read_text().splitlines()
                os.close(trace_fd)
                os.unlink(trace_path)
                self.wire = sum(
                    1 for row in rows if row.startswith("B\t") and "ReadyForQuery" in row
                )
                # What the client sent, in order: simple queries, or the Parse of extended ones.
                for row in rows:
                    fields = row.split("\t")
                    if fields[0] == "F" and len(fields) > 3 and fields[2] in ("Query", "Parse"):
                        text = fields[3]
                        self.statements.append(text[text.find('"') + 1 : text.rfind('"')])

    @property
    def trips(self) -> int:
        """Round trips on PostgreSQL; statements (COMMIT included) on SQLite."""
        return self.wire if self.wire is not None else len(self.statements)

    def shown(self) -> list[str]:
        """The statements in order, shortened to their verb and table."""
        out = []
        for sql in self.statements:
            words = sql.replace('"', "").split()
            upper = [word.upper() for word in words]
            verb = upper[0] if upper else "?"
            table = ""
            if verb not in ("BEGIN", "COMMIT"):
                for keyword in ("FROM", "INTO", "UPDATE"):
                    if keyword in upper and upper.index(keyword) + 1 < len(words):
                        table = words[upper.index(keyword) + 1]
                        break
            locking = " FOR UPDATE" if "FOR UPDATE" in sql.upper() else ""
            out.append(f"{verb} {table}{locking}".strip())
        return out


SIM_SPEED = 0.001  # a crawling market: one market second per 1,000 real ones
SIM_START = datetime.fromisoformat("2026-01-05T10:30:00+05:30")


class SimProcess:
    """``manage.py dhan_sim`` in its own process, known only by its printed settings (as the
    trader knows Dhan): the bench's process then runs nothing of the broker's (no handler
    thread or matching loop taking the GIL from the path being timed). It is this script
    again with ``--serve-sim``: the same simulator as :func:`in_process_simulator`."""

    def __init__(self, *, keep_nagle: bool) -> None:
        argv = [
            sys.executable,
            str(ROOT / "bench" / "orders.py"),
            "--serve-sim",
            *(["--keep-nagle"] if keep_nagle else []),
        ]
        self.process = subprocess.Popen(
            argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        settings: dict[str, str] = {}
        assert self.process.stdout is not None
        while len(settings) < 6:
            line = self.process.stdout.readline()
            if not line:
                raise SystemExit("the simulator process stopped before printing its settings")
            name, _, value = line.strip().partition("=")
            settings[name] = value
        self.base_url = settings["DHANHQ_BASE_URL"]
        self.client_id = settings["DHANHQ_CLIENT_ID"]
        self.token = settings["DHANHQ_ACCESS_TOKEN"]
        self.scrip_master_url = settings["INSTRUMENTS_SCRIP_MASTER_URL"]
        self._started = time.monotonic()

    def now(self) -> datetime:
        """Its market time, kept here from its start and speed (the journal's timestamps)."""
        return SIM_START + timedelta(seconds=(time.monotonic() - self._started) * SIM_SPEED)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def in_process_simulator(*, keep_nagle: bool) -> Any:
    from trading.dhan.sim import server
    from trading.dhan.sim.server import SimConfig, Simulator

    # The simulator's handler writes an answer's headers and its body in two send()s with
    # Nagle's algorithm on, so the body waits for the client's delayed ACK: ~40 ms per
    # request on loopback, which Dhan's servers do not add. TCP_NODELAY on its sockets
    # (socketserver's own switch) takes that artefact out of the bare round trip.
    server._Handler.disable_nagle_algorithm = not keep_nagle
    # A crawling market: the book does not move, so a limit at half the bid rests all run.
    return Simulator(
        SimConfig(
            seed=7,
            speed=SIM_SPEED,
            trading_date=SIM_START.date(),
            start=SIM_START.time().replace(tzinfo=None),
            strikes_each_side=4,
            weeklies=1,
            monthlies=1,
            funds=Decimal("100000000"),
        )
    )


def serve_sim(keep_nagle: bool) -> int:
    """``--serve-sim`` (the child :class:`SimProcess` starts): the simulator of
    :func:`in_process_simulator`, its settings on stdout, until SIGTERM."""
    import signal

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "algo_scalper.settings")
    import django

    django.setup()
    sim = in_process_simulator(keep_nagle=keep_nagle).start()
    stop = False

    def halt(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, halt)
    print("\n".join(sim.settings_lines()), flush=True)
    while not stop:
        time.sleep(0.2)
    sim.stop()
    return 0


class Desk:
    """The pieces every part shares: the simulator, its contract in the catalog, signal rows."""

    def __init__(self, *, keep_nagle: bool, separate: bool = True) -> None:
        from django.core.management import call_command

        from instruments.models import Derivative
        from trading.dhan.rest import DhanRestClient
        from trading.orders.journal import id_salt

        if separate:
            self.sim: Any = SimProcess(keep_nagle=keep_nagle)
        else:
            self.sim = in_process_simulator(keep_nagle=keep_nagle).start()
        # Prices as a client sees them: the simulator's REST quotes.
        self.rest = DhanRestClient(
            base_url=self.sim.base_url,
            client_id=self.sim.client_id,
            token_provider=lambda: self.sim.token,
            limiter=unthrottled_limiter(),
        )
        call_command("import_instruments", url=self.sim.scrip_master_url, verbosity=0)
        spot = self.last_price("IDX_I", 13)
        calls = Derivative.objects.filter(
            underlying__security_id=13, option_type="CE", exchange_segment="NSE_FNO"
        )
        nearest = calls.order_by("expiry_date").first()
        if nearest is None:
            raise SystemExit("the simulator's catalog has no NIFTY call")
        chain = calls.filter(expiry_date=nearest.expiry_date)
        self.contract = min(chain, key=lambda row: abs(row.strike - spot))
        self._candles = itertools.count()
        # The correlation ids' salt is drawn once per database (a Setting row, 4 statements):
        # drawn here, so the first counted entry does not carry it.
        id_salt()

    def last_price(self, segment: str, security_id: int) -> Decimal:
        from trading.dhan.rest_types import MarketQuoteRequest

        answer = self.rest.quote_ltp(MarketQuoteRequest({segment: [security_id]}))
        return answer.data[segment][security_id].last_price

    def best_bid(self, segment: str, security_id: int) -> Decimal:
        from trading.dhan.rest_types import MarketQuoteRequest

        answer = self.rest.quote_full(MarketQuoteRequest({segment: [security_id]}))
        quote = answer.data[segment][security_id]
        if quote.depth is None or not quote.depth.buy or not quote.depth.buy[0].price:
            raise SystemExit(f"the simulator quotes no bid for {segment} {security_id}")
        return quote.depth.buy[0].price

    def close(self) -> None:
        self.rest.close()
        self.sim.stop()

    def signal(self) -> int:
        """A signal row of its own (one per entry: an entry is idempotent per signal)."""
        from trading.models import TradingSignal
        from trading.rules.market import IST

        candle = datetime(2026, 1, 5, 9, 15, tzinfo=IST) + timedelta(minutes=next(self._candles))
        return TradingSignal.objects.create(
            index="NIFTY",
            timeframe=60,
            candle_start=candle,
            direction="bullish",
            outcome="intent",
            close=Decimal("26012.35"),
            confidence=0.7,
            indicators={},
            config_version="bench",
            gate="",
            intent=None,
        ).pk

    def intent(self, limit: Decimal, decided_at: datetime, orders: tuple[int, ...]) -> Any:
        from trading.orders.intent import EntryIntent

        c = self.contract
        return EntryIntent(
            signal_id=self.signal(),
            index="NIFTY",
            direction="bullish",
            exchange_segment=c.exchange_segment,
            security_id=c.security_id,
            symbol=c.trading_symbol,
            expiry=c.expiry_date,
            strike=c.strike,
            option_type=c.option_type,
            lot_size=c.lot_size,
            tick_size=c.tick_size,
            lots=sum(orders) // c.lot_size,
            quantity=sum(orders),
            orders=orders,
            reference_price=limit,
            limit_price=limit,
            config_version="bench",
            decided_at=decided_at,
            underlying_price=Decimal("26012.35"),
        )


def unthrottled_limiter() -> Any:
    """The real limiter class with limits no sample reaches (see the module docstring)."""
    from trading.dhan.ratelimit import InProcessRateLimiter, load_limits

    return InProcessRateLimiter({name: [[10**9, 1]] for name in load_limits()})


def live_part(desk: Desk, samples: int, warmup: int) -> dict[str, Any]:
    """Part 1 (module docstring)."""
    from trading.config.store import load_algo_config
    from trading.dhan.rest import DhanRestClient
    from trading.dhan.rest_types import CancelOrderRequest, PlaceOrderRequest
    from trading.dhan.vocab import OrderType, ProductType, TransactionType, Validity
    from trading.models import Order
    from trading.orders import router as router_module
    from trading.orders.acks import AckWriter
    from trading.orders.intent import ROUTED
    from trading.orders.live import LiveGateway
    from trading.orders.router import OrderRouter
    from trading.orders.states import WORKING

    sim, contract = desk.sim, desk.contract
    rest = DhanRestClient(
        base_url=sim.base_url,
        client_id=sim.client_id,
        token_provider=lambda: sim.token,
        limiter=unthrottled_limiter(),
    )
    config = load_algo_config()
    router = OrderRouter(
        LiveGateway(rest, sim.client_id),
        config_source=lambda: config,
        clock=lambda: sim.now().timestamp(),
        quote=lambda key: None,  # entries come priced; nothing here re-prices
        freeze_quantity=lambda position: 1800,
    )
    bid = desk.best_bid(contract.exchange_segment, contract.security_id)
    tick = contract.tick_size
    resting = max(tick, (bid / 2 / tick).to_integral_value() * tick)

    watch = Stopwatch()
    place_order = rest.place_order  # the bare call, unwrapped
    rest.place_order = watch.wrap("http", place_order)  # type: ignore[method-assign]
    gateway = router.gateway
    gateway.place = watch.wrap("gateway", gateway.place)  # type: ignore[method-assign]

    # The signal engine's router: the same gateway, the acks written by an AckWriter's thread.
    writer = AckWriter(name="bench-acks")
    off_thread = OrderRouter(
        router.gateway,
        config_source=lambda: config,
        clock=lambda: sim.now().timestamp(),
        quote=lambda key: None,
        freeze_quantity=lambda position: 1800,
        acks=writer,
    )

    totals: list[float] = []
    bares: list[float] = []
    steps: dict[str, list[float]] = {name: [] for name in LIVE_STEPS}
    trips: set[int] = set()
    statements: list[str] = []
    overhead_cpu: list[float] = []
    to_wire: list[float] = []
    acked: dict[str, list[float]] = {"total": [], "http": [], "cpu": [], "to_wire": []}
    turns = ("inline", "writer", "bare")
    with watch.patched(router_module, ("journal_entry_orders", "claim_send", "record_ack")):
        for i in range(warmup + samples):
            intents = {
                name: desk.intent(resting, sim.now(), (contract.lot_size,))
                for name in ("inline", "writer")
            }
            bare_request = PlaceOrderRequest(
                dhanClientId=sim.client_id,
                transactionType=TransactionType.BUY,
                exchangeSegment=contract.exchange_segment,
                productType=ProductType.INTRADAY,
                orderType=OrderType.LIMIT,
                validity=Validity.DAY,
                securityId=str(contract.security_id),
                quantity=contract.lot_size,
                price=resting,
                correlationId=f"BENCH-{i}",
            )
            total = bare = routed_at = 0.0
            split: dict[str, float] = {}
            writer_sample: dict[str, float] = {}
            for turn in turns[i % 3 :] + turns[: i % 3]:  # each goes first in a third
                if turn == "inline":
                    counter = RoundTrips() if i < COUNTED else None
                    watch.take()
                    started, cpu = time.perf_counter(), time.thread_time()
                    routed_at = started
                    with counter.count() if counter else contextlib.nullcontext():
                        result = router.place_entry(intents["inline"])
                    total = time.perf_counter() - started
                    total_cpu = time.thread_time() - cpu
                    split = watch.take()
                    if counter:
                        trips.add(counter.trips)
                        statements = counter.shown()
                    if result.status != ROUTED or "http" not in split:
                        raise SystemExit(f"sample {i}: the entry was not routed: {result}")
                elif turn == "writer":
                    watch.take()
                    started, cpu = time.perf_counter(), time.thread_time()
                    result = off_thread.place_entry(intents["writer"])
                    elapsed = time.perf_counter() - started
                    elapsed_cpu = time.thread_time() - cpu
                    timed = watch.take()
                    if result.status != ROUTED or "http" not in timed:
                        raise SystemExit(f"sample {i}: the entry was not routed: {result}")
                    writer_sample = {
                        "total": elapsed,
                        "http": timed["http"],
                        "cpu": elapsed_cpu - timed["http:cpu"],
                        "to_wire": timed["http:start"] - started,
                    }
                    # Untimed: the ack written before the next turn, so its write does not
                    # land inside another turn's timing (a sender that places orders back to
                    # back would overlap them: the point of the writer).
                    if not writer.flush(10.0):
                        raise SystemExit(f"sample {i}: the ack writer did not catch up")
                else:
                    started = time.perf_counter()
                    answer = place_order(bare_request)
                    bare = time.perf_counter() - started
            for intent in intents.values():
                (order,) = Order.objects.filter(position__signal_id=intent.signal_id)
                if order.status != "TRANSIT" or not order.broker_order_id:
                    raise SystemExit(f"sample {i}: order {order.correlation_id} is {order.status}")
                # Untimed: keep the simulator's book one order deep (its funds check walks it).
                rest.cancel_order(CancelOrderRequest(order.broker_order_id))
            rest.cancel_order(CancelOrderRequest(answer.orderId))
            if i >= max(warmup, COUNTED):
                totals.append(total)
                bares.append(bare)
                to_wire.append(split["http:start"] - routed_at)
                known = {
                    "journal_entry": split["journal_entry_orders"],
                    "claim_send": split.get("claim_send", 0.0),  # the journal claims it now
                    "request": split["gateway"] - split["http"],
                    "http": split["http"],
                    "record_ack": split["record_ack"],
                }
                known["other"] = total - sum(known.values())
                for name, value in known.items():
                    steps[name].append(value)
                overhead_cpu.append(total_cpu - split["http:cpu"])
                for name, value in writer_sample.items():
                    acked[name].append(value)
    writer.close()
    rest.close()
    # Untimed housekeeping: the broker cancelled every order of this part, which an order
    # manager would have applied; without it the paper part's order manager would find
    # these orders working (and due a chase) on every pass.
    Order.objects.filter(mode="live", status__in=WORKING).update(status="CANCELLED")
    overhead = [t - h for t, h in zip(totals, steps["http"], strict=True)]
    return {
        "total": percentiles(totals),
        "inner": percentiles(steps["http"]),
        "bare": percentiles(bares),
        "overhead": percentiles(overhead),
        "overhead_cpu": percentiles(overhead_cpu),
        "to_wire": percentiles(to_wire),
        "steps": {name: percentiles(values) for name, values in steps.items()},
        "trips": sorted(trips),
        "statements": statements,
        "writer": {
            "total": percentiles(acked["total"]),
            "inner": percentiles(acked["http"]),
            "overhead": percentiles(
                [t - h for t, h in zip(acked["total"], acked["http"], strict=True)]
            ),
            "overhead_cpu": percentiles(acked["cpu"]),
            "to_wire": percentiles(acked["to_wire"]),
            "failed": writer.failed,
        },
    }


# The parts of one routed entry, timed inside each sample (Stopwatch): "other" is the rest of
# place_entry (the Python between; the journal returns the orders it wrote and looks the
# contract up itself: in its own statement on PostgreSQL).
LIVE_STEPS = {
    "journal_entry": "journal (contract, position + order, claim)",
    "claim_send": "claim the send (apart: 0, the journal claims it)",
    "request": "the gateway's request (validated)",
    "http": "HTTP place (rest.place_order)",
    "record_ack": "record the ack",
    "other": "other (the router between the steps)",
}


class Stopwatch:
    """Times calls of wrapped functions, summed per name until :meth:`take` (one sample)."""

    def __init__(self) -> None:
        self.current: dict[str, float] = {}

    def wrap(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        """``function`` timed under ``name``, and its calling thread's CPU under ``name:cpu``."""

        def timed(*args: Any, **kwargs: Any) -> Any:
            started, cpu = time.perf_counter(), time.thread_time()
            self.current.setdefault(name + ":start", started)  # the first call's, per sample
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                self.current[name] = self.current.get(name, 0.0) + elapsed
                used = time.thread_time() - cpu
                self.current[name + ":cpu"] = self.current.get(name + ":cpu", 0.0) + used

        return timed

    def take(self) -> dict[str, float]:
        taken, self.current = self.current, {}
        return taken

    @contextlib.contextmanager
    def patched(self, module: Any, names: tuple[str, ...]) -> Iterator[None]:
        """The module's functions ``names`` timed under their own names, for the block."""
        originals = {name: getattr(module, name) for name in names}
        for name, function in originals.items():
            setattr(module, name, self.wrap(name, function))
        try:
            yield
        finally:
            for name, function in originals.items():
                setattr(module, name, function)


def transitions_part(desk: Desk, reps: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Part 2 (module docstring): round trips on the first ``COUNTED`` rows of each order
    life, times on the next ``reps``. The lives share their first four transitions, which
    are counted and timed over all three."""
    from trading.models import Order
    from trading.orders.journal import (
        OrderEvent,
        TradeFill,
        apply_event,
        claim_send,
        journal_entry,
        record_ack,
    )
    from trading.orders.states import JournalStatus as S
    from workers.orders import journal_charges

    contract = desk.contract
    lot = contract.lot_size
    price = Decimal("100.00")
    at = datetime.fromisoformat("2026-01-05T10:30:00+05:30")

    def life(n: int, kind: str) -> list[tuple[str, Callable[[], Any]]]:
        """One order's transitions, in order, as (name, call); ``kind`` picks its end."""
        intent = desk.intent(price, at, (2 * lot,))
        broker_id = f"B{kind[0]}{n}"
        box: dict[str, Any] = {}

        def journal() -> None:
            mode = "paper" if kind == "paper" else "live"
            box["position"] = journal_entry(intent, mode=mode, derivative_id=contract.pk)

        def order() -> Any:
            if "order" not in box:  # read once, untimed (before the first counted call)
                box["order"] = Order.objects.get(position=box["position"])
            return box["order"]

        def event(status: S, **fields: Any) -> Callable[[], Any]:
            paper = kind == "paper"
            return lambda: apply_event(
                OrderEvent(status, at, correlation_id=box["cid"], **fields),
                journal_charges,
                paper=paper,
            )

        def fetch() -> None:
            box["cid"] = order().correlation_id

        steps: list[tuple[str, Callable[[], Any]]] = [
            ("journal an entry (1 order)", journal),
            ("", fetch),
            ("claim the send", lambda: claim_send(box["order"], at)),
            ("record the ack", lambda: record_ack(box["order"], broker_id, S.TRANSIT, at)),
            ("status event (TRANSIT -> PENDING)", event(S.PENDING)),
        ]
        if kind == "live":
            steps += [
                (
                    "first fill, live (cumulative qty/avg)",
                    event(S.PART_TRADED, broker_order_id=broker_id, filled=lot, average=price),
                ),
                (
                    "final fill, live (TRADED)",
                    event(S.TRADED, broker_order_id=broker_id, filled=2 * lot, average=price),
                ),
            ]
        elif kind == "paper":
            steps += [
                (
                    "first fill, paper (trade + ledger)",
                    event(S.PART_TRADED, trades=(TradeFill(f"P{lot}", lot, price),)),
                ),
                (
                    "final fill, paper (TRADED)",
                    event(S.TRADED, trades=(TradeFill(f"P{2 * lot}", lot, price),)),
                ),
            ]
        else:
            steps.append(("final event, no fill (CANCELLED)", event(S.CANCELLED)))
        return steps

    trips: dict[str, Any] = {}
    times: dict[str, list[float]] = {}
    for n in range(COUNTED + reps):
        for kind in ("live", "paper", "cancel"):
            for name, call in life(n, kind):
                if not name:
                    call()
                elif n < COUNTED:
                    counter = RoundTrips()
                    with counter.count():
                        call()
                    seen = trips.setdefault(name, {"all": set()})
                    seen["all"].add(counter.trips)
                    seen["trips"] = max(seen["all"])
                    seen["statements"] = counter.shown()
                else:
                    started = time.perf_counter()
                    call()
                    times.setdefault(name, []).append(time.perf_counter() - started)
    for seen in trips.values():
        seen["all"] = sorted(seen["all"])
    return trips, {name: percentiles(values) for name, values in times.items()}


# The parts of one order-manager pass that fills (Stopwatch): "other" is the rest of the pass
# (its queries for unknown outcomes, exits and chases, the connection check, the heartbeat).
PAPER_STEPS = {
    "paper broker step": "the paper broker's match (reads the book)",
    "apply_event": "apply_event x2 (PENDING; TRADED, 2 trades)",
    "other": "other (unknowns, exits, chases queries)",
}


def paper_part(desk: Desk, samples: int, warmup: int) -> dict[str, Any]:
    """Part 3 (module docstring)."""
    from trading.config.store import load_algo_config
    from trading.models import PositionTracker
    from trading.orders.gateway import PaperGateway
    from trading.orders.intent import marketable_limit
    from trading.orders.paper import PaperBroker
    from trading.orders.router import OrderRouter
    from trading.rules.market import IST
    from workers import order_manager as order_manager_module
    from workers.order_manager import OrderManager
    from workers.orders import journal_charges
    from workers.realtime.event_bus import MemoryEventBus
    from workers.realtime.kv_store import MemoryKeyValueStore
    from workers.realtime.record import TickRecord, encode_depth
    from workers.realtime.services import Realtime
    from workers.realtime.tick_store import MemoryTickStore

    contract = desk.contract
    lot = contract.lot_size
    key = f"{contract.exchange_segment}:{contract.security_id}"
    config = load_algo_config()  # production re-reads it every 10 s (workers.orders)
    latency = config.paper.latency_ms / 1000
    # A weekday session's morning, market time; ~0.2 s of it per sample.
    clock = {"market": datetime(2026, 11, 23, 10, 0, tzinfo=IST).timestamp(), "wall": time.time()}
    realtime = Realtime(ticks=MemoryTickStore(), events=MemoryEventBus(), kv=MemoryKeyValueStore())
    router = OrderRouter(
        PaperGateway(),
        config_source=lambda: config,
        clock=lambda: clock["market"],
        quote=lambda key: None,
        freeze_quantity=lambda position: 1800,
    )
    manager = OrderManager(
        realtime,
        router,
        config_source=lambda: config,
        charges=journal_charges,
        paper_broker=PaperBroker(realtime.ticks.get, lambda: config, lambda: clock["wall"]),
        clock=lambda: clock["market"],
        wall=lambda: clock["wall"],
    )
    ask = Decimal("100.00")
    # Five levels a side; the first ask shows one lot, so a two-lot order walks two levels.
    levels = [(650, lot, 3, 1, 99.95, 100.00)] + [
        (650, 650, 3, 3, 99.95 - 0.05 * (k + 1), 100.00 + 0.05 * (k + 1)) for k in range(4)
    ]
    depth = encode_depth(levels)
    limit = marketable_limit(ask, config.orders.limit_buffer_pct, contract.tick_size)

    def publish(seq: int) -> None:
        realtime.ticks.publish(
            [
                TickRecord(
                    key=key,
                    seq=seq,
                    ltp=100.0,
                    exchange_time=clock["market"],
                    receive_time=clock["wall"],
                    bid=99.95,
                    bid_qty=650,
                    ask=100.0,
                    ask_qty=lot,
                    depth_raw=depth,
                )
            ]
        )

    places: list[float] = []
    passes: list[float] = []
    watch = Stopwatch()
    broker = manager.paper_broker
    broker.step = watch.wrap("paper broker step", broker.step)
    pass_steps: dict[str, list[float]] = {name: [] for name in PAPER_STEPS}
    totals: list[float] = []
    trips_place: set[int] = set()
    trips_pass: set[int] = set()
    statements: dict[str, list[str]] = {}
    for i in range(warmup + samples):
        intent = desk.intent(limit, datetime.fromtimestamp(clock["market"], IST), (2 * lot,))
        counter = RoundTrips() if i < COUNTED else None
        started = time.perf_counter()
        with counter.count() if counter else contextlib.nullcontext():
            router.place_entry(intent)
        placed = time.perf_counter() - started
        if counter:
            trips_place.add(counter.trips)
            statements["place_entry, paper"] = counter.shown()
        # Untimed: the modelled latency passes and the next full tick arrives.
        clock["market"] += latency + 0.01
        clock["wall"] += latency + 0.01
        publish(i + 1)
        counter = RoundTrips() if i < COUNTED else None
        watch.take()
        started = time.perf_counter()
        with (
            counter.count() if counter else contextlib.nullcontext(),
            watch.patched(order_manager_module, ("apply_event",)),
        ):
            manager.run_once()
        matched = time.perf_counter() - started
        split = watch.take()
        if counter:
            trips_pass.add(counter.trips)
            statements["order manager pass that fills"] = counter.shown()
        position = PositionTracker.objects.get(signal_id=intent.signal_id)
        if position.status != "active" or position.quantity != 2 * lot:
            raise SystemExit(
                f"sample {i}: position #{position.pk} is {position.status} with "
                f"{position.quantity} units after one pass"
            )
        if i >= max(warmup, COUNTED):
            places.append(placed)
            passes.append(matched)
            pass_steps["paper broker step"].append(split["paper broker step"])
            pass_steps["apply_event"].append(split["apply_event"])
            pass_steps["other"].append(matched - split["paper broker step"] - split["apply_event"])
            totals.append(placed + matched)
    return {
        "total": percentiles(totals),
        "place": percentiles(places),
        "pass": percentiles(passes),
        "pass_steps": {name: percentiles(values) for name, values in pass_steps.items()},
        "trips_place": sorted(trips_place),
        "trips_pass": sorted(trips_pass),
        "statements": statements,
        "latency_ms": config.paper.latency_ms,
        "interval_s": manager.interval,
    }


def child(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="bench-orders-"))
    setup_django(args.url, workdir, wal=args.child == "sqlite-wal")
    import logging

    from django.db import connection

    logging.getLogger("trading").setLevel(logging.WARNING)
    logging.getLogger("workers").setLevel(logging.WARNING)
    logging.getLogger("instruments").setLevel(logging.WARNING)
    server = ""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            version = cursor.fetchone()[0]
            cursor.execute("SHOW fsync")
            fsync = cursor.fetchone()[0]
            cursor.execute("SHOW synchronous_commit")
            sync = cursor.fetchone()[0]
        server = f"PostgreSQL {version}, fsync {fsync}, synchronous_commit {sync}"
    else:
        import sqlite3

        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode")
            journal = cursor.fetchone()[0]
            cursor.execute("PRAGMA synchronous")
            sync = cursor.fetchone()[0]
        server = f"SQLite {sqlite3.sqlite_version}, journal_mode {journal}, synchronous {sync}"
    print(f"database: {server}; load average {_loadavg()}", flush=True)
    desk = Desk(keep_nagle=args.keep_nagle, separate=args.sim == "process")
    try:
        where = "its own process" if args.sim == "process" else "in this process"
        print(
            f"contract: {desk.contract.trading_symbol} (lot {desk.contract.lot_size}); "
            f"simulator {desk.sim.base_url} ({where}; "
            f"TCP_NODELAY {'off' if args.keep_nagle else 'on'})",
            flush=True,
        )
        print(
            f"\n1. intent -> order on the wire, live gateway -> simulator over loopback HTTP "
            f"({args.samples} samples after {args.warmup})",
            flush=True,
        )
        live = live_part(desk, args.samples, args.warmup)
        line("place_entry (journal + route + send + ack)", live["total"])
        line("  its own HTTP place (rest.place_order)", live["inner"])
        line("bare rest.place_order (same run)", live["bare"])
        line("overhead per sample (total - its HTTP)", live["overhead"])
        line("  of it, this thread's CPU", live["overhead_cpu"])
        line("  of it, before the wire (-> HTTP call)", live["to_wire"])
        print(
            f"  p99(total) - p99(bare) = {live['total']['p99'] - live['bare']['p99']:.3f} ms; "
            f"p50(total) - p50(bare) = {live['total']['p50'] - live['bare']['p50']:.3f} ms",
            flush=True,
        )
        writer = live["writer"]
        print(
            "  the same, the ack written by an AckWriter's thread (the signal engine's router):",
            flush=True,
        )
        line("place_entry (journal + route + send)", writer["total"])
        line("  its own HTTP place (rest.place_order)", writer["inner"])
        line("overhead per sample (total - its HTTP)", writer["overhead"])
        line("  of it, this thread's CPU", writer["overhead_cpu"])
        line("  of it, before the wire (-> HTTP call)", writer["to_wire"])
        print(f"  acks the writer failed to write: {writer['failed']}", flush=True)
        print("  inside each routed sample (ack on the sender's thread):", flush=True)
        for name, label in LIVE_STEPS.items():
            line(f"  {label}", live["steps"][name])
        print(f"  round trips of place_entry: {live['trips']}", flush=True)
        print(f"      {', '.join(live['statements'])}", flush=True)

        print(f"\n2. database work per transition (times over {args.reps} fresh rows)", flush=True)
        trips, times = transitions_part(desk, args.reps)
        unit = "round trips" if connection.vendor == "postgresql" else "statements+commits"
        for name, seen in trips.items():
            figures = times[name]
            print(
                f"  {name:<38} {seen['trips']:>2} {unit}  p50 {figures['p50']:6.3f}  "
                f"p99 {figures['p99']:6.3f} ms",
                flush=True,
            )
            print(f"      {', '.join(seen['statements'])}", flush=True)

        print(
            f"\n3. paper intent -> position active ({args.samples} samples after "
            f"{args.warmup}; the paper latency passes in market time, untimed)",
            flush=True,
        )
        paper = paper_part(desk, args.samples, args.warmup)
        line("place_entry + one order-manager pass", paper["total"])
        line("  place_entry (paper gateway)", paper["place"])
        line("  run_once (match, fills, position, ledger)", paper["pass"])
        for name, label in PAPER_STEPS.items():
            line(f"    {label}", paper["pass_steps"][name])
        print(
            f"  round trips: place_entry {paper['trips_place']}, the pass {paper['trips_pass']}",
            flush=True,
        )
        for name, shown in paper["statements"].items():
            print(f"      {name}: {', '.join(shown)}", flush=True)
    finally:
        desk.close()
    Path(args.json).write_text(
        json.dumps(
            {
                "server": server,
                "live": live,
                "trips": {k: {**v, "statements": v["statements"]} for k, v in trips.items()},
                "times": times,
                "paper": paper,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
