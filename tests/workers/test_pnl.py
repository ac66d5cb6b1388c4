"""workers.pnl: the PnL cache, its throttled database copy, and the PnlMonitor component."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine

from tests.support.rows import make_derivative, unpriced_position
from tests.support.waiting import wait_until
from trading.models import PositionStatus, PositionTracker
from trading.rules.charges import ChargesError
from workers.heartbeat import Heartbeat
from workers.pnl import (
    PnlCache,
    PnlDbSync,
    PnlMonitor,
    PnlSnapshot,
    default_exit_charges,
    position_key,
)
from workers.realtime.event_bus import MemoryEventBus
from workers.realtime.kv_store import DbKeyValueStore, MemoryKeyValueStore
from workers.realtime.record import TickRecord
from workers.realtime.services import Realtime
from workers.realtime.tick_store import MemoryTickStore

T0 = 1_800_000_000.0  # epoch seconds; any fixed moment will do


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def tick(key: str, ltp: float, seq: int = 1, at: float = T0) -> TickRecord:
    return TickRecord(key=key, seq=seq, ltp=ltp, exchange_time=at - 0.2, receive_time=at)


def snapshot(**overrides: object) -> PnlSnapshot:
    values: dict[str, object] = {
        "position_id": 7,
        "key": "NSE_FNO:55796",
        "ltp": 110.05,
        "gross": Decimal("653.25"),
        "net": Decimal("633.25"),
        "percent": Decimal("10.0500"),
        "peak": Decimal("700.00"),
        "trough": Decimal("-65.00"),
        "exit_charges": Decimal("20"),
        "tick_seq": 42,
        "tick_time": T0 - 0.2,
        "updated_at": T0,
    }
    values.update(overrides)
    return PnlSnapshot(**values)  # type: ignore[arg-type]


# -- PnlSnapshot --------------------------------------------------------------------------------


def test_a_snapshot_round_trips_through_its_dict_with_decimals_as_strings():
    snap = snapshot()
    data = snap.as_dict()
    assert data["gross"] == "653.25"
    assert data["peak"] == "700.00"
    assert data["ltp"] == 110.05
    assert PnlSnapshot.from_dict(data) == snap
    assert PnlSnapshot.from_dict(snapshot(tick_time=None).as_dict()).tick_time is None


@pytest.mark.parametrize(
    ("field", "value"),
    [("gross", "lots"), ("gross", 1.5), ("gross", "NaN"), ("tick_seq", "3"), ("ltp", None)],
)
def test_a_malformed_snapshot_is_refused_with_the_field_named(field, value):
    data = snapshot().as_dict()
    data[field] = value
    with pytest.raises(ValueError, match=field):
        PnlSnapshot.from_dict(data)


def test_a_snapshot_missing_a_field_is_refused():
    data = snapshot().as_dict()
    del data["trough"]
    with pytest.raises(ValueError, match="missing field 'trough'"):
        PnlSnapshot.from_dict(data)


# -- PnlCache -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_update_stores_the_snapshot_under_pnl_and_the_position_id():
    kv = MemoryKeyValueStore()
    position = unpriced_position()

    snap = PnlCache(kv).update(
        position, 110.0, tick_seq=3, tick_time=T0, exit_charges=Decimal("20"), now=T0 + 1
    )

    assert (snap.gross, snap.net, snap.percent) == (
        Decimal("650.00"),
        Decimal("630.00"),
        Decimal("10.0000"),
    )
    assert (snap.peak, snap.trough) == (Decimal("650.00"), Decimal("650.00"))
    assert snap.key == "NSE_FNO:55796"
    assert kv.get(f"pnl:{position.pk}") == snap.as_dict()
    assert PnlCache(kv).get(position.pk) == snap


@pytest.mark.django_db
def test_peak_and_trough_follow_the_gross_pnl_across_updates():
    cache = PnlCache(MemoryKeyValueStore())
    position = unpriced_position()
    for seq, ltp in enumerate([110.0, 120.0, 95.0, 105.0], start=1):
        snap = cache.update(
            position, ltp, tick_seq=seq, tick_time=T0, exit_charges=Decimal(0), now=T0
        )
    assert snap.gross == Decimal("325.00")
    assert (snap.peak, snap.trough) == (Decimal("1300.00"), Decimal("-325.00"))


@pytest.mark.django_db
def test_a_new_process_carries_peak_and_trough_from_the_stored_snapshot():
    kv = MemoryKeyValueStore()
    position = unpriced_position()
    for ltp in (120.0, 90.0):
        PnlCache(kv).update(
            position, ltp, tick_seq=1, tick_time=T0, exit_charges=Decimal(0), now=T0
        )

    snap = PnlCache(kv).update(
        position, 100.0, tick_seq=2, tick_time=T0, exit_charges=Decimal(0), now=T0
    )
    assert (snap.peak, snap.trough) == (Decimal("1300.00"), Decimal("-650.00"))


@pytest.mark.django_db
def test_after_a_cache_loss_peak_and_trough_continue_from_the_database_columns():
    position = unpriced_position(peak_pnl=Decimal("975.00"), trough_pnl=Decimal("-130.00"))

    snap = PnlCache(MemoryKeyValueStore()).update(
        position, 105.0, tick_seq=1, tick_time=T0, exit_charges=Decimal(0), now=T0
    )

    assert snap.gross == Decimal("325.00")
    assert (snap.peak, snap.trough) == (Decimal("975.00"), Decimal("-130.00"))


@pytest.mark.django_db
def test_a_new_extreme_after_a_cache_loss_replaces_the_database_one():
    position = unpriced_position(peak_pnl=Decimal("975.00"), trough_pnl=Decimal("-130.00"))
    snap = PnlCache(MemoryKeyValueStore()).update(
        position, 90.0, tick_seq=1, tick_time=T0, exit_charges=Decimal(0), now=T0
    )
    assert (snap.peak, snap.trough) == (Decimal("975.00"), Decimal("-650.00"))


@pytest.mark.django_db
def test_an_unreadable_cached_snapshot_is_ignored_and_the_columns_seed_the_extremes():
    kv = MemoryKeyValueStore()
    position = unpriced_position(peak_pnl=Decimal("50.00"), trough_pnl=Decimal("-5.00"))
    kv.put(f"pnl:{position.pk}", {"gross": "garbage"})

    assert PnlCache(kv).get(position.pk) is None
    snap = PnlCache(kv).update(
        position, 100.0, tick_seq=1, tick_time=T0, exit_charges=Decimal(0), now=T0
    )
    assert (snap.peak, snap.trough) == (Decimal("50.00"), Decimal("-5.00"))


@pytest.mark.django_db
def test_a_position_without_an_entry_price_cannot_be_marked():
    position = unpriced_position(entry_price=None)
    with pytest.raises(ValueError, match="entry price"):
        PnlCache(MemoryKeyValueStore()).update(
            position, 100.0, tick_seq=1, tick_time=T0, exit_charges=Decimal(0), now=T0
        )


@pytest.mark.django_db
def test_delete_removes_the_stored_and_the_remembered_snapshot():
    kv = MemoryKeyValueStore()
    cache = PnlCache(kv)
    position = unpriced_position()
    cache.update(position, 120.0, tick_seq=1, tick_time=T0, exit_charges=Decimal(0), now=T0)

    cache.delete(position.pk)

    assert cache.get(position.pk) is None
    assert cache.last(position.pk) is None
    snap = cache.update(position, 100.0, tick_seq=2, tick_time=T0, exit_charges=Decimal(0), now=T0)
    assert snap.peak == Decimal("0.00")


# -- PnlDbSync ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_first_sync_writes_every_pnl_column():
    position = unpriced_position()
    snap = snapshot(position_id=position.pk)

    assert PnlDbSync().maybe_sync(snap, T0) is True

    position.refresh_from_db()
    assert position.ltp == Decimal("110.0500")
    assert position.unrealized_pnl == Decimal("653.25")
    assert position.unrealized_pnl_net == Decimal("633.25")
    assert position.pnl_percent == Decimal("10.0500")
    assert (position.peak_pnl, position.trough_pnl) == (Decimal("700.00"), Decimal("-65.00"))
    assert position.pnl_updated_at == datetime.fromtimestamp(T0, tz=UTC)


@pytest.mark.django_db
def test_syncs_of_one_position_are_at_most_one_per_interval():
    position = unpriced_position()
    sync = PnlDbSync(interval=5.0)

    assert sync.maybe_sync(snapshot(position_id=position.pk, gross=Decimal("1")), T0)
    assert not sync.maybe_sync(snapshot(position_id=position.pk, gross=Decimal("2")), T0 + 4.9)
    position.refresh_from_db()
    assert position.unrealized_pnl == Decimal("1")

    assert sync.maybe_sync(snapshot(position_id=position.pk, gross=Decimal("3")), T0 + 5.0)
    position.refresh_from_db()
    assert position.unrealized_pnl == Decimal("3")


@pytest.mark.django_db
def test_the_throttle_is_per_position():
    first, second = unpriced_position(), unpriced_position()
    sync = PnlDbSync(interval=5.0)
    assert sync.maybe_sync(snapshot(position_id=first.pk), T0)
    assert sync.maybe_sync(snapshot(position_id=second.pk), T0 + 1)


def test_positions_first_copied_together_come_due_spread_over_the_interval(monkeypatch):
    """2,000 positions marked together (a start): all copied at once, then each once per
    interval, a fifth of them a second, never all together again (one statement of 2,000 rows
    held every claim of them behind it: bench/exit_engine.py)."""
    import workers.pnl as pnl

    written: list[list[int]] = []
    monkeypatch.setattr(
        pnl, "update_open_positions", lambda rows, columns: written.append(list(rows))
    )
    sync = PnlDbSync(interval=5.0)
    snaps = [snapshot(position_id=pk) for pk in range(1, 2001)]
    assert sync.sync_many(snaps, T0) == 2000
    for second in range(1, 16):
        sync.sync_many(snaps, T0 + second)
    rounds = [len(rows) for rows in written[1:]]
    assert len(rounds) == 15 and max(rounds) <= 500 and min(rounds) >= 300, rounds
    copies = {pk: 0 for pk in range(1, 2001)}
    for rows in written[1:]:
        for pk in rows:
            copies[pk] += 1
    assert set(copies.values()) == {3}  # each once every 5 s in 15 s, after the first


@pytest.mark.django_db
def test_a_clock_that_steps_back_does_not_stop_the_copy():
    position = unpriced_position()
    sync = PnlDbSync(interval=5.0)
    assert sync.maybe_sync(snapshot(position_id=position.pk), T0)
    assert sync.maybe_sync(snapshot(position_id=position.pk), T0 - 3600)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "status", [PositionStatus.EXITED, PositionStatus.CANCELLED, PositionStatus.PENDING]
)
def test_the_throttled_sync_never_touches_a_position_that_is_not_open(status):
    position = unpriced_position(status=status)

    assert PnlDbSync().maybe_sync(snapshot(position_id=position.pk), T0) is False

    position.refresh_from_db()
    assert position.unrealized_pnl is None
    assert position.pnl_updated_at is None


@pytest.mark.django_db
def test_the_final_sync_writes_whatever_the_throttle_and_the_status():
    position = unpriced_position()
    sync = PnlDbSync(interval=5.0)
    sync.maybe_sync(snapshot(position_id=position.pk, gross=Decimal("1")), T0)
    PositionTracker.objects.filter(pk=position.pk).update(status=PositionStatus.EXITED)

    assert sync.sync_final(snapshot(position_id=position.pk, gross=Decimal("2")))

    position.refresh_from_db()
    assert position.unrealized_pnl == Decimal("2")
    assert position.status == PositionStatus.EXITED


@pytest.mark.django_db
def test_the_sync_leaves_the_status_and_updated_at_alone():
    position = unpriced_position()
    before = position.updated_at
    PnlDbSync().maybe_sync(snapshot(position_id=position.pk), T0)
    position.refresh_from_db()
    assert (position.status, position.updated_at) == (PositionStatus.ACTIVE, before)


# -- default exit charges -----------------------------------------------------------------------


# Expected figures worked by hand from config/charges.yml (see tests/trading/rules/test_charges.py):
# SELL 65 x 110 = 7150 on NSE: brokerage 20 + STT 0.15% 10.725 -> 11 + exchange 2.504645 -> 2.50
# + IPFT 0.03575 -> 0.04 + SEBI 0.00715 -> 0.01 + GST 0.18 x 22.51 = 4.0518 -> 4.05 = 37.60.
MAY = date(2026, 5, 4)


@pytest.mark.django_db
def test_the_flat_paper_charge_when_configured_overrides_the_charges_model(settings):
    settings.PAPER_CHARGES_PER_ORDER = Decimal("20")
    assert default_exit_charges(unpriced_position(), 110.0, on=MAY) == Decimal("20")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("segment", "quantity", "ltp", "expected"),
    [
        pytest.param("NSE_FNO", 65, 110.0, Decimal("37.60"), id="nse-one-nifty-lot-at-110"),
        # SENSEX 20 x 250 = 5000 on BSE: 20 + STT 7.5 -> 8 + exchange 0.000325 x 5000 = 1.625
        # -> 1.63 + no IPFT + SEBI 0.005 -> 0.01 + GST 0.18 x 21.64 = 3.8952 -> 3.90 = 33.54
        pytest.param("BSE_FNO", 20, 250.0, Decimal("33.54"), id="bse-sensex-at-250"),
    ],
)
def test_the_exit_charges_are_those_of_a_sell_of_the_whole_position_at_the_ltp(
    settings, segment, quantity, ltp, expected
):
    settings.PAPER_CHARGES_PER_ORDER = None
    derivative = make_derivative(security_id=60001, segment=segment)
    position = unpriced_position(security_id=derivative.security_id, quantity=quantity)
    assert default_exit_charges(position, ltp, on=MAY) == expected


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("utc", "expected"),
    [
        # 23:45 IST on 2026-03-31: STT 0.10% of 7150 = 7.15 -> 7, so 37.60 - 11 + 7
        pytest.param(datetime(2026, 3, 31, 18, 15, tzinfo=UTC), Decimal("33.60"), id="mar-31-ist"),
        # 00:15 IST on 2026-04-01 (still 2026-03-31 in UTC): STT 0.15%
        pytest.param(datetime(2026, 3, 31, 18, 45, tzinfo=UTC), Decimal("37.60"), id="apr-1-ist"),
    ],
)
def test_the_exit_charges_use_the_rates_of_the_ticks_market_date_in_india(
    settings, kv, clock, utc, expected
):
    # The date comes from the tick's exchange time (market time), in IST; the wall clock is
    # pinned to another year to show it plays no part.
    settings.PAPER_CHARGES_PER_ORDER = None
    position = unpriced_position()
    monitor = PnlMonitor(MemoryTickStore(), kv, clock=clock)
    monitor.handle_reload(T0)
    at = utc.timestamp()
    record = TickRecord(key="NSE_FNO:55796", seq=1, ltp=110.0, exchange_time=at, receive_time=T0)
    with time_machine.travel(datetime(2030, 7, 1, 6, 0, tzinfo=UTC), tick=False):
        monitor.handle_records({"NSE_FNO:55796": record}, T0)
    assert PnlSnapshot.from_dict(kv.get(f"pnl:{position.pk}")).exit_charges == expected


@pytest.mark.django_db
def test_exit_charges_of_a_segment_without_a_charges_model_are_an_error(settings):
    settings.PAPER_CHARGES_PER_ORDER = None
    derivative = make_derivative(security_id=60002, segment="MCX_COMM")
    position = unpriced_position(security_id=derivative.security_id)
    with pytest.raises(ChargesError, match="MCX_COMM"):
        default_exit_charges(position, 110.0, on=MAY)


@pytest.mark.django_db
def test_the_monitor_nets_the_charges_model_estimate_out_of_the_gross_pnl(settings, kv, clock):
    settings.PAPER_CHARGES_PER_ORDER = None
    position = unpriced_position()
    monitor = PnlMonitor(MemoryTickStore(), kv, clock=clock)  # the default estimator
    monitor.handle_reload(T0)

    monitor.handle_records({"NSE_FNO:55796": tick("NSE_FNO:55796", 110.0)}, T0)

    snap = PnlSnapshot.from_dict(kv.get(f"pnl:{position.pk}"))
    assert (snap.gross, snap.exit_charges, snap.net) == (
        Decimal("650.00"),
        Decimal("37.60"),
        Decimal("612.40"),
    )


# -- PnlMonitor, one piece at a time ------------------------------------------------------------


@pytest.fixture
def store() -> MemoryTickStore:
    return MemoryTickStore()


@pytest.fixture
def kv() -> MemoryKeyValueStore:
    return MemoryKeyValueStore()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def monitor(store, kv, clock) -> PnlMonitor:
    return PnlMonitor(
        store,
        kv,
        estimate_exit_charges=lambda position, ltp, on: Decimal("20"),
        heartbeat=Heartbeat(kv, "pnl", clock=clock),
        clock=clock,
    )


@pytest.mark.django_db
def test_a_reload_watches_active_and_exiting_positions_only(monitor):
    active = unpriced_position(55796)
    exiting = unpriced_position(55797, status=PositionStatus.EXITING)
    for status in (PositionStatus.PENDING, PositionStatus.EXITED, PositionStatus.CANCELLED):
        unpriced_position(55798, status=status)

    assert monitor.handle_reload(T0) is True

    assert set(monitor.positions) == {active.pk, exiting.pk}
    assert monitor.by_key == {"NSE_FNO:55796": [active.pk], "NSE_FNO:55797": [exiting.pk]}
    assert monitor.handle_reload(T0 + 1) is False


@pytest.mark.django_db
def test_an_open_position_without_an_entry_price_is_skipped(monitor):
    unpriced_position(entry_price=None)
    monitor.handle_reload(T0)
    assert monitor.positions == {}


@pytest.mark.django_db
def test_a_tick_marks_every_position_on_its_key(monitor, kv):
    first, second = unpriced_position(), unpriced_position(quantity=130)
    other = unpriced_position(55797)
    monitor.handle_reload(T0)

    marked = monitor.handle_records({"NSE_FNO:55796": tick("NSE_FNO:55796", 110.0, seq=9)}, T0)

    assert marked == 2
    assert kv.get(f"pnl:{first.pk}")["gross"] == "650.00"
    assert kv.get(f"pnl:{second.pk}")["gross"] == "1300.00"
    assert kv.get(f"pnl:{other.pk}") is None
    snap = PnlSnapshot.from_dict(kv.get(f"pnl:{first.pk}"))
    assert (snap.net, snap.tick_seq, snap.tick_time) == (Decimal("630.00"), 9, T0 - 0.2)
    assert monitor.updates == 2


@pytest.mark.django_db
def test_a_tick_of_a_contract_that_never_traded_carries_its_receive_time(monitor, kv):
    position = unpriced_position()
    monitor.handle_reload(T0)
    record = TickRecord(key="NSE_FNO:55796", seq=1, ltp=101.0, exchange_time=None, receive_time=T0)
    monitor.handle_records({record.key: record}, T0)
    assert kv.get(f"pnl:{position.pk}")["tick_time"] == T0


@pytest.mark.django_db
def test_ticks_without_a_good_price_or_for_other_keys_are_ignored(monitor, kv):
    position = unpriced_position()
    monitor.handle_reload(T0)
    records = {"NSE_FNO:55796": tick("NSE_FNO:55796", 0.0), "IDX_I:13": tick("IDX_I:13", 1.0)}
    assert monitor.handle_records(records, T0) == 0
    assert kv.get(f"pnl:{position.pk}") is None


@pytest.mark.django_db
def test_marks_reach_the_database_at_most_every_five_seconds(monitor):
    position = unpriced_position()
    monitor.handle_reload(T0)
    key = position_key(position)

    monitor.handle_records({key: tick(key, 110.0, 1)}, T0)
    monitor.handle_records({key: tick(key, 120.0, 2)}, T0 + 2)
    position.refresh_from_db()
    assert position.unrealized_pnl == Decimal("650.00")

    monitor.handle_records({key: tick(key, 105.0, 3)}, T0 + 5)
    position.refresh_from_db()
    assert position.unrealized_pnl == Decimal("325.00")
    assert position.peak_pnl == Decimal("1300.00")


@pytest.mark.django_db
def test_a_position_that_exits_gets_its_last_mark_written_and_its_cache_entry_deleted(monitor, kv):
    position = unpriced_position()
    monitor.handle_reload(T0)
    key = position_key(position)
    monitor.handle_records({key: tick(key, 110.0, 1)}, T0)
    monitor.handle_records({key: tick(key, 118.0, 2)}, T0 + 1)  # throttled: not in the DB yet
    PositionTracker.objects.filter(pk=position.pk).update(status=PositionStatus.EXITED)

    assert monitor.handle_reload(T0 + 2) is True

    position.refresh_from_db()
    assert position.unrealized_pnl == Decimal("1170.00")
    assert position.ltp == Decimal("118.0000")
    assert kv.get(f"pnl:{position.pk}") is None
    assert monitor.positions == {}
    assert monitor.by_key == {}


@pytest.mark.django_db
def test_the_subscription_follows_the_open_positions(monitor, store):
    monitor.subscription = store.subscribe()
    first = unpriced_position(55796)
    monitor.handle_reload(T0)
    assert monitor.subscription.keys() == {"NSE_FNO:55796"}

    unpriced_position(55797)
    PositionTracker.objects.filter(pk=first.pk).update(status=PositionStatus.EXITED)
    monitor.handle_reload(T0 + 1)

    assert monitor.subscription.keys() == {"NSE_FNO:55797"}
    monitor.subscription.close()


@pytest.mark.django_db
def test_a_new_position_is_marked_from_the_current_tick_on_the_next_pass(
    monitor, store, kv, monkeypatch
):
    # Inside the test's transaction autocommit is off, which close_old_connections() reads as
    # "obsolete connection" and closes (Postgres): the real loop gets a no-op here.
    monkeypatch.setattr("workers.pnl.close_old_connections", lambda: None)
    store.publish([tick("NSE_FNO:55796", 110.0, 5)])
    monitor.subscription = store.subscribe()
    position = unpriced_position()

    assert monitor.run_once() == 1

    assert kv.get(f"pnl:{position.pk}")["gross"] == "650.00"
    monitor.subscription.close()


@pytest.mark.django_db
def test_one_bad_position_never_stops_the_others(store, kv, clock):
    good, bad = unpriced_position(55796), unpriced_position(55796)

    def charges(position: PositionTracker, ltp: float, on: date) -> Decimal:
        if position.pk == bad.pk:
            raise RuntimeError("charges table missing")
        return Decimal(0)

    monitor = PnlMonitor(store, kv, estimate_exit_charges=charges, clock=clock)
    monitor.handle_reload(T0)

    assert monitor.handle_records({"NSE_FNO:55796": tick("NSE_FNO:55796", 110.0)}, T0) == 1

    assert kv.get(f"pnl:{good.pk}") is not None
    assert kv.get(f"pnl:{bad.pk}") is None
    assert monitor.errors == 1
    assert "charges table missing" in monitor.last_error


@pytest.mark.django_db
def test_a_failing_cache_write_still_reaches_the_database(store, clock):
    class BrokenKv(MemoryKeyValueStore):
        def put(self, name: str, value: dict, ttl: float | None = None) -> None:
            if name.startswith("pnl:"):
                raise ConnectionError("store down")
            super().put(name, value, ttl)

    position = unpriced_position()
    monitor = PnlMonitor(store, BrokenKv(), clock=clock)
    monitor.handle_reload(T0)

    assert monitor.handle_records({"NSE_FNO:55796": tick("NSE_FNO:55796", 110.0)}, T0) == 1

    position.refresh_from_db()
    assert position.unrealized_pnl == Decimal("650.00")
    assert monitor.errors == 1


@pytest.mark.django_db
def test_the_heartbeat_reports_positions_and_updates_when_due(monitor, kv, clock):
    unpriced_position()
    monitor.handle_reload(T0)
    monitor.handle_records({"NSE_FNO:55796": tick("NSE_FNO:55796", 110.0)}, T0)

    assert monitor.handle_heartbeat(T0) is True
    beat = kv.get("hb:pnl")
    assert (beat["state"], beat["positions"], beat["keys"], beat["updates"]) == (
        "running",
        1,
        1,
        1,
    )
    assert beat["last_tick_at"] == T0
    assert monitor.handle_heartbeat(T0 + 4.9) is False
    assert monitor.handle_heartbeat(T0 + 5.0) is True


@pytest.mark.django_db
def test_a_database_error_on_reload_keeps_the_positions_it_had(monitor, monkeypatch):
    unpriced_position()
    monitor.handle_reload(T0)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database gone")

    monkeypatch.setattr(PositionTracker.objects, "filter", broken)
    assert monitor.handle_reload(T0 + 1) is False
    assert len(monitor.positions) == 1
    assert monitor.errors == 1


def test_a_monitor_can_be_built_from_the_realtime_bundle(store, kv):
    monitor = PnlMonitor(Realtime(ticks=store, events=MemoryEventBus(), kv=kv))
    assert (monitor.ticks, monitor.kv, monitor.cache.kv) == (store, kv, kv)
    with pytest.raises(TypeError, match="realtime"):
        PnlMonitor(store)


@pytest.mark.django_db
def test_over_the_database_store_snapshots_stay_in_memory_and_the_heartbeat_does_not(store):
    db_kv = DbKeyValueStore()
    position = unpriced_position()
    monitor = PnlMonitor(store, db_kv)
    monitor.handle_reload(T0)

    monitor.handle_records({"NSE_FNO:55796": tick("NSE_FNO:55796", 110.0)}, T0)
    monitor.handle_heartbeat(T0)

    assert db_kv.get(f"pnl:{position.pk}") is None
    assert monitor.cache.get(position.pk).gross == Decimal("650.00")
    assert db_kv.get("hb:pnl")["positions"] == 1


# -- PnlMonitor, the real loop in a thread ------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_running_monitor_turns_a_published_tick_into_a_pnl_snapshot():
    store, kv = MemoryTickStore(), MemoryKeyValueStore()
    position = unpriced_position()
    monitor = PnlMonitor(store, kv, reload_interval=0.05, wait_timeout=0.05)
    stop = threading.Event()
    failures: list[BaseException] = []

    def run() -> None:
        try:
            monitor.run(stop)
        except BaseException as exc:  # surfaced in the test thread
            failures.append(exc)

    seqs = itertools.count(1)

    def snapshot_after_a_tick() -> dict[str, object] | None:
        snap = kv.get(f"pnl:{position.pk}")
        if snap is None:  # publish until the monitor has subscribed and seen one
            store.publish([tick("NSE_FNO:55796", 110.0, next(seqs), time.time())])
        return snap

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        snap = wait_until(snapshot_after_a_tick, "a pnl snapshot")
        assert snap["gross"] == "650.00"
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert failures == []
    assert kv.get("hb:pnl") is None  # cleared on a clean stop
    position.refresh_from_db()
    assert position.unrealized_pnl == Decimal("650.00")


@pytest.mark.django_db
def test_the_open_positions_read_loads_only_the_new_and_the_changed_rows():
    """read_open_positions (every second, at 2,000 positions): the fingerprints of the open
    positions, read raw with the money as text; a second read with those as known loads
    nothing; a change of status, quantity, entry price or charges loads that row only; a
    position without an entry price is reported, never loaded; a closed one is not read."""
    from workers.pnl import read_open_positions

    first = unpriced_position()
    second = unpriced_position(security_id=55797, charges=Decimal("12.5"))
    unpriced = unpriced_position(security_id=55798, entry_price=None)
    unpriced_position(security_id=55799, status=PositionStatus.EXITED)
    prints, loaded, missing = read_open_positions({}, "derivative")
    assert set(prints) == set(loaded) == {first.pk, second.pk} and missing == [unpriced.pk]
    assert PositionTracker.derivative.is_cached(loaded[first.pk])
    assert read_open_positions(prints, "derivative")[1] == {}  # nothing changed: nothing read
    for change in (
        {"charges": Decimal("12.75")},
        {"entry_price": Decimal("100.05")},
        {"quantity": 130},
        {"status": PositionStatus.EXITING},
    ):
        PositionTracker.objects.filter(pk=second.pk).update(**change)
        again, loaded, _ = read_open_positions(prints, "derivative")
        assert list(loaded) == [second.pk], change
        assert again[first.pk] == prints[first.pk] and again[second.pk] != prints[second.pk]
        prints = again
    # An equal amount written again (12.75 as 12.7500) is not a change.
    PositionTracker.objects.filter(pk=second.pk).update(charges=Decimal("12.7500"))
    assert read_open_positions(prints, "derivative")[1] == {}
