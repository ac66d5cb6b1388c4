"""The order journal and the router on the paper gateway: journal before send, idempotency,
fills and their charges, the position's life, the paper ledger, exits claimed once."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from trading.dhan.errors import Rejected, UnknownOutcome
from trading.models import Fill, LedgerEntry, Order, PositionTracker
from trading.orders.gateway import Ack, PaperGateway
from trading.orders.intent import REJECTED, ROUTED
from trading.orders.journal import OrderEvent, TradeFill, apply_event, id_salt
from trading.orders.ledger import check_ledger, paper_cash
from trading.orders.router import ExitRefused
from trading.orders.states import JournalStatus

from .conftest import T0, real_charges

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]  # on SQLite too (make test)

S = JournalStatus


def event(order: Order, status: str, *trades: tuple[str, int, str], minutes: int = 0) -> OrderEvent:
    return OrderEvent(
        status=S(status),
        at=T0 + timedelta(minutes=minutes),
        correlation_id=order.correlation_id,
        trades=tuple(TradeFill(t, q, Decimal(p)) for t, q, p in trades),
    )


def apply(e: OrderEvent) -> bool:
    return apply_event(e, real_charges, paper=True)


class Recording(PaperGateway):
    """The paper gateway, noting the journal's state at the moment of each send."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail
        self.seen: list[tuple[str, str]] = []

    def place(self, order, at):
        row = Order.objects.get(pk=order.pk)
        self.seen.append((row.correlation_id, row.status))
        if self.fail is not None:
            raise self.fail
        return super().place(order, at)


def test_an_entry_is_journaled_before_it_is_sent_and_acknowledged_after(router, intent):
    router.gateway = gateway = Recording()
    result = router.place_entry(intent())
    assert result.status == ROUTED
    (order,) = Order.objects.all()
    assert gateway.seen == [(order.correlation_id, S.UNKNOWN)]  # the row existed at the send
    assert order.status == S.TRANSIT and order.broker_order_id.startswith("P")
    assert order.correlation_id.startswith("AS-EN-") and len(order.correlation_id) <= 25
    position = order.position
    assert (position.status, position.quantity, position.mode) == ("pending", 0, "paper")
    assert position.opened_at == T0 and position.underlying_entry == Decimal("26012.35")


def test_an_intent_handed_twice_sends_nothing_twice(router, intent):
    router.gateway = gateway = Recording()
    entry = intent(orders=(1755, 195))
    router.place_entry(entry)
    router.place_entry(entry)
    assert len(gateway.seen) == 2  # two freeze-split orders, each sent once
    assert PositionTracker.objects.count() == 1 and Order.objects.count() == 2


def test_a_rejection_ends_the_entry_with_the_brokers_reason(router, intent):
    router.gateway = Recording(
        Rejected("Insufficient funds", status=400, code="DH-906", error_type="Order_Error")
    )
    result = router.place_entry(intent())
    assert result.status == REJECTED and "DH-906: Insufficient funds" in result.detail
    (order,) = Order.objects.all()
    assert order.status == S.REJECTED and order.rejection_reason == "DH-906: Insufficient funds"
    assert order.position.status == "cancelled"


def test_a_lost_answer_leaves_the_order_unknown_and_it_is_never_sent_again_blindly(router, intent):
    router.gateway = gateway = Recording(UnknownOutcome("read timed out"))
    entry = intent()
    router.place_entry(entry)
    router.gateway = Recording()
    router.place_entry(entry)  # the same intent again: nothing may go out
    (order,) = Order.objects.all()
    assert order.status == S.UNKNOWN and order.sent_at is not None
    assert len(gateway.seen) == 1 and router.gateway.seen == []


def test_fills_make_the_position_and_charge_brokerage_once_per_order(router, intent):
    router.place_entry(intent())
    (order,) = Order.objects.all()
    assert apply(event(order, "PENDING"))
    assert apply(event(order, "PART_TRADED", ("t1", 65, "100.00")))
    position = PositionTracker.objects.get()
    assert (position.status, position.quantity, position.entry_price) == (
        "active",
        65,
        Decimal("100.0000"),
    )
    assert apply(event(order, "TRADED", ("t2", 65, "101.00")))
    order.refresh_from_db()
    assert (order.filled_quantity, order.average_price) == (130, Decimal("100.5000"))
    # The order's charges are those of one executed order of 130 at 100.50; the fills split
    # them (the first carries the brokerage), and sum to them exactly.
    whole = real_charges("NSE_FNO", "BUY", 130, Decimal("13065.00"), T0.date())
    assert order.charges == whole
    first, second = Fill.objects.order_by("pk")
    assert first.charges + second.charges == whole
    assert first.charges > 20 > second.charges
    position.refresh_from_db()
    assert (position.quantity, position.entry_price, position.charges) == (
        130,
        Decimal("100.5000"),
        whole,
    )


