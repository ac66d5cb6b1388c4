"""WebSocket client support: backoff, the drop-oldest dispatcher, handshake errors, market hours.

Pure unit tests: no network, no database. Waits are on events with generous timeouts; nothing
asserts on how long anything took.
"""

from __future__ import annotations

import random
import threading

import pytest
import websocket

from trading.dhan.errors import AuthFailure, RateLimited, Retryable
from trading.dhan.ws_support import (
    Backoff,
    Dispatcher,
    ReconnectPolicy,
    handshake_error,
    split_frames,
)

WAIT = 10.0


def test_backoff_doubles_up_to_the_cap_with_a_floor_of_half() -> None:
    backoff = Backoff(1.0, 8.0, random.Random(3))
    delays = [backoff.next_delay() for _ in range(7)]
    ceilings = [1, 2, 4, 8, 8, 8, 8]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling


def test_backoff_reset_starts_the_schedule_again() -> None:
    backoff = Backoff(1.0, 30.0, random.Random(1))
    for _ in range(6):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_reconnect_policy_rejects_non_positive_delays() -> None:
    with pytest.raises(ValueError, match="base"):
        ReconnectPolicy(base=0)
    with pytest.raises(ValueError, match="healthy_after"):
        ReconnectPolicy(healthy_after=-1)


def test_dispatcher_delivers_in_order_on_its_own_thread() -> None:
    seen: list[tuple[int, str]] = []
    done = threading.Event()

    def handler(item: int) -> None:
        seen.append((item, threading.current_thread().name))
        if item == 99:
            done.set()

    dispatcher: Dispatcher[int] = Dispatcher("test-dispatch", handler, capacity=1000)
    dispatcher.start()
    for i in range(100):
        dispatcher.put(i)
    assert done.wait(WAIT)
    assert dispatcher.stop(WAIT)
    assert [i for i, _ in seen] == list(range(100))
    assert {name for _, name in seen} == {"test-dispatch"}
    assert dispatcher.dropped == 0


def test_on_drained_runs_after_each_burst_on_the_dispatcher_thread() -> None:
    events: list[tuple[str, object]] = []
    drained = threading.Event()

    def on_drained() -> None:
        events.append(("drained", threading.current_thread().name))
        drained.set()

    dispatcher: Dispatcher[int] = Dispatcher(
        "test-drain", lambda item: events.append(("item", item)), on_drained=on_drained
    )
    dispatcher.start()
    for i in range(3):
        dispatcher.put(i)
    assert drained.wait(WAIT)
    drained.clear()
    dispatcher.put(3)
    assert drained.wait(WAIT)
    assert dispatcher.stop(WAIT)
    items = [value for kind, value in events if kind == "item"]
    assert items == [0, 1, 2, 3]
    # Every drain follows at least one item and runs on the dispatcher's own thread; an idle
    # dispatcher never calls it.
    assert events[-1] == ("drained", "test-drain")
    assert events[0][0] == "item"
    kinds = [kind for kind, _ in events]
    assert kinds.count("drained") >= 2
    assert all(kinds[i - 1] == "item" for i, k in enumerate(kinds) if k == "drained")


def test_a_slow_consumer_loses_the_oldest_items_and_put_never_blocks() -> None:
    release = threading.Event()
    first = threading.Event()
    seen: list[list[int]] = []

    def handler(item: list[int]) -> None:
        seen.append(item)
        first.set()
        release.wait(WAIT)  # a consumer stuck until the producer is done

    dispatcher: Dispatcher[list[int]] = Dispatcher("slow", handler, capacity=10, weigh=len)
    dispatcher.start()
    dispatcher.put([0])
    assert first.wait(WAIT)
    # The consumer is blocked: 1,000 puts return at once, only the newest 10 are kept.
    for i in range(1, 1001):
        dispatcher.put([i, i])
        assert dispatcher.pending <= 10
    assert dispatcher.dropped == 990
    assert dispatcher.dropped_weight == 1980
    release.set()
    assert dispatcher.stop(WAIT)
    assert seen == [[0]] + [[i, i] for i in range(991, 1001)]


