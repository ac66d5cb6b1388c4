from __future__ import annotations

import logging
import re
import time
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.defaults import page_not_found

from algo_scalper.log import redact, sensitive_values
from trading.text import clip

logger = logging.getLogger(__name__)

# Short: a readiness probe must answer within the platform's probe timeout even when Redis
# is black-holed, and it runs on a web worker that has real requests to serve.
REDIS_PROBE_TIMEOUT = 1.0
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """404: JSON under /api/ (what a script reads), Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": f"no such resource: {clip(request.path)}"}, status=404)
    return page_not_found(request, exception)


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the web process is up and answering. No database: see /ready for that."""
    return JsonResponse({"status": "ok"})


def _public(text: object) -> str:
    """Text fit for the unauthenticated /ready body: URLs dropped (hosts, tokens in query
    strings), known secrets and token-looking strings masked, length bounded."""
    return redact(_URL.sub("<url>", str(text)), sensitive_values())[:200]


def _check_database() -> tuple[str, str | None]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        # The message of a driver error names hosts and users: log it (redacted), answer only
        # the class name.
        logger.warning("/ready: database check failed", exc_info=True)
        return "error", f"database: unreachable ({type(exc).__name__})"
    return "ok", None


def _redis_client() -> Any:
    import redis

    return redis.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=REDIS_PROBE_TIMEOUT,
        socket_timeout=REDIS_PROBE_TIMEOUT,
        retry_on_timeout=False,
    )


@never_cache
def ready(request: HttpRequest) -> JsonResponse:
    """Readiness: 200 when the system can trade, else 503 with the problems named.

    Ready means: the database answers; Redis answers PING (split mode only, REDIS_URL set);
    the feed health record ``health:feed`` exists and is not "down" (written by the feed hub
    with a 10 s TTL, so a dead hub reads as absent); every worker heartbeat present is fresh
    and not "stopped"; no worker has recorded that the broker refused the credentials
    (``broker:auth:{worker}``, see workers/broker_auth.py: trading has stopped until a restart
    with valid ones).
    The body holds states and ages only, never a URL or an error message (no secrets).
    """
    from workers.broker_auth import auth_failures
    from workers.heartbeat import heartbeat_age, is_fresh, read_heartbeats
    from workers.realtime.keys import FEED_HEALTH
    from workers.realtime.kv_store import kv_from_settings

    problems: list[str] = []
    now = time.time()
    checks: dict[str, Any] = {}

    checks["database"], problem = _check_database()
    if problem:
        problems.append(problem)

    client = None
    kv_usable = checks["database"] == "ok"
    if settings.REDIS_URL:
        client = _redis_client()
        try:
            client.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            logger.warning("/ready: redis check failed", exc_info=True)
            checks["redis"] = "error"
            problems.append(f"redis: unreachable ({type(exc).__name__})")
        # In split mode health and heartbeats live in Redis, not in the database.
        kv_usable = checks["redis"] == "ok"
    else:
        checks["redis"] = "not configured"

    try:
        if not kv_usable:
            checks["feed"] = {"state": "unknown"}
            checks["workers"] = {}
            problems.append("feed: health unknown (its store is unreachable)")
        else:
            kv = kv_from_settings(redis_client=client)
            checks["feed"], feed_problem = _feed(kv.get(FEED_HEALTH), now)
            if feed_problem:
                problems.append(feed_problem)
            workers: dict[str, Any] = {}
            for name, record in sorted(read_heartbeats(kv).items()):
                age = heartbeat_age(record, now)
                fresh = is_fresh(record, now)
                workers[_public(name)] = {
                    "state": _public(record.get("state", "")),
                    "at": record.get("at") if age is not None else None,
                    "age": None if age is None else round(age, 1),
                    "fresh": fresh,
                }
                if not fresh:
                    problems.append(f"worker {_public(name)}: heartbeat is stale")
                elif record.get("state") == "stopped":
                    # A process writes "stopped" on its way out; the record outlives it by
                    # its TTL, and nothing it ran is running any more.
                    problems.append(f"worker {_public(name)}: stopped")
            checks["workers"] = workers
            failures = auth_failures(kv)
            checks["broker_auth"] = "failed" if failures else "ok"
            for worker, record in sorted(failures.items()):
                problems.append(
                    f"broker: authentication failed in {_public(worker)} "
                    f"({_public(record.get('during', ''))}): {_public(record.get('reason', ''))}"
                )
    except Exception as exc:
        logger.warning("/ready: reading feed health and heartbeats failed", exc_info=True)
        checks.setdefault("feed", {"state": "unknown"})
        checks.setdefault("workers", {})
        problems.append(f"feed: health unreadable ({type(exc).__name__})")
    finally:
        if client is not None:
            client.close()

    if checks["database"] == "ok":
        checks["reconciliation"], mismatch_problem = _reconciliation()
        if mismatch_problem:
            problems.append(mismatch_problem)

    ok = not problems
    body = {"status": "ready" if ok else "not ready", "checks": checks, "problems": problems}
    return JsonResponse(body, status=200 if ok else 503)


def _reconciliation() -> tuple[dict[str, Any], str | None]:
    """Open broker/journal mismatches (trading/orders/reconcile.py): the system's view of
    what it holds is wrong until an operator resolves them."""
    try:
        from trading.orders.reconcile import open_mismatches

        mismatches = open_mismatches()
    except Exception:
        logger.warning("/ready: reconciliation state unreadable", exc_info=True)
        return {"state": "unknown"}, "reconciliation: state unreadable"
    if not mismatches:
        return {"state": "ok", "open": 0}, None
    named = ", ".join(f"{m.kind} {m.exchange_segment}:{m.security_id}" for m in mismatches[:5])
    return (
        {"state": "degraded", "open": len(mismatches)},
        f"reconciliation: {len(mismatches)} broker/journal mismatch(es) open ({named}); "
        "resolve them in the admin",
    )


def _feed(record: dict | None, now: float) -> tuple[dict[str, Any], str | None]:
    if record is None:
        return {"state": "absent"}, "feed: no health record (is the feed hub running?)"
    state = _public(record.get("state", "unknown"))
    at = record.get("at")
    since = record.get("since")
    feed: dict[str, Any] = {
        "state": state,
        "reason": _public(record.get("reason", "")),
        "since": since if isinstance(since, int | float) else None,
        "age": round(now - at, 1) if isinstance(at, int | float) else None,
    }
    if state == "down":
        return feed, f"feed: down ({feed['reason']})" if feed["reason"] else "feed: down"
    if state not in ("healthy", "stale"):
        return feed, f"feed: unknown state {state!r}"
    return feed, None