def test_an_event_applied_twice_or_late_changes_nothing(router, intent):
    router.place_entry(intent())
    (order,) = Order.objects.all()
    traded = event(order, "TRADED", ("t1", 130, "100.00"))
    assert apply(traded)
    assert not apply(traded)  # the same update again
    assert not apply(event(order, "PENDING"))  # the late PENDING after TRADED
    order.refresh_from_db()
    assert order.status == S.TRADED and order.filled_quantity == 130
    assert Fill.objects.count() == 1


def test_a_fill_beyond_the_order_quantity_is_refused(router, intent):
    router.place_entry(intent())
    (order,) = Order.objects.all()
    apply(event(order, "PART_TRADED", ("t1", 65, "100")))
    assert not apply(event(order, "PART_TRADED", ("t2", 130, "100")))
    order.refresh_from_db()
    assert order.filled_quantity == 65


def test_a_cumulative_report_books_only_the_units_not_booked_yet(router, intent):
    router.place_entry(intent())
    (order,) = Order.objects.all()
    cumulative = OrderEvent(
        S.PART_TRADED, T0, correlation_id=order.correlation_id, filled=65, average=Decimal("100")
    )
    assert apply(cumulative) and not apply(cumulative)
    later = OrderEvent(
        S.TRADED, T0, correlation_id=order.correlation_id, filled=130, average=Decimal("100.5")
    )
    assert apply(later)
    prices = list(Fill.objects.order_by("pk").values_list("quantity", "price"))
    assert prices == [(65, Decimal("100.0000")), (65, Decimal("101.0000"))]


def test_an_entry_cancelled_with_nothing_filled_cancels_the_position(router, intent):
    router.place_entry(intent())
    (order,) = Order.objects.all()
    apply(event(order, "CANCELLED"))
    assert PositionTracker.objects.get().status == "cancelled"


def test_a_partly_filled_then_cancelled_entry_is_a_position_of_what_filled(router, intent):
    router.place_entry(intent())
    (order,) = Order.objects.all()
    apply(event(order, "PART_TRADED", ("t1", 65, "100")))
    apply(event(order, "CANCELLED"))
    position = PositionTracker.objects.get()
    assert (position.status, position.quantity) == ("active", 65)


def test_a_freeze_split_entry_pays_brokerage_per_order(router, intent):
    router.place_entry(intent(orders=(1755, 195)))
    big, small = Order.objects.order_by("leg_index")
    apply(event(big, "TRADED", ("a", 1755, "100")))
    apply(event(small, "TRADED", ("b", 195, "100")))
    assert big.correlation_id.endswith("-0-0") and small.correlation_id.endswith("-1-0")
    big.refresh_from_db()
    small.refresh_from_db()
    one = real_charges("NSE_FNO", "BUY", 1950, Decimal("195000"), T0.date())
    # Brokerage and its GST twice (Rs 20 + 18 % each), not once.
    assert big.charges + small.charges - one == Decimal("23.60")


def test_an_exit_is_claimed_once_and_books_the_round_trip_in_the_ledger(router, intent, market):
    router.place_entry(intent())
    (entry,) = Order.objects.all()
    apply(event(entry, "TRADED", ("t1", 130, "100.00")))
    position = PositionTracker.objects.get()
    market.quotes[position.key] = (Decimal("110.00"), Decimal("110.50"), Decimal("110.20"))
    assert router.exit_position(position.pk, "MANUAL", "by hand").status == ROUTED
    with pytest.raises(ExitRefused, match="exiting, not active"):
        router.exit_position(position.pk, "MANUAL", "twice")
    (exit_order,) = Order.objects.filter(leg="exit")
    assert exit_order.side == "SELL" and exit_order.quantity == 130
    assert exit_order.limit_price == Decimal("107.80")  # 110 x (1 - 0.02), down to the tick
    assert exit_order.correlation_id == f"AS-EX-{id_salt()}{position.pk}-0-0"
    apply(event(exit_order, "TRADED", ("x1", 130, "110.00"), minutes=5))
    position.refresh_from_db()
    entry_charges = real_charges("NSE_FNO", "BUY", 130, Decimal("13000"), T0.date())
    exit_charges = real_charges("NSE_FNO", "SELL", 130, Decimal("14300"), T0.date())
    assert position.status == "exited"
    assert (position.exit_price, position.gross_pnl) == (Decimal("110.0000"), Decimal("1300.00"))
    assert position.charges == entry_charges + exit_charges
    assert position.realized_pnl == Decimal("1300.00") - entry_charges - exit_charges
    assert position.exited_at == T0 + timedelta(minutes=5)
    assert check_ledger() == []
    assert paper_cash(Decimal("100000")) == Decimal("100000") + position.realized_pnl
    assert LedgerEntry.objects.count() == 4  # premium, its charges, proceeds, their charges


def test_a_position_that_is_not_active_cannot_be_exited(router, intent):
    router.place_entry(intent())
    position = PositionTracker.objects.get()
    with pytest.raises(ExitRefused, match="pending, not active"):
        router.exit_position(position.pk, "MANUAL", "too early")
    with pytest.raises(ExitRefused, match="does not exist"):
        router.exit_position(999999, "MANUAL", "nobody")


