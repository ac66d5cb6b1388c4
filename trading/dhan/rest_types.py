"""Pure wire types for the Dhan v2 REST endpoints the product uses (PROTOCOL.md 1.1, 1.4-1.12).

No HTTP, no Django, no Redis: dicts in, typed values out, and back. The REST client (later)
picks an :class:`Endpoint` (method, path, rate-limit category), sends ``request.to_wire()`` and
hands the parsed body to ``ResponseType.from_wire(body)``.

Naming: **attribute names are the wire keys**, misspellings included (``availabelBalance``,
``receiveableAmount``), camelCase on trading endpoints and snake_case on data endpoints, exactly
as Dhan sends them. One name from the docs to the code, no mapping table that can drift, and a
grep for a key from a recorded body finds the attribute. The price is un-Pythonic attribute
names (ruff's pep8-naming rules are not selected in this project, so no waivers are needed).

Responses (``from_wire``) accept what Dhan really sends (PROTOCOL.md 1.1):

* a bare object, a bare array, or a ``{"data": ..., "status": "success"}`` envelope;
* already-parsed JSON or the raw ``bytes``/``str`` body (parsed with ``parse_float=Decimal``, so
  a price's decimal text is kept digit for digit);
* extra keys (ignored: Dhan adds fields over time) and numbers sent as strings or strings sent
  as numbers (``"20"`` or ``20``, ``securityId`` as ``1333`` or ``"1333"``).

Conversions: prices and money -> ``Decimal`` (a JSON float goes through its shortest ``repr``,
so ``0.36`` becomes ``Decimal("0.36")``, never the binary expansion), quantities -> ``int``
(``1.0542765E7`` -> ``10542765``; a fractional quantity is an error), greeks and implied
volatility -> ``float`` (not money), documented timestamps -> aware ``Asia/Kolkata`` datetimes,
Dhan's "unset" sentinels (``"0001-01-01 00:00:00"``, ``"0001-01-01"``, ``""``, ``"NA"`` in a
date field) -> ``None``. A key that is missing or ``null`` reads as ``None`` unless the field is
required (order id, order status, a quote's ``last_price``...).

A body that does not fit raises :class:`BadResponse` (a ``ValueError``) naming the endpoint and
the key path: ``positions[3].netQty: expected a number, got 'abc'``.

Requests (``to_wire``) validate on construction (``ValueError`` with the field name) and emit the
exact documented keys. Enumerated fields take a member of ``trading.dhan.vocab`` or its wire
string and hold the member afterwards (``"BUY"`` becomes ``TransactionType.BUY``). Money goes
out as a JSON number (the SDK's choice): the float of a Decimal with at most 15 significant
digits serialises back to the same decimal text, which is checked. Optional fields that are
``None`` are omitted, never sent as ``""``: Dhan rejects empty strings with DH-905
(PROTOCOL.md 1.5).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import Enum, StrEnum
from typing import Any, ClassVar, Generic, Self, TypeVar
from urllib.parse import quote

from trading.dhan.vocab import (
    NOT_SET,
    STOP_ORDER_TYPES,
    AmoTime,
    ExchangeSegment,
    Instrument,
    KillSwitchStatus,
    LegName,
    OrderType,
    ProductType,
    TransactionType,
    Validity,
    wire_values,
)
from trading.rules.market import IST

__all__ = [
    "CORRELATION_ID_MAX_LEN",
    "BadResponse",
    "CancelOrderRequest",
    "Candle",
    "ChartResponse",
    "DailyChartRequest",
    "Depth",
    "DepthLevel",
    "Endpoint",
    "ExpiryListRequest",
    "ExpiryListResponse",
    "FullQuote",
    "FundLimit",
    "Greeks",
    "Holding",
    "HoldingsResponse",
    "IntradayChartRequest",
    "KillSwitchRequest",
    "KillSwitchResponse",
    "LtpQuote",
    "MarketQuoteRequest",
    "ModifyOrderRequest",
    "NoParams",
    "Ohlc",
    "OhlcQuote",
    "OptionChainRequest",
    "OptionChainResponse",
    "OptionLeg",
    "OptionStrike",
    "Order",
    "OrderBookResponse",
    "OrderByCorrelationIdRequest",
    "OrderByIdRequest",
    "OrderLookupResponse",
    "OrderStatusResponse",
    "PlaceOrderRequest",
    "Position",
    "PositionsResponse",
    "Profile",
    "QuoteResponse",
    "RateCategory",
    "RenewTokenResponse",
    "SendsParams",
    "Trade",
    "TradeBookResponse",
]

# ---------------------------------------------------------------------------------------------
# Endpoints


class RateCategory(StrEnum):
    """Dhan's rate-limit category of an endpoint; the values are the keys of
    config/ratelimits.yml, passed to ``RateLimiter.acquire``."""

    ORDERS = "orders"
    DATA = "data"
    QUOTES = "quotes"
    OPTION_CHAIN = "option_chain"
    NON_TRADING = "non_trading"


class SendsParams(StrEnum):
    """Where ``request.to_wire()`` goes: a JSON body, the query string, or nowhere."""

    JSON = "json"
    QUERY = "query"
    NONE = "none"


class Endpoint(Enum):
    """Every REST endpoint the product uses: ``(method, path, rate category, params)``.

    Paths are relative to the REST base ``https://api.dhan.co/v2`` (``/RenewToken`` too); path
    parameters are ``{order_id}`` / ``{correlation_id}``, filled by :meth:`url_path`. The member
    name, lower-cased, is the root of every :class:`BadResponse` key path.
    """

    PLACE_ORDER = ("POST", "/orders", RateCategory.ORDERS, SendsParams.JSON)
    MODIFY_ORDER = ("PUT", "/orders/{order_id}", RateCategory.ORDERS, SendsParams.JSON)
    CANCEL_ORDER = ("DELETE", "/orders/{order_id}", RateCategory.ORDERS, SendsParams.NONE)
    # Status reads count as non-trading, not against the order caps (PROTOCOL.md 1.3).
    ORDER_BOOK = ("GET", "/orders", RateCategory.NON_TRADING, SendsParams.NONE)
    ORDER_BY_ID = ("GET", "/orders/{order_id}", RateCategory.NON_TRADING, SendsParams.NONE)
    ORDER_BY_CORRELATION_ID = (
        "GET",
        "/orders/external/{correlation_id}",
        RateCategory.NON_TRADING,
        SendsParams.NONE,
    )
    TRADE_BOOK = ("GET", "/trades", RateCategory.NON_TRADING, SendsParams.NONE)
    POSITIONS = ("GET", "/positions", RateCategory.NON_TRADING, SendsParams.NONE)
    HOLDINGS = ("GET", "/holdings", RateCategory.NON_TRADING, SendsParams.NONE)
    FUND_LIMIT = ("GET", "/fundlimit", RateCategory.NON_TRADING, SendsParams.NONE)
    PROFILE = ("GET", "/profile", RateCategory.NON_TRADING, SendsParams.NONE)
    QUOTE_LTP = ("POST", "/marketfeed/ltp", RateCategory.QUOTES, SendsParams.JSON)
    QUOTE_OHLC = ("POST", "/marketfeed/ohlc", RateCategory.QUOTES, SendsParams.JSON)
    QUOTE_FULL = ("POST", "/marketfeed/quote", RateCategory.QUOTES, SendsParams.JSON)
    CHART_INTRADAY = ("POST", "/charts/intraday", RateCategory.DATA, SendsParams.JSON)
    CHART_DAILY = ("POST", "/charts/historical", RateCategory.DATA, SendsParams.JSON)
    EXPIRY_LIST = ("POST", "/optionchain/expirylist", RateCategory.OPTION_CHAIN, SendsParams.JSON)
    OPTION_CHAIN = ("POST", "/optionchain", RateCategory.OPTION_CHAIN, SendsParams.JSON)
    # Kill switch: a query parameter and no body (PROTOCOL.md 1.7); ratelimits.yml files it
    # under the order APIs.
    KILL_SWITCH = ("POST", "/killswitch", RateCategory.ORDERS, SendsParams.QUERY)
    KILL_SWITCH_STATUS = ("GET", "/killswitch", RateCategory.NON_TRADING, SendsParams.NONE)
    # The SDK sends GET with the client id in a `dhanClientId` header (the Ruby gem uses POST,
    # unconfirmed): a header, so no params here.
    RENEW_TOKEN = ("GET", "/RenewToken", RateCategory.NON_TRADING, SendsParams.NONE)

    def __init__(
        self, method: str, path: str, rate_category: RateCategory, sends: SendsParams
    ) -> None:
        self.method = method
        self.path = path
        self.rate_category = rate_category
        self.sends = sends

    @property
    def key(self) -> str:
        """Lower-case name, the root of key paths in :class:`BadResponse` messages."""
        return self.name.lower()

    def url_path(self, **params: str) -> str:
        """The path with its ``{placeholders}`` filled, each value URL-quoted (no ``/``)."""
        try:
            return self.path.format(**{k: quote(str(v), safe="") for k, v in params.items()})
        except KeyError as exc:
            raise ValueError(f"{self.name}: missing path parameter {exc.args[0]!r}") from None


# ---------------------------------------------------------------------------------------------
# Errors and conversions


class BadResponse(ValueError):
    """A 200 body that does not have the documented shape.

    ``endpoint`` is the :attr:`Endpoint.key` (the root of the path), ``path`` the key path to
    the offending value (``positions[3].netQty``), ``problem`` what was wrong with it.

    Caller: do not act on the response (an order state we cannot read is unknown, not absent);
    log it with the path and treat it like a broker fault (retry a read later, alert if it
    persists: Dhan changed a field).
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.endpoint = re.split(r"[.\[]", path, maxsplit=1)[0]
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def _bad(path: str, expected: str, value: object) -> BadResponse:
    return BadResponse(path, f"expected {expected}, got {_short(value)}")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _dec(value: object, path: str) -> Decimal:
    """A price or amount. Floats go through ``repr`` (shortest round-trip text)."""
    if isinstance(value, bool):
        raise _bad(path, "a number", value)
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        result = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise _bad(path, "a number", value) from None
    else:
        raise _bad(path, "a number", value)
    if not result.is_finite():
        raise _bad(path, "a finite number", value)
    return result


