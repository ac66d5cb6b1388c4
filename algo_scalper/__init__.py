"""Django project shell for algo-scalper: settings, URLs, WSGI/ASGI and the Celery app."""

from algo_scalper.celery import app as celery_app

__all__ = ["celery_app"]
