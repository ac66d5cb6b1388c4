"""The feed hub's wanted set: watchlist parsing, modes, the union and its precedence."""

from __future__ import annotations

import pytest

from trading.dhan.feed_codec import FeedMode
from workers.subscriptions import WatchlistError, default_mode, merge_wanted, parse_watchlist


def test_it_parses_and_normalises_entries_and_drops_duplicates():
    keys = parse_watchlist([" idx_i:13 ", "NSE_FNO:0055796", "IDX_I:13", ""])
    assert keys == ["IDX_I:13", "NSE_FNO:55796"]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("IDX_I", "entry 2 'IDX_I': expected SEGMENT:SECURITY_ID"),
        ("NSE_FUT:13", "entry 2 'NSE_FUT:13': unknown exchange segment 'NSE_FUT'"),
        ("IDX_I:abc", "entry 2 'IDX_I:abc': security id 'abc' is not a positive integer"),
        ("IDX_I:-5", "security id '-5' is not a positive integer"),
        ("IDX_I:0", "security id '0' is not a positive integer"),
        ("IDX_I:\u0661\u0663", "is not a positive integer"),  # Arabic-Indic digits
        (
            "IDX_I:99999999999999999999",
            "security id 99999999999999999999 is above 4294967295, the largest the feed carries",
        ),
        ("IDX_I:4294967296", "security id 4294967296 is above 4294967295"),
    ],
)
def test_a_malformed_entry_is_named_in_the_error(entry, message):
    with pytest.raises(WatchlistError, match="DHANHQ_WS_WATCHLIST") as excinfo:
        parse_watchlist(["IDX_I:25", entry])
    assert message in str(excinfo.value)


def test_the_largest_id_the_feed_carries_is_accepted():
    assert parse_watchlist(["NSE_FNO:4294967295"]) == ["NSE_FNO:4294967295"]


def test_options_get_full_mode_and_indices_the_default():
    assert default_mode("NSE_FNO:55796", FeedMode.TICKER) == FeedMode.FULL
    assert default_mode("BSE_FNO:1", FeedMode.QUOTE) == FeedMode.FULL
    assert default_mode("IDX_I:13", FeedMode.TICKER) == FeedMode.TICKER
    assert default_mode("NSE_EQ:1333", FeedMode.QUOTE) == FeedMode.QUOTE


def test_the_union_keeps_watchlisted_keys_and_the_richer_mode_wins():
    rows = [("IDX_I", 13, ""), ("IDX_I", 25, "ticker"), ("NSE_FNO", 7, "quote")]
    wanted, watched = merge_wanted(rows, ["IDX_I:51"], ["NSE_FNO:7", "NSE_FNO:9"], FeedMode.QUOTE)
    assert wanted == {
        "IDX_I:13": FeedMode.QUOTE,
        "IDX_I:25": FeedMode.TICKER,  # the row's own mode beats the default
        "NSE_FNO:7": FeedMode.FULL,  # a position needs depth: full beats the row's quote
        "IDX_I:51": FeedMode.QUOTE,
        "NSE_FNO:9": FeedMode.FULL,
    }
    assert watched == {"IDX_I:13", "IDX_I:25", "NSE_FNO:7", "IDX_I:51"}
