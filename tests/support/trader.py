"""``manage.py run_trader`` in live mode as a real process, against a simulator that lives in the
test process (tests/e2e/test_live_mode.py, tests/e2e/test_crash_safety.py).

The simulator plays Dhan: the trader gets only its printed settings, and its order book lives
here, so it outlives the trader's SIGKILL exactly as Dhan's outlives a crashed server. The
database is the test's PostgreSQL database (the trader process and the test read and write the
same rows), Redis is the suite's. The checks read both sides: the journal through the ORM, the
broker through ``sim.broker``.

Every wait is bounded and names what it waited for; a trader that died when it should not
have fails the wait at once with its log.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml

from tests.support.market import away_from_wall
from trading.dhan.sim.server import SimConfig, Simulator

ROOT = Path(__file__).resolve().parents[2]
WAIT = 60.0  # seconds any one condition may take (never reached when healthy)
OPEN_AT_BROKER = frozenset({"TRANSIT", "PENDING", "PART_TRADED"})


def live_simulator(**overrides: Any) -> Simulator:
    """A trending day at 60x (a market minute per second), at a session time in the entry
    window and away from the wall clock's (tests/support/market.py), so every process must
    take market time from the feed."""
    day, start = away_from_wall(dtime(10, 0), dtime(13, 0))
    config = SimConfig(
        **{
            "seed": 5,
            "speed": 60.0,
            "start": start,
            "trading_date": day,
            "regime": "trend",
            "strikes_each_side": 4,
            "weeklies": 1,
            "monthlies": 1,
            **overrides,
        }
    )
    return Simulator(config).start()


def database_url() -> str:
    """The test database as a URL for the trader process: it must see what the test sees."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.fail(
            "these tests run the trader as its own process on the test's database, which must "
            "be PostgreSQL: run them with `make test`"
        )
    s = connection.settings_dict
    user, password = quote(s["USER"] or "", safe=""), quote(s["PASSWORD"] or "", safe="")
    auth = f"{user}:{password}@" if password else f"{user}@"
    return f"postgres://{auth}{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def algo_config(
    directory: Path, *, sizing: dict[str, Any] | None = None, nifty: dict[str, Any] | None = None
) -> Path:
    """A copy of config/ whose algo.yml trades NIFTY only, on every candle (``adx_min`` 0:
    the supertrend's direction is the signal), with no cooldown and caps high enough for a
    test's entries, and no exit rule but the kill switch; each entry goes as one order per
    lot (``freeze_quantity`` 65), so an entry is a freeze-split set of orders. ``sizing``
    overrides ``risk.sizing`` keys, ``nifty`` the NIFTY index's."""
    target = directory / "config"
    shutil.copytree(ROOT / "config", target)
    path = target / "algo.yml"
    data = yaml.safe_load(path.read_text())
    for index in data["indices"]:
        index["enabled"] = index["key"] == "NIFTY"
        index.update(
            max_trades_per_day=100,
            max_concurrent=2,
            cooldown_seconds=0,
            cooldown_after_loss_seconds=0,
            freeze_quantity=65,
        )
        if index["key"] == "NIFTY":
            index.update(nifty or {})
    data["signals"]["adx_min"] = 0
    data["risk"].update(max_trades_per_day=100, max_concurrent=3)
    data["risk"]["daily_loss_limit"] = {"rupees": 1_000_000, "pct_of_capital": None}
    data["risk"]["loss_streak"]["count"] = 100
    data["risk"]["sizing"].update({"risk_per_trade_rupees": 5000, "max_lots": 3, **(sizing or {})})
    # The exit engine runs in every trader; these tests decide when a position exits (a manual
    # exit, the kill switch), so no rule may close one on its own while they wait for the
    # journal and the broker to settle. The kill switch stays: it is how they flatten.
    for name, rule in data["exits"].items():
        if name != "kill_switch":
            rule["enabled"] = False
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return target


class Trader:
    """One worker process (``run_trader`` unless told) and its log."""

    def __init__(self, env: dict[str, str], log: Path, command: str = "run_trader") -> None:
        self.log = log
        self._file = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", command],
            cwd=ROOT,
            env=env,
            stdout=self._file,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log.read_text()

    def alive(self) -> bool:
        return self.process.poll() is None

    def killed_itself(self, timeout: float = WAIT, *, in_routes: bool = False) -> None:
        """Wait for the process to die by its failpoint's SIGKILL. ``in_routes``: the failpoint
        is on the exit engine's route (workers/exit_routes.py): its route process dies by it
        and the engine stops with it, loudly and not cleanly."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the trader did not reach its failpoint in {timeout} s:\n{self.tail()}")
        if in_routes:
            assert code not in (0, None), f"exit code {code}:\n{self.tail()}"
            died = f"route process died (killed by signal {int(signal.SIGKILL)})"
            assert died in self.output(), self.tail()
        else:
            assert code == -signal.SIGKILL, f"exit code {code}, not SIGKILL:\n{self.tail()}"
        self._file.close()

    def kill(self) -> None:
        """SIGKILL from outside (a power cut); returns once it is dead."""
        self.process.kill()
        self.process.wait(10)
        self._file.close()

    def stop(self) -> None:
        """SIGTERM, as an operator stops it; it must exit cleanly."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(15)
        self._file.close()
        assert code == 0, f"run_trader exited {code} on SIGTERM:\n{self.tail()}"
        assert "Traceback" not in self.output(), self.output()

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._file.close()


