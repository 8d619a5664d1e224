"""Celery tasks of the webhooks domain: thin wrappers around the async services.

Names are the contract with the beat schedule (:mod:`omnify.jobs.schedule`) and with
the after-commit nudges (:mod:`omnify.notifications.dispatch`). The services claim rows
with leases, so a task delivered twice, or racing the sweep, does its work once.
"""

from __future__ import annotations

import uuid
from typing import Any

from celery import signals

import omnify.models  # noqa: F401  - every mapper, so cross-domain foreign keys resolve in workers
from omnify.core.db import Database
from omnify.jobs.celery_app import celery_app
from omnify.notifications import dispatch, runtime
from omnify.settings import Settings
from omnify.webhooks import dispatcher, inbound, service
from omnify.webhooks.config import WebhookConfig


@signals.worker_init.connect(weak=False)
def _publish_nudges(**_: object) -> None:
    """Workers nudge follow-up tasks (retries, e-mails) themselves; importing this module
    elsewhere (the API, tests) must not switch publishing on."""
    dispatch.enable_celery()


# Acknowledged on receipt, unlike the other tasks (acks_late): this message is only a nudge.
# The delivery row is the truth, claimed with a lease before the POST, and the beat sweep
# (redeliver_due) queues any due delivery whose nudge was lost, so a late ack protects
# nothing here. It did cost something: on a broker connection loss Celery terminates every
# running late-ack task (worker_cancel_long_running_tasks_on_connection_loss), which cut
# POSTs off mid-request (the receiver got headers and no body, or the whole event with no
# record of it) and parked those deliveries for a full lease (60 s) before a second attempt
# (tests/integration/reliability/test_fault_broker_restart.py).
@celery_app.task(name=service.DELIVER_TASK, acks_late=False)
def deliver(delivery_id: str, org_id: str) -> dict[str, Any] | None:
    """One attempt; a retry due soon is queued with a countdown, later ones wait for the sweep."""

    async def work(db: Database, settings: Settings) -> service.AttemptOutcome | None:
        async with db.sessionmaker() as session:
            return await service.attempt_delivery(session, settings, WebhookConfig.from_settings(settings),
                                                  uuid.UUID(delivery_id), uuid.UUID(org_id))

    outcome = runtime.run(work)
    if outcome is None:
        return None
    countdown = outcome.countdown()
    if countdown is not None:
        dispatch.enqueue_now(service.DELIVER_TASK, {"delivery_id": delivery_id, "org_id": org_id}, countdown)
    return {"status": outcome.status, "success": outcome.success}


@celery_app.task(name="omnify.webhooks.redeliver_due")
def redeliver_due() -> int:
    """Beat: queue a deliver task for every due delivery (retries, lost nudges, expired leases)."""

    async def work(db: Database, settings: Settings) -> list[tuple[uuid.UUID, uuid.UUID]]:
        return await service.due_deliveries(db.sessionmaker)

    due = runtime.run(work)
    for delivery_id, org_id in due:
        dispatch.enqueue_now(service.DELIVER_TASK, {"delivery_id": str(delivery_id), "org_id": str(org_id)})
    return len(due)


@celery_app.task(name="omnify.webhooks.dispatch_events")
def dispatch_events() -> int:
    """Beat: turn pending domain events into webhook deliveries and alert e-mails."""

    async def work(db: Database, settings: Settings) -> int:
        return await dispatcher.dispatch_pending(db.sessionmaker, settings)

    return runtime.run(work)


@celery_app.task(name=inbound.PROCESS_TASK)
def process_inbound(event_id: str, org_id: str) -> str | None:
    async def work(db: Database, settings: Settings) -> str | None:
        async with db.sessionmaker() as session:
            return await inbound.process_event(session, uuid.UUID(event_id), uuid.UUID(org_id), settings)

    return runtime.run(work)


@celery_app.task(name="omnify.webhooks.process_inbound_due")
def process_inbound_due() -> dict[str, int]:
    async def work(db: Database, settings: Settings) -> dict[str, int]:
        return await inbound.process_due(db.sessionmaker, settings=settings)

    return runtime.run(work)


@celery_app.task(name="omnify.webhooks.purge")
def purge() -> dict[str, int]:
    """Retention of inbound raw bodies and of old outbound deliveries."""

    async def work(db: Database, settings: Settings) -> dict[str, int]:
        config = WebhookConfig.from_settings(settings)
        return {"inbound": await inbound.purge_processed(db.sessionmaker, config),
                "outbound": await service.purge_deliveries(db.sessionmaker)}

    return runtime.run(work)
