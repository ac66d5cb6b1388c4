import os

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

from algo_scalper.startup import exit_on_config_error

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "algo_scalper.settings")
try:
    application = get_wsgi_application()
except ImproperlyConfigured as exc:
    # Exit code 4 is gunicorn's "App failed to load": its master stops instead of respawning
    # workers that can never start (any other code makes it retry them forever).
    exit_on_config_error(exc, code=4)
