"""An authentication failure at the broker is a state, not a retry.

ARCHITECTURE.md: "AuthFailure (DH-901 / feed 807): stop trading, alert, no reconnect storm".
A worker that meets :class:`~trading.dhan.errors.AuthFailure` (REST DH-901, the feed's
806-810, the order stream's login) writes the key-value record ``broker:auth:{worker}`` and
stops with
:class:`BrokerAuthFailed`, which nothing restarts: ``run_feed_hub`` and ``run_signal_engine``
exit 1 with one line, ``run_trader``'s supervisor stops every component and exits 1. ``/ready``
answers 503 naming the failure while the record is there. A fresh token needs a restart, and
the restart clears the worker's own record (:func:`clear_auth_failure` at its start; another
worker's record stays until that worker restarts): if the token is still bad the first call to
the broker writes it again.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from trading.dhan.errors import AuthFailure
from workers.realtime.keys import BROKER_AUTH_PREFIX, broker_auth_key
from workers.realtime.kv_store import KeyValueStore
from workers.realtime.redis_client import StoreUnavailable

logger = logging.getLogger(__name__)

__all__ = [
    "BrokerAuthFailed",
    "auth_failures",
    "clear_auth_failure",
    "report_auth_failure",
]


class BrokerAuthFailed(RuntimeError):
    """The broker refused our credentials; a restart with the same ones cannot heal it.

    Caller: stop trading and exit (or stop the whole embedded process); never restart the
    component in a loop. The message is one line, safe to print (the broker error is redacted).
    """

    def __init__(self, worker: str, during: str, error: AuthFailure) -> None:
        super().__init__(
            f"{worker} ({during}): the broker refused the credentials ({error}); set a valid "
            "DHANHQ_ACCESS_TOKEN / DHANHQ_CLIENT_ID and restart"
        )
        self.worker = worker
        self.error = error


def report_auth_failure(
    kv: KeyValueStore, worker: str, during: str, error: AuthFailure
) -> BrokerAuthFailed:
    """Log it once, loudly, and record it for /ready; returns the exception to raise."""
    failure = BrokerAuthFailed(worker, during, error)
    logger.critical("%s", failure)
    record = {"state": "failed", "during": during, "reason": str(error)[:300], "at": time.time()}
    try:
        kv.put(broker_auth_key(worker), record)
    except StoreUnavailable as exc:  # the exit that follows is loud enough on its own
        logger.warning("broker auth failure not recorded for /ready: %s", exc)
    return failure


def auth_failures(kv: KeyValueStore) -> dict[str, dict[str, Any]]:
    """The recorded failures by worker name."""
    return {
        name.removeprefix(BROKER_AUTH_PREFIX): record
        for name, record in kv.get_prefix(BROKER_AUTH_PREFIX).items()
        if isinstance(record, dict)
    }


def clear_auth_failure(kv: KeyValueStore, worker: str) -> None:
    """At a worker's start: a restart is how a new token arrives, so its old failure goes."""
    try:
        if kv.get(broker_auth_key(worker)) is not None:
            kv.delete(broker_auth_key(worker))
            logger.info("%s: its previous broker authentication failure is cleared", worker)
    except StoreUnavailable as exc:
        logger.warning("%s: broker auth state not cleared: %s", worker, exc)
