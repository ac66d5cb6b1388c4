"""`make demo`: the product end to end on embedded defaults (SQLite, no Redis, paper mode).

Today that is the instrument catalog: migrate a demo database, import the small scrip master the
project ships (Dhan's exact compact format), print the catalog status, and answer the queries the
trading engine will ask (index lookup, nearest expiry, ATM strike, contract, lot and freeze size).
Later issues extend it into a full paper-trading session against the built-in simulator.
"""

from __future__ import annotations

import os
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO_DB = ROOT / "var" / "demo.sqlite3"
DEMO_CATALOG = ROOT / "instruments" / "fixtures" / "demo_scrip_master.csv"


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def main() -> int:
    sys.path.insert(0, str(ROOT))
    DEMO_DB.parent.mkdir(parents=True, exist_ok=True)
    # The demo never touches a configured database: it always uses its own SQLite file.
    os.environ["DATABASE_URL"] = f"sqlite:///{DEMO_DB}"
    os.environ.pop("REDIS_URL", None)
    os.environ["PAPER_MODE"] = "true"
    os.environ.setdefault("DJANGO_DEBUG", "true")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "algo_scalper.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.core.management.base import CommandError
    from django.utils import timezone

    from instruments import catalog

    print(f"algo-scalper demo: embedded mode, SQLite at {DEMO_DB.relative_to(ROOT)}, paper mode")
    step("migrate")
    call_command("migrate", verbosity=0)
    print("database schema is up to date")

    step(f"import the shipped catalog ({DEMO_CATALOG.relative_to(ROOT)})")
    try:
        call_command("import_instruments", file=str(DEMO_CATALOG))
    except CommandError as exc:
        print(f"import failed: {exc}", file=sys.stderr)
        return 1

    step("catalog status")
    try:
        call_command("instruments_status")
    except SystemExit as exc:  # exit 1 means empty or stale: the demo just imported, so fail
        if exc.code:
            return int(exc.code)

    step("what the trading engine asks the catalog")
    nifty = catalog.index_by_name("NIFTY")
    print(f"index NIFTY -> {nifty.key} ({nifty.display_name})")
    today = date.today()
    upcoming = catalog.expiries(nifty, today)
    if not upcoming:
        # The shipped file is static; its contracts may have expired since it was generated.
        upcoming = catalog.expiries(nifty, date.min)
        print(f"(the demo catalog's expiries are all before {today}; showing its first one)")
    expiry = upcoming[0]
    spot = 26012.35
    atm = catalog.nearest_strike(nifty, expiry, spot)
    call = catalog.option_contract(nifty, expiry, atm, "CE")
    print(f"nearest NIFTY expiry: {expiry} ({len(upcoming)} listed)")
    print(f"ATM strike for spot {spot}: {atm}  ({len(catalog.strikes(nifty, expiry))} strikes)")
    print(
        f"contract: {call.trading_symbol} = {call.key}, lot {call.lot_size}, "
        f"tick Rs {call.tick_size}, expires {timezone.localtime(call.expiry_at):%Y-%m-%d %H:%M} IST"
    )
    print(f"freeze quantity for NIFTY: {catalog.freeze_quantity('NIFTY')} units per order")
    sensex = catalog.index_by_name("SENSEX")
    print(
        f"index SENSEX -> {sensex.key}; weekly expiries from {catalog.expiries(sensex, expiry)[0]}"
    )

    step("done")
    print("Run `make test` for the full suite (starts throwaway PostgreSQL and Redis).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
