"""The exit engine exits exactly once across crashes: split-mode workers (run_feed_hub,
run_signal_engine, run_order_updates, run_exit_engine) as real processes in live mode, against a
simulator that lives in the test process (its order book outlives every worker, as Dhan's
does; tests/support/trader.py).

Positions are opened by the signal engine and filled at the broker; then the kill switch makes
the exit engine flatten them. The exit engine is SIGKILLed between the claim and the send
(``exit:claimed``) and between the send and its answer (``send:answered``: the broker has the
exit order, the journal does not know it), and restarted: every position is closed exactly
once, one exit order set at the broker, the right realized PnL. Two exit engines on one
database flatten the same book with one exit order set per position.

The order manager is stopped while the exit engine dies, so the only driver of the exit at
that moment is the engine under test (otherwise the order manager, which drives every claimed
exit, could send it first and the failpoint would never be reached); it is started again with
the engine. The failpoints are on the exit's route, which runs in the engine's route process
(workers/exit_routes.py): that process dies by the SIGKILL and the engine stops with it. An
engine SIGKILLed from outside leaves neither its route process nor its marks process
(workers/exit_marks.py) behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

from tests.support.trader import (
    BrokerBook,
    Desk,
    Trader,
    assert_exactly_once,
    desk_for,
    settled,
    stop_entries,
)
from trading.models import Fill, Order, PositionTracker
from trading.switches import set_kill_switch
from workers.realtime.kv_store import RedisKeyValueStore

# The watchlist rows of the data migration: written by desk_for (seed_watchlist).
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def desk(tmp_path, redis_url, redis_client) -> Iterator[Desk]:
    yield from desk_for(tmp_path, redis_url)


def open_book(desk: Desk) -> tuple[Trader, Trader, list[int]]:
    """The feed hub and the order manager running, positions opened by the signal engine and
    filled, entries then halted and settled; returns (hub, order manager, active ids)."""
    hub = desk.start(command="run_feed_hub")
    manager = desk.start(command="run_order_updates")
    engine = desk.start(command="run_signal_engine")
    workers = [hub, manager, engine]
    desk.wait(
        lambda: PositionTracker.objects.filter(status="active").exists(),
        "an entry from the signal engine filled at the broker",
        trader=workers,
    )
    stop_entries()
    engine.stop()
    desk.wait(lambda: settled(desk.sim), "the entries to settle", trader=[hub, manager])
    active = list(
        PositionTracker.objects.filter(status="active").order_by("pk").values_list("pk", flat=True)
    )
    assert active
    return hub, manager, active


def restart_and_settle(desk: Desk, hub: Trader, ids: list[int]) -> BrokerBook:
    """The order manager and the exit engine started again: every position exited and the
    orders settled, every worker stopped cleanly, the exactly-once check passed."""
    workers = [hub, desk.start(command="run_order_updates"), desk.start(command="run_exit_engine")]
    desk.wait(lambda: flattened(ids), "every position exited after the restart", trader=workers)
    desk.wait(lambda: settled(desk.sim), "the exit orders to settle", trader=workers)
    for worker in workers:
        worker.stop()
    return assert_exactly_once(desk.sim)


def flattened(ids: list[int]) -> bool:
    return PositionTracker.objects.filter(pk__in=ids, status="exited").count() == len(ids)


def assert_closed_once_with_the_right_pnl(ids: list[int], book: BrokerBook) -> None:
    at_broker = book.by_correlation()
    for position in PositionTracker.objects.filter(pk__in=ids):
        assert position.status == "exited" and position.exit_type == "KILL_SWITCH", position
        exits = list(Order.objects.filter(position=position, leg="exit"))
        # One exit order set: one generation, one order per freeze slot, each sent once.
        assert {o.generation for o in exits} == {0}, exits
        assert sorted(o.leg_index for o in exits) == list(range(len(exits)))
        assert all(o.correlation_id in at_broker for o in exits)
        assert sum(o.filled_quantity for o in exits) == position.quantity
        fills = Fill.objects.filter(order__position=position)
        bought = sum((f.price * f.quantity for f in fills if f.order.leg == "entry"), Decimal(0))
        sold = sum((f.price * f.quantity for f in fills if f.order.leg == "exit"), Decimal(0))
        charges = sum((f.charges for f in fills), Decimal(0))
        assert position.charges == charges
        assert position.gross_pnl == (sold - bought).quantize(Decimal("0.01"), ROUND_HALF_UP)
        assert position.realized_pnl == (sold - bought - charges).quantize(
            Decimal("0.01"), ROUND_HALF_UP
        )


def test_killed_between_the_claim_and_the_send_the_restart_exits_once(desk):
    hub, manager, ids = open_book(desk)
    manager.stop()  # the engine alone drives the exit it claims
    engine = desk.start("exit:claimed", command="run_exit_engine")
    set_kill_switch(True, "e2e: flatten")
    engine.killed_itself(in_routes=True)  # the engine's route process, and the engine
    claimed = PositionTracker.objects.filter(pk__in=ids, status="exiting")
    assert claimed.exists()
    # The engine hands its router the facts it judged: the claim journals the first exit
    # orders in its own statement, their sends claimed (trading/orders/router.py). Killed
    # there, a claimed position has them (or none, where the router had no fresh price and
    # claimed alone), UNKNOWN and sent as far as the journal knows, and the broker has none:
    # the restart looks each one up by its correlation id, finds it nowhere, and sends it,
    # once.
    exits = list(Order.objects.filter(position_id__in=ids, leg="exit"))
    assert {o.position_id for o in exits} <= set(claimed.values_list("pk", flat=True))
    assert all(o.status == "UNKNOWN" and o.sent_at and not o.broker_order_id for o in exits)
    assert not [o for o in desk.sim.broker.orders() if o["transactionType"] == "SELL"]

    book = restart_and_settle(desk, hub, ids)
    assert_closed_once_with_the_right_pnl(ids, book)


def test_killed_between_the_send_and_its_answer_the_exit_is_not_sent_again(desk):
    hub, manager, ids = open_book(desk)
    manager.stop()
    engine = desk.start("send:answered", command="run_exit_engine")
    set_kill_switch(True, "e2e: flatten")
    engine.killed_itself(in_routes=True)  # the engine's route process, and the engine
    # Journaled with their sends claimed (the router threads run side by side): none has its
    # answer recorded, and the broker has the one whose answer the failpoint cut off (and
    # maybe another thread's), not necessarily all of them.
    claimed = list(Order.objects.filter(leg="exit", sent_at__isnull=False))
    assert claimed and all(o.status == "UNKNOWN" and not o.broker_order_id for o in claimed)
    at_broker = BrokerBook.read(desk.sim).by_correlation()
    sent = [o for o in claimed if o.correlation_id in at_broker]
    assert sent

    book = restart_and_settle(desk, hub, ids)
    for order in sent:  # found by correlation id, never sent again
        order.refresh_from_db()
        assert order.broker_order_id == book.by_correlation()[order.correlation_id]["orderId"]
    assert_closed_once_with_the_right_pnl(ids, book)


def test_two_exit_engines_on_one_database_send_one_exit_order_set_per_position(desk):
    hub, manager, ids = open_book(desk)
    engines = [desk.start(command="run_exit_engine") for _ in range(2)]
    workers = [hub, manager, *engines]
    desk.wait(
        lambda: all("exit engine: running at market time" in e.output() for e in engines),
        "both exit engines started",
        trader=workers,
    )
    set_kill_switch(True, "e2e: flatten with two engines")
    desk.wait(lambda: flattened(ids), "every position exited", trader=workers)
    desk.wait(lambda: settled(desk.sim), "the exit orders to settle", trader=workers)
    for worker in workers:
        worker.stop()
    book = assert_exactly_once(desk.sim)
    assert_closed_once_with_the_right_pnl(ids, book)


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.update(int(child) for child in text)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited (its parent is gone: init reaps it)


def test_an_exit_engine_killed_from_outside_leaves_no_helper_process_behind(desk):
    """The engine's routes and its PnL marks run in child processes (workers/exit_routes.py,
    workers/exit_marks.py); a SIGKILL of the engine, as a container runtime gives, must not
    leave them running with their connections."""
    hub = desk.start(command="run_feed_hub")
    engine = desk.start(command="run_exit_engine")
    desk.wait(
        lambda: "exit engine: running at market time" in engine.output(),
        "the exit engine started",
        trader=[hub, engine],
    )
    # The route process, the marks process, multiprocessing's tracker.
    children = _children(engine.process.pid)

    def helper(says: str) -> list[int]:
        return [
            pid
            for pid in children
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
            and f"{says} in process {pid}" in engine.output()
        ]

    routes, marks = helper("routes"), helper("PnL marks")
    assert len(routes) == 1 and len(marks) == 1, (children, engine.tail())
    kv = RedisKeyValueStore(desk.env["REDIS_URL"], prefix="algo:")
    try:  # the heartbeat says where the exits are routed and the book is marked
        desk.wait(
            lambda: (
                (kv.get("hb:exit_engine") or {}).get("routes") == f"process {routes[0]}"
                and (kv.get("hb:exit_engine") or {}).get("marks") == f"process {marks[0]}"
            ),
            "the exit engine's heartbeat naming its route and marks processes",
            trader=[hub, engine],
        )
    finally:
        kv.close()
    engine.kill()
    desk.wait(
        lambda: not any(_alive(pid) for pid in children),
        "the route and marks processes (and multiprocessing's tracker) to end with the engine",
        15,
    )
    hub.stop()
