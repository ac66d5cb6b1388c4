"""The tick store over Redis (split mode: the feed hub writes, every other process reads).

``{prefix}tick:{key}`` is both the value key of an instrument's latest record
(``TickRecord.to_bytes``) and the pub/sub channel it is announced on (names in ``keys``).
Everything in Redis can be lost and rebuilt (ARCHITECTURE.md): a restarted Redis is refilled by
the next ticks.

Hot path: one Lua call (SET + PUBLISH per record) per 2,000 records, written as raw RESP on a
dedicated connection, batches pipelined. Subscribers get pub/sub messages through the
hand-written reader (``pubsub_reader``), which hands a whole chunk of messages over at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from workers.realtime.coalescing import Pending, TickSubscription
from workers.realtime.keys import DEFAULT_PREFIX, TICK_NAMESPACE
from workers.realtime.pubsub_reader import PubSubListener
from workers.realtime.record import TickRecord, payload_seq
from workers.realtime.redis_client import (
    ScriptBatchWriter,
    StoreUnavailable,
    Unavailable,
    client_for,
    glob_escape,
)

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

__all__ = ["RedisTickStore"]


_PUBLISH_LUA = """
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i])
  redis.call('PUBLISH', KEYS[i], ARGV[i])
end
return #KEYS
"""
_PUBLISH_BATCH = 2000  # records per EVALSHA: keeps each Lua call (which blocks Redis) short


class RedisTickStore:
    """TickStore over Redis: ``{prefix}tick:{key}`` holds the latest record's bytes and is
    also the channel each record is PUBLISHed on.

    ``publish`` runs one Lua EVALSHA per call (per 2,000 records) doing SET + PUBLISH for each
    record, written as raw RESP on a dedicated connection (``redis_client.ScriptBatchWriter``).
    A Redis failure raises StoreUnavailable; the next call reconnects. Subscriptions share one
    listener thread and one pub/sub connection per store; see ``pubsub_reader.PubSubListener``
    and ``coalescing.TickSubscription``. ``ping_interval``: seconds of silence after which the
    listener probes its connection with PING (and drops it after as long again without an
    answer).
    """

    def __init__(
        self,
        url_or_client: str | redis.Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        ping_interval: float = 5.0,
    ) -> None:
        self._client = client_for(url_or_client)
        self.prefix = prefix
        self._key_prefix = prefix + TICK_NAMESPACE
        self._channel_prefix = self._key_prefix.encode()
        self._publish_lock = threading.Lock()
        self._writer = ScriptBatchWriter(self._client, _PUBLISH_LUA)
        self._key_frags: dict[str, bytes] = {}
        self._sub_lock = threading.Lock()
        self._routes: dict[bytes, tuple[str, tuple[TickSubscription, ...]]] = {}
        self._all: tuple[TickSubscription, ...] = ()
        self._channel_keys: dict[bytes, str] = {}
        self._pattern = glob_escape(self._key_prefix).encode() + b"*"
        self._listener = PubSubListener(
            self._client, self, f"ticks-listener[{prefix}]", ping_interval=ping_interval
        )

    # -- writing

    def publish(self, records: Sequence[TickRecord]) -> None:
        if not records:
            return
        with self._publish_lock, Unavailable("publishing ticks", self._client):
            self._writer.run(
                self._encode_batch(records[start : start + _PUBLISH_BATCH])
                for start in range(0, len(records), _PUBLISH_BATCH)
            )

    def _encode_batch(self, records: Sequence[TickRecord]) -> tuple[int, bytes]:
        """The KEYS and ARGV of one EVALSHA as RESP bulk strings."""
        frags = self._key_frags
        keys = []
        values = []
        for record in records:
            frag = frags.get(record.key)
            if frag is None:
                name = (self._key_prefix + record.key).encode()
                frag = frags[record.key] = b"$%d\r\n%b\r\n" % (len(name), name)
            keys.append(frag)
            value = record.to_bytes()
            values.append(b"$%d\r\n%b\r\n" % (len(value), value))
        return len(records), b"".join(keys) + b"".join(values)

    # -- reading

    def get(self, key: str) -> TickRecord | None:
        """The latest record of ``key``; None when there is none or it is undecodable."""
        with Unavailable("reading a tick", self._client):
            data = self._client.get(self._key_prefix + key)
        return None if data is None else _decode_stored(key, data)

    def get_many(self, keys: Iterable[str]) -> dict[str, TickRecord]:
        """The latest records of those ``keys`` that have one; undecodable values are left
        out with a warning (a value written by an older layout, say, right after a deploy:
        the feed hub's warm start must not fail on it, and the next tick overwrites it)."""
        keys = list(dict.fromkeys(keys))
        out: dict[str, TickRecord] = {}
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            with Unavailable("reading ticks", self._client):
                values = self._client.mget([self._key_prefix + key for key in chunk])
            for key, data in zip(chunk, values, strict=True):
                if data is not None:
                    record = _decode_stored(key, data)
                    if record is not None:
                        out[key] = record
        return out

    def subscribe(
        self,
        keys: Iterable[str] = (),
        *,
        all_keys: bool = False,
        on_ready: Callable[[TickSubscription], object] | None = None,
    ) -> TickSubscription:
        sub = TickSubscription(self, all_keys=all_keys, on_ready=on_ready)
        if all_keys:
            # (Un)subscribing under _sub_lock keeps Redis's subscription set in step with the
            # routes when one subscription comes as another goes (lock order: _sub_lock, then
            # the listener's; the listener thread never takes _sub_lock).
            with self._sub_lock:
                first = not self._all
                self._all = (*self._all, sub)
                if first:
                    # Current values follow the PSUBSCRIBE confirmation (_on_subscribed).
                    self._listener.subscribe([self._pattern], pattern=True)
            if not first:
                try:
                    self._deliver_all([sub])
                except StoreUnavailable:
                    pass  # the listener's reconnect resync delivers them
        sub.add(keys)
        return sub

    def close(self) -> None:
        with self._sub_lock:
            subs = {s for _, subs in self._routes.values() for s in subs} | set(self._all)
        for sub in subs:
            sub.close()
        self._listener.close()
        with self._publish_lock:
            self._writer.close()

    @property
    def listener_reconnects(self) -> int:
        return self._listener.reconnects

    # -- subscription plumbing (called by TickSubscription and the listener thread)

    def _channel(self, key: str) -> bytes:
        return self._channel_prefix + key.encode()

    def _sub_add(self, sub: TickSubscription, keys: list[str]) -> None:
        new_channels = []
        known = []
        with self._sub_lock:
            for key in keys:
                channel = self._channel(key)
                route = self._routes.get(channel)
                if route is None:
                    self._routes[channel] = (key, (sub,))
                    new_channels.append(channel)
                else:
                    self._routes[channel] = (key, (*route[1], sub))
                    known.append(key)
            if new_channels:
                # Current values are fetched once Redis confirms the subscription.
                self._listener.subscribe(new_channels)
        if known:
            # Already subscribed: reading the value now cannot miss a publish.
            try:
                self._deliver([self._channel(key) for key in known], [sub])
            except StoreUnavailable:
                pass  # the listener's reconnect resync delivers them

    def _sub_remove(self, sub: TickSubscription, keys: list[str]) -> None:
        gone = []
        with self._sub_lock:
            for key in keys:
                channel = self._channel(key)
                route = self._routes.get(channel)
                if route is None:
                    continue
                subs = tuple(s for s in route[1] if s is not sub)
                if subs:
                    self._routes[channel] = (key, subs)
                else:
                    del self._routes[channel]
                    gone.append(channel)
            if gone:
                self._listener.unsubscribe(gone)

    def _sub_close(self, sub: TickSubscription) -> None:
        if not sub.all_keys:
            self._sub_remove(sub, list(sub._keys))
            return
        with self._sub_lock:
            self._all = tuple(s for s in self._all if s is not sub)
            if not self._all:
                self._listener.unsubscribe([self._pattern], pattern=True)

    def _on_messages(self, messages: list[tuple[bytes, bytes, bool]]) -> None:
        """Listener thread: coalesce a chunk's messages, then one lock per subscription."""
        direct: dict[bytes, bytes] = {}
        patterned: dict[bytes, bytes] = {}
        dup_direct: dict[bytes, int] = {}
        dup_pattern = 0
        for channel, payload, from_pattern in messages:
            target = patterned if from_pattern else direct
            size = len(target)
            target[channel] = payload
            if len(target) == size:
                if from_pattern:
                    dup_pattern += 1
                else:
                    dup_direct[channel] = dup_direct.get(channel, 0) + 1
        routes = self._routes
        if direct:
            batches: dict[TickSubscription, dict[str, Pending]] = {}
            superseded: dict[TickSubscription, int] = {}
            for channel, payload in direct.items():
                route = routes.get(channel)
                if route is None:
                    continue
                key, subs = route
                entry = (payload_seq(payload), payload)
                dups = dup_direct.get(channel, 0)
                for sub in subs:
                    batch = batches.get(sub)
                    if batch is None:
                        batch = batches[sub] = {}
                    batch[key] = entry
                    if dups:
                        superseded[sub] = superseded.get(sub, 0) + dups
            for sub, batch in batches.items():
                sub._offer(batch, superseded.get(sub, 0))
        if patterned and self._all:
            channel_keys = self._channel_keys
            cut = len(self._channel_prefix)
            items: dict[str, Pending] = {}
            for channel, payload in patterned.items():
                key = channel_keys.get(channel)
                if key is None:
                    key = channel[cut:].decode("utf-8", "replace")
                    if len(channel_keys) < 200_000:  # bounded even with garbage channels
                        channel_keys[channel] = key
                items[key] = (payload_seq(payload), payload)
            for sub in self._all:
                sub._offer(items, dup_pattern)

    def _on_subscribed(self, channels: list[bytes], patterns: list[bytes]) -> None:
        """Listener thread: a subscription is live, deliver the current values."""
        if channels:
            routes = self._routes
            subs_by_channel = {c: routes[c][1] for c in channels if c in routes}
            # Group channels by their subscriber tuples to MGET each key once.
            self._deliver_routed(subs_by_channel)
        if patterns and self._all:
            self._deliver_all(self._all)

    def _deliver_routed(self, subs_by_channel: dict[bytes, tuple[TickSubscription, ...]]) -> None:
        channels = list(subs_by_channel)
        for start in range(0, len(channels), 1000):
            chunk = channels[start : start + 1000]
            with Unavailable("reading ticks", self._client):
                values = self._client.mget(chunk)
            batches: dict[TickSubscription, dict[str, Pending]] = {}
            for channel, data in zip(chunk, values, strict=True):
                if data is None:
                    continue
                key = channel[len(self._channel_prefix) :].decode()
                entry = (payload_seq(data), data)
                for sub in subs_by_channel[channel]:
                    batches.setdefault(sub, {})[key] = entry
            for sub, batch in batches.items():
                sub._offer(batch)

    def _deliver(self, channels: list[bytes], subs: Sequence[TickSubscription]) -> None:
        self._deliver_routed(dict.fromkeys(channels, tuple(subs)))

    def _deliver_all(self, subs: Sequence[TickSubscription]) -> None:
        with Unavailable("scanning ticks", self._client):
            names = list(self._client.scan_iter(match=self._pattern, count=1000))
        self._deliver(names, subs)


def _decode_stored(key: str, data: bytes) -> TickRecord | None:
    try:
        return TickRecord.from_bytes(data)
    except ValueError as exc:
        log.warning("undecodable tick record for %s in Redis ignored: %s", key, exc)
        return None
