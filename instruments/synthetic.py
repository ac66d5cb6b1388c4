"""Synthetic scrip masters in Dhan's exact compact format (PROTOCOL.md section 4).

Used by the import benchmark (250,000 rows), the demo catalog the project ships, tests, and the
simulator's own contract list. Rows are byte-for-byte in the real file's style: the raw float
formatting (``25800.00000`` strike, ``5.0000`` tick in paise, ``65.0`` lot), ``-0.01000`` strike
and ``XX`` option type on futures, IST expiry times (14:30 NSE, 15:30 BSE), ``0001-01-01`` on
index rows, and BSE's ``OPTIDX``/``BSXOPT`` columns.

    python -m instruments.synthetic --rows 250000 --today 2026-11-23 > master.csv
    python -m instruments.synthetic --demo --today 2026-11-23 > demo.csv
"""

from __future__ import annotations

import argparse
import calendar
import csv
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TextIO

COMPACT_HEADER = (
    "SEM_EXM_EXCH_ID,SEM_SEGMENT,SEM_SMST_SECURITY_ID,SEM_INSTRUMENT_NAME,SEM_EXPIRY_CODE,"
    "SEM_TRADING_SYMBOL,SEM_LOT_UNITS,SEM_CUSTOM_SYMBOL,SEM_EXPIRY_DATE,SEM_STRIKE_PRICE,"
    "SEM_OPTION_TYPE,SEM_TICK_SIZE,SEM_EXPIRY_FLAG,SEM_EXCH_INSTRUMENT_TYPE,SEM_SERIES,"
    "SM_SYMBOL_NAME"
).split(",")

TUESDAY, THURSDAY = 1, 3
FNO_STOCKS = 200


@dataclass(frozen=True)
class IndexSpec:
    symbol: str
    security_id: int
    exchange: str
    display: str
    spot: float
    step: int
    lot: int
    weekly: bool  # weekly expiries exist (NIFTY, SENSEX); else monthly only
    bse_symbol_name: str = ""  # SM_SYMBOL_NAME on BSE option rows (BSXOPT, BKXOPT)

    @property
    def expiry_weekday(self) -> int:
        return THURSDAY if self.exchange == "BSE" else TUESDAY


# 2026 lot sizes and strike steps; weekly expiries only for NIFTY (Tue) and SENSEX (Thu).
INDICES = (
    IndexSpec("NIFTY", 13, "NSE", "Nifty 50", 26000, 50, 65, True),
    IndexSpec("BANKNIFTY", 25, "NSE", "Nifty Bank", 59000, 100, 30, False),
    IndexSpec("FINNIFTY", 27, "NSE", "Finnifty", 27500, 50, 60, False),
    IndexSpec("MIDCPNIFTY", 442, "NSE", "Nifty Midcap Select", 13500, 25, 120, False),
    IndexSpec("NIFTYNXT50", 38, "NSE", "Nifty Next 50", 70000, 100, 25, False),
    IndexSpec("SENSEX", 51, "BSE", "Sensex", 85000, 100, 20, True, "BSXOPT"),
    IndexSpec("BANKEX", 69, "BSE", "BSE BANKEX", 65000, 100, 30, False, "BKXOPT"),
)
OTHER_INDICES = (("NSE", 21, "INDIA VIX", "India VIX"),)


def last_weekday_of_month(year: int, month: int, weekday: int) -> date:
    last = date(year, month, calendar.monthrange(year, month)[1])
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def monthly_expiries(today: date, weekday: int, count: int) -> list[date]:
    found, year, month = [], today.year, today.month
    while len(found) < count:
        expiry = last_weekday_of_month(year, month, weekday)
        if expiry >= today:
            found.append(expiry)
        month = month % 12 + 1
        year += month == 1
    return found


def weekly_expiries(today: date, weekday: int, count: int) -> list[date]:
    first = today + timedelta(days=(weekday - today.weekday()) % 7)
    return [first + timedelta(weeks=i) for i in range(count)]


def _num(value: float, places: int) -> str:
    return f"{value:.{places}f}"


