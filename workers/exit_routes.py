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
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from workers.child_process import ChildProcess, say_failed, setup_django

logger = logging.getLogger(__name__)

CLOCK_EVERY = 1.0  # seconds between reads of the feed hub's market clock
READY_WAIT = 20.0  # seconds the process waits for its route threads' connections to open


class RoutesDied(RuntimeError):
    """The exit engine's route process is gone: the engine cannot send exits and stops."""


Done = Callable[[int, str, str, float], None]


class RouteProcess(ChildProcess):
    """The parent's side (workers/child_process.py): start the process, hand it decisions,
    get their outcomes on a reader thread (``on_done(seq, outcome, detail, finished)``), and
    notice its death (``on_died(RoutesDied)``)."""

    what = "route process"
    died = RoutesDied

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
        super().__init__(
            serve,
            (live, redis_url, prefix, threads, database),
            name="exit-engine-routes",
            on_message=self._answer,
            on_died=on_died,  # type: ignore[arg-type]
        )
        self.live = live
        self.on_done = on_done
        self.threads = threads

    def start(self) -> None:
        super().start()
        pid = self.process.pid
        logger.info("exit engine: routes in process %d (%d threads)", pid, self.threads)

    def put(self, seq: int, position_id: int, exit_type: str, reason: str, **decision: Any) -> None:
        """Hand one decision over. RoutesDied when the process is gone."""
        self.put_many([(seq, position_id, str(exit_type), reason, decision)])

    def put_many(self, items: list[tuple[int, int, str, str, dict[str, Any]]]) -> None:
        """Hand decisions over in one message, each ``(seq, position_id, exit_type, reason,
        decision)``. RoutesDied when the process is gone."""
        self.send(items)

    def _answer(self, message: Any) -> None:
        if message[:1] == ("done",):
            _, seq, outcome, detail, finished = message
            self.on_done(seq, outcome, detail, finished)


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
        say_failed(conn, exc)
        return
    from django.db import close_old_connections, connections

    from trading.dhan.errors import AuthFailure
    from trading.orders.router import ExitRefused
    from workers.warm_db import WarmConnection

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

    def drain(warm: WarmConnection, opened: threading.Event) -> None:
        try:
            try:
                # Before the process says it is ready: no route opens a connection or pays
                # the first passes through the claim (OrderRouter.warm_up).
                warm.open()
            finally:
                opened.set()
            while True:
                item = warm.take(work)
                if item is None:
                    return
                seq, position_id, exit_type, reason, decision = item
                if failed.is_set():
                    refused = "not routed: the broker refused the credentials"
                    answer("done", seq, "auth", refused, time.time())
                    continue
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

    opened = [threading.Event() for _ in range(threads)]
    workers = [
        threading.Thread(
            target=drain,
            args=(
                WarmConnection(f"exit engine (routes) {slot}", warm=router.warm_up),
                opened[slot],
            ),
            name=f"exit-routes-{slot}",
            daemon=True,
        )
        for slot in range(threads)
    ]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + READY_WAIT
    for event in opened:  # a database that does not answer: the first routes open their own
        event.wait(max(0.0, deadline - time.monotonic()))
    # Market time and the config are kept current by a thread of their own, off the routes'
    # path (a config re-read is milliseconds of interpreter and a round trip: ReloadingConfig).
    config = router.config_source
    config.refresh_elsewhere()
    ended = threading.Event()

    def keep() -> None:
        try:
            while not ended.wait(CLOCK_EVERY):
                close_old_connections()
                follow()
                config.refresh()
        finally:
            connections.close_all()  # this thread's

    keeper = threading.Thread(target=keep, name="exit-routes-keeper", daemon=True)
    keeper.start()
    answer("ready")
    try:
        while True:
            try:
                item = conn.recv()
            except (EOFError, OSError):
                break  # the engine is gone
            if item is None:
                break
            for one in item:  # put_many's list, in the order the decisions were made
                work.put(one)
    finally:
        ended.set()
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
    setup_django(database)
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