def test_a_failing_callback_is_logged_and_the_next_item_still_arrives(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[int] = []
    done = threading.Event()

    def handler(item: int) -> None:
        if item == 1:
            raise RuntimeError("poison")
        seen.append(item)
        if item == 2:
            done.set()

    dispatcher: Dispatcher[int] = Dispatcher("poison", handler)
    dispatcher.start()
    for i in range(3):
        dispatcher.put(i)
    assert done.wait(WAIT)
    dispatcher.stop(WAIT)
    assert seen == [0, 2]
    assert dispatcher.handler_errors == 1
    assert "callback failed on int" in caplog.text


def test_stop_gives_up_on_a_stuck_callback_instead_of_hanging() -> None:
    entered = threading.Event()
    release = threading.Event()

    def handler(item: int) -> None:
        entered.set()
        release.wait(WAIT)

    dispatcher: Dispatcher[int] = Dispatcher("stuck", handler)
    dispatcher.start()
    dispatcher.put(1)
    assert entered.wait(WAIT)
    assert dispatcher.stop(0.05) is False
    release.set()


def _bad_status(status: int) -> websocket.WebSocketBadStatusException:
    return websocket.WebSocketBadStatusException(
        f"Handshake status {status} -+-+- {{'x': 'token=eyJabcdefghijk'}}", status
    )


def test_a_429_handshake_is_rate_limited() -> None:
    error = handshake_error(_bad_status(429))
    assert isinstance(error, RateLimited)
    assert error.status == 429
    assert "eyJ" not in str(error)


@pytest.mark.parametrize("status", [401, 403])
def test_a_401_or_403_handshake_is_an_auth_failure(status: int) -> None:
    assert isinstance(handshake_error(_bad_status(status)), AuthFailure)


def test_other_handshake_failures_are_retryable_and_redacted() -> None:
    error = handshake_error(_bad_status(503))
    assert type(error) is Retryable
    refused = handshake_error(ConnectionRefusedError("refused sim-token-0"), ("sim-token-0",))
    assert type(refused) is Retryable
    assert "sim-token-0" not in str(refused)


def _frame(payload: bytes, opcode: int = 2, fin: bool = True, rsv: int = 0) -> bytes:
    first = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    if n < 126:
        head = bytes([first, n])
    elif n < 1 << 16:
        head = bytes([first, 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([first, 127]) + n.to_bytes(8, "big")
    return head + payload


def test_split_frames_returns_whole_frames_of_every_length_encoding() -> None:
    small, medium, large = b"a" * 16, b"b" * 300, b"c" * 70_000
    buf = _frame(small) + _frame(medium, opcode=1) + _frame(large) + _frame(b"", opcode=9)
    frames, used = split_frames(buf)
    assert used == len(buf)
    assert frames == [(0x82, small), (0x81, medium), (0x82, large), (0x89, b"")]


def test_split_frames_leaves_an_incomplete_frame_for_the_next_read() -> None:
    whole = _frame(b"x" * 16) + _frame(b"y" * 300)
    for cut in range(len(whole)):
        frames, used = split_frames(whole[:cut])
        rest = whole[used:cut]
        more, used2 = split_frames(rest + whole[cut:])
        assert [p for _, p in frames + more] == [b"x" * 16, b"y" * 300]
        assert used + used2 == len(whole)


def test_split_frames_keeps_fin_and_opcode_for_fragments() -> None:
    frames, _ = split_frames(_frame(b"ab", fin=False) + _frame(b"cd", opcode=0))
    assert frames == [(0x02, b"ab"), (0x80, b"cd")]


@pytest.mark.parametrize(
    ("buf", "problem"),
    [
        (bytes([0x82, 0x80 | 4]) + b"mask" + b"data", "masked"),
        (_frame(b"x", rsv=0x40), "RSV"),
        (bytes([0x82, 127]) + (1 << 40).to_bytes(8, "big"), "exceeds"),
    ],
)
def test_split_frames_refuses_what_a_client_must_fail_on(buf: bytes, problem: str) -> None:
    with pytest.raises(websocket.WebSocketProtocolException, match=problem):
        split_frames(buf)