def _int(value: object, path: str) -> int:
    """A quantity or count. Dhan's charts send volumes as ``1.0542765E7``: whole floats pass."""
    number = _dec(value, path)
    if number != number.to_integral_value():
        raise _bad(path, "a whole number", value)
    return int(number)


def _float(value: object, path: str) -> float:
    """Greeks and implied volatility: model outputs, not money, so plain floats."""
    return float(_dec(value, path))


def _str(value: object, path: str) -> str:
    """Identifiers: ``securityId`` comes as ``"1333"`` or ``1333`` depending on the endpoint."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _bad(path, "a string", value)


def _bool(value: object, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _bad(path, "true or false", value)


# Dhan's "no value" for dates and times: year 1 (Java's zero date), empty, "NA" (trade
# history rows), and the quote API's NSE-epoch "01/01/1980 00:00:00".
_UNSET_DATES = ("", NOT_SET, "0001-01-01", "0001-01-01 00:00:00", "01/01/1980 00:00:00")


def _ist_datetime(*formats: str) -> Callable[[object, str], datetime | None]:
    """A converter for IST wall-clock text in one of ``formats`` -> aware datetime or None."""

    def convert(value: object, path: str) -> datetime | None:
        if not isinstance(value, str):
            raise _bad(path, f"a time like {formats[0]!r}", value)
        text = " ".join(value.split())  # recordings fold long lines inside the value
        if text in _UNSET_DATES:
            return None
        for fmt in formats:
            try:
                return datetime.strptime(text, fmt).replace(tzinfo=IST)
            except ValueError:
                continue
        raise _bad(path, f"a time like {formats[0]!r}", value)

    return convert


_order_time = _ist_datetime("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f")
_quote_time = _ist_datetime("%d/%m/%Y %H:%M:%S")
_token_validity = _ist_datetime("%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S")
_renew_expiry = _ist_datetime("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S")


def _date(value: object, path: str) -> date | None:
    """``YYYY-MM-DD`` (expiries, ``drvExpiryDate``); Dhan's year-1 sentinel -> None."""
    if not isinstance(value, str):
        raise _bad(path, "a date like 'YYYY-MM-DD'", value)
    text = value.strip()
    if text in _UNSET_DATES:
        return None
    try:
        # Some rows carry a time part ("2025-01-30 14:30:00"): the date is what matters.
        return date.fromisoformat(text[:10])
    except ValueError:
        raise _bad(path, "a date like 'YYYY-MM-DD'", value) from None


def _epoch_ist(value: object, path: str) -> datetime:
    """Chart timestamps: true epoch seconds (daily = midnight IST), often as ``1.641753E9``."""
    seconds = _int(value, path)
    try:
        return datetime.fromtimestamp(seconds, IST)
    except (OverflowError, OSError, ValueError):
        raise _bad(path, "epoch seconds", value) from None


def _nested(cls: type[Any]) -> Callable[[object, str], Any]:
    return lambda value, path: _record(cls, value, path)


def _depth_side(value: object, path: str) -> tuple[DepthLevel, ...]:
    if not isinstance(value, list):
        raise _bad(path, "an array", value)
    return tuple(_record(DepthLevel, row, f"{path}[{i}]") for i, row in enumerate(value))


