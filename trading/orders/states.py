"""The order journal's state machine: a pure table, no Django, no I/O.

An order in the journal is in one of Dhan's order states (PROTOCOL.md 1.4: TRANSIT, PENDING,
PART_TRADED, TRADED, REJECTED, CANCELLED, EXPIRED) or in UNKNOWN: written before the send, its
outcome not yet known (not sent, or sent and the answer lost). UNKNOWN is resolved by looking
the correlation id up at the broker, never by sending again blindly.

An order never moves backwards. The states are ranked (UNKNOWN < TRANSIT < PENDING <
PART_TRADED < the final ones) and a transition must go up the ranks; a final state is never
left. Broker events arrive out of order (a late PENDING after TRADED, a REST answer after the
WebSocket's update): the late one is refused here and the caller logs and ignores it. The
database applies a transition as ``UPDATE ... WHERE status IN (sources(new))`` and checks the
row count, so two writers cannot both move one order.

Within PART_TRADED more fills arrive as updates of the same state: a fill moves the filled
quantity up, never down (the caller's conditional update carries ``filled_quantity < new``).

Positions (ARCHITECTURE.md "Position states"): pending -> active -> exiting -> exited, and
pending -> cancelled when no entry unit filled. Same rules: a table, conditional updates.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "FINAL",
    "WORKING",
    "JournalStatus",
    "PositionState",
    "can_move",
    "can_move_position",
    "is_final",
    "position_sources",
    "sources",
]


class JournalStatus(StrEnum):
    """An order's state in the journal: Dhan's, plus UNKNOWN before the send's outcome."""

    UNKNOWN = "UNKNOWN"
    TRANSIT = "TRANSIT"
    PENDING = "PENDING"
    PART_TRADED = "PART_TRADED"
    TRADED = "TRADED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"


FINAL = frozenset(
    {
        JournalStatus.TRADED,
        JournalStatus.REJECTED,
        JournalStatus.CANCELLED,
        JournalStatus.EXPIRED,
    }
)
# Orders that may still fill, be re-priced or need resolving.
WORKING = frozenset(JournalStatus) - FINAL

_RANK = {
    JournalStatus.UNKNOWN: 0,
    JournalStatus.TRANSIT: 1,
    JournalStatus.PENDING: 2,
    JournalStatus.PART_TRADED: 3,
    **{status: 4 for status in FINAL},
}


def is_final(status: str) -> bool:
    return status in FINAL


def can_move(current: str, new: str) -> bool:
    """True when an order in ``current`` may be put in ``new``: up the ranks, never out of a
    final state. The same state is not a transition (a further fill in PART_TRADED is an
    update of the filled quantity, checked by the caller)."""
    current, new = JournalStatus(current), JournalStatus(new)
    if current in FINAL:
        return False
    return _RANK[new] > _RANK[current]


def sources(new: str) -> tuple[JournalStatus, ...]:
    """The states from which ``new`` can be reached: the ``status IN (...)`` of the
    conditional UPDATE that applies it."""
    return tuple(s for s in JournalStatus if can_move(s, new))


class PositionState(StrEnum):
    """A position's life (``PositionTracker.status``)."""

    PENDING = "pending"  # entry orders journaled or working, nothing filled yet
    ACTIVE = "active"  # entry filled (all or part): open, watched by the exit rules
    EXITING = "exiting"  # claimed by one exit: its exit orders are working
    EXITED = "exited"  # every open unit sold; realized PnL booked
    CANCELLED = "cancelled"  # the entry ended with no unit filled


_POSITION_MOVES = {
    PositionState.PENDING: frozenset({PositionState.ACTIVE, PositionState.CANCELLED}),
    PositionState.ACTIVE: frozenset({PositionState.EXITING}),
    PositionState.EXITING: frozenset({PositionState.EXITED}),
    PositionState.EXITED: frozenset(),
    PositionState.CANCELLED: frozenset(),
}


def can_move_position(current: str, new: str) -> bool:
    return PositionState(new) in _POSITION_MOVES[PositionState(current)]


def position_sources(new: str) -> tuple[PositionState, ...]:
    """The position states from which ``new`` can be reached."""
    return tuple(s for s in PositionState if can_move_position(s, new))