def test_the_ledger_check_names_a_figure_that_differs_from_the_fills(router, intent):
    router.place_entry(intent())
    (order,) = Order.objects.all()
    apply(event(order, "TRADED", ("t1", 130, "100.00")))
    LedgerEntry.objects.filter(kind="premium").update(amount=Decimal("-1.00"))
    assert check_ledger() == ["premium: the ledger has 1.00, the fills give 13000.00"]


def test_ack_after_an_event_keeps_the_order_where_the_event_put_it(router, intent):
    class Late(PaperGateway):
        def place(self, order, at):
            apply(event(order, "TRADED", ("t1", 130, "100")))  # the stream was faster
            return Ack("P1", S.TRANSIT)

    router.gateway = Late()
    router.place_entry(intent())
    order = Order.objects.get()
    assert order.status == S.TRADED and order.broker_order_id == "P1"


def test_the_journal_writes_the_rows_django_would(derivative):
    """The journal writes a new entry's rows without the ORM: on PostgreSQL one statement with
    each row as one jsonb document (journal_sql.insert_entry), on SQLite SQL built once
    (insert_entry_in_process). Every column must come out as Django's own INSERT of the same
    instances writes it (defaults, Decimals, offsets, JSON, NULLs, floats)."""
    from tests.support.rows import make_signal
    from trading.orders.journal_sql import insert_entry, insert_entry_in_process, is_postgres

    insert = insert_entry if is_postgres() else insert_entry_in_process

    def rows(signal_id: int, cid: str) -> tuple[PositionTracker, list[Order]]:
        position = PositionTracker(
            derivative_id=derivative.pk,
            exchange_segment="NSE_FNO",
            security_id=55796,
            status="pending",
            quantity=0,
            underlying="NIFTY",
            direction="bullish",
            signal_id=signal_id,
            config_version="v1",
            mode="paper",
            opened_at=T0,
            underlying_entry=Decimal("26012.35"),
            seconds_in_loss=12.5,
            exit_inputs={"stop": "95.15", "tiers": [1, 2.5, None], "armed": True},
            exit_reason="naïve ₹ text, with 'quotes' and \\ backslash",
        )
        orders = [
            Order(
                correlation_id=f"{cid}-{leg}",
                position=position,
                leg="entry",
                leg_index=leg,
                side="BUY",
                mode="paper",
                exchange_segment="NSE_FNO",
                security_id=55796,
                quantity=quantity,
                limit_price=Decimal("102.05"),
                placed_at=T0 + timedelta(microseconds=123456),
                priced_at=T0,
            )
            for leg, quantity in enumerate((1755, 195))
        ]
        return position, orders

    position, orders = rows(make_signal().pk, "JSON")
    written = insert(position, orders)
    assert written is not None and written[1] is not None
    twin, twin_orders = rows(make_signal(candle_start=T0 + timedelta(minutes=5)).pk, "ORM")
    twin.save(force_insert=True)
    for order in twin_orders:
        order.position = twin
    Order.objects.bulk_create(twin_orders)

    varying = {"id", "signal_id", "position_id", "correlation_id", "created_at", "updated_at"}

    def stored(model: type, pk: int) -> dict:
        row = model.objects.filter(pk=pk).values().get()  # every column, by attname
        return {name: value for name, value in row.items() if name not in varying}

    assert stored(PositionTracker, written[1]) == stored(PositionTracker, twin.pk)
    for pk, twin_order in zip(written[2], twin_orders, strict=True):
        assert stored(Order, pk) == stored(Order, twin_order.pk)
    # auto_now / auto_now_add were written (and set on the instances, as save() does)
    assert PositionTracker.objects.get(pk=written[1]).created_at == position.created_at


def active_position(router, intent, market, units: int = 130) -> PositionTracker:
    router.place_entry(intent(orders=(units,)))
    (entry,) = Order.objects.all()
    apply(event(entry, "TRADED", ("t1", units, "100.00")))
    position = PositionTracker.objects.get()
    market.quotes[position.key] = (Decimal("110.00"), Decimal("110.50"), Decimal("110.20"))
    return position


def test_an_exit_priced_from_the_quote_its_caller_holds_reads_no_other(router, intent, market):
    """The exit engine hands the router its deciding tick's (bid, ask, ltp): the exit is
    priced from it and the router's own quote is not read."""
    position = active_position(router, intent, market, units=65)
    read: list[str] = []
    router.quote = lambda key: read.append(key)  # would price nothing
    result = router.exit_position(
        position.pk,
        "STOP_LOSS",
        "below the stop",
        quote=(Decimal("90.00"), Decimal("90.10"), Decimal("90.05")),
    )
    assert result.status == ROUTED and read == []
    (order,) = Order.objects.filter(leg="exit")
    # 90.00 less config/algo.yml's orders.limit_buffer_pct, down to the tick.
    assert Decimal("80") < order.limit_price < Decimal("90.00")
    assert order.limit_price % Decimal("0.05") == 0


