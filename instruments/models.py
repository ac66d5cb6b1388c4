"""The instrument catalog, as imported from Dhan's scrip master.

Two tables: ``Instrument`` for what has no expiry (indices, equities, ETFs, ...) and
``Derivative`` for options and futures, each keyed by (exchange segment, security id), the pair
every Dhan API and feed packet uses. Rows are written only by ``instruments.importer`` (set-based
SQL); nothing here computes trading maths. ``CatalogImport`` is the importer's own log: one row
per import that wrote the catalog or was refused.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class ExchangeSegment(models.TextChoices):
    IDX_I = "IDX_I", "Index"
    NSE_EQ = "NSE_EQ", "NSE equity"
    NSE_FNO = "NSE_FNO", "NSE F&O"
    NSE_CURRENCY = "NSE_CURRENCY", "NSE currency"
    BSE_EQ = "BSE_EQ", "BSE equity"
    BSE_FNO = "BSE_FNO", "BSE F&O"
    BSE_CURRENCY = "BSE_CURRENCY", "BSE currency"
    MCX_COMM = "MCX_COMM", "MCX commodity"


class OptionType(models.TextChoices):
    CALL = "CE", "Call"
    PUT = "PE", "Put"
    NONE = "", "None"


class Scrip(models.Model):
    """Columns every scrip-master row has. ``tick_size`` is in rupees (the file mixes units)."""

    exchange = models.CharField(max_length=8, help_text="NSE, BSE or MCX")
    segment = models.CharField(max_length=1, help_text="scrip-master letter: I, E, D, C, M")
    exchange_segment = models.CharField(max_length=16, choices=ExchangeSegment.choices)
    security_id = models.BigIntegerField()
    instrument = models.CharField(
        max_length=16, help_text="instrument code: INDEX, EQUITY, OPTIDX, FUTIDX, OPTSTK, ..."
    )
    instrument_type = models.CharField(
        max_length=16, blank=True, help_text="exchange instrument type: OP, OPTIDX, FUT, ES, ..."
    )
    trading_symbol = models.CharField(max_length=64)
    display_name = models.CharField(max_length=128, blank=True)
    symbol_name = models.CharField(max_length=128, blank=True)
    isin = models.CharField(max_length=12, blank=True)
    series = models.CharField(max_length=8, blank=True)
    lot_size = models.PositiveIntegerField()
    tick_size = models.DecimalField(max_digits=12, decimal_places=4, help_text="rupees")
    underlying_security_id = models.BigIntegerField(null=True, blank=True)
    underlying_symbol = models.CharField(max_length=64, blank=True)
    is_active = models.BooleanField(
        default=True,
        help_text="false once the contract left the scrip master but something still refers to it",
    )
    removed_at = models.DateTimeField(null=True, blank=True)
    row_hash = models.CharField(max_length=32, editable=False)
    created_at = models.DateTimeField(editable=False)
    updated_at = models.DateTimeField(editable=False)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.trading_symbol} ({self.key})"

    @property
    def key(self) -> str:
        """The instrument key of the tick contract: ``SEGMENT:SECURITY_ID``."""
        return f"{self.exchange_segment}:{self.security_id}"


class Instrument(Scrip):
    """Indices, equities and every other contract without an expiry."""

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["exchange_segment", "security_id"], name="instrument_segment_security_uniq"
            )
        ]
        indexes = [
            models.Index(
                fields=["instrument", "trading_symbol"], name="instrument_code_symbol_idx"
            ),
            models.Index(fields=["trading_symbol"], name="instrument_symbol_idx"),
        ]


class Derivative(Scrip):
    """Options and futures. ``underlying`` links to the index or equity they are written on."""

    underlying = models.ForeignKey(
        Instrument,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="derivatives",
        db_index=False,  # derivative_chain_idx leads with it; a second index only slows imports
        # A derived link the importer resolves on every import (and never leaves dangling: it
        # deletes no instrument that a derivative points at). A database FK would add a
        # deferred per-row check at commit, ~25% of a fresh 250k-row import. PROTECT still
        # guards ORM deletes.
        db_constraint=False,
    )
    expiry_date = models.DateField()
    expiry_at = models.DateTimeField(help_text="expiry moment (IST in the file, stored aware)")
    strike = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    option_type = models.CharField(max_length=2, choices=OptionType.choices, blank=True)
    expiry_flag = models.CharField(max_length=1, blank=True, help_text="W weekly, M monthly")
    expiry_code = models.SmallIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["exchange_segment", "security_id"], name="derivative_segment_security_uniq"
            )
        ]
        indexes = [
            # expiries(), strikes(), option_contract(), nearest_strike() all narrow by underlying
            # and expiry first (a few hundred rows remain). Wider keys (option type, strike)
            # measured ~1.5 s more per fresh 250k-row import for no query that needs them.
            models.Index(fields=["underlying", "expiry_date"], name="derivative_chain_idx"),
        ]

    @property
    def is_option(self) -> bool:
        return self.option_type in (OptionType.CALL, OptionType.PUT)


class CatalogImport(models.Model):
    """One run of the importer: the catalog was imported, or the run failed and nothing changed.

    A file identical to the last import (same fingerprint) writes nothing, here neither: the
    latest ``imported`` row is what the catalog holds, and its ``started_at`` is the catalog's age.
    """

    class Outcome(models.TextChoices):
        IMPORTED = "imported", "Imported"
        FAILED = "failed", "Failed (catalog unchanged)"

    started_at = models.DateTimeField(
        help_text="when the run began; the catalog rows it wrote carry this time"
    )
    finished_at = models.DateTimeField()
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    source = models.TextField(help_text="the file or URL read (and whether from the cache)")
    file_format = models.CharField(max_length=64, blank=True, help_text="compact or detailed")
    fingerprint = models.CharField(
        max_length=64, blank=True, help_text="SHA-256 of the file and the normaliser settings"
    )
    rows_read = models.PositiveIntegerField(default=0)
    accepted = models.PositiveIntegerField(default=0)
    inserted = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    removed = models.PositiveIntegerField(default=0, help_text="deleted: left the file")
    flagged_inactive = models.PositiveIntegerField(
        default=0, help_text="left the file but still referenced (kept, flagged inactive)"
    )
    kept_rejected = models.PositiveIntegerField(
        default=0,
        help_text="stored contracts whose rows were rejected: kept as they were, not removed",
    )
    rejected = models.JSONField(default=dict, blank=True, help_text="malformed rows by reason")
    dropped = models.JSONField(
        default=dict, blank=True, help_text="rows skipped on purpose (test symbols, exchanges)"
    )
    rejected_samples = models.JSONField(default=list, blank=True)
    totals = models.JSONField(
        default=dict, blank=True, help_text="active contracts after the import: total, by segment"
    )
    phases_seconds = models.JSONField(default=dict, blank=True)
    duration_seconds = models.FloatField(default=0)
    warnings = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True, help_text="why a failed run changed nothing")

    class Meta:
        ordering = ["-started_at", "-id"]
        get_latest_by = ["started_at", "id"]

    def __str__(self) -> str:
        return f"{self.outcome} {timezone.localtime(self.started_at).isoformat(timespec='seconds')}"

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())
