"""Celery tasks of the sync domain (thin: the rules are in service.py)."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

from omnify.connections.connectors import ConnectorFactory
from omnify.core.db import Database
from omnify.jobs.base import OmnifyTask
from omnify.jobs.celery_app import celery_app
from omnify.settings import get_settings
from omnify.sync import service

#: Tries of a task that found its connection locked by another run. The holder renews
#: its lease while it lives, so a try after the lease lapsed only fails again if that run
#: is alive and busy - and then it does the work itself: a few tries are enough.
LOCKED_RETRIES = 3
#: Added to the holder's remaining lease before trying again (clock and heartbeat slack).
LOCKED_SLACK_SECONDS = 1.0


async def _run(org_id: str, connection_id: str, trigger: str) -> service.RunResult:
    settings = get_settings()
    db = Database(settings)
    try:
        return await service.run_connection(db, ConnectorFactory(settings), uuid.UUID(org_id),
                                            uuid.UUID(connection_id), trigger=trigger)
    finally:
        await db.dispose()


def locked_countdown(locked_for: float) -> float:
    """When to try a locked connection again: just after the holder's lease lapses, with
    up to 10 % jitter so tasks queued for one connection do not come back in lockstep."""
    return locked_for + LOCKED_SLACK_SECONDS + random.uniform(0, 0.1 * max(locked_for, 1.0))  # noqa: S311


@celery_app.task(name="omnify.sync.run_connection", bind=True)
def run_connection(self: OmnifyTask, org_id: str, connection_id: str, trigger: str = "schedule") -> dict[str, Any]:
    """Sync one connection. A platform rate limit (RateLimited) propagates: the task base
    retries it no sooner than the platform's Retry-After. Other failures are recorded on the
    run and the connection; the beat picks the connection up again after its backoff.

    A connection locked by another run is tried again once that run's lease lapses: when
    the holder was a worker that died mid-run (this very message, redelivered after a
    SIGKILL), its lease is no longer renewed, so the retry takes the connection over,
    closes the dead run as abandoned and resumes from the saved cursors. Without the
    retry the message would be consumed and the run left ``running`` until the beat."""
    result = asyncio.run(_run(org_id, connection_id, trigger))
    if result.locked_for is not None and self.request.retries < LOCKED_RETRIES and not self.request.called_directly:
        raise self.retry(countdown=locked_countdown(result.locked_for), max_retries=LOCKED_RETRIES,
                         headers=dict(self.request.headers or {}))
    return {"status": result.status, "run_id": str(result.run_id) if result.run_id else None,
            "rows_read": result.rows_read, "rows_written": result.rows_written, "error_code": result.error_code,
            "reason": result.reason}


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
