"""The exit engine's route process (workers/exit_routes.py), a real spawned process on the
test's PostgreSQL database and a real Redis: it routes what it is handed exactly as the
engine's router threads do, answers each decision, dies loudly for the engine, and never
outlives the engine."""

from __future__ import annotations

import os
import queue
import signal
import socket
import time
from decimal import Decimal
from typing import Any

import pytest

from tests.support.waiting import wait_until
from tests.workers.test_exit_engine import KEY, Desk
from trading.models import PositionTracker
from trading.rules.market import IST
from trading.rules.vocab import ExitType
from workers.exit_routes import RouteProcess, RoutesDied
from workers.realtime.keys import MARKET_CLOCK
from workers.realtime.record import TickRecord, encode_depth
from workers.realtime.services import Realtime

pytestmark = pytest.mark.django_db(transaction=True)


class Routes:
    """A RouteProcess whose answers land on a queue."""

    def __init__(self, shared: Realtime, **database: Any) -> None:
        from django.db import connection

        self.done: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.died: queue.SimpleQueue[RoutesDied] = queue.SimpleQueue()
        self.process = RouteProcess(
            live=False,
            redis_url=shared.redis_url,
            prefix=shared.prefix,
            on_done=lambda *answer: self.done.put(answer),
            on_died=self.died.put,
            threads=2,
            database={"NAME": connection.settings_dict["NAME"], **database},
        )

    def answer(self, timeout: float = 30.0) -> tuple[Any, ...]:
        return self.done.get(timeout=timeout)


def market_and_book(desk: Desk, shared: Realtime, ltp: float = 95.0) -> None:
    """What the feed hub would have left in Redis: market time (the desk's) and a fresh full
    tick of the position's contract (bid 0.05 under ``ltp``)."""
    shared.kv.put(
        MARKET_CLOCK, {"exchange_time": desk.market.now, "wall_time": time.time(), "rate": 1.0}
    )
    bid, ask = round(ltp - 0.05, 2), round(ltp + 0.05, 2)
    levels = [(6500, 6500, 1, 1, bid, ask)] + [(0, 0, 0, 0, 0.0, 0.0)] * 4
    shared.ticks.publish(
        [
            TickRecord(
                key=KEY,
                seq=1,
                ltp=ltp,
                exchange_time=desk.market.now,
                receive_time=time.time(),
                bid=bid,
                bid_qty=6500,
                ask=ask,
                ask_qty=6500,
                depth_raw=encode_depth(levels),
            )
        ]
    )


def decision(desk: Desk) -> dict[str, Any]:
    from datetime import datetime

    at = datetime.fromtimestamp(desk.market.now, IST)
    return {
        "trigger_price": Decimal("88.00"),
        "inputs": {"stop": "88.00", "ltp": "87.50"},
        "decided_at": at,
        "tick_at": at,
    }


def test_the_route_process_claims_journals_and_sends_an_exit_and_refuses_a_second(shared):
    desk = Desk()
    pid = desk.enter()
    market_and_book(desk, shared)
    routes = Routes(shared)
    routes.process.start()
    try:
        child = routes.process.process
        assert child.is_alive() and child.pid != os.getpid()
        routes.process.put(1, pid, ExitType.STOP_LOSS, "ltp 87.50 <= stop 88.00", **decision(desk))
        seq, outcome, detail, finished = routes.answer()
        assert (seq, outcome) == (1, "exit") and "sent" in detail, detail
        assert finished <= time.time()
        position = PositionTracker.objects.get(pk=pid)
        assert (position.status, position.exit_type) == ("exiting", "STOP_LOSS")
        assert position.exit_trigger_price == Decimal("88.00")
        (order,) = position.orders.filter(leg="exit")
        # Priced from the bid the process read from Redis (94.95), less the limit buffer,
        # journaled with its send claimed, sent to the paper gateway; the ack (TRANSIT, the
        # paper id) is written just after by the process's ack writer.
        assert order.limit_price < Decimal("94.95") and order.sent_at is not None
        wait_until(
            lambda: position.orders.filter(leg="exit", status="TRANSIT").exists(), "the ack"
        )
        order.refresh_from_db()
        assert order.broker_order_id.startswith("P")
        # A second decision for the position (another engine's, say): refused, nothing sent.
        routes.process.put(2, pid, ExitType.TAKE_PROFIT, "late", **decision(desk))
        seq, outcome, detail, _ = routes.answer()
        assert (seq, outcome) == (2, "refused") and "exiting" in detail
        assert position.orders.filter(leg="exit").count() == 1
    finally:
        routes.process.stop()
    assert routes.process.process is None and routes.died.empty()


def test_decisions_handed_over_together_are_each_routed_and_answered(shared):
    """The engine hands a contract's decisions (or the kill switch's) over in one message."""
    desk = Desk()
    pids = [desk.enter(), desk.enter()]
    market_and_book(desk, shared)
    routes = Routes(shared)
    routes.process.start()
    try:
        routes.process.put_many(
            [
                (seq, pid, "KILL_SWITCH", "kill switch on", decision(desk))
                for seq, pid in enumerate(pids, start=1)
            ]
        )
        answers = sorted(routes.answer()[:2] for _ in pids)
        assert answers == [(1, "exit"), (2, "exit")]
        assert set(
            PositionTracker.objects.filter(pk__in=pids).values_list("status", flat=True)
        ) == {"exiting"}
    finally:
        routes.process.stop()


