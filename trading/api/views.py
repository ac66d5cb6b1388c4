"""The REST API views.

* ``GET /api/config/``, ``GET`` and ``PUT /api/config/overrides/``: the algo config and the
  operator's overrides (a PUT names the version it replaces in If-Match).
* ``GET /api/signals/`` (+ ``<id>/``), ``GET /api/positions/`` (+ ``<id>/``): read-only,
  newest first, limit/offset paginated, filtered by query parameters.
* ``GET``/``PUT``/``PATCH /api/switches/``: the trading switch and the kill switch.

Every 400 is keyed by the parameter or field at fault (DRF's ``{name: [messages]}``).
"""

from __future__ import annotations

import json
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
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config_schema import ConfigError
from trading.api.overrides import overrides_version
from trading.api.parsers import StrictJSONParser
from trading.api.serializers import (
    ConfigSerializer,
    PositionSerializer,
    SignalDetailSerializer,
    SignalSerializer,
    SwitchesSerializer,
)
from trading.config.load import OVERRIDES_KEY, OVERRIDES_SOURCE, config_as_dict
from trading.config.store import effective_algo_config, save_overrides, stored_overrides
from trading.config.types import AlgoConfig
from trading.models import (
    PositionStatus,
    PositionTracker,
    Setting,
    SignalDirection,
    SignalOutcome,
    TradingSignal,
)
from trading.rules.market import IST
from trading.switches import change_switches, switches_state
from trading.text import clip, text_problem

logger = logging.getLogger(__name__)


def _config_body(config: AlgoConfig, overrides: Any) -> dict[str, Any]:
    data = {
        "version": config.version,
        "effective": config_as_dict(config),
        "overrides": overrides,
        "overrides_version": overrides_version(overrides),
    }
    return ConfigSerializer(data).data


