"""Celery tasks of operations: the backup freshness check."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from omnify.core.logging import get_logger
from omnify.jobs.celery_app import celery_app
from omnify.notifications.runtime import current_settings
from omnify.ops.backup import BackupStale, check_freshness
from omnify.ops.store import open_store

log = get_logger(__name__)


@celery_app.task(name="omnify.backup.check")
def check() -> dict[str, Any]:
    """Hourly: the newest backups in OMNIFY_BACKUP_URL are fresh, or the task fails loudly.

    Without a configured store there is nothing to check: fine on a laptop, an error in
    production (backups that nobody watches are backups nobody has).
    """
    settings = current_settings()
    if not settings.backup_url:
        if settings.is_production:
            raise BackupStale("OMNIFY_BACKUP_URL is not set: nothing checks that backups exist")
        log.info("backup.check_skipped", reason="OMNIFY_BACKUP_URL is not set")
        return {"status": "not-configured"}
    store = open_store(settings.backup_url)
    try:
        found = check_freshness(store, sqlite=settings.is_sqlite,
                                max_age=timedelta(hours=settings.backup_max_age_hours),
                                wal_max_age=timedelta(minutes=settings.backup_wal_max_age_minutes))
    except BackupStale as exc:
        log.error("backup.stale", store=store.url, error=str(exc))
        raise
    return {"status": "fresh", **{f.kind: f.newest.isoformat() for f in found if f.newest is not None}}
