"""Who may use the API: the same Django model permissions the admin enforces.

A staff account alone is not enough (the admin refuses a staff user without permissions, so
must the API). Reading needs the model's view or change permission (the admin's
has_view_permission), writing its change permission. Each view names its model in
``permission_model``; a view that names none is refused to everyone (fail closed).
"""

from __future__ import annotations

from typing import Any

from django.db.models import Model
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request


def _perm(model: type[Model], action: str) -> str:
    opts = model._meta
    return f"{opts.app_label}.{action}_{opts.model_name}"


class ModelPermission(BasePermission):
    """An active staff user holding the permission the admin requires for the view's model."""

    message = "You do not have permission to perform this action."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_active and user.is_staff):
            return False
        model: type[Model] | None = getattr(view, "permission_model", None)
        if model is None:
            return False
        if request.method in SAFE_METHODS:
            needed = [_perm(model, "view"), _perm(model, "change")]
            allowed = any(user.has_perm(name) for name in needed)
            wanted = f"{needed[0]} (or {needed[1]})"
        else:
            wanted = _perm(model, "change")
            allowed = user.has_perm(wanted)
        if not allowed:
            # DRF makes a permission instance per request, so this message is this request's.
            self.message = f"This needs the permission {wanted}, as in the admin."
        return allowed
