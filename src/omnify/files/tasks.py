"""Celery tasks of the files domain (thin: the rules are in service.py)."""

from __future__ import annotations

import asyncio

from omnify.core.db import Database
from omnify.files import service
from omnify.jobs.celery_app import celery_app
from omnify.settings import get_settings


async def _purge() -> int:
    settings = get_settings()
    db = Database(settings)
    try:
        return await service.purge_deleted_files(db, service.storage_for(settings))
    finally:
        await db.dispose()


@celery_app.task(name="omnify.files.purge_deleted")
def purge_deleted() -> dict[str, int]:
    """Remove the stored objects of deleted files, then their rows (idempotent)."""
    return {"files": asyncio.run(_purge())}