def _meta(
    conv: Callable[[object, str], Any],
    *,
    required: bool = False,
    aliases: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Field metadata of a response attribute: its converter, whether the key must be present,
    other accepted spellings. Optional attributes default to None; required ones have no default
    (the dataclasses are keyword-only, so their order is free)."""
    return {"conv": conv, "required": required, "aliases": aliases}


def _record(cls: type[Any], obj: object, path: str) -> Any:
    """Build the dataclass ``cls`` from a wire object, looking each field up by its name."""
    if not isinstance(obj, Mapping):
        raise _bad(path, "an object", obj)
    values: dict[str, Any] = {}
    for f in fields(cls):
        conv = f.metadata.get("conv")
        if conv is None:
            continue
        raw = None
        for key in (f.name, *f.metadata["aliases"]):
            if obj.get(key) is not None:
                raw = obj[key]
                break
        if raw is None:
            if f.metadata["required"]:
                raise BadResponse(f"{path}.{f.name}", "missing")
            continue
        values[f.name] = conv(raw, f"{path}.{f.name}")
    return cls(**values)


def _load(obj: object, root: str) -> object:
    """Accept a raw body too; ``parse_float=Decimal`` keeps a price's digits exactly."""
    if isinstance(obj, bytes | bytearray):
        obj = bytes(obj).decode("utf-8", errors="replace")
    if isinstance(obj, str):
        try:
            return json.loads(obj, parse_float=Decimal)
        except ValueError as exc:
            raise BadResponse(root, f"not JSON ({exc})") from None
    return obj


def _unwrap(obj: object, root: str) -> tuple[object, str]:
    """Strip the data-API envelope ``{"data": ..., "status": "success"}`` if there is one.

    Trading endpoints answer bare objects/arrays; a client or proxy that adds the envelope is
    tolerated everywhere. Error envelopes (``"status": "failed"``) belong to errors.py and are
    never a 200 body we parse, so they are a BadResponse here.
    """
    obj = _load(obj, root)
    if isinstance(obj, Mapping) and "data" in obj and "status" in obj:
        status = obj["status"]
        if status != "success":
            raise _bad(f"{root}.status", "'success'", status)
        return obj["data"], f"{root}.data"
    return obj, root


def _rows(cls: type[Any], obj: object, endpoint: Endpoint) -> tuple[Any, ...]:
    body, path = _unwrap(obj, endpoint.key)
    if not isinstance(body, list):
        raise _bad(path, "an array", body)
    return tuple(_record(cls, row, f"{path}[{i}]") for i, row in enumerate(body))


_T = TypeVar("_T")


class _Listing(Generic[_T]):
    """The bare-array responses (orders, trades, positions, holdings): each row parsed as
    ``_row``; the one dataclass field holds them, and the response iterates and counts them."""

    __slots__ = ()
    _row: ClassVar[type]
    _endpoint: ClassVar[Endpoint]

    @classmethod
    def from_wire(cls, obj: object) -> Self:
        return cls(_rows(cls._row, obj, cls._endpoint))

    def _items(self) -> tuple[_T, ...]:
        return getattr(self, fields(self)[0].name)

    def __iter__(self) -> Iterator[_T]:
        return iter(self._items())

    def __len__(self) -> int:
        return len(self._items())


# ---------------------------------------------------------------------------------------------
# Request validation helpers

CORRELATION_ID_MAX_LEN = 25
# Docs: up to 30 chars of [a-zA-Z0-9 _-]; a third party measured the real cap at 25, so 25.
_CORRELATION_ID_RE = re.compile(r"[A-Za-z0-9 _-]+")
_INTERVALS = frozenset({1, 5, 15, 25, 60})
_QUOTE_MAX_INSTRUMENTS = 1000
# The float of a Decimal re-serialises to the same text only up to 15 significant digits.
_MAX_MONEY_DIGITS = 15


_E = TypeVar("_E", bound=StrEnum)


def _choice(name: str, value: object, enum: type[_E]) -> _E:
    """``value`` (a member or its wire string) as the member of ``enum``, else a ValueError
    naming the field and the accepted values."""
    try:
        return enum(value)
    except ValueError:
        raise ValueError(f"{name}: expected one of {wire_values(enum)}, got {value!r}") from None


def _set_choice(request: object, name: str, enum: type[StrEnum]) -> None:
    """Validate the field ``name`` of a frozen request and store it as the enum member, so the
    request and its ``to_wire()`` carry one spelling whichever the caller passed."""
    object.__setattr__(request, name, _choice(name, getattr(request, name), enum))


def _check_segment(name: str, value: str) -> None:
    _choice(name, value, ExchangeSegment)


def _check_id(name: str, value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name}: expected a non-empty string, got {value!r}")


def _check_quantity(name: str, value: int, *, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")


def _money(name: str, value: Decimal) -> float:
    """A Decimal price as the JSON number Dhan expects, refusing anything a float would alter."""
    if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
        raise ValueError(f"{name}: expected a finite Decimal >= 0, got {value!r}")
    if len(value.normalize().as_tuple().digits) > _MAX_MONEY_DIGITS:
        raise ValueError(f"{name}: {value} has more digits than a JSON number carries exactly")
    as_float = float(value)
    if Decimal(repr(as_float)) != value:  # defensive: the digit cap above should ensure this
        raise ValueError(f"{name}: {value} does not survive conversion to a JSON number")
    return as_float


def _check_correlation_id(value: str | None) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value:
        raise ValueError(f"correlationId: expected a non-empty string or None, got {value!r}")
    if len(value) > CORRELATION_ID_MAX_LEN:
        raise ValueError(
            f"correlationId: at most {CORRELATION_ID_MAX_LEN} characters (Dhan's measured cap), "
            f"got {len(value)}: {value!r}"
        )
    if not _CORRELATION_ID_RE.fullmatch(value):
        raise ValueError(
            f"correlationId: only letters, digits, space, '_' and '-' are allowed, got {value!r}"
        )
    if value == NOT_SET:
        # Dhan reports "NA" for orders placed without one: ours must never look like that.
        raise ValueError("correlationId: 'NA' is what Dhan shows for 'none given'; pick another")


def _ist_text(name: str, value: datetime, fmt: str) -> str:
    """An aware datetime as IST wall-clock text; naive datetimes are refused (ambiguous)."""
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name}: expected an aware datetime, got {value!r}")
    return value.astimezone(IST).strftime(fmt)


def _date_only(name: str, value: date) -> date:
    # A datetime is a date too; refuse it rather than silently dropping the time part.
    if not isinstance(value, date) or isinstance(value, datetime):
        raise ValueError(f"{name}: expected a date, got {value!r}")
    return value


# ---------------------------------------------------------------------------------------------
# Requests


@dataclass(frozen=True, slots=True)
class NoParams:
    """Endpoints with nothing to send (order book, trade book, positions, holdings, fund limit,
    profile, kill-switch status, token renewal)."""

    def to_wire(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaceOrderRequest:
    """``POST /orders`` (PROTOCOL.md 1.5). Money is Decimal; ``None`` fields are omitted.

    ``triggerPrice`` is needed for STOP_LOSS / STOP_LOSS_MARKET; ``amoTime`` only with
    ``afterMarketOrder``; ``boProfitValue`` / ``boStopLossValue`` only for BO.
    """

    dhanClientId: str
    transactionType: TransactionType
    exchangeSegment: ExchangeSegment
    productType: ProductType
    orderType: OrderType
    validity: Validity
    securityId: str
    quantity: int
    price: Decimal
    triggerPrice: Decimal | None = None
    disclosedQuantity: int = 0
    correlationId: str | None = None
    afterMarketOrder: bool = False
    amoTime: AmoTime | None = None
    boProfitValue: Decimal | None = None
    boStopLossValue: Decimal | None = None

    def __post_init__(self) -> None:
        _check_id("dhanClientId", self.dhanClientId)
        _check_id("securityId", self.securityId)
        _set_choice(self, "transactionType", TransactionType)
        _set_choice(self, "exchangeSegment", ExchangeSegment)
        _set_choice(self, "productType", ProductType)
        _set_choice(self, "orderType", OrderType)
        _set_choice(self, "validity", Validity)
        _check_quantity("quantity", self.quantity)
        _check_quantity("disclosedQuantity", self.disclosedQuantity, minimum=0)
        _check_correlation_id(self.correlationId)
        if self.orderType in STOP_ORDER_TYPES and self.triggerPrice is None:
            raise ValueError(f"triggerPrice: required for orderType {self.orderType}")
        if self.amoTime is not None:
            if not self.afterMarketOrder:
                raise ValueError("amoTime: only allowed with afterMarketOrder=True")
            _set_choice(self, "amoTime", AmoTime)
        self.to_wire()  # validates every money field now, not at send time

    def to_wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "dhanClientId": self.dhanClientId,
            "transactionType": self.transactionType.value,
            "exchangeSegment": self.exchangeSegment.value,
            "productType": self.productType.value,
            "orderType": self.orderType.value,
            "validity": self.validity.value,
            "securityId": self.securityId,
            "quantity": self.quantity,
            "disclosedQuantity": self.disclosedQuantity,
            "price": _money("price", self.price),
            "afterMarketOrder": self.afterMarketOrder,
        }
        if self.correlationId is not None:
            body["correlationId"] = self.correlationId
        if self.triggerPrice is not None:
            body["triggerPrice"] = _money("triggerPrice", self.triggerPrice)
        if self.afterMarketOrder and self.amoTime is not None:
            body["amoTime"] = self.amoTime.value
        if self.boProfitValue is not None:
            body["boProfitValue"] = _money("boProfitValue", self.boProfitValue)
        if self.boStopLossValue is not None:
            body["boStopLossValue"] = _money("boStopLossValue", self.boStopLossValue)
        return body


@dataclass(frozen=True, slots=True, kw_only=True)
class ModifyOrderRequest:
    """``PUT /orders/{order_id}``; the body repeats ``orderId`` (SDK). ``legName`` is for
    CO/BO legs and omitted when None."""

    dhanClientId: str
    orderId: str
    orderType: OrderType
    quantity: int
    price: Decimal
    validity: Validity
    triggerPrice: Decimal | None = None
    disclosedQuantity: int = 0
    legName: LegName | None = None

    def __post_init__(self) -> None:
        _check_id("dhanClientId", self.dhanClientId)
        _check_id("orderId", self.orderId)
        _set_choice(self, "orderType", OrderType)
        _set_choice(self, "validity", Validity)
        _check_quantity("quantity", self.quantity)
        _check_quantity("disclosedQuantity", self.disclosedQuantity, minimum=0)
        if self.legName is not None:
            # Only the three leg names: "NA" is the order book's "no leg" (PROTOCOL.md 1.4),
            # an answer, not a value a request may send; a plain order omits the field.
            _set_choice(self, "legName", LegName)
        if self.orderType in STOP_ORDER_TYPES and self.triggerPrice is None:
            raise ValueError(f"triggerPrice: required for orderType {self.orderType}")
        self.to_wire()

    def path_params(self) -> dict[str, str]:
        return {"order_id": self.orderId}

    def to_wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "dhanClientId": self.dhanClientId,
            "orderId": self.orderId,
            "orderType": self.orderType.value,
            "quantity": self.quantity,
            "price": _money("price", self.price),
            "disclosedQuantity": self.disclosedQuantity,
            "validity": self.validity.value,
        }
        if self.legName is not None:
            body["legName"] = self.legName.value
        if self.triggerPrice is not None:
            body["triggerPrice"] = _money("triggerPrice", self.triggerPrice)
        return body


