"""Index candles from Dhan's intraday chart API: the history the feed hub seeds its candles
with and the signal engine warms its indicators with (one request builder for both)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from trading.dhan.rest_types import IntradayChartRequest
from trading.rules.market import INDEX_SEGMENT, split_key
from workers.candles import Candle, candles_from_chart

__all__ = ["index_minutes"]


def index_minutes(rest: Any, key: str, start: datetime, now: datetime) -> list[Candle]:
    """An index's 1-minute candles from ``start`` to ``now`` (the last one may still be
    forming) from Dhan's intraday chart API; raises what the client or the conversion raise."""
    answer = rest.intraday_chart(
        IntradayChartRequest(
            securityId=split_key(key)[1],
            exchangeSegment=INDEX_SEGMENT,
            instrument="INDEX",
            interval=1,
            fromDate=start,
            toDate=now + timedelta(minutes=1),
        )
    )
    return candles_from_chart(key, answer)
