"""Serializers of the REST API."""

from __future__ import annotations

from rest_framework import serializers


class ConfigSerializer(serializers.Serializer):
    """The effective algo config: its version, its values (config/algo.yml layout) and the
    overrides stored in the Setting ``algo.overrides``."""

    version = serializers.CharField(read_only=True)
    effective = serializers.DictField(read_only=True)
    overrides = serializers.JSONField(read_only=True)