def test_a_killed_route_process_is_reported_to_the_engine_as_its_death(shared):
    desk = Desk()
    market_and_book(desk, shared)
    routes = Routes(shared)
    routes.process.start()
    child = routes.process.process
    child.kill()
    died = routes.died.get(timeout=10)
    assert isinstance(died, RoutesDied)
    assert f"route process died (killed by signal {int(signal.SIGKILL)})" in str(died)
    with pytest.raises(RoutesDied, match="route process is gone"):
        routes.process.put(1, 1, ExitType.MANUAL, "after the death")
    routes.process.stop()


def test_the_route_process_ends_when_the_engine_is_gone(shared):
    """A SIGKILLed engine closes its end of the pipe with it: the process finishes what it
    took and exits by itself, no orphan left holding database connections."""
    desk = Desk()
    market_and_book(desk, shared)
    routes = Routes(shared)
    routes.process.start()
    child = routes.process.process
    routes.process._stopping = True  # the reader would otherwise report the end as a death
    # What the engine's death does to its end of the pipe (its reader thread still holds the
    # descriptor here, so a close would not reach the other side; a shutdown does).
    socket.socket(fileno=os.dup(routes.process._conn.fileno())).shutdown(socket.SHUT_RDWR)
    child.join(15)
    assert child.exitcode == 0
    assert routes.died.empty()


def test_a_route_process_that_cannot_know_market_time_does_not_start(shared):
    routes = Routes(shared)  # no market:clock in Redis: no feed hub has run
    with pytest.raises(RoutesDied, match="market time is not known"):
        routes.process.start()


def test_the_route_threads_connect_and_warm_the_claim_before_the_process_is_ready(shared):
    """Each route thread opens its connection and runs the exit's claim inert (prepared and
    planned, nothing written: OrderRouter.warm_up) before the process says it is ready; the
    first exit then runs on a connection opened before the start returned, as a prepared
    statement (PostgreSQL shows its parameters as $n), never on one it had to open."""
    from django.db import connection

    from tests.trading.orders.test_journal import facts_of

    def backends() -> dict[int, tuple[float, str]]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid, extract(epoch FROM backend_start), query FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return {pid: (float(start), query) for pid, start, query in cursor.fetchall()}

    desk = Desk()
    pid = desk.enter()
    market_and_book(desk, shared)
    before = set(backends())
    routes = Routes(shared)  # two route threads
    routes.process.start()
    ready = time.time()
    try:
        opened = {p: seen for p, seen in backends().items() if p not in before}
        warmed = [p for p, (_, sql) in opened.items() if "UPDATE trading_positiontracker" in sql]
        assert len(warmed) >= 2, opened  # each thread's connection, its claim run inert
        assert PositionTracker.objects.get(pk=pid).status == "active"
        position = PositionTracker.objects.get(pk=pid)
        routes.process.put(
            1,
            pid,
            ExitType.STOP_LOSS,
            "ltp 87.50 <= stop 88.00",
            expect=facts_of(position),
            **decision(desk),
        )
        seq, outcome, detail, _ = routes.answer()
        assert (seq, outcome) == (1, "exit") and "sent" in detail, detail
        claimed_on = [
            (start, query)
            for p, (start, query) in backends().items()
            if p not in before and query.startswith("WITH c AS (UPDATE trading_positiontracker")
        ]
        assert claimed_on and all(start < ready for start, _ in claimed_on), claimed_on
        assert all("$1" in query for _, query in claimed_on)  # bound on the server: prepared
        assert PositionTracker.objects.get(pk=pid).status == "exiting"
    finally:
        routes.process.stop()


def test_an_idle_route_thread_replaces_its_aged_connection_and_warms_the_new_one(shared):
    """Past CONN_MAX_AGE (1 s here) and idle for IDLE_EVERY (5 s), each route thread closes
    its connection and opens and warms the next at once: the backends change and each new
    one has run the claim inert (its last statement); exits route as before."""
    from django.db import connection

    from tests.trading.orders.test_journal import facts_of

    def route_backends() -> dict[int, float]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid, extract(epoch FROM backend_start) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND query LIKE 'WITH c AS (UPDATE trading_positiontracker%%'"
            )
            return {pid: float(start) for pid, start in cursor.fetchall()}

    desk = Desk()
    pid = desk.enter()
    market_and_book(desk, shared)
    routes = Routes(shared, CONN_MAX_AGE=1)  # two route threads
    routes.process.start()
    try:
        first = route_backends()
        assert len(first) == 2, first
        wait_until(
            lambda: len(set(route_backends()) - set(first)) == 2,
            "both route threads on new, warmed connections",
            timeout=20,
        )
        position = PositionTracker.objects.get(pk=pid)
        routes.process.put(
            1, pid, ExitType.STOP_LOSS, "stop", expect=facts_of(position), **decision(desk)
        )
        assert routes.answer()[:2] == (1, "exit")
        assert PositionTracker.objects.get(pk=pid).status == "exiting"
    finally:
        routes.process.stop()