def assert_stop_loss_of_1950_units_sent(position: PositionTracker) -> None:
    """The claim with its decision, and the two first exit orders (1950 units, freeze 1755),
    priced from the bid (110.00) less the limit buffer, sent and acknowledged."""
    position.refresh_from_db()
    assert (position.status, position.exit_type, position.exit_reason) == (
        "exiting",
        "STOP_LOSS",
        "below the stop",
    )
    assert position.exit_trigger_price == Decimal("95.15")
    assert position.exit_inputs == {"stop": "95.15"} and position.exit_tick_at == T0
    exits = list(Order.objects.filter(leg="exit").order_by("leg_index"))
    assert [(o.quantity, o.status, o.generation) for o in exits] == [
        (1755, "TRANSIT", 0),
        (195, "TRANSIT", 0),
    ]
    assert all(o.limit_price == Decimal("107.80") and o.sent_at is not None for o in exits)
    assert [o.correlation_id for o in exits] == [
        f"AS-EX-{id_salt()}{position.pk}-{leg}-0" for leg in (0, 1)
    ]


def facts_of(position: PositionTracker, **changed: Any) -> Any:
    """The position's facts as the exit engine holds them (``expect``), some changed."""
    from trading.orders.journal_sql import ClaimedExit

    derivative = position.derivative
    facts = {
        "quantity": position.quantity,
        "underlying": position.underlying,
        "mode": position.mode,
        "exchange_segment": position.exchange_segment,
        "security_id": position.security_id,
        "lot_size": derivative.lot_size,
        "tick_size": derivative.tick_size,
        "entry_working": False,
    }
    return ClaimedExit(**{**facts, **changed})


