"""Strategy and risk rules benchmark (issue 5). Not a test: prints figures and comparisons.

    .venv/bin/python bench/rules.py [--candles 2000] [--repeat 5]

Pure rules only (no database, no network): what one candle close costs the signal engine.

1. Indicator update per new candle for 4 indices: one ``SignalState.update`` per index per
   candle (Supertrend + ADX, the default strategy; and the Holy Grail composite), after a warm-up
   of ``--candles`` history candles. Target: under 200 microseconds per index per candle.
   Compared with recomputing the whole series (``signals.evaluate``) on every candle, which is
   what a non-incremental engine would do.
2. Full signal evaluation: ``evaluate`` over a day plus history (the restart path).
3. The rest of a decision, per call: the ten entry gates (``gates.check_entry``, all passing:
   the longest path), strike choice over a realistic chain (``strikes.choose_strike``), sizing
   (``sizing.size_entry``) and charges (``charges.order_charges`` and ``round_trip``).
4. The fill model (``fills``), per call: a book from a tick's five depth rows
   (``Book.from_depth``, float32 prices cleaned to the tick: what paper does per tick), an
   incoming buy walking three levels, a resting buy the book crosses, a resting buy it does not
   cross (the commonest call: an open order on a tick that leaves it open), the paper rules'
   stale and no-depth paths, and ``mpp_limit``.
5. The exit rules (``exits.evaluate``, issue 13), per position per tick: 2,000 open positions
   over 500 contracts, a tick stream round-robin over the contracts (each tick evaluated for the
   4 positions on its contract, a position that exits is evaluated no more, as in the engine).
   The positions are spread over the states that cost differently: flat near entry, in loss
   (time accumulating), with the trailing stop armed. Target: under 5 microseconds per
   position per tick. Then each path alone (a quiet tick, a new high that raises the stop, a
   tick in loss, a sweep without a tick, a decision), and what the engine pays once per
   contract tick (the Tick) or once per position (the plan). ``--profile`` adds a cProfile of
   the stream.

Timings are medians over ``--repeat`` runs of many calls each (time.perf_counter_ns), so one
run that the VM's hypervisor throttles does not decide the figure.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import os
import platform
import pstats
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trading.charges import load_charges_config  # noqa: E402
from trading.config.load import load_algo_file  # noqa: E402
from trading.rules import charges, exits, fills, gates, sizing, strikes  # noqa: E402
from trading.rules.market import IST  # noqa: E402
from trading.rules.signals import SignalState, evaluate  # noqa: E402

INDICES = ("NIFTY", "BANKNIFTY", "FINNIFTY", "SENSEX")
LEVELS = {"NIFTY": 24_000.0, "BANKNIFTY": 52_000.0, "FINNIFTY": 23_500.0, "SENSEX": 79_000.0}
TARGET_UPDATE_US = 200.0
TARGET_EXIT_US = 5.0


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def candles(level: float, count: int, seed: int) -> tuple[list[float], list[float], list[float]]:
    """A random walk of 1-minute index candles (0.05 % per minute, intraday-like)."""
    rng = random.Random(seed)
    highs, lows, closes = [], [], []
    price = level
    for _ in range(count):
        opened = price
        price *= math.exp(rng.gauss(0, 0.0005))
        wick = abs(rng.gauss(0, 0.0003)) * price
        highs.append(max(opened, price) + wick)
        lows.append(min(opened, price) - wick)
        closes.append(price)
    return highs, lows, closes


def median_ns(fn: Callable[[], int], repeat: int) -> float:
    """Median over ``repeat`` runs of ns per call; ``fn`` runs a batch and returns its size."""
    per_call = []
    for _ in range(repeat):
        started = time.perf_counter_ns()
        calls = fn()
        per_call.append((time.perf_counter_ns() - started) / calls)
    return statistics.median(per_call)


def batch(call: Callable[[], object], n: int) -> Callable[[], int]:
    """A run of ``n`` calls of ``call`` for :func:`median_ns`."""

    def run() -> int:
        for _ in range(n):
            call()
        return n

    return run


def bench_updates(cfg_signals: object, history: int, live: int, repeat: int) -> float:
    """ns per SignalState.update per index, over ``live`` candles after ``history``."""
    series = {name: candles(LEVELS[name], history + live, seed=i) for i, name in enumerate(INDICES)}

    def run() -> int:
        states = {name: SignalState(cfg_signals) for name in INDICES}
        for name, (h, lo, c) in series.items():
            state = states[name]
            for i in range(history):
                state.update(h[i], lo[i], c[i])
        # Only the live candles are timed: the question is the cost of one more candle.
        started = time.perf_counter_ns()
        for i in range(history, history + live):
            for name in INDICES:
                h, lo, c = series[name]
                states[name].update(h[i], lo[i], c[i])
        run.elapsed = time.perf_counter_ns() - started  # type: ignore[attr-defined]
        return live * len(INDICES)

    figures = []
    for _ in range(repeat):
        calls = run()
        figures.append(run.elapsed / calls)  # type: ignore[attr-defined]
    return statistics.median(figures)


def bench_full_recompute(cfg_signals: object, history: int, repeat: int) -> float:
    h, lo, c = candles(LEVELS["NIFTY"], history, seed=9)
    calls = 20

    def run() -> int:
        for _ in range(calls):
            evaluate(h, lo, c, cfg_signals)
        return calls

    return median_ns(run, repeat)


def decision_inputs(cfg: object) -> dict:
    """A NIFTY chain of 2 expiries x 81 strikes x CE/PE with liquid quotes, and a clean state."""
    today = date(2026, 11, 23)
    now = datetime.combine(today, dtime(11, 0), IST)
    contracts, quotes = [], {}
    sid = 40_000
    for expiry in (today + timedelta(days=1), today + timedelta(days=8)):
        for k in range(81):
            strike = Decimal(22_000 + 50 * k)
            for kind in ("CE", "PE"):
                sid += 1
                contract = strikes.OptionContract(
                    exchange_segment="NSE_FNO",
                    security_id=sid,
                    symbol=f"NIFTY-{expiry:%b%Y}-{strike}-{kind}",
                    underlying="NIFTY",
                    expiry=expiry,
                    strike=strike,
                    option_type=kind,
                    lot_size=65,
                    tick_size=Decimal("0.05"),
                )
                contracts.append(contract)
                quotes[contract.key] = strikes.OptionQuote(
                    ltp=120.0, bid=119.9, ask=120.1, oi=150_000, age_seconds=0.3
                )
    state = gates.RiskState(
        trading_enabled=True,
        kill_switch=False,
        feed_state="healthy",
        index_tick_age=0.4,
        capital=Decimal(100_000),
        realized_pnl_today=Decimal(-500),
        open_pnl=Decimal(120),
        entries_today={"NIFTY": 1, "SENSEX": 1},
        open_positions=(
            gates.OpenPosition("SENSEX", "bearish", "BSE_FNO:1", now - timedelta(minutes=4)),
        ),
        closed_today=(
            gates.ClosedTrade("NIFTY", "bullish", now - timedelta(minutes=30), Decimal(400)),
        ),
    )
    return {"now": now, "contracts": contracts, "quotes": quotes, "state": state, "today": today}


def bench_fills(repeat: int) -> dict[str, float]:
    """ns per call of the fill model's steps (module doc, item 4)."""
    tick = Decimal("0.05")
    now = datetime(2026, 11, 23, 10, 0, tzinfo=IST)
    # A full packet's depth as the feed hands it: float32 prices widened to float.
    rows = [
        (130 * (i + 1), 195 * (i + 1), 2, 3, 120.0 - 0.05 * i + 3e-6, 120.1 + 0.05 * i - 2e-6)
        for i in range(5)
    ]
    book = fills.Book.from_depth(rows, ltp=120.05, at=now, age_seconds=0.2, tick=tick)
    empty = fills.Book((), (), Decimal("119.80"), now, 0.2)  # slipped: 120.10, under the limit
    stale = fills.Book(book.bids, book.asks, book.ltp, now, 5.0)
    paper = fills.FillRules(max_age_seconds=2.0, latency_ms=150, slippage_bps=25)
    placed = now.replace(second=0) - timedelta(seconds=1)

    def order(limit: str, incoming: bool) -> fills.LimitOrder:
        return fills.LimitOrder(fills.Side.BUY, Decimal(limit), 650, 65, tick, incoming, placed)

    walk = order("120.20", True)
    crossed = order("120.15", False)
    open_ = order("119.00", False)
    taken = fills.Taken(asks={Decimal("120.10"): 65})
    walked = fills.match(walk, book, taken)
    assert [f.quantity for f in walked.fills] == [130, 390, 130], walked
    assert fills.match(open_, book).reason == fills.NoFill.NOT_CROSSED
    assert fills.match(walk, stale, rules=paper).reason == fills.NoFill.STALE
    assert fills.match(walk, empty, rules=paper).quantity == 650
    steps = {
        "book from 5 depth rows": lambda: fills.Book.from_depth(
            rows, ltp=120.05, at=now, age_seconds=0.2, tick=tick
        ),
        "incoming, walks 3 levels": lambda: fills.match(walk, book, taken),
        "resting, crossed": lambda: fills.match(crossed, book),
        "resting, not crossed": lambda: fills.match(open_, book),
        "paper rules, stale": lambda: fills.match(walk, stale, rules=paper),
        "paper rules, no depth": lambda: fills.match(walk, empty, rules=paper),
        "order (LimitOrder)": lambda: order("120.20", True),
        "mpp_limit": lambda: fills.mpp_limit(fills.Side.BUY, book, tick, Decimal("0.1")),
    }
    return {name: median_ns(batch(call, 5000), repeat) for name, call in steps.items()}


