"""The REST API (DRF). Staff users with the admin's model permissions (trading.api.permissions)."""
