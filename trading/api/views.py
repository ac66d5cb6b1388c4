"""The REST API views.

* ``GET /api/config/`` and ``PUT /api/config/overrides/``: the algo config.
* ``GET /api/signals/`` (+ ``<id>/``), ``GET /api/positions/`` (+ ``<id>/``): read-only,
  newest first, limit/offset paginated, filtered by query parameters.
* ``GET``/``PUT``/``PATCH /api/switches/``: the trading switch and the kill switch.

Every 400 is keyed by the parameter or field at fault (DRF's ``{name: [messages]}``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import Any, ClassVar

from django.db import transaction
from django.db.models import Q, QuerySet
from rest_framework import generics, status
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config_schema import ConfigError
from trading.api.serializers import (
    ConfigSerializer,
    PositionSerializer,
    SignalDetailSerializer,
    SignalSerializer,
    SwitchesSerializer,
)
from trading.config.load import config_as_dict
from trading.config.store import effective_algo_config, save_overrides, stored_overrides
from trading.config.types import AlgoConfig
from trading.dhan.feed_codec import IST
from trading.models import (
    PositionStatus,
    PositionTracker,
    SignalDirection,
    SignalOutcome,
    TradingSignal,
)
from trading.switches import (
    set_kill_switch,
    set_trading_enabled,
    switches_state,
)

logger = logging.getLogger(__name__)


def _config_body(config: AlgoConfig, overrides: Any) -> dict[str, Any]:
    data = {"version": config.version, "effective": config_as_dict(config), "overrides": overrides}
    return ConfigSerializer(data).data


class ConfigView(APIView):
    """The effective config read now (file + stored overrides). 500 with ``errors`` when the
    file or the stored overrides are invalid (the processes would refuse to start)."""

    def get(self, request: Request) -> Response:
        try:
            config = effective_algo_config()
        except ConfigError as exc:
            return Response({"errors": exc.problems}, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
        return Response(_config_body(config, stored_overrides()))


class OverridesView(APIView):
    """PUT the whole override mapping (it replaces the stored one; ``{}`` clears it). Valid:
    200 with the new effective config. Invalid: 400 ``{"errors": [...]}``, nothing stored."""

    parser_classes = [JSONParser]

    def put(self, request: Request) -> Response:
        overrides = request.data
        try:
            config = save_overrides(overrides)
        except ConfigError as exc:
            return Response({"errors": exc.problems}, status=status.HTTP_400_BAD_REQUEST)
        return Response(_config_body(config, overrides))


# --- Lists: pagination and filters ------------------------------------------------------------


def _whole_param(request: Request, name: str, low: int, high: int | None, default: int) -> int:
    raw = _single_param(request, name)
    if raw is None or raw == "":
        return default
    top = "" if high is None else f" to {high}"
    number = int(raw) if raw.isascii() and raw.isdigit() else None
    if number is None or number < low or (high is not None and number > high):
        raise ValidationError({name: [f"expected a whole number from {low}{top}, got {raw!r}"]})
    return number


def _single_param(request: Request, name: str) -> str | None:
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise ValidationError({name: ["give this parameter at most once"]})
    return values[0] if values else None


class Pagination(LimitOffsetPagination):
    """``?limit=`` (1..500, default 50) and ``?offset=``. A bad value is a 400 naming the
    parameter: DRF's own fallback to the default would hide the client's mistake."""

    default_limit = 50
    max_limit = 500

    def get_limit(self, request: Request) -> int:
        return _whole_param(request, self.limit_query_param, 1, self.max_limit, self.default_limit)

    def get_offset(self, request: Request) -> int:
        return _whole_param(request, self.offset_query_param, 0, None, 0)


# Query parameters every list accepts besides its filters (``format``: DRF's ?format=json).
_PAGING_PARAMS = frozenset({"limit", "offset", "format"})
_SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9&_-]{0,31}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

Filter = Callable[[str], Q]


def _choice(field: str, choices: list[str]) -> Filter:
    def to_q(value: str) -> Q:
        if value not in choices:
            allowed = ", ".join(repr(c) for c in choices)
            raise ValueError(f"expected one of {allowed}, got {value!r}")
        return Q(**{field: value})

    return to_q


def _symbol(field: str) -> Filter:
    """An index symbol, case-insensitive (``nifty`` finds NIFTY). A well-formed symbol with no
    rows is an empty page, not an error: an index can leave the config and keep its history."""

    def to_q(value: str) -> Q:
        symbol = value.strip().upper()
        if not _SYMBOL.fullmatch(symbol):
            raise ValueError(f"expected an index symbol such as NIFTY, got {value!r}")
        return Q(**{field: symbol})

    return to_q


def _ist_date(field: str) -> Filter:
    """``YYYY-MM-DD``: the rows whose ``field`` falls on that calendar day in Asia/Kolkata
    (a range on the column, so the index serves it and the session time zone plays no part)."""

    def to_q(value: str) -> Q:
        try:
            if not _DATE.fullmatch(value):
                raise ValueError(value)
            day = date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"expected a date as YYYY-MM-DD, got {value!r}") from None
        start = datetime.combine(day, time.min, tzinfo=IST)
        return Q(**{f"{field}__gte": start, f"{field}__lt": start + timedelta(days=1)})

    return to_q


class FilteredListView(generics.ListAPIView):
    """A read-only list whose query parameters are exactly ``filters`` plus paging. An unknown
    parameter is a 400 (a misspelt filter must not answer with everything); a bad value is a
    400 naming its parameter, every bad one at once. An empty value means "no filter"."""

    pagination_class = Pagination
    #: query parameter -> its value as a Q; ValueError(message) for a bad value.
    filters: ClassVar[dict[str, Filter]] = {}

    def filter_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        params = self.request.query_params
        errors: dict[str, list[str]] = {
            name: ["unknown query parameter"]
            for name in sorted(set(params) - set(self.filters) - _PAGING_PARAMS)
        }
        for name, to_q in self.filters.items():
            if len(params.getlist(name)) > 1:
                errors[name] = ["give this parameter at most once"]
                continue
            value = params.get(name, "")
            if value == "":
                continue
            try:
                queryset = queryset.filter(to_q(value))
            except ValueError as exc:
                errors[name] = [str(exc)]
        if errors:
            raise ValidationError(errors)
        return queryset


# --- Signals ----------------------------------------------------------------------------------


class SignalListView(FilteredListView):
    """Newest candle first. Filters: ``index``, ``outcome``, ``direction`` and ``date`` (the
    IST calendar day of ``candle_start``)."""

    serializer_class = SignalSerializer
    filters: ClassVar[dict[str, Filter]] = {
        "index": _symbol("index"),
        "outcome": _choice("outcome", SignalOutcome.values),
        "direction": _choice("direction", SignalDirection.values),
        "date": _ist_date("candle_start"),
    }

    def get_queryset(self) -> QuerySet[TradingSignal]:
        return TradingSignal.objects.defer("indicators", "intent").order_by(
            "-candle_start", "index", "-id"
        )


class SignalDetailView(generics.RetrieveAPIView):
    """One signal with its indicator values and entry intent."""

    serializer_class = SignalDetailSerializer
    queryset = TradingSignal.objects.all()


# --- Positions --------------------------------------------------------------------------------


class PositionListView(FilteredListView):
    """Newest position first. Filters: ``status`` and ``underlying``. Read-only: positions
    change state only through the workers' conditional UPDATEs."""

    serializer_class = PositionSerializer
    filters: ClassVar[dict[str, Filter]] = {
        "status": _choice("status", PositionStatus.values),
        "underlying": _symbol("underlying"),
    }

    def get_queryset(self) -> QuerySet[PositionTracker]:
        return PositionTracker.objects.select_related("derivative").order_by("-created_at", "-id")


