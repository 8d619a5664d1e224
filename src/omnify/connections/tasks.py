"""Celery tasks of the connections domain (thin: the rules are in service.py)."""

from __future__ import annotations

import asyncio

from omnify.connections import service
from omnify.connections.connectors import ConnectorFactory
from omnify.core.db import Database
from omnify.jobs.celery_app import celery_app
from omnify.settings import get_settings


async def _refresh() -> dict[str, int]:
    settings = get_settings()
    db = Database(settings)
    try:
        report = await service.refresh_expiring(db, ConnectorFactory(settings))
    finally:
        await db.dispose()
    return {"checked": report.checked, "refreshed": report.refreshed, "needs_reauth": report.needs_reauth,
            "errors": len(report.errors)}


@celery_app.task(name="omnify.connections.refresh_expiring")
def refresh_expiring() -> dict[str, int]:
    """Beat: refresh platform tokens before they expire; a refusal marks the connection
    needs_reauth, e-mails the owners and emits connection.failed."""
    return asyncio.run(_refresh())
