"""Pure codec for Dhan's order update WebSocket (PROTOCOL.md section 3).

No sockets, no Django, no Redis: text in, typed values out, and back. The order-update client
parses with it, the simulator encodes with it (and reads the client's login with it).

Wire format. The client connects to ``wss://api-order-update.dhan.co`` and sends one JSON text
frame, ``{"LoginReq":{"MsgCode":42,"ClientId":"..","Token":".."},"UserType":"SELF"}``
(:func:`login_message`). The server then pushes ``{"Type":"order_alert","Data":{...}}`` text
frames; there is no subscribe step and no documented keep-alive.

What is uncertain, and how this module copes (PROTOCOL.md sections 3 and 8):

* Key casing of ``Data``: the docs sample is PascalCase (``OrderNo``, ``TxnType``); the SDK's
  printer and dhan-ts use camelCase (``orderNo``, ``txnType``). Keys are matched with case and
  underscores ignored, so ``OrderNo``, ``orderNo``, ``order_no`` and ``ORDERNO`` are one key.
  ``Type`` and ``Data`` are matched the same way, and ``order_alert`` / ``orderAlert`` /
  ``OrderAlert`` are one type.
* Value types: numbers sometimes arrive as strings (``"100"``, ``"245.50"``), ids sometimes as
  numbers. Both are accepted; an empty string means "absent" and becomes None.
* Abbreviations: the feed sends ``TxnType`` B/S, ``Product`` C/I/M/F/V/B, ``OrderType``
  LMT/MKT/SL/SLM and ``Exchange`` + ``Segment`` letter (``NSE`` + ``D``); they are normalised to
  the REST enums (BUY, INTRADAY, LIMIT, NSE_FNO) so the rest of the project sees one spelling.
  The REST spellings are accepted too.
* Status: the docs sample says ``"Cancelled"`` where REST says ``CANCELLED``. Statuses are
  compared case-insensitively (``_``/``-``/space alike) and normalised to the REST orderStatus
  enum; an unrecognised status is kept verbatim and flagged (``OrderUpdate.status_known``).

Errors. A message that is not JSON, or an ``order_alert`` whose order number is missing or
whose fields cannot be read, raises :class:`BadOrderUpdate` (a ValueError) naming the problem
and the key path; the client logs it and skips the frame, never crashes on it. Anything that is
not an order alert (a login ack, an unknown ``Type``) is returned as :class:`OtherMessage`.

Secrets: ``Data`` carries the Dhan client id (``ClientId``), which must not reach a log line
(ARCHITECTURE "Secrets"); log :meth:`OrderUpdate.log_fields`, not ``raw``. Error messages
never quote a whole frame.

Public API: :func:`login_message`, :func:`parse_login`, :class:`LoginRequest`,
:func:`parse_message`, :func:`parse_frame`, :class:`OrderUpdate`, :class:`OtherMessage`,
:class:`BadOrderUpdate`, :func:`order_alert_message`, and the enum/mapping constants.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Literal, TypeVar

from trading.dhan.vocab import (
    NOT_SET,
    SUPER_ORDER_STATUSES,
    ExchangeSegment,
    OrderStatus,
    OrderType,
    ProductType,
    TransactionType,
    Validity,
)
from trading.rules.market import IST

__all__ = [
    "LOGIN_MSG_CODE",
    "ORDER_ALERT",
    "ORDER_STATUSES",
    "ORDER_UPDATE_URL",
    "BadLoginRequest",
    "BadOrderUpdate",
    "LoginRequest",
    "OrderUpdate",
    "OtherMessage",
    "login_message",
    "order_alert_message",
    "parse_frame",
    "parse_login",
    "parse_message",
]

ORDER_UPDATE_URL = "wss://api-order-update.dhan.co"
LOGIN_MSG_CODE = 42
ORDER_ALERT = "order_alert"

# The orderStatus values (trading.dhan.vocab) a plain order goes through. Super orders also
# report CLOSED / TRIGGERED; those are not plain-order states, so they stay "unknown" here and
# the client decides what to do.
ORDER_STATUSES = frozenset(OrderStatus) - SUPER_ORDER_STATUSES
# Spellings seen or plausible on the order-update feed beyond case/separator differences
# (which _status_key already folds): US "Canceled", camel "PartTraded" with no separator.
_STATUS_ALIASES: dict[str, OrderStatus] = {
    "CANCELED": OrderStatus.CANCELLED,
    "PARTTRADED": OrderStatus.PART_TRADED,
}

# The feed's abbreviations (PROTOCOL.md 3), one wire's spellings of the vocab enums: TxnType
# B/S; Product C=CNC, I=INTRADAY, M=MARGIN, F=MTF, V=CO, B=BO; OrderType LMT/MKT/SL/SLM.
_TRANSACTION_ABBREVIATIONS: dict[TransactionType, str] = {
    TransactionType.BUY: "B",
    TransactionType.SELL: "S",
}
_PRODUCT_ABBREVIATIONS: dict[ProductType, str] = {
    ProductType.CNC: "C",
    ProductType.INTRADAY: "I",
    ProductType.MARGIN: "M",
    ProductType.MTF: "F",
    ProductType.CO: "V",
    ProductType.BO: "B",
}
_ORDER_TYPE_ABBREVIATIONS: dict[OrderType, str] = {
    OrderType.LIMIT: "LMT",
    OrderType.MARKET: "MKT",
    OrderType.STOP_LOSS: "SL",
    OrderType.STOP_LOSS_MARKET: "SLM",
}


_E = TypeVar("_E", bound=StrEnum)


def _readable(abbreviations: Mapping[_E, str], enum: Iterable[_E]) -> dict[str, _E]:
    """Upper-case wire text -> member: each abbreviation and each REST name (either parses)."""
    return {abbr: member for member, abbr in abbreviations.items()} | {m.value: m for m in enum}


TRANSACTION_TYPES = _readable(_TRANSACTION_ABBREVIATIONS, TransactionType)
PRODUCT_TYPES = _readable(_PRODUCT_ABBREVIATIONS, ProductType)
ORDER_TYPES = _readable(_ORDER_TYPE_ABBREVIATIONS, OrderType)
VALIDITIES = {v.value: v for v in Validity}  # the feed spells these as REST does

# REST exchangeSegment names (trading.dhan.vocab), accepted verbatim in Exchange or Segment.
EXCHANGE_SEGMENTS = frozenset(ExchangeSegment)
# Exchange + Segment letter (E equity, D derivatives, C currency, M commodity; PROTOCOL.md 3)
# -> exchangeSegment. Only combinations that exist as REST segments are listed.
SEGMENTS_BY_EXCHANGE_LETTER: dict[tuple[str, str], ExchangeSegment] = {
    ("NSE", "E"): ExchangeSegment.NSE_EQ,
    ("NSE", "D"): ExchangeSegment.NSE_FNO,
    ("NSE", "C"): ExchangeSegment.NSE_CURRENCY,
    ("NSE", "M"): ExchangeSegment.NSE_COMM,
    ("BSE", "E"): ExchangeSegment.BSE_EQ,
    ("BSE", "D"): ExchangeSegment.BSE_FNO,
    ("BSE", "C"): ExchangeSegment.BSE_CURRENCY,
    ("MCX", "M"): ExchangeSegment.MCX_COMM,
}
_EXCHANGE_LETTER_BY_SEGMENT = {seg: pair for pair, seg in SEGMENTS_BY_EXCHANGE_LETTER.items()}

# Placeholder values Dhan uses for "not set" (PROTOCOL.md 1.5: correlationId "NA", exchange
# order id "0", dates in year 1), read as absent so callers never match on a placeholder.
_UNSET_TIME_YEAR = 1


class BadOrderUpdate(ValueError):
    """An order-update frame that cannot be read.

    Caller: log it (``str(exc)`` names the problem and ``exc.path`` the key, e.g.
    ``Data.OrderNo``) and skip the frame; never crash or reconnect over it. The REST order book
    reconciliation catches up on whatever this update would have said.
    """

    def __init__(self, problem: str, path: str | None = None) -> None:
        self.problem = problem
        self.path = path
        super().__init__(f"{path}: {problem}" if path else problem)


class BadLoginRequest(ValueError):
    """A LoginReq frame the simulator cannot accept; the simulator closes the connection."""


# ---------------------------------------------------------------------------------------------
# Login


def login_message(client_id: str | int, token: str) -> str:
    """The LoginReq text frame, exactly as documented (compact JSON, MsgCode an int).

    ``client_id`` is sent as a string even when given as a number (the SDK does ``str()``).
    Raises ValueError for an empty client id or token (never quoting the token).
    """
    client_id = str(client_id).strip()
    if not client_id:
        raise ValueError("login_message needs a client id")
    if not token:
        raise ValueError("login_message needs an access token")
    body = {
        "LoginReq": {"MsgCode": LOGIN_MSG_CODE, "ClientId": client_id, "Token": token},
        "UserType": "SELF",
    }
    return json.dumps(body, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class LoginRequest:
    """A parsed LoginReq (the simulator's side). The token is left out of ``repr``."""

    client_id: str
    token: str | None = field(repr=False)
    user_type: str
    secret: str | None = field(default=None, repr=False)  # partner logins only


def parse_login(text: str | bytes) -> LoginRequest:
    """Parse a client's LoginReq frame; MsgCode may be ``42`` or ``"42"`` (docs show both).

    Raises :class:`BadLoginRequest` naming the problem: not JSON, no LoginReq object, a
    MsgCode other than 42, no ClientId, or a SELF login without a Token.
    """
    try:
        body = _load_json(text)
        if not isinstance(body, dict) or not isinstance(body.get("LoginReq"), dict):
            raise BadLoginRequest("login: expected an object with a LoginReq object")
        req = body["LoginReq"]
        if str(req.get("MsgCode", "")).strip() != str(LOGIN_MSG_CODE):
            raise BadLoginRequest(f"LoginReq.MsgCode: expected 42, got {req.get('MsgCode')!r}")
        client_id = _text(req.get("ClientId"), "LoginReq.ClientId")
        if not client_id:
            raise BadLoginRequest("LoginReq.ClientId: missing")
        user_type = _text(body.get("UserType"), "UserType") or "SELF"
        token = _text(req.get("Token"), "LoginReq.Token")
        if user_type == "SELF" and not token:
            raise BadLoginRequest("LoginReq.Token: missing")
        secret = _text(body.get("Secret"), "Secret")
    except BadOrderUpdate as exc:
        raise BadLoginRequest(f"login: {exc}") from None
    return LoginRequest(client_id, token, user_type, secret)


# ---------------------------------------------------------------------------------------------
# Parsed messages


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """One ``order_alert``, normalised. None means the field was absent or empty.

    Enums are the members of ``trading.dhan.vocab`` (REST spellings, equal to their strings):
    ``status`` an :class:`OrderStatus` (an unrecognised status is kept verbatim, see
    ``status_known``), ``transaction_type`` BUY/SELL, ``product_type`` CNC/INTRADAY/...,
    ``order_type`` LIMIT/MARKET/STOP_LOSS/STOP_LOSS_MARKET, ``validity`` DAY/IOC,
    ``exchange_segment`` NSE_FNO/... (an unrecognised product, order type or validity is kept
    verbatim as a plain string).
    Quantities are ints (units, not lots); prices are Decimal rupees. Times are aware datetimes
    in Asia/Kolkata. ``reason`` is ReasonDescription: the rejection text on REJECTED, usually
    ``"CONFIRMED"`` otherwise.

    ``raw`` is the whole decoded message, kept for debugging and excluded from equality, so the
    same update in either key casing or value style compares equal. It holds the client id:
    log :meth:`log_fields` instead.
    """

    order_id: str
    status: OrderStatus | str
    exchange_order_id: str | None = None
    correlation_id: str | None = None
    transaction_type: TransactionType | None = None
    product_type: ProductType | str | None = None
    order_type: OrderType | str | None = None
    validity: Validity | str | None = None
    exchange_segment: ExchangeSegment | None = None
    security_id: int | None = None
    symbol: str | None = None
    quantity: int | None = None
    traded_quantity: int | None = None
    remaining_quantity: int | None = None
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    traded_price: Decimal | None = None
    avg_traded_price: Decimal | None = None
    order_time: datetime | None = None
    exchange_time: datetime | None = None
    updated_at: datetime | None = None
    reason: str | None = None
    source: str | None = None  # P = placed through the API, N = web/app (PROTOCOL.md 3)
    leg_no: int | None = None  # 1 entry, 2 stop loss, 3 target (bracket/super orders)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def status_known(self) -> bool:
        """True when ``status`` is one of the REST orderStatus values the project acts on."""
        return self.status in ORDER_STATUSES

    def log_fields(self) -> dict[str, Any]:
        """The raw ``Data`` with the client id masked: what a log line may carry."""
        data = _find(self.raw, "Data") if isinstance(self.raw, Mapping) else None
        source = data[1] if data and isinstance(data[1], Mapping) else self.raw
        return {
            key: ("***" if _norm(key) in _SECRET_KEYS else value) for key, value in source.items()
        }


@dataclass(frozen=True, slots=True)
class OtherMessage:
    """A frame that is not an order alert (login ack, unknown ``Type``); ``type`` None if absent.

    Caller: log at debug level and carry on. ``raw`` is the decoded JSON value.
    """

    type: str | None
    raw: Any = field(compare=False, repr=False)


_SECRET_KEYS = frozenset({"clientid", "token", "secret", "dhanclientid"})


# ---------------------------------------------------------------------------------------------
# Value readers. Each takes the raw JSON value and the key path (for the error message) and
# returns the typed value, or None for absent/empty. Only what Dhan plausibly sends is accepted.


def _norm(key: str) -> str:
    """Key identity ignoring case and underscores: OrderNo == orderNo == order_no."""
    return key.replace("_", "").lower()


def _index(data: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
    """Normalised key -> (key as sent, value), built once per object.

    Should one object carry a key in two casings (the docs sample mixes ``RefLtp`` and
    ``refLtp`` across versions), a non-empty value wins over an empty one.
    """
    index: dict[str, tuple[str, Any]] = {}
    for key, value in data.items():
        norm = _norm(key)
        if norm not in index or _is_empty(index[norm][1]):
            index[norm] = (key, value)
    return index


def _find(data: Mapping[str, Any], pascal: str) -> tuple[str, Any] | None:
    """(key as sent, value) for ``pascal`` in any casing, or None."""
    return _index(data).get(_norm(pascal))


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _text(value: Any, path: str = "") -> str | None:
    if _is_empty(value):
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise BadOrderUpdate(f"expected a string, got {type(value).__name__}", path)
    if isinstance(value, float):
        # Ids sent as numbers must not gain a ".0" (or an exponent) on their way to a string.
        return str(_int(value, path))
    return str(value).strip()


def _id(value: Any, path: str) -> str | None:
    """An id that Dhan fills with "0" or "NA" when unset (exchange order no, correlation id)."""
    text = _text(value, path)
    return None if text in {"0", NOT_SET} else text


def _int(value: Any, path: str) -> int | None:
    if _is_empty(value):
        return None
    if isinstance(value, bool):
        raise BadOrderUpdate(f"expected an integer, got {value!r}", path)
    if isinstance(value, int):
        return value
    if isinstance(value, float | str):
        number = _decimal(value, path)
        # "100.0" and 100.0 are whole numbers; 1.5 shares is a broken message, not a rounding job.
        if number is not None and number == number.to_integral_value():
            return int(number)
    raise BadOrderUpdate(f"expected an integer, got {value!r}", path)


def _decimal(value: Any, path: str) -> Decimal | None:
    """Money: Decimal from the text ("245.55" stays 245.55, never via binary float)."""
    if _is_empty(value):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadOrderUpdate(f"expected a number, got {value!r}", path)
    if isinstance(value, float) and not math.isfinite(value):
        raise BadOrderUpdate(f"expected a finite number, got {value!r}", path)
    try:
        # str() of a float is its shortest round-trip repr, so 245.55 -> Decimal("245.55").
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise BadOrderUpdate(f"expected a number, got {value!r}", path) from None
    if not number.is_finite():
        raise BadOrderUpdate(f"expected a finite number, got {value!r}", path)
    return number


def _time(value: Any, path: str) -> datetime | None:
    """Documented format ``YYYY-MM-DD HH:MM:SS``, IST wall clock; ISO variants also accepted.

    A time carrying an offset is converted to IST; a naive one is IST already (PROTOCOL.md 1.5:
    times are IST). Dhan's "unset" placeholder ``0001-01-01 00:00:00`` gives None.
    """
    if _is_empty(value):
        return None
    if not isinstance(value, str):
        # Not an epoch either: PROTOCOL.md 3 documents IST strings, unlike the feed's LTT.
        raise BadOrderUpdate(f"expected a 'YYYY-MM-DD HH:MM:SS' string, got {value!r}", path)
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadOrderUpdate(f"expected 'YYYY-MM-DD HH:MM:SS', got {text!r}", path) from None
    if moment.year == _UNSET_TIME_YEAR:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=IST)
    return moment.astimezone(IST)


def _status_key(text: str) -> str:
    return text.strip().upper().replace(" ", "_").replace("-", "_")


def _status(value: Any, path: str) -> OrderStatus | str:
    text = _text(value, path)
    if text is None:
        raise BadOrderUpdate("missing", path)
    key = _status_key(text)
    if key in ORDER_STATUSES:
        return OrderStatus(key)
    status = _STATUS_ALIASES.get(key.replace("_", ""))
    return status if status in ORDER_STATUSES else text


def _enum(table: Mapping[str, StrEnum], *, strict: bool) -> Callable[[Any, str], str | None]:
    """Reader mapping feed abbreviations/REST names (any case) through ``table`` to the vocab
    member.

    ``strict``: an unknown value raises; otherwise it is kept verbatim.
    """

    def read(value: Any, path: str) -> str | None:
        text = _text(value, path)
        if text is None:
            return None
        mapped = table.get(text.upper())
        if mapped is not None:
            return mapped
        if strict:
            raise BadOrderUpdate(f"unknown value {text!r}; expected one of {sorted(table)}", path)
        return text

    return read


# (attribute, PascalCase key as documented, reader), in the docs sample's key order. OrderNo and
# Exchange/Segment are read separately (the first is required, the pair maps jointly).
_FIELDS: tuple[tuple[str, str, Callable[[Any, str], Any]], ...] = (
    ("security_id", "SecurityId", _int),
    ("exchange_order_id", "ExchOrderNo", _id),
    ("product_type", "Product", _enum(PRODUCT_TYPES, strict=False)),
    # Side decides which way a fill moves a position; guessing would book it wrong, so an
    # unknown value rejects the frame (and REST reconciliation picks the order up).
    ("transaction_type", "TxnType", _enum(TRANSACTION_TYPES, strict=True)),
    ("order_type", "OrderType", _enum(ORDER_TYPES, strict=False)),
    ("validity", "Validity", _enum(VALIDITIES, strict=False)),
    ("remaining_quantity", "RemainingQuantity", _int),
    ("quantity", "Quantity", _int),
    ("traded_quantity", "TradedQty", _int),
    ("price", "Price", _decimal),
    ("trigger_price", "TriggerPrice", _decimal),
    ("traded_price", "TradedPrice", _decimal),
    ("avg_traded_price", "AvgTradedPrice", _decimal),
    ("order_time", "OrderDateTime", _time),
    ("exchange_time", "ExchOrderTime", _time),
    ("updated_at", "LastUpdatedTime", _time),
    ("reason", "ReasonDescription", _text),
    ("leg_no", "LegNo", _int),
    ("symbol", "Symbol", _text),
    ("status", "Status", _status),
    ("correlation_id", "CorrelationId", _id),
    ("source", "Source", _text),
)


def _exchange_segment(
    index: Mapping[str, tuple[str, Any]], data_key: str
) -> ExchangeSegment | None:
    """exchangeSegment from ``Exchange`` + ``Segment`` (NSE + D -> NSE_FNO).

    Also accepted: a REST segment name in either field or in an ``ExchangeSegment`` key. An
    unknown or one-sided combination raises: which instrument a fill belongs to is not guessed.
    """
    values: dict[str, str | None] = {}
    for pascal in ("ExchangeSegment", "Exchange", "Segment"):
        found = index.get(_norm(pascal))
        values[pascal] = _text(found[1], f"{data_key}.{found[0]}") if found else None
    for value in values.values():
        if value and value.upper() in EXCHANGE_SEGMENTS:
            return ExchangeSegment(value.upper())
    exchange, letter = values["Exchange"], values["Segment"]
    if exchange is None and letter is None:
        return None
    segment = SEGMENTS_BY_EXCHANGE_LETTER.get(((exchange or "").upper(), (letter or "").upper()))
    if segment is None:
        raise BadOrderUpdate(
            f"unknown exchange/segment {exchange!r}/{letter!r}; expected e.g. 'NSE'/'D'",
            f"{data_key}.Exchange",
        )
    return segment


# ---------------------------------------------------------------------------------------------
# Parsing


def _as_text(text: str | bytes) -> str:
    if isinstance(text, bytes | bytearray):
        try:
            return bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadOrderUpdate(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not isinstance(text, str):
        raise BadOrderUpdate(f"expected str or bytes, got {type(text).__name__}")
    return text


def _load_json(text: str | bytes) -> Any:
    text = _as_text(text)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # exc.msg and the position only: the frame itself is not quoted into a log line.
        raise BadOrderUpdate(f"not JSON ({exc.msg} at char {exc.pos})") from None


def _is_order_alert(type_value: Any) -> bool:
    return isinstance(type_value, str) and _norm(type_value.strip()) == "orderalert"


def _decode(body: Any) -> OrderUpdate | OtherMessage:
    if not isinstance(body, dict):
        return OtherMessage(None, body)
    type_found = _find(body, "Type")
    type_value = type_found[1] if type_found else None
    if not _is_order_alert(type_value):
        return OtherMessage(type_value if isinstance(type_value, str) else None, body)
    data_found = _find(body, "Data")
    if data_found is None:
        raise BadOrderUpdate("missing", "Data")
    data_key, data = data_found
    if not isinstance(data, dict):
        raise BadOrderUpdate(f"expected an object, got {type(data).__name__}", data_key)

    index = _index(data)
    order_found = index.get("orderno")
    order_id = _text(order_found[1], f"{data_key}.{order_found[0]}") if order_found else None
    if not order_id:
        raise BadOrderUpdate("missing order number", f"{data_key}.OrderNo")
    values: dict[str, Any] = {}
    for attr, pascal, read in _FIELDS:
        found = index.get(_norm(pascal))
        if found is None:
            values[attr] = read(None, f"{data_key}.{pascal}")
        else:
            values[attr] = read(found[1], f"{data_key}.{found[0]}")
    values["exchange_segment"] = _exchange_segment(index, data_key)
    return OrderUpdate(order_id=order_id, raw=body, **values)


def parse_message(text: str | bytes) -> OrderUpdate | OtherMessage:
    """Parse one text frame from the order update WebSocket.

    Returns an :class:`OrderUpdate` for an ``order_alert`` (any casing), an
    :class:`OtherMessage` for any other JSON value. Raises :class:`BadOrderUpdate` for text that
    is not JSON (including several objects run together: see :func:`parse_frame`) and for an
    order alert without ``Data``, without an order number, or with a value that cannot be read.
    """
    return _decode(_load_json(text))


def parse_frame(text: str | bytes) -> list[OrderUpdate | OtherMessage]:
    """Like :func:`parse_message`, but a frame holding several JSON values back to back
    (``{...}{...}``) gives one result each.

    Defensive: one third-party client splits such frames (PROTOCOL.md 3, UNCONFIRMED). A bad
    value raises :class:`BadOrderUpdate` and loses the rest of the frame, as framing is lost.
    """
    text = _as_text(text)
    decoder = json.JSONDecoder()
    results: list[OrderUpdate | OtherMessage] = []
    pos, end = 0, len(text)
    while True:
        while pos < end and text[pos].isspace():
            pos += 1
        if pos >= end:
            break
        try:
            body, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise BadOrderUpdate(f"not JSON ({exc.msg} at char {exc.pos})") from None
        results.append(_decode(body))
    if not results:
        raise BadOrderUpdate("not JSON (empty frame)")
    return results


# ---------------------------------------------------------------------------------------------
# Encoding (the simulator's side)


def _camel(pascal: str) -> str:
    return pascal[:1].lower() + pascal[1:]


def order_alert_message(
    update: OrderUpdate,
    *,
    casing: Literal["pascal", "camel"] = "pascal",
    numbers_as_strings: bool = False,
) -> str:
    """The ``order_alert`` text frame Dhan would send for ``update``.

    ``casing`` picks the ``Data`` key style: ``"pascal"`` as in the docs sample (``OrderNo``),
    ``"camel"`` as the SDK printer and dhan-ts expect (``orderNo``); the envelope stays
    ``{"Type":"order_alert","Data":...}`` in both (the SDK reads ``Type`` either way).
    ``numbers_as_strings`` writes quantities and prices as ``"100"`` / ``"245.50"``.

    Feed spellings are used: TxnType B/S, Product C/I/..., OrderType LMT/..., Exchange + Segment
    letter (NSE + D), Status in the docs' title case (``"Cancelled"``); absent values are empty
    strings, as in the docs sample. Times are IST ``YYYY-MM-DD HH:MM:SS`` (fractional seconds
    only when present). Parsing the result gives back an equal ``OrderUpdate``.
    """
    if casing not in ("pascal", "camel"):
        raise ValueError(f"casing must be 'pascal' or 'camel', got {casing!r}")

    def number(value: int | Decimal | None) -> Any:
        if value is None:
            return ""
        if numbers_as_strings:
            return str(value)
        # JSON has no decimal type; float's shortest repr turns back into the same Decimal
        # value for any price with 15 or fewer significant digits (all rupee prices).
        return float(value) if isinstance(value, Decimal) else value

    def when(moment: datetime | None) -> str:
        if moment is None:
            return ""
        return moment.astimezone(IST).replace(tzinfo=None).isoformat(sep=" ")

    def text(value: str | None) -> str:
        return "" if value is None else value

    exchange, letter = "", ""
    if update.exchange_segment is not None:
        exchange, letter = _EXCHANGE_LETTER_BY_SEGMENT.get(
            update.exchange_segment, (update.exchange_segment, "")
        )
    side = _TRANSACTION_ABBREVIATIONS.get(update.transaction_type, "")
    product = update.product_type
    order_type = update.order_type
    status = update.status.title() if update.status_known else update.status
    data: dict[str, Any] = {
        "Exchange": exchange,
        "Segment": letter,
        "Source": text(update.source),
        "SecurityId": "" if update.security_id is None else str(update.security_id),
        "ExchOrderNo": text(update.exchange_order_id),
        "OrderNo": update.order_id,
        "Product": _PRODUCT_ABBREVIATIONS.get(product, product) if product else "",
        "TxnType": side,
        "OrderType": _ORDER_TYPE_ABBREVIATIONS.get(order_type, order_type) if order_type else "",
        "Validity": text(update.validity),
        "RemainingQuantity": number(update.remaining_quantity),
        "Quantity": number(update.quantity),
        "TradedQty": number(update.traded_quantity),
        "Price": number(update.price),
        "TriggerPrice": number(update.trigger_price),
        "TradedPrice": number(update.traded_price),
        "AvgTradedPrice": number(update.avg_traded_price),
        "OrderDateTime": when(update.order_time),
        "ExchOrderTime": when(update.exchange_time),
        "LastUpdatedTime": when(update.updated_at),
        "ReasonDescription": text(update.reason),
        "LegNo": number(update.leg_no),
        "Symbol": text(update.symbol),
        "Status": status,
        "CorrelationId": text(update.correlation_id),
    }
    if casing == "camel":
        data = {_camel(key): value for key, value in data.items()}
    return json.dumps({"Data": data, "Type": ORDER_ALERT}, separators=(",", ":"))
