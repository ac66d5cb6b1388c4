"""workers.realtime.pubsub_reader: the hand-written pub/sub reader and its RESP parser.

The reconnect tests drive the reader through the Redis tick store, its main user, on a private
redis-server that they kill or freeze; the parser and the reader's hand-over are tested
directly.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.support.redis import PrivateRedis  # the private_redis fixture: a server to kill
from tests.support.waiting import wait_until
from workers.realtime.pubsub_reader import PubSubListener, RedisReplyError, parse_replies
from workers.realtime.redis_tick_store import RedisTickStore

from .kit import record, wait_for


def test_a_killed_listener_connection_resubscribes_and_resyncs(
    private_redis: PrivateRedis,
) -> None:
    import redis

    admin = redis.Redis.from_url(private_redis.url)
    store = RedisTickStore(private_redis.url, prefix="k:")
    sub = store.subscribe(["A:1", "A:2"])
    store.publish([record("A:1", 1, 1.0)])
    wait_for(sub, "A:1", 1)
    # Changed without a PUBLISH, so only the resync after the reconnect can bring it. Set
    # before the kill: set after it, a fast reconnect could resync first and never see it.
    admin.set("k:tick:A:2", record("A:2", 9, 9.0).to_bytes())
    assert admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 1
    rec = wait_for(sub, "A:2", 9)
    assert rec.ltp == 9.0
    assert store.listener_reconnects >= 1
    store.publish([record("A:1", 2, 2.0)])
    wait_for(sub, "A:1", 2)
    store.close()
    admin.close()


def test_a_hung_redis_is_detected_by_ping_and_the_listener_comes_back(
    private_redis: PrivateRedis,
) -> None:

    store = RedisTickStore(private_redis.url, prefix="h:", ping_interval=0.2)
    sub = store.subscribe(["A:1"])
    store.publish([record("A:1", 1, 1.0)])
    wait_for(sub, "A:1", 1)
    assert private_redis.process is not None
    private_redis.process.send_signal(signal.SIGSTOP)  # accepts TCP, answers nothing
    try:
        wait_until(lambda: store.listener_reconnects >= 1, "a listener reconnect")
    finally:
        private_redis.process.send_signal(signal.SIGCONT)
    store.publish([record("A:1", 2, 2.0)])
    wait_for(sub, "A:1", 2)
    store.close()


# -- the RESP parser ---------------------------------------------------------------------------


MESSAGE = b"*3\r\n$7\r\nmessage\r\n$6\r\nalgo:x\r\n$5\r\na\r\nb\x00\r\n"  # payload has \r\n
CONFIRM = b"*3\r\n$9\r\nsubscribe\r\n$6\r\nalgo:x\r\n:1\r\n"
PMESSAGE = b"*4\r\n$8\r\npmessage\r\n$3\r\nal*\r\n$6\r\nalgo:y\r\n$0\r\n\r\n"
PONG = b"+PONG\r\n"


def test_parse_replies_reads_messages_confirmations_and_skips_simple_strings() -> None:
    stream = CONFIRM + MESSAGE + PONG + PMESSAGE
    replies, used = parse_replies(stream)
    assert used == len(stream)
    assert replies == [
        [b"subscribe", b"algo:x", b"1"],
        [b"message", b"algo:x", b"a\r\nb\x00"],
        [b"pmessage", b"al*", b"algo:y", b""],
    ]


def test_a_stream_cut_anywhere_parses_to_the_same_replies() -> None:
    stream = CONFIRM + MESSAGE + PONG + PMESSAGE + MESSAGE
    whole, _ = parse_replies(stream)
    for cut in range(1, len(stream)):
        # What the read loop does: parse what arrived, keep the unused tail for the next read.
        first, used = parse_replies(stream[:cut])
        rest, used_rest = parse_replies(stream[used:])
        assert first + rest == whole, cut
        assert used + used_rest == len(stream)


def test_an_error_reply_raises_naming_the_error() -> None:
    with pytest.raises(RedisReplyError, match="NOPERM this user has no permissions"):
        parse_replies(CONFIRM + b"-NOPERM this user has no permissions\r\n")


# -- the reader on a real Redis ------------------------------------------------------------------


class Collected:
    """A handler that keeps what the reader hands over."""

    def __init__(self) -> None:
        self.messages: list[tuple[bytes, bytes, bool]] = []
        self.subscribed: list[bytes] = []

    def _on_messages(self, messages: list[tuple[bytes, bytes, bool]]) -> None:
        self.messages.extend(messages)

    def _on_subscribed(self, channels: list[bytes], patterns: list[bytes]) -> None:
        self.subscribed.extend(channels + patterns)


def test_the_reader_hands_over_channel_and_pattern_messages_once_confirmed(
    redis_url: str, prefix: str
) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    handler = Collected()
    listener = PubSubListener(client, handler, "test-reader")
    channel = f"{prefix}one".encode()
    pattern = f"{prefix}many:*".encode()
    try:
        listener.subscribe([channel])
        listener.subscribe([pattern], pattern=True)
        assert listener.wait_subscribed([channel, pattern], 10)
        assert set(handler.subscribed) == {channel, pattern}
        client.publish(channel, b"\x01binary\r\n")
        client.publish(f"{prefix}many:7", b"seven")
        wait_until(lambda: len(handler.messages) == 2, "both messages")
        assert handler.messages == [
            (channel, b"\x01binary\r\n", False),
            (f"{prefix}many:7".encode(), b"seven", True),
        ]
        listener.unsubscribe([channel])
        # The UNSUBSCRIBE is on the listener's socket, the PUBLISH on another: Redis may read
        # the PUBLISH first and still deliver "after". Publish once Redis counts no subscriber.
        wait_until(
            lambda: client.pubsub_numsub(channel) == [(channel, 0)], "the channel unsubscribed"
        )
        client.publish(channel, b"after")
        client.publish(f"{prefix}many:8", b"eight")  # in order: once it is here, so is "after"
        wait_until(lambda: len(handler.messages) == 3, "the third message")
        assert handler.messages[-1] == (f"{prefix}many:8".encode(), b"eight", True)
    finally:
        listener.close()
        client.close()


def test_a_quiet_healthy_connection_is_probed_with_ping_and_kept(
    redis_url: str, prefix: str
) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    handler = Collected()
    listener = PubSubListener(client, handler, "test-quiet", ping_interval=0.5)
    channel = f"{prefix}quiet".encode()
    try:
        listener.subscribe([channel])
        assert listener.wait_subscribed([channel], 10)
        # Five probe intervals of silence. Each PING is answered, so the connection stays; a
        # probe that is never sent drops it after two (an idle feed reconnected every 10 s).
        time.sleep(2.5)
        assert listener.reconnects == 0, listener.last_error
        client.publish(channel, b"still here")
        wait_until(
            lambda: handler.messages == [(channel, b"still here", False)],
            "the message after the quiet spell",
        )
    finally:
        listener.close()
        client.close()
