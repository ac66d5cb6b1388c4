"""trading.rules.fills: the one fill model of the simulator's broker and the paper gateway.

The matching cases are written for a buy against this book (rupees, units; lot 65):

    bids 99.95 x 130, 99.90 x 65  |  asks 100.05 x 130, 100.10 x 195, 100.20 x 65

and each also runs as its sell mirror: every price p becomes 200 - p, so asks become bids
(100.05 -> 99.95), a buy limit of 100.10 a sell limit of 99.90, and the expected fills mirror
the same way (tick rounding mirrors too: 200 is on the grid). MPP and slippage, whose
percentages do not mirror, have their own tables for both sides.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.trading.rules.factories import make_config
from trading.rules.fills import (
    EXCHANGE,
    NOTHING_TAKEN,
    Book,
    Fill,
    FillRules,
    Level,
    LimitOrder,
    NoFill,
    Side,
    Taken,
    match,
    mpp_limit,
    slipped_price,
    to_tick,
)
from trading.rules.market import IST

D = Decimal
T = datetime(2026, 11, 23, 10, 0, tzinfo=IST)
TICK = D("0.05")
LOT = 65
MIRROR = D(200)
BIDS = (("99.95", 130), ("99.90", 65))
ASKS = (("100.05", 130), ("100.10", 195), ("100.20", 65))
PAPER = FillRules(max_age_seconds=2.0, latency_ms=150, slippage_bps=25)


def levels(rows: tuple[tuple[str, int], ...]) -> tuple[Level, ...]:
    return tuple(Level(D(price), quantity) for price, quantity in rows)


def make_book(
    bids: tuple[tuple[str, int], ...] = BIDS,
    asks: tuple[tuple[str, int], ...] = ASKS,
    ltp: str | None = "100.00",
    at: datetime = T,
    age: float = 0.0,
) -> Book:
    return Book(levels(bids), levels(asks), None if ltp is None else D(ltp), at, age)


def make_order(
    side: str, limit: str, remaining: int, incoming: bool = True, placed_at: datetime | None = None
) -> LimitOrder:
    return LimitOrder(side, D(limit), remaining, LOT, TICK, incoming, placed_at)  # type: ignore[arg-type]


def mirror_price(price: str | Decimal) -> Decimal:
    return MIRROR - D(price)


def mirror_rows(rows: tuple[tuple[str, int], ...]) -> tuple[tuple[str, int], ...]:
    return tuple((str(mirror_price(price)), quantity) for price, quantity in rows)


def sided(
    side: str, bids: tuple, asks: tuple, limit: str, taken: dict[str, int], fills: list
) -> tuple[Book, str, Taken, list[Fill]]:
    """The buy case as written, or its sell mirror."""
    if side == "BUY":
        book = make_book(bids, asks)
        record = Taken(asks={D(p): q for p, q in taken.items()})
        return book, limit, record, [Fill(D(p), q) for p, q in fills]
    book = make_book(mirror_rows(asks), mirror_rows(bids))
    record = Taken(bids={mirror_price(p): q for p, q in taken.items()})
    return book, str(mirror_price(limit)), record, [Fill(mirror_price(p), q) for p, q in fills]


BOTH = pytest.mark.parametrize("side", ["BUY", "SELL"])


# -- the book walk, resting fills, consumption, lots -----------------------------------------------

CASES = [
    # id, asks, limit, remaining, incoming, taken before, fills, reason
    pytest.param(
        ASKS, "100.20", 390, True, {}, [("100.05", 130), ("100.10", 195), ("100.20", 65)], None,
        id="incoming-walks-three-levels-at-the-books-prices",
    ),
    pytest.param(
        ASKS, "100.10", 390, True, {}, [("100.05", 130), ("100.10", 195)], None,
        id="incoming-stops-at-its-limit-the-rest-stays-open",
    ),
    pytest.param(
        ASKS, "101.00", 650, True, {}, [("100.05", 130), ("100.10", 195), ("100.20", 65)], None,
        id="partial-fill-when-the-depth-is-short",
    ),
    pytest.param(
        ASKS, "100.10", 130, True, {}, [("100.05", 130)], None,
        id="stops-when-the-order-is-filled",
    ),
    pytest.param(
        ASKS, "100.00", 130, True, {}, [], NoFill.NOT_CROSSED,
        id="a-limit-the-book-does-not-cross-fills-nothing",
    ),
    pytest.param(
        ASKS, "100.15", 390, False, {}, [("100.15", 325)], None,
        id="resting-fills-at-its-own-limit-up-to-the-crossing-levels",
    ),
    pytest.param(
        ASKS, "100.05", 65, False, {}, [("100.05", 65)], None,
        id="resting-crossed-exactly-at-the-touch",
    ),
    pytest.param(
        ASKS, "100.20", 390, True, {"100.05": 130, "100.10": 65},
        [("100.10", 130), ("100.20", 65)], None,
        id="consumption-by-earlier-fills-on-the-same-snapshot",
    ),
    pytest.param(
        ASKS, "100.15", 390, False, {"100.05": 65}, [("100.15", 260)], None,
        id="resting-after-consumption",
    ),
    pytest.param(
        ASKS, "100.05", 65, True, {"100.05": 130}, [], NoFill.DEPTH_TAKEN,
        id="crossing-depth-all-taken-fills-nothing",
    ),
    pytest.param(
        (("100.05", 100), ("100.10", 200)), "100.10", 390, True, {},
        [("100.05", 65), ("100.10", 195)], None,
        id="whole-lots-per-level",
    ),
    pytest.param(
        (("100.05", 50), ("100.10", 130)), "100.10", 130, True, {}, [("100.10", 130)], None,
        id="a-level-under-one-lot-is-skipped",
    ),
    pytest.param(
        (("100.05", 50),), "100.10", 65, True, {}, [], NoFill.DEPTH_TAKEN,
        id="under-one-lot-displayed-fills-nothing",
    ),
    pytest.param(
        (), "100.10", 65, True, {}, [], NoFill.NOT_CROSSED,
        id="the-opposite-side-empty-fills-nothing",
    ),
]  # fmt: skip


@BOTH
@pytest.mark.parametrize(
    ("asks", "limit", "remaining", "incoming", "taken", "fills", "reason"), CASES
)
def test_a_snapshot_fills_the_order_as_the_book_allows(
    side, asks, limit, remaining, incoming, taken, fills, reason
):
    book, limit, before, expected = sided(side, BIDS, asks, limit, taken, fills)
    result = match(make_order(side, limit, remaining, incoming), book, before)
    assert list(result.fills) == expected
    assert result.reason == reason
    assert result.quantity == sum(fill.quantity for fill in expected)
    # The record grows by exactly what was filled, on the side the order takes from.
    used_before = sum(before.side_of(Side(side)).values())
    assert sum(result.taken.side_of(Side(side)).values()) == used_before + result.quantity
    other = Side.SELL if side == "BUY" else Side.BUY
    assert result.taken.side_of(other) == before.side_of(other)
    if not expected:
        assert result.taken is before


@BOTH
def test_a_resting_order_not_crossed_stays_open_and_fills_at_its_limit_on_a_later_snapshot(side):
    first, limit, _, _ = sided(side, BIDS, ASKS, "100.00", {}, [])
    order = make_order(side, limit, 260, incoming=True)
    arrived = match(order, first)
    assert (arrived.fills, arrived.reason) == ((), NoFill.NOT_CROSSED)

    later_asks = (("99.90", 65), ("100.00", 130), ("100.05", 650))
    later_bids = (("99.80", 65),)
    later, _, _, expected = sided(side, later_bids, later_asks, "100.00", {}, [("100.00", 195)])
    resting = dataclasses.replace(order, incoming=False)
    result = match(resting, later, NOTHING_TAKEN)
    # At its own limit (not at the better 99.90), for the two crossing levels only.
    assert list(result.fills) == expected
    rest = dataclasses.replace(resting, remaining=order.remaining - result.quantity)
    assert rest.remaining == 65


@BOTH
def test_orders_on_one_snapshot_share_its_displayed_quantity_in_time_priority(side):
    book, limit, _, expected = sided(side, BIDS, ASKS, "100.05", {}, [("100.05", 130)])
    first = match(make_order(side, limit, 130), book)
    assert list(first.fills) == expected
    second = match(make_order(side, limit, 65), book, first.taken)
    assert (second.fills, second.reason) == ((), NoFill.DEPTH_TAKEN)
    # A new snapshot starts with nothing taken.
    assert list(match(make_order(side, limit, 65), book).fills) == [Fill(expected[0].price, 65)]


# -- paper rules: freshness, latency, no depth ---------------------------------------------------


@BOTH
@pytest.mark.parametrize(
    ("age", "filled"),
    [(0.0, True), (2.0, True), (2.001, False), (30.0, False)],
)
def test_no_fill_from_a_snapshot_older_than_the_freshness_limit(side, age, filled):
    book, limit, _, _ = sided(side, BIDS, ASKS, "100.20", {}, [])
    book = dataclasses.replace(book, age_seconds=age)
    result = match(
        make_order(side, limit, 130, placed_at=T - timedelta(seconds=5)), book, rules=PAPER
    )
    assert (result.quantity, result.reason) == ((130, None) if filled else (0, NoFill.STALE))


@BOTH
def test_a_stale_snapshot_without_depth_does_not_fill_at_the_slipped_ltp_either(side):
    book = make_book((), (), ltp="100.00", age=2.5)
    far = "150.00" if side == "BUY" else "50.00"
    result = match(make_order(side, far, 65, placed_at=T - timedelta(seconds=5)), book, rules=PAPER)
    assert (result.fills, result.reason) == ((), NoFill.STALE)


@BOTH
@pytest.mark.parametrize(
    ("after_ms", "filled"),
    [(0, False), (149, False), (150, True), (400, True)],
)
def test_no_fill_before_the_order_time_plus_the_latency(side, after_ms, filled):
    book, limit, _, _ = sided(side, BIDS, ASKS, "100.20", {}, [])
    book = dataclasses.replace(book, at=T + timedelta(milliseconds=after_ms))
    result = match(make_order(side, limit, 130, placed_at=T), book, rules=PAPER)
    assert (result.quantity, result.reason) == ((130, None) if filled else (0, NoFill.TOO_EARLY))


def test_a_latency_needs_the_order_time():
    with pytest.raises(ValueError, match=r"LimitOrder\.placed_at: required"):
        match(make_order("BUY", "100.20", 65), make_book(), rules=PAPER)


@pytest.mark.parametrize(
    ("side", "ltp", "limit", "incoming", "fill", "reason"),
    [
        # 123.45 x 1.0025 = 123.758625, up to the tick; 123.45 x 0.9975 = 123.141375, down.
        ("BUY", "123.45", "125.00", True, "123.80", None),
        ("SELL", "123.45", "120.00", True, "123.10", None),
        ("BUY", "123.45", "123.80", True, "123.80", None),
        ("SELL", "123.45", "123.10", True, "123.10", None),
        # A limit the slipped price does not reach stays open.
        ("BUY", "123.45", "123.75", True, None, NoFill.NOT_CROSSED),
        ("SELL", "123.45", "123.15", True, None, NoFill.NOT_CROSSED),
        # A resting order the slipped price crosses fills at its own limit.
        ("BUY", "123.45", "125.00", False, "125.00", None),
        ("SELL", "123.45", "120.00", False, "120.00", None),
        # No LTP either: nothing to price from.
        ("BUY", None, "125.00", True, None, NoFill.NO_PRICE),
        ("SELL", None, "120.00", True, None, NoFill.NO_PRICE),
    ],
)
def test_without_depth_a_marketable_order_fills_whole_at_the_slipped_ltp(
    side, ltp, limit, incoming, fill, reason
):
    book = make_book((), (), ltp=ltp, at=T + timedelta(seconds=1), age=0.5)
    order = make_order(side, limit, 650, incoming, placed_at=T)
    result = match(order, book, rules=PAPER)
    assert result.fills == (() if fill is None else (Fill(D(fill), 650),))
    assert result.reason == reason
    assert result.taken is NOTHING_TAKEN


@BOTH
def test_without_depth_and_without_a_slippage_rule_nothing_fills(side):
    book = make_book((), (), ltp="100.00")
    result = match(
        make_order(side, "150.00" if side == "BUY" else "50.00", 65), book, rules=EXCHANGE
    )
    assert (result.fills, result.reason) == ((), NoFill.NO_PRICE)


@BOTH
def test_slippage_applies_only_when_no_depth_is_known(side):
    # Depth known: the book's prices, never LTP +/- slippage.
    book, limit, _, expected = sided(side, BIDS, ASKS, "100.10", {}, [("100.05", 130)])
    book = dataclasses.replace(book, at=T + timedelta(seconds=1))
    result = match(make_order(side, limit, 130, placed_at=T), book, rules=PAPER)
    assert list(result.fills) == expected
    # Depth on the other side only: the order's own side is empty, so it stays open.
    one_sided = (
        make_book(BIDS, (), at=T + timedelta(seconds=1))
        if side == "BUY"
        else make_book((), ASKS, at=T + timedelta(seconds=1))
    )
    far = "150.00" if side == "BUY" else "50.00"
    result = match(make_order(side, far, 130, placed_at=T), one_sided, rules=PAPER)
    assert (result.fills, result.reason) == ((), NoFill.NOT_CROSSED)


def test_the_paper_rules_come_from_the_config():
    config = make_config(
        paper__latency_ms=200, paper__slippage_bps=30, feed__option_stale_seconds=3.0
    )
    assert FillRules.paper(config.paper, config.feed) == FillRules(
        max_age_seconds=3.0, latency_ms=200, slippage_bps=30
    )


# -- market price protection ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "bids", "asks", "ltp", "pct", "limit"),
    [
        # Buy: 100.05 x 1.10 = 110.055, down to the tick; sell: 99.95 x 0.90 = 89.955, up.
        ("BUY", BIDS, ASKS, "100.00", "0.10", "110.05"),
        ("SELL", BIDS, ASKS, "100.00", "0.10", "90.00"),
        ("BUY", BIDS, ASKS, "100.00", "0.02", "102.05"),  # 102.051
        ("SELL", BIDS, ASKS, "100.00", "0.02", "98.00"),  # 97.951
        # A zero band is the touch itself.
        ("BUY", BIDS, ASKS, "100.00", "0", "100.05"),
        ("SELL", BIDS, ASKS, "100.00", "0", "99.95"),
        # An empty side falls back to the LTP.
        ("BUY", BIDS, (), "100.00", "0.10", "110.00"),
        ("SELL", (), ASKS, "100.00", "0.10", "90.00"),
        # Never inside the touch: an off-grid LTP touch would round inside it.
        ("BUY", (), (), "100.03", "0", "100.03"),
        ("SELL", (), (), "100.03", "0", "100.03"),
        # Never below one tick: a 0.05 bid less 10 % rounds up to 0.05; no price at all is a tick.
        ("SELL", (("0.05", 65),), ASKS, "0.05", "0.10", "0.05"),
        ("SELL", (), (), None, "0.10", "0.05"),
        ("BUY", (), (), None, "0.10", "0.05"),
    ],
)
def test_a_market_order_is_priced_by_market_price_protection(side, bids, asks, ltp, pct, limit):
    book = make_book(bids, asks, ltp=ltp)
    assert mpp_limit(side, book, TICK, D(pct)) == D(limit)


def test_a_market_order_at_its_mpp_limit_fills_at_the_book_not_at_the_protection():
    book = make_book()
    limit = mpp_limit(Side.BUY, book, TICK, D("0.10"))
    result = match(LimitOrder(Side.BUY, limit, 390, LOT, TICK, True), book)
    assert [fill.price for fill in result.fills] == [D("100.05"), D("100.10"), D("100.20")]


@pytest.mark.parametrize(
    ("side", "ltp", "bps", "price"),
    [
        ("BUY", "100.00", 25, "100.25"),
        ("SELL", "100.00", 25, "99.75"),
        ("BUY", "100.05", 25, "100.35"),  # 100.300125 up
        ("SELL", "100.05", 25, "99.75"),  # 99.799875 down
        ("BUY", "100.00", 0, "100.00"),
        ("SELL", "0.05", 25, "0.05"),  # never below one tick
    ],
)
def test_the_slipped_price_rounds_against_the_order(side, ltp, bps, price):
    assert slipped_price(side, D(ltp), TICK, bps) == D(price)


def test_to_tick_rounds_as_told():
    assert to_tick(D("100.07"), TICK, "ROUND_FLOOR") == D("100.05")
    assert to_tick(D("100.07"), TICK, "ROUND_CEILING") == D("100.10")
    assert to_tick(D("100.07"), TICK, "ROUND_HALF_EVEN") == D("100.05")


# -- building a book -----------------------------------------------------------------------------


def test_a_book_from_dhan_depth_rows_drops_empty_sides_and_cleans_float32_prices():
    rows = [
        # (bid_qty, ask_qty, bid_orders, ask_orders, bid_price, ask_price), level 1 first
        (130, 195, 2, 3, 152.3000030517578, 152.35000610351562),
        (65, 0, 1, 0, 152.25, 0.0),  # no ask at level 2
        (0, 65, 0, 1, -0.01, 152.4499969482422),  # Dhan's -0.01 sentinel for an empty bid
    ]
    book = Book.from_depth(rows, ltp=152.3000030517578, at=T, age_seconds=0.4, tick=TICK)
    assert book.bids == (Level(D("152.30"), 130), Level(D("152.25"), 65))
    assert book.asks == (Level(D("152.35"), 195), Level(D("152.45"), 65))
    assert (book.ltp, book.at, book.age_seconds) == (D("152.30"), T, 0.4)
    assert (book.best_bid, book.best_ask, book.has_depth) == (D("152.30"), D("152.35"), True)


def test_a_book_without_depth_or_ltp():
    book = Book.from_depth(None, ltp=0.0, at=T)
    assert (book.bids, book.asks, book.ltp, book.has_depth) == ((), (), None, False)
    assert (book.best_bid, book.best_ask) == (None, None)


def test_float_prices_keep_their_shortest_repr_without_a_tick():
    book = Book.from_depth([(65, 65, 1, 1, 218.5, 218.55)], ltp=218.55, at=T)
    assert (book.bids[0].price, book.asks[0].price, book.ltp) == (
        D("218.5"),
        D("218.55"),
        D("218.55"),
    )


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: make_book(bids=(("99.90", 65), ("99.95", 65))), r"Book\.bids\[1\]: price 99\.95"),
        (lambda: make_book(asks=(("100.10", 65), ("100.10", 65))), r"Book\.asks\[1\]"),
        (lambda: make_book(age=-0.1), r"Book\.age_seconds: must not be negative"),
        (lambda: make_book(age=float("nan")), r"Book\.age_seconds"),
        (lambda: make_book(ltp="0"), r"Book\.ltp"),
        (lambda: Book((), (), None, datetime(2026, 11, 23, 10)), r"Book\.at: expected an aware"),
        (lambda: make_book(asks=(("0", 65),)), r"Book\.asks\[0\]\.price"),
        (lambda: make_book(bids=(("99.95", 0),)), r"Book\.bids\[0\]\.quantity"),
        (lambda: Book((Level(D("1"), True),), (), None, T), r"Book\.bids\[0\]\.quantity"),
        (lambda: Book((), (Level(1.5, 65),), None, T), r"Book\.asks\[0\]\.price"),
        (lambda: Book.from_depth([(65.0, 0, 1, 0, 1.0, 0.0)], ltp=1.0, at=T), r"\[0\]\.bid_qty"),
        (lambda: Book.from_depth([(65, None, 1, 0, 1.0, 2.0)], ltp=1.0, at=T), r"\[0\]\.ask_qty"),
        (lambda: Book.from_depth([(65, 0, 1, 0, "1", 0.0)], ltp=1.0, at=T), r"depth\[0\]\.bid"),
        (lambda: Book.from_depth(None, ltp=float("inf"), at=T), r"ltp: expected a finite"),
        (lambda: Book.from_depth([(1, 2, 3)], ltp=1.0, at=T), r"depth\[0\]: expected 6 values"),
        (lambda: make_order("BUY", "100", 100), r"LimitOrder\.remaining: 100 is not a multiple"),
        (lambda: make_order("HOLD", "100", 65), r"LimitOrder\.side: expected BUY or SELL"),
        (lambda: make_order("BUY", "0", 65), r"LimitOrder\.limit"),
        (lambda: make_order("BUY", "100", 0), r"LimitOrder\.remaining"),
        (lambda: FillRules(latency_ms=-1), r"FillRules\.latency_ms"),
        (lambda: FillRules(slippage_bps=10_001), r"FillRules\.slippage_bps"),
        (lambda: FillRules(max_age_seconds=-1.0), r"FillRules\.max_age_seconds"),
        (lambda: mpp_limit("BUY", make_book(), TICK, D("-0.1")), r"mpp_pct"),
    ],
)
def test_bad_input_is_a_value_error_naming_the_field(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_a_side_may_be_given_as_dhans_string():
    order = LimitOrder("SELL", D("99.95"), 65, LOT, TICK, True)  # type: ignore[arg-type]
    assert order.side is Side.SELL
    assert list(match(order, make_book()).fills) == [Fill(D("99.95"), 65)]


# -- properties ---------------------------------------------------------------------------------

_TICKS = st.integers(min_value=1, max_value=4000)  # prices 0.05 .. 200.00 in ticks
_QUANTITY = st.integers(min_value=1, max_value=40 * 25)  # units, not always whole lots


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[LimitOrder, Book, Taken]:
    lot = draw(st.sampled_from([1, 15, 25, 65]))
    side = draw(st.sampled_from(list(Side)))
    ask_ticks = sorted(draw(st.sets(_TICKS, max_size=5)))
    bid_ticks = sorted(draw(st.sets(_TICKS, max_size=5)), reverse=True)
    asks = tuple(Level(TICK * t, draw(_QUANTITY)) for t in ask_ticks)
    bids = tuple(Level(TICK * t, draw(_QUANTITY)) for t in bid_ticks)
    ltp = draw(st.none() | _TICKS.map(lambda t: TICK * t))
    book = Book(bids, asks, ltp, T + timedelta(seconds=1), draw(st.floats(0, 5)))
    own = asks if side == Side.BUY else bids
    used = {
        level.price: draw(st.integers(0, level.quantity)) for level in own if draw(st.booleans())
    }
    taken = Taken(asks=used) if side == Side.BUY else Taken(bids=used)
    order = LimitOrder(
        side,
        TICK * draw(_TICKS),
        lot * draw(st.integers(1, 60)),
        lot,
        TICK,
        draw(st.booleans()),
        T,
    )
    return order, book, taken


@settings(max_examples=400, deadline=None)
@given(
    scenarios(),
    st.sampled_from([EXCHANGE, PAPER, FillRules(slippage_bps=25), FillRules(latency_ms=1500)]),
)
def test_fills_never_exceed_the_order_or_the_book_never_cross_the_limit_and_are_whole_lots(
    scenario, rules
):
    order, book, taken = scenario
    result = match(order, book, taken, rules)
    side = order.side
    assert result.quantity <= order.remaining
    for fill in result.fills:
        assert fill.quantity > 0 and fill.quantity % order.lot_size == 0
        if side == Side.BUY:
            assert fill.price <= order.limit
        else:
            assert fill.price >= order.limit
    assert (result.reason is None) == bool(result.fills)
    own = book.asks if side == Side.BUY else book.bids
    before, after = taken.side_of(side), result.taken.side_of(side)
    if book.has_depth:
        # What was taken grew by exactly the fills, and never beyond what a level displays.
        assert sum(after.values()) - sum(before.values()) == result.quantity
        shown = {level.price: level.quantity for level in own}
        for price, units in after.items():
            assert before.get(price, 0) <= units <= shown[price]
        if order.incoming:
            for fill in result.fills:
                assert fill.quantity <= shown[fill.price] - before.get(fill.price, 0)
        else:
            assert len(result.fills) <= 1
            assert all(fill.price == order.limit for fill in result.fills)
    else:
        assert result.taken is taken
        assert result.quantity in (0, order.remaining)
