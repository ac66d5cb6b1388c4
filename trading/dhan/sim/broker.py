"""The local Dhan simulator's order engine (issue 3). Pure: no I/O, no Django, no clock.

``SimBroker`` is what the fake Dhan's REST handlers call: place / modify / cancel orders, the
order and trade books, positions, fund limit and kill switch, each answer a wire dict in Dhan's
exact shape (PROTOCOL.md 1.5-1.7), parseable by ``trading.dhan.rest_types``. Everything that
depends on time takes ``now`` (aware market time); the server's matching thread calls
:meth:`SimBroker.on_tick` with the market clock, HTTP threads call the rest. One RLock guards
every public method. Every order transition is handed to the listeners as an
``order_update_codec.OrderUpdate`` (synchronously, inside the lock, so listeners see
transitions in the order they happened; they must be cheap: the server only queues them).

What a client sees, and the modelling choices where Dhan or NSE are silent:

Validation (400 ``DH-905 Input_Exception``, message ``"<field>: <problem>"``): missing, null or
empty-string fields (Dhan rejects ``""``, PROTOCOL.md 1.5), bad enums, a quantity that is not a
positive multiple of the lot, a price or trigger not on the tick, a buy stop-limit whose trigger
is above its price (sell: below), a correlationId over 25 characters or outside
``[A-Za-z0-9 _-]``, a ``dhanClientId`` that is not ours, and an unknown ``securityId`` or one on
another segment (or an index, which cannot be traded). Numbers may come as JSON numbers or
numeric strings (the docs' samples send strings). CO/BO products are DH-905 (not simulated).
An active kill switch answers 400 ``DH-906`` to place and modify (cancel stays allowed).

Life of an order: :meth:`place` answers ``{"orderId", "orderStatus": "TRANSIT"}`` (as real Dhan
does) after these synchronous transitions, each one an OrderUpdate: TRANSIT, then REJECTED
(``omsErrorDescription`` ``"RMS:<orderId>:<reason>"``, ``omsErrorCode`` ``"1"``: market closed
and not an AMO, CNC/MTF on a derivative, a stop whose trigger the LTP has already crossed, or
insufficient funds), or PENDING (``"CONFIRMED"``, an exchange order id and time), then any fills
(PART_TRADED / TRADED, one update per trade) and, for IOC, CANCELLED for the rest. Order ids are
12-digit numeric strings, increasing, derived from ``seed``.

Matching, against the synthetic book of ``market.quote(segment, id, now).depth`` (our orders
are price takers; they never show in the book), is ``trading.rules.fills``, the one fill model
the paper gateway uses too (``fills.EXCHANGE`` rules: no latency, freshness or slippage); the
broker decides when an order is incoming or resting and books the fills it returns:

* An incoming marketable order (a new or modified order, a stop when it triggers, an AMO at the
  open) walks the opposite side, level by level, filling at the book's prices up to each level's
  displayed quantity, in whole lots: one trade per level. What is left rests (DAY) or is
  cancelled (IOC).
* A resting order fills at its own limit price once the opposite side crosses it (best ask <= a
  buy's limit, best bid >= a sell's), up to the displayed quantity of the crossing levels: one
  trade per :meth:`on_tick`. So a large order is PART_TRADED across ticks.
* Displayed quantity is consumed: within one market second (the book changes every second) the
  same level is not sold twice, whichever orders take it.
* MARKET orders become limits at the best ask x (1 + ``mpp_pct``) for a buy, best bid x (1 -
  ``mpp_pct``) for a sell (Dhan's Market Price Protection on API orders since March 2026,
  PROTOCOL.md 1.3; Dhan's help pages quote 10 % for options, our default). The limit is rounded
  to the tick towards the protection (down for a buy, up for a sell), never inside the touch,
  never below one tick. It is shown as the order's ``price``; ``orderType`` stays MARKET. Such
  an order can stay open, PENDING or PART_TRADED, when the book beyond the band is empty. An
  empty side falls back to the LTP.
* STOP_LOSS / STOP_LOSS_MARKET rest untriggered (PENDING) until the LTP reaches the trigger
  (buy: LTP >= trigger, sell: LTP <= trigger), then act as an incoming LIMIT at ``price`` /
  MPP-protected market order. A trigger already crossed at placement is rejected (NSE rejects
  such stop orders); on modify it is a DH-905.
* AMO (``afterMarketOrder``): placed before the open it stays PENDING without an exchange order
  id and goes to the exchange on the first tick of the session; placed after the close it is for
  the next session, which this one-day simulator never reaches, so it stays PENDING (and does
  not expire). An AMO flag during market hours is ignored (a normal order).
* At or after the close, :meth:`on_tick` expires every open DAY order (EXPIRED, filled quantity
  kept). Modify and cancel of a live order while the market is closed answer Dhan's real
  ``DH-906 "Market is Closed! You cannot modify/cancel an order now."``.

Modify (PENDING / PART_TRADED only, else ``DH-906 "Order is in <state> state"``; at most 25 per
order): ``quantity`` is the new total and must exceed what has traded; the order may become
marketable and then executes as an incoming order. The answer is ``{"orderId", "orderStatus":
"TRANSIT"}``, like a placement. A modification the funds cannot cover is refused (DH-906) and the
order stays as it was. Cancel answers ``{"orderId", "orderStatus": "CANCELLED"}``. An unknown
order id answers ``DH-906 "Incorrect request for order and cannot be processed"``.

Positions and funds (rupees, Decimal inside, floats on the wire rounded to the paisa):

* One position per (security, productType), kept for the day once traded (CLOSED when flat).
  P&L uses **average cost**: a fill that adds to the position moves the average cost, a fill
  that reduces it realises ``qty x (fill - average cost)`` (sign by side), a fill that flips it
  closes at the old average and opens the rest at the fill price. ``unrealizedProfit`` is
  ``netQty x (LTP - costPrice)`` at ``now``; realised + unrealised = day sell value - day buy
  value + netQty x LTP. ``buyAvg`` / ``sellAvg`` are the day's averages per side.
* Margin: an option bought is paid for in full (premium x quantity); an option sold short and
  any futures position block ``short_margin_pct`` of the underlying index notional (index level
  at the open x quantity: SPAN-like margins are fixed at the start of the day, default 9 %,
  about what an index option short costs). Open orders block the same for the part that would
  open or add to a position (a buy covering a short, a sell closing a long, block nothing; open
  orders use up the position in time priority). A buy blocks its limit price (MPP price for a
  market order, trigger x (1 + mpp) for an untriggered stop-market).
* ``utilizedAmount`` = margin of open positions + blocks of open orders; ``availabelBalance`` =
  ``sodLimit`` - ``utilizedAmount`` + realised P&L (unrealised P&L is not credited);
  ``withdrawableBalance`` = ``sodLimit`` - ``utilizedAmount`` + realised losses (profits are paid
  out the next day). An order is REJECTED when what it would block exceeds the available balance.

Kill switch: activating it requires no open orders and no open positions (Dhan's trader's
control, PROTOCOL.md 1.7), else ``DH-906``.

Not simulated: CO/BO, order slicing, freeze quantities, price bands (circuit limits), carry
forward, charges and taxes, disclosed quantity (validated, shown, otherwise ignored).
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, TypeVar

from trading.dhan.order_update_codec import OrderUpdate
from trading.dhan.rest_types import CORRELATION_ID_MAX_LEN
from trading.dhan.sim.market import ContractSpec, Market, Quote
from trading.dhan.vocab import (
    NOT_SET,
    STOP_ORDER_TYPES,
    AmoTime,
    ExchangeSegment,
    Instrument,
    KillSwitchStatus,
    LegName,
    OptionType,
    OrderStatus,
    OrderType,
    PositionType,
    ProductType,
    TransactionType,
    Validity,
    wire_values,
)
from trading.rules import fills
from trading.rules.market import IST

__all__ = [
    "DEFAULT_MPP_PCT",
    "DEFAULT_SHORT_MARGIN_PCT",
    "MAX_MODIFICATIONS",
    "BrokerError",
    "SimBroker",
]

log = logging.getLogger(__name__)
_E = TypeVar("_E", bound=StrEnum)

DEFAULT_MPP_PCT = 0.10  # fraction: Dhan's help pages quote 10 % protection for options
DEFAULT_SHORT_MARGIN_PCT = 0.09  # fraction of index notional: SPAN + exposure, index options
MAX_MODIFICATIONS = 25  # per order (PROTOCOL.md 1.3)

_OPEN = frozenset({OrderStatus.PENDING, OrderStatus.PART_TRADED})
# Priced by the book (Market Price Protection) rather than by their own price.
_MARKETS = frozenset({OrderType.MARKET, OrderType.STOP_LOSS_MARKET})
# Carry their own limit price.
_PRICED = frozenset({OrderType.LIMIT, OrderType.STOP_LOSS})
# Not simulated (module doc); CNC/MTF are delivery products, refused for derivatives.
_UNSIMULATED_PRODUCTS = frozenset({ProductType.CO, ProductType.BO})
_DELIVERY_PRODUCTS = frozenset({ProductType.CNC, ProductType.MTF})
_OPTION_TYPES = {"CE": OptionType.CALL, "PE": OptionType.PUT}  # scrip master -> drvOptionType
_CORRELATION_ID_RE = re.compile(r"[A-Za-z0-9 _-]+")
_ZERO = Decimal(0)
_PAISA = Decimal("0.01")
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_UNSET_TIME = "0001-01-01 00:00:00"
_UNSET_DATE = "0001-01-01"
_RMS_ERROR_CODE = "1"  # a sim convention: non-zero marks a rejection; Dhan's codes are unknown
_MARKET_CLOSED_MODIFY = "Market is Closed! You cannot modify/cancel an order now."
_UNKNOWN_ORDER = "Incorrect request for order and cannot be processed"


class BrokerError(Exception):
    """An answer Dhan gives as an HTTP error: status, errorType, errorCode, errorMessage.

    The server answers ``status`` with :meth:`body` as the JSON body (PROTOCOL.md 1.1).
    """

    def __init__(self, status: int, error_type: str, error_code: str, message: str) -> None:
        self.status = status
        self.error_type = error_type
        self.error_code = error_code
        self.message = message
        super().__init__(f"{status} {error_code} {message}")

    def body(self) -> dict[str, str]:
        """``{"errorType", "errorCode", "errorMessage"}`` exactly as Dhan sends it."""
        return {
            "errorType": self.error_type,
            "errorCode": self.error_code,
            "errorMessage": self.message,
        }


def _input_error(name: str, problem: str) -> BrokerError:
    return BrokerError(400, "Input_Exception", "DH-905", f"{name}: {problem}")


def _order_error(message: str, status: int = 400) -> BrokerError:
    return BrokerError(status, "Order_Error", "DH-906", message)


# ---------------------------------------------------------------------------------------------
# Field readers: wire value -> typed value, or a DH-905 naming the field.


def _present(body: Mapping[str, Any], name: str, *, required: bool) -> Any:
    """The raw value, None when absent/null (an error when required); "" is always an error."""
    value = body.get(name)
    if isinstance(value, str) and not value.strip():
        raise _input_error(name, "empty string (omit the field instead)")
    if value is None and required:
        raise _input_error(name, "missing")
    return value


def _read_str(body: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    value = _present(body, name, required=required)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _input_error(name, f"expected a string, got {value!r}")
    return str(value).strip()


def _read_choice(
    body: Mapping[str, Any], name: str, choices: type[_E], *, required: bool = True
) -> _E | None:
    """The member of ``choices`` the field names, or a DH-905 listing the accepted values."""
    value = _read_str(body, name, required=required)
    if value is None:
        return None
    try:
        return choices(value)
    except ValueError:
        raise _input_error(name, f"expected one of {wire_values(choices)}, got {value!r}") from None


def _read_int(body: Mapping[str, Any], name: str, *, required: bool = True) -> int | None:
    value = _present(body, name, required=required)
    if value is None:
        return None
    number = _number(value, name)
    if number != number.to_integral_value():
        raise _input_error(name, f"expected a whole number, got {value!r}")
    return int(number)


def _read_money(body: Mapping[str, Any], name: str, *, required: bool = True) -> Decimal | None:
    value = _present(body, name, required=required)
    if value is None:
        return None
    number = _number(value, name)
    if number < 0:
        raise _input_error(name, f"must not be negative, got {value!r}")
    return number


def _number(value: Any, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise _input_error(name, f"expected a number, got {value!r}")
    try:
        # repr of a float is its shortest round-trip text: 245.55 stays Decimal("245.55").
        number = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except InvalidOperation:
        raise _input_error(name, f"expected a number, got {value!r}") from None
    if not number.is_finite():
        raise _input_error(name, f"expected a finite number, got {value!r}")
    return number


def _read_bool(body: Mapping[str, Any], name: str) -> bool:
    value = _present(body, name, required=False)
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _input_error(name, f"expected true or false, got {value!r}")


def _on_tick(value: Decimal, tick: Decimal) -> bool:
    return value % tick == 0


def _dec(value: float) -> Decimal:
    """A market float price (already tick-clean, e.g. 218.55) as its exact decimal text."""
    return Decimal(repr(value))


@functools.lru_cache(maxsize=16)
def _tick(value: float) -> Decimal:
    """A contract's tick as Decimal: a handful of values, asked for on every match."""
    return _dec(value)


