"""Exit engine throughput, memory and tick-to-exit-order latency (issue 13). Not a test.

    .venv/bin/python bench/exit_engine.py [--positions 2000] [--contracts 500] [--rate 20000]
                                          [--throughput-seconds 60] [--latency-seconds 60]
                                          [--exit-rate 10] [--rules-repeat 5] [--skip-rules]
                                          [--profile [throughput|latency]]

Every role is its own OS process on this machine, talking over loopback, as in split mode:

* simulator: ``SimConfig(full_speed=True, full_speed_rate=--rate)``, pre-encoded full packets
  (162 bytes with depth) for ``--contracts`` option contracts, one per WebSocket frame, paced
  at ``--rate`` packets a second. Full speed cycles through 16 market seconds of prices per
  contract, so at 20,000/s over 500 contracts each contract ticks every 25 ms and its LTP
  repeats a 16-price cycle every 0.4 s;
* Redis: a throwaway ``redis-server`` (scripts/services.py);
* PostgreSQL: a throwaway server (scripts/services.py, as the test suite starts it: fsync off),
  migrated, the simulator's scrip master imported with ``import_instruments``;
* feed hub: ``workers.feed_hub.FeedHub`` on ``realtime_from_settings()`` (Redis), as
  bench/feed_hub.py runs it (the wanted set is the fixed list of contracts instead of a
  database query). The simulator's indices are not streamed (their LTTs would cycle too), so
  the hub's market clock is given the simulator's clock once (``MarketClock.follow`` with the
  simulator's market time, its wall time and rate 1, the simulator's speed); the hub then writes
  it to kv ``market:clock`` every state pass, which is what the exit engine follows;
* exit engine: ``exit_engine_from_settings(realtime_from_settings(), live=False)``, exactly as
  ``run_exit_engine`` builds it (paper router and gateway, ``reloading_config``, MarketClock),
  run in a thread of its own process; its ``handle_records`` is wrapped to count the records
  and batches it gets.

Positions are rows (``PositionTracker`` active, entry price and market time, quantity one lot,
on the imported ``Derivative``), ``--positions`` of them spread evenly over the contracts. Before
creating them the bench reads each contract's price cycle from Redis for 1.5 s.

1. **Throughput and memory**, ``--throughput-seconds`` (60) after a warm-up: no exit fires.
   Every position is entered 1-4 % under its contract's lowest price of the cycle, but at
   most 7 % under its highest (under ``exits.breakeven.arm_gain_pct``; a contract whose cycle
   is wider is entered a little above its lowest price): no stop within reach, no take
   profit, no break-even, no giveback, and the premium stall (3 minutes in loss without a new
   high) is beyond the bench's length. Reported: positions judged a second, that is rule
   evaluations (``engine.counters["evaluations"]``) plus positions whose tick fell inside
   their quiet band, where the rules are known to hold (``engine.counters["quiet"]``,
   trading/rules/exits.py ``quiet_band``), contract ticks (records) a second the engine got after
   the subscription coalesced them, its batches, the process's CPU share, RSS (VmRSS, peak
   VmHWM) at 10 s and at the end.
2. **Latency**, ``--latency-seconds`` (60): the 2,000 positions stay; the bench adds
   ``--exit-rate`` (10) positions a second, each on a random contract, entered so that its
   initial stop (``stop_loss.sl_pct`` under the entry) lies between the lowest and the
   second-lowest price of its contract's cycle: once the engine watches it (its next reload,
   at most 1 s later), the cycle's lowest tick, within 0.4 s, is a STOP_LOSS on that tick.
   The figure is ``engine.tick_to_send``: that tick's receive time (``TickRecord.receive_time``,
   set by the hub's socket thread) to the return of the router's ``exit_position`` (claimed,
   the exit order journaled, sent to the paper gateway and its ack recorded). 10 exits a second
   is a busy trading desk's worst minute, not a database storm. No order manager runs: the
   bench marks each claimed position exited about a second later (what the order manager does
   after the fill), so the open set stays at ~2,000 and the PnL marking work stays flat.
   Split in two, per exit: the tick's receive time to the moment the engine acts on its
   decision (``engine.tick_to_act``: the wait for the tick thread), and the route itself;
   and in two by when the decision came: on a later evaluation of a position already watched,
   or on its first evaluation after the reload that added it (``engine.first_look``). Also
   printed for the latency run, to find where a wait comes from: the age of the newest and
   the oldest tick of each batch when the tick thread takes it, the time each reload took to
   apply on the tick thread, and the garbage collector's pauses per generation.

   After each run: the CPU each role's processes used (the simulator, the hub, the engine with
   its route and marks processes, Redis, PostgreSQL, the bench), from /proc/<pid>/stat, and
   the whole machine's busy share from /proc/stat (what other tenants add); on the bench's VM
   the latter reads low at times (below the bench's own share), which the line then says.
   During the latency run, a bystander process sleeps 2 ms at a time and notes how late each
   wake-up comes: how long this machine, at that moment, makes a woken process wait for a
   core, whatever the engine does (the host's part of the exits' tail; about 1 % of a core).
3. **The pure rules**, per position per tick: bench/rules.py item 5 (``bench_exits``), called
   here after the processes have stopped (no Redis, no database, no engine loop).

Config: ``config/algo.yml`` with one override stored as the operator would
(``exits.daily_loss_limit.enabled: false``): the latency run books hundreds of stop losses, and
the daily loss limit would otherwise trip the kill switch and flatten all 2,000 positions.

Targets (issue 13): tick-to-exit-order p99 under 10 ms; the pure rules under 5 us per position
per tick; memory flat over 60 s. Nothing asserts; it prints. Measure on a quiet machine
(``uptime`` load < 1.5). ``--pnl-interval`` / ``--pnl-db-interval`` set the engine's PnL cache
and database-copy throttles (what-if runs: they change what the engine does, so their figures
are not the engine's as shipped; the bench says so in its first line). ``--profile`` runs the
engine thread under cProfile during the throughput run (slower: its figures are not the
bench's) and prints where the time went; ``--profile latency`` does so during the latency run,
with what the reload, the sweep and the exits' route called. ``--switch-interval S``,
``--persist-interval S`` and ``--gc-freeze`` are what-ifs in the engine process
(``sys.setswitchinterval``; how often the exit states are written, 1 s as shipped;
``gc.freeze()`` after the warm-up), said in the first line like the others. On PostgreSQL
and Redis the engine routes its exits from its route process (workers/exit_routes.py), as
``run_exit_engine`` does; the route's figure then includes the hand-over down its pipe.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import random
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from decimal import ROUND_UP, Decimal
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from feed_hub import _cpu_times, _rss, _steal_share  # noqa: E402 (bench/ is on sys.path)
from import_bench import cpu_model  # noqa: E402

TARGET_P99_MS = 10.0
TARGET_RULES_US = 5.0
WARMUP = 5.0  # seconds of evaluations before anything is measured
CYCLE_SECONDS = 1.5  # how long the price cycles are read (about 4 cycles at 20,000/s)
TICK = Decimal("0.05")
OVERRIDES = {"exits": {"daily_loss_limit": {"enabled": False}}}


def _django(db_url: str, redis_url: str) -> None:
    os.environ.update(
        DATABASE_URL=db_url,
        REDIS_URL=redis_url,
        DJANGO_SECRET_KEY=os.environ.get("BENCH_SECRET", "x" * 50),
        DJANGO_DEBUG="false",  # DEBUG keeps every query in memory: not what production runs
        PAPER_MODE="true",
        INSTRUMENTS_CACHE_DIR=str(Path(tempfile.gettempdir()) / "bench-exit-cache"),
        DJANGO_SETTINGS_MODULE="algo_scalper.settings",
    )
    os.environ.pop("PAPER_CHARGES_PER_ORDER", None)
    import django

    django.setup()
    import logging

    # The engine logs every exit at WARNING: a line per exit is not what is measured.
    for name in ("workers", "trading"):
        logging.getLogger(name).setLevel(logging.ERROR)


# -- the simulator -------------------------------------------------------------------------


def serve_sim(conn: Connection, stop: EventType, contracts: int, rate: float) -> None:
    from trading.dhan.sim.server import SimConfig, Simulator

    sim = Simulator(
        SimConfig(seed=0, speed=1.0, full_speed=True, full_speed_rate=rate, strikes_each_side=50)
    ).start()
    now = sim.now()
    keys = []
    for sid, spec in sim.market.contracts.items():
        if spec.exchange_segment != "NSE_FNO" or spec.option_type not in ("CE", "PE"):
            continue
        # Premiums of at least 20 rupees: one 0.05 tick is at most 0.25 % of the price.
        if sim.market.quote(spec.exchange_segment, sid, now).ltp >= 20:
            keys.append(f"{spec.exchange_segment}:{sid}")
        if len(keys) == contracts:
            break
    conn.send(
        {
            "url": sim.ws_url,
            "client_id": sim.client_id,
            "token": sim.token,
            "keys": keys,
            "scrip_master_url": sim.scrip_master_url,
            # The simulator's market time and the wall time it was read at (speed 1).
            "market": sim.now().timestamp(),
            "wall": time.time(),
        }
    )
    stop.wait()
    sim.stop()


# -- the feed hub --------------------------------------------------------------------------


def run_hub(
    conn: Connection, stop: EventType, feed: dict[str, Any], db_url: str, redis_url: str
) -> None:
    _django(db_url, redis_url)
    from trading.config.load import load_algo_file
    from trading.dhan.feed import FeedClient
    from trading.dhan.feed_codec import FeedMode
    from workers.feed_hub import FeedHub, HubConfig
    from workers.market_clock import MarketClock
    from workers.realtime.services import realtime_from_settings

    wanted = dict.fromkeys(feed["keys"], FeedMode.FULL)

    class BenchHub(FeedHub):
        def _desired(self, **_: Any) -> tuple[dict, frozenset]:
            return dict(wanted), frozenset(wanted)

    def factory(on_packets, **hooks):  # noqa: ANN001, ANN202
        return FeedClient(
            feed["url"],
            feed["client_id"],
            lambda: feed["token"],
            on_packets,
            market_open=lambda: False,
            **hooks,
        )

    clock = MarketClock(name="feed hub: market clock")
    clock.follow({"exchange_time": feed["market"], "wall_time": feed["wall"], "rate": 1.0})
    hub = BenchHub(
        realtime_from_settings(),
        feed_factory=factory,
        market_clock=clock,
        config=HubConfig(
            seed_candles=False,
            market_open=lambda: False,
            log_interval=3600,
            market=load_algo_file(ROOT / "config" / "algo.yml").market,
        ),
    )
    halt = threading.Event()
    thread = threading.Thread(target=hub.run, args=(halt,), daemon=True)
    thread.start()
    while hub.counters.ticks == 0 and not stop.is_set():
        if not thread.is_alive():
            raise SystemExit("feed hub: its thread ended before any tick (see above)")
        time.sleep(0.05)
    conn.send("flowing")
    # On request: the ticks/s the hub received since the last request.
    last = (time.perf_counter(), hub.counters.ticks, hub.feed.stats().dropped_packets)
    while not stop.is_set():
        if conn.poll(0.2):
            conn.recv()
            now = (time.perf_counter(), hub.counters.ticks, hub.feed.stats().dropped_packets)
            conn.send(((now[1] - last[1]) / (now[0] - last[0]), now[2] - last[2]))
            last = now
    halt.set()
    thread.join(10)


# -- the exit engine -----------------------------------------------------------------------


def run_engine(
    conn: Connection,
    db_url: str,
    redis_url: str,
    profile: str | None,
    pnl_interval: float | None,
    pnl_db_interval: float | None,
) -> None:
    _django(db_url, redis_url)
    import cProfile
    import io
    import pstats

    from workers.exit_engine import exit_engine_from_settings
    from workers.realtime.services import realtime_from_settings

    engine = exit_engine_from_settings(realtime_from_settings(), live=False)
    if os.environ.get("BENCH_SWITCH_INTERVAL"):
        sys.setswitchinterval(float(os.environ["BENCH_SWITCH_INTERVAL"]))
    if os.environ.get("BENCH_PERSIST_INTERVAL"):
        engine.persist_interval = float(os.environ["BENCH_PERSIST_INTERVAL"])
    # What-if knobs (module doc); by default the engine runs as run_exit_engine builds it.
    if pnl_interval is not None:
        engine.pnl_interval = pnl_interval
    if pnl_db_interval is not None:
        engine.db_sync.interval = pnl_db_interval
    seen = {"records": 0, "batches": 0}
    handle_records = engine.handle_records

    lags: list[tuple[float, float]] = []
    timing = threading.Event()

    def counted(records: Any, now: float) -> int:
        seen["records"] += len(records)
        seen["batches"] += 1
        # The freshest record's age when the tick thread takes the batch: the wait before
        # the engine's own work (hub, Redis, the reader thread, the tick thread's other work).
        if timing.is_set():  # the latency run only: the list would grow the RSS measured
            times = [record.receive_time for record in records.values()]
            taken = time.time()
            batch_taken[0] = taken
            lags.append((taken - max(times), taken - min(times)))
        return handle_records(records, now)

    engine.handle_records = counted  # type: ignore[method-assign]
    # Each exit decided on a tick, split at the moment the tick thread took its batch: the
    # deciding tick's age then, and the time from there to the act.
    batch_taken = [0.0]
    splits: list[tuple[float, float]] = []
    act_all = engine.act_all

    def split_act(decisions: Any) -> None:
        if timing.is_set() and batch_taken[0]:
            now = time.time()
            for _watched, _decision, received in decisions:
                if received:
                    splits.append((batch_taken[0] - received, now - batch_taken[0]))
        act_all(decisions)

    engine.act_all = split_act  # type: ignore[method-assign]
    applies: list[float] = []
    apply_reload = engine.apply_reload

    def timed_apply(fetched: Any) -> bool:
        started = time.perf_counter()
        try:
            return apply_reload(fetched)
        finally:
            if timing.is_set():
                applies.append(time.perf_counter() - started)

    engine.apply_reload = timed_apply  # type: ignore[method-assign]
    # The cyclic garbage collector's pauses (every thread stops while it runs): per
    # generation, during the latency run.
    import gc

    gc_pauses: list[tuple[int, float]] = []
    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if not timing.is_set():
            return
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            gc_pauses.append((info["generation"], time.perf_counter() - gc_started[0]))

    gc.callbacks.append(on_gc)
    stop = threading.Event()
    # cProfile sees one thread: the engine's passes are profiled from the engine thread, and
    # only during the run ``profile`` names (throughput or latency; not the start, when every
    # plan is built).
    profiler = cProfile.Profile() if profile else None
    profiling = threading.Event()
    run_once = engine.run_once

    def profiled_once() -> int:
        if profiler is not None and profiling.is_set():
            return profiler.runcall(run_once)
        return run_once()

    engine.run_once = profiled_once  # type: ignore[method-assign]
    thread = threading.Thread(target=engine.run, args=(stop,), name="exit-engine", daemon=True)
    thread.start()
    deadline = time.monotonic() + 180
    while (
        engine.counters["evaluations"] + engine.counters["quiet"] == 0
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    time.sleep(WARMUP)
    if os.environ.get("BENCH_GC_FREEZE"):
        gc.collect()
        gc.freeze()  # what-if: the objects of the start out of every later collection
    conn.send({"watched": len(engine.watched), "decisions": engine.counters["decisions"]})

    def snapshot() -> dict[str, float]:
        rss, peak = _rss()
        return {
            "t": time.perf_counter(),
            "cpu": time.process_time(),
            "evaluations": engine.counters["evaluations"],
            "quiet": engine.counters["quiet"],
            "decisions": engine.counters["decisions"],
            "exits": engine.counters["exits"],
            "records": seen["records"],
            "batches": seen["batches"],
            "rss": rss,
            "peak": peak,
            "watched": len(engine.watched),
            "positions": len(engine.positions),
        }

    def rates(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
        elapsed = b["t"] - a["t"]
        return {
            "elapsed": elapsed,
            "evaluations": (b["evaluations"] - a["evaluations"]) / elapsed,
            "quiet": (b["quiet"] - a["quiet"]) / elapsed,
            "records": (b["records"] - a["records"]) / elapsed,
            "batches": (b["batches"] - a["batches"]) / elapsed,
            "cpu": (b["cpu"] - a["cpu"]) / elapsed,
            "decisions": b["decisions"] - a["decisions"],
            "exits": b["exits"] - a["exits"],
            "rss": b["rss"],
            "peak": b["peak"],
            "watched": b["watched"],
            "positions": b["positions"],
        }

    while True:
        command, argument = conn.recv()
        if command == "throughput":
            if profile == "throughput":
                profiling.set()
            start = snapshot()
            samples = []
            for mark in argument:
                while time.perf_counter() - start["t"] < mark:
                    time.sleep(0.05)
                samples.append(rates(start, snapshot()))
            profiling.clear()
            conn.send(samples)
        elif command == "latency-start":
            engine.tick_to_send.clear()
            engine.tick_to_act.clear()
            engine.first_look.clear()
            gc_pauses.clear()
            lags.clear()
            applies.clear()
            splits.clear()
            timing.set()
            if profile == "latency":
                profiling.set()
            start = snapshot()
            conn.send("started")
        elif command == "latency-stop":
            timing.clear()
            conn.send(
                {
                    "figures": rates(start, snapshot()),
                    "latencies": list(engine.tick_to_send),
                    "to_act": list(engine.tick_to_act),
                    "first_look": list(engine.first_look),
                    "gc": list(gc_pauses),
                    "lags": list(lags),
                    "applies": list(applies),
                    "splits": list(splits),
                }
            )
        else:
            break
    stop.set()
    thread.join(30)
    text = None
    if profiler is not None:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(30)
        stats.print_callees("handle_reload|sweep|act")
        text = out.getvalue()
    conn.send(text)


# -- the bench's own database work (the parent) --------------------------------------------


def read_cycles(keys: list[str], seconds: float) -> dict[str, list[Decimal]]:
    """The distinct LTPs each contract showed in ``seconds`` (its full-speed cycle), sorted."""
    from workers.realtime.services import realtime_from_settings

    realtime = realtime_from_settings()
    subscription = realtime.ticks.subscribe(keys)
    prices: dict[str, set[Decimal]] = {key: set() for key in keys}
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        for key, record in subscription.wait(0.1).items():
            if record.ltp > 0:
                prices[key].add(Decimal(str(record.ltp)).quantize(TICK))
    subscription.close()
    realtime.close()
    return {key: sorted(values) for key, values in prices.items() if values}


def contract_rows(keys: list[str]) -> dict[str, Any]:
    from instruments.models import Derivative

    wanted = {int(key.split(":")[1]) for key in keys}
    rows = Derivative.objects.filter(
        exchange_segment="NSE_FNO", security_id__in=wanted
    ).select_related("underlying")
    return {f"NSE_FNO:{row.security_id}": row for row in rows}


def new_position(derivative: Any, entry: Decimal, entry_at: Any) -> Any:
    from trading.models import PositionTracker

    return PositionTracker(
        derivative=derivative,
        exchange_segment=derivative.exchange_segment,
        security_id=derivative.security_id,
        status="active",
        quantity=derivative.lot_size,
        entry_price=entry,
        underlying=derivative.underlying.trading_symbol if derivative.underlying else "",
        direction="bullish" if derivative.option_type == "CE" else "bearish",
        mode="paper",
        opened_at=entry_at,
        entry_at=entry_at,
        charges=Decimal(0),
    )


def market_now(feed: dict[str, Any]) -> Any:
    from datetime import datetime

    from trading.rules.market import IST

    return datetime.fromtimestamp(feed["market"] + time.time() - feed["wall"], IST)


def create_base(
    cycles: dict[str, list[Decimal]], rows: dict[str, Any], count: int, feed: dict[str, Any]
) -> dict[str, float]:
    """``count`` positions spread over the contracts, none of which can exit (module doc)."""
    from trading.config.store import effective_algo_config
    from trading.models import PositionTracker

    arm = Decimal(str(effective_algo_config().exits.breakeven.arm_gain_pct))
    keys = sorted(cycles)
    now = market_now(feed)
    positions = []
    gains = []
    wide = 0
    for i in range(count):
        key = keys[i % len(keys)]
        low, high = cycles[key][0], cycles[key][-1]
        under = Decimal("0.01") * (1 + (i // len(keys)) % 4)
        # Under the lowest price, but never so far under the highest that the break-even
        # stop arms: a contract whose cycle spans more than that is entered a little in loss.
        entry = max(low * (1 - under), high / (1 + arm - Decimal("0.01")))
        entry = entry.quantize(TICK, rounding=ROUND_UP)
        wide += entry >= low
        gains.append(float(high / entry - 1))
        positions.append(new_position(rows[key], entry, now))
    PositionTracker.objects.bulk_create(positions, batch_size=500)
    return {"max_gain": max(gains), "median_gain": statistics.median(gains), "wide": wide}


def crossing_entries(
    cycles: dict[str, list[Decimal]], rows: dict[str, Any], feed: dict[str, Any]
) -> dict[str, Decimal]:
    """Per contract, an entry price whose initial stop lies between the cycle's lowest and
    second-lowest price (checked with the rules' own plan), where there is one."""
    from trading.config.store import effective_algo_config
    from trading.rules.exits import ExitPlan

    exits = effective_algo_config().exits
    sl = Decimal(str(exits.stop_loss.sl_pct))
    now = market_now(feed)
    found = {}
    for key, prices in cycles.items():
        if len(prices) < 2:
            continue
        low, second = prices[0], prices[1]
        entry = ((low + second) / 2 / (1 - sl)).quantize(TICK)
        derivative = rows[key]
        plan = ExitPlan.build(
            entry_price=entry,
            quantity=derivative.lot_size,
            entry_at=now,
            direction="bullish" if derivative.option_type == "CE" else "bearish",
            expiry=derivative.expiry_date,
            underlying_entry=None,
            charges_per_unit=Decimal(0),
            config=exits,
        )
        stop = plan.open_state().stop
        if stop is not None and low <= stop < second:
            found[key] = entry
    return found


def _busy_share(before: list[int], after: list[int]) -> float:
    """Share of the machine's CPU time (all cores) not idle between two _cpu_times(): every
    process of the bench (simulator, hub, Redis, PostgreSQL, the engine) and anything else."""
    delta = [b - a for a, b in zip(before, after, strict=False)]
    total = sum(delta[:8])
    idle = delta[3] + delta[4]  # idle, iowait
    return 1 - idle / total if total else 0.0


def machine_line(busy: float, own: float | None = None) -> str:
    """The machine's busy share by /proc/stat; with ``own`` (the bench's processes' share of
    the machine, :func:`roles_line`), a reading below it is said to be wrong: on the bench's
    VM /proc/stat's idle time over-counts now and then (2 % busy printed while the engine
    alone used 22 % of a core: 2026-12-06, bench/RESULTS.md)."""
    cores = os.cpu_count() or 1
    line = (
        f"  the machine's {cores} cores during the run: {busy:.0%} busy by /proc/stat "
        f"(simulator, hub, Redis, PostgreSQL, engine and anything else)"
    )
    if own is not None and busy + 0.02 < own:
        line += (
            f": less than the bench's own processes' {own:.0%}, so /proc/stat under-counts "
            "here; the figures by process above are the ones to read"
        )
    return line


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, user + system clock ticks) of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])


