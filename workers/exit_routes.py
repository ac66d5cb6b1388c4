"""The exit engine's routes in a process of their own (split mode, ``run_exit_engine``).

Why a process: the exit engine's tick thread, its subscription reader and its bookkeeper keep
one interpreter busy most of the time at a full feed (20,000 ticks a second: about 60 % of a
core). A route is a few short round trips (the claim, the exit orders' journal with their send
claimed, the send; the ack is written after it by an AckWriter), and in that process each one
waited for the interpreter lock when its answer came back, up to CPython's switch interval
(5 ms) a time: tens of milliseconds from tick to exit order for two of work (bench/RESULTS.md,
"Exit engine"). Here the round trips have an interpreter to themselves.

What runs here is the router exactly as the exit engine would run it in its own threads
(``workers.orders.router_for``: the paper gateway, or the live one), on ``threads`` threads
(4, as in the engine: a kill switch flattening many positions routes them side by side), each
with its own database connection. Nothing changes about exactly-once: a decision is claimed
(active -> exiting, conditional) and its orders journaled before they are sent, here as
there, and the order manager drives any claimed exit to its end.

The two processes are one exit engine:

* the engine sends lists of ``(seq, position_id, exit_type, reason, decision)`` (the
  decisions of one contract's tick, or of one sweep) down a pipe and gets
  back ``(seq, outcome, detail, finished)``, outcome one of ``exit`` (claimed and routed),
  ``refused`` (another exit has it), ``error`` (logged here; the order manager drives a claimed
  exit on), ``auth`` (the broker refused the credentials: the engine stops trading loudly);
* the route process ends when the engine does: at the end of its pipe it finishes the routes
  it has taken and exits (a SIGKILLed engine included: its end of the pipe closes with it);
* the engine ends when the route process does: a route process that died (a crash, a kill)
  is :class:`RoutesDied` on the engine's next pass, and the engine exits with it (the
  supervisor starts it again; its start continues every claimed exit).

The process is given the engine's database (its settings, with the engine's NAME: the test
database under pytest) and Redis (URL and key prefix); market time is followed from the feed
hub's kv ``market:clock`` as the engine does.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

READY_TIMEOUT = 60.0  # seconds for the process to set Django up and say it is ready
CLOCK_EVERY = 1.0  # seconds between reads of the feed hub's market clock


class RoutesDied(RuntimeError):
    """The exit engine's route process is gone: the engine cannot send exits and stops."""


Done = Callable[[int, str, str, float], None]


class RouteProcess:
    """The parent's side: start the process, hand it decisions, get their outcomes on a
    reader thread (``on_done(seq, outcome, detail, finished)``), and notice its death
    (``on_died(RoutesDied)``)."""

    def __init__(
        self,
        *,
        live: bool,
        on_done: Done,
        on_died: Callable[[RoutesDied], None],
        redis_url: str,
        prefix: str,
        threads: int = 4,
        database: dict[str, Any] | None = None,
    ) -> None:
        self.live = live
        self.redis_url = redis_url
        self.prefix = prefix
        self.on_done = on_done
        self.on_died = on_died
        self.threads = threads
        self.database = database
        self.process: Any = None
        self._conn: Any = None
        self._reader: threading.Thread | None = None
        self._send = threading.Lock()
        self._stopping = False

    def start(self) -> None:
        ctx = mp.get_context("spawn")  # a fresh interpreter: no inherited connections
        ours, theirs = ctx.Pipe()
        process = ctx.Process(
            target=serve,
            args=(theirs, self.live, self.redis_url, self.prefix, self.threads, self.database),
            name="exit-engine-routes",
            daemon=True,
        )
        process.start()
        theirs.close()  # only the child holds its end: its death is our end of file
        try:
            if not ours.poll(READY_TIMEOUT):
                raise RoutesDied(f"the route process did not start within {READY_TIMEOUT:.0f} s")
            first = ours.recv()
        except (EOFError, OSError):
            first = None
        if not (isinstance(first, tuple) and first[:1] == ("ready",)):
            process.join(5)
            if process.is_alive():
                process.kill()
            detail = first[1] if isinstance(first, tuple) and len(first) > 1 else "no answer"
            raise RoutesDied(
                f"the route process failed to start (exit code {process.exitcode}): {detail}"
            )
        self.process, self._conn = process, ours
        self._reader = threading.Thread(
            target=self._read, name="exit-engine-routes-reader", daemon=True
        )
        self._reader.start()
        logger.info("exit engine: routes in process %d (%d threads)", process.pid, self.threads)

    def put(self, seq: int, position_id: int, exit_type: str, reason: str, **decision: Any) -> None:
        """Hand one decision over. RoutesDied when the process is gone."""
        self.put_many([(seq, position_id, str(exit_type), reason, decision)])

    def put_many(self, items: list[tuple[int, int, str, str, dict[str, Any]]]) -> None:
        """Hand decisions over in one message, each ``(seq, position_id, exit_type, reason,
        decision)``. RoutesDied when the process is gone."""
        try:
            with self._send:
                self._conn.send(items)
        except (OSError, EOFError, ValueError) as exc:
            raise RoutesDied(f"the route process is gone: {exc}") from exc

    def _read(self) -> None:
        conn = self._conn
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            if message[:1] == ("done",):
                _, seq, outcome, detail, finished = message
                try:
                    self.on_done(seq, outcome, detail, finished)
                except Exception:
                    logger.exception("exit engine: a route's outcome could not be recorded")
        if self._stopping:
            return
        process = self.process
        process.join(1.0)
        code = process.exitcode
        how = (
            f"killed by signal {-code}"
            if code is not None and code < 0
            else f"exit code {code}"
            if code is not None
            else "its pipe closed"
        )
        self.on_died(RoutesDied(f"the exit engine's route process died ({how})"))

    def stop(self, timeout: float = 30.0) -> None:
        """Route what was handed over, then end the process."""
        if self.process is None:
            return
        self._stopping = True
        try:
            with self._send:
                self._conn.send(None)
        except (OSError, EOFError, ValueError):
            pass
        self.process.join(timeout)
        if self.process.is_alive():
            logger.error("exit engine: the route process did not end in %.0f s: killed", timeout)
            self.process.kill()
            self.process.join(5)
        if self._reader is not None:
            self._reader.join(5)
        self._conn.close()
        self.process = None


