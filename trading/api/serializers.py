"""Serializers of the REST API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers

from trading.models import PositionTracker, TradingSignal
from trading.text import text_problem


class ConfigSerializer(serializers.Serializer):
    """The effective algo config: its version, its values (config/algo.yml layout), the
    overrides stored in the Setting ``algo.overrides`` and their version (what a PUT of the
    overrides names in If-Match)."""

    version = serializers.CharField(read_only=True)
    effective = serializers.DictField(read_only=True)
    overrides = serializers.JSONField(read_only=True)
    overrides_version = serializers.CharField(read_only=True)


class SignalSerializer(serializers.ModelSerializer):
    """One TradingSignal in the list: the decision without the bulky JSON. Datetimes are
    rendered in Asia/Kolkata (TIME_ZONE) with their offset; ``close`` is a decimal string."""

    class Meta:
        model = TradingSignal
        fields = [
            "id",
            "index",
            "timeframe",
            "candle_start",
            "close",
            "direction",
            "confidence",
            "reason",
            "outcome",
            "gate",
            "block_reason",
            "config_version",
            "decided_at",
            "created_at",
        ]
        read_only_fields = fields


class SignalDetailSerializer(SignalSerializer):
    """The list fields plus the indicator values the signal used and the sized entry intent
    (null until the decision got that far)."""

    class Meta(SignalSerializer.Meta):
        fields = [*SignalSerializer.Meta.fields, "indicators", "intent"]
        read_only_fields = fields


class PositionSerializer(serializers.ModelSerializer):
    """One PositionTracker. Money is a decimal string (rupees; prices per unit), never a float.
    ``ltp`` and ``unrealized_*`` are the database copy of the PnL cache (at most ~5 s old while
    the position is open); ``realized_pnl`` is net of all charges, set at exit."""

    key = serializers.SerializerMethodField(help_text="SEGMENT:SECURITY_ID of the contract")
    trading_symbol = serializers.CharField(source="derivative.trading_symbol", read_only=True)

    class Meta:
        model = PositionTracker
        fields = [
            "id",
            "status",
            "underlying",
            "direction",
            "key",
            "exchange_segment",
            "security_id",
            "trading_symbol",
            "quantity",
            "entry_price",
            "ltp",
            "unrealized_pnl",
            "unrealized_pnl_net",
            "pnl_percent",
            "peak_pnl",
            "trough_pnl",
            "pnl_updated_at",
            "realized_pnl",
            "signal",
            "config_version",
            "created_at",
            "exited_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_key(self, obj: PositionTracker) -> str:
        return obj.key


class StrictBooleanField(serializers.BooleanField):
    """A JSON ``true``/``false`` only. DRF's BooleanField also takes "yes", "0", "off", ...:
    for a switch that halts trading, a typo must be refused, not guessed."""

    default_error_messages = {"invalid": "Must be true or false (a JSON boolean)."}

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know (400 naming each), instead of silently ignoring a
    misspelt one: ``{"kill_swich": ...}`` must not answer 200 with nothing changed."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class OneLineTextField(serializers.CharField):
    """A JSON string of one line of printable text (trading/text.py: it is written into the
    audit lines of the log). DRF's CharField also takes a number and makes it text: a reason
    of ``5`` is a client's mistake, refused like any other wrong type."""

    default_error_messages = {"invalid": "Must be a JSON string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        problem = text_problem(data)
        if problem is not None:
            raise serializers.ValidationError(problem)
        return super().to_internal_value(data)


class KillSwitchSerializer(StrictSerializer):
    active = StrictBooleanField()
    reason = OneLineTextField(max_length=500, allow_blank=True, default="")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # Off has no reason: the admin clears it when it turns the switch off, and a reason
        # kept on an inactive switch reads as if it were on.
        if not attrs["active"] and attrs.get("reason", "").strip():
            raise serializers.ValidationError(
                {"reason": ["Only with active true: turning the kill switch off clears it."]}
            )
        return attrs


class SwitchesSerializer(StrictSerializer):
    """The operator's switches (trading.switches). Output: both. Input (PUT or PATCH): either
    or both, each replacing its stored value; at least one."""

    trading_enabled = StrictBooleanField(required=False)
    kill_switch = KillSwitchSerializer(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise serializers.ValidationError("Give trading_enabled and/or kill_switch.")
        return attrs
