"""The realtime layer: latest tick per instrument, tick notifications, events, small JSON state.

Three services, each with an in-memory implementation (embedded mode: one process, no Redis)
and a Redis one (split mode: the feed hub writes, every other process reads). One job per
module; import from the module, this package exports nothing itself:

* ``record``: ``TickRecord``, the merged latest state of one instrument, and its binary wire
  layout (one ``struct.pack`` / ``unpack_from``).
* ``merger``: ``TickMerger``, decoded feed packets -> records (the feed hub's hot path).
* ``coalescing``: ``TickSubscription``, a consumer's latest record per key, never a backlog
  (not ``workers/subscriptions.py``, which is what the feed hub subscribes at Dhan).
* ``tick_store``: the ``TickStore`` interface and ``MemoryTickStore``.
* ``redis_tick_store``: ``RedisTickStore`` (a Lua SET + PUBLISH per record, batched).
* ``redis_client``: ``StoreUnavailable``, connections, and the hand-written RESP batch writer.
* ``pubsub_reader``: the hand-written pub/sub reader (one thread, reconnects, PING probes).
* ``event_bus``: ``EventBus``, ``MemoryEventBus``, ``RedisEventBus`` (rare JSON events).
* ``kv_store``: ``KeyValueStore``, memory, Redis and database-backed stores, and
  ``kv_from_settings``.
* ``json_values``: the JSON rules events and key-value values share.
* ``keys``: every bus and key-value name (``health:feed``, ``candles:{key}:{tf}``, ...) and the
  Redis layout (``{prefix}tick:``, ``{prefix}ev:``, ``{prefix}kv:``).
* ``services``: ``Realtime`` (a process's three services) and ``realtime_from_settings``.

Everything in Redis can be lost and rebuilt (ARCHITECTURE.md): a restarted Redis is refilled
by the next ticks.
"""
