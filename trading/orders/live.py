"""The live gateway: the order router's contract (trading/orders/gateway.py) on Dhan's REST API.

Every journal row goes to Dhan as one plain order: LIMIT at the row's limit price (already on
the tick), validity DAY, product INTRADAY (the system's positions never outlive the session),
the row's side, segment, security id and quantity. Its ``correlationId`` is the row's
correlation id, which is two things at once:

* the idempotency key (ARCHITECTURE "Contracts"): an order whose placement answer was lost is
  found again by ``GET /orders/external/{correlationId}``, never placed twice blindly;
* the tag that tells the system's orders from manual ones. Dhan's place-order request has no
  other free-text field (PROTOCOL.md 1.5: ``algoId`` in the order book is Dhan's, not the
  caller's; ``Source`` in an order update only says API or app). Every order this system sends
  has a correlation id starting with :data:`SYSTEM_TAG` (``AS-EN-...`` entries, ``AS-EX-...``
  exits); an order in Dhan's order book without that prefix (``"NA"`` when none was given) was
  placed by someone else: a person on Dhan's app or web, or another program. The gateway
  refuses to send a row whose id lacks the prefix, so the rule has no exception.

Errors keep their class (trading/dhan/errors.py) so the router can act on them: ``Rejected``
(Dhan's code and message), ``UnknownOutcome`` (the REST client already looked the correlation
id up and Dhan still did not know it), ``AuthFailure``, and ``Retryable``/``RateLimited`` once
the client's own resends are spent (nothing reached Dhan: the router records "not sent").

A modify or cancel that Dhan refuses because the order has ended meanwhile (traded, cancelled,
rejected, expired) is not an error for the caller: the order's own event says how it ended.
The gateway recognises that case by reading the order back (``GET /orders/{id}``) rather than
by parsing Dhan's message, whose wording is not documented; any other refusal is raised.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from trading.dhan.errors import AuthFailure, DhanError, Rejected, UnknownOutcome
from trading.dhan.rest import DhanRestClient
from trading.dhan.rest_types import (
    CancelOrderRequest,
    ModifyOrderRequest,
    OrderByCorrelationIdRequest,
    OrderByIdRequest,
    PlaceOrderRequest,
)
from trading.dhan.rest_types import Order as DhanOrder
from trading.dhan.vocab import (
    NOT_SET,
    OrderStatus,
    OrderType,
    ProductType,
    TransactionType,
    Validity,
)
from trading.models import Order
from trading.orders.gateway import Ack, BrokerOrder, OrderEnded
from trading.orders.states import FINAL, JournalStatus
from trading.rules.market import instrument_key

logger = logging.getLogger(__name__)

__all__ = [
    "SYSTEM_TAG",
    "BrokerPosition",
    "LiveGateway",
    "is_system_order",
    "live_gateway_from_settings",
]

# The prefix of every correlation id this system sends (trading/orders/intent.py,
# journal.exit_correlation_id): what marks an order at Dhan as ours.
SYSTEM_TAG = "AS-"

# Dhan's order states, as the journal's. The super-order states (CLOSED, TRIGGERED) are absent
# on purpose: the system places plain orders only, so seeing one means the correlation id names
# an order that is not ours (a lookup raises rather than guesses).
_JOURNAL_STATUS = {
    OrderStatus.TRANSIT: JournalStatus.TRANSIT,
    OrderStatus.PENDING: JournalStatus.PENDING,
    OrderStatus.PART_TRADED: JournalStatus.PART_TRADED,
    OrderStatus.TRADED: JournalStatus.TRADED,
    OrderStatus.REJECTED: JournalStatus.REJECTED,
    OrderStatus.CANCELLED: JournalStatus.CANCELLED,
    OrderStatus.EXPIRED: JournalStatus.EXPIRED,
}
# What a placement's acknowledgement may carry. Anything further (the REST client resolved a
# lost answer by correlation id and found the order already traded or rejected) is acknowledged
# as TRANSIT: the order exists, and how it went on comes as events, which carry the fills, the
# rejection reason and settle the position; an acknowledgement carries none of those.
_ACK_STATUSES = frozenset({JournalStatus.TRANSIT, JournalStatus.PENDING})


def is_system_order(correlation_id: str | None) -> bool:
    """True for an order this system placed (its correlation id carries :data:`SYSTEM_TAG`)."""
    return isinstance(correlation_id, str) and correlation_id.startswith(SYSTEM_TAG)


@dataclass(frozen=True, slots=True)
class BrokerPosition:
    """An open position at the broker (reconciliation compares these with the journal's):
    ``net_quantity`` in units, positive long, negative short."""

    exchange_segment: str
    security_id: int
    net_quantity: int
    product_type: str
    trading_symbol: str = ""

    @property
    def key(self) -> str:
        return instrument_key(self.exchange_segment, self.security_id)


class LiveGateway:
    """See the module docstring. ``client_id`` is the Dhan account's (every order body carries
    it as ``dhanClientId``); ``rest`` does the HTTP, the rate limits and the resends."""

    mode = "live"

    def __init__(self, rest: DhanRestClient, client_id: str) -> None:
        if not isinstance(client_id, str) or not client_id.strip():
            raise ValueError("client_id: the Dhan account's client id is required")
        self.rest = rest
        self.client_id = client_id

    def __repr__(self) -> str:
        return f"LiveGateway({self.rest!r})"  # the client's repr hides the credentials

    def close(self) -> None:
        self.rest.close()

    # -- the contract ----------------------------------------------------------------------

    def place(self, order: Order, at: datetime) -> Ack:
        """``POST /orders`` once; the order id and TRANSIT (or PENDING) when Dhan took it."""
        request = self._place_request(order)
        answer = self.rest.place_order(request)
        status = _journal_status(answer.orderStatus, f"order {answer.orderId}")
        if status not in _ACK_STATUSES:
            logger.info(
                "order %s: Dhan has it as %s %s already; acknowledged as TRANSIT, its state "
                "comes as an event",
                order.correlation_id,
                answer.orderId,
                status,
            )
            status = JournalStatus.TRANSIT
        return Ack(answer.orderId, status)

    def modify(self, order: Order, price: Decimal, at: datetime) -> bool:
        """``PUT /orders/{id}``: the same LIMIT DAY order, same quantity, at ``price``; Dhan
        keeps the order id and what already filled. True when Dhan took it (the router then
        records the new limit); False when the order has ended meanwhile (its final event is
        on the way) or never reached Dhan."""
        broker_id = self._broker_id(order, "modify")
        if broker_id is None:
            return False
        try:
            request = ModifyOrderRequest(
                dhanClientId=self.client_id,
                orderId=broker_id,
                orderType=OrderType.LIMIT,
                quantity=order.quantity,
                price=price,
                validity=Validity.DAY,
            )
        except ValueError as exc:
            raise Rejected(f"modify of {order.correlation_id} not sent: {exc}") from exc
        try:
            self.rest.modify_order(request)
        except (Rejected, UnknownOutcome) as exc:
            found = self._ended(order, broker_id, "modify", exc)
            if found is None:
                raise
            raise OrderEnded(_broker_order(found)) from None
        return True

    def cancel(self, order: Order, at: datetime) -> None:
        """``DELETE /orders/{id}``; the CANCELLED comes as an event. Quiet when the order has
        ended already (the event says how) or never reached Dhan (nothing to cancel)."""
        broker_id = self._broker_id(order, "cancel")
        if broker_id is None:
            return
        try:
            self.rest.cancel_order(CancelOrderRequest(broker_id))
        except (Rejected, UnknownOutcome) as exc:
            if self._ended(order, broker_id, "cancel", exc) is None:
                raise

    def lookup(self, order: Order) -> BrokerOrder | None:
        """Dhan's view of the order: by correlation id, or by the broker order id when the
        correlation lookup fails or finds nothing. None only when Dhan knows neither, which
        cannot be said of an order Dhan gave an id to (that raises instead)."""
        found: DhanOrder | None = None
        problem: DhanError | None = None
        try:
            found = self.rest.order_by_correlation_id(
                OrderByCorrelationIdRequest(order.correlation_id)
            ).order
        except AuthFailure:
            raise
        except DhanError as exc:
            if not order.broker_order_id:
                raise
            problem = exc
        if found is not None and order.broker_order_id and found.orderId != order.broker_order_id:
            # Two orders under one correlation id at Dhan: the journal's own id decides.
            logger.error(
                "order %s: Dhan lists order %s under its correlation id, the journal has %s; "
                "reading %s by its id",
                order.correlation_id,
                found.orderId,
                order.broker_order_id,
                order.broker_order_id,
            )
            found = None
        if found is None and order.broker_order_id:
            try:
                found = self.rest.order_by_id(OrderByIdRequest(order.broker_order_id)).order
            except DhanError:
                if problem is not None:
                    raise problem from None
                raise
            if found is None:
                raise DhanError(
                    f"order {order.correlation_id}: Dhan acknowledged it as "
                    f"{order.broker_order_id} but knows neither that id nor the correlation id"
                )
        if found is None:
            return None
        mismatch = _mismatch(order, found)
        if mismatch:
            # Never adopt another order as ours (a reused correlation id, e.g. after the
            # database was reset within the day): the caller sees a failure, not a wrong fill.
            raise DhanError(
                f"order {order.correlation_id}: Dhan's order {found.orderId} is not the "
                f"journal's: {mismatch}"
            )
        return _broker_order(found)

    # -- reconciliation --------------------------------------------------------------------

    def positions(self) -> list[BrokerPosition]:
        """The account's open positions at Dhan (net quantity not zero), any product."""
        rows = []
        for row in self.rest.positions():
            if not row.netQty:
                continue
            if not row.exchangeSegment or not row.securityId.isdigit():
                raise DhanError(
                    f"GET /positions: a row without a usable segment and security id: "
                    f"{row.exchangeSegment!r} {row.securityId!r}"
                )
            rows.append(
                BrokerPosition(
                    exchange_segment=row.exchangeSegment,
                    security_id=int(row.securityId),
                    net_quantity=row.netQty,
                    product_type=row.productType or "",
                    trading_symbol=row.tradingSymbol or "",
                )
            )
        return rows

    # -- helpers ---------------------------------------------------------------------------

    def _place_request(self, order: Order) -> PlaceOrderRequest:
        """The order's wire request; a row that cannot be one is refused here, unsent."""
        if not is_system_order(order.correlation_id):
            raise Rejected(
                f"order not sent: correlation id {order.correlation_id!r} does not start with "
                f"{SYSTEM_TAG!r}, the tag of the system's orders"
            )
        try:
            return PlaceOrderRequest(
                dhanClientId=self.client_id,
                transactionType=TransactionType(order.side),
                exchangeSegment=order.exchange_segment,
                productType=ProductType.INTRADAY,
                orderType=OrderType.LIMIT,
                validity=Validity.DAY,
                securityId=str(order.security_id),
                quantity=order.quantity,
                price=order.limit_price,
                correlationId=order.correlation_id,
            )
        except ValueError as exc:
            raise Rejected(f"order not sent: {exc}") from exc

    def _broker_id(self, order: Order, action: str) -> str | None:
        """The order's Dhan id: the journal's, else found by correlation id; None (logged)
        when Dhan does not have the order at all."""
        if order.broker_order_id:
            return order.broker_order_id
        found = self.rest.order_by_correlation_id(
            OrderByCorrelationIdRequest(order.correlation_id)
        ).order
        if found is None:
            logger.warning(
                "order %s: %s skipped: Dhan does not have the order", order.correlation_id, action
            )
            return None
        return found.orderId

    def _ended(
        self, order: Order, broker_id: str, action: str, refusal: DhanError
    ) -> DhanOrder | None:
        """After Dhan refused a modify/cancel (or its answer was lost and the REST client's
        read-back found the order not as asked): Dhan's order (logged) when it is final
        there, else None. A read that fails leaves the refusal standing."""
        seen = refusal.order if isinstance(refusal, UnknownOutcome) else None
        if isinstance(seen, DhanOrder):
            found: DhanOrder | None = seen  # the client read it back already
        else:
            try:
                found = self.rest.order_by_id(OrderByIdRequest(broker_id)).order
            except DhanError as exc:
                logger.warning(
                    "order %s: %s refused (%s) and the order could not be read back: %s",
                    order.correlation_id,
                    action,
                    refusal,
                    exc,
                )
                return None
        if found is None or found.orderStatus not in FINAL:
            return None
        logger.info(
            "order %s: %s not needed, the order is %s at Dhan (%s)",
            order.correlation_id,
            action,
            found.orderStatus,
            refusal.message,
        )
        return found