class Desk:
    """The simulator, the trader's environment and every trader started (killed at the end)."""

    def __init__(self, sim: Simulator, tmp_path: Path, redis_url: str, config: Path) -> None:
        self.sim = sim
        self.tmp_path = tmp_path
        self.env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
        self.env.pop("ALGO_FAILPOINT", None)
        self.env.update(dict(line.split("=", 1) for line in sim.settings_lines()))
        self.env.update(
            DATABASE_URL=database_url(),
            REDIS_URL=redis_url,
            DJANGO_DEBUG="true",
            LOG_LEVEL="INFO",
            PAPER_MODE="false",
            ENABLE_ORDER="true",
            ALGO_CONFIG_DIR=str(config),
        )
        self.traders: list[Trader] = []

    def start(
        self, failpoint: str | None = None, *, command: str = "run_trader", **env: str
    ) -> Trader:
        environ = {**self.env, **env}
        if failpoint:
            environ["ALGO_FAILPOINT"] = failpoint
        log = self.tmp_path / f"{command}-{len(self.traders) + 1}.log"
        trader = Trader(environ, log, command)
        self.traders.append(trader)
        return trader

    def wait(
        self,
        condition: Callable[[], Any],
        what: str,
        timeout: float = WAIT,
        trader: Trader | list[Trader] | None = None,
    ) -> Any:
        """Poll ``condition`` until it is truthy (returned), or fail naming ``what``; a worker
        (``trader``: one or several) that died meanwhile fails it at once, with its log."""
        workers = [] if trader is None else trader if isinstance(trader, list) else [trader]
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            for worker in workers:
                if not worker.alive():
                    pytest.fail(f"{worker.log.name} died waiting for {what}:\n{worker.tail()}")
            if time.monotonic() > deadline:
                logs = "".join(f"\n{w.log.name}:\n{w.tail()}" for w in workers)
                pytest.fail(f"timed out after {timeout} s waiting for {what}{logs}")
            time.sleep(0.05)

    def close(self) -> None:
        for trader in self.traders:
            trader.close()


@dataclass(frozen=True)
class BrokerBook:
    """The broker's side: its orders (wire dicts) and the units and turnover of their trades."""

    orders: list[dict[str, Any]]
    traded: dict[str, tuple[int, Decimal]]  # order id -> (units, rupees)

    @classmethod
    def read(cls, sim: Simulator) -> BrokerBook:
        traded: dict[str, tuple[int, Decimal]] = defaultdict(lambda: (0, Decimal(0)))
        for trade in sim.broker.trades():
            units, value = traded[trade["orderId"]]
            price = Decimal(str(trade["tradedPrice"]))
            traded[trade["orderId"]] = (
                units + trade["tradedQuantity"],
                value + price * trade["tradedQuantity"],
            )
        return cls(list(sim.broker.orders()), dict(traded))

    def by_correlation(self) -> dict[str, dict[str, Any]]:
        return {order["correlationId"]: order for order in self.orders}

    def open(self) -> list[str]:
        return [o["correlationId"] for o in self.orders if o["orderStatus"] in OPEN_AT_BROKER]


def settled(sim: Simulator) -> bool:
    """Nothing working in the journal and nothing open at the broker."""
    from trading.models import Order
    from trading.orders.states import WORKING

    return not Order.objects.filter(status__in=WORKING).exists() and not BrokerBook.read(sim).open()


