"""algo_scalper.celery: the app is configured from CELERY_ settings; the catalog refresh is
scheduled on weekday mornings in market time and its task is found by autodiscovery."""

from __future__ import annotations

import copy
import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from celery.schedules import crontab

from algo_scalper import celery_app
from algo_scalper.celery import app
from tests.algo_scalper.conftest import TEST_SECRET_KEY

IST = ZoneInfo("Asia/Kolkata")
ENTRY = "refresh-instrument-catalog"
TASK = "instruments.tasks.refresh_catalog"


def test_the_package_exports_the_celery_app():
    assert celery_app is app
    assert app.main == "algo_scalper"


def test_the_app_reads_the_celery_settings(settings):
    conf = app.conf
    assert conf.broker_url == settings.CELERY_BROKER_URL
    assert conf.timezone == settings.CELERY_TIMEZONE == "Asia/Kolkata"
    assert conf.enable_utc is False
    assert conf.task_acks_late is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_connection_retry_on_startup is True
    assert conf.result_backend is None
    assert conf.beat_schedule == settings.CELERY_BEAT_SCHEDULE


def test_the_catalog_refresh_runs_at_0800_monday_to_friday():
    entry = app.conf.beat_schedule[ENTRY]
    schedule = entry["schedule"]
    assert entry["task"] == TASK
    assert isinstance(schedule, crontab)
    assert schedule.hour == {8}
    assert schedule.minute == {0}
    assert schedule.day_of_week == {1, 2, 3, 4, 5}  # crontab counts Sunday as 0


def bound_schedule(now: dt.datetime) -> crontab:
    """The beat entry's crontab as beat binds it (to the app), with a fixed 'now'."""
    schedule = copy.copy(app.conf.beat_schedule[ENTRY]["schedule"])
    schedule.app = app
    schedule.nowfun = lambda: now
    return schedule


LAST_RUN = dt.datetime(2025, 1, 3, 8, 0, tzinfo=IST)  # Friday 08:00 IST


@pytest.mark.parametrize(
    ("now", "due"),
    [
        (dt.datetime(2025, 1, 6, 8, 0, 30, tzinfo=IST), True),  # Monday 08:00:30 IST
        (dt.datetime(2025, 1, 6, 2, 30, 30, tzinfo=dt.UTC), True),  # the same instant in UTC
        (dt.datetime(2025, 1, 6, 7, 59, tzinfo=IST), False),  # Monday, a minute early
        (dt.datetime(2025, 1, 4, 8, 0, 30, tzinfo=IST), False),  # Saturday
        (dt.datetime(2025, 1, 5, 8, 0, 30, tzinfo=IST), False),  # Sunday
        (dt.datetime(2025, 1, 6, 8, 0, 30, tzinfo=dt.UTC), True),  # 13:30 IST Monday: late run
    ],
)
def test_the_catalog_refresh_is_due_by_indian_market_time(now, due):
    assert bound_schedule(now).is_due(LAST_RUN).is_due is due


def test_the_weekend_wait_runs_to_monday_0800_ist():
    saturday = dt.datetime(2025, 1, 4, 8, 0, tzinfo=IST)
    wait = bound_schedule(saturday).is_due(LAST_RUN).next
    assert saturday + dt.timedelta(seconds=wait) == dt.datetime(2025, 1, 6, 8, 0, tzinfo=IST)


def test_the_scheduled_task_is_registered_after_importing_instruments_tasks():
    import instruments.tasks

    assert instruments.tasks.refresh_catalog.name == TASK
    assert TASK in app.tasks


def test_autodiscovery_alone_registers_every_scheduled_task(run_settings_code):
    # A fresh interpreter, so nothing has imported instruments.tasks yet: this is what a
    # worker does at start (loader.import_default_modules fires the autodiscovery).
    code = (
        "import json, django\n"
        "django.setup()\n"
        "from algo_scalper.celery import app\n"
        f"before = {TASK!r} in app.tasks\n"
        "app.loader.import_default_modules()\n"
        "names = [e['task'] for e in app.conf.beat_schedule.values()]\n"
        "missing = [n for n in names if n not in app.tasks]\n"
        "print(json.dumps({'before': before, 'missing': missing}))\n"
    )
    result = run_settings_code({"DJANGO_SECRET_KEY": TEST_SECRET_KEY}, code).json()
    assert result == {"before": False, "missing": []}