class _Ids:
    def __init__(self) -> None:
        self.next = {"NSE": 35000, "BSE": 1100000, "NSE_EQ": 100000, "BSE_EQ": 500000}

    def take(self, key: str) -> int:
        value = self.next[key]
        self.next[key] += 1
        return value


def _index_rows() -> Iterator[list[str]]:
    for spec in INDICES:
        tick = "0.01" if spec.exchange == "BSE" else "0.05"
        yield [
            spec.exchange,
            "I",
            str(spec.security_id),
            "INDEX",
            "0",
            spec.symbol,
            "1",
            spec.display,
            "0001-01-01",
            "",
            "XX",
            tick,
            "",
            "INDEX",
            "X",
            spec.symbol,
        ]
    for exchange, sid, symbol, display in OTHER_INDICES:
        yield [
            exchange,
            "I",
            str(sid),
            "INDEX",
            "0",
            symbol,
            "1",
            display,
            "0001-01-01",
            "",
            "XX",
            "0.05",
            "",
            "INDEX",
            "X",
            symbol,
        ]


def _expiry_text(exchange: str, expiry: date) -> str:
    """Expiry as the file writes it: IST wall clock, 14:30 on NSE and 15:30 on BSE."""
    return f"{expiry.isoformat()} {'15:30:00' if exchange == 'BSE' else '14:30:00'}"


def _option_row(
    ids: _Ids,
    exchange: str,
    code: str,
    underlying: str,
    expiry: date,
    strike: float,
    kind: str,
    lot: int,
    flag: str,
    symbol_name: str = "",
) -> list[str]:
    month = expiry.strftime("%b")
    custom = (
        f"{underlying} {expiry:%d} {month.upper()} {strike:g} {'CALL' if kind == 'CE' else 'PUT'}"
    )
    return [
        exchange,
        "D",
        str(ids.take(exchange)),
        code,
        "0",
        f"{underlying}-{month}{expiry.year}-{strike:g}-{kind}",
        _num(lot, 1),
        custom,
        _expiry_text(exchange, expiry),
        _num(strike, 5),
        kind,
        "5.0000",
        flag,
        "OPTIDX" if exchange == "BSE" else "OP",
        "",
        symbol_name,
    ]


def _future_row(
    ids: _Ids, exchange: str, code: str, underlying: str, expiry: date, lot: int
) -> list[str]:
    month = expiry.strftime("%b")
    return [
        exchange,
        "D",
        str(ids.take(exchange)),
        code,
        "0",
        f"{underlying}-{month}{expiry.year}-FUT",
        _num(lot, 1),
        f"{underlying} {month.upper()} FUT",
        _expiry_text(exchange, expiry),
        "-0.01000",
        "XX",
        "10.0000",
        "M",
        "FUTIDX" if exchange == "BSE" else "FUT",
        "",
        "",
    ]


def _index_derivatives(
    ids: _Ids, today: date, strikes_each_side: int, weeklies: int, monthlies: int
) -> Iterator[list[str]]:
    for spec in INDICES:
        months = monthly_expiries(today, spec.expiry_weekday, monthlies)
        weeks = weekly_expiries(today, spec.expiry_weekday, weeklies) if spec.weekly else []
        expiries = sorted(set(weeks) | set(months))
        atm = round(spec.spot / spec.step) * spec.step
        for expiry in expiries:
            flag = "M" if expiry in months else "W"
            for k in range(-strikes_each_side, strikes_each_side + 1):
                for kind in ("CE", "PE"):
                    yield _option_row(
                        ids,
                        spec.exchange,
                        "OPTIDX",
                        spec.symbol,
                        expiry,
                        atm + k * spec.step,
                        kind,
                        spec.lot,
                        flag,
                        spec.bse_symbol_name,
                    )
        for expiry in months[:3]:
            yield _future_row(ids, spec.exchange, "FUTIDX", spec.symbol, expiry, spec.lot)


