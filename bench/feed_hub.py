"""Feed hub throughput, memory and tick-to-consumer latency, with Redis as the store.

    .venv/bin/python bench/feed_hub.py [--instruments 5000] [--seconds 60]
                                       [--latency-rate 20000] [--latency-seconds 20]
                                       [--consumer-keys 100] [--skip-bare] [--skip-latency]

Every role is its own OS process on this machine, talking over loopback:

* simulator: ``SimConfig(full_speed=True)`` streams pre-encoded packets for its
  subscriptions, one packet per WebSocket frame (5,000 option contracts in full mode, 162-byte
  packets with depth, as the hub subscribes them), unpaced for the throughput run and paced
  at ``--latency-rate`` packets/s for the latency run;
* Redis: a throwaway ``redis-server`` (no persistence), started here;
* hub: ``workers.feed_hub.FeedHub`` with ``RedisTickStore`` / ``RedisEventBus`` /
  ``RedisKeyValueStore``, exactly as ``run_feed_hub`` builds it, except that the wanted set
  is the fixed list of instruments instead of a database query;
* consumer (latency run): ``RedisTickStore.subscribe`` on ``--consumer-keys`` of the
  instruments; for every record its callback gets, ``time.time() - record.receive_time``
  (receive time = when the hub's socket thread read the frame). ``--consumer callback``
  (default): an ``on_ready`` callback on the store's listener thread, the way an exit engine
  reacts; ``--consumer wait``: a thread blocked in ``subscription.wait()`` (one thread hop
  more);
* bare loop (the comparison): websocket-client ``recv()`` + ``decode_frame`` + a redis-py
  pipeline of ``SET key packet`` executed every 1,000 ticks: the least work that still puts
  every tick in Redis, i.e. the limit of a Python receiver writing to Redis on this machine.

Reported: ticks/s received and merged by the hub over the window (and records written to
Redis: fewer when a key ticked twice within one write batch, which the store coalesces),
dropped frames, peak RSS (VmHWM) of the hub process at 10 s and at the end, the hub's own
share of the latency (for each write to Redis, its oldest tick's receive -> written: p50 /
p99), the consumer's latency p50 / p99 / max, and how fast a position opened or closed in the
database changes the subscriptions at the simulator. Nothing asserts; it prints. Measure on a
quiet machine (``uptime`` load < 1.5).
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_TICKS = 50_000
TARGET_P99_MS = 5.0
WARMUP = 3.0


def _django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "algo_scalper.settings")
    os.environ.setdefault("DJANGO_DEBUG", "true")
    os.environ["DATABASE_URL"] = "sqlite:///" + str(ROOT / "var" / "bench-hub.sqlite3")
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    import logging

    logging.getLogger("workers").setLevel(logging.WARNING)
    logging.getLogger("trading").setLevel(logging.WARNING)


def _cpu_times() -> list[int]:
    """The aggregate line of /proc/stat: user nice system idle iowait irq softirq steal ..."""
    return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]


def _steal_share(before: list[int], after: list[int]) -> float:
    """Share of CPU time the hypervisor took from this VM between two _cpu_times()."""
    delta = [b - a for a, b in zip(before, after, strict=False)]
    total = sum(delta[:8])
    return delta[7] / total if total else 0.0


def _rss() -> tuple[int, int]:
    """(current RSS, peak RSS) of this process in KiB, from /proc/self/status."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            name, amount = line.split(":")
            values[name] = int(amount.split()[0])
    return values["VmRSS"], values["VmHWM"]


def serve_sim(conn: Connection, stop: EventType, instruments: int, rate: float) -> None:
    from trading.dhan.sim.server import SimConfig, Simulator

    sim = Simulator(
        SimConfig(seed=0, speed=1.0, full_speed=True, full_speed_rate=rate, strikes_each_side=50)
    ).start()
    keys = [
        f"{spec.exchange_segment}:{sid}"
        for sid, spec in sim.market.contracts.items()
        if spec.exchange_segment in ("NSE_FNO", "BSE_FNO")
    ][:instruments]
    conn.send((sim.ws_url, sim.client_id, sim.token, keys))
    stop.wait()
    sim.stop()


