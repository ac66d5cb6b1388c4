"""Shared pieces of the worker tests that drive a real feed hub against the simulator."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.core.management import call_command

from instruments.models import Derivative
from tests.support.reconnect import FAST_RECONNECT
from trading.dhan.feed import FeedClient
from trading.dhan.feed_codec import FeedMode
from trading.dhan.sim.server import Simulator
from trading.models import WatchlistItem
from workers.feed_hub import FeedHub, HubConfig
from workers.realtime.event_bus import MemoryEventBus, RedisEventBus
from workers.realtime.kv_store import MemoryKeyValueStore, RedisKeyValueStore
from workers.realtime.redis_tick_store import RedisTickStore
from workers.realtime.services import Realtime
from workers.realtime.tick_store import MemoryTickStore

INDICES = {
    "IDX_I:13": "NIFTY",
    "IDX_I:25": "BANKNIFTY",
    "IDX_I:27": "FINNIFTY",
    "IDX_I:51": "SENSEX",
}


def memory_realtime() -> Realtime:
    return Realtime(
        ticks=MemoryTickStore(), events=MemoryEventBus(), kv=MemoryKeyValueStore(), redis_url=None
    )


def redis_realtime(url: str, prefix: str) -> Realtime:
    return Realtime(
        ticks=RedisTickStore(url, prefix=prefix),
        events=RedisEventBus(url, prefix=prefix),
        kv=RedisKeyValueStore(url, prefix=prefix),
        redis_url=url,
    )


def seed_watchlist() -> None:
    # Transactional tests flush the tables, the migration's seed rows included: recreate them.
    for key, label in INDICES.items():
        segment, sid = key.split(":")
        WatchlistItem.objects.get_or_create(
            exchange_segment=segment, security_id=int(sid), defaults={"label": label}
        )


def make_hub(sim: Simulator, realtime: Realtime, *, recorder: Any = None, **config: Any) -> FeedHub:
    settings = {
        "index_mode": FeedMode.TICKER,
        "market_open": lambda: True,
        "refresh_interval": 0.2,
        "loop_interval": 0.05,
        "state_interval": 0.2,
        "stale_after": 1.0,
        "seed_candles": False,
    }
    settings.update(config)

    def factory(on_packets: Callable[..., object], **hooks: Any) -> FeedClient:
        return FeedClient(
            sim.ws_url,
            sim.client_id,
            lambda: sim.token,
            on_packets,
            policy=FAST_RECONNECT,
            stall_timeout=1.5,
            poll_interval=0.1,
            market_open=lambda: True,
            **hooks,
        )

    return FeedHub(realtime, feed_factory=factory, config=HubConfig(**settings), recorder=recorder)


class Running:
    """A component (feed hub, signal engine) running ``run(stop)`` in a thread, as the
    supervisor would."""

    def __init__(self, hub: Any) -> None:
        self.hub = hub
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.hub.run(self.stop)
        except BaseException as exc:  # surfaced by close()
            self.error = exc

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive(), f"{type(self.hub).__name__} did not stop"
        error, self.error = self.error, None  # raised once, even when closed twice
        if error is not None:
            raise error


def sim_subscriptions(sim: Simulator) -> dict[str, FeedMode]:
    """Every instrument the simulator's open feed connections carry -> mode."""
    merged: dict[str, FeedMode] = {}
    for subs in sim.feed_subscriptions():
        merged.update(subs)
    return merged


def import_sim_catalog(sim: Simulator) -> None:
    call_command("import_instruments", url=sim.scrip_master_url, verbosity=0)


def an_option(sim: Simulator) -> Derivative:
    return Derivative.objects.filter(option_type="CE", underlying__security_id=13).order_by(
        "expiry_date", "strike"
    )[len(Derivative.objects.filter(option_type="CE", underlying__security_id=13)) // 2]
