"""The order-update stream as a supervised component (live mode only).

Wraps :class:`trading.dhan.order_updates.OrderUpdateClient`: start it, surface a fatal error
(auth) as an exception so the supervisor logs and backs off, stop it when asked. Each update
goes to ``handler``: the order journal's transition function once the order router exists
(issue 6); until then the default handler logs it, so a live operator still sees every fill
and rejection in the log.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from workers.heartbeat import Heartbeat

logger = logging.getLogger(__name__)


def log_update(update: Any) -> None:
    """The default handler: one log line per update (no client id: ``log_fields``)."""
    logger.info("order update: %s", update.log_fields())


class OrderUpdatesComponent:
    name = "order_updates"

    def __init__(
        self,
        *,
        kv: Any,
        handler: Callable[[Any], object] = log_update,
        client_factory: Callable[[Callable[[Any], object]], Any] | None = None,
        beat_interval: float = 5.0,
    ) -> None:
        self.handler = handler
        self.heartbeat = Heartbeat(kv, self.name)
        self.beat_interval = beat_interval
        if client_factory is None:
            from trading.dhan.order_updates import OrderUpdateClient

            client_factory = OrderUpdateClient.from_settings
        self._client_factory = client_factory

    def run(self, stop: threading.Event) -> None:
        client = self._client_factory(self.handler)
        client.start()
        try:
            while not stop.wait(self.beat_interval):
                stats = client.stats()
                self.heartbeat.beat(
                    "running",
                    connected=bool(stats.get("connected")),
                    counts={k: v for k, v in stats.items() if isinstance(v, int)},
                    last_error=getattr(client, "last_error", None),
                )
                if client.state == "failed":
                    raise RuntimeError(f"order-update stream stopped: {client.error}")
        finally:
            client.stop(timeout=2.0)
