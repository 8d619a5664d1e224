"""Celery tasks of the notifications domain: thin wrappers around the async services."""

from __future__ import annotations

import uuid

from celery import signals

import omnify.models  # noqa: F401  - every mapper, so cross-domain foreign keys resolve in workers
from omnify.core.db import Database
from omnify.jobs.celery_app import celery_app
from omnify.notifications import digest, dispatch, runtime, service
from omnify.notifications.backends import backend_from_settings
from omnify.settings import Settings


@signals.worker_init.connect(weak=False)
def _publish_nudges(**_: object) -> None:
    dispatch.enable_celery()


@celery_app.task(name=service.SEND_TASK)
def send(message_id: str) -> str | None:
    """Send one outbox message now (nudged after the transaction that queued it)."""

    async def work(db: Database, settings: Settings) -> str | None:
        async with db.sessionmaker() as session:
            return await service.send_message(session, backend_from_settings(settings),
                                              service.EmailConfig.from_settings(settings), uuid.UUID(message_id))

    return runtime.run(work)


@celery_app.task(name="omnify.notifications.send_due")
def send_due() -> dict[str, int]:
    """Beat: retries whose time has come and messages whose nudge was lost."""

    async def work(db: Database, settings: Settings) -> dict[str, int]:
        return await service.send_due(db.sessionmaker, backend_from_settings(settings),
                                      service.EmailConfig.from_settings(settings))

    return runtime.run(work)


@celery_app.task(name="omnify.notifications.weekly_digest")
def weekly_digest() -> int:
    """Beat (Mondays): queue last week's digest for every organization."""

    async def work(db: Database, settings: Settings) -> int:
        return await digest.queue_all_digests(db.sessionmaker, settings)

    return runtime.run(work)
