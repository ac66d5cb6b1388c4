"""Trading state that lives in the database: the truth for money-relevant state."""

from __future__ import annotations

from typing import Any

from django.db import models


class Setting(models.Model):
    """A named JSON value: operator overrides, switches and status records (e.g. import stats)."""

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
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["status"], name="position_status_idx")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.exchange_segment}:{self.security_id} {self.status}"
