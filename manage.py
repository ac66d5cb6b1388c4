#!/usr/bin/env python
"""Django's command-line entry point for algo-scalper."""

import os
import re
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "algo_scalper.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line
    from django.core.management.base import CommandError
    from django.db import DatabaseError

    from algo_scalper.startup import exit_on_config_error

    try:
        # Load the settings before Django's command-line utility does: it swallows a settings
        # error, then fails later with a traceback ("Unknown command", or the error again).
        settings.INSTALLED_APPS  # noqa: B018 - the attribute access imports the settings
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        exit_on_config_error(exc)
    except CommandError as exc:
        # Raised while parsing the arguments (a type= check such as run_trader's --sim-date),
        # before Django's own handler of CommandError is in place: the same one line.
        sys.stderr.write(f"CommandError: {exc}\n")
        sys.stderr.flush()
        raise SystemExit(exc.returncode) from None
    except DatabaseError as exc:
        # Only what escapes a command: a database that cannot be reached, does not exist or is
        # not migrated. A running worker's own retries never get here.
        sys.stderr.write(database_error_line(exc, settings.DATABASE_URL) + "\n")
        sys.stderr.flush()
        raise SystemExit(1) from None


# "no such table: x" (SQLite), 'relation "x" does not exist' (PostgreSQL).
_UNMIGRATED = re.compile(
    r"no such table|relation \S+ does not exist|no such column|column \S+ does not exist"
)


def masked_database_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``: safe to print."""
    from config_schema.text import masked_url

    return masked_url(url)


def database_error_line(exc: BaseException, url: str) -> str:
    """A database error escaping a command as one line naming DATABASE_URL (password masked)."""
    from django.conf import settings

    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    for secret in getattr(settings, "SENSITIVE_VALUES", ()):
        # Whole words only: a short password must not turn "port" into "***ort".
        text = re.sub(rf"(?<![\w]){re.escape(secret)}(?![\w])", "***", text)
    text = text[:300] or type(exc).__name__
    where = f"DATABASE_URL {masked_database_url(url)}"
    if _UNMIGRATED.search(text):
        return (
            f"algo-scalper: database error: {where} is not migrated ({text}): "
            "run `manage.py migrate`"
        )
    return f"algo-scalper: database error: {where}: {text}"


if __name__ == "__main__":
    main()
