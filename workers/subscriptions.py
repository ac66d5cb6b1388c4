"""What the feed hub subscribes: watchlist rows + ``DHANHQ_WS_WATCHLIST`` + open positions.

The desired set is recomputed from the database every refresh (0.5 s by default: cheap, two
indexed queries) and diffed against what is subscribed, so a position opened or closed and a
watchlist edit take effect within a second with no restart and no cross-process signalling to
lose. Watchlist instruments (database or environment) are never unsubscribed because a
position on them closed.

Mode per instrument: option and future contracts (``*_FNO``, ``MCX_COMM``) in full mode
(paper fills and spread gates need the depth); everything else (indices, equities) in the
hub's default mode (``DHANHQ_WS_MODE``). A watchlist row's own ``mode`` wins over the
default; when two sources want different modes, the richer one wins (full > quote > ticker).
"""

from __future__ import annotations

from collections.abc import Iterable

from trading.dhan.feed_codec import MAX_SECURITY_ID, FeedMode, segment_code
from trading.rules.market import instrument_key

__all__ = [
    "MAX_SECURITY_ID",
    "WatchlistError",
    "default_mode",
    "desired_subscriptions",
    "parse_watchlist",
]


_DEPTH_SEGMENTS = frozenset({"NSE_FNO", "BSE_FNO", "MCX_COMM", "NSE_CURRENCY", "BSE_CURRENCY"})
_MODES = {"ticker": FeedMode.TICKER, "quote": FeedMode.QUOTE, "full": FeedMode.FULL}
_RICHNESS = {FeedMode.TICKER: 0, FeedMode.QUOTE: 1, FeedMode.FULL: 2}
OPEN_STATUSES = ("pending", "active", "exiting")


class WatchlistError(ValueError):
    """A malformed watchlist entry; the message names the entry and where it came from."""


def parse_watchlist(entries: Iterable[str], source: str = "DHANHQ_WS_WATCHLIST") -> list[str]:
    """``SEG:SID`` entries (already split on comma, semicolon or newline) -> normalised keys.

    Raises WatchlistError naming the first bad entry: no colon, an unknown segment, or a
    security id that is not a positive integer (ASCII digits) of at most MAX_SECURITY_ID.
    """
    keys: list[str] = []
    for position, raw in enumerate(entries, start=1):
        entry = raw.strip()
        if not entry:
            continue
        segment, sep, sid = entry.partition(":")
        where = f"{source} entry {position} {entry!r}"
        if not sep:
            raise WatchlistError(f"{where}: expected SEGMENT:SECURITY_ID, e.g. IDX_I:13")
        segment = segment.strip().upper()
        try:
            segment_code(segment)
        except ValueError as exc:
            raise WatchlistError(f"{where}: {exc}") from None
        sid = sid.strip()
        if not (sid.isascii() and sid.isdigit()) or int(sid) <= 0:
            raise WatchlistError(f"{where}: security id {sid!r} is not a positive integer")
        if int(sid) > MAX_SECURITY_ID:
            raise WatchlistError(
                f"{where}: security id {int(sid)} is above {MAX_SECURITY_ID}, the largest the "
                "feed carries"
            )
        key = instrument_key(segment, int(sid))
        if key not in keys:
            keys.append(key)
    return keys


def default_mode(key: str, index_mode: FeedMode) -> FeedMode:
    """Full for contracts with depth (options, futures), ``index_mode`` for the rest."""
    segment = key.partition(":")[0]
    return FeedMode.FULL if segment in _DEPTH_SEGMENTS else index_mode


def _richer(a: FeedMode | None, b: FeedMode) -> FeedMode:
    return b if a is None or _RICHNESS[b] > _RICHNESS[a] else a


def merge_wanted(
    watchlist_rows: Iterable[tuple[str, int, str]],
    env_keys: Iterable[str],
    position_keys: Iterable[str],
    index_mode: FeedMode,
) -> tuple[dict[str, FeedMode], frozenset[str]]:
    """The union -> (key -> mode, the watchlisted keys). Pure: the unit under test."""
    wanted: dict[str, FeedMode] = {}
    watched: set[str] = set()
    for segment, security_id, mode in watchlist_rows:
        key = instrument_key(segment, security_id)
        watched.add(key)
        wanted[key] = _richer(wanted.get(key), _MODES.get(mode) or default_mode(key, index_mode))
    for key in env_keys:
        watched.add(key)
        wanted[key] = _richer(wanted.get(key), default_mode(key, index_mode))
    for key in position_keys:
        wanted[key] = _richer(wanted.get(key), default_mode(key, index_mode))
    return wanted, frozenset(watched)


def desired_subscriptions(
    env_keys: Iterable[str], index_mode: FeedMode
) -> tuple[dict[str, FeedMode], frozenset[str]]:
    """Read the active watchlist rows and the open positions from the database and merge."""
    from trading.models import PositionTracker, WatchlistItem

    rows = list(
        WatchlistItem.objects.filter(active=True).values_list(
            "exchange_segment", "security_id", "mode"
        )
    )
    positions = [
        instrument_key(segment, sid)
        for segment, sid in PositionTracker.objects.filter(status__in=OPEN_STATUSES).values_list(
            "exchange_segment", "security_id"
        )
    ]
    return merge_wanted(rows, env_keys, positions, index_mode)
