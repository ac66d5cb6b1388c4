"""trading admin.

* Setting rows, with the algo-config overrides validated before they are stored; the switch
  rows and the rows the workers write are read-only here (trading.switches.reserved_setting);
  a read-only page showing the effective algo config; a page to flip the trading switch and
  the kill switch (through trading.switches.change_switches, logged with who).
* TradingSignal and PositionTracker: view-only (the engines own them).
* WatchlistItem: editable, active/mode straight from the list.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from typing import Any

import yaml
from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.actions import delete_selected
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.admin.utils import unquote
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.db import connection, router, transaction
from django.db.models import QuerySet
from django.forms.fields import InvalidJSONInput, JSONString
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from config_schema import ConfigError
from trading.api.overrides import overrides_version
from trading.api.parsers import MAX_BODY_BYTES, JSONRefused, decode_json
from trading.config.load import OVERRIDES_KEY, config_as_dict
from trading.config.store import effective_algo_config, load_algo_config, reload_algo_config
from trading.login_throttle import locked, record_failure, refusal
from trading.models import (
    Fill,
    LedgerEntry,
    Order,
    PositionTracker,
    ReconciliationMismatch,
    Setting,
    TradingSignal,
    WatchlistItem,
)
from trading.rules.market import IST
from trading.switches import (
    SWITCH_KEYS,
    WORKER_KEY_PREFIXES,
    change_switches,
    reserved_setting,
    switches_state,
)
from trading.text import text_problem

logger = logging.getLogger(__name__)


def shown(text: str, limit: int = 80) -> str:
    """A client's text quoted in a message: ASCII-escaped and cut to ``limit`` characters (an
    error must not echo a 100,000-character input back, nor its control characters)."""
    if len(text) <= limit:
        return ascii(text)
    return f"{text[:limit]!a}... ({len(text)} characters)"


def _folded(key: str) -> str:
    return unicodedata.normalize("NFKC", key).casefold()


# The worker prefixes' stems ("kv", "orders"), each followed by a separator or nothing.
_WORKER_STEMS = re.compile(
    "^(?:{})(?:[\\W_]|$)".format("|".join(re.escape(p.rstrip(":.")) for p in WORKER_KEY_PREFIXES))
)


def setting_key_problem(key: str) -> str | None:
    """Why the Setting admin must not add a row ``key`` (None: it may): a reserved key
    (trading.switches.reserved_setting), or one an operator would take for a reserved row or
    the overrides: the same but for case, width or punctuation (``Trading.Switch``,
    ``trading_kill_switch``, ``KV:x``, ``kv``, ``orders``, ``Algo.Overrides``). Editing such a
    row, an operator would believe trading is off when it is not."""
    if problem := text_problem(key):
        return f"the key holds {problem}"
    if problem := reserved_setting(key):
        return problem
    folded = _folded(key)
    bare = re.sub(r"[\W_]+", "", folded)
    for reserved in sorted(SWITCH_KEYS | {OVERRIDES_KEY}):
        if key != reserved and bare == re.sub(r"[\W_]+", "", reserved):
            return (
                f"{shown(key)} differs from the key {reserved} only in case, width or "
                "punctuation: it would be taken for that row; choose a distinct key"
            )
    if _WORKER_STEMS.match(folded):
        return (
            f"{shown(key)} looks like a row the workers write "
            f"({', '.join(p + '*' for p in WORKER_KEY_PREFIXES)}): choose a distinct key"
        )
    return None


def parse_json_value(text: str) -> Any:
    """``text`` decoded by the API's rules (trading.api.parsers.decode_json), or
    ValidationError naming what is wrong: over MAX_BODY_BYTES, NaN or Infinity, a duplicate
    key (the last one would silently win), nesting deeper than MAX_DEPTH, an integer of more
    than MAX_INT_DIGITS digits, a lone surrogate or a NUL. Never a 500: json.loads raises
    RecursionError and ValueError besides JSONDecodeError, which decode_json names."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_BODY_BYTES:
        raise ValidationError(
            f"larger than {MAX_BODY_BYTES} bytes ({size}), the API's limit too", code="invalid"
        )
    try:
        return decode_json(text)
    except JSONRefused as exc:
        said = f"Enter a valid JSON value ({exc})" if exc.syntax else str(exc)
        raise ValidationError(said, code="invalid") from None