class ConfigView(APIView):
    """The effective config read now (file + stored overrides). 500 with ``errors`` when the
    file or the stored overrides are invalid (the processes would refuse to start)."""

    permission_model = Setting

    def get(self, request: Request) -> Response:
        try:
            config = effective_algo_config()
        except ConfigError as exc:
            return Response({"errors": exc.problems}, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
        return Response(_config_body(config, stored_overrides()))


def _problem(code: int, text: str, **extra: Any) -> Response:
    """A refused write: ``{"errors": ["Setting algo.overrides: ..."], **extra}``."""
    return Response({"errors": [f"{OVERRIDES_SOURCE}: {text}"], **extra}, status=code)


def _if_match(request: Request) -> list[str] | None:
    """The versions an If-Match header names (quotes optional); None when it names none."""
    raw = request.headers.get("If-Match", "")
    tags = [tag.strip() for tag in raw.split(",") if tag.strip()]
    tags = [tag[1:-1] if len(tag) > 1 and tag[0] == tag[-1] == '"' else tag for tag in tags]
    return [tag for tag in tags if tag != "*"] or None


def _shown_tags(tags: list[str]) -> str:
    """The versions a client named, as the answer quotes them back (at most 80 characters:
    a client's header is not echoed whole)."""
    return clip(", ".join(tags))


def _locked_overrides() -> Any:
    """The stored overrides, their row locked until the transaction ends (created as {}, the
    same as none, when missing), so a concurrent writer waits and then sees the new version.
    (SQLite: the IMMEDIATE transaction already holds the database's write lock.)"""
    Setting.objects.get_or_create(key=OVERRIDES_KEY, defaults={"value": {}})
    value = Setting.objects.select_for_update().get(key=OVERRIDES_KEY).value
    return {} if value is None else value


class OverridesView(APIView):
    """The operator's overrides of config/algo.yml (the Setting ``algo.overrides``).

    GET: ``{"overrides": {...}, "overrides_version": "..."}``, the version also as the ETag.
    PUT: the whole mapping, a JSON object (it replaces the stored one; ``{}`` clears it), with
    ``If-Match: "<overrides_version>"`` naming the version it replaces. Valid: 200 with the new
    effective config and the new version (ETag). Refused, with nothing stored:
    400 ``{"errors": [...]}`` for a body that is empty, not a JSON object or not a valid config;
    428 without If-Match; 412 when the overrides changed since that version was read (another
    operator saved meanwhile: GET them again, re-apply the change, retry). Both name the
    current version and show the current overrides.
    """

    parser_classes = [StrictJSONParser]
    permission_model = Setting

    def get(self, request: Request) -> Response:
        overrides = stored_overrides()
        version = overrides_version(overrides)
        body = {"overrides": overrides, "overrides_version": version}
        return Response(body, headers={"ETag": f'"{version}"'})

    def put(self, request: Request) -> Response:
        if request.stream is None:  # DRF reads an empty body as {}: "clear everything"
            return _problem(
                400, "(top level): the body is empty: send a JSON object ({} clears every override)"
            )
        overrides = request.data
        if not isinstance(overrides, dict):
            shown = clip(json.dumps(overrides))
            return _problem(400, f"(top level): expected a mapping of keys to values, got {shown}")
        wanted = _if_match(request)
        if wanted is None:
            current = stored_overrides()
            return _problem(
                428,
                "If-Match is required: send the overrides_version you read (GET "
                '/api/config/overrides/) as If-Match: "<version>", so that an edit saved '
                "meanwhile by someone else is not overwritten unknowingly",
                overrides_version=overrides_version(current),
                overrides=current,
            )
        with transaction.atomic():
            current = _locked_overrides()
            before = overrides_version(current)
            if before not in wanted:
                transaction.set_rollback(True)
                return _problem(
                    412,
                    f"the overrides changed since version {_shown_tags(wanted)} was read: they "
                    f"are now at version {before}; GET them again, re-apply your change and "
                    "retry",
                    overrides_version=before,
                    overrides=current,
                )
            try:
                config = save_overrides(overrides)
            except ConfigError as exc:
                # The config layer answers any JSON value with the config or a ConfigError
                # naming the key path (tests/trading/test_config_fuzz.py).
                transaction.set_rollback(True)
                return Response({"errors": exc.problems}, status=status.HTTP_400_BAD_REQUEST)
            # The version of what was stored, not of the body: the database may store a value
            # differently (PostgreSQL's jsonb keeps -0.0 as 0.0), and the next PUT's If-Match
            # is compared with the stored value's version.
            overrides = Setting.objects.get(key=OVERRIDES_KEY).value
        after = overrides_version(overrides)
        # Risk settings changed: who did it and which version replaced which, in the log.
        logger.warning(
            "Algo overrides replaced through the API by %s: version %s -> %s",
            request.user,
            before,
            after,
        )
        return Response(_config_body(config, overrides), headers={"ETag": f'"{after}"'})


# --- Lists: pagination and filters ------------------------------------------------------------


def _whole_param(request: Request, name: str, low: int, high: int, default: int) -> int:
    raw = _single_param(request, name)
    if raw is None or raw == "":
        return default
    # Length first: int() of thousands of digits raises, and the database refuses an offset
    # beyond its 64-bit integers.
    digits = raw.isascii() and raw.isdigit() and len(raw) <= len(str(high))
    number = int(raw) if digits else None
    if number is None or not low <= number <= high:
        shown = raw if len(raw) <= 40 else raw[:37] + "..."
        raise ValidationError(
            {name: [f"expected a whole number from {low} to {high}, got {shown!r}"]}
        )
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
    max_offset = 1_000_000_000

    def get_limit(self, request: Request) -> int:
        return _whole_param(request, self.limit_query_param, 1, self.max_limit, self.default_limit)

    def get_offset(self, request: Request) -> int:
        return _whole_param(request, self.offset_query_param, 0, self.max_offset, 0)


# Query parameters every list accepts besides its filters (no ``format``: the API is JSON only).
_PAGING_PARAMS = frozenset({"limit", "offset"})
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


# The days a date filter accepts: far wider than any trading history, and far inside what
# datetime and the databases hold (9999-12-31 + 1 day overflows, 0001-01-01 IST is year 0 UTC).
FIRST_DAY = date(2000, 1, 1)
LAST_DAY = date(2099, 12, 31)


def _ist_date(field: str) -> Filter:
    """``YYYY-MM-DD`` from FIRST_DAY to LAST_DAY: the rows whose ``field`` falls on that
    calendar day in Asia/Kolkata (a range on the column, so the index serves it and the
    session time zone plays no part)."""

    def to_q(value: str) -> Q:
        expected = f"expected a date as YYYY-MM-DD from {FIRST_DAY} to {LAST_DAY}"
        try:
            if not _DATE.fullmatch(value):
                raise ValueError(value)
            day = date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{expected}, got {value!r}") from None
        if not FIRST_DAY <= day <= LAST_DAY:
            raise ValueError(f"{expected}, got {value!r}")
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
    permission_model = TradingSignal
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
    permission_model = TradingSignal
    queryset = TradingSignal.objects.all()


# --- Positions --------------------------------------------------------------------------------


class PositionListView(FilteredListView):
    """Newest position first. Filters: ``status`` and ``underlying``. Read-only: positions
    change state only through the workers' conditional UPDATEs."""

    serializer_class = PositionSerializer
    permission_model = PositionTracker
    filters: ClassVar[dict[str, Filter]] = {
        "status": _choice("status", PositionStatus.values),
        "underlying": _symbol("underlying"),
    }

    def get_queryset(self) -> QuerySet[PositionTracker]:
        return PositionTracker.objects.select_related("derivative").order_by("-created_at", "-id")


class PositionDetailView(generics.RetrieveAPIView):
    serializer_class = PositionSerializer
    permission_model = PositionTracker
    queryset = PositionTracker.objects.select_related("derivative")


class PositionExitView(APIView):
    """POST ``{"reason": "..."}`` (optional, at most 200 characters): exit the position by
    hand. The position is claimed (active -> exiting, one caller wins) with exit type MANUAL;
    the order manager then sends its exit orders through the router, as for any exit. 202 with
    the position; 409 when it is not active (already exiting, exited, still pending); 404 for
    an unknown id. Needs the change permission on positions, as the admin's exit action."""

    parser_classes = [StrictJSONParser]
    permission_model = PositionTracker

    def post(self, request: Request, pk: int) -> Response:
        from trading.orders.journal import claim_exit
        from trading.rules.vocab import ExitType

        body = request.data if request.data is not None else {}
        if not isinstance(body, dict) or set(body) - {"reason"}:
            return Response(
                {"errors": ['expected {"reason": "..."} (optional) and nothing else']},
                status=status.HTTP_400_BAD_REQUEST,
            )
        reason = body.get("reason", "")
        if not isinstance(reason, str) or len(reason) > 200:
            return Response(
                {"reason": ["a text of at most 200 characters"]},
                status=status.HTTP_400_BAD_REQUEST,
            )
        problem = text_problem(reason)  # it is written into the audit line below
        if problem is not None:
            return Response({"reason": [problem]}, status=status.HTTP_400_BAD_REQUEST)
        position = PositionTracker.objects.filter(pk=pk).first()
        if position is None:
            return Response({"detail": "no such position"}, status=status.HTTP_404_NOT_FOUND)
        why = f"manual exit by {request.user}" + (f": {reason}" if reason else "")
        if not claim_exit(pk, ExitType.MANUAL, why):
            position.refresh_from_db()
            return Response(
                {"detail": f"position #{pk} is {position.status}, not active: not exited again"},
                status=status.HTTP_409_CONFLICT,
            )
        logger.warning("position #%d: %s (through the API)", pk, why)
        position.refresh_from_db()
        return Response(PositionSerializer(position).data, status=status.HTTP_202_ACCEPTED)


# --- Switches ---------------------------------------------------------------------------------


class SwitchesView(APIView):
    """GET: ``{"trading_enabled": bool, "kill_switch": {"active": bool, "reason": str}}``.
    PUT or PATCH (same meaning): ``trading_enabled`` and/or ``kill_switch`` (``active``
    required, ``reason`` optional), each replacing its stored value; 200 with the new state.
    400 naming the field for a bad or unknown field; nothing is stored then."""

    parser_classes = [StrictJSONParser]
    permission_model = Setting

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
        kill = data.get("kill_switch")
        # Both or neither, logged with who and from/to by change_switches.
        state = change_switches(
            str(request.user),
            "through the API",
            trading=data.get("trading_enabled"),
            kill=None if kill is None else (kill["active"], kill["reason"]),
        )
        return Response(state)