@pytest.mark.parametrize(
    "held, statements",
    [
        (False, ["UPDATE", "WITH", "UPDATE", "UPDATE"]),  # claim, orders, two acks
        (True, ["WITH", "UPDATE", "UPDATE"]),  # the claim with its orders, two acks
    ],
    ids=["claim-then-orders", "facts-held"],
)
def test_an_exit_on_postgres_claims_and_journals_in_one_statement_each(
    router, intent, market, held, statements
):
    """The claim reads back what the orders need (one statement), the orders are one more
    with their sends claimed, then each order's send and its ack. When the caller hands over
    the position's facts (``expect``: the exit engine holds the row it judged) the orders are
    built before the claim and written in the claim's own statement: one statement before
    the send, the same rows. The route an exit decision waits for (bench/exit_engine.py)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from trading.orders.journal_sql import is_postgres

    if not is_postgres():
        pytest.skip("the one-statement exit is PostgreSQL's; SQLite claims, then drives it")
    router.freeze_quantity = lambda position: 1755  # 1950 units: two orders
    position = active_position(router, intent, market, units=1950)
    facts = facts_of(position) if held else None
    with CaptureQueriesContext(connection) as queries:
        result = router.exit_position(
            position.pk,
            "STOP_LOSS",
            "below the stop",
            expect=facts,
            trigger_price=Decimal("95.15"),
            inputs={"stop": "95.15"},
            decided_at=T0,
            tick_at=T0,
        )
    assert result.status == ROUTED and result.detail == "exit orders: sent, sent"
    assert [q["sql"].split()[0] for q in queries.captured_queries] == statements
    assert_stop_loss_of_1950_units_sent(position)
    with pytest.raises(ExitRefused, match="exiting, not active"):
        router.exit_position(position.pk, "MANUAL", "again", expect=facts)
    assert Order.objects.filter(leg="exit").count() == 2


@pytest.mark.parametrize(
    "changed",
    [{"quantity": 65}, {"lot_size": 75}, {"tick_size": Decimal("0.10")}, {"security_id": 1}],
    ids=["units", "lot", "tick", "contract"],
)
def test_an_exit_whose_facts_changed_under_its_caller_is_journaled_from_the_row(
    router, intent, market, changed
):
    """The facts the caller held are not the row's (a fill it had not seen, a catalog
    change): the claim writes no order from them; the orders come from what it read back."""
    from trading.orders.journal_sql import is_postgres

    if not is_postgres():
        pytest.skip("the one-statement exit is PostgreSQL's")
    position = active_position(router, intent, market, units=130)
    result = router.exit_position(
        position.pk, "MANUAL", "by hand", expect=facts_of(position, **changed)
    )
    assert result.detail == "exit orders: sent"
    (order,) = Order.objects.filter(leg="exit")
    assert (order.quantity, order.security_id, order.limit_price) == (
        130,
        position.security_id,
        Decimal("107.80"),
    )


def test_an_exit_with_an_entry_still_working_writes_no_order_in_the_claim(router, intent, market):
    """Entry units may still be bought: the exit waits for them (the router's continue_exit
    cancels them first), so the claim writes no exit order; a second claim writes nothing."""
    from trading.orders.journal import claim_exit_with_orders, exit_order_rows
    from trading.orders.journal_sql import is_postgres

    if not is_postgres():
        pytest.skip("the one-statement exit is PostgreSQL's")
    router.place_entry(intent(orders=(130,)))
    (entry,) = Order.objects.all()
    apply(event(entry, "PART_TRADED", ("t1", 65, "100.00")))
    position = PositionTracker.objects.get()
    facts = facts_of(position)
    rows = exit_order_rows(position.pk, facts, [65], Decimal("107.00"), T0, send_at=T0)
    claimed, orders = claim_exit_with_orders(position.pk, "MANUAL", "by hand", facts, rows)
    assert claimed is not None and claimed.entry_working and orders is None
    assert PositionTracker.objects.get().status == "exiting"
    assert not Order.objects.filter(leg="exit").exists()
    again = claim_exit_with_orders(position.pk, "MANUAL", "twice", facts, rows)
    assert again == (None, None)  # one claimer, nothing written


def test_a_one_statement_exit_leaves_a_taken_slot_to_the_general_way(router, intent, market):
    """Another driver (the order manager) journaled the claimed position's first exit between
    the claim and the orders: nothing is written twice, the exit continues from its rows."""
    from trading.orders.journal import (
        claim_exit_at_once,
        exit_order_rows,
        journal_exit,
        journal_first_exit,
    )
    from trading.orders.journal_sql import is_postgres

    if not is_postgres():
        pytest.skip("the one-statement exit is PostgreSQL's")
    position = active_position(router, intent, market)
    claimed = claim_exit_at_once(position.pk, "MANUAL", "by hand")
    assert claimed is not None and (claimed.quantity, claimed.lot_size) == (130, 65)
    assert claim_exit_at_once(position.pk, "MANUAL", "twice") is None  # one claimer
    journal_exit(position, [130], Decimal("107.80"), T0)
    rows = exit_order_rows(position.pk, claimed, [130], Decimal("107.00"), T0)
    assert journal_first_exit(position.pk, rows) is None
    (only,) = Order.objects.filter(leg="exit")
    assert only.limit_price == Decimal("107.80")
    assert router.continue_exit(position).detail == "exit orders: sent"


def test_an_exit_with_entry_orders_still_working_cancels_them_first(router, intent, market):
    router.place_entry(intent(orders=(130,)))
    (entry,) = Order.objects.all()
    apply(event(entry, "PART_TRADED", ("t1", 65, "100.00")))
    position = PositionTracker.objects.get()
    market.quotes[position.key] = (Decimal("110.00"), Decimal("110.50"), Decimal("110.20"))
    result = router.exit_position(position.pk, "MANUAL", "by hand")
    assert result.detail == "waiting for the entry orders to end"
    entry.refresh_from_db()
    assert entry.cancel_requested_at is not None
    assert not Order.objects.filter(leg="exit").exists()
    assert PositionTracker.objects.get().status == "exiting"


@pytest.mark.django_db(transaction=True)  # the ack's own commit: no test transaction around
@pytest.mark.parametrize(
    ("journal", "level", "relaxed"),
    [("wal", 2, True), ("wal", 1, False), ("delete", 2, False), ("memory", 2, False)],
)
def test_an_ack_on_sqlite_commits_lazily_only_in_wal_mode_and_restores_the_level(
    router, intent, journal, level, relaxed
):
    """SQLite's ack (journal.record_ack, durable=False): synchronous NORMAL for its own commit
    when the file is in WAL mode at FULL (SQLite's guarantee: no corruption, only the last
    commits at risk on a power cut), the connection's own level right after; nothing in
    other journal modes (there NORMAL is not as safe) or already at NORMAL. The modes are
    read once per connection (the test database is in memory, so they are set here)."""
    from django.db import connection

    from trading.orders.journal_sql import is_postgres

    if is_postgres():
        pytest.skip("SQLite's lazy commit; PostgreSQL's is synchronous_commit off")
    seen: list[str] = []

    def spy(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    connection.ensure_connection()
    connection._lazy_commit_modes = (connection.connection, journal, level)
    with connection.execute_wrapper(spy):
        router.place_entry(intent())
    pragmas = [sql for sql in seen if sql.startswith("PRAGMA synchronous =")]
    expected = ["PRAGMA synchronous = NORMAL", f"PRAGMA synchronous = {level}"]
    assert pragmas == (expected if relaxed else [])
    assert Order.objects.get().status == S.TRANSIT


def test_the_embedded_sqlite_file_is_wal_at_full(tmp_path):
    """algo_scalper/settings.py opens a SQLite file in WAL mode with synchronous FULL."""
    import sqlite3

    from django.conf import settings

    options = settings.DATABASES["default"].get("OPTIONS", {})
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
        pytest.skip("the embedded default's settings")
    raw = sqlite3.connect(tmp_path / "embedded.sqlite3")
    for command in options["init_command"].split(";"):
        if command.strip():
            raw.execute(command)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


@pytest.mark.django_db(transaction=True)  # the ack's own transaction: no test one around it
def test_an_ack_on_postgres_commits_without_waiting_for_the_wal_flush(router, intent):
    """The journal write before the send is durable; the ack, which a restart recovers by a
    lookup, turns synchronous_commit off for its own transaction only."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from trading.orders.journal_sql import is_postgres

    if not is_postgres():
        pytest.skip("PostgreSQL's per-transaction synchronous_commit")

    def level() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            return cursor.fetchone()[0]

    before = level()
    with CaptureQueriesContext(connection) as queries:
        router.place_entry(intent())
    statements = [q["sql"] for q in queries.captured_queries]
    journal, ack = statements[-2:]
    assert journal.startswith("WITH d AS") and "synchronous_commit" not in journal
    assert ack.startswith("UPDATE trading_order") and "'synchronous_commit', 'off', true" in ack
    assert level() == before  # set_config(..., true): that transaction only
    assert Order.objects.get().status == S.TRANSIT


