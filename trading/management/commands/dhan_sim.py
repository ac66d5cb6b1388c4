"""``manage.py dhan_sim``: a fake Dhan on loopback (REST, market feed, order updates).

Prints the settings a client needs, one ``NAME=value`` per line, then serves until SIGTERM or
SIGINT. In a shell::

    eval "$(python manage.py dhan_sim --speed 60 | head -n 6)"   # in another terminal

``--write-scrip-master FILE`` writes the simulated contracts as a compact scrip master (the
catalog importer accepts it) and exits.
"""

from __future__ import annotations

import logging
import time
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from trading.dhan.sim.server import Faults, SimConfig, Simulator
from trading.shutdown import SignalStop


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--date must be YYYY-MM-DD, got {text!r}") from None


class Command(BaseCommand):
    help = "Run a protocol-faithful fake Dhan (REST + feed + order updates) on loopback."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
        parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
        parser.add_argument("--seed", type=int, default=0, help="market seed (same seed, same day)")
        parser.add_argument(
            "--speed",
            type=float,
            default=1.0,
            help="market seconds per real second (60: 6 min day)",
        )
        parser.add_argument("--date", help="trading date YYYY-MM-DD (default: today, IST)")
        parser.add_argument(
            "--start",
            help="market time at start, HH:MM (default: the session's open, config/algo.yml)",
        )
        parser.add_argument("--regime", choices=("random", "trend", "flat"), default="random")
        parser.add_argument("--ticks-per-second", type=float, default=4.0)
        parser.add_argument(
            "--full-speed",
            action="store_true",
            help="stream pre-encoded packets as fast as sockets take them (benchmarks)",
        )
        parser.add_argument(
            "--packets-per-frame",
            type=int,
            default=1,
            help="feed packets batched per WebSocket frame (Dhan's SDK reads only the first)",
        )
        parser.add_argument("--client-id", default="1000000001")
        parser.add_argument("--token", default="sim-token")
        parser.add_argument("--funds", default="1000000", help="opening balance in rupees")
        parser.add_argument("--order-update-casing", choices=("pascal", "camel"), default="pascal")
        parser.add_argument("--write-scrip-master", metavar="FILE", help="write the CSV, exit")
        faults = parser.add_argument_group("fault injection")
        faults.add_argument("--drop-after", type=float, help="cut every WS connection after N s")
        faults.add_argument("--handshake-status", type=int, help="refuse WS upgrades (e.g. 429)")
        faults.add_argument("--rest-error", choices=("429", "500", "DH-901"))
        faults.add_argument("--rest-error-share", type=float, default=0.0)
        faults.add_argument("--latency", type=float, default=0.0, help="seconds per REST call")
        faults.add_argument("--place-order-delay", type=float, default=0.0)
        faults.add_argument(
            "--token-expires-in", type=float, help="the token expires N s after start"
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        start = None  # the session's open
        if opts["start"] is not None:
            try:
                start = datetime.strptime(opts["start"], "%H:%M").time()
            except ValueError:
                raise CommandError(f"--start must be HH:MM, got {opts['start']!r}") from None
        try:
            funds = Decimal(opts["funds"])
        except InvalidOperation:
            raise CommandError(f"--funds must be a number, got {opts['funds']!r}") from None
        share = opts["rest_error_share"]
        if not 0 <= share <= 1:
            raise CommandError(f"--rest-error-share must be between 0 and 1, got {share}")
        if opts["speed"] <= 0 or opts["ticks_per_second"] <= 0 or opts["packets_per_frame"] < 1:
            raise CommandError(
                "--speed and --ticks-per-second must be positive, --packets-per-frame >= 1"
            )
        config = SimConfig(
            seed=opts["seed"],
            speed=opts["speed"],
            trading_date=_date(opts["date"]) if opts["date"] else None,
            start=start,
            regime=opts["regime"],
            client_id=opts["client_id"],
            token=opts["token"],
            ticks_per_second=opts["ticks_per_second"],
            packets_per_frame=opts["packets_per_frame"],
            full_speed=opts["full_speed"],
            funds=funds,
            host=opts["host"],
            port=opts["port"],
            order_update_casing=opts["order_update_casing"],
        )
        try:
            sim = Simulator(config)
        except ValueError as exc:  # ConfigError among them: algo.yml's session is unusable
            raise CommandError(str(exc)) from None
        if opts["write_scrip_master"]:
            with open(opts["write_scrip_master"], "w", encoding="utf-8", newline="") as out:
                out.write(sim.scrip_master_csv())
            self.stderr.write(
                f"wrote {len(sim.market.contracts)} contracts to {opts['write_scrip_master']}"
            )
            return
        sim.faults = Faults(
            drop_after=opts["drop_after"],
            handshake_status=opts["handshake_status"],
            rest_error=opts["rest_error"],
            rest_error_share=share,
            latency=opts["latency"],
            place_order_delay=opts["place_order_delay"],
        )
        stops = SignalStop("dhan_sim", logging.getLogger("trading.dhan_sim"))
        stop = stops.event
        try:
            sim.start()
        except OSError as exc:
            raise CommandError(f"cannot listen on {opts['host']}:{opts['port']}: {exc}") from None
        if opts["token_expires_in"] is not None:
            sim.faults.token_expires_at = time.time() + opts["token_expires_in"]
        for line in sim.settings_lines():
            self.stdout.write(line)
        self.stdout.flush()
        self.stderr.write(
            f"market {sim.market.trading_date} from {sim.clock.start:%H:%M} "
            f"at speed {config.speed:g}; Ctrl-C to stop"
        )
        try:
            while not stop.wait(0.5):
                pass
        finally:
            sim.stop()
            stops.close()
            self.stderr.write("simulator stopped")
