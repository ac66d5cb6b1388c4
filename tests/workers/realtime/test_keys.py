"""workers.realtime.keys: the names on the bus and in the key-value store.

The one place the wire names are written out literally: processes of different versions (a
hub deployed before the engine) and operators with redis-cli depend on them, so a rename must
be a deliberate change of this test, not a side effect.
"""

from __future__ import annotations

from workers.realtime import keys


def test_the_redis_layout_is_prefix_then_namespace() -> None:
    assert keys.DEFAULT_PREFIX == "algo:"
    assert keys.TICK_NAMESPACE == "tick:"
    assert keys.EVENT_NAMESPACE == "ev:"
    assert keys.KV_NAMESPACE == "kv:"
    assert keys.SETTING_ROW_PREFIX == "kv:"


def test_event_topics() -> None:
    assert keys.CANDLE_TOPIC == "candle"
    assert keys.FEED_HEALTH_TOPIC == "feed_health"


def test_key_value_names() -> None:
    assert keys.FEED_HEALTH == "health:feed"
    assert keys.FEED_SUBSCRIPTIONS == "feed:subscriptions"
    assert keys.FEED_CANDIDATES == "feed:candidates"
    assert keys.candles_key("IDX_I:13", 60) == "candles:IDX_I:13:60"
    assert keys.candles_key("IDX_I:25", 300) == "candles:IDX_I:25:300"
    assert keys.heartbeat_key("feed_hub") == "hb:feed_hub"
    assert keys.HEARTBEAT_PREFIX == "hb:"
    assert keys.pnl_key(42) == "pnl:42"
    assert keys.PNL_PREFIX == "pnl:"
    assert keys.MARKET_CLOCK == "market:clock"
    assert keys.broker_auth_key("feed_hub") == "broker:auth:feed_hub"
    assert keys.BROKER_AUTH_PREFIX == "broker:auth:"


def test_each_name_starts_with_the_prefix_its_reader_scans_for() -> None:
    assert keys.heartbeat_key("pnl").startswith(keys.HEARTBEAT_PREFIX)
    assert keys.pnl_key("7").startswith(keys.PNL_PREFIX)
    assert keys.broker_auth_key("pnl").startswith(keys.BROKER_AUTH_PREFIX)