def run_hub(
    conn: Connection,
    stop: EventType,
    feed: tuple,
    redis_url: str,
    seconds: float,
    mode: str,
    prefix: str,
) -> None:
    _django()
    import threading

    from trading.config.load import load_algo_file
    from trading.dhan.feed import FeedClient
    from trading.dhan.feed_codec import FeedMode
    from workers.feed_hub import FeedHub, HubConfig
    from workers.realtime.event_bus import RedisEventBus
    from workers.realtime.kv_store import RedisKeyValueStore
    from workers.realtime.redis_tick_store import RedisTickStore
    from workers.realtime.services import Realtime

    url, client_id, token, keys = feed
    wanted = dict.fromkeys(keys, FeedMode[mode.upper()])

    class BenchHub(FeedHub):
        def _desired(self) -> tuple[dict, frozenset]:
            return dict(wanted), frozenset(wanted)

    realtime = Realtime(
        ticks=RedisTickStore(redis_url, prefix=prefix),
        events=RedisEventBus(redis_url, prefix=prefix),
        kv=RedisKeyValueStore(redis_url, prefix=prefix),
        redis_url=redis_url,
    )

    def factory(on_packets, **hooks):  # noqa: ANN001, ANN202
        return FeedClient(
            url, client_id, lambda: token, on_packets, market_open=lambda: False, **hooks
        )

    write_lags: list[float] = []
    publish = realtime.ticks.publish

    def timed_publish(records):  # noqa: ANN001, ANN202
        publish(records)
        write_lags.append(time.time() - min(r.receive_time for r in records))

    realtime.ticks.publish = timed_publish
    hub = BenchHub(
        realtime,
        feed_factory=factory,
        config=HubConfig(
            seed_candles=False,
            market_open=lambda: False,
            log_interval=3600,
            market=load_algo_file(ROOT / "config" / "algo.yml").market,  # no database here
        ),
    )
    halt = threading.Event()
    thread = threading.Thread(target=hub.run, args=(halt,), daemon=True)
    thread.start()
    # Warm-up: until ticks flow, then WARMUP seconds more.
    while hub.counters.ticks == 0 and not stop.is_set():
        time.sleep(0.05)
    time.sleep(WARMUP)
    c = hub.counters
    t0, ticks0, pub0, batches0 = time.perf_counter(), c.ticks, c.published, c.publish_batches
    c.lag_sum, c.lag_n, c.lag_max = 0.0, 0, 0.0
    dropped0 = hub.feed.stats().dropped_packets
    samples = {}
    marks = sorted({10.0, seconds} if seconds > 10 else {seconds})
    for mark in marks:
        while time.perf_counter() - t0 < mark and not stop.is_set():
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
        rss, peak = _rss()
        samples[mark] = {
            "elapsed": elapsed,
            "ticks": (c.ticks - ticks0) / elapsed,
            "published": (c.published - pub0) / elapsed,
            "rss_kib": rss,
            "peak_kib": peak,
            "dropped_packets": hub.feed.stats().dropped_packets - dropped0,
            "pending": len(hub._pending),
            "batch": (c.published - pub0) / max(1, c.publish_batches - batches0),
            "lag_avg_ms": c.lag_sum / max(1, c.lag_n) * 1000,
            "lag_max_ms": c.lag_max * 1000,
            "write_p99_ms": sorted(write_lags)[int(len(write_lags) * 0.99)] * 1000
            if write_lags
            else 0.0,
            "write_p50_ms": statistics.median(write_lags) * 1000 if write_lags else 0.0,
        }
        write_lags.clear()
        c.lag_sum, c.lag_n, c.lag_max = 0.0, 0, 0.0
    conn.send(samples)
    stop.wait()
    halt.set()
    thread.join(10)


