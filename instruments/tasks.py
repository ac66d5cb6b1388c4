"""Scheduled catalog refresh (beat: weekdays 08:00 IST, see CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from instruments.importer import ImportFailed, ImportOptions, import_catalog

log = logging.getLogger(__name__)


@shared_task(
    name="instruments.tasks.refresh_catalog",
    autoretry_for=(ImportFailed,),
    retry_backoff=300,  # 5, 10, 20 min: a failed 08:00 fetch still lands before the open
    retry_backoff_max=1200,
    max_retries=3,
)
def refresh_catalog(
    file: str | None = None, url: str | None = None, force: bool = False
) -> dict[str, Any]:
    """Thin: run the importer and return its summary."""
    result = import_catalog(ImportOptions(file=file, url=url, force=force))
    log.info("catalog refresh: %s (%s)", result.status, result.stats.get("source"))
    return {"status": result.status, **result.stats}
