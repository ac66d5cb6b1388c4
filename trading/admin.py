"""trading admin: the Setting rows, with the algo-config overrides validated before they are
stored, and a read-only page showing the effective algo config."""

from __future__ import annotations

from typing import Any

import yaml
from django import forms
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from trading.config import (
    OVERRIDES_KEY,
    ConfigError,
    config_as_dict,
    effective_algo_config,
    load_algo_config,
    reload_algo_config,
)
from trading.models import Setting


class SettingForm(forms.ModelForm):
    """A Setting; the ``algo.overrides`` row must merge over config/algo.yml into a valid
    config, else every problem is shown on the value field and nothing is saved."""

    class Meta:
        model = Setting
        fields = ["key", "value"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("key") == OVERRIDES_KEY and "value" in cleaned:
            try:
                load_algo_config(None, cleaned["value"])
            except ConfigError as exc:
                self.add_error("value", list(exc.problems))
        return cleaned


@admin.register(Setting)
class SettingAdmin(admin.ModelAdmin):
    form = SettingForm
    list_display = ["key", "updated_at"]
    search_fields = ["key"]
    readonly_fields = ["updated_at"]
    change_list_template = "admin/trading/setting/change_list.html"

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
        own = [path("effective-config/", view, name="trading_setting_effective_config")]
        return own + super().get_urls()

    def effective_config_view(self, request: HttpRequest) -> HttpResponse:
        """Read-only: config/algo.yml with the stored overrides, as YAML, with its version
        (or the problems, when the file or the overrides are invalid)."""
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