def _wire_money(value: Decimal) -> float:
    """Dhan sends money as JSON numbers; rounded to the paisa (float repr keeps the digits)."""
    return float(value.quantize(_PAISA, rounding=ROUND_HALF_EVEN))


def _wire_time(moment: datetime | None) -> str:
    return _UNSET_TIME if moment is None else moment.astimezone(IST).strftime(_TIME_FORMAT)


def _whole_second(moment: datetime | None) -> datetime | None:
    """Order-update times carry whole seconds, like the REST books."""
    return None if moment is None else moment.astimezone(IST).replace(microsecond=0)


# ---------------------------------------------------------------------------------------------
# State


@dataclass(slots=True)
class _Order:
    order_id: str
    spec: ContractSpec
    correlation_id: str | None
    transaction_type: TransactionType
    product_type: ProductType
    order_type: OrderType
    validity: Validity
    quantity: int
    disclosed_quantity: int
    price: Decimal  # as shown on the wire: the MPP limit once a market order is priced
    trigger_price: Decimal
    amo: bool
    amo_time: AmoTime | None
    create_time: datetime
    update_time: datetime
    status: OrderStatus = OrderStatus.TRANSIT
    live: bool = False  # at the exchange (False: AMO waiting for the open, or rejected)
    limit: Decimal | None = None  # the working limit; None while a stop is untriggered
    block_price: Decimal = _ZERO  # price per unit a buy blocks while open (see module doc)
    exchange_order_id: str = "0"
    exchange_time: datetime | None = None
    filled: int = 0
    filled_value: Decimal = _ZERO
    last_fill_price: Decimal = _ZERO
    error_code: str = "0"
    error_text: str = "CONFIRMED"
    modifications: int = 0
    for_next_session: bool = False  # AMO placed after the close: never goes live here

    @property
    def remaining(self) -> int:
        return self.quantity - self.filled

    @property
    def tick(self) -> Decimal:
        return _tick(self.spec.tick)

    @property
    def is_buy(self) -> bool:
        return self.transaction_type == TransactionType.BUY

    @property
    def average_price(self) -> Decimal:
        return self.filled_value / self.filled if self.filled else _ZERO