class PositionDetailView(generics.RetrieveAPIView):
    serializer_class = PositionSerializer
    queryset = PositionTracker.objects.select_related("derivative")


# --- Switches ---------------------------------------------------------------------------------


class SwitchesView(APIView):
    """GET: ``{"trading_enabled": bool, "kill_switch": {"active": bool, "reason": str}}``.
    PUT or PATCH (same meaning): ``trading_enabled`` and/or ``kill_switch`` (``active``
    required, ``reason`` optional), each replacing its stored value; 200 with the new state.
    400 naming the field for a bad or unknown field; nothing is stored then."""

    parser_classes = [JSONParser]

    def get(self, request: Request) -> Response:
        return Response(switches_state())

    def put(self, request: Request) -> Response:
        return self._update(request)

    def patch(self, request: Request) -> Response:
        return self._update(request)

    def _update(self, request: Request) -> Response:
        serializer = SwitchesSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        with transaction.atomic():  # both or neither
            if "kill_switch" in data:
                kill = data["kill_switch"]
                set_kill_switch(kill["active"], kill["reason"])
            if "trading_enabled" in data:
                set_trading_enabled(data["trading_enabled"])
        # An operator halting (or resuming) trading belongs in the log, with who did it.
        logger.warning("Switches set through the API by %s: %s", request.user, dict(data))
        return Response(switches_state())
