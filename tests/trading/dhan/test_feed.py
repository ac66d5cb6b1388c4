"""Market-feed client: sharding and subscriptions (pure), then everything else against the real
simulator over loopback sockets: ticks, subscribe/unsubscribe while connected, reconnect with
resubscription after every injected fault, fatal disconnect codes, token rotation, a slow
consumer, and stop().

No timing assertions (a shared, noisy 2-core machine): every check waits for a condition with
a generous timeout, and the clients run with small backoff and stall settings.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import websocket

from tests.support.reconnect import FAST_RECONNECT
from tests.support.waiting import WAIT, wait_until
from trading.dhan.errors import AuthFailure, DhanError
from trading.dhan.feed import FeedClient, feed_url
from trading.dhan.feed_codec import (
    FeedMode,
    FullTick,
    Packet,
    PrevClose,
    QuoteTick,
    TickerTick,
    encode_ticker,
    subscribe_messages,
)
from trading.dhan.sim.server import Simulator


class Collector:
    """The on_packets callback: remembers what arrived, per instrument key."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.packets: list[Packet] = []
        self.threads: set[str] = set()

    def __call__(self, packets: list[Packet]) -> None:
        with self.lock:
            self.packets.extend(packets)
            self.threads.add(threading.current_thread().name)

    def count(self, key: str, kind: type | None = None) -> int:
        with self.lock:
            return sum(
                1 for p in self.packets if p.key == key and (kind is None or isinstance(p, kind))
            )

    def mark(self) -> int:
        with self.lock:
            return len(self.packets)

    def since(self, mark: int) -> list[Packet]:
        with self.lock:
            return self.packets[mark:]


def option_keys(sim: Simulator, n: int) -> list[str]:
    keys = [
        f"{spec.exchange_segment}:{sid}"
        for sid, spec in sim.market.contracts.items()
        if spec.exchange_segment == "NSE_FNO"
    ]
    assert len(keys) >= n
    return keys[:n]