class ValueField(forms.JSONField):
    """The JSON editor of a Setting value, parsed by the API's rules (parse_json_value).

    ``{}`` and ``[]`` are values (``{}`` clears the overrides): only an empty box and null
    count as empty (Django's JSONField refused all four as "required"). A value redisplayed
    with its error may hold a lone surrogate (typed as the escape "\\ud800"): written back
    escaped, since no UTF-8 page can carry it (the default rendering would fail the whole
    page)."""

    empty_values = [None, ""]

    def to_python(self, value: Any) -> Any:
        if self.disabled or not isinstance(value, str):
            return value
        if value in self.empty_values:
            return None
        converted = parse_json_value(value)
        return JSONString(converted) if isinstance(converted, str) else converted

    def bound_data(self, data: Any, initial: Any) -> Any:
        # Django's own json.loads here would fail the redisplay as to_python did.
        if self.disabled:
            return initial
        if data is None:
            return None
        try:
            return parse_json_value(data)
        except ValidationError:
            return InvalidJSONInput(data)

    def prepare_value(self, value: Any) -> str:
        text = super().prepare_value(value)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return json.dumps(json.loads(text), indent=None, ensure_ascii=True)
        return text


def row_id(text: str, model: type[Any]) -> int | None:
    """The primary key ``text`` names: ASCII digits, positive, within the column's range on
    this database (SQLite cannot even bind a larger one: an OverflowError); None otherwise."""
    pk_type = model._meta.pk.get_internal_type()
    _, largest = connection.ops.integer_field_range(pk_type)
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(largest)):
        return None
    number = int(text)
    return number if 0 < number <= largest else None


