"""Feed-client throughput over loopback: our FeedClient vs a bare websocket-client loop.

    .venv/bin/python bench/feed_client.py [--mode ticker] [--instruments 50] [--seconds 5]
                                          [--runs 3]

The simulator runs in its own process (``multiprocessing``) with ``SimConfig(full_speed=True)``:
every feed connection streams pre-encoded packets for its subscriptions as fast as the socket
takes them, one packet per WebSocket frame. Against the same server, alternately:

* bare: ``websocket.create_connection`` + the subscribe messages + a loop of ``ws.recv()``
  that only counts frames (no decoding, no hand-off): the ceiling for a websocket-client
  receiver in one Python thread.
* ours: ``FeedClient`` (one connection). Its socket thread reads the socket 64 KiB at a time,
  splits frames itself (``ws_support.split_frames``; websocket-client does the handshake, the
  sends and the pongs), decodes every frame with ``decode_frame`` (FeedStats counters, receive
  time) and hands each frame's packets to the dispatcher thread, where a callback counts them.
  Reported: packets received and decoded (``stats().packets``), and packets that reached the
  callback (short of the first when the drop-oldest buffer discarded frames: the dispatcher
  thread competes for the GIL and, on 2 cores, for a CPU with the socket thread and the
  simulator process).

Each run measures ``--seconds`` after a one-second warm-up; the figure is the best of
``--runs`` (the least disturbed by other processes). Target: ours >= 80 % of the bare loop.
Nothing asserts on timing; it prints. Measure on a quiet machine (``uptime`` load < 1.5).
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import os
import platform
import time
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as EventType

import websocket

from trading.dhan.feed import FeedClient, feed_url
from trading.dhan.feed_codec import FeedMode, Packet, subscribe_messages
from trading.dhan.sim.server import SimConfig, Simulator

TARGET = 0.80
WARMUP = 1.0


def serve(conn: Connection, stop: EventType, instruments: int) -> None:
    """The simulator process: start, send the URLs and instrument keys, wait for ``stop``."""
    sim = Simulator(SimConfig(seed=0, speed=60.0, full_speed=True)).start()
    keys = [
        f"{spec.exchange_segment}:{sid}"
        for sid, spec in sim.market.contracts.items()
        if spec.exchange_segment == "NSE_FNO"
    ][:instruments]
    conn.send((sim.ws_url, sim.client_id, sim.token, keys))
    stop.wait()
    sim.stop()


def bare_loop(
    url: str, client_id: str, token: str, keys: list[str], mode: str, secs: float
) -> float:
    """Frames/s counted by a plain recv() loop."""
    ws = websocket.create_connection(feed_url(url, token, client_id), timeout=10)
    try:
        for message in subscribe_messages(keys, mode):
            ws.send(message)
        recv = ws.recv
        end_warmup = time.perf_counter() + WARMUP
        while time.perf_counter() < end_warmup:
            recv()
        frames = 0
        start = time.perf_counter()
        deadline = start + secs
        # Check the clock every 256 frames: a perf_counter call per frame would tax this loop.
        while True:
            for _ in range(256):
                recv()
            frames += 256
            now = time.perf_counter()
            if now >= deadline:
                return frames / (now - start)
    finally:
        ws.close(timeout=1)


def ours(
    url: str, client_id: str, token: str, keys: list[str], mode: str, secs: float
) -> tuple[float, float, int]:
    """(decoded packets/s, delivered packets/s, dropped frames) for one FeedClient."""
    delivered = 0

    def count(packets: list[Packet]) -> None:
        nonlocal delivered
        delivered += len(packets)

    client = FeedClient(
        url, client_id, lambda: token, count, market_open=lambda: True, heartbeat_interval=3600
    )
    client.subscribe(keys, mode)
    client.start()
    try:
        time.sleep(WARMUP)
        before = client.stats()
        delivered_before = delivered
        start = time.perf_counter()
        time.sleep(secs)
        after = client.stats()
        elapsed = time.perf_counter() - start
        delivered_after = delivered
    finally:
        client.stop(timeout=10)
    if after.reconnects:
        raise RuntimeError(f"the feed client reconnected during the run: {after.shards}")
    return (
        (after.packets - before.packets) / elapsed,
        (delivered_after - delivered_before) / elapsed,
        after.dropped_frames - before.dropped_frames,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=[m.name.lower() for m in FeedMode], default="ticker")
    parser.add_argument("--instruments", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    print(
        f"python {platform.python_version()} ({platform.python_implementation()}), "
        f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}, websocket-client "
        f"{websocket.__version__}"
    )
    print(
        f"mode {args.mode}, {args.instruments} instruments, one packet per frame, "
        f"{args.seconds:.0f} s per run, best of {args.runs}"
    )
    parent, child = mp.Pipe()
    stop = mp.Event()
    server = mp.Process(target=serve, args=(child, stop, args.instruments), daemon=True)
    server.start()
    try:
        url, client_id, token, keys = parent.recv()
        bare: list[float] = []
        decoded: list[float] = []
        delivered: list[float] = []
        for run in range(args.runs):
            # Alternate, so a disturbance of the machine hits both sides alike.
            bare.append(bare_loop(url, client_id, token, keys, args.mode, args.seconds))
            rate, got, dropped = ours(url, client_id, token, keys, args.mode, args.seconds)
            decoded.append(rate)
            delivered.append(got)
            print(
                f"run {run + 1}: bare {bare[-1]:,.0f} frames/s, ours {rate:,.0f} packets/s "
                f"decoded, {got:,.0f}/s delivered, {dropped} frames dropped"
            )
    finally:
        stop.set()
        server.join(10)
        if server.is_alive():
            server.kill()
    best_bare, best_ours, best_delivered = max(bare), max(decoded), max(delivered)
    ratio = best_ours / best_bare
    print(f"bare websocket-client loop: {best_bare:,.0f} frames/s (best)")
    print(
        f"our FeedClient: {best_ours:,.0f} ticks/s received and decoded (best), "
        f"{best_delivered:,.0f}/s delivered to the callback"
    )
    print(f"ratio: {ratio:.0%} (target >= {TARGET:.0%}): {'met' if ratio >= TARGET else 'NOT met'}")


if __name__ == "__main__":
    # Only warnings and errors (a reconnect during a run would show here).
    logging.basicConfig(level=logging.WARNING)
    main()