def exit_stream(
    cfg_exits: object, contracts: int, ticks: int, seed: int
) -> tuple[list, list[tuple[int, exits.Tick, datetime]]]:
    """Positions and a tick stream for item 5.

    Each contract's premium walks from a level between 80 and 300 in steps of 0..2 ticks of
    0.05. Its four positions: one entered at the level 20 s before the stream starts at 11:00
    on a Monday (new highs and lows are frequent), and three held for ten minutes whose last
    new high was 30 s ago, entered at the level x 1.07 (6.5 % in loss: time in loss
    accumulates on every tick), x 0.85 (17.6 % up: trailing armed) and x 0.97. The stream is
    round-robin over the contracts at 20,000 ticks a second of market time (what
    bench/exit_engine.py feeds).
    """
    rng = random.Random(seed)
    start = datetime(2026, 11, 23, 11, 0, tzinfo=IST)
    levels = [Decimal(rng.randrange(1600, 6000)) * Decimal("0.05") for _ in range(contracts)]
    positions = []
    for level in levels:
        mine = []
        for factor in ("1.00", "1.07", "0.85", "0.97"):
            entry = (level * Decimal(factor)).quantize(Decimal("0.05"))
            fresh = factor == "1.00"
            plan = exits.ExitPlan.build(
                entry_price=entry,
                quantity=65,
                entry_at=start - timedelta(seconds=20 if fresh else 600),
                direction="bullish" if len(mine) % 2 == 0 else "bearish",
                expiry=date(2026, 11, 26),
                underlying_entry=Decimal("24000"),
                charges_per_unit=Decimal("0.95"),
                config=cfg_exits,
            )
            if fresh:
                state = plan.open_state()
            else:
                # Held ten minutes; its last new high 30 s ago (at 2 % over the level now).
                state = plan.restore_state(
                    peak=max(entry, level * Decimal("1.02")),
                    trough=min(entry, level),
                    stop=None,
                    stop_rule="",
                    seconds_in_loss=0.0,
                    in_loss_at=None,
                    high_at=start - timedelta(seconds=30),
                )
            mine.append([plan, state])
        positions.append(mine)
    stream = []
    step = Decimal("0.05")
    for i in range(ticks):
        contract = i % contracts
        levels[contract] += step * rng.choice((-2, -1, -1, 0, 0, 0, 1, 1, 2))
        now = start + timedelta(microseconds=50 * i)
        stream.append((contract, exits.Tick(levels[contract], now), now))
    return positions, stream


