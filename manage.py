#!/usr/bin/env python
"""Django's command-line entry point for algo-scalper."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "algo_scalper.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    from algo_scalper.startup import exit_on_config_error

    try:
        # Load the settings before Django's command-line utility does: it swallows a settings
        # error, then fails later with a traceback ("Unknown command", or the error again).
        settings.INSTALLED_APPS  # noqa: B018 - the attribute access imports the settings
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        exit_on_config_error(exc)


if __name__ == "__main__":
    main()
