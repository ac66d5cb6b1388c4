from django.contrib import admin
from django.urls import include, path

from algo_scalper import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path("ready", views.ready, name="ready"),
    path("api/", include("trading.api.urls")),
]
