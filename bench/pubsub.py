"""Redis pub/sub reader and RESP writer: ours against redis-py with the hiredis parser.

    .venv/bin/python bench/pubsub.py [--messages 300000] [--channels 100] [--rate 20000]
                                     [--latency-seconds 10] [--records 100000] [--repeat 3]

Two comparisons on one throwaway ``redis-server`` (started here, no persistence, no limit on a
subscriber's output buffer so a backlog is kept, not cut):

* reader: a consumer process subscribed to ``--channels`` channels, fed 151-byte payloads
  (the size of a ticker record, ``TickRecord.to_bytes``) whose first 8 bytes are the publish
  time. The contenders: ours (``pubsub_reader.PubSubListener``: a thread reading raw RESP,
  a whole chunk of messages handed to the handler at once) and redis-py's own ``PubSub``
  with hiredis, both ways it offers a blocking consumer (``listen()`` and a
  ``get_message(timeout=1)`` loop). Each consumer does the same work per message: count it,
  read its publish time.

  - throughput: the consumer is frozen (SIGSTOP), ``--messages`` are published (Redis keeps
    them in the subscriber's output buffer), then it is let go (SIGCONT) and times its first
    to its last message. Messages per second delivered to the consumer, the publisher and
    Redis idle meanwhile, so the reader's own cost is what is measured.
  - wake-up latency: the publisher sends ``--rate`` messages/s in 1 ms batches, each stamped
    just before it is sent; for every message, the consumer's time when its code got it
    minus that stamp. p50 / p99 / max.

* writer: what ``RedisTickStore.publish`` does, SET + PUBLISH of each record on its key, for
  ``--records`` full-mode records (with depth, 5,000 keys) per round, in calls of 2,000 records
  (the hub at full load) and of 50 (the hub at 20,000 ticks/s). Each contender encodes the
  records (``to_bytes``) itself. Ours: the hand-written EVALSHA batch writer
  (``redis_client.ScriptBatchWriter``). redis-py with hiredis: a pipeline of SET + PUBLISH per
  record (``transaction=False``), and ``evalsha`` of the very same Lua script (the same work in
  Redis; only the client differs). Records per second.

Every figure is the best of ``--repeat`` interleaved rounds, median in brackets. Nothing
asserts; it prints. Measure on a quiet machine (``uptime`` load < 1.5).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import signal
import statistics
import struct
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PAYLOAD_SIZE = 151  # a ticker-only TickRecord of NSE_FNO:55796
STAMP = struct.Struct("<d")
PUBLISH_LUA = """
for i = 1, #KEYS do redis.call('PUBLISH', KEYS[i], ARGV[i]) end
return #KEYS
"""
READERS = ("ours", "redis-py listen()", "redis-py get_message()")


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def channel_names(count: int) -> list[bytes]:
    return [b"bench:tick:NSE_FNO:%d" % (50000 + i) for i in range(count)]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


# -- the consumer process ----------------------------------------------------------------------


def consume(conn: Connection, reader: str, url: str, channels: list[bytes], total: int) -> None:
    """Subscribe with ``reader``, say ready, then collect until ``total`` messages (or a stop
    message arrives on the pipe) and send back (first, last, latencies, parser name)."""
    import redis

    count = 0
    first = last = 0.0
    cpu = [0.0, 0.0]  # this process's CPU time at the first and at the last message
    latencies: list[float] = []
    done = threading.Event()
    unpack = STAMP.unpack_from

    def handle_chunk(payloads: list[bytes]) -> None:
        # Ours hands over a chunk at once: one wake-up for all of them.
        nonlocal count, first, last
        now = time.time()
        if not count:
            first = now
            cpu[0] = time.process_time()
        for payload in payloads:
            latencies.append(now - unpack(payload)[0])
        count += len(payloads)
        last = now
        cpu[1] = time.process_time()
        if count >= total:
            done.set()

    def handle_one(payload: bytes) -> None:
        nonlocal count, first, last
        now = time.time()
        if not count:
            first = now
            cpu[0] = time.process_time()
        latencies.append(now - unpack(payload)[0])
        count += 1
        last = now
        cpu[1] = time.process_time()
        if count >= total:
            done.set()

    client = redis.Redis.from_url(url)
    parser = "-"
    if reader == "ours":
        from workers.realtime.pubsub_reader import PubSubListener

        class Handler:
            def _on_messages(self, messages: list[tuple[bytes, bytes, bool]]) -> None:
                handle_chunk([payload for _, payload, _ in messages])

            def _on_subscribed(self, channels: list[bytes], patterns: list[bytes]) -> None:
                return None

        listener = PubSubListener(client, Handler(), "bench-reader")
        listener.subscribe(channels)
        if not listener.wait_subscribed(channels, 10):
            raise RuntimeError("subscription not confirmed")
        parser = "hand-written RESP2"
        conn.send("ready")
        while not done.wait(0.1):
            if conn.poll():
                break
        listener.close()
    else:
        pubsub = client.pubsub()
        pubsub.subscribe(*channels)
        confirmed = 0
        while confirmed < len(channels):
            message = pubsub.get_message(timeout=10)
            if message is None:
                raise RuntimeError("subscription not confirmed")
            confirmed += message["type"] == "subscribe"
        parser = type(pubsub.connection._parser).__name__

        def run() -> None:
            if reader == "redis-py listen()":
                for message in pubsub.listen():
                    if message["type"] == "message":
                        handle_one(message["data"])
                        if done.is_set():
                            return
            else:
                get = pubsub.get_message
                while not done.is_set():
                    message = get(timeout=1.0)
                    if message is not None and message["type"] == "message":
                        handle_one(message["data"])

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        conn.send("ready")
        while not done.wait(0.1):
            if conn.poll():
                break
    conn.send((count, first, last, cpu[1] - cpu[0], latencies, parser))


# -- the publisher ------------------------------------------------------------------------------


class Publisher:
    def __init__(self, client: object, channels: list[bytes]) -> None:
        from workers.realtime.redis_client import ScriptBatchWriter

        self.writer = ScriptBatchWriter(client, PUBLISH_LUA)  # type: ignore[arg-type]
        self.channels = channels
        self.frags = [b"$%d\r\n%b\r\n" % (len(c), c) for c in channels]
        self.filler = b"x" * (PAYLOAD_SIZE - STAMP.size)
        self.next = 0

    def batch(self, count: int) -> tuple[int, bytes]:
        """``count`` messages round-robin over the channels, stamped now."""
        payload = STAMP.pack(time.time()) + self.filler
        value = b"$%d\r\n%b\r\n" % (len(payload), payload)
        n = len(self.frags)
        keys = [self.frags[(self.next + i) % n] for i in range(count)]
        self.next = (self.next + count) % n
        return count, b"".join(keys) + value * count

    def publish(self, count: int, per_call: int = 2000) -> None:
        while count > 0:
            step = min(per_call, count)
            self.writer.run([self.batch(step)])
            count -= step


def start_consumer(
    reader: str, url: str, channels: list[bytes], total: int
) -> tuple[mp.Process, Connection]:
    parent, child = mp.Pipe()
    proc = mp.Process(target=consume, args=(child, reader, url, channels, total), daemon=True)
    proc.start()
    if not parent.poll(30) or parent.recv() != "ready":
        raise RuntimeError(f"{reader}: consumer did not start")
    return proc, parent


def finish(proc: mp.Process, conn: Connection, timeout: float) -> tuple:
    if not conn.poll(timeout):
        conn.send("stop")
        if not conn.poll(10):
            proc.kill()
            raise RuntimeError("consumer did not answer")
    result = conn.recv()
    proc.join(10)
    return result


def drain_rate(
    reader: str, url: str, channels: list[bytes], messages: int
) -> tuple[float, float, str]:
    """Messages/s one consumer takes from a backlog of ``messages``, its CPU µs per message,
    and the parser it used."""
    import redis

    client = redis.Redis.from_url(url)
    proc, conn = start_consumer(reader, url, channels, messages)
    assert proc.pid is not None
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        Publisher(client, channels).publish(messages)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    count, first, last, cpu, _, parser = finish(proc, conn, 120)
    client.close()
    if count < messages:
        raise RuntimeError(f"{reader}: {count} of {messages} messages arrived")
    return (count - 1) / (last - first), cpu / (count - 1) * 1e6, parser


def wake_up(
    reader: str, url: str, channels: list[bytes], rate: float, seconds: float
) -> list[float]:
    """Latencies (s) of every message at ``rate`` messages/s in 1 ms batches."""
    import redis

    client = redis.Redis.from_url(url)
    total = int(rate * seconds)
    proc, conn = start_consumer(reader, url, channels, total)
    publisher = Publisher(client, channels)
    per_tick = max(1, round(rate / 1000))
    start = time.perf_counter()
    sent = 0
    while sent < total:
        due = start + sent / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        step = min(per_tick, total - sent)
        publisher.writer.run([publisher.batch(step)])
        sent += step
    _, _, _, _, latencies, _ = finish(proc, conn, 30)
    client.close()
    return latencies


# -- the writer ---------------------------------------------------------------------------------


def full_records(count: int) -> list:
    from workers.realtime.record import TickRecord, encode_depth

    depth = encode_depth((10 * i, 20 * i, i, i + 1, 100.0 - i, 100.5 + i) for i in range(1, 6))
    now = time.time()
    out = []
    for i in range(count):
        # key, seq, ltp, exchange and receive time, ltq, atp, volume, oi, open, high, low,
        # close, prev_close, bid, bid_qty, ask, ask_qty, depth
        fields = (75, 99.5, 1000 + i, 5000, 98.0, 101.0, 97.5, 0.0, 95.0, 99.0, 10, 101.5, 20)
        key = f"NSE_FNO:{50000 + i % 5000}"
        out.append(TickRecord(key, i + 1, 100.0 + i % 97, now, now, *fields, depth))
    return out


def writers(url: str, prefix: str) -> dict[str, Callable[[list], None]]:
    import redis

    from workers.realtime.redis_tick_store import _PUBLISH_LUA, RedisTickStore

    ours = RedisTickStore(url, prefix=prefix)
    client = redis.Redis.from_url(url)
    sha = client.script_load(_PUBLISH_LUA)
    key_prefix = prefix + "tick:"

    def pipeline(records: list) -> None:
        pipe = client.pipeline(transaction=False)
        for record in records:
            key = key_prefix + record.key
            value = record.to_bytes()
            pipe.set(key, value)
            pipe.publish(key, value)
        pipe.execute()

    def evalsha(records: list) -> None:
        # One call per 2,000 records like ours; several calls go through one pipeline.
        pipe = client.pipeline(transaction=False)
        for start in range(0, len(records), 2000):
            chunk = records[start : start + 2000]
            keys = [key_prefix + record.key for record in chunk]
            pipe.evalsha(sha, len(chunk), *keys, *[record.to_bytes() for record in chunk])
        pipe.execute()

    return {
        "ours (EVALSHA, raw RESP)": ours.publish,
        "redis-py pipeline SET+PUBLISH": pipeline,
        "redis-py evalsha (same Lua)": evalsha,
    }


def write_rate(
    publish: Callable[[list], None], records: list, per_call: int
) -> tuple[float, float]:
    """Records/s, and this process's CPU µs per record (Redis's own work is not in it)."""
    cpu = time.process_time()
    start = time.perf_counter()
    for i in range(0, len(records), per_call):
        publish(records[i : i + per_call])
    elapsed = time.perf_counter() - start
    return len(records) / elapsed, (time.process_time() - cpu) / len(records) * 1e6


# -- main ---------------------------------------------------------------------------------------


def line(name: str, values: list[float], unit: str, fmt: str = ",.0f") -> str:
    best = max(values) if unit.endswith("/s") else min(values)
    return (
        f"  {name:42} {best:>10{fmt}} {unit} ({statistics.median(values):{fmt}}) "
        f"runs: {', '.join(f'{v:{fmt}}' for v in values)}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=300_000)
    parser.add_argument("--channels", type=int, default=100)
    parser.add_argument("--rate", type=float, default=20_000)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-reader", action="store_true")
    parser.add_argument("--skip-writer", action="store_true")
    args = parser.parse_args()

    import hiredis
    import redis
    from redis.utils import HIREDIS_AVAILABLE

    from scripts import services

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, CPU {cpu_model()!r}, "
        f"Python {platform.python_version()}, redis-py {redis.__version__}, hiredis "
        f"{hiredis.__version__} (redis-py uses it: {HIREDIS_AVAILABLE}), load "
        f"{os.getloadavg()[0]:.2f}"
    )
    with services.redis() as url:
        admin = redis.Redis.from_url(url)
        print(f"redis-server {admin.info('server')['redis_version']}")
        # A frozen consumer's backlog must stay in Redis, not cost it its connection.
        admin.config_set("client-output-buffer-limit", "pubsub 0 0 0")
        channels = channel_names(args.channels)

        if not args.skip_reader:
            rates: dict[str, list[float]] = {r: [] for r in READERS}
            cpus: dict[str, list[float]] = {r: [] for r in READERS}
            p99s: dict[str, list[float]] = {r: [] for r in READERS}
            p50s: dict[str, list[float]] = {r: [] for r in READERS}
            maxes: dict[str, list[float]] = {r: [] for r in READERS}
            parsers: dict[str, str] = {}
            for _ in range(args.repeat):
                for reader in READERS:
                    rate, cpu, parsers[reader] = drain_rate(reader, url, channels, args.messages)
                    rates[reader].append(rate)
                    cpus[reader].append(cpu)
                    ms = [
                        x * 1000
                        for x in wake_up(reader, url, channels, args.rate, args.latency_seconds)
                    ]
                    p50s[reader].append(statistics.median(ms))
                    p99s[reader].append(percentile(ms, 0.99))
                    maxes[reader].append(max(ms))
            print(
                f"\nreader: {args.messages:,} messages of {PAYLOAD_SIZE} bytes on "
                f"{args.channels} channels, drained by one consumer process (best, median)"
            )
            for reader in READERS:
                print(line(f"{reader} [{parsers[reader]}]", rates[reader], "messages/s"))
                print(line("  consumer CPU per message", cpus[reader], "us", ".2f"))
            other = max(READERS[1:], key=lambda r: max(rates[r]))
            print(
                f"  ours / best redis-py ({other}): {max(rates['ours']) / max(rates[other]):.2f}x"
                f" best, {statistics.median(rates['ours']) / statistics.median(rates[other]):.2f}x"
                f" median; CPU per message {min(cpus[other]) / min(cpus['ours']):.2f}x less"
            )
            print(
                f"\nwake-up latency at {args.rate:,.0f} messages/s for "
                f"{args.latency_seconds:.0f} s, publish stamp -> consumer code (best, median)"
            )
            for reader in READERS:
                print(line(f"{reader} p50", p50s[reader], "ms", ".2f"))
                print(line(f"{reader} p99", p99s[reader], "ms", ".2f"))
                print(line(f"{reader} max", maxes[reader], "ms", ".2f"))

        if not args.skip_writer:
            records = full_records(args.records)
            for per_call in (2000, 50):
                contenders = writers(url, f"bench-w{per_call}:")
                results: dict[str, list[float]] = {name: [] for name in contenders}
                cpu: dict[str, list[float]] = {name: [] for name in contenders}
                for _ in range(args.repeat):
                    for name, publish in contenders.items():
                        rate, used = write_rate(publish, records, per_call)
                        results[name].append(rate)
                        cpu[name].append(used)
                print(
                    f"\nwriter: {args.records:,} full records (with depth, 5,000 keys) as "
                    f"SET + PUBLISH, {per_call:,} records per call (best, median)"
                )
                for name, values in results.items():
                    print(line(name, values, "records/s"))
                    print(line("  client CPU per record", cpu[name], "us", ".2f"))
                ours = "ours (EVALSHA, raw RESP)"
                for name in list(results)[1:]:
                    best = max(results[ours]) / max(results[name])
                    median = statistics.median(results[ours]) / statistics.median(results[name])
                    print(
                        f"  ours / {name}: {best:.2f}x best, {median:.2f}x median; client CPU "
                        f"per record {min(cpu[name]) / min(cpu[ours]):.2f}x less"
                    )
        admin.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
