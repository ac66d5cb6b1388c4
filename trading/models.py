"""Trading state that lives in the database: the truth for money-relevant state."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from django.core.validators import MaxValueValidator
from django.db import models

from trading.dhan.feed_codec import MAX_SECURITY_ID
from trading.orders.states import JournalStatus, PositionState
from trading.rules.market import instrument_key
from trading.rules.vocab import ENTRY_DIRECTIONS, Direction, ExitType, Gate

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
PositionExitType = _choices_of("PositionExitType", ExitType)


PositionStatus = _choices_of("PositionStatus", PositionState)
OrderStatus = _choices_of("OrderStatus", JournalStatus)


class TradingMode(models.TextChoices):
    PAPER = "paper", "Paper"
    LIVE = "live", "Live"


class OrderLeg(models.TextChoices):
    ENTRY = "entry", "Entry"
    EXIT = "exit", "Exit"


class OrderSide(models.TextChoices):
    BUY = "BUY", "Buy"
    SELL = "SELL", "Sell"


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
    mode = models.CharField(max_length=8, choices=TradingMode.choices, default=TradingMode.PAPER)
    # Market times (the feed's clock, never the wall's): when the entry was decided, when its
    # first unit filled, when its last exit unit filled. The day's caps and cooldowns count
    # these, so a simulated day counts as that day whatever the wall clock says.
    opened_at = models.DateTimeField(null=True, blank=True, help_text="market time")
    entry_at = models.DateTimeField(null=True, blank=True, help_text="market time")
    exited_at = models.DateTimeField(null=True, blank=True, help_text="market time")
    # What the exit rules carry from tick to tick, persisted so a restart keeps them (a
    # trailing stop never falls back to the initial one): premium per unit, rupees.
    underlying_entry = models.DecimalField(
        max_digits=14, decimal_places=4, null=True, blank=True, help_text="index at entry"
    )
    peak_premium = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    trough_premium = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    protective_stop = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    stop_rule = models.CharField(
        max_length=32, blank=True, help_text="the component that set the stop"
    )
    seconds_in_loss = models.FloatField(default=0.0)
    in_loss_at = models.DateTimeField(
        null=True, blank=True, help_text="market time of the last evaluation found in loss"
    )
    premium_high_at = models.DateTimeField(
        null=True, blank=True, help_text="market time of the last new premium high"
    )
    # The exit decision, recorded with the claim (active -> exiting).
    exit_trigger_price = models.DecimalField(
        max_digits=14, decimal_places=4, null=True, blank=True, help_text="the LTP decided on"
    )
    exit_inputs = models.JSONField(default=dict, blank=True, help_text="what the rule compared")
    exit_decided_at = models.DateTimeField(null=True, blank=True, help_text="market time")
    exit_tick_at = models.DateTimeField(
        null=True, blank=True, help_text="the deciding tick's exchange time"
    )
    # The outcome, set once the last exit unit fills.
    exit_price = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    gross_pnl = models.DecimalField(
        max_digits=16, decimal_places=2, null=True, blank=True, help_text="rupees, before charges"
    )
    charges = models.DecimalField(
        max_digits=16, decimal_places=2, default=0, help_text="rupees, entry and exit orders"
    )
    realized_pnl = models.DecimalField(
        max_digits=16,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="net of all charges, rupees; set at exit",
    )
    exit_type = models.CharField(max_length=32, choices=PositionExitType.choices, blank=True)
    exit_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["status"], name="position_status_idx"),
            models.Index(fields=["created_at"], name="position_created_idx"),
            models.Index(fields=["exited_at"], name="position_exited_idx"),
            models.Index(fields=["opened_at"], name="position_opened_idx"),
        ]
        constraints = [
            # One position per entry decision: a re-handed intent finds it instead of a twin.
            models.UniqueConstraint(
                fields=["signal"],
                condition=models.Q(signal__isnull=False),
                name="position_once_per_signal",
            )
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
                f"must be at most {FEED_MAX_SECURITY_ID}, the largest security id the feed carries",
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
        from trading.text import text_problem

        errors: dict[str, str] = {}
        try:
            segment_code(self.exchange_segment)
        except ValueError as exc:
            errors["exchange_segment"] = str(exc)
        if self.security_id is not None and self.security_id <= 0:
            errors["security_id"] = "must be a positive Dhan security id"
        # The label is logged with the subscriptions: one line of printable text.
        if problem := text_problem(self.label or ""):
            errors["label"] = f"the label holds {problem}"
        if errors:
            raise ValidationError(errors)


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


class Order(models.Model):
    """One order sent (or about to be sent) to a broker: the journal row, written BEFORE the
    send (status UNKNOWN), so a crash at any point leaves a row the next start resolves by its
    correlation id instead of sending again.

    A re-price ("chase") modifies the same broker order (Dhan keeps the order, its filled
    quantity and its place in the queue; a cancel-and-replace could fill twice in the window
    between the two): ``attempt`` counts the modifications. Past the broker's modification
    budget an exit cancels and re-places as a new row with the next ``generation`` (a new
    correlation id), only once the cancel is confirmed.
    """

    correlation_id = models.CharField(max_length=25, unique=True)
    position = models.ForeignKey(PositionTracker, on_delete=models.PROTECT, related_name="orders")
    leg = models.CharField(max_length=8, choices=OrderLeg.choices)
    leg_index = models.PositiveSmallIntegerField(help_text="index among the freeze-split orders")
    generation = models.PositiveSmallIntegerField(default=0, help_text="re-placements")
    attempt = models.PositiveSmallIntegerField(default=0, help_text="re-prices (modifies)")
    side = models.CharField(max_length=4, choices=OrderSide.choices)
    mode = models.CharField(max_length=8, choices=TradingMode.choices)
    exchange_segment = models.CharField(max_length=16)
    security_id = models.BigIntegerField()
    quantity = models.PositiveIntegerField(help_text="units")
    limit_price = models.DecimalField(max_digits=14, decimal_places=4)
    status = models.CharField(
        max_length=16, choices=OrderStatus.choices, default=JournalStatus.UNKNOWN.value
    )
    broker_order_id = models.CharField(max_length=40, blank=True)
    filled_quantity = models.PositiveIntegerField(default=0)
    average_price = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    charges = models.DecimalField(max_digits=16, decimal_places=2, default=0)
    rejection_reason = models.TextField(blank=True)
    placed_at = models.DateTimeField(help_text="market time of the journal write")
    priced_at = models.DateTimeField(help_text="market time of the last (re)price")
    sent_at = models.DateTimeField(null=True, blank=True, help_text="market time of the send")
    cancel_requested_at = models.DateTimeField(
        null=True, blank=True, help_text="market time a cancel was asked for"
    )
    final_at = models.DateTimeField(null=True, blank=True, help_text="market time")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["placed_at", "leg_index"]
        constraints = [
            models.UniqueConstraint(
                fields=["position", "leg", "leg_index", "generation"], name="order_once_per_slot"
            ),
            models.CheckConstraint(
                condition=models.Q(filled_quantity__lte=models.F("quantity")),
                name="order_fill_within_quantity",
            ),
        ]
        indexes = [
            models.Index(fields=["status"], name="order_status_idx"),
            models.Index(fields=["broker_order_id"], name="order_broker_id_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.correlation_id} {self.side} {self.quantity} {self.status}"

    @property
    def key(self) -> str:
        return instrument_key(self.exchange_segment, self.security_id)


class Fill(models.Model):
    """One trade of an order (a partial fill is its own row), with the charges it added: the
    order's charges computed on its filled quantity so far, minus those of the fills before,
    so the fills' charges sum to the order's exactly (brokerage once per executed order)."""

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="fills")
    trade_id = models.CharField(max_length=40, help_text="the broker's trade id")
    quantity = models.PositiveIntegerField()
    price = models.DecimalField(max_digits=14, decimal_places=4)
    charges = models.DecimalField(max_digits=16, decimal_places=2)
    traded_at = models.DateTimeField(help_text="market time")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["traded_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["order", "trade_id"], name="fill_once_per_trade")
        ]

    def __str__(self) -> str:
        return f"{self.order.correlation_id} {self.quantity} @ {self.price}"


class LedgerKind(models.TextChoices):
    OPENING = "opening", "Opening cash"
    PREMIUM = "premium", "Premium paid"
    PROCEEDS = "proceeds", "Proceeds"
    CHARGES = "charges", "Charges"


class LedgerEntry(models.Model):
    """The paper account: opening cash, then per fill the premium paid (buy, negative) or the
    proceeds (sell, positive) and the charges (negative). Written in the same transaction as
    the fill; ``trading.orders.ledger.check_ledger`` recomputes it from the fills alone."""

    kind = models.CharField(max_length=16, choices=LedgerKind.choices)
    amount = models.DecimalField(max_digits=18, decimal_places=2, help_text="rupees, signed")
    fill = models.ForeignKey(
        Fill, on_delete=models.PROTECT, null=True, blank=True, related_name="ledger"
    )
    position = models.ForeignKey(
        PositionTracker, on_delete=models.PROTECT, null=True, blank=True, related_name="ledger"
    )
    at = models.DateTimeField(help_text="market time")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["fill", "kind"],
                condition=models.Q(fill__isnull=False),
                name="ledger_once_per_fill_and_kind",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount}"


class MismatchKind(models.TextChoices):
    BROKER_ONLY = "broker_only", "Position at the broker only"
    DATABASE_ONLY = "database_only", "Open position in the database only"
    QUANTITY = "quantity", "Quantities differ"
    ORDER = "order", "Order state differs"


class ReconciliationMismatch(models.Model):
    """A difference between the broker and the database found by reconciliation: recorded,
    logged at ERROR and shown on /ready until a human resolves it. Never adopted or dropped
    silently."""

    kind = models.CharField(max_length=16, choices=MismatchKind.choices)
    exchange_segment = models.CharField(max_length=16)
    security_id = models.BigIntegerField()
    broker_quantity = models.IntegerField(null=True, blank=True)
    database_quantity = models.IntegerField(null=True, blank=True)
    detail = models.TextField()
    found_at = models.DateTimeField(help_text="market time")
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-found_at"]
        constraints = [
            # One open record per kind and contract: each reconciliation pass finds it again.
            models.UniqueConstraint(
                fields=["kind", "exchange_segment", "security_id"],
                condition=models.Q(resolved_at__isnull=True),
                name="mismatch_once_while_open",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.exchange_segment}:{self.security_id}"
