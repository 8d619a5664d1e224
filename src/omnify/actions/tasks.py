"""Celery tasks of the actions domain: thin wrappers around the async services."""

from __future__ import annotations

import omnify.models  # noqa: F401  - every mapper, so cross-domain foreign keys resolve in workers
from omnify.actions import service
from omnify.core.db import Database
from omnify.jobs.celery_app import celery_app
from omnify.notifications import runtime
from omnify.settings import Settings


@celery_app.task(name="omnify.actions.reconcile_interrupted")
def reconcile_interrupted() -> dict[str, int]:
    """Beat: settle the actions whose worker died mid-apply (or mid-undo) from what the
    platform shows (see :func:`omnify.actions.service.reconcile_interrupted`)."""

    async def work(db: Database, settings: Settings) -> dict[str, int]:
        return await service.reconcile_interrupted(db.sessionmaker, settings)

    return runtime.run(work)