@pytest.mark.django_db(transaction=True)  # two connections, each its own transactions
def test_a_one_statement_exit_waits_for_a_driver_holding_the_position_no_deadlock(
    router, intent, market
):
    """Another driver (continue_exit) holds the position's row and is about to journal the
    first exit slot: the one-statement exit takes the position's row first too, so it waits,
    then finds the slot taken. (Taking the slot first and the row second deadlocked.)"""
    import threading

    from django.db import connection, transaction

    from trading.orders.journal import (
        claim_exit_at_once,
        exit_order_rows,
        journal_exit,
        journal_first_exit,
    )
    from trading.orders.journal_sql import is_postgres

    if not is_postgres():
        pytest.skip("the one-statement exit is PostgreSQL's")
    position = active_position(router, intent, market)
    claimed = claim_exit_at_once(position.pk, "MANUAL", "by hand")
    assert claimed is not None
    locked, release = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def driver() -> None:
        try:
            with transaction.atomic():
                held = PositionTracker.objects.select_for_update().get(pk=position.pk)
                locked.set()
                release.wait(10)
                journal_exit(held, [130], Decimal("107.80"), T0)
        except BaseException as exc:
            failures.append(exc)
        finally:
            connection.close()

    other = threading.Thread(target=driver)
    other.start()
    assert locked.wait(10)
    threading.Timer(0.3, release.set).start()  # the driver journals while we wait on the row
    rows = exit_order_rows(position.pk, claimed, [130], Decimal("107.00"), T0)
    assert journal_first_exit(position.pk, rows) is None
    other.join(10)
    assert failures == []
    (only,) = Order.objects.filter(leg="exit")
    assert only.limit_price == Decimal("107.80")  # the driver's, written once


# -- the exit's claim as a prepared statement, and the exit path's warm-up (PostgreSQL) --------

CLAIM_SQL = "WITH c AS (UPDATE trading_positiontracker%"


def claim_plans() -> tuple[int, int]:
    """This connection's prepared statements of the exit's claim: how many, and how many
    times they ran (PostgreSQL counts each execution's plan, generic or custom)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), coalesce(sum(generic_plans + custom_plans), 0)"
            " FROM pg_prepared_statements WHERE statement LIKE %s",
            [CLAIM_SQL],
        )
        count, runs = cursor.fetchone()
    return int(count), int(runs)


def exit_held(router, position: PositionTracker, reason: str = "below the stop") -> Any:
    return router.exit_position(
        position.pk,
        "STOP_LOSS",
        reason,
        expect=facts_of(position),
        trigger_price=Decimal("95.15"),
        inputs={"stop": "95.15"},
        decided_at=T0,
        tick_at=T0,
    )


def two_active_positions(router, market) -> list[PositionTracker]:
    """Two open positions of one contract (two entry decisions, each filled)."""
    from tests.support.rows import make_signal

    from .conftest import make_intent

    for minutes in (0, 5):
        signal = make_signal(candle_start=T0 + timedelta(minutes=minutes))
        router.place_entry(make_intent(signal.pk, orders=(65,)))
    for n, order in enumerate(Order.objects.filter(leg="entry").order_by("pk")):
        apply(event(order, "TRADED", (f"t{n}", 65, "100.00")))
    positions = list(PositionTracker.objects.order_by("pk"))
    for position in positions:
        assert position.status == "active"
        market.quotes[position.key] = (Decimal("110.00"), Decimal("110.50"), Decimal("110.20"))
    return positions


@pytest.fixture
def prepares(monkeypatch):
    """The journal's prepared statements on, as a process starts (the lost-statement fallback
    turns them off for the process's life: put back after the test). PostgreSQL's claim only:
    skipped in the suite's SQLite run."""
    from trading.orders import journal_sql

    if not journal_sql.is_postgres():
        pytest.skip("prepared statements are the PostgreSQL claim's")
    monkeypatch.setattr(journal_sql, "_prepared_lost", None)
    return journal_sql


def test_the_exit_claim_is_prepared_once_a_connection_and_then_only_run(
    router, intent, market, prepares
):
    """PostgreSQL parses and plans the claim (a statement of several CTEs) once per
    connection; every later exit with as many orders binds and runs the prepared one. The
    outcome is the claim's as before: the same rows (see the one-statement test above)."""
    first, second = two_active_positions(router, market)
    count, runs = claim_plans()
    assert exit_held(router, first).status == ROUTED
    assert exit_held(router, second).status == ROUTED
    after_count, after_runs = claim_plans()
    assert after_runs - runs == 2 and after_count <= count + 1  # one statement, run twice
    for position in (first, second):
        position.refresh_from_db()
        assert (position.status, position.exit_type) == ("exiting", "STOP_LOSS")
        assert position.orders.filter(leg="exit", status="TRANSIT").count() == 1