def bench_exits(cfg_exits: object, repeat: int, profile: bool) -> dict[str, float | int | str]:
    """ns per position per tick of exits.evaluate (module doc, item 5)."""
    contracts, per_contract, ticks = 500, 4, 100_000  # exit_stream's four entries a contract
    risk = exits.DayRisk(kill_switch=False, day_pnl=Decimal("-1250.00"), loss_limit=Decimal(5000))
    underlying = Decimal("24010.55")
    figures: dict[str, float | int | str] = {}

    def stream_run() -> tuple[int, dict[str, int]]:
        positions, stream = exit_stream(cfg_exits, contracts, ticks, seed=13)
        evaluate = exits.evaluate
        calls = 0
        decided: dict[str, int] = {}
        started = time.perf_counter_ns()
        for contract, tick, now in stream:
            for held in positions[contract]:
                plan = held[0]
                if plan is None:
                    continue
                decision, held[1] = evaluate(plan, held[1], tick, underlying, now, risk)
                calls += 1
                if decision is not None:
                    held[0] = None  # claimed: the engine stops evaluating it
                    decided[decision.exit_type] = decided.get(decision.exit_type, 0) + 1
        stream_run.elapsed = time.perf_counter_ns() - started  # type: ignore[attr-defined]
        return calls, decided

    per_call = []
    for _ in range(repeat):
        calls, decided = stream_run()
        per_call.append(stream_run.elapsed / calls)  # type: ignore[attr-defined]
    assert calls > ticks * per_contract * 0.9, (calls, decided)
    figures["stream"] = statistics.median(per_call)
    figures["stream calls"] = calls
    figures["stream exits"] = ", ".join(f"{k} {v}" for k, v in sorted(decided.items())) or "none"

    # Each path alone, on one position (entry 100.00, the config's defaults).
    t0 = datetime(2026, 11, 23, 10, 0, tzinfo=IST)
    facts = {
        "entry_price": Decimal("100.00"),
        "quantity": 65,
        "entry_at": t0,
        "direction": "bullish",
        "expiry": date(2026, 11, 26),
        "underlying_entry": Decimal("24000"),
        "charges_per_unit": Decimal("0.95"),
        "config": cfg_exits,
    }
    plan = exits.ExitPlan.build(**facts)
    now = t0 + timedelta(seconds=30)
    flat = exits.evaluate(
        plan, plan.open_state(), exits.Tick(Decimal("99.00"), now), None, now, risk
    )
    flat = exits.evaluate(plan, flat.state, exits.Tick(Decimal("102.00"), now), None, now, risk)
    quiet = exits.Tick(Decimal("100.50"), now)
    assert exits.evaluate(plan, flat.state, quiet, underlying, now, risk).state is flat.state
    high = exits.Tick(Decimal("118.00"), now)
    loss = exits.Tick(Decimal("93.00"), now)
    in_loss = exits.evaluate(plan, flat.state, loss, None, now, risk).state
    later = now + timedelta(seconds=1)
    armed = exits.evaluate(plan, flat.state, high, None, now, risk).state
    stop_hit = exits.Tick(Decimal("106.00"), later)
    assert exits.evaluate(plan, armed, stop_hit, None, later, risk).decision is not None
    n = 20_000
    paths = {
        "quiet tick (nothing moves)": lambda: exits.evaluate(
            plan, flat.state, quiet, underlying, now, risk
        ),
        "new high (stop raised)": lambda: exits.evaluate(
            plan, flat.state, high, underlying, now, risk
        ),
        "in loss (time accumulates)": lambda: exits.evaluate(
            plan, in_loss, loss, underlying, later, risk
        ),
        "sweep without a tick": lambda: exits.evaluate(plan, flat.state, None, None, now, risk),
        "a decision (trailing stop)": lambda: exits.evaluate(
            plan, armed, stop_hit, underlying, later, risk
        ),
        "Tick, once per contract tick": lambda: exits.Tick(Decimal("100.50"), now),
    }
    for name, call in paths.items():
        figures[name] = median_ns(batch(call, n), repeat)

    figures["plan, once per position"] = median_ns(
        batch(lambda: exits.ExitPlan.build(**facts), n // 10), repeat
    )

    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        stream_run()
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(8)
        figures["profile"] = out.getvalue()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=2000, help="history before timing")
    parser.add_argument("--live", type=int, default=375, help="timed candles (a session)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="cProfile the exit-rule stream")
    args = parser.parse_args()

    cfg = load_algo_file(ROOT / "config" / "algo.yml")
    table = load_charges_config(ROOT / "config" / "charges.yml")
    grail = load_algo_file(
        ROOT / "config" / "algo.yml", overrides={"signals": {"strategy": "holy_grail"}}
    )

    print(
        f"machine: {os.cpu_count()} cores, {cpu_model()}, "
        f"Python {platform.python_version()}"
    )
    print(f"history {args.candles} candles, timed {args.live} candles x {len(INDICES)} indices")
    print()

    st = bench_updates(cfg.signals, args.candles, args.live, args.repeat)
    hg = bench_updates(grail.signals, args.candles, args.live, args.repeat)
    day = args.candles + args.live
    full_st = bench_full_recompute(cfg.signals, day, args.repeat)
    full_hg = bench_full_recompute(grail.signals, day, args.repeat)
    print("indicator update per new candle (per index)")
    print(f"  supertrend + ADX (default)    median {st / 1000:8.2f} us")
    print(f"  holy grail composite          median {hg / 1000:8.2f} us")
    print(f"  4 indices, one candle close   median {4 * st / 1000:8.2f} us (default strategy)")
    print(f"full recomputation over {day} candles (evaluate)")
    print(f"  supertrend + ADX              median {full_st / 1e6:8.2f} ms")
    print(f"  holy grail composite          median {full_hg / 1e6:8.2f} ms")
    print()

    inputs = decision_inputs(cfg)
    nifty = cfg.index("NIFTY")
    n = 2000

    def gate_run() -> int:
        for _ in range(n):
            verdict = gates.check_entry(nifty, "bullish", inputs["now"], inputs["state"], cfg)
        assert verdict.allowed, verdict
        return n

    def strike_run() -> int:
        for _ in range(n // 10):
            choice = strikes.choose_strike(
                "bullish",
                24_013.4,
                inputs["now"],
                inputs["contracts"],
                inputs["quotes"],
                nifty,
                cfg.strikes,
                cfg.feed,
            )
        assert choice.ok, choice
        return n // 10

    def sizing_run() -> int:
        for _ in range(n):
            size = sizing.size_entry(
                Decimal("120.10"),
                65,
                Decimal("100000"),
                cfg.risk.sizing,
                cfg.exits.stop_loss.sl_pct,
                1800,
            )
        assert size.ok, size
        return n

    def charges_run() -> int:
        for _ in range(n):
            charges.order_charges("NSE", "SELL", 130, Decimal("132.45"), inputs["today"], table)
        return n

    def round_trip_run() -> int:
        for _ in range(n):
            total = charges.round_trip(
                "NSE", 65, Decimal(100), Decimal(110), inputs["today"], table
            )
        assert Decimal(60) < total.total < Decimal(70), total
        return n

    g = median_ns(gate_run, args.repeat)
    s = median_ns(strike_run, args.repeat)
    z = median_ns(sizing_run, args.repeat)
    c = median_ns(charges_run, args.repeat)
    r = median_ns(round_trip_run, args.repeat)
    print(f"decision steps per call ({len(inputs['contracts'])}-contract NIFTY chain)")
    print(f"  entry gates (10, all pass)    median {g / 1000:8.2f} us")
    print(f"  strike choice                 median {s / 1000:8.2f} us")
    print(f"  sizing                        median {z / 1000:8.2f} us")
    print(f"  charges, one order            median {c / 1000:8.2f} us")
    print(f"  charges, round trip           median {r / 1000:8.2f} us")
    print()

    costs = bench_fills(args.repeat)
    print("fill model per call (fills)")
    for name, ns in costs.items():
        print(f"  {name:<29} median {ns / 1000:8.2f} us")
    print()

    exit_figures = bench_exits(cfg.exits, args.repeat, args.profile)
    print("exit rules per position per tick (exits.evaluate)")
    print(
        f"  {'stream, 2,000 positions':<29} median {exit_figures['stream'] / 1000:8.2f} us"
        f" ({exit_figures['stream calls']:,} evaluations; exits: {exit_figures['stream exits']})"
    )
    for name, ns in exit_figures.items():
        if isinstance(ns, float) and name != "stream":
            print(f"  {name:<29} median {ns / 1000:8.2f} us")
    if "profile" in exit_figures:
        print(exit_figures["profile"])
    print()

    met = "MET" if st / 1000 < TARGET_UPDATE_US else "NOT MET"
    print("results")
    print(
        f"  update per index per candle   {st / 1000:.2f} us (target < {TARGET_UPDATE_US:.0f} us)"
        f"  {met}"
    )
    print(f"  incremental vs full recompute {full_st / st:,.0f}x less work per candle")
    decision = st + g + s + z + 2 * c
    print(f"  one decision, pure rules      {decision / 1000:.2f} us", end="")
    print(" (update + gates + strike + sizing + 2 orders' charges)")
    tick_cost = costs["book from 5 depth rows"] + costs["order (LimitOrder)"]
    tick_cost += costs["incoming, walks 3 levels"]
    print(f"  one paper fill, pure model    {tick_cost / 1000:.2f} us", end="")
    print(" (book from the tick + order + a 3-level walk)")
    exit_us = exit_figures["stream"] / 1000
    met = "MET" if exit_us < TARGET_EXIT_US else "NOT MET"
    print(
        f"  exit rules per position/tick  {exit_us:.2f} us (target < {TARGET_EXIT_US:.0f} us)"
        f"  {met}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