@dataclass(slots=True)
class _Trade:
    order: _Order
    trade_id: str
    quantity: int
    price: Decimal
    time: datetime


@dataclass(slots=True)
class _Position:
    spec: ContractSpec
    product_type: ProductType
    net: int = 0
    avg_cost: Decimal = _ZERO  # average cost of the open quantity (average-cost method)
    realized: Decimal = _ZERO
    buy_qty: int = 0
    sell_qty: int = 0
    buy_value: Decimal = _ZERO
    sell_value: Decimal = _ZERO

    def apply(self, is_buy: bool, qty: int, price: Decimal) -> None:
        """Book one fill (average cost: see the module docstring)."""
        if is_buy:
            self.buy_qty += qty
            self.buy_value += price * qty
        else:
            self.sell_qty += qty
            self.sell_value += price * qty
        signed = qty if is_buy else -qty
        if self.net == 0 or (self.net > 0) == is_buy:
            total = abs(self.net) + qty
            self.avg_cost = (self.avg_cost * abs(self.net) + price * qty) / total
            self.net += signed
            return
        closing = min(qty, abs(self.net))
        # Long closed by a sell gains (price - cost); short closed by a buy gains (cost - price).
        direction = 1 if self.net > 0 else -1
        self.realized += (price - self.avg_cost) * closing * direction
        self.net += signed
        if self.net == 0:
            self.avg_cost = _ZERO
        elif (self.net > 0) != (direction > 0):
            self.avg_cost = price  # flipped: the rest opened at this fill's price


# ---------------------------------------------------------------------------------------------
# The broker


