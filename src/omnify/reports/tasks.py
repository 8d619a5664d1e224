"""Celery tasks of the reports domain: thin wrappers around the async services."""

from __future__ import annotations

import omnify.models  # noqa: F401  - every mapper, so cross-domain foreign keys resolve in workers
from omnify.core.db import Database
from omnify.jobs.celery_app import celery_app
from omnify.notifications import runtime
from omnify.reports import service
from omnify.settings import Settings


@celery_app.task(name="omnify.reports.send_due")
def send_due() -> int:
    """Beat (every 15 minutes): scheduled client reports whose period is due."""

    async def work(db: Database, settings: Settings) -> int:
        return await service.send_due(db.sessionmaker, settings)

    return runtime.run(work)
