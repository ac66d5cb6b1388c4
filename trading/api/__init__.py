"""The REST API (DRF). Admin users only (REST_FRAMEWORK's default permission)."""