class CheckedSelectionMixin:
    """Admin actions and the changelist's list_editable save, with the row ids the POST names
    checked first (Django passes them straight to ``pk__in``: ``abc`` or an empty id was a
    500, a 30-digit id one on SQLite). A malformed id: a message naming it, nothing done.
    An id with no row (deleted meanwhile, or typed): named ("no position #99999"); an action
    still runs on the rows that exist, a list save saves nothing."""

    # How a message names one row: "no position #99999".
    row_name = ""

    def _row_name(self) -> str:
        return self.row_name or str(self.model._meta.verbose_name)

    def _ids(self, request: HttpRequest, texts: list[str]) -> list[int] | None:
        ids, bad = [], []
        for text in texts:
            number = row_id(text, self.model)
            if number is None:
                bad.append(text)
            else:
                ids.append(number)
        if bad:
            self.message_user(
                request,
                f"Nothing done: not a {self._row_name()} id: "
                + ", ".join(shown(text) for text in bad[:5])
                + (f" and {len(bad) - 5} more" if len(bad) > 5 else ""),
                messages.ERROR,
            )
            return None
        return ids

    def _missing(self, queryset: QuerySet, ids: list[int]) -> list[int]:
        found = set(queryset.filter(pk__in=ids).values_list("pk", flat=True))
        return sorted(set(ids) - found)

    def _say_missing(self, request: HttpRequest, missing: list[int]) -> None:
        self.message_user(
            request,
            ", ".join(f"no {self._row_name()} #{pk}" for pk in missing[:20])
            + (f" and {len(missing) - 20} more" if len(missing) > 20 else ""),
            messages.WARNING,
        )

    def response_action(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        ids = self._ids(request, request.POST.getlist(helpers.ACTION_CHECKBOX_NAME))
        if ids is None:
            return None
        missing = self._missing(queryset, ids)
        if missing:
            self._say_missing(request, missing)
            if len(missing) == len(set(ids)) and request.POST.get("select_across") != "1":
                return None  # nothing selected exists: nothing to do
        return super().response_action(request, queryset)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if (
            request.method == "POST"
            and "_save" in request.POST
            and self.list_editable
            and self.has_change_permission(request)
            and not self._list_save_ok(request)
        ):
            return HttpResponseRedirect(request.get_full_path())
        return super().changelist_view(request, extra_context)

    def _list_save_ok(self, request: HttpRequest) -> bool:
        """The list save edits rows shown on the page: as many forms as rows it was sent with
        (it adds none), each naming a row that exists."""
        prefix = self.get_changelist_formset(request).get_default_prefix()
        total = request.POST.get(f"{prefix}-TOTAL_FORMS", "")
        initial = request.POST.get(f"{prefix}-INITIAL_FORMS", "")
        if not (total.isascii() and total.isdigit() and initial.isascii() and initial.isdigit()):
            return True  # Django's formset names a missing or bad management form itself
        if total != initial:
            self.message_user(
                request,
                f"Nothing saved: the list edits rows, it adds none ({shown(total)} forms sent "
                f"for {shown(initial)} rows)",
                messages.ERROR,
            )
            return False
        texts = [request.POST.get(f"{prefix}-{i}-id", "") for i in range(min(int(total), 1000))]
        ids = self._ids(request, texts)
        if ids is None:
            return False
        missing = self._missing(self.get_queryset(request), ids)
        if missing:
            self._say_missing(request, missing)
            self.message_user(
                request, "Nothing saved: reload the list and save again", messages.ERROR
            )
            return False
        return True


OVERRIDES_NEED_CHANGE = (
    f"Writing {OVERRIDES_KEY} (the risk limits and exits are in it) needs the permission "
    "trading.change_setting, as in the API"
)


class SettingForm(forms.ModelForm):
    """A Setting; the ``algo.overrides`` row must merge over config/algo.yml into a valid
    config, else every problem is shown on the value field and nothing is saved. A reserved
    key (a switch, a worker's row) cannot be added here."""

    # Required: an empty box or null would be stored as NULL, which the column refuses (a 500).
    value = ValueField(
        error_messages={
            "required": "Give a JSON value ({} for an empty mapping), not an empty box or null."
        }
    )

    # On the algo.overrides row only (SettingAdmin.get_fields): the version of the overrides
    # this page showed, so that saving it cannot silently overwrite an edit saved meanwhile
    # (through the API or another admin page), as the API's If-Match does.
    overrides_version = forms.CharField(widget=forms.HiddenInput, required=False)

    # Set by SettingAdmin.get_form: whether this user holds trading.change_setting, which
    # writing the overrides needs (as in the API), even when adding the row.
    may_write_overrides = False

    class Meta:
        model = Setting
        fields = ["key", "value"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "overrides_version" in self.fields and self.instance.pk is not None:
            self.fields["overrides_version"].initial = overrides_version(self.instance.value)

    def clean_overrides_version(self) -> str:
        seen = self.cleaned_data.get("overrides_version", "")
        if self.instance.pk is None or self.instance.key != OVERRIDES_KEY:
            return seen
        # Locked until the save commits (the admin's change view runs in one transaction;
        # SQLite's IMMEDIATE transactions hold the write lock already): two operators saving
        # at once cannot both pass this check and the second silently overwrite the first.
        stored = (
            Setting.objects.select_for_update()
            .filter(key=OVERRIDES_KEY)
            .values_list("value", flat=True)
            .first()
        )
        current = overrides_version(stored)
        if seen != current:
            raise forms.ValidationError(
                f"The overrides changed since you opened this page (they are now at version "
                f"{current}, you saw {shown(seen) if seen else 'none'}): reload the page, "
                "re-apply your change and save again."
            )
        return seen

    def clean_key(self) -> str:
        key = self.cleaned_data["key"]
        problem = setting_key_problem(key)
        if problem:
            raise forms.ValidationError(problem)
        if key == OVERRIDES_KEY and not self.may_write_overrides:
            raise forms.ValidationError(OVERRIDES_NEED_CHANGE)
        return key

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        key = cleaned.get("key", self.instance.key)
        if key == OVERRIDES_KEY and "value" in cleaned:
            try:
                load_algo_config(None, cleaned["value"])
            except ConfigError as exc:
                self.add_error("value", list(exc.problems))
        return cleaned


def _kill_switch_exits() -> str:
    """What the exit engine does with the open positions while the kill switch is on, as the
    effective algo config says (its kill-switch rule can be switched off)."""
    try:
        enabled = effective_algo_config().exits.kill_switch.enabled
    except ConfigError:
        enabled = None
    if enabled is False:
        return (
            "open positions are NOT flattened: the exit rule exits.kill_switch is switched off "
            "in the algo config; exit them with the positions' action \"Exit the selected "
            'positions"'
        )
    return (
        "the exit engine flattens every open position (exit type KILL_SWITCH) on its next "
        "1 s sweep and cancels the working entry orders of pending ones"
    )


def _delete_selected_but_the_overrides(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Setting]
) -> HttpResponse | None:
    """Django's bulk delete, refusing a selection that holds algo.overrides: that row is
    deleted on its own page, where the version you saw is checked (SettingAdmin.delete_view)."""
    if queryset.filter(key=OVERRIDES_KEY).exists():
        modeladmin.message_user(
            request,
            f"Nothing deleted: delete {OVERRIDES_KEY} from its own page, where the version of "
            "the overrides you saw is checked.",
            messages.ERROR,
        )
        return None
    return delete_selected(modeladmin, request, queryset)


class SwitchForm(forms.Form):
    action = forms.ChoiceField(
        choices=[
            ("trading_on", "turn trading on"),
            ("trading_off", "turn trading off"),
            ("kill_on", "activate the kill switch"),
            ("kill_off", "deactivate the kill switch"),
        ],
        # Django's message echoes the value whole: name the valid ones instead.
        error_messages={
            "invalid_choice": "not one of trading_on, trading_off, kill_on, kill_off",
            "required": "give one of trading_on, trading_off, kill_on, kill_off",
        },
    )
    reason = forms.CharField(required=False, max_length=500)

    def clean_reason(self) -> str:
        # Logged in the WARNING line that is the audit trail: a newline would let anyone who
        # may flip a switch append a forged line (trading.text).
        reason = self.cleaned_data["reason"]
        if problem := text_problem(reason):
            raise forms.ValidationError(f"the reason holds {problem}")
        return reason


@admin.register(Setting)
class SettingAdmin(CheckedSelectionMixin, admin.ModelAdmin):
    form = SettingForm
    list_display = ["key", "updated_at"]
    search_fields = ["key"]
    readonly_fields = ["updated_at"]
    change_list_template = "admin/trading/setting/change_list.html"

    def get_fields(self, request: HttpRequest, obj: Setting | None = None) -> list[str]:
        fields = ["key", "value", "updated_at"]
        if obj is not None and obj.key == OVERRIDES_KEY:
            fields.append("overrides_version")  # hidden: see SettingForm
        return fields

    def get_readonly_fields(self, request: HttpRequest, obj: Setting | None = None) -> list[str]:
        # A row keeps its key: renaming algo.overrides would drop the overrides unnoticed, and
        # renaming any row to a switch key would bypass the switches page.
        return ["key", "updated_at"] if obj is not None else ["updated_at"]

    def has_change_permission(self, request: HttpRequest, obj: Setting | None = None) -> bool:
        if obj is not None and reserved_setting(obj.key):
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Setting | None = None) -> bool:
        # Also refuses the changelist's bulk delete of a selection that holds such a row.
        if obj is not None and reserved_setting(obj.key):
            return False
        if obj is not None and obj.key == OVERRIDES_KEY:
            # Deleting the overrides clears every one of them: a write, as in the API.
            if not super().has_change_permission(request, obj):
                return False
        return super().has_delete_permission(request, obj)

    def get_form(
        self, request: HttpRequest, obj: Setting | None = None, change: bool = False, **kwargs: Any
    ) -> type[SettingForm]:
        form = super().get_form(request, obj, change, **kwargs)
        form.may_write_overrides = super().has_change_permission(request, obj)
        return form

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if "delete_selected" in actions:
            _, name, description = actions["delete_selected"]
            actions["delete_selected"] = (_delete_selected_but_the_overrides, name, description)
        return actions

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The algo.overrides row is deleted only at the version its page showed (the change
        form's check, the API's If-Match): deleting clears every override, and must not
        clear an edit saved meanwhile unseen. The row is locked from the check to the
        delete, as the API's PUT locks it."""
        with transaction.atomic(using=router.db_for_write(Setting)):
            obj = self.get_object(request, unquote(object_id))
            if obj is None or obj.key != OVERRIDES_KEY:
                return super().delete_view(request, object_id, extra_context)
            if request.method == "POST" and self.has_delete_permission(request, obj):
                current = overrides_version(
                    Setting.objects.select_for_update().get(pk=obj.pk).value
                )
                seen = request.POST.get("overrides_version", "")
                if seen != current:
                    self.message_user(
                        request,
                        f"Nothing deleted: the overrides changed since you opened this page "
                        f"(they are now at version {current}, you saw "
                        f"{shown(seen) if seen else 'none'}): look at them again and confirm.",
                        messages.ERROR,
                    )
                    return HttpResponseRedirect(request.get_full_path())
            context = {**(extra_context or {}), "overrides_version": overrides_version(obj.value)}
            return super().delete_view(request, object_id, context)

    def save_model(self, request: HttpRequest, obj: Setting, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if obj.key == OVERRIDES_KEY:
            reload_algo_config()  # this process at once; the workers on their next reload

    def delete_model(self, request: HttpRequest, obj: Setting) -> None:
        super().delete_model(request, obj)
        if obj.key == OVERRIDES_KEY:
            reload_algo_config()

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.effective_config_view)
        switches = self.admin_site.admin_view(self.switches_view)
        own = [
            path("effective-config/", view, name="trading_setting_effective_config"),
            path("switches/", switches, name="trading_setting_switches"),
        ]
        return own + super().get_urls()

    def switches_view(self, request: HttpRequest) -> HttpResponse:
        """The trading switch and the kill switch: their state as the entry gates read it, a
        button to flip each (POST, then back here with a message saying what now happens)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            if not self.has_change_permission(request):
                raise PermissionDenied
            form = SwitchForm(request.POST)
            if form.is_valid():
                self._flip(request, form.cleaned_data["action"], form.cleaned_data["reason"])
            else:
                messages.error(request, f"Nothing changed: {form.errors.as_text()}")
            return HttpResponseRedirect(reverse("admin:trading_setting_switches"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Trading switches",
            "state": switches_state(),
            "kill_switch_exits": _kill_switch_exits(),
            "can_change": self.has_change_permission(request),
        }
        return TemplateResponse(request, "admin/trading/setting/switches.html", context)

    def _flip(self, request: HttpRequest, action: str, reason: str) -> None:
        by, via = str(request.user), "in the admin"  # who and from/to: change_switches logs it
        if action == "trading_on":
            change_switches(by, via, trading=True)
            text = "Trading switched ON: new entries are allowed again (the gates still apply)."
        elif action == "trading_off":
            change_switches(by, via, trading=False)
            text = "Trading switched OFF: no new entries; open positions keep their exits."
        elif action == "kill_on":
            change_switches(by, via, kill=(True, reason.strip()))
            text = f"Kill switch ACTIVATED: no new entries; {_kill_switch_exits()}."
        else:
            change_switches(by, via, kill=(False, ""))
            text = "Kill switch deactivated; entries follow the trading switch again."
        messages.success(request, text)

    def effective_config_view(self, request: HttpRequest) -> HttpResponse:
        """Read-only: config/algo.yml with the stored overrides, as YAML, with its version
        (or the problems, when the file or the overrides are invalid)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Effective algo config",
        }
        try:
            config = effective_algo_config()
        except ConfigError as exc:
            context["problems"] = exc.problems
        else:
            context["version"] = config.version
            context["text"] = yaml.safe_dump(config_as_dict(config), sort_keys=False)
        return TemplateResponse(request, "admin/trading/setting/effective_config.html", context)