def run_bare(conn: Connection, feed: tuple, redis_url: str, seconds: float, mode: str) -> None:
    import redis
    import websocket

    from trading.dhan.feed import feed_url
    from trading.dhan.feed_codec import FeedMode, decode_frame, subscribe_messages

    url, client_id, token, keys = feed
    client = redis.Redis.from_url(redis_url)
    ws = websocket.create_connection(feed_url(url, token, client_id), timeout=10)
    for message in subscribe_messages(keys, FeedMode[mode.upper()]):
        ws.send(message)
    pipe = client.pipeline(transaction=False)
    pending = 0
    total = 0
    start = None
    from datetime import UTC, datetime

    while True:
        data = ws.recv()
        for packet in decode_frame(data, datetime.now(UTC)):
            key = packet.key if hasattr(packet, "ltp") else None
            if key is None:
                continue
            pipe.set(b"bare:" + key.encode(), data)
            pending += 1
        if pending >= 1000:
            pipe.execute()
            total += pending
            pending = 0
            if start is None and total > 20_000:
                start, base = time.perf_counter(), total
            if start is not None and time.perf_counter() - start >= seconds:
                break
    rate = (total - base) / (time.perf_counter() - start)
    ws.close()
    conn.send(rate)


def run_consumer(
    conn: Connection,
    ready: EventType,
    stop: EventType,
    redis_url: str,
    keys: list[str],
    prefix: str,
    style: str,
) -> None:
    from workers.realtime.redis_tick_store import RedisTickStore

    store = RedisTickStore(redis_url, prefix=prefix)
    latencies: list[float] = []
    measuring = [False]

    def on_ready(sub: object) -> None:
        got = sub.take()  # type: ignore[attr-defined]
        now = time.time()
        if measuring[0]:
            latencies.extend(now - record.receive_time for record in got.values())

    if style == "callback":
        subscription = store.subscribe(keys, on_ready=on_ready)
    else:
        subscription = store.subscribe(keys)
    ready.set()
    while not stop.is_set():
        if style == "callback":
            stop.wait(0.2)
        else:
            got = subscription.wait(0.2)
            now = time.time()
            if measuring[0]:
                latencies.extend(now - record.receive_time for record in got.values())
        if conn.poll():
            measuring[0] = conn.recv()
    conn.send(latencies)
    subscription.close()
    store.close()


def start_sim(instruments: int, rate: float) -> tuple[mp.Process, EventType, tuple]:
    parent, child = mp.Pipe()
    stop = mp.Event()
    proc = mp.Process(target=serve_sim, args=(child, stop, instruments, rate), daemon=True)
    proc.start()
    return proc, stop, parent.recv()


def throughput(args: argparse.Namespace, redis_url: str) -> dict:
    sim, sim_stop, feed = start_sim(args.instruments, 0.0)
    parent, child = mp.Pipe()
    stop = mp.Event()
    hub = mp.Process(
        target=run_hub,
        args=(child, stop, feed, redis_url, args.seconds, args.mode, "bench-tp:"),
    )
    hub.start()
    samples = parent.recv()
    stop.set()
    hub.join(15)
    bare = None
    if not args.skip_bare:
        parent, child = mp.Pipe()
        proc = mp.Process(
            target=run_bare, args=(child, feed, redis_url, min(args.seconds, 20), args.mode)
        )
        proc.start()
        bare = parent.recv()
        proc.join(10)
    sim_stop.set()
    sim.join(10)
    return {"samples": samples, "bare": bare, "instruments": len(feed[3])}