# -- the child -----------------------------------------------------------------------------


def serve(
    conn: Any,
    live: bool,
    redis_url: str,
    prefix: str,
    threads: int,
    database: dict[str, Any] | None,
) -> None:
    """The route process's body (module docstring)."""
    try:
        router, follow = _setup(live, redis_url, prefix, database)
    except BaseException as exc:  # said to the engine, which raises it
        try:
            conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        finally:
            conn.close()
        return
    from django.db import close_old_connections, connections

    from trading.dhan.errors import AuthFailure
    from trading.orders.router import ExitRefused

    connections.close_all()  # the setup's: each router thread opens its own

    send_lock = threading.Lock()
    work: queue.SimpleQueue[Any] = queue.SimpleQueue()
    failed = threading.Event()  # an authentication failure: nothing more is sent

    def answer(*message: Any) -> None:
        try:
            with send_lock:
                conn.send(message)
        except (OSError, EOFError, ValueError):
            pass  # the engine is gone: the route is in the journal, which is what counts

    def drain() -> None:
        try:
            while True:
                item = work.get()
                if item is None:
                    return
                seq, position_id, exit_type, reason, decision = item
                if failed.is_set():
                    refused = "not routed: the broker refused the credentials"
                    answer("done", seq, "auth", refused, time.time())
                    continue
                close_old_connections()
                try:
                    result = router.exit_position(position_id, exit_type, reason, **decision)
                except ExitRefused as exc:
                    answer("done", seq, "refused", str(exc), time.time())
                except AuthFailure as exc:
                    failed.set()
                    answer("done", seq, "auth", str(exc), time.time())
                except Exception as exc:
                    logger.exception(
                        "exit engine (routes): routing the exit of #%d failed", position_id
                    )
                    answer("done", seq, "error", f"{type(exc).__name__}: {exc}", time.time())
                else:
                    answer("done", seq, "exit", result.detail, time.time())
        finally:
            connections.close_all()

    workers = [
        threading.Thread(target=drain, name=f"exit-routes-{slot}", daemon=True)
        for slot in range(threads)
    ]
    for worker in workers:
        worker.start()
    answer("ready")
    next_clock = time.monotonic() + CLOCK_EVERY
    try:
        while True:
            try:
                item = conn.recv()
            except (EOFError, OSError):
                break  # the engine is gone
            if item is None:
                break
            if time.monotonic() >= next_clock:
                next_clock = time.monotonic() + CLOCK_EVERY
                follow()
            for one in item:  # put_many's list, in the order the decisions were made
                work.put(one)
    finally:
        for _ in workers:
            work.put(None)
        for worker in workers:
            worker.join(30)
        if router.acks is not None:
            router.acks.close()  # the acks of what was sent, written before the end
        connections.close_all()
        conn.close()


def _setup(
    live: bool, redis_url: str, prefix: str, database: dict[str, Any] | None
) -> tuple[Any, Callable[[], None]]:
    """Django, the router as the exit engine builds it, and the market clock's follower."""
    import django

    django.setup()
    if database:
        from django.conf import settings

        settings.DATABASES["default"].update(database)
    from trading.orders.acks import AckWriter
    from workers.market_clock import MarketClock
    from workers.orders import reloading_config, router_for
    from workers.realtime.keys import MARKET_CLOCK
    from workers.realtime.redis_client import StoreUnavailable
    from workers.realtime.services import redis_realtime

    realtime = redis_realtime(redis_url, prefix=prefix)
    clock = MarketClock(name="exit routes")

    def follow() -> None:
        try:
            clock.follow(realtime.kv.get(MARKET_CLOCK))
        except StoreUnavailable as exc:
            logger.warning("exit engine (routes): market clock not read: %s", exc)

    follow()
    if not clock.synced:
        raise RoutesDied("market time is not known (the feed hub's market:clock is not set)")
    # The broker's acks are written off the route's path, as the signal engine writes its
    # entries' (trading/orders/acks.py): the exit order is on the wire once the send returns.
    acks = AckWriter(name="exit-route-acks")
    router = router_for(
        realtime, live=live, clock=clock, config_source=reloading_config(), acks=acks
    )
    return router, follow
