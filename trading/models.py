"""Trading state that lives in the database: the truth for money-relevant state."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from django.core.validators import MaxValueValidator
from django.db import models

from trading.dhan.feed_codec import MAX_SECURITY_ID
from trading.rules.market import instrument_key
from trading.rules.vocab import ENTRY_DIRECTIONS, Direction, Gate

# The market feed's packet header carries the security id as a u32: a watchlist row above it
# could never be subscribed.
FEED_MAX_SECURITY_ID = MAX_SECURITY_ID


class Setting(models.Model):
    """A named JSON value: operator overrides, switches and worker status records (heartbeats)."""

    key = models.CharField(max_length=128, unique=True)
    value = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key

    @classmethod
    def get(cls, key: str, default: Any = None) -> Any:
        row = cls.objects.filter(key=key).values_list("value", flat=True).first()
        return default if row is None else row

    @classmethod
    def put(cls, key: str, value: Any) -> None:
        cls.objects.update_or_create(key=key, defaults={"value": value})


def _choices_of(name: str, members: Iterable[StrEnum]) -> type[models.TextChoices]:
    """Model choices built from a rules enum (trading.rules.vocab), never re-typed: the same
    values, labels read off them ("same_direction_open" -> "Same direction open")."""
    return models.TextChoices(
        name,
        [(m.name, (m.value, m.value.replace("_", " ").capitalize())) for m in members],
        module=__name__,
    )


SignalDirection = _choices_of("SignalDirection", Direction)
SignalGate = _choices_of("SignalGate", Gate)
PositionDirection = _choices_of("PositionDirection", ENTRY_DIRECTIONS)


class PositionStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    ACTIVE = "active", "Active"
    EXITING = "exiting", "Exiting"
    EXITED = "exited", "Exited"
    CANCELLED = "cancelled", "Cancelled"


class PositionTracker(models.Model):
    """One intraday position in one option contract.

    The contract is referenced with PROTECT: a catalog refresh never deletes a contract that a
    position (open or historical) points at; the importer flags it inactive instead.
    """

    derivative = models.ForeignKey(
        "instruments.Derivative", on_delete=models.PROTECT, related_name="positions"
    )
    exchange_segment = models.CharField(max_length=16)
    security_id = models.BigIntegerField()
    status = models.CharField(
        max_length=16, choices=PositionStatus.choices, default=PositionStatus.PENDING
    )
    quantity = models.PositiveIntegerField()
    entry_price = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    # The database copy of the PnL cache (workers/pnl.py): written at most every 5 s while the
    # position is open and once at exit. The live figures are in the cache (pnl:{id}).
    ltp = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    unrealized_pnl = models.DecimalField(
        max_digits=16, decimal_places=2, null=True, blank=True, help_text="gross, rupees"
    )
    unrealized_pnl_net = models.DecimalField(
        max_digits=16,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="net of the estimated exit charges, rupees",
    )
    pnl_percent = models.DecimalField(
        max_digits=10, decimal_places=4, null=True, blank=True, help_text="gross, % of entry"
    )
    peak_pnl = models.DecimalField(max_digits=16, decimal_places=2, null=True, blank=True)
    trough_pnl = models.DecimalField(max_digits=16, decimal_places=2, null=True, blank=True)
    pnl_updated_at = models.DateTimeField(null=True, blank=True)
    # What the entry gates read (trading/rules/gates.py): which index and which way, when it
    # closed and for how much. Kept on the row (not only through the contract) so a catalog
    # refresh can never change the history the risk limits are computed from.
    underlying = models.CharField(max_length=32, blank=True, help_text="index symbol: NIFTY")
    direction = models.CharField(
        max_length=8,
        choices=PositionDirection.choices,
        blank=True,
        help_text="bullish (CE) or bearish",
    )
    signal = models.ForeignKey(
        "trading.TradingSignal",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="positions",
    )
    config_version = models.CharField(max_length=16, blank=True)
    realized_pnl = models.DecimalField(
        max_digits=16,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="net of all charges, rupees; set at exit",
    )
    exited_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["status"], name="position_status_idx"),
            models.Index(fields=["created_at"], name="position_created_idx"),
            models.Index(fields=["exited_at"], name="position_exited_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.key} {self.status}"

    @property
    def key(self) -> str:
        """The contract's instrument key (``NSE_FNO:43225``): its ticks, its PnL, its feed."""
        return instrument_key(self.exchange_segment, self.security_id)


