"""trading.rules.market: the zone, the session and calendar queries, the instrument key."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest

from trading.config.types import MarketConfig
from trading.rules.market import (
    IST,
    instrument_key,
    is_open,
    ist,
    session_close_at,
    session_open_at,
    split_key,
)

MARKET = MarketConfig(
    session_open=time(9, 15), session_close=time(15, 30), holidays=frozenset({date(2026, 11, 24)})
)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2026, 11, 23, 9, 14, 59, tzinfo=IST), False),  # Monday, before the open
        (datetime(2026, 11, 23, 9, 15, tzinfo=IST), True),
        (datetime(2026, 11, 23, 15, 29, 59, tzinfo=IST), True),
        (datetime(2026, 11, 23, 15, 30, tzinfo=IST), False),
        (datetime(2026, 11, 22, 11, 0, tzinfo=IST), False),  # Sunday
        (datetime(2026, 11, 24, 11, 0, tzinfo=IST), False),  # a holiday of the calendar
        (datetime(2026, 11, 23, 4, 0, tzinfo=UTC), True),  # 09:30 IST, given in UTC
    ],
)
def test_the_session_is_open_between_the_configs_hours_on_trading_days(moment, expected):
    assert is_open(MARKET, moment) is expected


def test_the_sessions_hours_come_from_the_config_not_from_code():
    late = MarketConfig(session_open=time(10, 0), session_close=time(17, 0), holidays=frozenset())
    assert not is_open(late, datetime(2026, 11, 23, 9, 30, tzinfo=IST))
    assert is_open(late, datetime(2026, 11, 23, 16, 30, tzinfo=IST))
    assert session_open_at(late, date(2026, 11, 23)) == datetime(2026, 11, 23, 10, 0, tzinfo=IST)
    assert session_close_at(late, date(2026, 11, 23)) == datetime(2026, 11, 23, 17, 0, tzinfo=IST)


def test_a_naive_moment_is_refused_because_its_zone_is_unknown():
    with pytest.raises(ValueError, match="aware"):
        ist(datetime(2026, 11, 23, 10, 0))


def test_the_instrument_key_is_segment_colon_security_id():
    assert instrument_key("NSE_FNO", 43225) == "NSE_FNO:43225"
    assert split_key("IDX_I:13") == ("IDX_I", "13")


@pytest.mark.parametrize("key", ["IDX_I", ":13", "IDX_I:", "A:B:C", ""])
def test_a_malformed_key_is_named(key):
    with pytest.raises(ValueError, match="is not SEGMENT:SECURITY_ID"):
        split_key(key)