# --- Engine-owned records: view-only ----------------------------------------------------------


def _ist(moment: Any) -> str:
    return "-" if moment is None else f"{timezone.localtime(moment, IST):%Y-%m-%d %H:%M:%S}"


def _pretty_json(value: Any) -> str:
    if value is None:
        return "-"
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html("<pre>{}</pre>", text)


class ViewOnlyAdmin(CheckedSelectionMixin, admin.ModelAdmin):
    """Rows the engines write: an operator may look, never add, edit or delete (the history
    the risk limits and the reports are computed from must be what the engines recorded)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(TradingSignal)
class TradingSignalAdmin(ViewOnlyAdmin):
    list_display = [
        "index",
        "candle_start_ist",
        "direction",
        "confidence",
        "outcome",
        "gate",
        "config_version",
    ]
    list_filter = ["index", "direction", "outcome", "gate"]
    date_hierarchy = "candle_start"
    search_fields = ["block_reason", "reason"]
    list_per_page = 100
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "index",
                    "timeframe",
                    "candle_start_ist",
                    "close",
                    "direction",
                    "confidence",
                    "reason",
                    "config_version",
                ]
            },
        ),
        ("Decision", {"fields": ["outcome", "gate", "block_reason", "decided_at_ist"]}),
        ("Indicators", {"fields": ["indicators_json"]}),
        ("Entry intent", {"fields": ["intent_json"]}),
    ]
    readonly_fields = [
        "candle_start_ist",
        "decided_at_ist",
        "indicators_json",
        "intent_json",
    ]

    @admin.display(description="candle start (IST)", ordering="candle_start")
    def candle_start_ist(self, obj: TradingSignal) -> str:
        return _ist(obj.candle_start)

    @admin.display(description="decided at (IST, market time)")
    def decided_at_ist(self, obj: TradingSignal) -> str:
        return _ist(obj.decided_at)

    @admin.display(description="indicators")
    def indicators_json(self, obj: TradingSignal) -> str:
        return _pretty_json(obj.indicators)

    @admin.display(description="intent")
    def intent_json(self, obj: TradingSignal) -> str:
        return _pretty_json(obj.intent)


@admin.register(PositionTracker)
class PositionTrackerAdmin(ViewOnlyAdmin):
    """View-only, on purpose. Status, quantity, prices and PnL belong to the workers: every
    status change is a conditional UPDATE checked by row count (two exit engines cannot both
    exit one position), made together with an order in the journal. An admin edit would race
    those UPDATEs, or record a state (an "exited" with no exit order, a quantity the broker
    does not hold) that no order backs, and the daily loss limit would be computed from it.
    To close a position, use the action "Exit the selected positions" (or POST
    /api/positions/{id}/exit/): it claims the position like any exit, and the order manager
    sends its exit orders; it needs the change permission on positions."""

    actions = ["exit_positions"]
    row_name = "position"

    list_display = [
        "id",
        "status",
        "underlying",
        "direction",
        "contract",
        "quantity",
        "entry_price",
        "ltp",
        "unrealized_pnl_net",
        "realized_pnl",
        "created_at",
        "exited_at",
    ]
    list_filter = ["status", "underlying", "direction"]
    list_select_related = ["derivative"]
    search_fields = ["derivative__trading_symbol"]
    date_hierarchy = "created_at"

    @admin.display(description="contract", ordering="security_id")
    def contract(self, obj: PositionTracker) -> str:
        return obj.key

    def has_exit_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("trading.change_positiontracker")

    @admin.action(description="Exit the selected positions (manual exit)", permissions=["exit"])
    def exit_positions(self, request: HttpRequest, queryset: QuerySet[PositionTracker]) -> None:
        from trading.orders.journal import claim_exit
        from trading.rules.vocab import ExitType

        why = f"manual exit by {request.user} (admin)"
        claimed, skipped = [], []
        for position in queryset.order_by("pk"):
            if claim_exit(position.pk, ExitType.MANUAL, why):
                claimed.append(position.pk)
                logger.warning("position #%d: %s", position.pk, why)
            else:
                skipped.append(f"#{position.pk} ({position.status})")
        if claimed:
            self.message_user(
                request,
                f"{len(claimed)} position(s) claimed for a manual exit; the order manager "
                "sends their exit orders: " + ", ".join(f"#{pk}" for pk in claimed),
                messages.SUCCESS,
            )
        if skipped:
            self.message_user(
                request,
                "not active, not exited again: " + ", ".join(skipped),
                messages.WARNING,
            )


# --- The order journal: view-only ------------------------------------------------------------


@admin.register(Order)
class OrderAdmin(ViewOnlyAdmin):
    """The journal: each order as the router wrote it before the send and as the broker's
    events moved it. Never edited: a row is what happened."""

    list_display = [
        "correlation_id",
        "position",
        "leg",
        "side",
        "quantity",
        "limit_price",
        "status",
        "filled_quantity",
        "average_price",
        "charges",
        "attempt",
        "mode",
        "placed_at",
    ]
    list_filter = ["status", "leg", "side", "mode"]
    search_fields = ["correlation_id", "broker_order_id"]
    list_select_related = ["position"]


@admin.register(Fill)
class FillAdmin(ViewOnlyAdmin):
    list_display = ["order", "trade_id", "quantity", "price", "charges", "traded_at"]
    search_fields = ["order__correlation_id", "trade_id"]
    list_select_related = ["order"]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ViewOnlyAdmin):
    """The paper account (trading/orders/ledger.py): written with each paper fill."""

    list_display = ["at", "kind", "amount", "position", "fill"]
    list_filter = ["kind"]


@admin.register(ReconciliationMismatch)
class ReconciliationMismatchAdmin(ViewOnlyAdmin):
    """Differences reconciliation found between the broker and the journal. Open ones make
    /ready answer 503. An operator looks at the broker, settles the position there or in the
    journal's terms, then marks the row resolved (logged with who)."""

    list_display = [
        "kind",
        "exchange_segment",
        "security_id",
        "broker_quantity",
        "database_quantity",
        "found_at",
        "resolved_at",
        "resolved_by",
    ]
    list_filter = ["kind", ("resolved_at", admin.EmptyFieldListFilter)]
    actions = ["mark_resolved"]
    row_name = "mismatch"

    def has_resolve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("trading.change_reconciliationmismatch")

    @admin.action(description="Mark the selected mismatches resolved", permissions=["resolve"])
    def mark_resolved(
        self, request: HttpRequest, queryset: QuerySet[ReconciliationMismatch]
    ) -> None:
        now = timezone.now()
        open_rows = list(queryset.filter(resolved_at=None))
        for row in open_rows:
            logger.warning(
                "reconciliation mismatch %s %s:%s marked resolved by %s",
                row.kind,
                row.exchange_segment,
                row.security_id,
                request.user,
            )
        queryset.filter(resolved_at=None).update(resolved_at=now, resolved_by=str(request.user))
        self.message_user(request, f"{len(open_rows)} mismatch(es) marked resolved")