def _journal_status(value: str, what: str) -> JournalStatus:
    try:
        return _JOURNAL_STATUS[OrderStatus(value)]
    except (ValueError, KeyError):
        raise DhanError(f"{what}: status {value!r} is not a state of a plain order") from None


def _broker_order(found: DhanOrder) -> BrokerOrder:
    status = _journal_status(found.orderStatus, f"order {found.orderId}")
    filled = found.filledQty or 0
    average = found.averageTradedPrice if filled and found.averageTradedPrice else None
    reason = ""
    if status == JournalStatus.REJECTED:
        reason = found.omsErrorDescription or f"rejected by Dhan (code {found.omsErrorCode})"
    return BrokerOrder(found.orderId, status, filled, average, reason)


def _mismatch(order: Order, found: DhanOrder) -> str:
    """What differs between the journal's order and Dhan's ("" when they agree): correlation
    id, security, side, quantity (a modify keeps all of them)."""
    problems = []
    if found.correlationId not in (None, NOT_SET, order.correlation_id):
        problems.append(f"correlation id {found.correlationId}")
    if found.securityId is not None and found.securityId != str(order.security_id):
        problems.append(f"security {found.securityId}, not {order.security_id}")
    if found.transactionType is not None and found.transactionType != order.side:
        problems.append(f"side {found.transactionType}, not {order.side}")
    if found.quantity is not None and found.quantity != order.quantity:
        problems.append(f"quantity {found.quantity}, not {order.quantity}")
    return "; ".join(problems)


def live_gateway_from_settings() -> LiveGateway:
    """The live gateway on the REST client of Django's settings, only in live mode
    (``trading.mode.trading_mode``: PAPER_MODE=false, ENABLE_ORDER=true and credentials).
    ImproperlyConfigured otherwise, saying why: a paper system never builds one."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    from trading.mode import trading_mode

    mode = trading_mode()
    if not mode.live:
        raise ImproperlyConfigured(
            f"the live gateway sends real orders and is built only in live mode; this system "
            f"is in paper mode: {mode.reason}"
        )
    return LiveGateway(DhanRestClient.from_settings(), settings.DHANHQ_CLIENT_ID)