def _processes() -> dict[int, tuple[int, int]]:
    """Every process now: pid -> (parent pid, user + system clock ticks)."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat is not None:
                stats[int(entry)] = stat
    return stats


def role_cpu(roots: Mapping[str, int]) -> dict[str, dict[int, int]]:
    """Clock ticks of CPU (user + system) used so far by each process of each role's process
    tree: ``roots`` maps a role to its process, whose descendants count with it (the engine's
    route and marks processes, PostgreSQL's backends); "bench" is this process and what else
    it started (Redis, when not a role of its own)."""
    stats = _processes()
    role_of = {pid: role for role, pid in roots.items()}
    out: dict[str, dict[int, int]] = {role: {} for role in roots}
    for pid, (_parent, ticks) in stats.items():
        seen, at = 0, pid
        while at not in role_of and at in stats and seen < 64:
            at, seen = stats[at][0], seen + 1
        if at in role_of:
            out[role_of[at]][pid] = ticks
    return out


PROBE_SLEEP = 0.002  # seconds the bystander probe sleeps between two wake-ups


def serve_probe(conn: Connection, stop: EventType) -> None:
    """A bystander (a process of its own, doing nothing else): sleep PROBE_SLEEP, note how
    late the wake-up came, again, until ``stop``; then send the lateness in seconds. How long
    this machine makes a woken process wait for a core during the run, whatever the engine
    does: the host's share of the exits' tail (500 wake-ups a second, about 1 % of a core)."""
    late: list[float] = []
    conn.send("ready")
    while not stop.is_set():
        start = time.perf_counter()
        time.sleep(PROBE_SLEEP)
        late.append(time.perf_counter() - start - PROBE_SLEEP)
    conn.send(late)


def probe_line(late: list[float]) -> str:
    ms = sorted(1000 * x for x in late)
    if not ms:
        return "  bystander probe: no wake-up"
    return (
        f"  bystander probe (another process sleeping {PROBE_SLEEP * 1000:g} ms at a time, "
        f"{len(ms):,} wake-ups): late by p50 {percentile(ms, 0.5):.2f} ms, p99 "
        f"{percentile(ms, 0.99):.2f} ms, p99.9 {percentile(ms, 0.999):.2f} ms, max {ms[-1]:.2f} ms"
    )


def bench_roots(sim: int, hub: int, engine: int) -> dict[str, int]:
    """The process of each role of the run (role_cpu): the simulator, the hub, the engine
    (with its route and marks processes), Redis (this process's child), PostgreSQL (the
    postmaster, the parent of this connection's backend) and the bench itself."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    roots = {"simulator": sim, "hub": hub, "engine (its route and marks processes too)": engine}
    for pid, (parent, _ticks) in _processes().items():
        comm = Path(f"/proc/{pid}/comm")
        if parent == os.getpid() and comm.exists() and comm.read_text().strip() == "redis-server":
            roots["Redis"] = pid
    postmaster = _proc_stat(backend)
    if postmaster is not None:
        roots["PostgreSQL"] = postmaster[0]
    roots["bench"] = os.getpid()
    return roots


def roles_line(
    before: Mapping[str, Mapping[int, int]], after: Mapping[str, Mapping[int, int]], seconds: float
) -> tuple[str, float]:
    """Each role's CPU between two role_cpu() readings, in % of one core, and their sum;
    with that sum as a share of the machine (all its cores)."""
    hz = os.sysconf("SC_CLK_TCK")
    # Per process: one that started meanwhile counts whole; one that ended meanwhile (a
    # PostgreSQL backend closed) is not in ``after`` and its last share is lost, a rounding.
    shares = {
        role: sum(ticks - before.get(role, {}).get(pid, 0) for pid, ticks in procs.items())
        / hz
        / seconds
        for role, procs in after.items()
    }
    total = sum(shares.values())
    cores = os.cpu_count() or 1
    parts = ", ".join(f"{role} {share:.0%}" for role, share in shares.items())
    line = (
        f"  CPU of the bench's processes, % of one core: {parts}; together {total:.0%} of one "
        f"core, {total / cores:.0%} of the machine's {cores}"
    )
    return line, total / cores


def latency_run(
    engine: Connection,
    entries: dict[str, Decimal],
    rows: dict[str, Any],
    feed: dict[str, Any],
    seconds: float,
    rate: float,
) -> tuple[dict[str, Any], int, int]:
    """Add ``rate`` crossing positions a second for ``seconds``; mark the claimed ones exited
    about a second after their claim (the order manager's part, not measured)."""
    from trading.models import PositionTracker

    rng = random.Random(13)
    keys = sorted(entries)
    engine.send(("latency-start", None))
    engine.recv()
    created: list[int] = []
    closed = 0
    started = time.perf_counter()
    next_close = started + 1.0
    n = 0
    while True:
        due = started + n / rate
        now = time.perf_counter()
        if due - started >= seconds:
            break
        if now < due:
            time.sleep(due - now)
        key = rng.choice(keys)
        position = new_position(rows[key], entries[key], market_now(feed))
        position.save()
        created.append(position.pk)
        n += 1
        if time.perf_counter() >= next_close:
            next_close += 1.0
            closed += close_claimed(created)
    time.sleep(2.0)  # the last ones' reload and their cycle's lowest tick
    engine.send(("latency-stop", None))
    result = engine.recv()
    closed += close_claimed(created)
    still = PositionTracker.objects.filter(pk__in=created, status="active").count()
    return result, len(created), still


def close_claimed(created: list[int]) -> int:
    from django.db.models import F

    from trading.models import PositionTracker

    return PositionTracker.objects.filter(pk__in=created, status="exiting").update(
        status="exited", exited_at=F("exit_decided_at")
    )


# -- the parent ----------------------------------------------------------------------------


def percentile(ordered: list[float], q: float) -> float:
    """Nearest rank."""
    return ordered[max(0, min(len(ordered) - 1, int(q * len(ordered) + 0.999999) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--positions", type=int, default=2000)
    parser.add_argument("--contracts", type=int, default=500)
    parser.add_argument("--rate", type=float, default=20_000, help="ticks/s from the simulator")
    parser.add_argument("--throughput-seconds", type=float, default=60.0)
    parser.add_argument("--latency-seconds", type=float, default=60.0)
    parser.add_argument("--exit-rate", type=float, default=10.0, help="exits/s, latency run")
    parser.add_argument("--rules-repeat", type=int, default=5, help="bench/rules.py item 5")
    parser.add_argument("--skip-rules", action="store_true")
    parser.add_argument(
        "--profile",
        nargs="?",
        const="throughput",
        choices=("throughput", "latency"),
        help="cProfile the engine thread during the throughput run (default) or the latency run",
    )
    parser.add_argument(
        "--pnl-interval",
        type=float,
        help="what-if: seconds between PnL cache marks of a position (engine default 0.25)",
    )
    parser.add_argument(
        "--pnl-db-interval",
        type=float,
        help="what-if: seconds between PnL database copies of a position (engine default 5)",
    )
    parser.add_argument(
        "--switch-interval",
        type=float,
        help="what-if: sys.setswitchinterval in the engine process (CPython's default 0.005)",
    )
    parser.add_argument(
        "--persist-interval",
        type=float,
        help="what-if: seconds between the engine's writes of the exit states (default 1)",
    )
    parser.add_argument(
        "--gc-freeze", action="store_true", help="what-if: gc.freeze() after the warm-up"
    )
    args = parser.parse_args()
    for name in ("positions", "contracts", "rate", "exit_rate"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')}: must be positive")
    if args.throughput_seconds < 1 or args.latency_seconds < 1:
        parser.error("--throughput-seconds and --latency-seconds: at least 1")

    from scripts import services

    ctx = mp.get_context("spawn")  # no child inherits the parent's database connection
    os.environ["BENCH_SECRET"] = secrets.token_urlsafe(50)
    if args.gc_freeze:
        os.environ["BENCH_GC_FREEZE"] = "1"
        print("WHAT-IF: gc.freeze() in the engine process after its warm-up")
    if args.switch_interval is not None:
        os.environ["BENCH_SWITCH_INTERVAL"] = str(args.switch_interval)
        print(f"WHAT-IF: the engine process's switch interval {args.switch_interval:g} s")
    if args.persist_interval is not None:
        os.environ["BENCH_PERSIST_INTERVAL"] = str(args.persist_interval)
        print(f"WHAT-IF: the engine writes the exit states every {args.persist_interval:g} s")
    if args.pnl_interval is not None or args.pnl_db_interval is not None:
        print(
            f"WHAT-IF, not the engine as shipped: PnL cache marks every "
            f"{args.pnl_interval or 0.25:g} s, database copies every "
            f"{args.pnl_db_interval or 5:g} s per position"
        )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, CPU {cpu_model()!r}, Python "
        f"{platform.python_version()}, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    profile_text = None
    with services.redis() as redis_url, services.postgres(dbname="bench_exit") as db_url:
        _django(db_url, redis_url)
        from django.core.management import call_command
        from django.db import connections

        from trading.config.store import save_overrides

        call_command("migrate", verbosity=0)
        save_overrides(OVERRIDES)

        sim_conn, child = ctx.Pipe()
        sim_stop = ctx.Event()
        sim = ctx.Process(
            target=serve_sim, args=(child, sim_stop, args.contracts, args.rate), daemon=True
        )
        sim.start()
        feed = sim_conn.recv()
        call_command("import_instruments", url=feed["scrip_master_url"], verbosity=0)
        rows = contract_rows(feed["keys"])

        hub_conn, child = ctx.Pipe()
        hub_stop = ctx.Event()
        hub = ctx.Process(target=run_hub, args=(child, hub_stop, feed, db_url, redis_url))
        hub.start()
        hub_conn.recv()
        time.sleep(1.0)  # the paced stream settles
        cycles = read_cycles(feed["keys"], CYCLE_SECONDS)
        sizes = [len(prices) for prices in cycles.values()]
        base = create_base(cycles, rows, args.positions, feed)
        entries = crossing_entries(cycles, rows, feed)
        connections.close_all()
        print(
            f"\n{len(cycles)} contracts streamed in full mode at {args.rate:,.0f} ticks/s "
            f"(each about every {len(cycles) / args.rate * 1000:.0f} ms, "
            f"{statistics.median(sizes):.0f} distinct prices per cycle, median); "
            f"{args.positions:,} positions, {args.positions / len(cycles):.0f} a contract, "
            f"entered 1-4 % under the cycle's lowest price (highest gain "
            f"{base['max_gain']:.1%}, median {base['median_gain']:.1%}; {base['wide']} entered "
            f"at most 7 % under the highest price instead, a little in loss at the lowest); "
            f"{len(entries)} contracts can take a crossing position",
            flush=True,
        )

        engine_conn, child = ctx.Pipe()
        engine = ctx.Process(
            target=run_engine,
            args=(child, db_url, redis_url, args.profile, args.pnl_interval, args.pnl_db_interval),
        )
        started = time.perf_counter()
        engine.start()
        ready = engine_conn.recv()
        print(
            f"exit engine: watching {ready['watched']:,} positions "
            f"{time.perf_counter() - started:.1f} s after its start ({WARMUP:.0f} s warm-up "
            f"included), {ready['decisions']} decisions so far",
            flush=True,
        )

        # 1. Throughput and memory.
        marks = sorted(
            {10.0, args.throughput_seconds}
            if args.throughput_seconds > 10
            else {args.throughput_seconds}
        )
        hub_conn.send("rate")
        hub_conn.recv()
        roots = bench_roots(sim.pid, hub.pid, engine.pid)
        connections.close_all()
        cpu_before, roles_before = _cpu_times(), role_cpu(roots)
        started = time.monotonic()
        engine_conn.send(("throughput", marks))
        samples = engine_conn.recv()
        cpu_after, roles_after = _cpu_times(), role_cpu(roots)
        roles, own = roles_line(roles_before, roles_after, time.monotonic() - started)
        steal = _steal_share(cpu_before, cpu_after)
        busy = _busy_share(cpu_before, cpu_after)
        hub_conn.send("rate")
        hub_rate, dropped = hub_conn.recv()
        print(
            f"\nthroughput: {hub_rate:,.0f} ticks/s reached the hub ({dropped:,} packets "
            f"dropped), {args.throughput_seconds:.0f} s, no exit expected"
        )
        for s in samples:
            print(
                f"  at {s['elapsed']:5.1f} s: {s['evaluations'] + s['quiet']:9,.0f} positions "
                f"judged/s ({s['evaluations']:,.0f} by the rules, {s['quiet']:,.0f} inside "
                "their quiet band), "
                f"{s['records']:7,.0f} contract ticks/s to the engine in "
                f"{s['batches']:4,.0f} batches/s, engine CPU {s['cpu']:.0%} of a core, "
                f"RSS {s['rss'] / 1024:6.1f} MiB (peak {s['peak'] / 1024:6.1f} MiB), "
                f"{s['decisions']} decisions, {s['watched']:,} watched"
            )
        first, last = samples[0], samples[-1]
        growth = (last["rss"] - first["rss"]) / 1024
        print(
            f"  memory {first['elapsed']:.0f} s -> {last['elapsed']:.0f} s: RSS "
            f"{growth:+.1f} MiB, peak {(last['peak'] - first['peak']) / 1024:+.1f} MiB "
            f"(target: flat)"
        )
        print(f"  CPU stolen by the hypervisor during the run: {steal:.0%} (noise)", flush=True)
        print(roles, flush=True)
        print(machine_line(busy, own), flush=True)

        # 2. Latency.
        probe_conn, child = ctx.Pipe()
        probe_stop = ctx.Event()
        probe = ctx.Process(target=serve_probe, args=(child, probe_stop), daemon=True)
        probe.start()
        probe_conn.recv()
        cpu_before, roles_before = _cpu_times(), role_cpu(roots)
        started = time.monotonic()
        result, created, still = latency_run(
            engine_conn, entries, rows, feed, args.latency_seconds, args.exit_rate
        )
        cpu_after, roles_after = _cpu_times(), role_cpu(roots)
        roles, own = roles_line(roles_before, roles_after, time.monotonic() - started)
        probe_stop.set()
        lateness = probe_conn.recv()
        probe.join(10)
        steal = _steal_share(cpu_before, cpu_after)
        busy = _busy_share(cpu_before, cpu_after)
        figures, latencies = result["figures"], result["latencies"]
        print(
            f"\nlatency: {created} crossing positions added at {args.exit_rate:g}/s over "
            f"{args.latency_seconds:.0f} s on top of the {args.positions:,}; "
            f"{figures['exits']} exits routed, {len(latencies)} of them decided on a tick "
            f"({figures['exits'] - len(latencies)} by the 1 s sweep: not timed); {still} "
            f"still active at the end (not yet watched, or their lowest tick not yet seen)"
        )
        print(
            f"  meanwhile: {figures['evaluations'] + figures['quiet']:,.0f} positions judged/s "
            f"({figures['evaluations']:,.0f} by the rules), "
            f"{figures['records']:,.0f} contract ticks/s to the engine, engine CPU "
            f"{figures['cpu']:.0%} of a core, RSS {figures['rss'] / 1024:.1f} MiB "
            f"(peak {figures['peak'] / 1024:.1f} MiB)"
        )
        if latencies:
            ms = sorted(x * 1000 for x in latencies)
            p99 = percentile(ms, 0.99)
            print(
                f"  tick receive -> exit order sent: p50 {percentile(ms, 0.5):.2f} ms, "
                f"p90 {percentile(ms, 0.9):.2f} ms, p99 {p99:.2f} ms, max {ms[-1]:.2f} ms "
                f"(n={len(ms)}; target p99 < {TARGET_P99_MS:g} ms: "
                f"{'met' if p99 < TARGET_P99_MS else 'NOT met'})"
            )
            acted = sorted(x * 1000 for x in result["to_act"])
            routes = sorted(
                1000 * (x - y) for x, y in zip(latencies, result["to_act"], strict=True)
            )
            waited = sorted(1000 * a for a, _ in result["splits"])
            judged = sorted(1000 * b for _, b in result["splits"])
            for label, values in (
                ("of which tick receive -> its decision acted on", acted),
                ("  the deciding tick's age when its batch was taken", waited),
                ("  that batch taken -> the decision acted on", judged),
                ("and the route (claim, orders, send)", routes),
            ):
                print(
                    f"    {label}: p50 {percentile(values, 0.5):.2f} ms, "
                    f"p90 {percentile(values, 0.9):.2f} ms, p99 {percentile(values, 0.99):.2f} ms"
                )
            for first, label in (
                (False, "decided on a later evaluation (the position already watched)"),
                (True, "decided on the position's first evaluation (after its reload)"),
            ):
                part = sorted(
                    1000 * x
                    for x, look in zip(latencies, result["first_look"], strict=True)
                    if look is first
                )
                if part:
                    print(
                        f"  {label}: n={len(part)}, p50 {percentile(part, 0.5):.2f} ms, "
                        f"p90 {percentile(part, 0.9):.2f} ms, p99 {percentile(part, 0.99):.2f} ms"
                    )
        else:
            print("  no exit timed")
        for index, which in ((0, "newest"), (1, "oldest")):
            lag = sorted(1000 * x[index] for x in result["lags"])
            if lag:
                print(
                    f"  age of the {which} tick when the tick thread takes a batch: p50 "
                    f"{percentile(lag, 0.5):.2f} ms, p90 {percentile(lag, 0.9):.2f} ms, p99 "
                    f"{percentile(lag, 0.99):.2f} ms ({len(lag):,} batches)"
                )
        applied = sorted(1000 * x for x in result["applies"])
        if applied:
            print(
                f"  reloads applied on the tick thread: {len(applied)}, p50 "
                f"{percentile(applied, 0.5):.2f} ms, p90 {percentile(applied, 0.9):.2f} ms, "
                f"max {applied[-1]:.2f} ms"
            )
        for generation in (0, 1, 2):
            pauses = sorted(1000 * t for g, t in result["gc"] if g == generation)
            if pauses:
                print(
                    f"  garbage collector, generation {generation}: {len(pauses)} pauses, "
                    f"max {pauses[-1]:.2f} ms, total {sum(pauses):.0f} ms"
                )
        print(f"  CPU stolen by the hypervisor during the run: {steal:.0%} (noise)", flush=True)
        print(roles, flush=True)
        print(machine_line(busy, own), flush=True)
        print(probe_line(lateness), flush=True)

        engine_conn.send(("stop", None))
        profile_text = engine_conn.recv()
        engine.join(30)
        hub_stop.set()
        hub.join(15)
        sim_stop.set()
        sim.join(15)
        connections.close_all()

    if profile_text:
        print("\nexit engine thread, cProfile (its overhead included):")
        print(profile_text)
    if not args.skip_rules:
        from rules import bench_exits

        from trading.config.load import load_algo_file

        config = load_algo_file(ROOT / "config" / "algo.yml")
        rules = bench_exits(config.exits, args.rules_repeat, False)
        per = rules["stream"] / 1000
        print(
            f"\npure rules (bench/rules.py item 5, exits.evaluate over 2,000 positions on 500 "
            f"contracts, {rules['stream calls']:,} evaluations): {per:.2f} us per position per "
            f"tick, median of {args.rules_repeat} (target < {TARGET_RULES_US:g} us: "
            f"{'met' if per < TARGET_RULES_US else 'NOT met'}); a quiet tick "
            f"{rules['quiet tick (nothing moves)'] / 1000:.2f} us"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