class TokenBox:
    """A token provider whose answer the test changes (a rotated token)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return self.token


@pytest.fixture
def make_client(dhan_sim: Simulator) -> Iterator[Callable[..., tuple[FeedClient, Collector]]]:
    clients: list[FeedClient] = []

    def make(**kwargs: Any) -> tuple[FeedClient, Collector]:
        collector = Collector()
        kwargs.setdefault("policy", FAST_RECONNECT)
        kwargs.setdefault("market_open", lambda: True)
        kwargs.setdefault("poll_interval", 0.1)
        kwargs.setdefault("close_timeout", 1.0)
        token = kwargs.pop("token_provider", None) or TokenBox(dhan_sim.token)
        client = FeedClient(dhan_sim.ws_url, dhan_sim.client_id, token, collector, **kwargs)
        clients.append(client)
        return client, collector

    yield make
    for client in clients:
        client.stop(timeout=10)


def subscribed_keys(sim: Simulator) -> dict[str, FeedMode]:
    merged: dict[str, FeedMode] = {}
    for subs in sim.feed_subscriptions():
        merged.update(subs)
    return merged


def fresh_ticks(collector: Collector, mark: int, key: str) -> bool:
    return any(
        p.key == key and isinstance(p, TickerTick | QuoteTick | FullTick)
        for p in collector.since(mark)
    )


# ---------------------------------------------------------------------------------------------
# Pure: the URL and the sharding bookkeeping (no connection is opened before start()).


def _offline_client(**kwargs: Any) -> FeedClient:
    return FeedClient(
        "ws://127.0.0.1:9/feed", "1000000001", lambda: "tok", lambda p: None, **kwargs
    )


def test_the_url_carries_version_token_client_id_and_auth_type() -> None:
    url = feed_url("wss://api-feed.dhan.co", "a b&c", "1000000001")
    assert url == ("wss://api-feed.dhan.co?version=2&token=a+b%26c&clientId=1000000001&authType=2")


def test_instruments_fill_one_connection_before_opening_the_next() -> None:
    client = _offline_client(max_instruments_per_connection=3)
    client.subscribe([f"NSE_FNO:{i}" for i in range(1, 8)], "quote")
    shards = client.stats().shards
    assert [s.instruments for s in shards] == [3, 3, 1]
    client.subscribe(["NSE_FNO:100", ("IDX_I", 13)], FeedMode.TICKER)
    assert [s.instruments for s in client.stats().shards] == [3, 3, 3]
    assert client.subscriptions["IDX_I:13"] == FeedMode.TICKER


def test_subscribing_past_the_connection_limit_fails_before_changing_anything() -> None:
    client = _offline_client(max_connections=2, max_instruments_per_connection=3)
    client.subscribe([f"NSE_FNO:{i}" for i in range(1, 5)], "ticker")
    with pytest.raises(ValueError, match="2 connections x 3 instruments allow 6"):
        client.subscribe([f"NSE_FNO:{i}" for i in range(10, 13)], "ticker")
    assert len(client.subscriptions) == 4


def test_unsubscribing_frees_room_and_a_mode_change_stays_on_its_connection() -> None:
    client = _offline_client(max_instruments_per_connection=2)
    client.subscribe(["NSE_FNO:1", "NSE_FNO:2", "NSE_FNO:3"], "ticker")
    client.subscribe(["NSE_FNO:3"], "full")
    assert client.subscriptions["NSE_FNO:3"] == FeedMode.FULL
    assert [s.instruments for s in client.stats().shards] == [2, 1]
    client.unsubscribe(["NSE_FNO:1", "NSE_FNO:999"])
    client.subscribe(["NSE_FNO:4"], "quote")
    assert [s.instruments for s in client.stats().shards] == [2, 1]


def test_bad_keys_are_skipped_and_logged_and_bad_modes_refused(caplog) -> None:
    # A bad key is skipped, never the batch it came with (tests/workers/test_watchlist_range.py).
    client = _offline_client()
    with caplog.at_level(logging.ERROR, logger="trading.dhan.feed"):
        client.subscribe(["13"], "ticker")
    assert client.subscriptions == {}
    assert "SEGMENT:SECURITY_ID" in caplog.text
    with pytest.raises(ValueError, match="unknown feed mode"):
        client.subscribe(["IDX_I:13"], "depth")
    with pytest.raises(ValueError, match="max_connections"):
        _offline_client(max_connections=6)


# ---------------------------------------------------------------------------------------------
# Against the simulator.


def test_ticks_arrive_in_each_mode_on_the_dispatcher_thread(
    dhan_sim: Simulator, make_client: Callable[..., tuple[FeedClient, Collector]]
) -> None:
    ticker, quote, full = option_keys(dhan_sim, 3)
    client, got = make_client()
    client.subscribe([ticker, "IDX_I:13"], "ticker")
    client.subscribe([quote], "quote")
    client.subscribe([full], "full")
    client.start()
    wait_until(lambda: got.count(ticker, TickerTick) >= 2, "ticker ticks")
    wait_until(lambda: got.count(quote, QuoteTick) >= 2, "quote ticks")
    wait_until(lambda: got.count(full, FullTick) >= 2, "full ticks")
    wait_until(lambda: got.count("IDX_I:13", TickerTick) >= 2, "index ticks")
    assert got.count(ticker, PrevClose) >= 1
    assert got.threads == {"dhan-feed-dispatch"}
    stats = client.stats()
    assert stats.state == "running"
    assert stats.frames >= stats.packets > 0  # one packet per frame from the simulator
    assert stats.bad_packets == 0 and stats.reconnects == 0
    assert stats.last_frame_at is not None
    assert [s.state for s in stats.shards] == ["connected"]
    assert subscribed_keys(dhan_sim) == {
        ticker: FeedMode.TICKER,
        "IDX_I:13": FeedMode.TICKER,
        quote: FeedMode.QUOTE,
        full: FeedMode.FULL,
    }


def test_inline_delivery_runs_on_the_socket_thread_once_per_read_then_on_drained(
    dhan_sim: Simulator, make_client: Callable[..., tuple[FeedClient, Collector]]
) -> None:
    keys = option_keys(dhan_sim, 3)
    order: list[str] = []
    client, got = make_client(inline=True, on_drained=lambda: order.append("drained"))
    original = got.__call__

    def collect(packets: list[Packet]) -> None:
        order.append("packets")
        original(packets)

    client._inline_callback = collect  # the same Collector, with the call order recorded
    client.subscribe(keys, "full")
    client.start()
    wait_until(lambda: all(got.count(key, FullTick) >= 2 for key in keys), "full ticks")
    assert got.threads == {"dhan-feed-0"}  # the socket thread: no dispatcher hop
    assert order[:2] == ["packets", "drained"]
    assert order.count("packets") == order.count("drained")
    assert client.stats().dropped_frames == 0


def test_an_inline_callback_that_raises_is_counted_and_the_connection_keeps_reading(
    dhan_sim: Simulator, make_client: Callable[..., tuple[FeedClient, Collector]]
) -> None:
    calls = {"n": 0}

    def flaky(packets: list[Packet]) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("poison burst")

    client, _ = make_client(inline=True)
    client._inline_callback = flaky
    client.subscribe(option_keys(dhan_sim, 1), "quote")
    client.start()
    wait_until(lambda: calls["n"] >= 5, "bursts after the failing one")
    stats = client.stats()
    assert stats.callback_errors == 1 and stats.reconnects == 0


def test_subscriptions_are_sharded_over_connections(
    dhan_sim: Simulator, make_client: Callable[..., tuple[FeedClient, Collector]]
) -> None:
    keys = option_keys(dhan_sim, 7)
    client, got = make_client(max_instruments_per_connection=3)
    client.subscribe(keys, "ticker")
    client.start()
    wait_until(lambda: len(dhan_sim.feed_subscriptions()) == 3, "three feed connections")
    wait_until(
        lambda: sorted(len(s) for s in dhan_sim.feed_subscriptions()) == [1, 3, 3],
        "3 + 3 + 1 instruments",
    )
    assert set(subscribed_keys(dhan_sim)) == set(keys)
    for key in keys:
        wait_until(lambda key=key: got.count(key, TickerTick) >= 1, f"ticks for {key}")


def test_subscribe_unsubscribe_and_mode_change_while_connected(
    dhan_sim: Simulator, make_client: Callable[..., tuple[FeedClient, Collector]]
) -> None:
    a, b, c = option_keys(dhan_sim, 3)
    client, got = make_client()
    client.subscribe([a], "ticker")
    client.start()
    wait_until(lambda: got.count(a, TickerTick) >= 1, "first ticks")

    client.subscribe([b, c], "quote")
    wait_until(lambda: got.count(b, QuoteTick) >= 1 and got.count(c, QuoteTick) >= 1, "new ticks")
    client.unsubscribe([b])
    wait_until(lambda: b not in subscribed_keys(dhan_sim), "the server to drop b")
    client.subscribe([a], "full")
    wait_until(lambda: subscribed_keys(dhan_sim).get(a) == FeedMode.FULL, "a in full mode")
    wait_until(lambda: got.count(a, FullTick) >= 1, "full ticks for a")
    # Frames for b already in flight when the server dropped it may still arrive; one round
    # of c's ticks later they are through (one connection keeps order).
    mark = got.mark()
    wait_until(lambda: fresh_ticks(got, mark, c), "more ticks for c")
    mark = got.mark()
    wait_until(lambda: fresh_ticks(got, mark, c), "another round for c")
    assert not any(p.key == b for p in got.since(mark))
    assert client.stats().reconnects == 0  # all of it on the open connection
    assert len(dhan_sim.feed_subscriptions()) == 1


@pytest.mark.parametrize("fault", ["drop_after", "drop_connections", "disconnect_800"])
def test_it_reconnects_and_resubscribes_after_a_drop(
    fault: str,
    dhan_sim: Simulator,
    make_client: Callable[..., tuple[FeedClient, Collector]],
) -> None:
    keys = option_keys(dhan_sim, 4)
    client, got = make_client(max_instruments_per_connection=2)
    client.subscribe(keys[:2], "ticker")
    client.subscribe(keys[2:], "quote")
    client.start()
    wait_until(lambda: len(dhan_sim.feed_subscriptions()) == 2, "two connections")
    wait_until(lambda: all(got.count(k) for k in keys), "ticks on both connections")
    opened = dhan_sim.stats["feed_connections_opened"]

    if fault == "drop_after":
        dhan_sim.faults.drop_after = 0.5
        wait_until(lambda: client.stats().reconnects >= 4, "repeated reconnects")
        dhan_sim.faults.drop_after = None
    elif fault == "drop_connections":
        dhan_sim.drop_connections()
    else:
        dhan_sim.inject_disconnect(800)

    wait_until(lambda: dhan_sim.stats["feed_connections_opened"] >= opened + 2, "new connections")
    wait_until(
        lambda: (
            subscribed_keys(dhan_sim)
            == {keys[0]: FeedMode.TICKER, keys[1]: FeedMode.TICKER}
            | {keys[2]: FeedMode.QUOTE, keys[3]: FeedMode.QUOTE}
            and len(dhan_sim.feed_subscriptions()) == 2
        ),
        "every subscription re-sent",
    )
    mark = got.mark()
    for key in keys:
        wait_until(lambda key=key: fresh_ticks(got, mark, key), f"ticks again for {key}")
    stats = client.stats()
    assert stats.state == "running" and client.error is None
    assert stats.reconnects >= 2
    assert all(s.connects >= 2 for s in stats.shards)


def test_the_stall_watchdog_reconnects_a_silent_connection(
    dhan_sim: Simulator, make_client: Callable[..., tuple[FeedClient, Collector]]
) -> None:
    (key,) = option_keys(dhan_sim, 1)
    client, got = make_client(stall_timeout=0.5)
    client.subscribe([key], "ticker")
    client.start()
    wait_until(lambda: got.count(key) >= 1, "first ticks")
    opened = dhan_sim.stats["feed_connections_opened"]
    dhan_sim.faults.stall = True
    wait_until(lambda: client.stats().shards[0].stalls >= 1, "a stall to be detected")
    wait_until(lambda: dhan_sim.stats["feed_connections_opened"] > opened, "a reconnect")
    dhan_sim.faults.stall = False
    mark = got.mark()
    wait_until(lambda: fresh_ticks(got, mark, key), "ticks after the stall")
    assert "stalled" in (client.stats().shards[0].last_error or "")


def test_the_stall_watchdog_sleeps_while_the_market_is_closed(
    dhan_sim: Simulator, make_client: Callable[..., tuple[FeedClient, Collector]]
) -> None:
    (key,) = option_keys(dhan_sim, 1)
    asked = threading.Event()

    def closed() -> bool:
        asked.set()
        return False

    client, got = make_client(stall_timeout=0.3, market_open=closed)
    client.subscribe([key], "ticker")
    client.start()
    wait_until(lambda: got.count(key) >= 1, "first ticks")
    dhan_sim.faults.stall = True
    assert asked.wait(WAIT)  # the watchdog consulted the market hours...
    dhan_sim.faults.stall = False
    mark = got.mark()
    wait_until(lambda: fresh_ticks(got, mark, key), "ticks on the same connection")
    assert client.stats().shards[0].stalls == 0  # ...and did not reconnect
    assert client.stats().shards[0].connects == 1


def test_a_garbage_frame_is_counted_and_skipped(
    dhan_sim: Simulator, make_client: Callable[..., tuple[FeedClient, Collector]]
) -> None:
    (key,) = option_keys(dhan_sim, 1)
    client, got = make_client()
    client.subscribe([key], "quote")
    client.start()
    wait_until(lambda: got.count(key) >= 1, "first ticks")
    dhan_sim.inject_garbage()
    wait_until(lambda: client.stats().bad_packets == 1, "the garbage frame to be counted")
    mark = got.mark()
    wait_until(lambda: fresh_ticks(got, mark, key), "ticks after the garbage")
    stats = client.stats()
    assert stats.reconnects == 0 and stats.state == "running"


def test_a_429_handshake_backs_off_then_reconnects(
    dhan_sim: Simulator, make_client: Callable[..., tuple[FeedClient, Collector]]
) -> None:
    (key,) = option_keys(dhan_sim, 1)
    client, got = make_client()
    client.subscribe([key], "ticker")
    client.start()
    wait_until(lambda: got.count(key) >= 1, "first ticks")
    dhan_sim.faults.handshake_status = 429
    dhan_sim.drop_connections()
    wait_until(lambda: dhan_sim.stats["handshakes_refused"] >= 2, "refused handshakes")
    assert "HTTP 429" in (client.stats().shards[0].last_error or "")
    assert client.stats().state == "running"  # a 429 is not fatal
    shard = client._shards[0]  # the 429s went on the long schedule, not the ordinary one
    assert shard.slow_backoff.attempt >= 1 and shard.backoff.attempt <= 1
    dhan_sim.faults.handshake_status = None
    mark = got.mark()
    wait_until(lambda: fresh_ticks(got, mark, key), "ticks after the 429s")
    assert subscribed_keys(dhan_sim) == {key: FeedMode.TICKER}


@pytest.mark.parametrize("code", [806, 807, 808])
def test_an_auth_disconnect_stops_the_client_instead_of_reconnecting(
    code: int,
    dhan_sim: Simulator,
    make_client: Callable[..., tuple[FeedClient, Collector]],
) -> None:
    keys = option_keys(dhan_sim, 2)
    fatal: list[DhanError] = []
    client, got = make_client(max_instruments_per_connection=1, on_fatal=fatal.append)
    client.subscribe(keys, "ticker")
    client.start()
    wait_until(lambda: all(got.count(k) for k in keys), "first ticks")
    opened = dhan_sim.stats["feed_connections_opened"]
    dhan_sim.inject_disconnect(code)
    error = client.wait(WAIT)
    assert isinstance(error, AuthFailure)
    assert error.code == str(code)
    assert client.state == "failed"
    assert str(code) in str(error)
    wait_until(lambda: all(s.state == "failed" for s in client.stats().shards), "shards stopped")
    assert len(fatal) == 1 and fatal[0] is error
    assert dhan_sim.stats["feed_connections_opened"] == opened  # no reconnect storm
    with pytest.raises(RuntimeError, match="failed"):
        client.subscribe(["IDX_I:13"], "ticker")


def test_an_expired_token_stops_the_client_with_807(
    dhan_sim: Simulator, make_client: Callable[..., tuple[FeedClient, Collector]]
) -> None:
    (key,) = option_keys(dhan_sim, 1)
    client, got = make_client()
    client.subscribe([key], "ticker")
    client.start()
    wait_until(lambda: got.count(key) >= 1, "first ticks")
    dhan_sim.faults.token_expires_at = time.time()
    error = client.wait(WAIT)
    assert isinstance(error, AuthFailure) and error.code == "807"
    assert "expired" in str(error).lower()
    assert client.stats().shards[0].connects == 1  # stopped, not reconnected


def test_a_bad_token_at_connect_stops_the_client(
    dhan_sim: Simulator, make_client: Callable[..., tuple[FeedClient, Collector]]
) -> None:
    client, _ = make_client(token_provider=TokenBox("not-the-token"))
    client.subscribe(["IDX_I:13"], "ticker")
    client.start()
    error = client.wait(WAIT)
    assert isinstance(error, AuthFailure) and error.code == "809"
    assert dhan_sim.stats["feed_connections_opened"] == 1
    assert "not-the-token" not in str(error) + repr(client.stats())


def test_a_rotated_token_is_read_again_on_reconnect(
    dhan_sim: Simulator, make_client: Callable[..., tuple[FeedClient, Collector]]
) -> None:
    (key,) = option_keys(dhan_sim, 1)
    box = TokenBox(dhan_sim.token)
    client, got = make_client(token_provider=box)
    client.subscribe([key], "ticker")
    client.start()
    wait_until(lambda: got.count(key) >= 1, "first ticks")
    dhan_sim.set_token("sim-token-rotated")
    box.token = "sim-token-rotated"
    dhan_sim.drop_connections()
    mark = got.mark()
    wait_until(lambda: fresh_ticks(got, mark, key), "ticks with the new token")
    assert client.stats().shards[0].connects == 2 and client.error is None


def test_an_807_with_a_new_token_already_available_reconnects_with_it(
    dhan_sim: Simulator, make_client: Callable[..., tuple[FeedClient, Collector]]
) -> None:
    (key,) = option_keys(dhan_sim, 1)
    box = TokenBox(dhan_sim.token)
    client, got = make_client(token_provider=box)
    client.subscribe([key], "ticker")
    client.start()
    wait_until(lambda: got.count(key) >= 1, "first ticks")
    dhan_sim.set_token("sim-token-next")
    box.token = "sim-token-next"
    dhan_sim.inject_disconnect(807)  # the old connection learns its token is gone
    wait_until(lambda: client.stats().shards[0].connects == 2, "a reconnect")
    mark = got.mark()
    wait_until(lambda: fresh_ticks(got, mark, key), "ticks with the new token")
    assert client.state == "running"


def test_a_slow_consumer_does_not_block_the_socket(
    dhan_sim: Simulator, make_client: Callable[..., tuple[FeedClient, Collector]]
) -> None:
    keys = option_keys(dhan_sim, 40)
    release = threading.Event()
    entered = threading.Event()
    calls = 0

    def stuck(packets: list[Packet]) -> None:
        nonlocal calls
        calls += 1
        entered.set()
        release.wait(WAIT)

    client = FeedClient(
        dhan_sim.ws_url,
        dhan_sim.client_id,
        lambda: dhan_sim.token,
        stuck,
        policy=FAST_RECONNECT,
        market_open=lambda: True,
        poll_interval=0.1,
        buffer_capacity=25,
    )
    try:
        client.subscribe(keys, "full")
        client.start()
        assert entered.wait(WAIT)
        wait_until(lambda: client.stats().dropped_frames > 100, "frames dropped, not queued")
        frames = client.stats().frames
        wait_until(lambda: client.stats().frames > frames + 100, "the socket still reading")
        stats = client.stats()
        assert stats.pending_frames <= 25  # memory bounded
        assert stats.dropped_packets >= stats.dropped_frames
        assert stats.reconnects == 0 and calls == 1
        release.set()
        wait_until(lambda: calls > 1, "the consumer to catch up")
    finally:
        release.set()
        client.stop(timeout=10)


def test_stop_sends_the_disconnect_request_and_joins_its_threads(
    dhan_sim: Simulator, make_client: Callable[..., tuple[FeedClient, Collector]]
) -> None:
    keys = option_keys(dhan_sim, 2)
    client, _ = make_client(max_instruments_per_connection=1)
    client.subscribe(keys, "ticker")
    client.start()
    wait_until(lambda: len(dhan_sim.feed_subscriptions()) == 2, "two connections")
    client.stop(timeout=10)
    assert client.state == "stopped" and client.wait(0) is None
    wait_until(lambda: dhan_sim.feed_subscriptions() == [], "the server to close both")
    assert all(s.state == "stopped" for s in client.stats().shards)
    names = {t.name for t in threading.enumerate()}
    assert not names & {"dhan-feed-0", "dhan-feed-1", "dhan-feed-dispatch"}
    client.stop()  # twice is fine


def test_stop_does_not_hang_on_a_silent_server(
    dhan_sim: Simulator, make_client: Callable[..., tuple[FeedClient, Collector]]
) -> None:
    (key,) = option_keys(dhan_sim, 1)
    client, got = make_client(market_open=lambda: False)
    client.subscribe([key], "ticker")
    client.start()
    wait_until(lambda: got.count(key) >= 1, "first ticks")
    dhan_sim.faults.stall = True
    client.stop(timeout=10)
    assert not any(t.name == "dhan-feed-0" for t in threading.enumerate())


def test_a_sixth_connection_makes_the_oldest_back_off_and_return(
    dhan_sim: Simulator, make_client: Callable[..., tuple[FeedClient, Collector]]
) -> None:
    (key,) = option_keys(dhan_sim, 1)
    client, got = make_client()
    client.subscribe([key], "ticker")
    client.start()
    wait_until(lambda: got.count(key) >= 1, "first ticks")
    others = []
    try:
        for _ in range(5):  # another process takes the five other slots: ours is the oldest
            ws = websocket.create_connection(
                feed_url(dhan_sim.ws_url, dhan_sim.token, dhan_sim.client_id), timeout=10
            )
            ws.send(subscribe_messages(["IDX_I:13"], "ticker")[0])
            others.append(ws)
        wait_until(lambda: "805" in (client.stats().shards[0].last_error or ""), "805")
        assert client.state == "running"
        wait_until(lambda: client.stats().shards[0].connects == 2, "our reconnect")
    finally:
        for ws in others:
            ws.close(timeout=1)


class RawServer:
    """A hand-written WebSocket server for what the simulator never does: it completes the
    upgrade of each connection, then runs ``script(conn)`` on the raw socket."""

    def __init__(self, script: Callable[[socket.socket], None]) -> None:
        self.script = script
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"ws://127.0.0.1:{self.listener.getsockname()[1]}/feed"
        self.conns: list[socket.socket] = []
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(conn)
            self.accepted += 1
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            key = re.search(rb"Sec-WebSocket-Key: *(\S+)", request, re.I)
            assert key is not None
            accept = base64.b64encode(
                hashlib.sha1(key.group(1) + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()  # noqa: S324
            )
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            threading.Thread(target=self.script, args=(conn,), daemon=True).start()

    def close(self) -> None:
        self.listener.close()
        for conn in self.conns:
            conn.close()


def server_frame(payload: bytes, opcode: int = 2, fin: bool = True) -> bytes:
    assert len(payload) < 126
    return bytes([(0x80 if fin else 0) | opcode, len(payload)]) + payload


def read_client_frame(conn: socket.socket) -> tuple[int, bytes]:
    """One frame from the client (always masked): (opcode, unmasked payload)."""

    def exact(n: int) -> bytes:
        data = b""
        while len(data) < n:
            more = conn.recv(n - len(data))
            if not more:
                raise ConnectionError("client went away")
            data += more
        return data

    b0, b1 = exact(2)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(exact(2), "big")
    elif n == 127:
        n = int.from_bytes(exact(8), "big")
    mask = exact(4)
    payload = bytes(c ^ mask[i % 4] for i, c in enumerate(exact(n)))
    return b0 & 0x0F, payload


def raw_client(url: str, on_packets: Callable[[list[Packet]], None], **kwargs: Any) -> FeedClient:
    kwargs.setdefault("market_open", lambda: False)
    return FeedClient(
        url,
        "1000000001",
        lambda: "tok",
        on_packets,
        policy=FAST_RECONNECT,
        poll_interval=0.1,
        close_timeout=0.5,
        **kwargs,
    )


def test_stop_does_not_hang_on_a_dead_peer() -> None:
    """A server that completes the upgrade and then never reads or writes again (a dead host
    behind a live TCP connection, DhanHQ-py #139): stop() still returns."""
    server = RawServer(lambda conn: None)  # ...nothing after the upgrade, ever
    client = raw_client(server.url, lambda packets: None)
    try:
        client.subscribe(["IDX_I:13"], "ticker")
        client.start()
        wait_until(lambda: client.stats().shards[0].state == "connected", "the upgrade")
        client.stop(timeout=10)
        assert not any(t.name == "dhan-feed-0" for t in threading.enumerate())
        assert client.state == "stopped"
    finally:
        server.close()


def test_pings_are_answered_and_fragmented_frames_reassembled() -> None:
    tick = encode_ticker("NSE_FNO", 55796, 152.3, 1753455192)
    pongs: list[bytes] = []
    ponged = threading.Event()

    def script(conn: socket.socket) -> None:
        opcode, _ = read_client_frame(conn)  # the subscribe message
        assert opcode == 1
        # A ticker split over two fragments with a ping between them (RFC 6455 allows a
        # control frame inside a fragmented message), then a whole one, all in one write.
        conn.sendall(
            server_frame(tick[:5], fin=False)
            + server_frame(b"are you there", opcode=9)
            + server_frame(tick[5:], opcode=0)
            + server_frame(tick)
        )
        while True:
            opcode, payload = read_client_frame(conn)
            if opcode == 10:
                pongs.append(payload)
                ponged.set()
                return

    server = RawServer(script)
    got = Collector()
    client = raw_client(server.url, got)
    try:
        client.subscribe(["NSE_FNO:55796"], "ticker")
        client.start()
        assert ponged.wait(WAIT)
        assert pongs == [b"are you there"]
        wait_until(lambda: got.count("NSE_FNO:55796", TickerTick) == 2, "both ticks")
        assert client.stats().bad_packets == 0
    finally:
        client.stop(timeout=10)
        server.close()


def test_a_close_frame_from_the_server_is_a_reconnect() -> None:
    def script(conn: socket.socket) -> None:
        read_client_frame(conn)
        conn.sendall(server_frame((1001).to_bytes(2, "big") + b"going away", opcode=8))

    server = RawServer(script)
    client = raw_client(server.url, lambda packets: None)
    try:
        client.subscribe(["IDX_I:13"], "ticker")
        client.start()
        wait_until(lambda: server.accepted >= 3, "reconnects after close frames")
        assert client.state == "running"
        assert "closed" in (client.stats().shards[0].last_error or "")
    finally:
        client.stop(timeout=10)
        server.close()


def test_a_masked_frame_from_the_server_fails_the_connection_not_the_client() -> None:
    def script(conn: socket.socket) -> None:
        read_client_frame(conn)
        conn.sendall(bytes([0x82, 0x80 | 2]) + b"\x00\x00\x00\x00" + b"hi")

    server = RawServer(script)
    client = raw_client(server.url, lambda packets: None)
    try:
        client.subscribe(["IDX_I:13"], "ticker")
        client.start()
        wait_until(lambda: server.accepted >= 2, "a reconnect")
        assert "masked" in (client.stats().shards[0].last_error or "")
        assert client.state == "running"
    finally:
        client.stop(timeout=10)
        server.close()


def test_from_settings_connects_with_the_settings_and_subscribes_the_watchlist(
    dhan_sim: Simulator, settings: Any
) -> None:
    settings.DHANHQ_WS_URL = dhan_sim.ws_url
    settings.DHANHQ_CLIENT_ID = dhan_sim.client_id
    settings.DHANHQ_ACCESS_TOKEN = dhan_sim.token
    settings.DHANHQ_WS_WATCHLIST = ["IDX_I:13", "IDX_I:25"]
    settings.DHANHQ_WS_MODE = "ticker"
    got = Collector()
    client = FeedClient.from_settings(got, policy=FAST_RECONNECT, market_open=lambda: True)
    try:
        assert client.subscriptions == {"IDX_I:13": FeedMode.TICKER, "IDX_I:25": FeedMode.TICKER}
        client.start()
        wait_until(lambda: got.count("IDX_I:25", TickerTick) >= 1, "index ticks")
    finally:
        client.stop(timeout=10)


def test_from_settings_without_credentials_is_improperly_configured(settings: Any) -> None:
    from django.core.exceptions import ImproperlyConfigured

    settings.DHANHQ_CLIENT_ID = ""
    with pytest.raises(ImproperlyConfigured, match="DHANHQ_CLIENT_ID"):
        FeedClient.from_settings(lambda packets: None)
    settings.DHANHQ_CLIENT_ID = "1000000001"
    settings.DHANHQ_ACCESS_TOKEN = ""
    with pytest.raises(ImproperlyConfigured, match="DHANHQ_ACCESS_TOKEN"):
        FeedClient.from_settings(lambda packets: None)
