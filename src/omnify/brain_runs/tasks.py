"""Celery tasks of the brain (thin: the rules are in service.py).

``omnify.brain.run_client`` is queued by the sync service after it wrote new rows for a
client; ``omnify.brain.run_due`` is the beat's hourly sweep (see omnify.jobs.schedule).
Both are safe to deliver twice: a run merges by natural key, so a duplicate run only
refreshes ``last_seen_at``.
"""

from __future__ import annotations

import uuid
from typing import Any

import omnify.models  # noqa: F401  - every mapper, so cross-domain foreign keys resolve in workers
from omnify.audit import service as audit
from omnify.brain_runs import service
from omnify.brain_runs.models import RunTrigger
from omnify.core.db import Database, bind_tenant
from omnify.jobs.base import OmnifyTask
from omnify.jobs.celery_app import celery_app
from omnify.notifications import runtime
from omnify.settings import Settings
from omnify.sync.tasks import locked_countdown

RUN_CLIENT_TASK = "omnify.brain.run_client"
#: Tries of a task that found its client's run live: the holder renews its lease while it
#: lives, so a try after the lease lapsed only meets a live run if that run is busy - and
#: then that run does the work: a few tries are enough.
BUSY_RETRIES = 3


async def _run_client(db: Database, org_id: uuid.UUID, client_id: uuid.UUID, trigger: RunTrigger,
                      settings: Settings | None = None) -> dict[str, Any]:
    async with db.sessionmaker() as session:
        await bind_tenant(session, org_id)
        run = await service.run_for_client(session, org_id, client_id, trigger, settings=settings)
        return {"run_id": str(run.id), "status": run.status, "duration_ms": run.duration_ms, **run.outcome}


@celery_app.task(name=RUN_CLIENT_TASK, bind=True)
def run_client(self: OmnifyTask, org_id: str, client_id: str, trigger: str = RunTrigger.SYNC.value) -> dict[str, Any]:
    """One client's run (after a sync). Failures are retried by the task base (the run is recorded failed).

    A client with a live run (its lease renewed) is tried again once that lease lapses:
    when the holder was a worker that died mid-run (this very message, redelivered after
    a SIGKILL), nothing renews it any more, so the retry closes the dead run as abandoned
    and redoes the run (docs/operations.md, "Brain run leases"). If the holder was alive,
    it finished meanwhile and the retry runs once more on the same data: a no-op merge."""

    async def work(db: Database, settings: Settings) -> dict[str, Any]:
        return await _run_client(db, uuid.UUID(org_id), uuid.UUID(client_id), RunTrigger(trigger), settings)

    try:
        return runtime.run(work)
    except service.RunBusy as busy:
        if self.request.called_directly or self.request.retries >= BUSY_RETRIES:
            return {"status": "skipped", "reason": "busy", "lease_remaining_s": round(busy.lease_remaining, 3)}
        raise self.retry(countdown=locked_countdown(busy.lease_remaining), max_retries=BUSY_RETRIES,
                         headers=dict(self.request.headers or {})) from None


async def sweep(db: Database) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Every live client with synced data, across organizations (each read under its own tenant)."""
    async with db.sessionmaker() as session:
        org_ids = await audit.org_ids(session)
    due: list[tuple[uuid.UUID, uuid.UUID]] = []
    for org_id in org_ids:
        async with db.sessionmaker() as session:
            await bind_tenant(session, org_id)
            due += [(org_id, c) for c in await service.due_clients(session, org_id)]
    return due


@celery_app.task(name="omnify.brain.run_due")
def run_due() -> int:
    """Beat: queue a run for every client with data (one task each, so one slow client blocks nobody)."""

    async def work(db: Database, settings: Settings) -> list[tuple[uuid.UUID, uuid.UUID]]:
        return await sweep(db)

    due = runtime.run(work)
    for org_id, client_id in due:
        run_client.apply_async(kwargs={"org_id": str(org_id), "client_id": str(client_id),
                                       "trigger": RunTrigger.SCHEDULE.value})
    return len(due)


def enqueue_after_sync(org_id: uuid.UUID, client_id: uuid.UUID) -> None:
    """For the sync service: queue this client's brain run once its new rows are committed."""
    run_client.apply_async(kwargs={"org_id": str(org_id), "client_id": str(client_id),
                                   "trigger": RunTrigger.SYNC.value})
