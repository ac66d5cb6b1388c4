"""Every name on the realtime bus and in the key-value store: producers and consumers import
them from here, so a name is written once (a test pins each one: they are a wire contract
between processes of different versions, and what an operator types into redis-cli).

Redis layout, under a ``prefix`` (``DEFAULT_PREFIX``; tests and benches pass their own):

* ``{prefix}tick:{key}``: the latest ``TickRecord`` of an instrument (binary) and the pub/sub
  channel each new record is announced on (``key`` is the instrument key ``SEG:SID``);
* ``{prefix}ev:{topic}``: event channels, JSON payloads;
* ``{prefix}kv:{name}``: key-value entries and capped lists, JSON text.

In embedded mode without Redis, the database-backed key-value store keeps ``{name}`` in the
``Setting`` row ``kv:{name}`` (``SETTING_ROW_PREFIX``).
"""

from __future__ import annotations

__all__ = [
    "BROKER_AUTH_PREFIX",
    "CANDLE_TOPIC",
    "DEFAULT_PREFIX",
    "EVENT_NAMESPACE",
    "FEED_CANDIDATES",
    "FEED_HEALTH",
    "FEED_HEALTH_TOPIC",
    "FEED_SUBSCRIPTIONS",
    "HEARTBEAT_PREFIX",
    "KV_NAMESPACE",
    "MARKET_CLOCK",
    "PNL_PREFIX",
    "SETTING_ROW_PREFIX",
    "TICK_NAMESPACE",
    "broker_auth_key",
    "candles_key",
    "heartbeat_key",
    "pnl_key",
]

# -- Redis layout

DEFAULT_PREFIX = "algo:"
TICK_NAMESPACE = "tick:"  # {prefix}tick:{instrument key}: value key and pub/sub channel
EVENT_NAMESPACE = "ev:"  # {prefix}ev:{topic}: event channel
KV_NAMESPACE = "kv:"  # {prefix}kv:{name}: key-value entry or capped list
SETTING_ROW_PREFIX = "kv:"  # Setting row key of a kv name in embedded mode (DbKeyValueStore)

# -- Event topics

CANDLE_TOPIC = "candle"  # feed hub -> signal engine: an index candle closed (Candle.as_dict)
FEED_HEALTH_TOPIC = "feed_health"  # feed hub: feed health changed state (FeedHealth record)

# -- Key-value names

FEED_HEALTH = "health:feed"  # feed hub -> /ready, signal engine: feed health, with a TTL
FEED_SUBSCRIPTIONS = "feed:subscriptions"  # feed hub: the instruments subscribed at Dhan now
FEED_CANDIDATES = "feed:candidates"  # signal engine -> feed hub: contracts it may pick next
HEARTBEAT_PREFIX = "hb:"  # every worker -> /ready: hb:{component name}, with a TTL
PNL_PREFIX = "pnl:"  # PnL monitor: pnl:{position id}, the live PnL snapshot
MARKET_CLOCK = "market:clock"  # feed hub -> every worker: the market clock's anchor and rate
BROKER_AUTH_PREFIX = "broker:auth:"  # a worker the broker refused -> /ready: broker:auth:{worker}


def candles_key(key: str, timeframe: int) -> str:
    """The capped list of an index's recent candles: ``candles:{instrument key}:{seconds}``
    (feed hub writes, signal engine reads), e.g. ``candles:IDX_I:13:60``."""
    return f"candles:{key}:{timeframe}"


def heartbeat_key(name: str) -> str:
    """A component's heartbeat: ``hb:{name}``."""
    return f"{HEARTBEAT_PREFIX}{name}"


def pnl_key(position_id: int | str) -> str:
    """A position's live PnL snapshot: ``pnl:{position id}``."""
    return f"{PNL_PREFIX}{position_id}"


def broker_auth_key(worker: str) -> str:
    """A worker's recorded authentication failure: ``broker:auth:{worker}``."""
    return f"{BROKER_AUTH_PREFIX}{worker}"
