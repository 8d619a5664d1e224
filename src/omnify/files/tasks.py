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


async def _sweep() -> service.OrphanSweep:
    settings = get_settings()
    db = Database(settings)
    try:
        return await service.sweep_orphan_objects(db, service.storage_for(settings),
                                                  grace_seconds=settings.storage_orphan_grace_seconds)
    finally:
        await db.dispose()


@celery_app.task(name="omnify.files.sweep_orphans")
def sweep_orphans() -> dict[str, int]:
    """Delete stored objects no row names (an upload's process died between the two writes)."""
    swept = asyncio.run(_sweep())
    return {"scanned": swept.scanned, "orphans": swept.orphans, "deleted_bytes": swept.deleted_bytes,
            "partials": swept.partials}
