"""How an entry point (manage.py, the WSGI/ASGI app, Celery) reports a configuration error:
one line on stderr naming the problem, then a non-zero exit, never a traceback.

A configuration error (ImproperlyConfigured, raised by the settings' environment readers and
by Django itself) cannot heal by retrying: the operator has to fix a variable, and a 40-line
traceback hides the one line that says which.
"""

from __future__ import annotations

import sys
from typing import NoReturn

from django.core.exceptions import ImproperlyConfigured

PREFIX = "algo-scalper: configuration error: "


def config_error_line(exc: ImproperlyConfigured) -> str:
    """The message as one line (a multi-line message is joined, so log scrapers see it whole)."""
    return PREFIX + " ".join(part.strip() for part in str(exc).splitlines() if part.strip())


def exit_on_config_error(exc: ImproperlyConfigured, code: int = 1) -> NoReturn:
    sys.stderr.write(config_error_line(exc) + "\n")
    sys.stderr.flush()
    raise SystemExit(code)
