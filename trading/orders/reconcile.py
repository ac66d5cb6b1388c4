"""Reconciliation (live): the broker's positions against the journal's, every difference
recorded, never adopted or dropped silently (DOMAIN "Reconciliation").

The journal holds, per contract, the units its open live positions hold (entry fills less
exit fills of active and exiting positions). The broker's intraday positions are compared
with them. A contract with an order still working in the journal is left out of the pass: a
fill in flight (at the broker, not yet in our events) is not a mismatch, and the next pass
sees it settled. A difference is a ``ReconciliationMismatch`` row: a position only at the
broker, only in the journal, or with other quantities; logged at ERROR the first time, kept
open (``/ready`` answers 503 naming it) until an operator marks it resolved.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Sum

from trading.models import (
    Fill,
    MismatchKind,
    Order,
    OrderLeg,
    PositionTracker,
    ReconciliationMismatch,
    TradingMode,
)
from trading.orders.states import WORKING, PositionState
from trading.rules.market import instrument_key

logger = logging.getLogger(__name__)

__all__ = ["journal_positions", "open_mismatches", "reconcile"]

INTRADAY = "INTRADAY"


def journal_positions() -> dict[tuple[str, int], int]:
    """Units held per (segment, security id) by the open live positions of the journal."""
    held: dict[tuple[str, int], int] = {}
    open_ids = list(
        PositionTracker.objects.filter(
            mode=TradingMode.LIVE, status__in=(PositionState.ACTIVE, PositionState.EXITING)
        ).values_list("pk", "exchange_segment", "security_id")
    )
    for pk, segment, security_id in open_ids:
        fills = Fill.objects.filter(order__position_id=pk)
        bought = fills.filter(order__leg=OrderLeg.ENTRY).aggregate(t=Sum("quantity"))["t"] or 0
        sold = fills.filter(order__leg=OrderLeg.EXIT).aggregate(t=Sum("quantity"))["t"] or 0
        key = (segment, int(security_id))
        held[key] = held.get(key, 0) + bought - sold
    return {key: units for key, units in held.items() if units}


def reconcile(broker_positions: Iterable[Any], at: datetime) -> list[ReconciliationMismatch]:
    """Compare the broker's positions (``BrokerPosition``-like: segment, security id, net
    quantity, product) with the journal; record and return the new mismatches."""
    broker: dict[tuple[str, int], int] = {}
    for row in broker_positions:
        if row.product_type and row.product_type != INTRADAY:
            continue  # delivery or margin positions are not the system's
        key = (row.exchange_segment, int(row.security_id))
        broker[key] = broker.get(key, 0) + int(row.net_quantity)
    broker = {key: units for key, units in broker.items() if units}
    journal = journal_positions()
    in_flight = set(
        Order.objects.filter(mode=TradingMode.LIVE, status__in=WORKING).values_list(
            "exchange_segment", "security_id"
        )
    )
    found: list[ReconciliationMismatch] = []
    for key in sorted(set(broker) | set(journal)):
        if key in in_flight:
            continue
        at_broker, in_journal = broker.get(key), journal.get(key)
        if at_broker == in_journal:
            continue
        if in_journal is None:
            kind = MismatchKind.BROKER_ONLY
            detail = f"the broker holds {at_broker} units; the journal has no open position"
        elif at_broker is None:
            kind = MismatchKind.DATABASE_ONLY
            detail = f"the journal holds {in_journal} units; the broker has no position"
        else:
            kind = MismatchKind.QUANTITY
            detail = f"the broker holds {at_broker} units, the journal {in_journal}"
        mismatch = _record(kind, key, at_broker, in_journal, detail, at)
        if mismatch is not None:
            found.append(mismatch)
    return found


def _record(
    kind: str,
    key: tuple[str, int],
    at_broker: int | None,
    in_journal: int | None,
    detail: str,
    at: datetime,
) -> ReconciliationMismatch | None:
    segment, security_id = key
    try:
        with transaction.atomic():
            mismatch, created = ReconciliationMismatch.objects.get_or_create(
                kind=kind,
                exchange_segment=segment,
                security_id=security_id,
                resolved_at=None,
                defaults={
                    "broker_quantity": at_broker,
                    "database_quantity": in_journal,
                    "detail": detail,
                    "found_at": at,
                },
            )
    except IntegrityError:  # another reconciler recorded it first
        return None
    if not created:
        return None
    logger.error(
        "RECONCILIATION MISMATCH %s %s: %s (recorded, not adopted: an operator must look)",
        kind,
        instrument_key(segment, security_id),
        detail,
    )
    return mismatch


def open_mismatches() -> list[ReconciliationMismatch]:
    return list(ReconciliationMismatch.objects.filter(resolved_at=None).order_by("found_at"))