def latency(args: argparse.Namespace, redis_url: str) -> list[float]:
    sim, sim_stop, feed = start_sim(args.instruments, args.latency_rate)
    keys = feed[3][:: max(1, len(feed[3]) // args.consumer_keys)][: args.consumer_keys]
    c_parent, c_child = mp.Pipe()
    ready, c_stop = mp.Event(), mp.Event()
    consumer = mp.Process(
        target=run_consumer,
        args=(c_child, ready, c_stop, redis_url, keys, "bench-lat:", args.consumer),
    )
    consumer.start()
    ready.wait(30)
    h_parent, h_child = mp.Pipe()
    h_stop = mp.Event()
    hub = mp.Process(
        target=run_hub,
        args=(h_child, h_stop, feed, redis_url, args.latency_seconds, args.mode, "bench-lat:"),
    )
    hub.start()
    time.sleep(WARMUP + 2)
    c_parent.send(True)
    cpu_before = _cpu_times()
    samples = h_parent.recv()
    c_parent.send(False)
    samples["steal"] = _steal_share(cpu_before, _cpu_times())
    c_stop.set()
    latencies = c_parent.recv()
    consumer.join(10)
    h_stop.set()
    hub.join(15)
    sim_stop.set()
    sim.join(10)
    return latencies, samples


def run_subscription_latency(conn: Connection, rounds: int) -> None:
    """Position opened -> its contract subscribed at the simulator, and closed -> gone, with
    the hub's production refresh interval (0.5 s), on a fresh SQLite catalog."""
    _django()
    import threading

    from django.core.management import call_command

    from instruments.models import Derivative
    from trading.dhan.feed import FeedClient
    from trading.dhan.sim.server import SimConfig, Simulator
    from trading.models import PositionTracker
    from workers.feed_hub import FeedHub, HubConfig
    from workers.realtime.event_bus import MemoryEventBus
    from workers.realtime.kv_store import MemoryKeyValueStore
    from workers.realtime.services import Realtime
    from workers.realtime.tick_store import MemoryTickStore

    db = ROOT / "var" / "bench-hub.sqlite3"
    db.unlink(missing_ok=True)
    call_command("migrate", verbosity=0)
    sim = Simulator(SimConfig(seed=1, speed=1.0, strikes_each_side=10, weeklies=1)).start()
    call_command("import_instruments", url=sim.scrip_master_url, verbosity=0, stdout=io.StringIO())

    def factory(on_packets, **hooks):  # noqa: ANN001, ANN202
        return FeedClient(
            sim.ws_url,
            sim.client_id,
            lambda: sim.token,
            on_packets,
            market_open=lambda: True,
            **hooks,
        )

    realtime = Realtime(ticks=MemoryTickStore(), events=MemoryEventBus(), kv=MemoryKeyValueStore())
    hub = FeedHub(realtime, feed_factory=factory, config=HubConfig(seed_candles=False))
    stop = threading.Event()
    thread = threading.Thread(target=hub.run, args=(stop,), daemon=True)
    thread.start()

    def subscribed(key: str) -> bool:
        return any(key in subs for subs in sim.feed_subscriptions())

    opened: list[float] = []
    closed: list[float] = []
    options = list(Derivative.objects.filter(option_type="CE")[:rounds])
    time.sleep(1.0)
    for option in options:
        key = f"{option.exchange_segment}:{option.security_id}"
        t0 = time.perf_counter()
        position = PositionTracker.objects.create(
            derivative=option,
            exchange_segment=option.exchange_segment,
            security_id=option.security_id,
            status="active",
            quantity=option.lot_size,
        )
        while not subscribed(key):
            time.sleep(0.002)
        opened.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        PositionTracker.objects.filter(pk=position.pk).update(status="exited")
        while subscribed(key):
            time.sleep(0.002)
        closed.append(time.perf_counter() - t0)
    stop.set()
    thread.join(10)
    sim.stop()
    conn.send((opened, closed))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instruments", type=int, default=5000)
    parser.add_argument(
        "--mode",
        choices=("ticker", "quote", "full"),
        default="full",
        help="feed mode (full: what the hub uses for option contracts)",
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--latency-rate", type=float, default=20_000)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--consumer-keys", type=int, default=100)
    parser.add_argument(
        "--consumer",
        choices=("callback", "wait"),
        default="callback",
        help="callback: on_ready on the listener thread; wait: a thread blocked in wait()",
    )
    parser.add_argument("--skip-bare", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-subscriptions", action="store_true")
    parser.add_argument("--subscription-rounds", type=int, default=10)
    args = parser.parse_args()

    from scripts import services

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load {os.getloadavg()[0]:.2f}"
    )
    with services.redis() as redis_url:
        if not args.skip_throughput:
            result = throughput(args, redis_url)
            print(
                f"\nthroughput: simulator full speed -> hub -> Redis, {result['instruments']} "
                f"instruments in {args.mode} mode, {args.seconds:.0f} s after a "
                f"{WARMUP:.0f} s warm-up"
            )
            for s in result["samples"].values():
                print(
                    f"  at {s['elapsed']:5.1f} s: {s['ticks']:9,.0f} ticks/s merged, "
                    f"{s['published']:9,.0f} records/s written to Redis, RSS "
                    f"{s['rss_kib'] / 1024:6.1f} MiB (peak {s['peak_kib'] / 1024:6.1f} MiB), "
                    f"{s['dropped_packets']:,} packets dropped, {s['pending']} pending, "
                    f"{s['batch']:.0f} records per write, oldest tick waited "
                    f"{s['lag_avg_ms']:.1f} ms avg / {s['lag_max_ms']:.1f} ms max"
                )
            final = result["samples"][max(result["samples"])]
            verdict = "met" if final["ticks"] >= TARGET_TICKS else "NOT met"
            print(f"  target >= {TARGET_TICKS:,} ticks/s sustained: {verdict}")
            if result["bare"] is not None:
                print(
                    f"  bare loop (recv + decode + redis-py pipelined SET): {result['bare']:,.0f}"
                    f" ticks/s; hub / bare = {final['ticks'] / result['bare']:.2f}x"
                )
        if not args.skip_subscriptions:
            parent, child = mp.Pipe()
            proc = mp.Process(
                target=run_subscription_latency, args=(child, args.subscription_rounds)
            )
            proc.start()
            opened, closed = parent.recv()
            proc.join(15)
            print(
                f"\nsubscriptions follow the database ({len(opened)} positions, refresh every "
                f"0.5 s): opened -> subscribed at the simulator p50 "
                f"{statistics.median(opened) * 1000:.0f} ms, max {max(opened) * 1000:.0f} ms; "
                f"closed -> unsubscribed p50 {statistics.median(closed) * 1000:.0f} ms, max "
                f"{max(closed) * 1000:.0f} ms (target: within 1 s)"
            )
        if not args.skip_latency:
            lat, samples = latency(args, redis_url)
            steal = samples.pop("steal")
            final = samples[max(samples)]
            print(
                f"\nlatency: simulator paced at {args.latency_rate:,.0f} packets/s "
                f"({final['ticks']:,.0f} ticks/s reached the hub) -> hub -> Redis -> "
                f"consumer process on {args.consumer_keys} keys ({args.consumer})"
            )
            print(
                f"  hub: {final['batch']:.0f} records per write, oldest tick of a write waited "
                f"{final['lag_avg_ms']:.1f} ms avg / {final['lag_max_ms']:.1f} ms max, "
                f"p50 {final['write_p50_ms']:.1f} ms, p99 {final['write_p99_ms']:.1f} ms"
            )
            if lat:
                ms = sorted(x * 1000 for x in lat)
                p50 = statistics.median(ms)
                p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
                print(
                    f"  {len(ms):,} wake-ups: p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
                    f"max {ms[-1]:.2f} ms (target p99 < {TARGET_P99_MS} ms: "
                    f"{'met' if p99 < TARGET_P99_MS else 'NOT met'})"
                )
            else:
                print("  no wake-ups recorded")
            print(f"  CPU stolen by the hypervisor during the run: {steal:.0%} (noise)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