@dataclass(frozen=True, slots=True)
class CancelOrderRequest:
    """``DELETE /orders/{order_id}``: no body."""

    orderId: str

    def __post_init__(self) -> None:
        _check_id("orderId", self.orderId)

    def path_params(self) -> dict[str, str]:
        return {"order_id": self.orderId}

    def to_wire(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True, slots=True)
class OrderByIdRequest:
    """``GET /orders/{order_id}``: no body."""

    orderId: str

    def __post_init__(self) -> None:
        _check_id("orderId", self.orderId)

    def path_params(self) -> dict[str, str]:
        return {"order_id": self.orderId}

    def to_wire(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True, slots=True)
class OrderByCorrelationIdRequest:
    """``GET /orders/external/{correlation_id}``: the lookup after an UnknownOutcome."""

    correlationId: str

    def __post_init__(self) -> None:
        if self.correlationId is None:
            raise ValueError("correlationId: required for a lookup")
        _check_correlation_id(self.correlationId)

    def path_params(self) -> dict[str, str]:
        return {"correlation_id": self.correlationId}

    def to_wire(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True, slots=True)
class MarketQuoteRequest:
    """``POST /marketfeed/ltp|ohlc|quote``: ``{"NSE_FNO": [49081, 49082], ...}``.

    Security ids are **integers** on this endpoint (strings elsewhere); at most 1000 in total.
    """

    instruments: Mapping[str, Sequence[int]]

    def __post_init__(self) -> None:
        total = 0
        for segment, ids in self.instruments.items():
            _check_segment("instruments", segment)
            for security_id in ids:
                if isinstance(security_id, bool) or not isinstance(security_id, int):
                    raise ValueError(
                        f"instruments[{segment!r}]: security ids are integers, got {security_id!r}"
                    )
            total += len(ids)
        if not total:
            raise ValueError("instruments: at least one security id is required")
        if total > _QUOTE_MAX_INSTRUMENTS:
            raise ValueError(
                f"instruments: at most {_QUOTE_MAX_INSTRUMENTS} per request, got {total}"
            )

    def to_wire(self) -> dict[str, Any]:
        return {segment: list(ids) for segment, ids in self.instruments.items() if ids}


@dataclass(frozen=True, slots=True, kw_only=True)
class DailyChartRequest:
    """``POST /charts/historical``. ``toDate`` is **exclusive** on Dhan's side."""

    securityId: str
    exchangeSegment: ExchangeSegment
    instrument: Instrument
    fromDate: date
    toDate: date
    expiryCode: int | None = None
    oi: bool = False

    def __post_init__(self) -> None:
        _check_id("securityId", self.securityId)
        _set_choice(self, "exchangeSegment", ExchangeSegment)
        _set_choice(self, "instrument", Instrument)
        _date_only("fromDate", self.fromDate)
        _date_only("toDate", self.toDate)
        if self.toDate <= self.fromDate:
            raise ValueError(f"toDate: must be after fromDate (exclusive), got {self.toDate}")
        if self.expiryCode is not None and self.expiryCode not in (0, 1, 2, 3):
            raise ValueError(f"expiryCode: expected 0..3, got {self.expiryCode!r}")

    def to_wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "securityId": self.securityId,
            "exchangeSegment": self.exchangeSegment.value,
            "instrument": self.instrument.value,
        }
        if self.expiryCode is not None:
            body["expiryCode"] = self.expiryCode
        body["oi"] = self.oi
        body["fromDate"] = self.fromDate.isoformat()
        body["toDate"] = self.toDate.isoformat()
        return body


@dataclass(frozen=True, slots=True, kw_only=True)
class IntradayChartRequest:
    """``POST /charts/intraday``: ``interval`` in minutes, sent as a string like the docs;
    times are aware datetimes, sent as IST ``YYYY-MM-DD HH:MM:SS``; at most 90 days."""

    securityId: str
    exchangeSegment: ExchangeSegment
    instrument: Instrument
    interval: int
    fromDate: datetime
    toDate: datetime
    oi: bool = False

    def __post_init__(self) -> None:
        _check_id("securityId", self.securityId)
        _set_choice(self, "exchangeSegment", ExchangeSegment)
        _set_choice(self, "instrument", Instrument)
        if self.interval not in _INTERVALS or isinstance(self.interval, bool):
            raise ValueError(
                f"interval: expected one of {sorted(_INTERVALS)}, got {self.interval!r}"
            )
        self.to_wire()  # rejects naive datetimes
        if self.toDate <= self.fromDate:
            raise ValueError(f"toDate: must be after fromDate, got {self.toDate}")
        if (self.toDate - self.fromDate).days > 90:
            raise ValueError("toDate: Dhan serves at most 90 days per intraday request (DH-905)")

    def to_wire(self) -> dict[str, Any]:
        fmt = "%Y-%m-%d %H:%M:%S"
        return {
            "securityId": self.securityId,
            "exchangeSegment": self.exchangeSegment.value,
            "instrument": self.instrument.value,
            "interval": str(self.interval),
            "oi": self.oi,
            "fromDate": _ist_text("fromDate", self.fromDate, fmt),
            "toDate": _ist_text("toDate", self.toDate, fmt),
        }