# --- Operator-owned: the watchlist ------------------------------------------------------------


class AsciiIntegerField(forms.IntegerField):
    """An integer written in ASCII digits: Django's IntegerField takes any Unicode digit
    (``int("٣")`` is 3), so an Arabic-Indic digit was stored as a security id."""

    def to_python(self, value: Any) -> int | None:
        if isinstance(value, str) and not value.strip().isascii():
            raise ValidationError("write it in ASCII digits (0-9)", code="invalid")
        return super().to_python(value)


class WatchlistItemForm(forms.ModelForm):
    """The add/change form and the list's row form. ``WatchlistItem.clean()`` names its
    errors by field; the list's form has only mode and active, and Django raises a
    ValueError (a 500) for an error on a field the form lacks (a row whose stored segment
    or label is bad): such errors are shown as the row's errors, with the field named."""

    class Meta:
        model = WatchlistItem
        fields = ["exchange_segment", "security_id", "label", "mode", "active"]
        field_classes = {"security_id": AsciiIntegerField}
        # Django's message echoes the value whole.
        error_messages = {"mode": {"invalid_choice": "not one of ticker, quote, full or blank"}}

    def _update_errors(self, errors: ValidationError) -> None:
        if hasattr(errors, "error_dict"):
            moved: dict[str, list[ValidationError]] = {}
            for field, field_errors in errors.error_dict.items():
                if field == NON_FIELD_ERRORS or field in self.fields:
                    moved.setdefault(field, []).extend(field_errors)
                else:
                    moved.setdefault(NON_FIELD_ERRORS, []).extend(
                        ValidationError(f"{field}: {message}")
                        for error in field_errors
                        for message in error.messages
                    )
            errors = ValidationError(moved)
        super()._update_errors(errors)


