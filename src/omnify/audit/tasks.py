"""Celery tasks of the audit domain (thin: the rules are in service.py)."""

from __future__ import annotations

import asyncio
from dataclasses import asdict

from omnify.audit import service
from omnify.core.db import Database
from omnify.jobs.celery_app import celery_app
from omnify.notifications.runtime import current_settings
from omnify.ops.store import open_store


@celery_app.task(name="omnify.audit.export")
def export() -> dict[str, int]:
    """Nightly: new audit entries to cold storage, then the database retention."""
    settings = current_settings()

    async def work() -> dict[str, int]:
        # The owner role: audit rows of every organization, and the right to purge them.
        db = Database(settings, settings.resolved_migration_database_url)
        try:
            report = await service.export_to_cold_storage(db, open_store(settings.resolved_audit_export_url),
                                                          retention_days=settings.audit_retention_days)
        finally:
            await db.dispose()
        return asdict(report)

    return asyncio.run(work())
