"""The day report: one trading date's closed trades, their totals and where the money went.

What ``manage.py day_report`` and the end of ``make demo`` print. The maths are pure functions
over plain values (:class:`Trade` rows, Decimal rupees): win rate, max drawdown, PnL by exit
type, the rendering. Only :func:`load_day` and :func:`latest_trading_date` read the database.

Conventions, so two readers of the report agree on what a figure means:

* A position belongs to the trading date of its market time (``opened_at``, else ``entry_at``,
  else ``created_at``), in IST: a simulated day counts as that day whatever the wall clock said.
* A trade is a closed position (``exited``); its net is ``realized_pnl`` (after the charges of
  its entry and exit orders). Trades are listed and accumulated in exit order (market time).
* A win is a trade whose net is above zero; a trade closed at exactly zero net is neither a win
  nor a loss (it still counts in the number of trades, so it lowers the win rate).
* Max drawdown is the largest fall of cumulative net PnL from its running peak, the peak
  starting at 0 before the first trade: a day whose first trade loses Rs 500 has a drawdown of
  at least 500. It is a positive amount (0 when cumulative PnL never fell).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from trading.rules.market import IST
from trading.rules.vocab import ExitType

__all__ = [
    "DayReport",
    "ExitTypeTotal",
    "Trade",
    "by_exit_type",
    "latest_trading_date",
    "load_day",
    "max_drawdown",
    "render",
    "win_rate",
]

ZERO = Decimal(0)
CENT = Decimal("0.01")
# Exit types in the order of the rules (DOMAIN "Exit rules"), so the by-type table reads like
# the rule table; a type the vocabulary does not know (or none) comes last.
_TYPE_ORDER = {member.value: i for i, member in enumerate(ExitType)}
NO_TYPE = "(none)"


@dataclass(frozen=True, slots=True)
class Trade:
    """One closed position. Prices are premium per unit, money is rupees; times are market
    times (aware)."""

    position_id: int
    index: str
    contract: str
    quantity: int
    entry_at: datetime | None
    entry_price: Decimal
    exit_at: datetime | None
    exit_price: Decimal
    exit_type: str
    exit_reason: str
    gross: Decimal
    charges: Decimal
    net: Decimal


@dataclass(frozen=True, slots=True)
class ExitTypeTotal:
    exit_type: str
    trades: int
    wins: int
    gross: Decimal
    net: Decimal


@dataclass(frozen=True, slots=True)
class DayReport:
    """A trading date's trades (in exit order) and the positions that did not close:
    ``open_positions`` pending, active or exiting; ``cancelled`` entries that never filled."""

    trading_date: date
    mode: str
    trades: tuple[Trade, ...]
    open_positions: int = 0
    cancelled: int = 0

    @property
    def gross(self) -> Decimal:
        return sum((t.gross for t in self.trades), ZERO)

    @property
    def charges(self) -> Decimal:
        return sum((t.charges for t in self.trades), ZERO)

    @property
    def net(self) -> Decimal:
        return sum((t.net for t in self.trades), ZERO)

    @property
    def wins(self) -> int:
        return sum(1 for t in self.trades if t.net > 0)

    @property
    def losses(self) -> int:
        return sum(1 for t in self.trades if t.net < 0)

    @property
    def win_rate(self) -> Decimal | None:
        return win_rate(t.net for t in self.trades)

    @property
    def max_drawdown(self) -> Decimal:
        return max_drawdown(t.net for t in self.trades)

    @property
    def by_exit_type(self) -> list[ExitTypeTotal]:
        return by_exit_type(self.trades)


def win_rate(nets: Iterable[Decimal]) -> Decimal | None:
    """Wins (net above zero) over all trades, as a fraction (0.5 = half); None with no trade
    (a rate of nothing is not 0 %)."""
    values = list(nets)
    if not values:
        return None
    return Decimal(sum(1 for v in values if v > 0)) / Decimal(len(values))


def max_drawdown(nets: Iterable[Decimal]) -> Decimal:
    """The largest fall of cumulative net PnL below its running peak (which starts at 0), in
    rupees, as a positive amount; 0 with no trade or when the sum never fell."""
    cumulative = peak = worst = ZERO
    for net in nets:
        cumulative += net
        peak = max(peak, cumulative)
        worst = max(worst, peak - cumulative)
    return worst


def by_exit_type(trades: Iterable[Trade]) -> list[ExitTypeTotal]:
    """Trades, wins, gross and net per exit type, in the exit rules' order."""
    groups: dict[str, list[Trade]] = {}
    for trade in trades:
        groups.setdefault(trade.exit_type or NO_TYPE, []).append(trade)
    return [
        ExitTypeTotal(
            exit_type=name,
            trades=len(group),
            wins=sum(1 for t in group if t.net > 0),
            gross=sum((t.gross for t in group), ZERO),
            net=sum((t.net for t in group), ZERO),
        )
        for name, group in sorted(
            groups.items(), key=lambda item: (_TYPE_ORDER.get(item[0], len(_TYPE_ORDER)), item[0])
        )
    ]


# -- rendering ------------------------------------------------------------------------------------


def _money(value: Decimal) -> str:
    return f"{value.quantize(CENT):,.2f}"


