"""Celery tasks of the clients domain (thin: the rules are in service.py)."""

from __future__ import annotations

import asyncio

from omnify.clients import service
from omnify.core.db import Database
from omnify.files.service import storage_for
from omnify.jobs.celery_app import celery_app
from omnify.settings import get_settings


async def _purge() -> dict[str, int]:
    settings = get_settings()
    db = Database(settings)
    try:
        report = await service.purge_archived_clients(db, storage_for(settings))
    finally:
        await db.dispose()
    return {"clients": report.clients, "objects": report.objects, "errors": len(report.errors)}


@celery_app.task(name="omnify.clients.purge_archived")
def purge_archived() -> dict[str, int]:
    """Purge clients archived more than 30 days ago, with their stored files (idempotent)."""
    return asyncio.run(_purge())
