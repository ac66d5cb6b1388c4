import os

from django.core.asgi import get_asgi_application
from django.core.exceptions import ImproperlyConfigured

from algo_scalper.startup import exit_on_config_error

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "algo_scalper.settings")
try:
    application = get_asgi_application()
except ImproperlyConfigured as exc:
    exit_on_config_error(exc, code=4)  # as in wsgi.py