def _signed(value: Decimal) -> str:
    return f"{'+' if value > 0 else ''}{_money(value)}"


def _price(value: Decimal) -> str:
    return f"{value.quantize(CENT):.2f}"


def _clock(moment: datetime | None) -> str:
    return "--:--:--" if moment is None else f"{moment.astimezone(IST):%H:%M:%S}"


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())  # a reason never breaks the table over lines
    return text if len(text) <= width else text[: width - 3] + "..."


def render(report: DayReport, *, reason_width: int = 60) -> list[str]:
    """The report as lines of text (no trailing newlines): the trades table, the totals, the
    PnL by exit type, the positions that did not close."""
    lines = [f"day report: {report.trading_date} ({report.mode}), market times IST"]
    if report.trades:
        lines.append(
            f"{'#':>4} {'index':<9} {'contract':<27} {'qty':>5} {'entry':>8} {'at':>8} "
            f"{'exit':>8} {'at':>8} {'gross':>10} {'charges':>8} {'net':>10}  exit type: reason"
        )
        for t in report.trades:
            lines.append(
                f"{t.position_id:>4} {t.index:<9} {t.contract:<27} {t.quantity:>5} "
                f"{_price(t.entry_price):>8} {_clock(t.entry_at):>8} {_price(t.exit_price):>8} "
                f"{_clock(t.exit_at):>8} {_signed(t.gross):>10} {_money(t.charges):>8} "
                f"{_signed(t.net):>10}  {t.exit_type or NO_TYPE}: "
                f"{_short(t.exit_reason, reason_width) or '-'}"
            )
    else:
        lines.append("no trade closed on this date")
    rate = report.win_rate
    flat = len(report.trades) - report.wins - report.losses
    lines.append(
        f"trades {len(report.trades)}: {report.wins} won, {report.losses} lost"
        + (f", {flat} flat" if flat else "")
        + f"; win rate {'n/a' if rate is None else f'{rate:.1%}'}"
    )
    lines.append(
        f"gross PnL Rs {_signed(report.gross)}, charges Rs {_money(report.charges)}, "
        f"net PnL Rs {_signed(report.net)}; max drawdown Rs {_money(report.max_drawdown)}"
    )
    if report.trades:
        lines.append("PnL by exit type:")
        for row in report.by_exit_type:
            lines.append(
                f"  {row.exit_type:<16} {row.trades:>3} trade{'s' if row.trades != 1 else ' '} "
                f"{row.wins:>3} won  gross Rs {_signed(row.gross):>10}  "
                f"net Rs {_signed(row.net):>10}"
            )
    lines.append(
        f"positions not closed: {report.open_positions} open, {report.cancelled} cancelled "
        "(entries that never filled)"
    )
    return lines


# -- the database ---------------------------------------------------------------------------------


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=IST)
    return start, start + timedelta(days=1)


def latest_trading_date(mode: str | None = None) -> date | None:
    """The IST date of the most recent position (by its market time), or None without any."""
    from django.db.models import Max
    from django.db.models.functions import Coalesce

    from trading.models import PositionTracker

    rows = PositionTracker.objects.all()
    if mode:
        rows = rows.filter(mode=mode)
    latest = rows.aggregate(at=Max(Coalesce("opened_at", "entry_at", "created_at")))["at"]
    return None if latest is None else latest.astimezone(IST).date()


def load_day(day: date, mode: str | None = None) -> DayReport:
    """The report of ``day`` from the positions whose market time falls on it (IST), of one
    ``mode`` ("paper" or "live") or both when None."""
    from django.db.models.functions import Coalesce

    from trading.models import PositionStatus, PositionTracker

    start, end = _day_bounds(day)
    rows = (
        PositionTracker.objects.select_related("derivative")
        .annotate(market_at=Coalesce("opened_at", "entry_at", "created_at"))
        .filter(market_at__gte=start, market_at__lt=end)
    )
    if mode:
        rows = rows.filter(mode=mode)
    rows = list(rows)
    closed = sorted(
        (r for r in rows if r.status == PositionStatus.EXITED),
        key=lambda r: (r.exited_at or r.market_at, r.pk),
    )
    trades = tuple(
        Trade(
            position_id=r.pk,
            index=r.underlying or "?",
            contract=r.derivative.trading_symbol,
            quantity=r.quantity,
            entry_at=r.entry_at,
            entry_price=r.entry_price or ZERO,
            exit_at=r.exited_at,
            exit_price=r.exit_price or ZERO,
            exit_type=r.exit_type,
            exit_reason=r.exit_reason,
            gross=r.gross_pnl or ZERO,
            charges=r.charges or ZERO,
            net=r.realized_pnl if r.realized_pnl is not None else (r.gross_pnl or ZERO) - r.charges,
        )
        for r in closed
    )
    open_states = (PositionStatus.PENDING, PositionStatus.ACTIVE, PositionStatus.EXITING)
    return DayReport(
        trading_date=day,
        mode=mode or "paper and live",
        trades=trades,
        open_positions=sum(1 for r in rows if r.status in open_states),
        cancelled=sum(1 for r in rows if r.status == PositionStatus.CANCELLED),
    )