class SimBroker:
    """The fake Dhan's order engine over one :class:`Market` day. Thread-safe; see module doc.

    ``mpp_pct`` and ``short_margin_pct`` are fractions (0.10 = 10 %). ``funds`` is the start of
    day limit (``sodLimit``). ``seed`` picks the order-id range, so two simulators do not hand
    out the same ids.
    """

    def __init__(
        self,
        market: Market,
        *,
        client_id: str,
        funds: Decimal = Decimal("1000000"),
        mpp_pct: float = DEFAULT_MPP_PCT,
        short_margin_pct: float = DEFAULT_SHORT_MARGIN_PCT,
        seed: int = 0,
    ) -> None:
        if mpp_pct < 0 or short_margin_pct < 0:
            raise ValueError("mpp_pct and short_margin_pct must not be negative")
        self.market = market
        self.client_id = client_id
        self.sod_limit = Decimal(funds)
        self.mpp = Decimal(repr(float(mpp_pct)))
        self.short_margin = Decimal(repr(float(short_margin_pct)))
        self._lock = threading.RLock()
        self._listeners: list[Callable[[OrderUpdate], None]] = []
        self._outbox: list[OrderUpdate] = []
        self._orders: dict[str, _Order] = {}  # insertion order = time priority
        self._by_correlation: dict[str, _Order] = {}
        self._trades: list[_Trade] = []
        self._positions: dict[tuple[int, str], _Position] = {}
        # Per security id: the market second and what our fills took from that second's book.
        self._taken: dict[int, tuple[int, fills.Taken]] = {}
        self._books: dict[int, tuple[Quote, fills.Book]] = {}  # per security id: the last built
        self._kill_switch = False
        # 12-digit order ids like Dhan's ("752502167405"), 16-digit exchange ids like NSE's.
        self._order_base = (100 + seed % 900) * 10**9
        self._exchange_base = 1_100_000_000_000_000 + (seed % 1000) * 10**9
        self._trade_base = 10**8 + (seed % 1000) * 10**5
        self._order_seq = 0
        self._exchange_seq = 0
        self._trade_seq = 0
        self._margin_cache: dict[str, Decimal] = {}

    # -- listeners -----------------------------------------------------------------------------

    def add_listener(self, callback: Callable[[OrderUpdate], None]) -> None:
        """``callback(update)`` for every order transition, in order, synchronously."""
        with self._lock:
            self._listeners.append(callback)

    def _emit(self, order: _Order, now: datetime, traded_price: Decimal = _ZERO) -> None:
        spec = order.spec
        self._outbox.append(
            OrderUpdate(
                order_id=order.order_id,
                status=order.status,
                exchange_order_id=None
                if order.exchange_order_id == "0"
                else order.exchange_order_id,
                correlation_id=order.correlation_id,
                transaction_type=order.transaction_type,
                product_type=order.product_type,
                order_type=order.order_type,
                validity=order.validity,
                exchange_segment=spec.exchange_segment,
                security_id=spec.security_id,
                symbol=spec.trading_symbol,
                quantity=order.quantity,
                traded_quantity=order.filled,
                remaining_quantity=order.remaining,
                price=order.price,
                trigger_price=order.trigger_price,
                traded_price=traded_price,
                avg_traded_price=order.average_price.quantize(_PAISA),
                order_time=_whole_second(order.create_time),
                exchange_time=_whole_second(order.exchange_time),
                updated_at=_whole_second(now),
                reason=order.error_text,
                source="P",  # placed through the API
                leg_no=1,
            )
        )

    def _flush(self) -> None:
        """Hand queued updates to the listeners (inside the lock: global order is kept).

        A failing listener is logged and skipped: the broker's state is already updated, and one
        broken subscriber must not stop the others or the caller's HTTP answer.
        """
        updates, self._outbox = self._outbox, []
        for update in updates:
            for listener in self._listeners:
                try:
                    listener(update)
                except Exception:
                    log.exception("sim broker: order-update listener failed")

    # -- place ---------------------------------------------------------------------------------

    def place(self, body: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        """``POST /orders``: ``{"orderId", "orderStatus": "TRANSIT"}`` or a BrokerError."""
        with self._lock:
            try:
                return self._place(body, now)
            finally:
                self._flush()

    def _place(self, body: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        if not isinstance(body, Mapping):
            raise _input_error("body", "expected a JSON object")
        if self._kill_switch:
            raise _order_error("Kill switch is active: orders cannot be placed.")
        self._check_client(body)
        side = _read_choice(body, "transactionType", TransactionType)
        segment = _read_choice(body, "exchangeSegment", ExchangeSegment)
        product = _read_choice(body, "productType", ProductType)
        order_type = _read_choice(body, "orderType", OrderType)
        validity = _read_choice(body, "validity", Validity)
        assert side and segment and product and order_type and validity  # required above
        if product in _UNSIMULATED_PRODUCTS:
            raise _input_error("productType", f"{product} orders are not simulated")
        spec = self._contract(body, segment)
        quantity = self._quantity(body, spec)
        disclosed = _read_int(body, "disclosedQuantity", required=False) or 0
        if not 0 <= disclosed <= quantity:
            raise _input_error("disclosedQuantity", f"must be between 0 and {quantity}")
        price, trigger = self._prices(body, spec, side, order_type)
        correlation_id = self._correlation_id(body)
        amo = _read_bool(body, "afterMarketOrder")
        amo_time = _read_choice(body, "amoTime", AmoTime, required=False) if amo else None
        _read_money(body, "boProfitValue", required=False)  # BO only; validated, unused
        _read_money(body, "boStopLossValue", required=False)

        self._order_seq += 1
        order = _Order(
            order_id=str(self._order_base + self._order_seq),
            spec=spec,
            correlation_id=correlation_id,
            transaction_type=side,
            product_type=product,
            order_type=order_type,
            validity=validity,
            quantity=quantity,
            disclosed_quantity=disclosed,
            price=price,
            trigger_price=trigger,
            amo=amo,
            amo_time=amo_time,
            create_time=now,
            update_time=now,
        )
        self._orders[order.order_id] = order
        if correlation_id is not None:
            self._by_correlation[correlation_id] = order  # the latest wins on reuse
        self._emit(order, now)

        clock = self.market.clock
        market_open = clock.is_open(now)
        book = self._book(self.market.quote(segment, spec.security_id, now), now)
        if not market_open and not amo:
            return self._reject(order, now, "Market is Closed! Order cannot be placed now.")
        if product in _DELIVERY_PRODUCTS:
            return self._reject(order, now, f"{product} product is not allowed for derivatives")
        if order_type in STOP_ORDER_TYPES and self._stop_crossed(order, book):
            return self._reject(order, now, self._crossed_text(order))
        order.block_price = self._block_price(order, book)
        need = self._order_block(order)
        available = self._available()
        if need > available:
            return self._reject(
                order,
                now,
                f"Insufficient funds: required Rs {need.quantize(_PAISA)}, "
                f"available Rs {available.quantize(_PAISA)}",
            )
        order.status = OrderStatus.PENDING
        order.for_next_session = amo and now >= clock.close_at
        if market_open:
            self._send_to_exchange(order, now)
        self._emit(order, now)
        if order.live:
            self._execute_incoming(order, book, now)
        return {"orderId": order.order_id, "orderStatus": OrderStatus.TRANSIT.value}

    def _check_client(self, body: Mapping[str, Any]) -> None:
        client = _read_str(body, "dhanClientId")
        if client != self.client_id:
            raise _input_error("dhanClientId", "does not match the client id of this token")

    def _contract(self, body: Mapping[str, Any], segment: ExchangeSegment) -> ContractSpec:
        raw = _read_str(body, "securityId")
        assert raw is not None
        spec = self.market.contracts.get(int(raw)) if raw.isdigit() else None
        # Dhan's answer to an id it does not know is not recorded; a DH-905 naming the field is
        # the closest documented shape (bad values for parameters).
        if spec is None:
            raise _input_error("securityId", f"unknown security id {raw!r}")
        if spec.exchange_segment != segment:
            raise _input_error("securityId", f"{raw} is not an instrument of {segment}")
        if spec.instrument == Instrument.INDEX:
            raise _input_error("securityId", f"{raw} is an index and cannot be traded")
        return spec

    @staticmethod
    def _quantity(body: Mapping[str, Any], spec: ContractSpec) -> int:
        quantity = _read_int(body, "quantity")
        assert quantity is not None
        if quantity <= 0:
            raise _input_error("quantity", f"must be positive, got {quantity}")
        if quantity % spec.lot:
            raise _input_error(
                "quantity", f"{quantity} is not a multiple of the lot size {spec.lot}"
            )
        return quantity

    @staticmethod
    def _prices(
        body: Mapping[str, Any],
        spec: ContractSpec,
        side: TransactionType,
        order_type: OrderType,
    ) -> tuple[Decimal, Decimal]:
        """(price, triggerPrice) as the order will show them; zeros where they do not apply."""
        tick = _dec(spec.tick)
        needs_price = order_type in _PRICED
        price = _read_money(body, "price", required=needs_price) or _ZERO
        trigger = (
            _read_money(body, "triggerPrice", required=order_type in STOP_ORDER_TYPES) or _ZERO
        )
        if needs_price:
            if price <= 0:
                raise _input_error("price", f"must be positive for {order_type}")
            if not _on_tick(price, tick):
                raise _input_error("price", f"{price} is not a multiple of the tick {tick}")
        else:
            price = _ZERO  # a market order's price is ignored, then set by MPP
        if order_type in STOP_ORDER_TYPES:
            if trigger <= 0:
                raise _input_error("triggerPrice", f"must be positive for {order_type}")
            if not _on_tick(trigger, tick):
                raise _input_error(
                    "triggerPrice", f"{trigger} is not a multiple of the tick {tick}"
                )
            if order_type == OrderType.STOP_LOSS:
                if side == TransactionType.BUY and trigger > price:
                    raise _input_error("triggerPrice", "must not be above the price for a buy")
                if side == TransactionType.SELL and trigger < price:
                    raise _input_error("triggerPrice", "must not be below the price for a sell")
        else:
            trigger = _ZERO
        return price, trigger

    @staticmethod
    def _correlation_id(body: Mapping[str, Any]) -> str | None:
        value = _read_str(body, "correlationId", required=False)
        if value is None:
            return None
        if len(value) > CORRELATION_ID_MAX_LEN:
            raise _input_error(
                "correlationId", f"at most {CORRELATION_ID_MAX_LEN} characters, got {len(value)}"
            )
        if not _CORRELATION_ID_RE.fullmatch(value):
            raise _input_error("correlationId", "only letters, digits, space, '_' and '-'")
        return value

    def _reject(self, order: _Order, now: datetime, reason: str) -> dict[str, Any]:
        order.status = OrderStatus.REJECTED
        order.error_code = _RMS_ERROR_CODE
        order.error_text = f"RMS:{order.order_id}:{reason}"
        order.update_time = now
        self._emit(order, now)
        # Dhan answers the placement itself with TRANSIT: the rejection comes later, by update
        # and in the order book.
        return {"orderId": order.order_id, "orderStatus": OrderStatus.TRANSIT.value}

    def _send_to_exchange(self, order: _Order, now: datetime) -> None:
        self._exchange_seq += 1
        order.exchange_order_id = str(self._exchange_base + self._exchange_seq)
        order.exchange_time = now
        order.live = True
        order.update_time = now

    # -- pricing helpers -------------------------------------------------------------------------

    def _book(self, quote: Quote, now: datetime) -> fills.Book:
        """The fill model's view of ``quote``, at its market second.

        Built once per quote: the market hands out one Quote object per instrument and market
        second, so a placement and the next tick in the same second share the book."""
        kept = self._books.get(quote.security_id)
        if kept is not None and kept[0] is quote:
            return kept[1]
        book = fills.Book.from_depth(quote.depth, ltp=quote.ltp, at=now.replace(microsecond=0))
        self._books[quote.security_id] = (quote, book)
        return book

    @staticmethod
    def _stop_crossed(order: _Order, book: fills.Book) -> bool:
        ltp = book.ltp or _ZERO
        return ltp >= order.trigger_price if order.is_buy else ltp <= order.trigger_price

    @staticmethod
    def _crossed_text(order: _Order) -> str:
        word = "above" if order.is_buy else "below"
        return (
            f"Trigger price for a stop loss {order.transaction_type.lower()} order must be "
            f"{word} the last traded price"
        )

    def _mpp_limit(self, order: _Order, book: fills.Book) -> Decimal:
        """Market Price Protection: the limit a market order is sent with (module doc)."""
        return fills.mpp_limit(order.transaction_type, book, _dec(order.spec.tick), self.mpp)

    def _block_price(self, order: _Order, book: fills.Book) -> Decimal:
        """Per-unit amount an open buy blocks (its limit; estimated for market / stop-market)."""
        if order.order_type in _PRICED:
            return order.price
        if order.order_type == OrderType.MARKET:
            return self._mpp_limit(order, book)
        tick = _dec(order.spec.tick)
        return fills.to_tick(order.trigger_price * (1 + self.mpp), tick, ROUND_FLOOR)

    def _arm(self, order: _Order, book: fills.Book) -> None:
        """Give a live order its working limit (MPP for market types) once it may trade."""
        if order.order_type in _MARKETS:
            order.limit = self._mpp_limit(order, book)
            order.price = order.limit
            order.block_price = order.limit
        else:
            order.limit = order.price
            order.block_price = order.price

    # -- matching --------------------------------------------------------------------------------

    def _match(self, order: _Order, book: fills.Book, now: datetime, incoming: bool) -> None:
        """Book what the fill model fills of ``order`` from ``book``.

        The displayed quantity our fills took is kept per instrument for one market second (the
        synthetic book changes every second), whichever orders took it.
        """
        assert order.limit is not None
        spec = order.spec
        second = int(now.timestamp())
        kept = self._taken.get(spec.security_id)
        taken = kept[1] if kept is not None and kept[0] == second else fills.NOTHING_TAKEN
        wanted = fills.LimitOrder(
            side=order.transaction_type,
            limit=order.limit,
            remaining=order.remaining,
            lot_size=spec.lot,
            tick_size=order.tick,
            incoming=incoming,
        )
        result = fills.match(wanted, book, taken)
        self._taken[spec.security_id] = (second, result.taken)
        for fill in result.fills:
            self._fill(order, fill.quantity, fill.price, now)

    def _execute_incoming(self, order: _Order, book: fills.Book, now: datetime) -> None:
        """An order arriving at the book (placed, modified, triggered, AMO at the open): it walks
        the opposite side at the book's prices, one trade per level."""
        if order.order_type in STOP_ORDER_TYPES and order.limit is None:
            if not self._stop_crossed(order, book):
                return  # rests untriggered
        self._arm(order, book)
        self._match(order, book, now, incoming=True)
        if order.validity == Validity.IOC and order.status in _OPEN:
            order.status = OrderStatus.CANCELLED
            order.update_time = now
            self._emit(order, now)

    def _execute_resting(self, order: _Order, book: fills.Book, now: datetime) -> None:
        """A resting order the book has moved through: one trade at its own limit for what the
        crossing levels still show (module doc)."""
        self._match(order, book, now, incoming=False)

    def _fill(self, order: _Order, qty: int, price: Decimal, now: datetime) -> None:
        order.filled += qty
        order.filled_value += price * qty
        order.last_fill_price = price
        order.status = OrderStatus.TRADED if order.remaining == 0 else OrderStatus.PART_TRADED
        order.update_time = now
        self._trade_seq += 1
        self._trades.append(_Trade(order, str(self._trade_base + self._trade_seq), qty, price, now))
        key = (order.spec.security_id, order.product_type)
        position = self._positions.get(key)
        if position is None:
            position = self._positions[key] = _Position(order.spec, order.product_type)
        position.apply(order.is_buy, qty, price)
        self._emit(order, now, traded_price=price)

    def on_tick(self, now: datetime) -> None:
        """Advance the order engine to market time ``now``.

        Before the open: nothing. During the session, in time priority: AMOs go to the exchange,
        untriggered stops whose trigger the LTP reached execute as incoming orders, resting
        orders fill where the book crosses them. At or after the close: open DAY orders expire
        (except AMOs placed for the next session).
        """
        with self._lock:
            try:
                self._on_tick(now)
            finally:
                self._flush()

    def _on_tick(self, now: datetime) -> None:
        clock = self.market.clock
        if now >= clock.close_at:
            for order in self._orders.values():
                if order.status in _OPEN and not order.for_next_session:
                    order.status = OrderStatus.EXPIRED
                    order.update_time = now
                    self._emit(order, now)
            return
        if not clock.is_open(now):
            return
        books: dict[int, fills.Book] = {}
        for order in list(self._orders.values()):
            if order.status not in _OPEN or order.for_next_session:
                continue
            spec = order.spec
            book = books.get(spec.security_id)
            if book is None:
                quote = self.market.quote(spec.exchange_segment, spec.security_id, now)
                book = books[spec.security_id] = self._book(quote, now)
            if not order.live:
                self._send_to_exchange(order, now)
                self._emit(order, now)
                self._execute_incoming(order, book, now)
            elif order.limit is None:
                if self._stop_crossed(order, book):
                    self._execute_incoming(order, book, now)
            else:
                self._execute_resting(order, book, now)

    # -- modify / cancel -------------------------------------------------------------------------

    def _open_order(self, order_id: str, now: datetime) -> _Order:
        order = self._orders.get(str(order_id))
        if order is None:
            raise _order_error(_UNKNOWN_ORDER)
        if order.status not in _OPEN:
            state = order.status.replace("_", " ").title().replace(" ", "_")
            raise _order_error(f"Order is in {state} state")
        if order.live and not self.market.clock.is_open(now):
            raise _order_error(_MARKET_CLOSED_MODIFY)
        return order

    def modify(self, order_id: str, body: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        """``PUT /orders/{order_id}``: ``{"orderId", "orderStatus": "TRANSIT"}`` or an error."""
        with self._lock:
            try:
                return self._modify(order_id, body, now)
            finally:
                self._flush()

    def _modify(self, order_id: str, body: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        if not isinstance(body, Mapping):
            raise _input_error("body", "expected a JSON object")
        if self._kill_switch:
            raise _order_error("Kill switch is active: orders cannot be modified.")
        order = self._open_order(order_id, now)
        self._check_client(body)
        body_id = _read_str(body, "orderId", required=False)
        if body_id is not None and body_id != order.order_id:
            raise _input_error("orderId", "does not match the order id in the path")
        # Only the three leg names: the order book's "NA" means "no leg" and is not a value a
        # request sends (PROTOCOL.md 1.4); the real client omits legName for a plain order.
        _read_choice(body, "legName", LegName, required=False)
        if order.modifications >= MAX_MODIFICATIONS:
            raise _order_error(f"Order cannot be modified more than {MAX_MODIFICATIONS} times")
        order_type = _read_choice(body, "orderType", OrderType)
        validity = _read_choice(body, "validity", Validity)
        assert order_type and validity
        spec = order.spec
        quantity = self._quantity(body, spec)
        if quantity <= order.filled:
            raise _input_error(
                "quantity", f"must exceed the traded quantity {order.filled}, got {quantity}"
            )
        disclosed = _read_int(body, "disclosedQuantity", required=False) or 0
        if not 0 <= disclosed <= quantity:
            raise _input_error("disclosedQuantity", f"must be between 0 and {quantity}")
        price, trigger = self._prices(body, spec, order.transaction_type, order_type)
        book = self._book(self.market.quote(spec.exchange_segment, spec.security_id, now), now)
        saved = (
            order.order_type,
            order.validity,
            order.quantity,
            order.disclosed_quantity,
            order.price,
            order.trigger_price,
            order.limit,
            order.block_price,
        )
        # A triggered stop is a working limit at the exchange: modifying it keeps it triggered.
        was_triggered = order.order_type in STOP_ORDER_TYPES and order.limit is not None
        available = self._available()
        before = self._order_block(order)
        order.order_type, order.validity, order.quantity = order_type, validity, quantity
        order.disclosed_quantity, order.price, order.trigger_price = disclosed, price, trigger
        order.limit = None
        try:
            stop = order_type in STOP_ORDER_TYPES and not was_triggered
            if stop and self._stop_crossed(order, book):
                raise _input_error("triggerPrice", self._crossed_text(order))
            order.block_price = self._block_price(order, book)
            extra = self._order_block(order) - before
            if extra > available:
                raise _order_error(
                    f"RMS:{order.order_id}:Insufficient funds to modify: required Rs "
                    f"{extra.quantize(_PAISA)}, available Rs {available.quantize(_PAISA)}"
                )
        except BrokerError:
            (
                order.order_type,
                order.validity,
                order.quantity,
                order.disclosed_quantity,
                order.price,
                order.trigger_price,
                order.limit,
                order.block_price,
            ) = saved
            raise
        order.modifications += 1
        order.update_time = now
        if order.live and (order_type not in STOP_ORDER_TYPES or was_triggered):
            self._arm(order, book)  # the update shows the working price (MPP for MARKET)
        self._emit(order, now)
        if order.live:
            self._execute_incoming(order, book, now)
        return {"orderId": order.order_id, "orderStatus": OrderStatus.TRANSIT.value}

    def cancel(self, order_id: str, now: datetime) -> dict[str, Any]:
        """``DELETE /orders/{order_id}``: ``{"orderId", "orderStatus": "CANCELLED"}``."""
        with self._lock:
            try:
                order = self._open_order(order_id, now)
                order.status = OrderStatus.CANCELLED
                order.update_time = now
                self._emit(order, now)
                return {"orderId": order.order_id, "orderStatus": OrderStatus.CANCELLED.value}
            finally:
                self._flush()

    # -- books -----------------------------------------------------------------------------------

    def _derivative_fields(self, spec: ContractSpec) -> dict[str, Any]:
        option = _OPTION_TYPES.get(spec.option_type)
        return {
            "drvExpiryDate": spec.expiry.date().isoformat() if spec.expiry else _UNSET_DATE,
            "drvOptionType": NOT_SET if option is None else option.value,
            "drvStrikePrice": float(spec.strike),
        }

    def _order_wire(self, order: _Order) -> dict[str, Any]:
        spec = order.spec
        return {
            "dhanClientId": self.client_id,
            "orderId": order.order_id,
            "exchangeOrderId": order.exchange_order_id,
            "correlationId": order.correlation_id or NOT_SET,
            "orderStatus": order.status.value,
            "transactionType": order.transaction_type.value,
            "exchangeSegment": spec.exchange_segment,
            "productType": order.product_type.value,
            "orderType": order.order_type.value,
            "validity": order.validity.value,
            "tradingSymbol": spec.trading_symbol,
            "securityId": str(spec.security_id),
            "quantity": order.quantity,
            "disclosedQuantity": order.disclosed_quantity,
            "price": _wire_money(order.price),
            "triggerPrice": _wire_money(order.trigger_price),
            "afterMarketOrder": order.amo,
            "boProfitValue": 0.0,
            "boStopLossValue": 0.0,
            "legName": NOT_SET,  # plain orders only: no CO/BO/super-order legs here
            "createTime": _wire_time(order.create_time),
            "updateTime": _wire_time(order.update_time),
            "exchangeTime": _wire_time(order.exchange_time),
            **self._derivative_fields(spec),
            "omsErrorCode": order.error_code,
            "omsErrorDescription": order.error_text,
            "algoId": "0",
            "remainingQuantity": order.remaining,
            "averageTradedPrice": _wire_money(order.average_price),
            "filledQty": order.filled,
        }

    def orders(self) -> list[dict[str, Any]]:
        """``GET /orders``: the day's orders, oldest first."""
        with self._lock:
            return [self._order_wire(order) for order in self._orders.values()]

    def order(self, order_id: str) -> list[dict[str, Any]]:
        """``GET /orders/{id}``: a one-element list, ``[]`` for an unknown id (as Dhan)."""
        with self._lock:
            order = self._orders.get(str(order_id))
            return [] if order is None else [self._order_wire(order)]

    def order_by_correlation_id(self, correlation_id: str) -> dict[str, Any]:
        """``GET /orders/external/{id}``: the latest order with that id, else 404 DH-906."""
        with self._lock:
            order = self._by_correlation.get(correlation_id)
            if order is None:
                raise _order_error(f"No order found for correlation id {correlation_id!r}", 404)
            return self._order_wire(order)

    def _trade_wire(self, trade: _Trade) -> dict[str, Any]:
        order, spec = trade.order, trade.order.spec
        return {
            "dhanClientId": self.client_id,
            "orderId": order.order_id,
            "exchangeOrderId": order.exchange_order_id,
            "exchangeTradeId": trade.trade_id,
            "transactionType": order.transaction_type.value,
            "exchangeSegment": spec.exchange_segment,
            "productType": order.product_type.value,
            "orderType": order.order_type.value,
            "tradingSymbol": spec.trading_symbol,
            "customSymbol": self._custom_symbol(spec),
            "securityId": str(spec.security_id),
            "tradedQuantity": trade.quantity,
            "tradedPrice": _wire_money(trade.price),
            "createTime": _wire_time(order.create_time),
            "updateTime": _wire_time(trade.time),
            "exchangeTime": _wire_time(trade.time),
            **self._derivative_fields(spec),
        }

    @staticmethod
    def _custom_symbol(spec: ContractSpec) -> str:
        """Dhan's display name, e.g. ``NIFTY 24 NOV 26000 CALL`` / ``NIFTY NOV FUT``."""
        if spec.expiry is None:
            return spec.trading_symbol
        when = spec.expiry.strftime("%d %b").upper()
        if spec.instrument == Instrument.FUTIDX:
            return f"{spec.underlying} {spec.expiry.strftime('%b').upper()} FUT"
        kind = _OPTION_TYPES.get(spec.option_type, OptionType.PUT).value
        return f"{spec.underlying} {when} {spec.strike:g} {kind}"

    def trades(self) -> list[dict[str, Any]]:
        """``GET /trades``: one row per fill, in time order."""
        with self._lock:
            return [self._trade_wire(trade) for trade in self._trades]

    def order_trades(self, order_id: str) -> list[dict[str, Any]]:
        """``GET /trades/{order_id}``: the fills of one order (``[]`` if none or unknown)."""
        with self._lock:
            return [self._trade_wire(t) for t in self._trades if t.order.order_id == order_id]

    # -- positions and funds --------------------------------------------------------------------

    def _margin_per_unit(self, spec: ContractSpec) -> Decimal:
        margin = self._margin_cache.get(spec.underlying)
        if margin is None:
            level = self.market.index_level(spec.underlying, self.market.clock.open_at)
            margin = self._margin_cache[spec.underlying] = _dec(level) * self.short_margin
        return margin

    def _position_margin(self, position: _Position) -> Decimal:
        if position.net == 0:
            return _ZERO
        if position.spec.instrument == Instrument.FUTIDX or position.net < 0:
            return abs(position.net) * self._margin_per_unit(position.spec)
        return position.net * position.avg_cost

    def _blocks(self) -> dict[str, Decimal]:
        """Amount each open order blocks: only the part that opens or adds to a position.

        Open orders consume the position in time priority: with a 100 long and two open sells
        of 100, the first closes (blocks nothing) and the second opens a short (blocks margin).
        """
        room: dict[tuple[int, str], list[int]] = {}  # key -> [long to sell, short to buy]
        blocks: dict[str, Decimal] = {}
        for order in self._orders.values():
            # TRANSIT: the placement being checked (the only order ever left in that state).
            if order.status not in _OPEN and order.status != OrderStatus.TRANSIT:
                continue
            key = (order.spec.security_id, order.product_type)
            if key not in room:
                position = self._positions.get(key)
                net = position.net if position else 0
                room[key] = [max(net, 0), max(-net, 0)]
            closable = room[key][1 if order.is_buy else 0]
            closing = min(order.remaining, closable)
            room[key][1 if order.is_buy else 0] -= closing
            opening = order.remaining - closing
            if order.spec.instrument == Instrument.FUTIDX or not order.is_buy:
                blocks[order.order_id] = opening * self._margin_per_unit(order.spec)
            else:
                blocks[order.order_id] = opening * order.block_price
        return blocks

    def _order_block(self, order: _Order) -> Decimal:
        """What ``order`` blocks given everything ahead of it (TRANSIT counts: a new order)."""
        return self._blocks().get(order.order_id, _ZERO)

    def _utilized(self) -> Decimal:
        blocks = self._blocks()
        pending_new = [o.order_id for o in self._orders.values() if o.status == OrderStatus.TRANSIT]
        for order_id in pending_new:  # a placement being checked is not utilised yet
            blocks.pop(order_id, None)
        return sum(blocks.values(), _ZERO) + sum(
            (self._position_margin(p) for p in self._positions.values()), _ZERO
        )

    def _realized(self) -> Decimal:
        return sum((p.realized for p in self._positions.values()), _ZERO)

    def _available(self) -> Decimal:
        return self.sod_limit - self._utilized() + self._realized()

    def positions(self, now: datetime) -> list[dict[str, Any]]:
        """``GET /positions``: every position traded today (CLOSED when flat), LTP-marked at
        ``now``."""
        with self._lock:
            rows = []
            for position in self._positions.values():
                spec = position.spec
                ltp = _dec(self.market.last_trade(spec.exchange_segment, spec.security_id, now)[0])
                net = position.net
                kind = (
                    PositionType.LONG
                    if net > 0
                    else PositionType.SHORT
                    if net < 0
                    else PositionType.CLOSED
                )
                buy_avg = position.buy_value / position.buy_qty if position.buy_qty else _ZERO
                sell_avg = position.sell_value / position.sell_qty if position.sell_qty else _ZERO
                rows.append(
                    {
                        "dhanClientId": self.client_id,
                        "tradingSymbol": spec.trading_symbol,
                        "securityId": str(spec.security_id),
                        "positionType": kind.value,
                        "exchangeSegment": spec.exchange_segment,
                        "productType": position.product_type.value,
                        "buyAvg": _wire_money(buy_avg),
                        "costPrice": _wire_money(position.avg_cost),
                        "buyQty": position.buy_qty,
                        "sellAvg": _wire_money(sell_avg),
                        "sellQty": position.sell_qty,
                        "netQty": net,
                        "realizedProfit": _wire_money(position.realized),
                        "unrealizedProfit": _wire_money(net * (ltp - position.avg_cost)),
                        "rbiReferenceRate": 1.0,
                        "multiplier": 1,
                        "carryForwardBuyQty": 0,
                        "carryForwardSellQty": 0,
                        "carryForwardBuyValue": 0.0,
                        "carryForwardSellValue": 0.0,
                        "dayBuyQty": position.buy_qty,
                        "daySellQty": position.sell_qty,
                        "dayBuyValue": _wire_money(position.buy_value),
                        "daySellValue": _wire_money(position.sell_value),
                        **self._derivative_fields(spec),
                        "crossCurrency": False,
                    }
                )
            return rows

    def holdings(self) -> list[dict[str, Any]]:
        """``GET /holdings``: always ``[]`` (an intraday F&O simulator holds no stock)."""
        return []

    def fund_limit(self) -> dict[str, Any]:
        """``GET /fundlimit`` with Dhan's real misspelled keys (module doc for the maths)."""
        with self._lock:
            utilized = self._utilized()
            realized = self._realized()
            available = self.sod_limit - utilized + realized
            withdrawable = max(self.sod_limit - utilized + min(realized, _ZERO), _ZERO)
            return {
                "dhanClientId": self.client_id,
                "availabelBalance": _wire_money(available),
                "sodLimit": _wire_money(self.sod_limit),
                "collateralAmount": 0.0,
                "receiveableAmount": 0.0,
                "utilizedAmount": _wire_money(utilized),
                "blockedPayoutAmount": 0.0,
                "withdrawableBalance": _wire_money(withdrawable),
            }

    # -- kill switch -----------------------------------------------------------------------------

    def kill_switch(self, activate: bool) -> dict[str, Any]:
        """``POST /killswitch?killSwitchStatus=ACTIVATE|DEACTIVATE``."""
        with self._lock:
            if activate:
                busy = any(o.status in _OPEN for o in self._orders.values()) or any(
                    p.net for p in self._positions.values()
                )
                if busy:
                    raise _order_error(
                        "Kill switch cannot be activated with open positions or pending orders"
                    )
            self._kill_switch = activate
            word = "activated" if activate else "deactivated"
            return {
                "dhanClientId": self.client_id,
                "killSwitchStatus": f"Kill Switch has been successfully {word}",
            }

    def kill_switch_status(self) -> dict[str, Any]:
        """``GET /killswitch``: ``{"dhanClientId", "killSwitchStatus": "ACTIVATE"|...}``."""
        with self._lock:
            state = KillSwitchStatus.ACTIVATE if self._kill_switch else KillSwitchStatus.DEACTIVATE
            return {"dhanClientId": self.client_id, "killSwitchStatus": state.value}
