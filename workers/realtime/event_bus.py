"""The event buses: rare events (candle closed, feed health changed) as JSON, FIFO per
subscription, bounded (drop oldest, counted).

``MemoryEventBus`` in one process (embedded mode), ``RedisEventBus`` over Redis pub/sub
(split mode, channel ``{prefix}ev:{topic}``). Topic names are in ``keys``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from workers.realtime.json_values import json_text
from workers.realtime.keys import DEFAULT_PREFIX, EVENT_NAMESPACE
from workers.realtime.pubsub_reader import PubSubListener
from workers.realtime.redis_client import Unavailable, client_for

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

__all__ = ["EventBus", "EventSubscription", "MemoryEventBus", "RedisEventBus"]


class EventSubscription:
    """FIFO of ``(topic, payload)`` for the subscribed topics; bounded: when ``maxlen`` events
    are waiting the oldest is dropped and counted in ``dropped``. Thread-safe."""

    def __init__(self, topics: Iterable[str], maxlen: int, on_close: Callable[[], None]) -> None:
        self.topics = frozenset(topics)
        self._queue: deque[tuple[str, dict]] = deque()
        self._maxlen = maxlen
        self._cond = threading.Condition(threading.Lock())
        self._on_close = on_close
        self.closed = False
        self.dropped = 0

    def get(self, timeout: float | None = None) -> tuple[str, dict] | None:
        """The oldest waiting event, blocking up to ``timeout`` s; None on timeout or close."""
        with self._cond:
            if not self._queue and not self.closed:
                self._cond.wait_for(lambda: self._queue or self.closed, timeout)
            if not self._queue:
                return None
            return self._queue.popleft()

    def close(self) -> None:
        if self.closed:
            return
        with self._cond:
            self.closed = True
            self._queue.clear()
            self._cond.notify_all()
        self._on_close()

    def __enter__(self) -> EventSubscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _put(self, topic: str, payload: dict) -> None:
        with self._cond:
            if self.closed:
                return
            if len(self._queue) >= self._maxlen:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append((topic, payload))
            self._cond.notify()


class EventBus(Protocol):
    def publish(self, topic: str, payload: dict) -> None: ...

    def subscribe(self, topics: Iterable[str], maxlen: int = 10_000) -> EventSubscription: ...

    def close(self) -> None: ...


class _EventRoutes:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: dict[str, tuple[EventSubscription, ...]] = {}

    def add(self, sub: EventSubscription) -> list[str]:
        """Register; return the topics nobody was subscribed to before."""
        new = []
        with self._lock:
            for topic in sub.topics:
                subs = self._subs.get(topic, ())
                if not subs:
                    new.append(topic)
                self._subs[topic] = (*subs, sub)
        return new

    def remove(self, sub: EventSubscription) -> list[str]:
        """Unregister; return the topics nobody is subscribed to any more."""
        gone = []
        with self._lock:
            for topic in sub.topics:
                subs = tuple(s for s in self._subs.get(topic, ()) if s is not sub)
                if subs:
                    self._subs[topic] = subs
                else:
                    self._subs.pop(topic, None)
                    gone.append(topic)
        return gone

    def get(self, topic: str) -> tuple[EventSubscription, ...]:
        return self._subs.get(topic, ())

    def all(self) -> set[EventSubscription]:
        with self._lock:
            return {s for subs in self._subs.values() for s in subs}


class MemoryEventBus:
    """In-process EventBus. Payloads go through JSON like on Redis, so a payload that would
    fail in split mode fails in embedded mode too, and subscribers get their own copies."""

    def __init__(self) -> None:
        self._routes = _EventRoutes()

    def publish(self, topic: str, payload: dict) -> None:
        text = json_text(payload, f"event {topic!r}")
        for sub in self._routes.get(topic):
            sub._put(topic, json.loads(text))

    def subscribe(self, topics: Iterable[str], maxlen: int = 10_000) -> EventSubscription:
        sub = EventSubscription(topics, maxlen, lambda: self._routes.remove(sub))
        self._routes.add(sub)
        return sub

    def close(self) -> None:
        for sub in self._routes.all():
            sub.close()


class RedisEventBus:
    """EventBus over Redis pub/sub: channel ``{prefix}ev:{topic}``, JSON payload.

    At most once: events published while a subscriber is disconnected are lost (the listener
    reconnects and resubscribes). Events are signals to re-read state, never the only copy.
    ``subscribe`` returns once Redis confirmed the subscription (up to ``subscribe_timeout``
    s; when Redis is down it returns after that and the listener subscribes on reconnect), so
    an event published after it returns reaches the subscriber.
    """

    subscribe_timeout = 5.0

    def __init__(
        self,
        url_or_client: str | redis.Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        ping_interval: float = 5.0,
    ) -> None:
        self._client = client_for(url_or_client)
        self.prefix = prefix
        self._channel_prefix = prefix + EVENT_NAMESPACE
        self._routes = _EventRoutes()
        self._listener = PubSubListener(
            self._client, self, f"events-listener[{prefix}]", ping_interval=ping_interval
        )

    def publish(self, topic: str, payload: dict) -> None:
        text = json_text(payload, f"event {topic!r}")
        with Unavailable("publishing an event", self._client):
            self._client.publish(self._channel_prefix + topic, text)

    def subscribe(self, topics: Iterable[str], maxlen: int = 10_000) -> EventSubscription:
        sub = EventSubscription(topics, maxlen, lambda: self._unsubscribe(sub))
        new = self._routes.add(sub)
        if new:
            self._listener.subscribe([(self._channel_prefix + t).encode() for t in new])
        channels = [(self._channel_prefix + t).encode() for t in sub.topics]
        self._listener.wait_subscribed(channels, self.subscribe_timeout)
        return sub

    def close(self) -> None:
        for sub in self._routes.all():
            sub.close()
        self._listener.close()

    def _unsubscribe(self, sub: EventSubscription) -> None:
        gone = self._routes.remove(sub)
        if gone:
            self._listener.unsubscribe([(self._channel_prefix + t).encode() for t in gone])

    def _on_messages(self, messages: list[tuple[bytes, bytes, bool]]) -> None:
        cut = len(self._channel_prefix.encode())
        for channel, payload, _pattern in messages:
            topic = channel[cut:].decode("utf-8", "replace")
            subs = self._routes.get(topic)
            if not subs:
                continue
            try:
                value = json.loads(payload)
            except ValueError:
                log.warning("event on %r is not JSON; dropped", topic)
                continue
            for sub in subs:
                sub._put(topic, value if len(subs) == 1 else json.loads(payload))

    def _on_subscribed(self, channels: list[bytes], patterns: list[bytes]) -> None:
        return None
