"""URLs of the REST API, mounted at ``/api/``."""

from __future__ import annotations

from django.urls import path

from trading.api import views

urlpatterns = [
    path("config/", views.ConfigView.as_view(), name="api-config"),
    path("config/overrides/", views.OverridesView.as_view(), name="api-config-overrides"),
]
