"""Market-feed decode throughput: our codec vs the official dhanhq SDK's parser, same bytes.

    .venv/bin/python bench/feed_decode.py [--packets 100000] [--repeat 7]

A seeded stream of v2 packets (60% ticker, 30% quote, 10% full) is encoded once. Then:

* SDK: ``MarketFeed.process_data(frame)`` per frame, the function its receive loop calls on
  every WebSocket message (dispatch on byte 0, then ``process_ticker/quote/full``). The object
  is made with ``MarketFeed.__new__`` so no event loop, socket or credentials are involved.
  The SDK reads only the first packet of a frame, so it gets one packet per frame, which is
  also what Dhan's server sends in the logs we have (DhanHQ-py issue #90).
* ours: ``decode_frame(frame, receive_time, stats)`` on the very same frames, then on the same
  packets batched 20 per frame (the multi-packet case the SDK cannot decode).
* ours, eager: as above, then reading ``exchange_time`` of every tick and ``depth`` of every
  full tick, the work the SDK does up front (it formats LTT and builds depth dicts per
  packet) and our codec defers until a consumer asks.
* ticker-only streams, one packet per frame and 50 per frame, against the 1,000,000
  packets/s target.

Figures are the best of ``--repeat`` runs (least disturbed by other processes), one core,
garbage collector on. Targets: ours >= 8x the SDK on the mixed stream; >= 1,000,000
ticker packets/s. Nothing here asserts on timing; it prints.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from dhanhq.marketfeed import MarketFeed

from trading.dhan.feed_codec import (
    FeedStats,
    Tick,
    decode_frame,
    encode_full,
    encode_quote,
    encode_ticker,
)

SDK_TARGET_RATIO = 8.0
TICKER_TARGET = 1_000_000
BATCH = 20
TICKER_BATCH = 50
LTT_0915 = 1753434900  # 2025-07-25 09:15:00 on the IST wall clock (IST-shifted epoch)


def make_packets(count: int, mix: Sequence[tuple[str, float]], seed: int = 7) -> list[bytes]:
    """``count`` packets drawn from ``mix`` (kind, weight) with plausible option-chain values."""
    rng = random.Random(seed)
    kinds = [k for k, _ in mix]
    weights = [w for _, w in mix]
    packets = []
    for i in range(count):
        kind = rng.choices(kinds, weights)[0]
        sid = 40000 + rng.randrange(2000)
        ltp = round(rng.uniform(0.05, 900.0) / 0.05) * 0.05
        ltt = LTT_0915 + i // 50
        if kind == "ticker":
            packets.append(encode_ticker("NSE_FNO", sid, ltp, ltt))
            continue
        common = {
            "ltp": ltp,
            "ltt": ltt,
            "ltq": 75 * rng.randrange(1, 20),
            "atp": ltp * 0.99,
            "volume": rng.randrange(10**7),
            "total_sell_qty": rng.randrange(10**6),
            "total_buy_qty": rng.randrange(10**6),
            "open": ltp * 0.95,
            "close": 0.0,
            "high": ltp * 1.05,
            "low": ltp * 0.9,
        }
        if kind == "quote":
            packets.append(encode_quote("NSE_FNO", sid, **common))
        else:
            depth = [
                (
                    75 * (j + 1),
                    75 * (j + 2),
                    j + 1,
                    j + 2,
                    ltp - 0.05 * (j + 1),
                    ltp + 0.05 * (j + 1),
                )
                for j in range(5)
            ]
            oi = rng.randrange(10**7)
            packets.append(
                encode_full(
                    "NSE_FNO",
                    sid,
                    **common,
                    oi=oi,
                    oi_day_high=oi + 1000,
                    oi_day_low=max(0, oi - 1000),
                    depth=depth,
                )
            )
    return packets


def batched(packets: Sequence[bytes], size: int) -> list[bytes]:
    return [b"".join(packets[i : i + size]) for i in range(0, len(packets), size)]


def measure(
    rows: Sequence[tuple[str, Callable[[], None]]], packets: int, rounds: int
) -> dict[str, list[float]]:
    """Packets per second of every row, ``rounds`` times, rows interleaved within a round so
    that a burst of load from another process hits all of them alike."""
    rates: dict[str, list[float]] = {label: [] for label, _ in rows}
    for _, run in rows:
        run()  # warm-up: caches, allocator, the LTT lru_cache
    for _ in range(rounds):
        for label, run in rows:
            start = time.perf_counter()
            run()
            rates[label].append(packets / (time.perf_counter() - start))
    return rates


def sdk_run(sdk: MarketFeed, frames: Sequence[bytes]) -> Callable[[], None]:
    process = sdk.process_data

    def run() -> None:
        for frame in frames:
            process(frame)

    return run


def ours_run(frames: Sequence[bytes], eager: bool = False) -> Callable[[], None]:
    received = datetime.now(UTC)
    stats = FeedStats()

    def run() -> None:
        for frame in frames:
            packets = decode_frame(frame, received, stats)
            if eager:
                for packet in packets:
                    packet.exchange_time  # noqa: B018 - the point is to compute it
                    if packet.kind == 8:
                        packet.depth  # noqa: B018

    return run


def check_same_values(sdk: MarketFeed, packets: Sequence[bytes]) -> None:
    """Both parsers must read the same numbers from the same bytes, or the race is moot."""
    received = datetime.now(UTC)
    for packet in packets[:2000]:
        theirs = sdk.process_data(packet)
        [ours] = decode_frame(packet, received)
        assert isinstance(ours, Tick)
        assert theirs["security_id"] == ours.security_id
        assert theirs["LTP"] == f"{ours.ltp:.2f}"
        # The SDK renders LTT with timezone.utc, which shows the IST wall clock because LTT
        # is an IST-shifted epoch: it must match our Asia/Kolkata time.
        assert theirs["LTT"] == ours.exchange_time.strftime("%H:%M:%S")
        if ours.kind == 8:
            assert theirs["OI"] == ours.oi
            assert theirs["depth"][0]["bid_price"] == f"{ours.best_bid_price:.2f}"


def machine() -> str:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"nproc {os.cpu_count()}, CPU {model}, "
        f"Python {platform.python_version()} ({platform.python_implementation()})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    n, repeat = args.packets, args.repeat

    mixed = make_packets(n, [("ticker", 60), ("quote", 30), ("full", 10)])
    tickers = make_packets(n, [("ticker", 1)])
    sdk = MarketFeed.__new__(MarketFeed)  # no __init__: no event loop, no socket
    check_same_values(sdk, mixed)

    print(f"machine: {machine()}")
    print(f"stream: {n:,} packets, 60% ticker / 30% quote / 10% full; best of {repeat} rounds")
    rows = [
        ("SDK process_data, 1 packet/frame (mixed)", sdk_run(sdk, mixed)),
        ("ours decode_frame, 1 packet/frame (mixed)", ours_run(mixed)),
        ("ours + eager LTT/depth, 1 packet/frame (mixed)", ours_run(mixed, eager=True)),
        (f"ours decode_frame, {BATCH} packets/frame (mixed)", ours_run(batched(mixed, BATCH))),
        ("SDK process_data, 1 packet/frame (ticker only)", sdk_run(sdk, tickers)),
        ("ours decode_frame, 1 packet/frame (ticker only)", ours_run(tickers)),
        (
            f"ours decode_frame, {TICKER_BATCH} packets/frame (ticker only)",
            ours_run(batched(tickers, TICKER_BATCH)),
        ),
    ]
    rates = measure(rows, n, repeat)
    best = {label: max(values) for label, values in rates.items()}
    for label, values in rates.items():
        print(
            f"  {label:<56} {max(values):>11,.0f} pkt/s  (median {statistics.median(values):,.0f})"
        )

    labels = [label for label, _ in rows]
    sdk_mixed, sdk_ticker = best[labels[0]], best[labels[4]]
    print()
    print("  vs SDK, mixed stream (target >= 8x):")
    for label in labels[1:4]:
        ratio = best[label] / sdk_mixed
        median_ratio = statistics.median(rates[label]) / statistics.median(rates[labels[0]])
        verdict = "met" if ratio >= SDK_TARGET_RATIO else "NOT met"
        print(f"    {label:<54} {ratio:5.1f}x (medians {median_ratio:4.1f}x)  {verdict}")
    print("  ticker only (target >= 1,000,000 pkt/s):")
    for label in labels[5:7]:
        rate = best[label]
        verdict = "met" if rate >= TICKER_TARGET else "NOT met"
        print(f"    {label:<54} {rate:>11,.0f} pkt/s  {rate / sdk_ticker:5.1f}x SDK  {verdict}")


if __name__ == "__main__":
    main()
