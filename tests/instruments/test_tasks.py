"""instruments.tasks: the scheduled catalog refresh (in process, on the beat schedule, and on a
real Celery worker over the real Redis).

The module is not marked as a whole: the worker test needs Redis, which `make test` provides to
the PostgreSQL run only, so that one test is left out of the `-m catalog` SQLite run.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from celery.signals import task_postrun
from django.db import connection

from algo_scalper.celery import app as celery_app
from instruments.importer import ImportFailed
from instruments.models import Derivative, Instrument
from instruments.tasks import refresh_catalog

IST = ZoneInfo("Asia/Kolkata")


# -- in process ---------------------------------------------------------------------------------


@pytest.mark.catalog
@pytest.mark.django_db(transaction=True)
def test_refresh_catalog_imports_a_file_through_the_importer(compact_file):
    result = refresh_catalog.apply(kwargs={"file": str(compact_file)})

    summary = result.get()
    assert result.successful()
    assert (summary["status"], summary["accepted"], summary["inserted"]) == ("imported", 20, 20)
    assert summary["source"] == f"file {compact_file}"
    assert (
        Instrument.objects.get(exchange_segment="IDX_I", security_id=13).trading_symbol == "NIFTY"
    )
    assert Derivative.objects.count() == 15


@pytest.mark.catalog
@pytest.mark.django_db(transaction=True)
def test_refresh_catalog_skips_an_unchanged_file_unless_forced(compact_file):
    assert refresh_catalog.run(file=str(compact_file))["status"] == "imported"
    assert refresh_catalog.run(file=str(compact_file))["status"] == "unchanged"
    forced = refresh_catalog.run(file=str(compact_file), force=True)
    assert (forced["status"], forced["unchanged"]) == ("imported", 20)


@pytest.mark.catalog
@pytest.mark.django_db(transaction=True)
def test_refresh_catalog_downloads_dhans_file_by_default(compact_file, http_server, settings):
    settings.INSTRUMENTS_SCRIP_MASTER_URL = http_server.serve(
        "/api-scrip-master.csv", compact_file.read_bytes()
    )
    summary = refresh_catalog.apply().get()
    assert summary["accepted"] == 20
    assert http_server.requests == ["/api-scrip-master.csv"]


@pytest.mark.catalog
@pytest.mark.django_db(transaction=True)
def test_a_failed_refresh_is_retried_then_fails_leaving_the_catalog(compact_file, write_file):
    refresh_catalog.run(file=str(compact_file))
    html = write_file("page.csv", b"<html><body>Gateway Timeout</body></html>\n")

    # Eagerly, the retries run at once (no countdown); the last failure is the result.
    result = refresh_catalog.apply(kwargs={"file": str(html)})

    assert result.failed()
    assert isinstance(result.result, ImportFailed)
    assert "HTML page" in str(result.result)
    assert Derivative.objects.count() == 15
    assert refresh_catalog.max_retries == 3
    assert ImportFailed in refresh_catalog.autoretry_for


# -- the beat schedule --------------------------------------------------------------------------


@pytest.mark.catalog
def test_the_beat_schedule_runs_the_refresh_on_weekdays_at_eight_ist(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["refresh-instrument-catalog"]
    assert entry["task"] == refresh_catalog.name == "instruments.tasks.refresh_catalog"
    assert refresh_catalog.name in celery_app.tasks
    schedule = entry["schedule"]
    assert (schedule.hour, schedule.minute, schedule.day_of_week) == ({8}, {0}, {1, 2, 3, 4, 5})
    assert settings.CELERY_TIMEZONE == "Asia/Kolkata"
    assert celery_app.conf.timezone == "Asia/Kolkata"
    assert celery_app.conf.beat_schedule["refresh-instrument-catalog"]["task"] == entry["task"]


@pytest.mark.catalog
@pytest.mark.parametrize(
    ("now", "due", "next_in"),
    [
        # After Friday's 08:00 run: nothing at the weekend, next on Monday at 08:00 IST.
        (datetime(2026, 11, 27, 9, 0, tzinfo=IST), False, timedelta(days=2, hours=23)),
        (datetime(2026, 11, 28, 8, 0, 30, tzinfo=IST), False, timedelta(days=1, hours=23.99166)),
        (datetime(2026, 11, 30, 7, 59, tzinfo=IST), False, timedelta(minutes=1)),
        (datetime(2026, 11, 30, 8, 0, 30, tzinfo=IST), True, None),
    ],
    ids=["friday 09:00", "saturday 08:00", "monday 07:59", "monday 08:00"],
)
def test_the_refresh_is_due_at_eight_ist_on_weekdays_only(
    settings, time_machine, now, due, next_in
):
    schedule = settings.CELERY_BEAT_SCHEDULE["refresh-instrument-catalog"]["schedule"]
    schedule.app = celery_app
    time_machine.move_to(now, tick=False)

    state = schedule.is_due(datetime(2026, 11, 27, 8, 0, tzinfo=IST))

    assert state.is_due is due
    if next_in is not None:
        assert abs(state.next - next_in.total_seconds()) < 1


# -- a real worker over the real Redis ----------------------------------------------------------


@pytest.fixture
def celery_on_redis(redis_url: str, redis_client: object) -> Iterator[object]:
    """The project's Celery app with broker and result backend on the test Redis."""
    import celery.contrib.testing.tasks  # noqa: F401 - registers celery.ping for start_worker

    saved = {key: celery_app.conf[key] for key in ("broker_url", "result_backend")}

    def reset_connections() -> None:
        # Pools and backends built for the previous URLs must not be reused.
        if celery_app._pool is not None:
            celery_app._pool.force_close_all()
        celery_app._pool = None
        celery_app.amqp._producer_pool = None
        celery_app._backend_cache = None
        celery_app._local = threading.local()

    def close_worker_connection(**kwargs: object) -> None:
        # The worker thread's own database connection: closed after each task so the test
        # database can be flushed and dropped.
        connection.close()

    celery_app.conf.update(broker_url=redis_url, result_backend=redis_url)
    reset_connections()
    task_postrun.connect(close_worker_connection, weak=False)
    try:
        yield celery_app
    finally:
        task_postrun.disconnect(close_worker_connection)
        celery_app.conf.update(saved)
        reset_connections()


@pytest.mark.django_db(transaction=True)
def test_a_worker_on_redis_runs_the_refresh_sent_with_delay(celery_on_redis, compact_file):
    from celery.contrib.testing.worker import start_worker

    with start_worker(celery_on_redis, pool="solo", perform_ping_check=True):
        result = refresh_catalog.delay(file=str(compact_file))
        summary = result.get(timeout=60)

    assert (summary["status"], summary["accepted"]) == ("imported", 20)
    assert (
        Instrument.objects.get(exchange_segment="IDX_I", security_id=13).trading_symbol == "NIFTY"
    )
    assert Derivative.objects.filter(exchange_segment="BSE_FNO").count() == 2
