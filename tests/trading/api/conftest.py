"""Fixtures of the API tests: an authenticated admin client."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient


@pytest.fixture
def admin_api(django_user_model) -> APIClient:
    """An API client logged in as a superuser (the API is for staff only)."""
    api = APIClient()
    api.force_authenticate(django_user_model.objects.create_superuser("ops", "o@example.com", None))
    return api