class WatchlistItem(models.Model):
    """An instrument the feed hub always subscribes, position or not.

    Keyed like the tick contract (``SEGMENT:SECURITY_ID``) rather than by a foreign key to the
    catalog: the four index rows are seeded by a migration, before any catalog import, and an
    entry must survive a catalog refresh. ``mode`` blank means the hub's default for the kind
    of instrument (full for options, ``DHANHQ_WS_MODE`` otherwise).
    """

    MODES = [("", "default"), ("ticker", "ticker"), ("quote", "quote"), ("full", "full")]

    exchange_segment = models.CharField(max_length=16)
    security_id = models.BigIntegerField(
        validators=[
            MaxValueValidator(
                FEED_MAX_SECURITY_ID,
                f"must be at most {FEED_MAX_SECURITY_ID}, the largest security id the feed "
                "carries",
            )
        ]
    )
    label = models.CharField(max_length=64, blank=True)
    mode = models.CharField(max_length=8, choices=MODES, blank=True, default="")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["exchange_segment", "security_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["exchange_segment", "security_id"], name="watchlist_segment_security_uniq"
            )
        ]

    def __str__(self) -> str:
        return f"{self.label or self.key}{'' if self.active else ' (inactive)'}"

    @property
    def key(self) -> str:
        return instrument_key(self.exchange_segment, self.security_id)

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        from trading.dhan.feed_codec import segment_code

        try:
            segment_code(self.exchange_segment)
        except ValueError as exc:
            raise ValidationError({"exchange_segment": str(exc)}) from None
        if self.security_id is not None and self.security_id <= 0:
            raise ValidationError({"security_id": "must be a positive Dhan security id"})


class SignalOutcome(models.TextChoices):
    PENDING = "pending", "Pending"  # row written, decision under way (or interrupted)
    AVOID = "avoid", "Avoid"  # no direction: nothing to enter
    BLOCKED = "blocked", "Blocked"  # a gate, the strike choice or sizing said no: see gate
    INTENT = "intent", "Intent"  # sized entry intent handed to the order router
    REJECTED = "rejected", "Rejected"  # the router refused the intent: see block_reason
    STALE = "stale", "Stale"  # the candle closed too long ago when the engine saw it


class TradingSignal(models.Model):
    """One evaluation of one index on one closed candle of the primary timeframe.

    The row is the record that the candle was processed: the unique constraint on (index,
    timeframe, candle_start) makes "at most once per index per candle" hold across restarts
    and across two engines racing for the same candle (the loser's INSERT fails).
    ``indicators`` holds the values the signal used; ``intent`` the sized entry (contract,
    lots, order quantities, prices) when the decision got that far.
    """

    index = models.CharField(max_length=32, help_text="index symbol: NIFTY")
    timeframe = models.PositiveIntegerField(help_text="candle length, seconds")
    candle_start = models.DateTimeField()
    close = models.DecimalField(max_digits=14, decimal_places=4, help_text="index close")
    direction = models.CharField(max_length=8, choices=SignalDirection.choices)
    confidence = models.FloatField(help_text="0..1")
    indicators = models.JSONField(default=dict, blank=True)
    reason = models.CharField(max_length=200, blank=True, help_text="why avoid")
    config_version = models.CharField(max_length=16)
    outcome = models.CharField(
        max_length=16, choices=SignalOutcome.choices, default=SignalOutcome.PENDING
    )
    gate = models.CharField(
        max_length=32, choices=SignalGate.choices, blank=True, help_text="the blocking gate"
    )
    block_reason = models.TextField(blank=True)
    intent = models.JSONField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True, help_text="market time")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-candle_start", "index"]
        constraints = [
            models.UniqueConstraint(
                fields=["index", "timeframe", "candle_start"], name="signal_once_per_candle"
            )
        ]
        indexes = [models.Index(fields=["outcome"], name="signal_outcome_idx")]

    def __str__(self) -> str:
        return f"{self.index} {self.candle_start:%Y-%m-%d %H:%M} {self.direction} {self.outcome}"
