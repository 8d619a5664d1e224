"""Consumer of the domain-event outbox (``omnify.events``): webhooks and alert e-mails.

For each undispatched domain event, in one transaction: fan it out to the
organization's webhook endpoints (when its type is in the webhook catalogue), queue the
alert e-mails it calls for, and stamp ``dispatched_at``. Either all three commit or none
does, and the fan-out and e-mails are idempotent on the event id, so a crash at any
point neither loses nor doubles anything.

One dispatcher serves both consumers on purpose: the outbox has a single
``dispatched_at``, which two independent consumers could not share.

Cross-tenant reading: the domain-event table is protected by row-level security keyed
on ``app.org_id`` only, so the sweep walks organizations and reads each one's pending
events under its own binding. If the events table gains the ``app.sweep`` read clause
used by the webhook tables, :func:`pending_orgs` can become one query.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from omnify.audit import service as audit
from omnify.core.db import bind_tenant, utcnow
from omnify.core.logging import get_logger
from omnify.events.models import DomainEvent
from omnify.notifications import alerts
from omnify.settings import Settings
from omnify.webhooks import service
from omnify.webhooks.events import CATALOGUE

log = get_logger(__name__)

#: Further consumers of the outbox: modules with ``async def on_event(session, settings,
#: org_id, event_id, event_type, payload, occurred_at)``, called in the dispatch
#: transaction like the e-mails (each must be idempotent on the event id).
CONSUMER_MODULES = ("omnify.rules.consumer", "omnify.chat.consumer")
Consumer = Callable[[AsyncSession, Settings, uuid.UUID, uuid.UUID, str, dict[str, Any], datetime], Awaitable[Any]]


def _consumers() -> list[Consumer]:
    return [importlib.import_module(name).on_event for name in CONSUMER_MODULES]


async def _pending(session: AsyncSession, org_id: uuid.UUID, limit: int) -> Sequence[DomainEvent]:
    # Reads the events domain's table: ``omnify.events.service`` has no "pending" query
    # yet; the lead may move this one there.
    return (await session.scalars(
        select(DomainEvent)
        .where(DomainEvent.org_id == org_id, DomainEvent.dispatched_at.is_(None))
        .order_by(DomainEvent.created_at, DomainEvent.id).limit(limit)
    )).all()


async def dispatch_org(session: AsyncSession, settings: Settings, org_id: uuid.UUID, *, limit: int = 200) -> int:
    """Dispatch one organization's pending events; the number dispatched. Commits."""
    await bind_tenant(session, org_id)
    events = await _pending(session, org_id, limit)
    if not events:
        await session.rollback()
        return 0
    now = utcnow()
    for event in events:
        if event.type in CATALOGUE:
            await service.fan_out(session, org_id, event.type, dict(event.payload), event_id=event.id,
                                  occurred_at=event.created_at)
        await alerts.emails_for_event(session, settings, org_id, event.id, event.type, dict(event.payload),
                                      event.created_at)
        for consume in _consumers():
            await consume(session, settings, org_id, event.id, event.type, dict(event.payload), event.created_at)
    await session.execute(
        update(DomainEvent)
        .where(DomainEvent.org_id == org_id, DomainEvent.id.in_([e.id for e in events]))
        .values(dispatched_at=now)
        .execution_options(synchronize_session=False)
    )
    await session.commit()
    return len(events)


async def dispatch_pending(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, *, limit_per_org: int = 200
) -> int:
    """The beat job: every organization's pending events, one transaction per organization."""
    async with sessionmaker() as session:
        org_ids = await audit.org_ids(session)
    total = 0
    for org_id in org_ids:
        async with sessionmaker() as session:
            try:
                total += await dispatch_org(session, settings, org_id, limit=limit_per_org)
            except Exception as exc:  # one organization's bad event must not block the others
                await session.rollback()
                log.error("events.dispatch_failed", org_id=str(org_id), error=f"{type(exc).__name__}: {exc}"[:300])
    return total
