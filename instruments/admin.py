from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from instruments.models import CatalogImport, Derivative, Instrument


class ReadOnlyAdmin(admin.ModelAdmin):
    """Pages to look, never to write: these rows are written only by the importer."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# The security id column is a BigIntegerField: a longer number matches no row (and SQLite
# cannot even bind it: an OverflowError, a 500).
_SECURITY_ID_MAX = 2**63 - 1


def security_id_term(term: str) -> int | None:
    """The security id a search term names: ASCII digits within the column's range (``"²"`` or
    ``"①"`` are digits to ``str.isdigit`` but not to ``int``); None when it names none."""
    term = term.strip()
    if not (term.isascii() and term.isdigit()) or len(term) > len(str(_SECURITY_ID_MAX)):
        return None
    number = int(term)
    return number if number <= _SECURITY_ID_MAX else None


class ScripAdmin(ReadOnlyAdmin):
    """The catalog, searchable by symbol or security id."""

    search_fields = ["trading_symbol", "display_name", "symbol_name", "underlying_symbol"]
    list_per_page = 100
    show_full_result_count = False  # counting 250k rows on every page view is wasted work

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        """A numeric search term also matches the security id exactly."""
        results, distinct = super().get_search_results(request, queryset, search_term)
        security_id = security_id_term(search_term)
        if security_id is not None:
            results |= queryset.filter(security_id=security_id)
        return results, distinct


@admin.register(Instrument)
class InstrumentAdmin(ScripAdmin):
    list_display = [
        "trading_symbol",
        "display_name",
        "exchange_segment",
        "security_id",
        "instrument",
        "series",
        "lot_size",
        "tick_size",
        "is_active",
    ]
    list_filter = ["exchange", "exchange_segment", "instrument", "is_active"]


@admin.register(Derivative)
class DerivativeAdmin(ScripAdmin):
    list_display = [
        "trading_symbol",
        "exchange_segment",
        "security_id",
        "instrument",
        "expiry_date",
        "strike",
        "option_type",
        "lot_size",
        "tick_size",
        "underlying",
        "is_active",
    ]
    list_filter = [
        "exchange",
        "exchange_segment",
        "instrument",
        "option_type",
        "expiry_flag",
        ("expiry_date", admin.DateFieldListFilter),
        "is_active",
    ]
    list_select_related = ["underlying"]
    date_hierarchy = "expiry_date"


@admin.register(CatalogImport)
class CatalogImportAdmin(ReadOnlyAdmin):
    """The importer's log: each row is a fact about a run that happened."""

    list_display = [
        "started_at",
        "outcome",
        "source",
        "rows_read",
        "inserted",
        "updated",
        "removed",
        "flagged_inactive",
        "rejected_rows",
        "catalog_total",
        "duration_seconds",
    ]
    list_filter = ["outcome", ("started_at", admin.DateFieldListFilter)]
    search_fields = ["source", "fingerprint", "error"]
    date_hierarchy = "started_at"

    @admin.display(description="rejected")
    def rejected_rows(self, obj: CatalogImport) -> int:
        return obj.rejected_total

    @admin.display(description="catalog after")
    def catalog_total(self, obj: CatalogImport) -> int | None:
        return obj.totals.get("total")
