"""URLs of the REST API, mounted at ``/api/``."""

from __future__ import annotations

from django.urls import path

from trading.api import views

urlpatterns = [
    path("config/", views.ConfigView.as_view(), name="api-config"),
    path("config/overrides/", views.OverridesView.as_view(), name="api-config-overrides"),
    path("signals/", views.SignalListView.as_view(), name="api-signals"),
    path("signals/<int:pk>/", views.SignalDetailView.as_view(), name="api-signal"),
    path("positions/", views.PositionListView.as_view(), name="api-positions"),
    path("positions/<int:pk>/", views.PositionDetailView.as_view(), name="api-position"),
    path("positions/<int:pk>/exit/", views.PositionExitView.as_view(), name="api-position-exit"),
    path("switches/", views.SwitchesView.as_view(), name="api-switches"),
]