def test_the_exit_claim_is_not_prepared_when_prepared_statements_are_off(
    router, intent, market, settings, prepares
):
    """DB_PREPARED_STATEMENTS=false (a pooler that cannot carry them): the claim is sent as
    Django sends every statement, and routes the same."""
    settings.DB_PREPARED_STATEMENTS = False
    position = two_active_positions(router, market)[0]
    before = claim_plans()
    assert exit_held(router, position).status == ROUTED
    assert claim_plans() == before
    assert position.orders.filter(leg="exit").count() == 1


@pytest.mark.django_db(transaction=True)  # two connections, each its own transactions
def test_a_prepared_claim_that_fails_raises_djangos_error_and_the_next_one_runs(
    router, intent, market, prepares
):
    """The prepared claim's errors are django.db errors, as any statement's (the route's
    caller handles those): here a lock wait over the connection's lock_timeout, while another
    connection holds the position's row. Once the row is free the same prepared statement
    claims it."""
    import threading

    from django.db import OperationalError, connection, transaction

    position = active_position(router, intent, market)
    locked, release = threading.Event(), threading.Event()

    def holder() -> None:
        try:
            with transaction.atomic():
                PositionTracker.objects.select_for_update().get(pk=position.pk)
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    other = threading.Thread(target=holder)
    other.start()
    try:
        assert locked.wait(10)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '200ms'")
        with pytest.raises(OperationalError, match="lock timeout"):
            exit_held(router, position)
    finally:
        release.set()
        other.join(10)
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
    position.refresh_from_db()
    assert position.status == "active" and not position.orders.filter(leg="exit").exists()
    assert exit_held(router, position).status == ROUTED
    position.refresh_from_db()
    assert position.status == "exiting"
    assert claim_plans()[1] >= 2  # the failed run and this one, one prepared statement


