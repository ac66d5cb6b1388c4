"""The Celery app: configured from Django settings under the ``CELERY_`` namespace.

The broker is ``REDIS_URL``; without it (embedded mode) Celery falls back to an in-memory
broker and the embedded supervisor runs the scheduled jobs itself.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "algo_scalper.settings")

app = Celery("algo_scalper")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
