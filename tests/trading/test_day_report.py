"""manage.py day_report: the report of one date (default the latest), one-line errors."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.support.rows import ist, make_position

pytestmark = pytest.mark.django_db


def report(**options: object) -> str:
    out = StringIO()
    call_command("day_report", stdout=out, **options)
    return out.getvalue()


def exited(opened_day: int, net: str, **columns: object) -> None:
    make_position(
        55796,
        status="exited",
        opened_at=ist(2026, 11, opened_day, 10, 0),
        entry_at=ist(2026, 11, opened_day, 10, 0),
        exited_at=ist(2026, 11, opened_day, 10, 12),
        exit_price=Decimal("104.5"),
        gross_pnl=Decimal(net) + Decimal("64"),
        charges=Decimal("64"),
        realized_pnl=Decimal(net),
        exit_type="TRAILING_STOP",
        exit_reason="LTP 104.50 <= stop 104.55 (trailing)",
        **columns,
    )


def test_without_a_date_it_reports_the_latest_trading_date():
    exited(20, "-100")
    exited(23, "250.5")
    text = report()
    assert text.startswith("day report: 2026-11-23 (paper and live)")
    assert "TRAILING_STOP: LTP 104.50 <= stop 104.55 (trailing)" in text
    assert "10:00:00" in text and "10:12:00" in text  # entry and exit, market time IST
    assert "net PnL Rs +250.50" in text and "-100.00" not in text


def test_a_date_and_a_mode_choose_the_rows():
    exited(20, "-100")
    exited(23, "250.5", mode="live")
    text = report(date="2026-11-20", mode="paper")
    assert text.startswith("day report: 2026-11-20 (paper)")
    assert "net PnL Rs -100.00" in text and "win rate 0.0%" in text
    assert report(mode="paper").startswith("day report: 2026-11-20 (paper)")


def test_an_empty_database_has_nothing_to_report():
    assert report() == "no position in the database: nothing to report\n"
    assert report(mode="live") == "no live position in the database: nothing to report\n"


def test_a_date_with_no_position_reports_no_trade():
    assert "no trade closed on this date" in report(date="2026-11-23")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"date": "23-11-2026"}, "--date must be YYYY-MM-DD, got '23-11-2026'"),
        ({"date": "1999-12-31"}, "--date must be from 2000-01-01 to 2099-12-31, got '1999-12-31'"),
        ({"mode": "both"}, "--mode must be paper or live, got 'both'"),
    ],
)
def test_bad_options_get_one_line_naming_the_option(options, message):
    with pytest.raises(CommandError) as caught:
        report(**options)
    assert str(caught.value) == message
