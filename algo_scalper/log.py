"""Logging helpers: a formatter that never lets a secret reach the log stream.

Redaction happens on the fully formatted record (message, arguments and traceback), so a token
that ends up inside an exception message or a URL is masked too.
"""

from __future__ import annotations

import logging
import re

# Dhan access tokens are JWTs; the feed URL carries the token as a query parameter; database
# URLs carry a password. Each pattern keeps its ``pre``/``post`` groups and masks what is between.
_PATTERNS = (
    re.compile(r"(?P<pre>)eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*(?P<post>)"),
    re.compile(r"(?i)(?P<pre>token=)[^&\s'\"]+(?P<post>)"),
    re.compile(r"(?i)(?P<pre>access-token['\"]?\s*[:=]\s*['\"]?)[^'\"\s,}]+(?P<post>)"),
    re.compile(r"(?P<pre>://[^:/@\s]*:)[^@\s]+(?P<post>@)"),  # user optional: redis://:pw@
)
MASK = "***"


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with every known secret value and every token-looking string masked."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(r"\g<pre>" + MASK + r"\g<post>", text)
    return text


def sensitive_values() -> tuple[str, ...]:
    """Secret values from settings (read lazily: logging is configured before settings finish)."""
    from django.conf import settings

    try:
        return tuple(v for v in getattr(settings, "SENSITIVE_VALUES", ()) if v)
    except Exception:  # settings not configured yet (e.g. while they are being loaded)
        return ()


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), sensitive_values())