@admin.register(WatchlistItem)
class WatchlistItemAdmin(CheckedSelectionMixin, admin.ModelAdmin):
    """Instruments the feed hub always subscribes. The model's clean() refuses an unknown
    segment or a non-positive security id, in the form and in the list's inline edits."""

    list_display = ["key", "label", "exchange_segment", "security_id", "mode", "active"]
    list_display_links = ["key"]
    list_editable = ["mode", "active"]
    list_filter = ["active", "mode", "exchange_segment"]
    search_fields = ["label"]
    fields = ["exchange_segment", "security_id", "label", "mode", "active"]
    form = WatchlistItemForm

    def get_changelist_form(self, request: HttpRequest, **kwargs: Any) -> type[forms.ModelForm]:
        return super().get_changelist_form(request, form=WatchlistItemForm, **kwargs)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        """A numeric search term also matches the security id exactly."""
        results, distinct = super().get_search_results(request, queryset, search_term)
        security_id = row_id(search_term.strip(), WatchlistItem)  # a BigIntegerField too
        if security_id is not None:
            results |= queryset.filter(security_id=security_id)
        return results, distinct


class ThrottledLoginForm(AdminAuthenticationForm):
    """The admin's login with wrong passwords counted per (user name, client address), as the
    API's HTTP Basic counts them (trading/login_throttle.py): a pair that has used up its
    allowance is refused, saying so, without its password being checked."""

    def clean(self) -> dict[str, Any]:
        name = str(self.cleaned_data.get("username") or "")
        address = self.request.META.get("REMOTE_ADDR", "") if self.request is not None else ""
        if name and locked(name, address):
            raise forms.ValidationError(refusal(), code="throttled")
        try:
            return super().clean()
        except forms.ValidationError as exc:
            if name and exc.code == "invalid_login":
                record_failure(name, address)
            raise


admin.site.login_form = ThrottledLoginForm
