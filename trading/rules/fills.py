"""The one fill model (DOMAIN "Paper fills"): which parts of an order a book snapshot fills, at
what prices. The simulator's broker (``trading.dhan.sim.broker``) and the paper gateway both
call it, so a paper run and a live run against the simulator fill the same orders at the same
prices for the same ticks.

Pure: values in, fills out; no clock, no I/O. Prices are rupees per unit (Decimal), quantities
are units (int), every fill is a whole number of lots.

How a snapshot fills an order (:func:`match`):

* An **incoming** order (new, modified, a stop just triggered, an order reaching the venue
  after its latency) walks the opposite side best first, filling at the book's prices up to each
  level's displayed quantity, one :class:`Fill` per level, until its limit stops it (a buy takes
  asks at or below its limit, a sell bids at or above it).
* A **resting** order fills at its own limit once the opposite side crosses it, up to the
  displayed quantity of the crossing levels: one :class:`Fill` per snapshot.
* Displayed quantity taken by earlier fills on the same snapshot is not available again: the
  caller keeps one :class:`Taken` per instrument and snapshot (the simulator: per market
  second; paper: per tick), passes it in, and keeps the one :class:`Match` returns.
* Each level gives whole lots: what is left at a level below one lot is not taken.
* A limit the book does not cross stays open (nothing fills); a later snapshot may fill it.
* Market orders are priced first by :func:`mpp_limit` (Dhan's market price protection) and then
  matched as limits.

Only under :class:`FillRules` that set them (the paper gateway's; the simulator uses
:data:`EXCHANGE`, which sets none): no fill from a snapshot older than ``max_age_seconds``, no
fill from a snapshot earlier than the order's time plus ``latency_ms``, and, when the book has
no depth at all, a fill of the whole quantity at the LTP moved ``slippage_bps`` against the
order (:func:`slipped_price`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from types import MappingProxyType

from trading.config.types import FeedConfig, PaperConfig

__all__ = [
    "EXCHANGE",
    "NOTHING_TAKEN",
    "Book",
    "Fill",
    "FillRules",
    "Level",
    "LimitOrder",
    "Match",
    "NoFill",
    "Side",
    "Taken",
    "match",
    "mpp_limit",
    "slipped_price",
    "to_tick",
]

ZERO = Decimal(0)
ONE = Decimal(1)
BPS = Decimal(10_000)  # basis points per unit
MAX_SLIPPAGE_BPS = 10_000  # 100 %: beyond that a sell would fill at a negative price
MAX_LATENCY_MS = 60_000  # a paper latency of a minute is a typo, not a model


class Side(StrEnum):
    """The order's side; the values are Dhan's ``transactionType`` (a member is its string)."""

    BUY = "BUY"
    SELL = "SELL"


_SIDES = {side.value: side for side in Side}


class NoFill(StrEnum):
    """Why a snapshot filled nothing of an order (:attr:`Match.reason`)."""

    STALE = "stale"  # the snapshot is older than FillRules.max_age_seconds
    TOO_EARLY = "too_early"  # the snapshot is before the order's time + FillRules.latency_ms
    NO_PRICE = "no_price"  # no depth at all, and no slippage rule or no LTP to price from
    NOT_CROSSED = "not_crossed"  # the opposite side is empty or does not reach the limit
    DEPTH_TAKEN = "depth_taken"  # the crossing levels show under a lot, net of earlier fills


def to_tick(value: Decimal, tick: Decimal, rounding: str) -> Decimal:
    """``value`` on the ``tick`` grid, rounded with a ``decimal`` rounding mode
    (``ROUND_FLOOR`` down, ``ROUND_CEILING`` up, ``ROUND_HALF_EVEN`` to the nearest)."""
    return (value / tick).to_integral_value(rounding=rounding) * tick


def _money(value: Decimal | float | int, name: str) -> Decimal:
    """A price as Decimal: a float through its shortest repr (218.55 stays 218.55)."""
    if isinstance(value, bool) or not isinstance(value, Decimal | float | int):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    number = value if isinstance(value, Decimal) else Decimal(repr(value))
    if not number.is_finite():
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    return number


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}: expected a positive whole number, got {value!r}")
    return value


def _positive_price(value: object, name: str) -> None:
    if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
        raise ValueError(f"{name}: expected a positive Decimal, got {value!r}")


def _aware(value: object, name: str) -> None:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"{name}: expected an aware datetime (market time), got {value!r}")


def _side(value: object, name: str) -> Side:
    # A dict lookup, not Side(value): built per order per snapshot, and 20x cheaper. A str
    # enum member (Dhan's TransactionType) hashes and compares as its string.
    side = _SIDES.get(value) if isinstance(value, str) else None
    if side is None:
        raise ValueError(f"{name}: expected BUY or SELL, got {value!r}")
    return side


# -- the book ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Level:
    """One price level of one side: ``price`` rupees (> 0), ``quantity`` units displayed (> 0).
    Checked by the :class:`Book` that holds it (once, where the error can name the level)."""

    price: Decimal
    quantity: int


@dataclass(frozen=True, slots=True)
class Book:
    """One snapshot of an instrument's book.

    ``bids`` and ``asks`` are best first (bids strictly descending, asks strictly ascending);
    an empty tuple is an empty side. ``ltp`` is rupees, None when unknown. ``at`` is the
    snapshot's market time (the tick's exchange time; the simulator's market second), aware;
    ``age_seconds`` how old the snapshot is when it is matched (>= 0; the caller clamps clock
    skew). ValueError naming the field for anything else.
    """

    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    ltp: Decimal | None
    at: datetime
    age_seconds: float = 0.0

    def __post_init__(self) -> None:
        for name in ("bids", "asks"):
            levels = getattr(self, name)
            if not isinstance(levels, tuple):
                levels = tuple(levels)
                object.__setattr__(self, name, levels)
            for i, level in enumerate(levels):
                if not isinstance(level, Level):
                    raise ValueError(f"Book.{name}[{i}]: expected a Level, got {level!r}")
                price, quantity = level.price, level.quantity
                if not isinstance(price, Decimal) or not price.is_finite() or price <= 0:
                    _positive_price(price, f"Book.{name}[{i}].price")
                if type(quantity) is not int or quantity <= 0:
                    _positive_int(quantity, f"Book.{name}[{i}].quantity")
            for i in range(1, len(levels)):
                before, here = levels[i - 1].price, levels[i].price
                if (here >= before) if name == "bids" else (here <= before):
                    word = "below" if name == "bids" else "above"
                    raise ValueError(
                        f"Book.{name}[{i}]: price {here} is not {word} level {i - 1}'s {before} "
                        "(levels must be best first)"
                    )
        if self.ltp is not None:
            _positive_price(self.ltp, "Book.ltp")
        _aware(self.at, "Book.at")
        age = self.age_seconds
        if isinstance(age, bool) or not isinstance(age, int | float) or not math.isfinite(age):
            raise ValueError(f"Book.age_seconds: expected a finite number, got {age!r}")
        if age < 0:
            raise ValueError(f"Book.age_seconds: must not be negative, got {age!r}")

    @classmethod
    def from_depth(
        cls,
        depth: Iterable[Sequence[Decimal | float | int]] | None,
        *,
        ltp: Decimal | float | None,
        at: datetime,
        age_seconds: float = 0.0,
        tick: Decimal | None = None,
    ) -> Book:
        """A book from depth rows in Dhan's full-packet order, best level first: ``(bid_qty,
        ask_qty, bid_orders, ask_orders, bid_price, ask_price)`` (``feed_codec.DepthLevel``,
        ``TickRecord.depth`` and the simulator's ``Quote.depth`` all have this shape).

        An empty side of a row (price <= 0, Dhan's zeros or -0.01 sentinel, or quantity <= 0)
        is dropped; ``depth`` None means no depth known. Float prices enter through their
        shortest repr; with ``tick`` a price off the grid (the feed's float32 widened, e.g.
        152.3000030517578) is rounded to the nearest tick. An ``ltp`` of 0 or None is unknown.
        """
        bids: list[Level] = []
        asks: list[Level] = []
        grid = None if tick is None else (tick, float(tick))
        for i, row in enumerate(depth or ()):
            if len(row) != 6:
                raise ValueError(f"depth[{i}]: expected 6 values, got {len(row)}")
            bid_qty, ask_qty, _, _, bid_price, ask_price = row
            price = _depth_price(bid_price, grid, i, "bid_price")
            if price is not None and _shown(bid_qty, i, "bid_qty"):
                bids.append(Level(price, bid_qty))
            price = _depth_price(ask_price, grid, i, "ask_price")
            if price is not None and _shown(ask_qty, i, "ask_qty"):
                asks.append(Level(price, ask_qty))
        price = None if ltp is None else _depth_price(ltp, grid, None, "ltp")
        return cls(tuple(bids), tuple(asks), price, at, age_seconds)

    @property
    def has_depth(self) -> bool:
        """True when any level is known on either side."""
        return bool(self.bids or self.asks)

    @property
    def best_bid(self) -> Decimal | None:
        return self.bids[0].price if self.bids else None

    @property
    def best_ask(self) -> Decimal | None:
        return self.asks[0].price if self.asks else None


def _depth_price(
    value: Decimal | float | int,
    grid: tuple[Decimal, float] | None,
    row: int | None,
    name: str,
) -> Decimal | None:
    """A depth or LTP price as Decimal, None for Dhan's empty values (0, -0.01); ``grid`` is
    the tick as (Decimal, float), None to keep the price as given.

    Per tick on the paper path, so the cheap float case goes first and the field's name is
    formatted only for an error."""
    if type(value) is float:
        if value <= 0:
            return None
        if not math.isfinite(value):
            raise ValueError(_where(row, name) + f": expected a finite number, got {value!r}")
        if grid is not None:
            # The nearest tick in float: a float32 price is within 1e-7 of its tick, far from
            # the half-tick where float and Decimal rounding could differ; 4x cheaper.
            ticks = round(value / grid[1])
            return Decimal(ticks) * grid[0] if ticks > 0 else None
        price = Decimal(repr(value))
    else:
        price = _money(value, _where(row, name)) if not isinstance(value, Decimal) else value
        if not price.is_finite():
            raise ValueError(_where(row, name) + f": expected a finite number, got {value!r}")
        if price <= 0:
            return None
    if grid is None or price % grid[0] == 0:
        return price
    return to_tick(price, grid[0], ROUND_HALF_EVEN)


def _shown(quantity: object, row: int, name: str) -> bool:
    """True for a displayed quantity, False for an empty one (0); ValueError for a non-int."""
    if type(quantity) is not int:
        raise ValueError(f"depth[{row}].{name}: expected a whole number, got {quantity!r}")
    return quantity > 0


def _where(row: int | None, name: str) -> str:
    return name if row is None else f"depth[{row}].{name}"


@dataclass(frozen=True, slots=True)
class Taken:
    """Displayed quantity our fills already took from one snapshot: units per price, on the
    asks (taken by buys) and on the bids (taken by sells).

    Start each snapshot of an instrument with :data:`NOTHING_TAKEN`, pass the record to every
    :func:`match` of an order on that snapshot (in time priority) and keep the one the
    :class:`Match` returns; on a new snapshot start again. Never mutated: a match that takes
    something returns a new record.
    """

    asks: Mapping[Decimal, int] = field(default_factory=dict)
    bids: Mapping[Decimal, int] = field(default_factory=dict)

    def side_of(self, side: Side) -> Mapping[Decimal, int]:
        """The record of the side an order of ``side`` takes from (asks for a buy)."""
        return self.asks if side == Side.BUY else self.bids


NOTHING_TAKEN = Taken(MappingProxyType({}), MappingProxyType({}))  # shared: read-only


# -- the order and the rules ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LimitOrder:
    """What the model needs of an order.

    ``side`` BUY / SELL (a string is accepted); ``limit`` rupees per unit (a market order's
    limit is its :func:`mpp_limit`); ``remaining`` units still to fill, a positive multiple of
    ``lot_size``; ``tick_size`` rupees (prices the model makes are on this grid);
    ``incoming`` True when the order arrives at the book with this snapshot (placed, modified,
    a stop just triggered; in paper, the first snapshot it may trade on, at or after
    ``placed_at`` + latency), False when it rests there from an earlier snapshot.
    ``placed_at`` is the order's market time (placement or last modification), needed only
    when the rules have a latency.
    """

    side: Side
    limit: Decimal
    remaining: int
    lot_size: int
    tick_size: Decimal
    incoming: bool
    placed_at: datetime | None = None

    def __post_init__(self) -> None:
        if type(self.side) is not Side:
            object.__setattr__(self, "side", _side(self.side, "LimitOrder.side"))
        _positive_price(self.limit, "LimitOrder.limit")
        _positive_int(self.remaining, "LimitOrder.remaining")
        _positive_int(self.lot_size, "LimitOrder.lot_size")
        if self.remaining % self.lot_size:
            raise ValueError(
                f"LimitOrder.remaining: {self.remaining} is not a multiple of the lot size "
                f"{self.lot_size}"
            )
        _positive_price(self.tick_size, "LimitOrder.tick_size")
        if not isinstance(self.incoming, bool):
            raise ValueError(f"LimitOrder.incoming: expected True or False, got {self.incoming!r}")
        if self.placed_at is not None:
            _aware(self.placed_at, "LimitOrder.placed_at")


@dataclass(frozen=True, slots=True)
class FillRules:
    """The venue's conditions beyond the book. :data:`EXCHANGE` (the simulator) sets none;
    :meth:`paper` takes the paper gateway's from the config.

    ``max_age_seconds``: a snapshot older than this fills nothing (None: no limit).
    ``latency_ms``: a snapshot earlier than the order's ``placed_at`` plus this fills nothing.
    ``slippage_bps``: when the book has no depth at all, a marketable order fills whole at the
    LTP moved this many basis points against it (None: no depth, no fill). 0 <= bps <= 10000.
    """

    max_age_seconds: float | None = None
    latency_ms: int = 0
    slippage_bps: int | None = None

    def __post_init__(self) -> None:
        age = self.max_age_seconds
        if age is not None and (
            isinstance(age, bool)
            or not isinstance(age, int | float)
            or not math.isfinite(age)
            or age < 0
        ):
            raise ValueError(f"FillRules.max_age_seconds: expected >= 0 or None, got {age!r}")
        latency = self.latency_ms
        if isinstance(latency, bool) or not isinstance(latency, int):
            raise ValueError(f"FillRules.latency_ms: expected a whole number, got {latency!r}")
        if not 0 <= latency <= MAX_LATENCY_MS:
            raise ValueError(f"FillRules.latency_ms: must be 0..{MAX_LATENCY_MS}, got {latency}")
        bps = self.slippage_bps
        if bps is not None and (
            isinstance(bps, bool) or not isinstance(bps, int) or not 0 <= bps <= MAX_SLIPPAGE_BPS
        ):
            raise ValueError(
                f"FillRules.slippage_bps: expected 0..{MAX_SLIPPAGE_BPS} or None, got {bps!r}"
            )

    @classmethod
    def paper(cls, paper: PaperConfig, feed: FeedConfig) -> FillRules:
        """The paper gateway's rules: ``paper.latency_ms``, ``paper.slippage_bps`` and the
        option freshness limit ``feed.option_stale_seconds``."""
        return cls(
            max_age_seconds=feed.option_stale_seconds,
            latency_ms=paper.latency_ms,
            slippage_bps=paper.slippage_bps,
        )


EXCHANGE = FillRules()  # the simulator's exchange: the book alone decides


# -- results ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fill:
    """One trade: ``quantity`` units (a whole number of lots) at ``price`` rupees per unit."""

    price: Decimal
    quantity: int


@dataclass(frozen=True, slots=True)
class Match:
    """What one snapshot did to one order.

    ``fills`` in execution order (empty when nothing filled); their quantities never exceed the
    order's ``remaining`` nor the displayed quantity left, and their prices never cross the
    limit (a buy's <= limit, a sell's >= limit). ``taken`` is the snapshot's record after these
    fills (the same object when nothing was taken from the book). ``reason`` says why nothing
    filled; None when something did (a partial fill's rest stays open: the depth was short).
    """

    fills: tuple[Fill, ...]
    taken: Taken
    reason: NoFill | None

    @property
    def quantity(self) -> int:
        """Units filled by this snapshot."""
        return sum(fill.quantity for fill in self.fills)


# -- the model --------------------------------------------------------------------------------


def _crosses(side: Side, price: Decimal, limit: Decimal) -> bool:
    return price <= limit if side == Side.BUY else price >= limit


def match(
    order: LimitOrder,
    book: Book,
    taken: Taken = NOTHING_TAKEN,
    rules: FillRules = EXCHANGE,
) -> Match:
    """Fill ``order`` from ``book`` (module doc for the rules), given what earlier fills took
    from this snapshot (``taken``) and the venue's ``rules``.

    In order: a snapshot older than ``rules.max_age_seconds`` fills nothing (STALE); one before
    ``order.placed_at`` + ``rules.latency_ms`` fills nothing (TOO_EARLY; ValueError when the
    rules have a latency and the order no ``placed_at``); a book with no depth fills the whole
    ``remaining`` at :func:`slipped_price` (incoming) or at the limit (resting) when that price
    crosses the limit and the rules have a slippage, else nothing (NO_PRICE / NOT_CROSSED);
    otherwise the opposite side is walked best first.
    """
    if rules.max_age_seconds is not None and book.age_seconds > rules.max_age_seconds:
        return Match((), taken, NoFill.STALE)
    if rules.latency_ms:
        if order.placed_at is None:
            raise ValueError("LimitOrder.placed_at: required when FillRules.latency_ms > 0")
        if book.at < order.placed_at + timedelta(milliseconds=rules.latency_ms):
            return Match((), taken, NoFill.TOO_EARLY)
    side, limit = order.side, order.limit
    if not book.has_depth:
        if rules.slippage_bps is None or book.ltp is None:
            return Match((), taken, NoFill.NO_PRICE)
        price = slipped_price(side, book.ltp, order.tick_size, rules.slippage_bps)
        if not _crosses(side, price, limit):
            return Match((), taken, NoFill.NOT_CROSSED)
        fill = Fill(price if order.incoming else limit, order.remaining)
        return Match((fill,), taken, None)

    used = taken.side_of(side)
    lot = order.lot_size
    wanted = order.remaining
    takes: list[tuple[Decimal, int]] = []
    crossed = False
    for level in book.asks if side == Side.BUY else book.bids:
        if not _crosses(side, level.price, limit):
            break  # levels are sorted away from the touch
        crossed = True
        quantity = min(wanted, level.quantity - used.get(level.price, 0)) // lot * lot
        if quantity <= 0:
            continue  # taken already, or under a lot left here
        takes.append((level.price, quantity))
        wanted -= quantity
        if wanted == 0:
            break
    if not takes:
        return Match((), taken, NoFill.DEPTH_TAKEN if crossed else NoFill.NOT_CROSSED)

    after = dict(used)
    for price, quantity in takes:
        after[price] = after.get(price, 0) + quantity
    record = Taken(after, taken.bids) if side == Side.BUY else Taken(taken.asks, after)
    if order.incoming:
        fills = tuple(Fill(price, quantity) for price, quantity in takes)
    else:
        fills = (Fill(limit, order.remaining - wanted),)
    return Match(fills, record, None)


def mpp_limit(side: Side | str, book: Book, tick: Decimal, mpp_pct: Decimal | float) -> Decimal:
    """The limit a MARKET order is sent with under Dhan's market price protection (PROTOCOL.md
    1.3): the best ask x (1 + ``mpp_pct``) for a buy, the best bid x (1 - ``mpp_pct``) for a
    sell (``mpp_pct`` a fraction, 0.10 = 10 %), an empty side falling back to the LTP. Rounded
    to the ``tick`` towards the protection (down for a buy, up for a sell), never inside the
    touch, never below one tick (so with no touch and no LTP it is one tick)."""
    side = _side(side, "side")
    _positive_price(tick, "tick")
    pct = _money(mpp_pct, "mpp_pct")
    if pct < 0:
        raise ValueError(f"mpp_pct: must not be negative, got {mpp_pct!r}")
    if side == Side.BUY:
        touch = book.asks[0].price if book.asks else (book.ltp or ZERO)
        limit = max(to_tick(touch * (ONE + pct), tick, ROUND_FLOOR), touch)
    else:
        touch = book.bids[0].price if book.bids else (book.ltp or ZERO)
        limit = min(to_tick(touch * (ONE - pct), tick, ROUND_CEILING), touch)
    return max(limit, tick)


def slipped_price(side: Side | str, ltp: Decimal, tick: Decimal, slippage_bps: int) -> Decimal:
    """The no-depth fill price: ``ltp`` x (1 + bps / 10000) rounded up to the ``tick`` for a
    buy, ``ltp`` x (1 - bps / 10000) rounded down for a sell, never below one tick."""
    side = _side(side, "side")
    _positive_price(ltp, "ltp")
    _positive_price(tick, "tick")
    shift = Decimal(slippage_bps) / BPS
    if side == Side.BUY:
        price = to_tick(ltp * (ONE + shift), tick, ROUND_CEILING)
    else:
        price = to_tick(ltp * (ONE - shift), tick, ROUND_FLOOR)
    return max(price, tick)
