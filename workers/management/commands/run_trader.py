"""``manage.py run_trader``: the whole trader in one process (embedded mode).

Every worker role runs as a supervised thread sharing one in-memory tick store and bus (or
Redis when ``REDIS_URL`` is set): a crashed component is logged and restarted with backoff,
SIGTERM/SIGINT stop everything within a few seconds. Adding a component is one
``supervisor.add(...)`` line in ``components()``.

``--sim`` starts the built-in Dhan simulator in this process, points the Dhan settings at it
and imports its scrip master into the catalog first, so the trader runs with no account.

What a restart cannot heal stops the trader with one line and exit code 1 instead of a crash
loop: a malformed watchlist, an invalid algo config or missing Dhan credentials at start, and
later any component's configuration error, a feed error no reconnect can fix (data plan,
instrument limits) or credentials the broker refuses (``BrokerAuthFailed``; /ready says so).
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from datetime import time as dtime
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from config_schema import ConfigError
from trading.config.store import config_at_start
from trading.mode import trading_mode
from trading.rules.market import IST
from workers.broker_auth import BrokerAuthFailed
from workers.exit_engine import exit_engine_from_settings
from workers.feed_hub import FeedHubFailed, hub_from_settings
from workers.heartbeat import Heartbeat
from workers.market_clock import MarketClock
from workers.orders import manager_for
from workers.process import check_record_dir, check_redis_at_start
from workers.realtime.keys import MARKET_CLOCK
from workers.realtime.kv_store import DbKeyValueStore
from workers.realtime.redis_client import StoreRefused, on_refused
from workers.realtime.services import Realtime, realtime_from_settings
from workers.signal_engine import engine_from_settings
from workers.subscriptions import WatchlistError, parse_watchlist
from workers.supervisor import ScheduledJobs, Supervisor

logger = logging.getLogger("workers.run_trader")

# Exceptions no restart can heal: the supervisor stops everything instead of restarting.
FATAL: tuple[type[BaseException], ...] = (
    ImproperlyConfigured,
    ConfigError,
    WatchlistError,
    BrokerAuthFailed,
    FeedHubFailed,
    StoreRefused,
)


# Feed packets per subscribed instrument per real second, at most: a simulated feed beyond
# this would measure the machine, not the trader.
MAX_SIM_TICKS = 100.0


def _hhmm(text: str) -> dtime:
    try:
        return dtime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--sim-start must be HH:MM, got {text!r}") from None


def _ticks(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= MAX_SIM_TICKS:
        raise CommandError(
            f"--sim-ticks must be packets per second above 0 and at most {MAX_SIM_TICKS:g}, "
            f"got {text!r}"
        )
    return value


# Market seconds per real second, at most: at 1000x a whole session (6 h 15 min) passes in
# 23 real seconds, and feed packets are minutes of market time apart even at --sim-ticks 100
# (a candle older than signals.max_candle_age_seconds is not traded). Faster, the session is
# over before the components have started, and nothing trades.
MAX_SIM_SPEED = 1000.0


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0  # nan and inf fail the bounds below, as a word does
    if not 0 < value <= MAX_SIM_SPEED:
        raise CommandError(
            f"--sim-speed must be market seconds per real second above 0 and at most "
            f"{MAX_SIM_SPEED:g} (at 1000x a session passes in 23 s), got {text!r}"
        )
    return value


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--sim-date must be YYYY-MM-DD, got {text!r}") from None


class Command(BaseCommand):
    help = "Run the trader in one process (embedded mode): every worker as a supervised thread."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--sim", action="store_true", help="run against the built-in simulator")
        parser.add_argument(
            "--sim-speed", type=_speed, default=1.0, help="market s per real s (at most 1000)"
        )
        parser.add_argument("--sim-start", type=_hhmm, default=None, help="market time, HH:MM")
        parser.add_argument("--sim-date", type=_date, default=None, help="trading date")
        parser.add_argument("--sim-seed", type=int, default=0)
        # At a high --sim-speed the default 4 packets a second are 30 market seconds apart at
        # 120x: more keep candles fresh and the exit rules' seconds meaningful.
        parser.add_argument(
            "--sim-ticks", type=_ticks, default=4.0, help="feed packets per instrument per real s"
        )
        parser.add_argument("--sim-regime", choices=("random", "trend", "flat"), default="random")
        parser.add_argument("--record", metavar="DIR", help="record raw feed frames (replay_feed)")
        parser.add_argument("--no-seed", action="store_true", help="no candle seeding from REST")

    def handle(self, *args: Any, **options: Any) -> None:
        check_record_dir(options["record"])
        try:
            parse_watchlist(settings.DHANHQ_WS_WATCHLIST)
        except WatchlistError as exc:
            raise CommandError(str(exc)) from None
        try:
            # An invalid algo config or charges file stops the trader here, named, rather than
            # crash-looping the signal engine under the supervisor, or failing to book a fill.
            config = config_at_start()
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        logger.info("algo config %s", config.version)
        if not options["sim"]:
            missing = [
                name
                for name in ("DHANHQ_CLIENT_ID", "DHANHQ_ACCESS_TOKEN")
                if not getattr(settings, name, None)
            ]
            if missing:
                raise CommandError(
                    f"{' and '.join(missing)} not set: run_trader needs Dhan credentials "
                    "(or --sim for the built-in simulator)"
                )
        if options["sim"] and options["sim_date"] is None:
            # A trading day by the config's calendar: a demo on a holiday still shows entries
            # instead of every signal blocked by the entry window.
            options["sim_date"] = config.market.next_trading_day(datetime.now(IST).date())
        sim = self._start_simulator(options) if options["sim"] else None
        try:
            code = self._run(options, sim)
        finally:
            if sim is not None:
                sim.stop()
        if code:
            raise CommandError("some components did not stop in time (see the log)")

    def _start_simulator(self, options: dict[str, Any]) -> Any:
        from trading.dhan.sim.server import SimConfig, Simulator

        config = SimConfig(
            seed=options["sim_seed"],
            speed=options["sim_speed"],
            regime=options["sim_regime"],
            ticks_per_second=options["sim_ticks"],
            **({"start": options["sim_start"]} if options["sim_start"] else {}),
            **({"trading_date": options["sim_date"]} if options["sim_date"] else {}),
        )
        sim = Simulator(config).start()
        # Point every Dhan setting at the simulator for this process only.
        settings.DHANHQ_BASE_URL = sim.base_url
        settings.DHANHQ_WS_URL = sim.ws_url
        settings.DHANHQ_ORDER_WS_URL = sim.order_ws_url
        settings.DHANHQ_CLIENT_ID = sim.client_id
        settings.DHANHQ_ACCESS_TOKEN = sim.token
        settings.INSTRUMENTS_SCRIP_MASTER_URL = sim.scrip_master_url
        logger.info(
            "simulator on %s, trading day %s, market time %s at %gx",
            sim.base_url,
            sim.market.trading_date,
            f"{sim.now():%H:%M:%S}",
            options["sim_speed"],
        )
        try:
            call_command("import_instruments", url=sim.scrip_master_url, verbosity=0)
        except Exception:
            sim.stop()
            raise
        return sim

    def _run(self, options: dict[str, Any], sim: Any) -> int:
        mode = trading_mode()
        logger.info("trading mode: %s (%s)", mode.name.upper(), mode.reason)
        realtime = realtime_from_settings()
        try:
            check_redis_at_start(realtime.redis_url, "run_trader")
        except CommandError:
            realtime.close()
            raise
        if realtime.redis_url is None:
            # No Redis: the web process (/ready, dashboard) reads heartbeats and feed health
            # from the database instead of this process's memory.
            realtime = Realtime(
                ticks=realtime.ticks, events=realtime.events, kv=DbKeyValueStore(), redis_url=None
            )
        supervisor_beat = Heartbeat(realtime.kv, "run_trader")
        # Market time as every component sees it: the feed hub's clock, followed through kv
        # (with --sim too: the simulator is Dhan for all the components know).
        market = MarketClock(name="run_trader")

        def on_status(status: dict[str, dict]) -> None:
            states = {name: s["state"] for name, s in status.items()}
            fields: dict[str, Any] = {"components": status, "mode": mode.name}
            if market.follow(realtime.kv.get(MARKET_CLOCK)):
                fields["market_time"] = f"{market.datetime():%Y-%m-%d %H:%M:%S}"
            supervisor_beat.beat(
                "running" if all(v == "running" for v in states.values()) else "degraded", **fields
            )

        supervisor = Supervisor(
            heartbeat_interval=5.0, log_interval=30.0, on_status=on_status, fatal=FATAL
        )
        self.components(supervisor, realtime, options, mode.live)
        # A component (or the pub/sub reader's thread) that meets a Redis refusal stops
        # everything, even where the component itself treats the error as a passing fault.
        forget = on_refused(lambda error: supervisor.fail("redis", str(error)))
        started = datetime.now()
        try:
            code = supervisor.run_forever(stop_timeout=4.0)
        finally:
            forget()
        try:
            supervisor_beat.beat("stopped", components=supervisor.status())
        except Exception as exc:
            logger.warning("run_trader: last heartbeat not written: %s", exc)
        realtime.close()
        logger.info("run_trader: stopped after %s", datetime.now() - started)
        if supervisor.fatal_error is not None:
            raise CommandError(supervisor.fatal_error)
        return code

    @staticmethod
    def components(
        supervisor: Supervisor,
        realtime: Realtime,
        options: dict[str, Any],
        live: bool,
    ) -> None:
        """Every component, one line each."""
        supervisor.add(
            "feed_hub",
            lambda: hub_from_settings(
                realtime,
                record_dir=options["record"],
                seed_candles=not options["no_seed"],
            ),
            critical=True,
        )
        supervisor.add(
            "signal_engine",
            lambda: engine_from_settings(realtime, live=live),
        )
        # Exit rules on every tick and a 1 s sweep; the PnL cache (pnl:{id}) too.
        supervisor.add(
            "exit_engine", lambda: exit_engine_from_settings(realtime, live=live), critical=True
        )
        # The project's Celery app is the current one (algo_scalper/__init__.py creates it when
        # Django loads the settings): handed in, so workers never import the project shell.
        supervisor.add(
            "scheduled_jobs",
            lambda: ScheduledJobs(
                settings.CELERY_BEAT_SCHEDULE, app=current_app._get_current_object()
            ),
        )
        # The one owner of order events in this process: the paper broker, or Dhan's order
        # updates (live); chases, unknown outcomes, claimed exits.
        supervisor.add("order_manager", lambda: manager_for(realtime, live=live), critical=True)
