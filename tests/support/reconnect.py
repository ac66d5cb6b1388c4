"""The reconnect policy of the tests that drive the Dhan feed and order-update clients."""

from __future__ import annotations

from trading.dhan.ws_support import ReconnectPolicy

# Production waits 1 s doubling to 30 s (30 s to 120 s after a 429 or an 805); a test that
# drops connections on purpose reconnects in tenths of a second, so its waits stay short. A
# connection resets the schedule after the production 60 s, longer than any test keeps one.
FAST_RECONNECT = ReconnectPolicy(
    base=0.05, cap=0.2, rate_limited_base=0.3, rate_limited_cap=0.6, healthy_after=60.0
)