def assert_exactly_once(sim: Simulator) -> BrokerBook:
    """What every crash must leave, once the journal and the broker have settled:

    * the broker holds each correlation id at most once, and every order it holds is in the
      journal under that id and that broker id, in the broker's state, with the broker's
      filled units;
    * every broker trade has its order, and its position, in the database: per order, the
      journal's fills are the broker's trades (units exactly; rupees to the paisa of the
      broker's rounded average), and their charges are the order's;
    * an order of the journal the broker never had was never filled, and ended;
    * no position has two entry order sets: one position per signal, one generation of entry
      orders each, one order per freeze slot, no more units than the signal sized;
    * every position's units are its entry fills; an exited one sold them all;
    * the broker's open positions are the journal's (reconciliation would find nothing).

    Returns the broker's book for the caller's own assertions.
    """
    from trading.models import Fill, Order, PositionTracker, TradingSignal
    from trading.orders.reconcile import journal_positions

    book = BrokerBook.read(sim)
    counts = Counter(order["correlationId"] for order in book.orders)
    twice = {cid: n for cid, n in counts.items() if n > 1}
    assert not twice, f"correlation ids sent more than once: {twice}"
    journal = {order.correlation_id: order for order in Order.objects.all()}
    at_broker = book.by_correlation()
    for cid, theirs in at_broker.items():
        ours = journal.get(cid)
        assert ours is not None, f"the broker has {cid} ({theirs['orderStatus']}), the journal not"
        assert ours.broker_order_id == theirs["orderId"], (cid, ours.broker_order_id, theirs)
        assert (ours.status, ours.filled_quantity) == (
            theirs["orderStatus"],
            theirs["filledQty"],
        ), f"{cid}: journal {ours.status} {ours.filled_quantity}, broker {theirs}"
        fills = list(Fill.objects.filter(order=ours))
        units = sum(f.quantity for f in fills)
        value = sum((f.price * f.quantity for f in fills), Decimal(0))
        broker_units, broker_value = book.traded.get(theirs["orderId"], (0, Decimal(0)))
        assert units == broker_units == theirs["filledQty"], (cid, units, broker_units)
        # Dhan's order updates carry the average to the paisa: within half a paisa a unit,
        # plus the rounding of each fill's derived price to the journal's 4 places (half of
        # 0.0001 a unit).
        tolerance = Decimal("0.00505") * units
        assert abs(value - broker_value) <= tolerance, (cid, value, broker_value)
        assert ours.charges == sum((f.charges for f in fills), Decimal(0)), cid
    for cid, ours in journal.items():
        if cid in at_broker:
            continue
        assert ours.status in ("CANCELLED", "REJECTED"), f"{cid} never reached the broker: {ours}"
        assert ours.filled_quantity == 0 and not ours.fills.exists(), cid
    for position in PositionTracker.objects.all():
        entries = list(position.orders.filter(leg="entry"))
        assert {o.generation for o in entries} == {0}, f"position #{position.pk}: {entries}"
        assert sorted(o.leg_index for o in entries) == list(range(len(entries)))
        signal = TradingSignal.objects.get(pk=position.signal_id)
        assert sum(o.quantity for o in entries) == signal.intent["quantity"], position.pk
        bought = sum(o.filled_quantity for o in entries)
        sold = sum(o.filled_quantity for o in position.orders.filter(leg="exit"))
        if position.status in ("active", "exiting", "exited"):
            assert position.quantity == bought > 0, (position.pk, position.status, bought)
        if position.status == "exited":
            assert sold == bought, (position.pk, sold, bought)
        if position.status == "cancelled":
            assert bought == 0, position.pk
    assert PositionTracker.objects.values("signal_id").distinct().count() == (
        PositionTracker.objects.count()
    )
    broker_positions = {
        (row["exchangeSegment"], int(row["securityId"])): row["netQty"]
        for row in sim.broker.positions(sim.now())
        if row["netQty"]
    }
    assert broker_positions == journal_positions(), (broker_positions, journal_positions())
    return book


def stop_entries() -> None:
    """The operator's trading switch off: no new entry (exits go on)."""
    from trading.switches import set_trading_enabled

    set_trading_enabled(False)


def import_catalog(sim: Simulator) -> None:
    """The simulator's scrip master into the test database (what a deployment runs first)."""
    from django.core.management import call_command

    call_command("import_instruments", url=sim.scrip_master_url, verbosity=0)


def seed_watchlist() -> None:
    """The watchlist rows the data migration seeds (the four indices), which a transactional
    test's flush removes: written again by the migration's own function (idempotent). The
    way these tests get them instead of ``serialized_rollback``, whose reload of the whole
    database clashed with the content types another transactional test's flush had made
    again (duplicate key on django_content_type) whenever such a test ran before them."""
    import importlib

    from django.apps import apps

    importlib.import_module("trading.migrations.0003_seed_index_watchlist").seed(apps, None)


def desk_for(
    tmp_path: Path,
    redis_url: str,
    *,
    sizing: dict[str, Any] | None = None,
    nifty: dict[str, Any] | None = None,
    **sim_config: Any,
) -> Iterator[Desk]:
    """A started simulator, its catalog imported, a desk; everything stopped at the end.
    ``sizing`` and ``nifty`` edit the trader's algo.yml (:func:`algo_config`)."""
    sim = live_simulator(**sim_config)
    try:
        seed_watchlist()
        import_catalog(sim)
        desk = Desk(sim, tmp_path, redis_url, algo_config(tmp_path, sizing=sizing, nifty=nifty))
        try:
            yield desk
        finally:
            desk.close()
    finally:
        sim.stop()