@dataclass(frozen=True, slots=True)
class ExpiryListRequest:
    """``POST /optionchain/expirylist``: ``{"UnderlyingScrip": 13, "UnderlyingSeg": "IDX_I"}``
    (PascalCase keys, integer scrip id)."""

    UnderlyingScrip: int
    UnderlyingSeg: str

    def __post_init__(self) -> None:
        _check_quantity("UnderlyingScrip", self.UnderlyingScrip, minimum=0)
        _check_segment("UnderlyingSeg", self.UnderlyingSeg)

    def to_wire(self) -> dict[str, Any]:
        return {"UnderlyingScrip": self.UnderlyingScrip, "UnderlyingSeg": self.UnderlyingSeg}


@dataclass(frozen=True, slots=True)
class OptionChainRequest:
    """``POST /optionchain``: underlying plus ``Expiry`` as ``YYYY-MM-DD``."""

    UnderlyingScrip: int
    UnderlyingSeg: str
    Expiry: date

    def __post_init__(self) -> None:
        _check_quantity("UnderlyingScrip", self.UnderlyingScrip, minimum=0)
        _check_segment("UnderlyingSeg", self.UnderlyingSeg)
        _date_only("Expiry", self.Expiry)

    def to_wire(self) -> dict[str, Any]:
        return {
            "UnderlyingScrip": self.UnderlyingScrip,
            "UnderlyingSeg": self.UnderlyingSeg,
            "Expiry": self.Expiry.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class KillSwitchRequest:
    """``POST /killswitch?killSwitchStatus=ACTIVATE|DEACTIVATE``: ``to_wire()`` is the
    **query string** (``Endpoint.KILL_SWITCH.sends`` is QUERY), there is no body."""

    killSwitchStatus: KillSwitchStatus

    def __post_init__(self) -> None:
        _set_choice(self, "killSwitchStatus", KillSwitchStatus)

    def to_wire(self) -> dict[str, Any]:
        return {"killSwitchStatus": self.killSwitchStatus.value}


# ---------------------------------------------------------------------------------------------
# Responses: orders and trades


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderStatusResponse:
    """Place / modify / cancel: ``{"orderId": "752502167405", "orderStatus": "TRANSIT"}``."""

    orderId: str = field(metadata=_meta(_str, required=True))
    orderStatus: str = field(metadata=_meta(_str, required=True))

    @classmethod
    def from_wire(cls, obj: object, endpoint: Endpoint = Endpoint.PLACE_ORDER) -> Self:
        body, path = _unwrap(obj, endpoint.key)
        return _record(cls, body, path)


@dataclass(frozen=True, slots=True, kw_only=True)
class Order:
    """One order (order book row, by id, by correlation id). Times are IST; unset -> None.

    String sentinels are kept as sent: ``correlationId`` "NA" (none given), ``legName`` /
    ``drvOptionType`` "NA", ``exchangeOrderId`` / ``omsErrorCode`` / ``algoId`` "0".
    """

    orderId: str = field(metadata=_meta(_str, required=True))
    orderStatus: str = field(metadata=_meta(_str, required=True))
    dhanClientId: str | None = field(default=None, metadata=_meta(_str))
    exchangeOrderId: str | None = field(default=None, metadata=_meta(_str))
    correlationId: str | None = field(default=None, metadata=_meta(_str))
    transactionType: str | None = field(default=None, metadata=_meta(_str))
    exchangeSegment: str | None = field(default=None, metadata=_meta(_str))
    productType: str | None = field(default=None, metadata=_meta(_str))
    orderType: str | None = field(default=None, metadata=_meta(_str))
    validity: str | None = field(default=None, metadata=_meta(_str))
    tradingSymbol: str | None = field(default=None, metadata=_meta(_str))
    securityId: str | None = field(default=None, metadata=_meta(_str))
    quantity: int | None = field(default=None, metadata=_meta(_int))
    disclosedQuantity: int | None = field(default=None, metadata=_meta(_int))
    price: Decimal | None = field(default=None, metadata=_meta(_dec))
    triggerPrice: Decimal | None = field(default=None, metadata=_meta(_dec))
    afterMarketOrder: bool | None = field(default=None, metadata=_meta(_bool))
    boProfitValue: Decimal | None = field(default=None, metadata=_meta(_dec))
    boStopLossValue: Decimal | None = field(default=None, metadata=_meta(_dec))
    legName: str | None = field(default=None, metadata=_meta(_str))
    createTime: datetime | None = field(default=None, metadata=_meta(_order_time))
    updateTime: datetime | None = field(default=None, metadata=_meta(_order_time))
    exchangeTime: datetime | None = field(default=None, metadata=_meta(_order_time))
    drvExpiryDate: date | None = field(default=None, metadata=_meta(_date))
    drvOptionType: str | None = field(default=None, metadata=_meta(_str))
    drvStrikePrice: Decimal | None = field(default=None, metadata=_meta(_dec))
    omsErrorCode: str | None = field(default=None, metadata=_meta(_str))
    omsErrorDescription: str | None = field(default=None, metadata=_meta(_str))
    algoId: str | None = field(default=None, metadata=_meta(_str))
    remainingQuantity: int | None = field(default=None, metadata=_meta(_int))
    averageTradedPrice: Decimal | None = field(default=None, metadata=_meta(_dec))
    filledQty: int | None = field(default=None, metadata=_meta(_int))

    @classmethod
    def from_wire(cls, obj: object, endpoint: Endpoint = Endpoint.ORDER_BOOK) -> Self:
        """One order object (for arrays use :class:`OrderBookResponse` /
        :class:`OrderLookupResponse`)."""
        body, path = _unwrap(obj, endpoint.key)
        return _record(cls, body, path)


@dataclass(frozen=True, slots=True)
class OrderBookResponse(_Listing[Order]):
    """``GET /orders``: a bare array of :class:`Order` (``[]`` when none today)."""

    orders: tuple[Order, ...]

    _row: ClassVar[type] = Order
    _endpoint: ClassVar[Endpoint] = Endpoint.ORDER_BOOK


@dataclass(frozen=True, slots=True)
class OrderLookupResponse:
    """``GET /orders/{id}`` and ``GET /orders/external/{correlation id}``.

    Really an array of one order (the docs show a bare object: accepted too); ``[]`` means the
    id is unknown -> ``order`` is None. More than one element is a BadResponse: we would not
    know which order the caller meant.
    """

    order: Order | None

    @classmethod
    def from_wire(cls, obj: object, endpoint: Endpoint = Endpoint.ORDER_BY_ID) -> Self:
        body, path = _unwrap(obj, endpoint.key)
        if isinstance(body, list):
            if not body:
                return cls(None)
            if len(body) > 1:
                raise BadResponse(path, f"expected at most one order, got {len(body)}")
            return cls(_record(Order, body[0], f"{path}[0]"))
        return cls(_record(Order, body, path))


@dataclass(frozen=True, slots=True, kw_only=True)
class Trade:
    """One fill of the day's trade book."""

    orderId: str = field(metadata=_meta(_str, required=True))
    dhanClientId: str | None = field(default=None, metadata=_meta(_str))
    exchangeOrderId: str | None = field(default=None, metadata=_meta(_str))
    exchangeTradeId: str | None = field(default=None, metadata=_meta(_str))
    transactionType: str | None = field(default=None, metadata=_meta(_str))
    exchangeSegment: str | None = field(default=None, metadata=_meta(_str))
    productType: str | None = field(default=None, metadata=_meta(_str))
    orderType: str | None = field(default=None, metadata=_meta(_str))
    tradingSymbol: str | None = field(default=None, metadata=_meta(_str))
    customSymbol: str | None = field(default=None, metadata=_meta(_str))
    securityId: str | None = field(default=None, metadata=_meta(_str))
    tradedQuantity: int = field(metadata=_meta(_int, required=True))
    tradedPrice: Decimal = field(metadata=_meta(_dec, required=True))
    createTime: datetime | None = field(default=None, metadata=_meta(_order_time))
    updateTime: datetime | None = field(default=None, metadata=_meta(_order_time))
    exchangeTime: datetime | None = field(default=None, metadata=_meta(_order_time))
    drvExpiryDate: date | None = field(default=None, metadata=_meta(_date))
    drvOptionType: str | None = field(default=None, metadata=_meta(_str))
    drvStrikePrice: Decimal | None = field(default=None, metadata=_meta(_dec))


@dataclass(frozen=True, slots=True)
class TradeBookResponse(_Listing[Trade]):
    """``GET /trades``: a bare array of :class:`Trade`."""

    trades: tuple[Trade, ...]

    _row: ClassVar[type] = Trade
    _endpoint: ClassVar[Endpoint] = Endpoint.TRADE_BOOK


# ---------------------------------------------------------------------------------------------
# Responses: portfolio, funds, profile, kill switch, token


@dataclass(frozen=True, slots=True, kw_only=True)
class Position:
    """One row of ``GET /positions``. Quantities in units (not lots); money in rupees."""

    securityId: str = field(metadata=_meta(_str, required=True))
    netQty: int = field(metadata=_meta(_int, required=True))
    dhanClientId: str | None = field(default=None, metadata=_meta(_str))
    tradingSymbol: str | None = field(default=None, metadata=_meta(_str))
    positionType: str | None = field(default=None, metadata=_meta(_str))
    exchangeSegment: str | None = field(default=None, metadata=_meta(_str))
    productType: str | None = field(default=None, metadata=_meta(_str))
    buyAvg: Decimal | None = field(default=None, metadata=_meta(_dec))
    costPrice: Decimal | None = field(default=None, metadata=_meta(_dec))
    buyQty: int | None = field(default=None, metadata=_meta(_int))
    sellAvg: Decimal | None = field(default=None, metadata=_meta(_dec))
    sellQty: int | None = field(default=None, metadata=_meta(_int))
    realizedProfit: Decimal | None = field(default=None, metadata=_meta(_dec))
    unrealizedProfit: Decimal | None = field(default=None, metadata=_meta(_dec))
    rbiReferenceRate: Decimal | None = field(default=None, metadata=_meta(_dec))
    multiplier: int | None = field(default=None, metadata=_meta(_int))
    carryForwardBuyQty: int | None = field(default=None, metadata=_meta(_int))
    carryForwardSellQty: int | None = field(default=None, metadata=_meta(_int))
    carryForwardBuyValue: Decimal | None = field(default=None, metadata=_meta(_dec))
    carryForwardSellValue: Decimal | None = field(default=None, metadata=_meta(_dec))
    dayBuyQty: int | None = field(default=None, metadata=_meta(_int))
    daySellQty: int | None = field(default=None, metadata=_meta(_int))
    dayBuyValue: Decimal | None = field(default=None, metadata=_meta(_dec))
    daySellValue: Decimal | None = field(default=None, metadata=_meta(_dec))
    drvExpiryDate: date | None = field(default=None, metadata=_meta(_date))
    drvOptionType: str | None = field(default=None, metadata=_meta(_str))
    drvStrikePrice: Decimal | None = field(default=None, metadata=_meta(_dec))
    crossCurrency: bool | None = field(default=None, metadata=_meta(_bool))


@dataclass(frozen=True, slots=True)
class PositionsResponse(_Listing[Position]):
    """``GET /positions``: a bare array (``[]`` when flat)."""

    positions: tuple[Position, ...]

    _row: ClassVar[type] = Position
    _endpoint: ClassVar[Endpoint] = Endpoint.POSITIONS


@dataclass(frozen=True, slots=True, kw_only=True)
class Holding:
    """One row of ``GET /holdings`` (``exchange`` is "ALL" in real answers)."""

    securityId: str = field(metadata=_meta(_str, required=True))
    totalQty: int = field(metadata=_meta(_int, required=True))
    exchange: str | None = field(default=None, metadata=_meta(_str))
    tradingSymbol: str | None = field(default=None, metadata=_meta(_str))
    isin: str | None = field(default=None, metadata=_meta(_str))
    dpQty: int | None = field(default=None, metadata=_meta(_int))
    t1Qty: int | None = field(default=None, metadata=_meta(_int))
    availableQty: int | None = field(default=None, metadata=_meta(_int))
    collateralQty: int | None = field(default=None, metadata=_meta(_int))
    avgCostPrice: Decimal | None = field(default=None, metadata=_meta(_dec))
    lastTradedPrice: Decimal | None = field(default=None, metadata=_meta(_dec))


@dataclass(frozen=True, slots=True)
class HoldingsResponse(_Listing[Holding]):
    """``GET /holdings``: a bare array. An empty live portfolio answers 500 DH-1111 instead
    (errors.Rejected; the client maps it to an empty response)."""

    holdings: tuple[Holding, ...]

    _row: ClassVar[type] = Holding
    _endpoint: ClassVar[Endpoint] = Endpoint.HOLDINGS


@dataclass(frozen=True, slots=True, kw_only=True)
class FundLimit:
    """``GET /fundlimit``, rupees. The misspelled keys are the real ones (recorded 2025); the
    correct spellings are accepted too, in case Dhan ever fixes them, but the attributes keep
    the wire names."""

    availabelBalance: Decimal = field(
        metadata=_meta(_dec, required=True, aliases=("availableBalance",))
    )
    dhanClientId: str | None = field(default=None, metadata=_meta(_str))
    sodLimit: Decimal | None = field(default=None, metadata=_meta(_dec))
    collateralAmount: Decimal | None = field(default=None, metadata=_meta(_dec))
    receiveableAmount: Decimal | None = field(
        default=None, metadata=_meta(_dec, aliases=("receivableAmount",))
    )
    utilizedAmount: Decimal | None = field(default=None, metadata=_meta(_dec))
    blockedPayoutAmount: Decimal | None = field(default=None, metadata=_meta(_dec))
    withdrawableBalance: Decimal | None = field(default=None, metadata=_meta(_dec))

    @classmethod
    def from_wire(cls, obj: object) -> Self:
        body, path = _unwrap(obj, Endpoint.FUND_LIMIT.key)
        return _record(cls, body, path)


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    """``GET /profile``. ``tokenValidity`` ("30/03/2025 15:37", IST) -> aware datetime;
    ``dataValidity`` has no documented format ("2024-12-05 09:37:52.0" seen) and stays text."""

    dhanClientId: str = field(metadata=_meta(_str, required=True))
    tokenValidity: datetime | None = field(default=None, metadata=_meta(_token_validity))
    activeSegment: str | None = field(default=None, metadata=_meta(_str))
    ddpi: str | None = field(default=None, metadata=_meta(_str))
    mtf: str | None = field(default=None, metadata=_meta(_str))
    dataPlan: str | None = field(default=None, metadata=_meta(_str))
    dataValidity: str | None = field(default=None, metadata=_meta(_str))

    @classmethod
    def from_wire(cls, obj: object) -> Self:
        body, path = _unwrap(obj, Endpoint.PROFILE.key)
        return _record(cls, body, path)


@dataclass(frozen=True, slots=True, kw_only=True)
class KillSwitchResponse:
    """``POST /killswitch`` answers a sentence ("Kill Switch has been successfully
    activated"), ``GET /killswitch`` the state ("ACTIVATE" / "DEACTIVATE"); both in
    ``killSwitchStatus``. :attr:`active` reads either."""

    killSwitchStatus: str = field(metadata=_meta(_str, required=True))
    dhanClientId: str | None = field(default=None, metadata=_meta(_str))

    @classmethod
    def from_wire(cls, obj: object, endpoint: Endpoint = Endpoint.KILL_SWITCH_STATUS) -> Self:
        body, path = _unwrap(obj, endpoint.key)
        return _record(cls, body, path)

    @property
    def active(self) -> bool | None:
        """True when the switch is (now) on, False when off, None for an unknown text."""
        text = self.killSwitchStatus.strip().lower()
        if text == "activate" or text.endswith(" activated"):
            return True
        if text == "deactivate" or text.endswith("deactivated"):
            return False
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class RenewTokenResponse:
    """``GET /RenewToken``. Its body is **not documented** in PROTOCOL.md; this follows Dhan's
    token-generation answer (``accessToken``, ``expiryTime`` ISO IST), accepting ``token`` as
    an alternative key. The token never appears in ``repr``."""

    accessToken: str = field(repr=False, metadata=_meta(_str, required=True, aliases=("token",)))
    dhanClientId: str | None = field(default=None, metadata=_meta(_str))
    expiryTime: datetime | None = field(default=None, metadata=_meta(_renew_expiry))

    @classmethod
    def from_wire(cls, obj: object) -> Self:
        body, path = _unwrap(obj, Endpoint.RENEW_TOKEN.key)
        return _record(cls, body, path)


# ---------------------------------------------------------------------------------------------
# Responses: market quote


@dataclass(frozen=True, slots=True, kw_only=True)
class Ohlc:
    """Day OHLC; ``close`` is the **previous** session's close (PROTOCOL.md 1.8)."""

    open: Decimal | None = field(default=None, metadata=_meta(_dec))
    high: Decimal | None = field(default=None, metadata=_meta(_dec))
    low: Decimal | None = field(default=None, metadata=_meta(_dec))
    close: Decimal | None = field(default=None, metadata=_meta(_dec))


@dataclass(frozen=True, slots=True, kw_only=True)
class DepthLevel:
    """One of the 5 depth rows; empty rows are all zeros, not absent."""

    quantity: int = field(metadata=_meta(_int, required=True))
    orders: int = field(metadata=_meta(_int, required=True))
    price: Decimal = field(metadata=_meta(_dec, required=True))


@dataclass(frozen=True, slots=True, kw_only=True)
class Depth:
    buy: tuple[DepthLevel, ...] = field(metadata=_meta(_depth_side, required=True))
    sell: tuple[DepthLevel, ...] = field(metadata=_meta(_depth_side, required=True))


@dataclass(frozen=True, slots=True, kw_only=True)
class LtpQuote:
    last_price: Decimal = field(metadata=_meta(_dec, required=True))


@dataclass(frozen=True, slots=True, kw_only=True)
class OhlcQuote:
    last_price: Decimal = field(metadata=_meta(_dec, required=True))
    ohlc: Ohlc | None = field(default=None, metadata=_meta(_nested(Ohlc)))


@dataclass(frozen=True, slots=True, kw_only=True)
class FullQuote:
    """``/marketfeed/quote`` per instrument. ``last_trade_time`` is IST "dd/mm/yyyy HH:MM:SS";
    ``""`` (no trade yet) and the 1980 zero value read as None."""

    last_price: Decimal = field(metadata=_meta(_dec, required=True))
    average_price: Decimal | None = field(default=None, metadata=_meta(_dec))
    buy_quantity: int | None = field(default=None, metadata=_meta(_int))
    sell_quantity: int | None = field(default=None, metadata=_meta(_int))
    depth: Depth | None = field(default=None, metadata=_meta(_nested(Depth)))
    last_quantity: int | None = field(default=None, metadata=_meta(_int))
    last_trade_time: datetime | None = field(default=None, metadata=_meta(_quote_time))
    lower_circuit_limit: Decimal | None = field(default=None, metadata=_meta(_dec))
    upper_circuit_limit: Decimal | None = field(default=None, metadata=_meta(_dec))
    net_change: Decimal | None = field(default=None, metadata=_meta(_dec))
    ohlc: Ohlc | None = field(default=None, metadata=_meta(_nested(Ohlc)))
    oi: int | None = field(default=None, metadata=_meta(_int))
    oi_day_high: int | None = field(default=None, metadata=_meta(_int))
    oi_day_low: int | None = field(default=None, metadata=_meta(_int))
    volume: int | None = field(default=None, metadata=_meta(_int))


_QUOTE_TYPES: dict[Endpoint, type[Any]] = {
    Endpoint.QUOTE_LTP: LtpQuote,
    Endpoint.QUOTE_OHLC: OhlcQuote,
    Endpoint.QUOTE_FULL: FullQuote,
}


@dataclass(frozen=True, slots=True)
class QuoteResponse:
    """``POST /marketfeed/ltp|ohlc|quote``: ``data -> segment -> "security id" -> quote``.

    ``data`` keeps that nesting with integer security ids; the quote class depends on the
    endpoint (:class:`LtpQuote`, :class:`OhlcQuote`, :class:`FullQuote`). Ids Dhan does not know
    are silently missing (not an error): check with :meth:`get`.
    """

    endpoint: Endpoint
    data: dict[str, dict[int, Any]]

    @classmethod
    def from_wire(cls, obj: object, endpoint: Endpoint = Endpoint.QUOTE_LTP) -> Self:
        quote_cls = _QUOTE_TYPES.get(endpoint)
        if quote_cls is None:
            raise ValueError(f"{endpoint.name} is not a market-quote endpoint")
        body, path = _unwrap(obj, endpoint.key)
        if not isinstance(body, Mapping):
            raise _bad(path, "an object keyed by exchange segment", body)
        data: dict[str, dict[int, Any]] = {}
        for segment, by_id in body.items():
            seg_path = f"{path}.{segment}"
            if not isinstance(by_id, Mapping):
                raise _bad(seg_path, "an object keyed by security id", by_id)
            quotes: dict[int, Any] = {}
            for key, quote_obj in by_id.items():
                item_path = f"{seg_path}[{key!r}]"
                try:
                    security_id = int(key)
                except (TypeError, ValueError):
                    raise BadResponse(item_path, "expected a numeric security id key") from None
                quotes[security_id] = _record(quote_cls, quote_obj, item_path)
            data[str(segment)] = quotes
        return cls(endpoint, data)

    def get(self, segment: str, security_id: int) -> Any:
        """The quote for one instrument, or None if Dhan left it out."""
        return self.data.get(segment, {}).get(int(security_id))


# ---------------------------------------------------------------------------------------------
# Responses: charts


@dataclass(frozen=True, slots=True)
class Candle:
    """One chart bar. ``timestamp`` is the bar start (daily: midnight IST), aware IST."""

    timestamp: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int
    open_interest: int | None = None


_CHART_COLUMNS: tuple[tuple[str, Callable[[object, str], Any]], ...] = (
    ("timestamp", _epoch_ist),
    ("open", _dec),
    ("high", _dec),
    ("low", _dec),
    ("close", _dec),
    ("volume", _int),
)


@dataclass(frozen=True, slots=True)
class ChartResponse:
    """``POST /charts/intraday`` and ``/charts/historical``: parallel arrays -> candles.

    All arrays must have the length of ``timestamp`` (the mismatching key is named); all-empty
    arrays (holiday, unknown id) give no candles. ``open_interest`` only comes with ``oi=true``.
    """

    candles: tuple[Candle, ...]

    @classmethod
    def from_wire(cls, obj: object, endpoint: Endpoint = Endpoint.CHART_INTRADAY) -> Self:
        body, path = _unwrap(obj, endpoint.key)
        if not isinstance(body, Mapping):
            raise _bad(path, "an object of parallel arrays", body)
        columns: dict[str, list[Any]] = {}
        names = [name for name, _ in _CHART_COLUMNS]
        # open_interest comes only with oi=true; an empty array next to candles is read as
        # "not requested" rather than as a length mismatch.
        oi_values = body.get("open_interest")
        if oi_values is not None and (oi_values != [] or not body.get("timestamp")):
            names.append("open_interest")
        for name in names:
            values = body.get(name)
            if values is None:
                raise BadResponse(f"{path}.{name}", "missing")
            if not isinstance(values, list):
                raise _bad(f"{path}.{name}", "an array", values)
            columns[name] = values
        length = len(columns["timestamp"])
        for name in names:
            if len(columns[name]) != length:
                raise BadResponse(
                    f"{path}.{name}",
                    f"expected {length} values like 'timestamp', got {len(columns[name])}",
                )
        convs = dict(_CHART_COLUMNS) | {"open_interest": _int}
        converted = {
            name: [convs[name](v, f"{path}.{name}[{i}]") for i, v in enumerate(columns[name])]
            for name in names
        }
        oi = converted.get("open_interest")
        candles = tuple(
            Candle(
                timestamp=converted["timestamp"][i],
                open=converted["open"][i],
                high=converted["high"][i],
                low=converted["low"][i],
                close=converted["close"][i],
                volume=converted["volume"][i],
                open_interest=oi[i] if oi is not None else None,
            )
            for i in range(length)
        )
        return cls(candles)

    def __iter__(self) -> Iterator[Candle]:
        return iter(self.candles)

    def __len__(self) -> int:
        return len(self.candles)


# ---------------------------------------------------------------------------------------------
# Responses: option chain


@dataclass(frozen=True, slots=True)
class ExpiryListResponse:
    """``POST /optionchain/expirylist``: ``{"data": ["2025-01-30", ...], "status": "success"}``."""

    expiries: tuple[date, ...]

    @classmethod
    def from_wire(cls, obj: object) -> Self:
        body, path = _unwrap(obj, Endpoint.EXPIRY_LIST.key)
        if not isinstance(body, list):
            raise _bad(path, "an array of dates", body)
        expiries = []
        for i, value in enumerate(body):
            day = _date(value, f"{path}[{i}]")
            if day is None:
                raise _bad(f"{path}[{i}]", "a date like 'YYYY-MM-DD'", value)
            expiries.append(day)
        return cls(tuple(expiries))


@dataclass(frozen=True, slots=True, kw_only=True)
class Greeks:
    delta: float | None = field(default=None, metadata=_meta(_float))
    theta: float | None = field(default=None, metadata=_meta(_float))
    gamma: float | None = field(default=None, metadata=_meta(_float))
    vega: float | None = field(default=None, metadata=_meta(_float))


@dataclass(frozen=True, slots=True, kw_only=True)
class OptionLeg:
    """A CE or PE of one strike. Illiquid strikes are all zeros. ``security_id`` and
    ``average_price`` come with the 2025-26 docs only (None on older answers)."""

    last_price: Decimal = field(metadata=_meta(_dec, required=True))
    security_id: int | None = field(default=None, metadata=_meta(_int))
    average_price: Decimal | None = field(default=None, metadata=_meta(_dec))
    greeks: Greeks | None = field(default=None, metadata=_meta(_nested(Greeks)))
    implied_volatility: float | None = field(default=None, metadata=_meta(_float))
    oi: int | None = field(default=None, metadata=_meta(_int))
    previous_close_price: Decimal | None = field(default=None, metadata=_meta(_dec))
    previous_oi: int | None = field(default=None, metadata=_meta(_int))
    previous_volume: int | None = field(default=None, metadata=_meta(_int))
    top_ask_price: Decimal | None = field(default=None, metadata=_meta(_dec))
    top_ask_quantity: int | None = field(default=None, metadata=_meta(_int))
    top_bid_price: Decimal | None = field(default=None, metadata=_meta(_dec))
    top_bid_quantity: int | None = field(default=None, metadata=_meta(_int))
    volume: int | None = field(default=None, metadata=_meta(_int))


@dataclass(frozen=True, slots=True, kw_only=True)
class OptionStrike:
    """Both legs of one strike; a leg Dhan leaves out is None."""

    ce: OptionLeg | None = field(default=None, metadata=_meta(_nested(OptionLeg)))
    pe: OptionLeg | None = field(default=None, metadata=_meta(_nested(OptionLeg)))


@dataclass(frozen=True, slots=True)
class OptionChainResponse:
    """``POST /optionchain``. ``oc`` maps Decimal strikes (wire keys are strings like
    "23900.000000") to :class:`OptionStrike`, in ascending strike order; ``last_price`` is
    the underlying's (float32-looking on the wire, kept digit for digit)."""

    last_price: Decimal
    oc: dict[Decimal, OptionStrike]

    @classmethod
    def from_wire(cls, obj: object) -> Self:
        body, path = _unwrap(obj, Endpoint.OPTION_CHAIN.key)
        if not isinstance(body, Mapping):
            raise _bad(path, "an object", body)
        if body.get("last_price") is None:
            raise BadResponse(f"{path}.last_price", "missing")
        last_price = _dec(body["last_price"], f"{path}.last_price")
        chain = body.get("oc")
        if chain is None:
            chain = {}  # no strikes listed (not seen live; treated as an empty chain)
        if not isinstance(chain, Mapping):
            raise _bad(f"{path}.oc", "an object keyed by strike", chain)
        strikes: dict[Decimal, OptionStrike] = {}
        for key, strike_obj in chain.items():
            strike_path = f"{path}.oc[{key!r}]"
            try:
                strike = Decimal(str(key).strip())
            except InvalidOperation:
                raise BadResponse(strike_path, "expected a numeric strike key") from None
            if not strike.is_finite():
                raise BadResponse(strike_path, "expected a numeric strike key")
            # normalize() drops the six trailing zeros: 23900.000000 -> 23900, 23925.5 stays.
            strikes[_plain(strike)] = _record(OptionStrike, strike_obj, strike_path)
        return cls(last_price, dict(sorted(strikes.items())))


def _plain(value: Decimal) -> Decimal:
    """``Decimal("23900.000000")`` -> ``Decimal("23900")`` without exponent notation."""
    normal = value.normalize()
    return normal.quantize(Decimal(1)) if normal == normal.to_integral_value() else normal