def _stock_name(i: int) -> str:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return "STK" + letters[i // 676 % 26] + letters[i // 26 % 26] + letters[i % 26]


def generate(
    today: date,
    *,
    rows: int | None = None,
    strikes_each_side: int = 40,
    weeklies: int = 4,
    monthlies: int = 3,
    stocks: int = 0,
    extras: bool = False,
    seed: int = 7,
) -> Iterator[list[str]]:
    """Rows (without the header). ``rows`` caps the total, filling with stock F&O to reach it."""
    rng = random.Random(seed)
    ids = _Ids()
    produced = 0

    def emit(row: list[str]) -> Iterator[list[str]]:
        nonlocal produced
        if rows is None or produced < rows:
            produced += 1
            yield row

    for row in _index_rows():
        yield from emit(row)
    # Rows mode mimics the real master: thousands of equities, ~200 of them with F&O.
    n_stocks = stocks if rows is None else max(stocks, 8000)
    stock_specs = []
    for i in range(n_stocks):
        name = _stock_name(i)
        sid = ids.take("NSE_EQ")
        price = rng.choice((150, 420, 880, 1300, 2450, 3900))
        stock_specs.append((name, price, rng.choice((250, 500, 700, 1200, 1500))))
        yield from emit(
            [
                "NSE",
                "E",
                str(sid),
                "EQUITY",
                "0",
                name,
                "1",
                f"{name.title()} Ltd",
                "",
                "",
                "",
                "10",
                "NA",
                "ES",
                "EQ",
                f"{name} LIMITED",
            ]
        )
    for row in _index_derivatives(ids, today, strikes_each_side, weeklies, monthlies):
        yield from emit(row)
    if extras:
        # A test instrument and an MCX contract, as real files carry (dropped by default).
        yield from emit(
            [
                "NSE",
                "E",
                "17001",
                "EQUITY",
                "0",
                "011NSETEST",
                "1",
                "NSE Test",
                "",
                "",
                "",
                "5",
                "NA",
                "ES",
                "EQ",
                "011NSETEST",
            ]
        )
        mcx_expiry = monthly_expiries(today, 3, 1)[0]
        yield from emit(
            [
                "MCX",
                "M",
                "447777",
                "FUTCOM",
                "0",
                f"CRUDEOIL-{mcx_expiry:%d%b%Y}-FUT",
                "100.0",
                f"CRUDEOIL {mcx_expiry:%b} FUT".upper(),
                f"{mcx_expiry.isoformat()} 23:30:00",
                "-0.01000",
                "XX",
                "100.0000",
                "M",
                "FUTCOM",
                "",
                "",
            ]
        )
    if rows is None:
        return
    # Fill with stock futures and options, three monthly expiries, widening strikes as needed.
    months = monthly_expiries(today, TUESDAY, 3)
    width = 1
    while produced < rows:
        for name, price, lot in stock_specs[:FNO_STOCKS]:
            step = max(5, round(price * 0.025 / 5) * 5)
            for expiry in months:
                if width == 1:
                    yield from emit(_future_row(ids, "NSE", "FUTSTK", name, expiry, lot))
                for k in (-width, width) if width > 0 else (0,):
                    strike = round(price / step) * step + k * step
                    if strike <= 0:
                        continue
                    for kind in ("CE", "PE"):
                        yield from emit(
                            _option_row(ids, "NSE", "OPTSTK", name, expiry, strike, kind, lot, "M")
                        )
                if produced >= rows:
                    return
        width += 1


def write_compact(out: TextIO, row_iter: Iterator[list[str]]) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COMPACT_HEADER)
    count = 0
    for row in row_iter:
        writer.writerow(row)
        count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--today", type=date.fromisoformat, default=date.today())
    parser.add_argument("--rows", type=int, help="total rows (filled with stock F&O)")
    parser.add_argument("--demo", action="store_true", help="the small catalog the demo ships")
    args = parser.parse_args(argv)
    if args.demo:
        rows = generate(
            args.today, strikes_each_side=10, weeklies=4, monthlies=2, stocks=12, extras=True
        )
    else:
        rows = generate(args.today, rows=args.rows, strikes_each_side=150, weeklies=12)
    write_compact(sys.stdout, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
