"""trading.rules.gates: every entry gate blocking and passing, and first block wins; no database."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from tests.trading.rules.factories import make_config, make_index
from trading.config.types import DailyLossLimit, Window
from trading.rules.gates import (
    ALLOW,
    GATE_NAMES,
    GATES,
    ClosedTrade,
    GateResult,
    OpenPosition,
    RiskState,
    check_contract,
    check_entry,
)

IST = ZoneInfo("Asia/Kolkata")
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=IST)  # a Monday
D = Decimal


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def at(hh: int, mm: int, ss: int = 0, day: int = 23) -> datetime:
    return datetime(2026, 11, day, hh, mm, ss, tzinfo=IST)


def opened(index: str, direction: str = "bullish", key: str = "NSE_FNO:1") -> OpenPosition:
    return OpenPosition(index=index, direction=direction, contract_key=key, opened_at=at(9, 45))


def closed(index: str, seconds_ago: float, pnl: str) -> ClosedTrade:
    return ClosedTrade(index=index, direction="bullish", exited_at=ago(seconds_ago), pnl=D(pnl))


BASE = RiskState(
    trading_enabled=True,
    kill_switch=False,
    feed_state="healthy",
    index_tick_age=0.4,
    capital=D("200000"),
    realized_pnl_today=D("0"),
    open_pnl=D("0"),
    entries_today={},
    open_positions=(),
    closed_today=(),
)
PCT_ONLY = DailyLossLimit(rupees=None, pct_of_capital=0.02)  # 2% of 200,000 = 4,000
BOTH = DailyLossLimit(rupees=D("5000"), pct_of_capital=0.01)  # 2,000 is the tighter
NO_LIMIT = DailyLossLimit(rupees=None, pct_of_capital=None)
THREE_LOSSES = (closed("SENSEX", 1500, "-100"), closed("BANKNIFTY", 1200, "-50"))


def row(
    name: str,
    gate: str | None,
    reason: str | None = None,
    *,
    now: datetime = NOW,
    index: str = "NIFTY",
    direction: str = "bullish",
    cfg: dict | None = None,
    **state: object,
) -> object:
    return pytest.param(now, index, direction, cfg or {}, state, gate, reason, id=name)


CASES = [
    row("everything-clear-passes", None),
    # trading switch, kill switch
    row(
        "trading-switch-off-blocks",
        "trading_switch",
        "trading is switched off",
        trading_enabled=False,
    ),
    row("kill-switch-on-blocks", "kill_switch", "kill switch is on", kill_switch=True),
    # entry window: weekend, holiday, session, per-index window (start inclusive, end exclusive)
    row(
        "saturday-blocks",
        "entry_window",
        "Saturday 2026-11-28 is not a trading day (weekend)",
        now=at(10, 0, day=28),
    ),
    row(
        "sunday-blocks",
        "entry_window",
        "Sunday 2026-11-29 is not a trading day (weekend)",
        now=at(10, 0, day=29),
    ),
    row(
        "holiday-blocks",
        "entry_window",
        "Wednesday 2026-11-25 is an exchange holiday",
        now=at(10, 0, day=25),
    ),
    row("the-day-after-the-holiday-passes", None, now=at(10, 0, day=26)),
    row(
        "before-the-window-blocks",
        "entry_window",
        "09:19:59 is outside the NIFTY entry window 09:20-15:00",
        now=at(9, 19, 59),
    ),
    row("window-start-passes", None, now=at(9, 20)),
    row("last-second-of-the-window-passes", None, now=at(14, 59, 59)),
    row(
        "window-end-blocks",
        "entry_window",
        "15:00:00 is outside the NIFTY entry window 09:20-15:00",
        now=at(15, 0),
    ),
    row("utc-clock-read-in-ist-passes", None, now=datetime(2026, 11, 23, 3, 50, tzinfo=UTC)),
    row(
        "utc-clock-read-in-ist-blocks",
        "entry_window",
        "09:19:00 is outside the NIFTY entry window 09:20-15:00",
        now=datetime(2026, 11, 23, 3, 49, tzinfo=UTC),
    ),
    row(
        "per-index-window-blocks-sensex",
        "entry_window",
        "09:45:00 is outside the SENSEX entry window 10:00-14:00",
        now=at(9, 45),
        index="SENSEX",
        cfg={
            "indices": (
                make_index("NIFTY"),
                make_index("SENSEX", entry_window=Window(at(10, 0).time(), at(14, 0).time())),
            )
        },
    ),
    row(
        "per-index-window-lets-nifty-through",
        None,
        now=at(9, 45),
        index="NIFTY",
        cfg={
            "indices": (
                make_index("NIFTY"),
                make_index("SENSEX", entry_window=Window(at(10, 0).time(), at(14, 0).time())),
            )
        },
    ),
    row(
        "outside-the-session-blocks-a-wider-window",
        "entry_window",
        "09:10:00 is outside the session 09:15-15:30",
        now=at(9, 10),
        cfg={
            "indices": (
                make_index("NIFTY", entry_window=Window(at(9, 0).time(), at(16, 0).time())),
            )
        },
    ),
    # feed: health state, then the index's own tick age (at or over the limit is stale)
    row("feed-stale-blocks", "feed_stale", "feed is stale, not healthy", feed_state="stale"),
    row("feed-down-blocks", "feed_stale", "feed is down, not healthy", feed_state="down"),
    row("feed-unknown-blocks", "feed_stale", "feed is unknown, not healthy", feed_state="unknown"),
    row(
        "no-index-tick-yet-blocks",
        "feed_stale",
        "no NIFTY index tick seen yet",
        index_tick_age=None,
    ),
    row(
        "index-tick-at-the-limit-blocks",
        "feed_stale",
        "NIFTY index tick 5.0 s old (limit 5 s)",
        index_tick_age=5.0,
    ),
    row("index-tick-just-under-the-limit-passes", None, index_tick_age=4.9),
    # daily loss limit: realized + open, rupees or % of capital, the tighter when both
    row(
        "loss-limit-in-rupees-blocks",
        "daily_loss_limit",
        "daily loss limit: day PnL -5,000.00 (realized -4,000.00, open -1,000.00) "
        "at or below -5,000.00 (rupees)",
        realized_pnl_today=D("-4000"),
        open_pnl=D("-1000"),
    ),
    row(
        "loss-just-short-of-the-rupee-limit-passes",
        None,
        realized_pnl_today=D("-4000"),
        open_pnl=D("-999.99"),
    ),
    row(
        "open-profit-offsets-realized-loss-passes",
        None,
        realized_pnl_today=D("-6000"),
        open_pnl=D("1500"),
    ),
    row(
        "loss-limit-in-percent-of-capital-blocks",
        "daily_loss_limit",
        "daily loss limit: day PnL -4,000.00 (realized -4,000.00, open 0.00) "
        "at or below -4,000.00 (2.00% of capital 200,000.00)",
        realized_pnl_today=D("-4000"),
        cfg={"risk__daily_loss_limit": PCT_ONLY},
    ),
    row(
        "loss-under-the-percent-limit-passes",
        None,
        realized_pnl_today=D("-3999.99"),
        cfg={"risk__daily_loss_limit": PCT_ONLY},
    ),
    row(
        "tighter-percent-bound-wins-when-both-set",
        "daily_loss_limit",
        "daily loss limit: day PnL -2,000.00 (realized -2,000.00, open 0.00) "
        "at or below -2,000.00 (1.00% of capital 200,000.00)",
        realized_pnl_today=D("-2000"),
        cfg={"risk__daily_loss_limit": BOTH},
    ),
    row(
        "no-loss-bound-configured-never-blocks",
        None,
        realized_pnl_today=D("-99999"),
        cfg={"risk__daily_loss_limit": NO_LIMIT},
    ),
    # daily trade cap: global 8, per index 4
    row(
        "global-trade-cap-blocks",
        "daily_trade_cap",
        "daily trade cap: 8 of 8 entries today across all indices",
        entries_today={"NIFTY": 3, "SENSEX": 4, "BANKNIFTY": 1},
    ),
    row(
        "per-index-trade-cap-blocks",
        "daily_trade_cap",
        "daily trade cap: 4 of 4 entries on NIFTY today",
        entries_today={"NIFTY": 4},
    ),
    row("under-both-trade-caps-passes", None, entries_today={"NIFTY": 3, "SENSEX": 4}),
    row("another-index-at-its-cap-passes", None, entries_today={"SENSEX": 4}),
    # concurrent cap: global 3, per index 1
    row(
        "global-concurrent-cap-blocks",
        "concurrent_cap",
        "concurrent cap: 3 of 3 positions open across all indices",
        open_positions=(opened("SENSEX"), opened("BANKNIFTY"), opened("FINNIFTY")),
    ),
    row(
        "per-index-concurrent-cap-blocks",
        "concurrent_cap",
        "concurrent cap: 1 of 1 positions open on NIFTY",
        open_positions=(opened("NIFTY", "bearish"),),
    ),
    row(
        "positions-on-other-indices-under-the-cap-pass",
        None,
        open_positions=(opened("SENSEX"), opened("BANKNIFTY")),
    ),
    # same direction already open (reachable with a per-index cap above 1)
    row(
        "same-direction-open-blocks",
        "same_direction_open",
        "a bullish NIFTY position is already open (NSE_FNO:7 since 09:45:00)",
        open_positions=(opened("NIFTY", "bullish", "NSE_FNO:7"),),
        cfg={"indices": (make_index("NIFTY", max_concurrent=2),)},
    ),
    row(
        "opposite-direction-open-passes",
        None,
        direction="bearish",
        open_positions=(opened("NIFTY", "bullish", "NSE_FNO:7"),),
        cfg={"indices": (make_index("NIFTY", max_concurrent=2),)},
    ),
    # cooldown: 180 s after an exit, 600 s after a loss; exactly at the limit passes
    row(
        "cooldown-after-a-win-blocks",
        "cooldown",
        "cooldown: 95 s of 180 s since the last NIFTY exit",
        closed_today=(closed("NIFTY", 95, "250"),),
    ),
    row(
        "cooldown-elapsed-is-floored",
        "cooldown",
        "cooldown: 179 s of 180 s since the last NIFTY exit",
        closed_today=(closed("NIFTY", 179.9, "250"),),
    ),
    row(
        "cooldown-exactly-180-s-after-a-win-passes",
        None,
        closed_today=(closed("NIFTY", 180, "250"),),
    ),
    row("break-even-exit-is-not-a-loss", None, closed_today=(closed("NIFTY", 200, "0"),)),
    row(
        "cooldown-after-a-loss-blocks",
        "cooldown",
        "cooldown: 300 s of 600 s since the last NIFTY exit (a loss of 1,234.50)",
        closed_today=(closed("NIFTY", 300, "-1234.50"),),
    ),
    row(
        "cooldown-599-s-after-a-loss-blocks",
        "cooldown",
        "cooldown: 599 s of 600 s since the last NIFTY exit (a loss of 10.00)",
        closed_today=(closed("NIFTY", 599, "-10"),),
    ),
    row(
        "cooldown-exactly-600-s-after-a-loss-passes",
        None,
        closed_today=(closed("NIFTY", 600, "-10"),),
    ),
    row(
        "the-latest-exit-of-the-index-decides",
        "cooldown",
        "cooldown: 200 s of 600 s since the last NIFTY exit (a loss of 10.00)",
        closed_today=(closed("NIFTY", 900, "500"), closed("NIFTY", 200, "-10")),
    ),
    row(
        "a-win-after-a-loss-shortens-the-cooldown",
        None,
        closed_today=(closed("NIFTY", 900, "-10"), closed("NIFTY", 200, "500")),
    ),
    row(
        "another-index-exit-does-not-cool-this-one",
        None,
        closed_today=(closed("SENSEX", 10, "-500"),),
    ),
    row(
        "per-index-cooldown-setting-is-used",
        "cooldown",
        "cooldown: 200 s of 300 s since the last NIFTY exit",
        closed_today=(closed("NIFTY", 200, "10"),),
        cfg={"indices": (make_index("NIFTY", cooldown_seconds=300),)},
    ),
    # loss streak: 3 losses in a row (any index) pause entries 30 min after the last
    row(
        "three-losses-in-a-row-pause-entries",
        "loss_streak",
        "loss streak: 3 losses in a row (limit 3); entries paused 30 min after the last exit, "
        "until 10:20:00",
        closed_today=(*THREE_LOSSES, closed("SENSEX", 600, "-20")),
    ),
    row(
        "the-pause-ends-exactly-30-min-after-the-last-loss",
        None,
        closed_today=(*THREE_LOSSES, closed("SENSEX", 1800, "-20")),
    ),
    row("two-losses-do-not-pause", None, closed_today=THREE_LOSSES),
    row(
        "a-win-breaks-the-streak",
        None,
        closed_today=(*THREE_LOSSES, closed("BANKNIFTY", 700, "5"), closed("SENSEX", 600, "-20")),
    ),
    row(
        "a-break-even-exit-breaks-the-streak",
        None,
        closed_today=(*THREE_LOSSES, closed("BANKNIFTY", 700, "0"), closed("SENSEX", 600, "-20")),
    ),
    row(
        "a-win-before-three-losses-does-not-help",
        "loss_streak",
        "loss streak: 3 losses in a row (limit 3); entries paused 30 min after the last exit, "
        "until 10:20:00",
        closed_today=(closed("NIFTY", 3000, "900"), *THREE_LOSSES, closed("SENSEX", 600, "-20")),
    ),
    row(
        "a-fourth-loss-restarts-the-pause",
        "loss_streak",
        "loss streak: 4 losses in a row (limit 3); entries paused 30 min after the last exit, "
        "until 10:25:00",
        closed_today=(*THREE_LOSSES, closed("SENSEX", 1000, "-1"), closed("SENSEX", 300, "-1")),
    ),
    row(
        "a-streak-count-of-zero-disables-the-gate",
        None,
        closed_today=(*THREE_LOSSES, closed("SENSEX", 600, "-20")),
        cfg={"risk__loss_streak__count": 0},
    ),
]


@pytest.mark.parametrize(("now", "index", "direction", "cfg", "changes", "gate", "reason"), CASES)
def test_each_gate_blocks_with_a_reason_or_lets_the_entry_through(
    now, index, direction, cfg, changes, gate, reason
):
    config = make_config(**cfg)
    state = dataclasses.replace(BASE, **changes)
    result = check_entry(config.index(index), direction, now, state, config)
    if gate is None:
        assert result == ALLOW
    else:
        assert result == GateResult(allowed=False, gate=gate, reason=reason)


def test_the_gate_names_and_their_order_are_stable():
    # These names are stored on TradingSignal rows: renaming one orphans history.
    assert GATE_NAMES == (
        "trading_switch",
        "kill_switch",
        "entry_window",
        "feed_stale",
        "daily_loss_limit",
        "daily_trade_cap",
        "concurrent_cap",
        "same_direction_open",
        "cooldown",
        "loss_streak",
        "no_averaging",
    )
    assert tuple(name for name, _ in GATES) == GATE_NAMES[:-1]


def everything_blocking(fixed: set[str]) -> tuple[datetime, RiskState, object]:
    """A moment where every gate not in ``fixed`` blocks and every gate in it passes."""
    now = at(10, 0) if "entry_window" in fixed else at(10, 0, day=28)
    nifty_exit = now - timedelta(minutes=20 if "cooldown" in fixed else 1)
    state = RiskState(
        trading_enabled="trading_switch" in fixed,
        kill_switch="kill_switch" not in fixed,
        feed_state="healthy" if "feed_stale" in fixed else "down",
        index_tick_age=0.1,
        capital=D("200000"),
        realized_pnl_today=D("0") if "daily_loss_limit" in fixed else D("-6000"),
        open_pnl=D("0"),
        entries_today={"NIFTY": 1 if "daily_trade_cap" in fixed else 4},
        open_positions=(
            OpenPosition(
                index="NIFTY",
                direction="bearish" if "same_direction_open" in fixed else "bullish",
                contract_key="NSE_FNO:9",
                opened_at=now - timedelta(hours=1),
            ),
        ),
        closed_today=(
            ClosedTrade("SENSEX", "bullish", now - timedelta(minutes=50), D("-1")),
            ClosedTrade("SENSEX", "bearish", now - timedelta(minutes=40), D("-1")),
            ClosedTrade("NIFTY", "bearish", nifty_exit, D("-1")),
        ),
    )
    config = make_config(
        indices=(make_index("NIFTY", max_concurrent=2),),
        risk__max_concurrent=3 if "concurrent_cap" in fixed else 1,
        risk__loss_streak__count=4 if "loss_streak" in fixed else 3,
    )
    return now, state, config


@pytest.mark.parametrize("position", range(len(GATES)), ids=[name for name, _ in GATES])
def test_the_first_blocking_gate_wins(position):
    names = [name for name, _ in GATES]
    now, state, config = everything_blocking(set(names[:position]))
    result = check_entry(config.index("NIFTY"), "bullish", now, state, config)
    assert (result.allowed, result.gate) == (False, names[position])


def test_with_every_gate_satisfied_the_scenario_passes():
    now, state, config = everything_blocking({name for name, _ in GATES})
    assert check_entry(config.index("NIFTY"), "bullish", now, state, config) == ALLOW


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        pytest.param(
            "NSE_FNO:35001",
            GateResult(
                allowed=False,
                gate="no_averaging",
                reason="no averaging: NSE_FNO:35001 is already held (bullish NIFTY since 09:45:00)",
            ),
            id="held-contract-blocks",
        ),
        pytest.param("NSE_FNO:35002", ALLOW, id="another-contract-passes"),
    ],
)
def test_no_averaging_into_an_open_contract(key, expected):
    state = dataclasses.replace(BASE, open_positions=(opened("NIFTY", "bullish", "NSE_FNO:35001"),))
    assert check_contract(key, state) == expected


def test_no_averaging_with_nothing_open_passes():
    assert check_contract("NSE_FNO:35001", BASE) == ALLOW


@pytest.mark.parametrize(
    ("direction", "now", "match"),
    [
        pytest.param("avoid", NOW, "bullish or bearish", id="avoid-is-not-tradable"),
        pytest.param("bullish", datetime(2026, 11, 23, 10, 0), "aware", id="naive-clock"),
    ],
)
def test_check_entry_refuses_caller_mistakes(direction, now, match):
    config = make_config()
    with pytest.raises(ValueError, match=match):
        check_entry(config.index("NIFTY"), direction, now, BASE, config)
