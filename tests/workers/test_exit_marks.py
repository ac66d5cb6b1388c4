"""The exit engine's marks process (workers/exit_marks.py) on the test's PostgreSQL database and
a real Redis: it marks the open book from the ticks the feed hub leaves in Redis, marks again
only what moved, finishes what left the open set, and lives and dies with the engine (a real
spawned process for that part)."""

from __future__ import annotations

import os
import queue
import signal
import socket
import time
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from tests.support.waiting import wait_until
from tests.workers.test_exit_engine import KEY, Desk
from trading.models import PositionTracker
from workers.exit_marks import MarksDied, MarksProcess
from workers.pnl import BookMarks, PnlCache
from workers.realtime.record import TickRecord
from workers.realtime.services import Realtime

pytestmark = pytest.mark.django_db(transaction=True)


def publish(shared: Realtime, ltp: float, seq: int) -> None:
    """What the feed hub leaves in Redis: the contract's latest tick."""
    shared.ticks.publish(
        [TickRecord(key=KEY, seq=seq, ltp=ltp, exchange_time=None, receive_time=time.time())]
    )


def test_the_book_is_marked_from_redis_again_only_when_its_tick_moved_and_finished_when_gone(
    shared,
):
    desk = Desk()
    pid = desk.enter()  # 65 units at 100.10
    entry = PositionTracker.objects.get(pk=pid).entry_price
    marks = BookMarks(shared)
    cache = PnlCache(shared.kv)
    assert marks.mark_once(time.time()) == 0  # no tick of its contract in Redis yet
    assert cache.get(pid) is None

    publish(shared, 110.0, seq=1)
    assert marks.mark_once(time.time()) == 1
    snapshot = cache.get(pid)
    assert snapshot.ltp == 110.0 and snapshot.gross == (Decimal("110") - entry) * 65
    assert marks.mark_once(time.time()) == 0  # the same tick: nothing to mark again
    publish(shared, 90.0, seq=2)
    assert marks.mark_once(time.time()) == 1
    assert cache.get(pid).gross == (Decimal("90") - entry) * 65

    # A fill changes the row (its fingerprint): read again and marked again on the same tick.
    PositionTracker.objects.filter(pk=pid).update(quantity=130)
    assert marks.mark_once(time.time()) == 1
    assert cache.get(pid).gross == (Decimal("90") - entry) * 130

    # It left the open set: its last mark copied to the row, its pnl:{id} deleted.
    PositionTracker.objects.filter(pk=pid).update(status="exited")
    assert marks.mark_once(time.time()) == 0
    assert cache.get(pid) is None and not marks.positions and not marks.by_key
    row = PositionTracker.objects.get(pk=pid)
    assert row.ltp == Decimal("90") and row.unrealized_pnl == (Decimal("90") - entry) * 130
    assert marks.errors == 0, marks.last_error


def test_a_round_with_redis_down_is_an_error_counted_not_a_crash(shared):
    desk = Desk()
    desk.enter()
    marks = BookMarks(shared)

    def down(keys: Any) -> Any:
        from workers.realtime.redis_client import StoreUnavailable

        raise StoreUnavailable("reading ticks: connection refused")

    marks.ticks.get_many = down  # type: ignore[method-assign]
    assert marks.mark_once(time.time()) == 0
    assert marks.errors == 1 and marks.last_error == "ticks: StoreUnavailable"


class Marks:
    """A MarksProcess whose counters and death land on queues."""

    def __init__(self, shared: Realtime, interval: float = 0.2) -> None:
        from django.db import connection

        self.counts: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.died: queue.SimpleQueue[MarksDied] = queue.SimpleQueue()
        self.process = MarksProcess(
            on_counts=lambda *counts: self.counts.put(counts),
            on_died=self.died.put,
            redis_url=shared.redis_url,
            prefix=shared.prefix,
            interval=interval,
            database={"NAME": connection.settings_dict["NAME"]},
        )


def test_the_marks_process_marks_the_book_and_says_how_many(shared):
    desk = Desk()
    pid = desk.enter()
    publish(shared, 104.0, seq=1)
    marks = Marks(shared)
    marks.process.start()
    try:
        child = marks.process.process
        assert child.is_alive() and child.pid != os.getpid()
        cache = PnlCache(shared.kv)
        wait_until(lambda: cache.get(pid) is not None, "the position's first mark")
        assert cache.get(pid).ltp == 104.0
        publish(shared, 107.5, seq=2)
        wait_until(lambda: cache.get(pid).ltp == 107.5, "the mark of the next tick")
        updates, errors, last_error = marks.counts.get(timeout=10)
        while updates < 2:
            updates, errors, last_error = marks.counts.get(timeout=10)
        assert (updates, errors, last_error) == (2, 0, None)
    finally:
        marks.process.stop()
    assert marks.process.process is None and marks.died.empty()


def test_a_killed_marks_process_is_reported_to_the_engine_as_its_death(shared):
    marks = Marks(shared)
    marks.process.start()
    marks.process.process.kill()
    died = marks.died.get(timeout=10)
    assert isinstance(died, MarksDied)
    assert f"marks process died (killed by signal {int(signal.SIGKILL)})" in str(died)
    with pytest.raises(MarksDied, match="marks process is gone"):
        marks.process.send(("anything",))
    marks.process.stop()


def test_the_marks_process_ends_when_the_engine_is_gone(shared):
    marks = Marks(shared, interval=30.0)  # asleep between rounds: the pipe's end wakes it
    marks.process.start()
    child = marks.process.process
    marks.process._stopping = True  # the reader would otherwise report the end as a death
    socket.socket(fileno=os.dup(marks.process._conn.fileno())).shutdown(socket.SHUT_RDWR)
    child.join(15)
    assert child.exitcode == 0
    assert marks.died.empty()


def test_a_marks_process_that_cannot_start_says_why(shared):
    marks = Marks(shared)
    marks.process.args = ("not-a-url", *marks.process.args[1:])  # a bad REDIS_URL, say
    with pytest.raises(MarksDied, match=r"marks process failed to start .*Redis URL must"):
        marks.process.start()
    assert marks.process.process is None


def test_an_engine_with_its_marks_process_leaves_the_marks_to_it(shared):
    """The engine (threads for its routes, the marks process on): the book is marked by the
    child from Redis, never by the engine's bookkeeper; the heartbeat names the child, whose
    counters it carries; the child ends with the engine."""
    import threading

    from workers.exit_engine import ExitEngine

    desk = Desk()
    pid = desk.enter()
    engine = ExitEngine(
        shared,
        desk.make_router(),
        config_source=desk.config_source,
        clock=desk.market.clock,
        marks_process=True,
    )
    engine.sweep_interval = 0.2
    marked_here: list[float] = []
    engine.mark_pnl = marked_here.append  # type: ignore[method-assign]
    stop = threading.Event()
    runner = threading.Thread(target=engine.run, args=(stop,))
    runner.start()
    try:
        wait_until(lambda: engine._marks is not None and engine.watched, "the engine to start")
        child = engine._marks.process
        publish(shared, 101.5, seq=1)
        cache = PnlCache(shared.kv)
        wait_until(lambda: (cache.get(pid) or SimpleNamespace(ltp=0)).ltp == 101.5, "a mark")
        wait_until(lambda: engine._beat_fields()["updates"] >= 1, "the child's counters")
        assert engine._beat_fields()["marks"] == f"process {child.pid}"
        assert not engine._unmarked and not marked_here
    finally:
        stop.set()
        runner.join(20)
    assert not runner.is_alive()
    child.join(10)
    assert child.exitcode == 0 and engine._marks is None
