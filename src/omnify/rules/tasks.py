"""Celery tasks of the rules domain: thin wrappers around the async services."""

from __future__ import annotations

import uuid

import omnify.models  # noqa: F401  - every mapper, so cross-domain foreign keys resolve in workers
from omnify.core.db import Database
from omnify.jobs.base import OmnifyTask
from omnify.jobs.celery_app import celery_app
from omnify.notifications import runtime
from omnify.rules import service
from omnify.rules.models import Trigger
from omnify.settings import Settings
from omnify.sync.tasks import locked_countdown


@celery_app.task(name="omnify.rules.run_due")
def run_due() -> int:
    """Beat (every minute): run every rule slot that is due."""

    async def work(db: Database, settings: Settings) -> int:
        return await service.run_due(db.sessionmaker, settings)

    return runtime.run(work)


#: Tries of a task that met its slot's evaluation still within its lease (see run_rule).
BUSY_RETRIES = 3


@celery_app.task(name=service.RUN_TASK, bind=True)
def run_rule(self: OmnifyTask, org_id: str, rule_id: str, slot: str, client_id: str | None = None) -> str | None:
    """One rule for one client after its sync (idempotent on ``slot``).

    A slot whose evaluation is still ``running`` within its lease is tried again once the
    lease lapsed: when it was left by a worker that died (this very message, redelivered
    after a SIGKILL), the retry closes it as abandoned and evaluates the slot again."""

    async def work(db: Database, settings: Settings) -> str | None:
        async with db.sessionmaker() as session:
            evaluation = await service.run_rule(
                session, settings, uuid.UUID(org_id), uuid.UUID(rule_id), trigger=Trigger.SYNC, slot=slot,
                client_ids=[client_id] if client_id else None)
            return str(evaluation.id) if evaluation is not None else None

    try:
        return runtime.run(work)
    except service.EvaluationBusy as busy:
        if self.request.called_directly or self.request.retries >= BUSY_RETRIES:
            return None
        raise self.retry(countdown=locked_countdown(busy.lease_remaining), max_retries=BUSY_RETRIES,
                         headers=dict(self.request.headers or {})) from None
