"""trading/report.py: the day report's maths (pure) and its reading of one date's positions."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest

from tests.support.rows import ist, make_derivative, make_position
from trading.report import (
    DayReport,
    Trade,
    by_exit_type,
    latest_trading_date,
    load_day,
    max_drawdown,
    render,
    win_rate,
)
from trading.rules.market import IST

D = Decimal


def trade(
    net: str, exit_type: str = "STOP_LOSS", *, gross: str | None = None, pid: int = 1
) -> Trade:
    gross_value = D(gross) if gross is not None else D(net) + D("60")
    return Trade(
        position_id=pid,
        index="NIFTY",
        contract="NIFTY-Nov2026-26000-CE",
        quantity=65,
        entry_at=ist(2026, 11, 23, 10, 0),
        entry_price=D("100"),
        exit_at=ist(2026, 11, 23, 10, 20),
        exit_price=D("100") + gross_value / 65,
        exit_type=exit_type,
        exit_reason="why",
        gross=gross_value,
        charges=gross_value - D(net),
        net=D(net),
    )


# -- pure: win rate ---------------------------------------------------------------------------


def test_the_win_rate_of_no_trade_is_none_not_zero():
    assert win_rate([]) is None


def test_the_win_rate_of_all_losses_is_zero():
    assert win_rate([D("-10"), D("-0.01"), D("-500")]) == 0


def test_a_trade_at_exactly_zero_net_is_not_a_win_but_counts():
    assert win_rate([D("0"), D("10")]) == D("0.5")
    assert win_rate([D("0")]) == 0


def test_the_win_rate_is_wins_over_trades():
    assert win_rate([D("1"), D("2"), D("-3"), D("4")]) == D("0.75")


# -- pure: max drawdown -------------------------------------------------------------------------


def test_no_trade_has_no_drawdown():
    assert max_drawdown([]) == 0


def test_only_wins_have_no_drawdown():
    assert max_drawdown([D("100"), D("50"), D("1")]) == 0


def test_the_peak_starts_at_zero_so_a_first_loss_is_a_drawdown():
    assert max_drawdown([D("-500")]) == D("500")


def test_all_losses_draw_down_by_their_sum():
    assert max_drawdown([D("-100"), D("-250.50"), D("-49.50")]) == D("400.00")


def test_the_drawdown_is_the_largest_fall_from_a_running_peak_not_the_lowest_point():
    # Cumulative: 300, 100, 400, -50, 150: the fall from 400 to -50 (450) beats 300 to 100.
    assert max_drawdown([D("300"), D("-200"), D("300"), D("-450"), D("200")]) == D("450")


def test_a_recovery_to_the_same_peak_is_not_a_new_drawdown():
    # Ties: back to exactly the peak, then the same fall again: the drawdown stays 100.
    assert max_drawdown([D("100"), D("-100"), D("100"), D("-100")]) == D("100")


def test_flat_trades_change_nothing():
    assert max_drawdown([D("0"), D("0")]) == 0


# -- pure: by exit type, totals, rendering ------------------------------------------------------


def test_pnl_by_exit_type_follows_the_rules_order_and_sums_each_type():
    trades = [
        trade("-120", "STOP_LOSS", pid=1),
        trade("300", "TAKE_PROFIT", pid=2),
        trade("-80", "STOP_LOSS", pid=3),
        trade("40", "TIME_EXIT", pid=4),
        trade("5", "", pid=5),
    ]
    rows = by_exit_type(trades)
    assert [(r.exit_type, r.trades, r.wins, r.net) for r in rows] == [
        ("TIME_EXIT", 1, 1, D("40")),
        ("STOP_LOSS", 2, 0, D("-200")),
        ("TAKE_PROFIT", 1, 1, D("300")),
        ("(none)", 1, 1, D("5")),
    ]
    assert rows[1].gross == D("-80")  # (-120 + 60) + (-80 + 60)


def test_the_totals_add_up_the_trades():
    report = DayReport(
        date(2026, 11, 23),
        "paper",
        (trade("-120", pid=1), trade("300", "TAKE_PROFIT", pid=2), trade("0", pid=3)),
        open_positions=1,
        cancelled=2,
    )
    assert (report.gross, report.charges, report.net) == (D("360"), D("180"), D("180"))
    assert (report.wins, report.losses) == (1, 1)
    assert report.win_rate == D(1) / D(3)
    assert report.max_drawdown == D("120")
    text = "\n".join(render(report))
    assert "trades 3: 1 won, 1 lost, 1 flat; win rate 33.3%" in text
    assert "gross PnL Rs +360.00, charges Rs 180.00, net PnL Rs +180.00" in text
    assert "max drawdown Rs 120.00" in text
    assert "positions not closed: 1 open, 2 cancelled" in text


def test_an_empty_day_says_so_and_has_no_rate():
    text = "\n".join(render(DayReport(date(2026, 11, 23), "paper", ())))
    assert "no trade closed on this date" in text
    assert "win rate n/a" in text
    assert "max drawdown Rs 0.00" in text
    assert "PnL by exit type" not in text


def test_a_long_reason_is_cut_and_never_breaks_the_line():
    long = trade("10", "DANGER_ZONE")
    object.__setattr__(long, "exit_reason", "losing 6.2 %\nfor 130 s " + "x" * 200)
    lines = render(DayReport(date(2026, 11, 23), "paper", (long,)), reason_width=40)
    row = next(line for line in lines if "DANGER_ZONE:" in line)
    assert row.endswith("...") and "\n" not in row
    assert "DANGER_ZONE: losing 6.2 % for 130 s xxx" in row


# -- the database -------------------------------------------------------------------------------


def closed(contract, opened: datetime, exited: datetime, net: str, **columns) -> object:
    gross = D(net) + D("70")
    return make_position(
        contract.security_id,
        status="exited",
        opened_at=opened,
        entry_at=opened,
        exited_at=exited,
        exit_price=D("110"),
        gross_pnl=gross,
        charges=D("70"),
        realized_pnl=D(net),
        **columns,
    )


@pytest.mark.django_db
def test_the_day_is_read_from_the_positions_market_times_in_exit_order():
    nifty = make_derivative(55796)
    bank = make_derivative(55797, "BANKNIFTY")
    day = date(2026, 11, 23)
    late = closed(
        nifty,
        ist(2026, 11, 23, 9, 30),
        ist(2026, 11, 23, 11, 0),
        "-300",
        exit_type="STOP_LOSS",
        exit_reason="LTP 88.00 <= stop 88.04 (initial)",
    )
    early = closed(
        bank,
        ist(2026, 11, 23, 10, 0),
        ist(2026, 11, 23, 10, 30),
        "500",
        underlying="BANKNIFTY",
        exit_type="TAKE_PROFIT",
        exit_reason="+40 %",
    )
    # Other dates: the day before, and just after midnight IST (still 2026-11-23 in UTC).
    closed(nifty, ist(2026, 11, 22, 14, 0), ist(2026, 11, 22, 14, 5), "999")
    closed(nifty, ist(2026, 11, 24, 0, 10), ist(2026, 11, 24, 9, 20), "999")
    make_position(nifty.security_id, status="active", opened_at=ist(2026, 11, 23, 15, 0))
    make_position(nifty.security_id, status="exiting", opened_at=ist(2026, 11, 23, 14, 0))
    make_position(nifty.security_id, status="cancelled", opened_at=ist(2026, 11, 23, 12, 0))
    make_position(
        nifty.security_id, status="active", mode="live", opened_at=ist(2026, 11, 23, 12, 0)
    )

    report = load_day(day, "paper")

    assert [t.position_id for t in report.trades] == [early.pk, late.pk]
    first = report.trades[0]
    assert (first.index, first.contract, first.quantity) == (
        "BANKNIFTY",
        "BANKNIFTY-Nov2026-26000-CE",
        130,
    )
    assert (first.entry_price, first.exit_price) == (D("100.0500"), D("110"))
    assert (first.gross, first.charges, first.net) == (D("570"), D("70"), D("500"))
    assert (first.exit_type, first.exit_reason) == ("TAKE_PROFIT", "+40 %")
    assert first.exit_at == ist(2026, 11, 23, 10, 30)
    # 500 then -300: cumulative 500, 200; the drawdown is 300, the net 200.
    assert (report.net, report.max_drawdown, report.win_rate) == (D("200"), D("300"), D("0.5"))
    assert (report.open_positions, report.cancelled) == (2, 1)
    assert load_day(day).open_positions == 3  # both modes: the live one too


@pytest.mark.django_db
def test_a_position_without_a_market_time_counts_on_its_creation_date():
    nifty = make_derivative(55796)
    row = make_position(nifty.security_id, status="cancelled")
    created = row.created_at.astimezone(IST).date()
    assert load_day(created).cancelled == 1
    assert latest_trading_date() == created


@pytest.mark.django_db
def test_the_latest_date_is_the_most_recent_market_time_of_the_mode():
    nifty = make_derivative(55796)
    closed(nifty, ist(2026, 11, 20, 10, 0), ist(2026, 11, 20, 10, 5), "1")
    make_position(
        nifty.security_id, status="active", mode="live", opened_at=ist(2026, 11, 23, 10, 0)
    )
    assert latest_trading_date("paper") == date(2026, 11, 20)
    assert latest_trading_date("live") == date(2026, 11, 23)
    assert latest_trading_date() == date(2026, 11, 23)


@pytest.mark.django_db
def test_no_position_has_no_latest_date():
    assert latest_trading_date() is None
