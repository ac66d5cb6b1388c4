from django.contrib import admin
from django.urls import include, path

from algo_scalper import views

# /api/...: a JSON 404 (a non-numeric id, an unknown path), as the API's own 404s are.
handler404 = "algo_scalper.views.not_found"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path("ready", views.ready, name="ready"),
    path("api/", include("trading.api.urls")),
]