def alter_quantity(column_type: str) -> None:
    """A migration's ALTER of a column the claim returns, on another connection (as a
    deploy's release step runs it while the workers still run)."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    def alter() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    f"ALTER TABLE trading_positiontracker ALTER COLUMN quantity TYPE {column_type}"
                )
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as other:  # its error, if any, raised here
        other.submit(alter).result(30)


@pytest.mark.django_db(transaction=True)  # the ALTER on another connection, committed
def test_a_claim_prepared_before_a_migration_changed_its_columns_runs_on_a_new_connection(
    router, intent, market, caplog, prepares
):
    """A claim prepared on a connection, then a migration changes the type of a column it
    returns: PostgreSQL refuses the prepared statement ("cached plan must not change result
    type") on that connection every time, before running anything. The claim closes that
    connection and runs once more on a new one: the exit is routed, once, with a warning."""
    import logging

    from django.db import connection

    first, second = two_active_positions(router, market)
    assert exit_held(router, first).status == ROUTED  # the claim prepared here
    backend = connection.connection.info.backend_pid
    alter_quantity("bigint")
    try:
        with caplog.at_level(logging.WARNING, logger="trading.orders.journal_sql"):
            assert exit_held(router, second).status == ROUTED
        assert connection.connection.info.backend_pid != backend
        assert claim_plans() == (1, 1)  # prepared again, on the new connection
        assert "runs again on a new one" in caplog.text
    finally:
        alter_quantity("integer")
    second.refresh_from_db()
    assert (second.status, second.exit_type) == ("exiting", "STOP_LOSS")
    assert second.orders.filter(leg="exit").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_stale_prepared_claim_inside_a_transaction_raises_and_the_rollback_heals_it(
    router, intent, market, prepares
):
    """Inside a transaction the stale plan's error cannot be retried (the transaction is
    aborted): it is raised, nothing is claimed, and the rollback clears the connection's
    prepared statements, so the next claim on the same connection prepares it again."""
    from django.db import NotSupportedError, connection, transaction

    first, second = two_active_positions(router, market)
    assert exit_held(router, first).status == ROUTED
    backend = connection.connection.info.backend_pid
    alter_quantity("bigint")
    try:
        with pytest.raises(NotSupportedError, match="cached plan must not change result type"):
            with transaction.atomic():
                exit_held(router, second)
        second.refresh_from_db()
        assert second.status == "active" and not second.orders.filter(leg="exit").exists()
        assert exit_held(router, second).status == ROUTED
        assert connection.connection.info.backend_pid == backend
    finally:
        alter_quantity("integer")
    second.refresh_from_db()
    assert second.status == "exiting" and second.orders.filter(leg="exit").count() == 1


def lose_prepared_statements() -> None:
    """What a pooler in transaction mode does to a client's prepared statements: the server
    connection its next transaction lands on does not have them. Here DEALLOCATE ALL on the
    server behind psycopg's back (its own protocol call, which psycopg does not see), so
    psycopg still takes them as prepared."""
    from django.db import connection
    from psycopg.pq import ExecStatus

    assert connection.connection.pgconn.exec_(b"DEALLOCATE ALL").status == ExecStatus.COMMAND_OK


@pytest.mark.django_db(transaction=True)  # the fallback closes the connection
def test_prepared_claims_lost_on_the_server_route_unprepared_from_then_on(
    router, intent, market, prepares, caplog
):
    """A pooler in transaction mode (PgBouncer before 1.21): the claim prepared on one
    server connection is missing on the next ("prepared statement ... does not exist",
    SQLSTATE 26000, before anything runs). The exit is routed once all the same, the process
    says why at ERROR once and runs the claim unprepared from then on."""
    import logging

    first, second = two_active_positions(router, market)
    assert exit_held(router, first).status == ROUTED  # prepared here
    lose_prepared_statements()
    with caplog.at_level(logging.ERROR, logger="trading.orders.journal_sql"):
        assert exit_held(router, second).status == ROUTED
        assert router.warm_up() is True  # six more claims (inert), none prepared
    assert not prepares.prepared_statements()
    assert claim_plans() == (0, 0)
    lines = [r for r in caplog.records if r.name == "trading.orders.journal_sql"]
    assert len(lines) == 1 and lines[0].levelno == logging.ERROR
    assert "SQLSTATE 26000" in lines[0].getMessage()
    assert "DB_PREPARED_STATEMENTS=false" in lines[0].getMessage()
    second.refresh_from_db()
    assert (second.status, second.exit_type) == ("exiting", "STOP_LOSS")
    assert second.orders.filter(leg="exit").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_prepared_statement_name_the_server_has_taken_routes_the_claim_unprepared(
    router, intent, market, prepares, caplog
):
    """The other face of the same pooler: another client's statements on the server
    connection hold the names psycopg gives its own (SQLSTATE 42P05 on the claim's PREPARE,
    which runs nothing). The exit is routed once, unprepared."""
    import logging

    from django.db import connection

    position = two_active_positions(router, market)[0]
    connection.close()  # a new connection: psycopg names its statements from _pg3_0
    connection.ensure_connection()
    for n in range(20):
        connection.connection.pgconn.exec_(f"PREPARE _pg3_{n} AS SELECT {n}".encode())
    with caplog.at_level(logging.ERROR, logger="trading.orders.journal_sql"):
        assert exit_held(router, position).status == ROUTED
    assert "SQLSTATE 42P05" in caplog.text
    assert not prepares.prepared_statements()
    position.refresh_from_db()
    assert position.status == "exiting" and position.orders.filter(leg="exit").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_lost_prepared_claim_inside_a_transaction_raises_and_the_next_runs_unprepared(
    router, intent, market, prepares
):
    """Inside a transaction the lost statement's error is raised (the transaction is
    aborted): nothing is claimed, and the caller's next attempt, prepared statements now off
    in this process, claims it on the same connection."""
    from django.db import DatabaseError, connection, transaction

    first, second = two_active_positions(router, market)
    assert exit_held(router, first).status == ROUTED
    backend = connection.connection.info.backend_pid
    lose_prepared_statements()
    with pytest.raises(DatabaseError, match="does not exist"):
        with transaction.atomic():
            exit_held(router, second)
    second.refresh_from_db()
    assert second.status == "active" and not second.orders.filter(leg="exit").exists()
    assert not prepares.prepared_statements()
    assert exit_held(router, second).status == ROUTED
    assert connection.connection.info.backend_pid == backend
    second.refresh_from_db()
    assert second.status == "exiting" and second.orders.filter(leg="exit").count() == 1


def test_the_exit_path_warm_up_keeps_nothing_and_sends_nothing(router, intent, market):
    """OrderRouter.warm_up runs the claim's statement for position -1 with statuses no row
    can have: even an active position #-1 (no id the database hands out) stays as it is, no
    order is written or sent; the statement is prepared on the connection and has run past
    PostgreSQL's custom plans, which the first real exit then only binds and runs."""
    from trading.orders.journal_sql import is_postgres
    from trading.orders.router import WARM_RUNS

    if not is_postgres():
        assert router.warm_up() is False  # SQLite has no one-statement claim to warm
        return
    position = active_position(router, intent, market)
    twin = PositionTracker.objects.get(pk=position.pk)
    twin.pk, twin.signal = -1, None
    twin.save(force_insert=True)
    sent: list[Any] = []
    place = router.gateway.place
    router.gateway.place = lambda order, at: sent.append(order) or place(order, at)
    orders = Order.objects.count()
    _, runs = claim_plans()
    assert router.warm_up() is True
    assert sent == [] and Order.objects.count() == orders
    twin.refresh_from_db()
    assert (twin.status, twin.exit_type, twin.exit_reason) == ("active", "", "")
    assert claim_plans()[1] == runs + WARM_RUNS
    assert exit_held(router, position).status == ROUTED and len(sent) == 1
