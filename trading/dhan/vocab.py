"""Dhan's order vocabulary, defined once: the enumerations of PROTOCOL.md 1.4 as StrEnums.

The REST request and response types (``rest_types``), the REST client (``rest``), the order
update codec (``order_update_codec``) and the simulator's broker (``sim.broker``) all take their
spellings from here, so a value Dhan renames changes in one place and a typo is an
AttributeError at import, not an order Dhan refuses at run time.

The values are Dhan's exact wire strings; a member **is** its string (``StrEnum``), so
``OrderStatus.TRADED == "TRADED"``, it keys a dict lookup by the plain string and
``json.dumps`` writes the bare value. Dhan's order-update WebSocket abbreviates several of these
(``TxnType`` B/S, ``Product`` C/I/..., ``OrderType`` LMT/...); those spellings belong to that one
wire and live in ``order_update_codec``, which maps them onto these members.

The feed's binary header carries the exchange segment as a number (PROTOCOL.md 2.3): that code
table is ``feed_codec.ExchangeSegment`` (an IntEnum of the same names). The strings here are
what REST bodies and order updates carry.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "NOT_SET",
    "STOP_ORDER_TYPES",
    "SUPER_ORDER_STATUSES",
    "AmoTime",
    "ExchangeSegment",
    "Instrument",
    "KillSwitchStatus",
    "LegName",
    "OptionType",
    "OrderStatus",
    "OrderType",
    "PositionType",
    "ProductType",
    "TransactionType",
    "Validity",
    "wire_values",
]

# Dhan's "nothing here" in order-book text fields: correlationId of an order placed without one,
# legName of a plain order, drvOptionType of a non-option, trade-history times (PROTOCOL.md 1.5).
# A value Dhan writes in answers, never one a request may carry.
NOT_SET = "NA"


class ExchangeSegment(StrEnum):
    """``exchangeSegment`` of REST bodies and order updates (PROTOCOL.md 1.4, 3)."""

    IDX_I = "IDX_I"
    NSE_EQ = "NSE_EQ"
    NSE_FNO = "NSE_FNO"
    NSE_CURRENCY = "NSE_CURRENCY"
    NSE_COMM = "NSE_COMM"  # newer docs only; the feed has no numeric code for it (2.3)
    BSE_EQ = "BSE_EQ"
    BSE_FNO = "BSE_FNO"
    BSE_CURRENCY = "BSE_CURRENCY"
    MCX_COMM = "MCX_COMM"


class TransactionType(StrEnum):
    """``transactionType`` of an order or trade (PROTOCOL.md 1.4)."""

    BUY = "BUY"
    SELL = "SELL"


class ProductType(StrEnum):
    """``productType`` of an order or position (PROTOCOL.md 1.4); CO and BO are intraday only."""

    CNC = "CNC"
    INTRADAY = "INTRADAY"
    MARGIN = "MARGIN"
    MTF = "MTF"
    CO = "CO"
    BO = "BO"


class OrderType(StrEnum):
    """``orderType`` of an order (PROTOCOL.md 1.4)."""

    LIMIT = "LIMIT"
    MARKET = "MARKET"
    STOP_LOSS = "STOP_LOSS"
    STOP_LOSS_MARKET = "STOP_LOSS_MARKET"


# The stop types: they need a ``triggerPrice`` and rest untriggered until the LTP reaches it.
STOP_ORDER_TYPES = frozenset({OrderType.STOP_LOSS, OrderType.STOP_LOSS_MARKET})


class Validity(StrEnum):
    """``validity`` of an order (PROTOCOL.md 1.4)."""

    DAY = "DAY"
    IOC = "IOC"


class AmoTime(StrEnum):
    """``amoTime`` of an after-market order (PROTOCOL.md 1.4; the SDK refuses PRE_OPEN)."""

    PRE_OPEN = "PRE_OPEN"
    OPEN = "OPEN"
    OPEN_30 = "OPEN_30"
    OPEN_60 = "OPEN_60"


class LegName(StrEnum):
    """``legName`` of a CO/BO/super-order leg (PROTOCOL.md 1.4). A plain order has no leg: the
    order book shows :data:`NOT_SET` for it, and a modify request omits the field."""

    ENTRY_LEG = "ENTRY_LEG"
    TARGET_LEG = "TARGET_LEG"
    STOP_LOSS_LEG = "STOP_LOSS_LEG"


class OrderStatus(StrEnum):
    """``orderStatus`` of an order (PROTOCOL.md 1.4, the annexure); the order-update feed's
    title-case ``"Cancelled"`` is folded onto these by ``order_update_codec``."""

    TRANSIT = "TRANSIT"
    PENDING = "PENDING"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"
    PART_TRADED = "PART_TRADED"
    TRADED = "TRADED"
    EXPIRED = "EXPIRED"
    CLOSED = "CLOSED"  # super orders only
    TRIGGERED = "TRIGGERED"  # super orders only


# The states only a super order reports; a plain order never shows them (PROTOCOL.md 1.4).
SUPER_ORDER_STATUSES = frozenset({OrderStatus.CLOSED, OrderStatus.TRIGGERED})


class PositionType(StrEnum):
    """``positionType`` of a position row (PROTOCOL.md 1.4, 1.6); CLOSED once flat."""

    LONG = "LONG"
    SHORT = "SHORT"
    CLOSED = "CLOSED"


class OptionType(StrEnum):
    """``drvOptionType`` of an order, trade or position (PROTOCOL.md 1.4); a non-option row
    carries :data:`NOT_SET`."""

    CALL = "CALL"
    PUT = "PUT"


class Instrument(StrEnum):
    """``instrument`` of a chart request, the scrip master's instrument name (PROTOCOL.md 1.4)."""

    INDEX = "INDEX"
    EQUITY = "EQUITY"
    FUTIDX = "FUTIDX"
    OPTIDX = "OPTIDX"
    FUTSTK = "FUTSTK"
    OPTSTK = "OPTSTK"
    FUTCOM = "FUTCOM"
    OPTFUT = "OPTFUT"
    FUTCUR = "FUTCUR"
    OPTCUR = "OPTCUR"


class KillSwitchStatus(StrEnum):
    """``killSwitchStatus`` query parameter and status answer (PROTOCOL.md 1.7)."""

    ACTIVATE = "ACTIVATE"
    DEACTIVATE = "DEACTIVATE"


def wire_values(enum: type[StrEnum]) -> list[str]:
    """The wire strings of ``enum``, sorted: what an error message lists as the accepted values
    (plain strings, so the message reads ``['BUY', 'SELL']``, not member reprs)."""
    return sorted(member.value for member in enum)
