"""``GET /api/config/`` and ``PUT /api/config/overrides/``."""

from __future__ import annotations

from typing import Any

from rest_framework import status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from trading.api.serializers import ConfigSerializer
from trading.config import (
    AlgoConfig,
    ConfigError,
    config_as_dict,
    effective_algo_config,
    save_overrides,
    stored_overrides,
)


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
