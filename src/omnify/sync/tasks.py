"""Celery tasks of the sync domain (thin: the rules are in service.py)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from omnify.connections.connectors import ConnectorFactory
from omnify.core.db import Database
from omnify.jobs.celery_app import celery_app
from omnify.settings import get_settings
from omnify.sync import service


async def _run(org_id: str, connection_id: str, trigger: str) -> dict[str, Any]:
    settings = get_settings()
    db = Database(settings)
    try:
        result = await service.run_connection(db, ConnectorFactory(settings), uuid.UUID(org_id),
                                              uuid.UUID(connection_id), trigger=trigger)
    finally:
        await db.dispose()
    return {"status": result.status, "run_id": str(result.run_id) if result.run_id else None,
            "rows_read": result.rows_read, "rows_written": result.rows_written, "error_code": result.error_code,
            "reason": result.reason}


@celery_app.task(name="omnify.sync.run_connection")
def run_connection(org_id: str, connection_id: str, trigger: str = "schedule") -> dict[str, Any]:
    """Sync one connection. A platform rate limit (RateLimited) propagates: the task base
    retries it no sooner than the platform's Retry-After. Other failures are recorded on the
    run and the connection; the beat picks the connection up again after its backoff."""
    return asyncio.run(_run(org_id, connection_id, trigger))


async def _due() -> dict[str, int]:
    settings = get_settings()
    db = Database(settings)
    try:
        report = await service.enqueue_due(db)
    finally:
        await db.dispose()
    return {"organizations": report.organizations, "enqueued": report.enqueued, "due": len(report.connections)}


@celery_app.task(name="omnify.sync.run_due")
def run_due() -> dict[str, int]:
    """Beat: queue a sync for every connection whose next sync time has come."""
    return asyncio.run(_due())
