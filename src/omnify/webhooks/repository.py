"""All SQL of outbound and inbound webhooks.

Tenant methods take ``org_id``. The exceptions, each named ``sweep_*`` or ``*_for_receiver``,
are the cross-tenant reads of background sweeps and of the inbound receiver; on
PostgreSQL they work only inside :func:`omnify.core.db.open_sweep` / :func:`bind_inbound_source`, which
open exactly one table (or one row) for the current transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import CursorResult, func, or_, select, text, update
from sqlalchemy import delete as sql_delete
from sqlalchemy.ext.asyncio import AsyncSession

from omnify.core.db import insert_once, open_sweep
from omnify.core.pagination import PageParams, keyset
from omnify.webhooks.models import (
    STANDARD,
    DeliveryStatus,
    InboundEvent,
    InboundSource,
    InboundStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)


def _is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


async def bind_inbound_source(session: AsyncSession, source_id: uuid.UUID) -> None:
    if _is_postgres(session):
        await session.execute(text("SELECT set_config('app.inbound_source_id', :s, true)"), {"s": str(source_id)})


def add(session: AsyncSession, obj: object) -> None:
    session.add(obj)


async def delete(session: AsyncSession, obj: object) -> None:
    await session.delete(obj)


# ---------------------------------------------------------------------------- endpoints
async def list_endpoints(session: AsyncSession, org_id: uuid.UUID, params: PageParams) -> Sequence[WebhookEndpoint]:
    stmt = keyset(select(WebhookEndpoint).where(WebhookEndpoint.org_id == org_id, WebhookEndpoint.kind == STANDARD),
                  WebhookEndpoint.created_at, WebhookEndpoint.id, params)
    return (await session.scalars(stmt)).all()


async def get_endpoint(session: AsyncSession, org_id: uuid.UUID, endpoint_id: uuid.UUID,
                       kind: str | None = None) -> WebhookEndpoint | None:
    """One endpoint; ``kind`` restricts it (the webhook API sees only standard ones)."""
    stmt = select(WebhookEndpoint).where(WebhookEndpoint.org_id == org_id, WebhookEndpoint.id == endpoint_id)
    if kind is not None:
        stmt = stmt.where(WebhookEndpoint.kind == kind)
    return await session.scalar(stmt)


async def enabled_endpoints(session: AsyncSession, org_id: uuid.UUID) -> Sequence[WebhookEndpoint]:
    return (await session.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.org_id == org_id, WebhookEndpoint.enabled.is_(True),
                                      WebhookEndpoint.kind == STANDARD)
        .order_by(WebhookEndpoint.created_at)
    )).all()


async def count_endpoints(session: AsyncSession, org_id: uuid.UUID) -> int:
    return int(await session.scalar(
        select(func.count()).select_from(WebhookEndpoint).where(WebhookEndpoint.org_id == org_id,
                                                                WebhookEndpoint.kind == STANDARD)) or 0)


# ------------------------------------------------------------------------------ events
async def get_event(session: AsyncSession, org_id: uuid.UUID, event_id: uuid.UUID) -> WebhookEvent | None:
    return await session.scalar(select(WebhookEvent).where(WebhookEvent.org_id == org_id, WebhookEvent.id == event_id))


async def insert_event_once(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert unless an event with this id exists (a re-dispatched domain event)."""
    return await insert_once(session, WebhookEvent, values, ["id"])


async def insert_delivery_once(session: AsyncSession, values: dict[str, Any]) -> bool:
    return await insert_once(session, WebhookDelivery, values, ["endpoint_id", "event_id"])


# -------------------------------------------------------------------------- deliveries
async def list_deliveries(
    session: AsyncSession, org_id: uuid.UUID, endpoint_id: uuid.UUID, params: PageParams,
    status: str | None = None, event_type: str | None = None,
) -> Sequence[WebhookDelivery]:
    stmt = select(WebhookDelivery).where(WebhookDelivery.org_id == org_id, WebhookDelivery.endpoint_id == endpoint_id)
    if status:
        stmt = stmt.where(WebhookDelivery.status == status)
    if event_type:
        stmt = stmt.where(WebhookDelivery.event_type == event_type)
    stmt = keyset(stmt, WebhookDelivery.created_at, WebhookDelivery.id, params)
    return (await session.scalars(stmt)).all()


async def get_delivery(
    session: AsyncSession, org_id: uuid.UUID, delivery_id: uuid.UUID, endpoint_id: uuid.UUID | None = None
) -> WebhookDelivery | None:
    stmt = select(WebhookDelivery).where(WebhookDelivery.org_id == org_id, WebhookDelivery.id == delivery_id)
    if endpoint_id is not None:
        stmt = stmt.where(WebhookDelivery.endpoint_id == endpoint_id)
    return await session.scalar(stmt)


async def get_delivery_by_event(
    session: AsyncSession, org_id: uuid.UUID, endpoint_id: uuid.UUID, event_id: uuid.UUID
) -> WebhookDelivery | None:
    return await session.scalar(select(WebhookDelivery).where(
        WebhookDelivery.org_id == org_id, WebhookDelivery.endpoint_id == endpoint_id,
        WebhookDelivery.event_id == event_id))


async def claim_delivery(
    session: AsyncSession, org_id: uuid.UUID, delivery_id: uuid.UUID, now: datetime, lease_until: datetime
) -> bool:
    """Take a due delivery for one attempt: only one worker can win the UPDATE.

    The winner's transaction holds the row until it commits, so it can look at what the
    previous attempt left (``attempt_started_at``) before anyone else claims it."""
    result = await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.org_id == org_id, WebhookDelivery.id == delivery_id,
               WebhookDelivery.status == DeliveryStatus.PENDING.value, WebhookDelivery.next_attempt_at <= now)
        .values(next_attempt_at=lease_until)
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    return result.rowcount == 1


async def sweep_due_deliveries(session: AsyncSession, now: datetime, limit: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(delivery id, org id) of due deliveries, oldest due first, across organizations."""
    await open_sweep(session, "webhook_deliveries")
    rows = await session.execute(
        select(WebhookDelivery.id, WebhookDelivery.org_id)
        .where(WebhookDelivery.status == DeliveryStatus.PENDING.value, WebhookDelivery.next_attempt_at <= now)
        .order_by(WebhookDelivery.next_attempt_at).limit(limit)
    )
    return [(row[0], row[1]) for row in rows.all()]


async def sweep_count_dead(session: AsyncSession) -> int:
    await open_sweep(session, "webhook_deliveries")
    return int(await session.scalar(select(func.count()).select_from(WebhookDelivery)
                                    .where(WebhookDelivery.status == DeliveryStatus.FAILED.value)) or 0)


async def dead_deliveries(
    session: AsyncSession, org_id: uuid.UUID, endpoint_id: uuid.UUID, since: datetime | None, limit: int
) -> Sequence[WebhookDelivery]:
    stmt = select(WebhookDelivery).where(
        WebhookDelivery.org_id == org_id, WebhookDelivery.endpoint_id == endpoint_id,
        WebhookDelivery.status == DeliveryStatus.FAILED.value)
    if since is not None:
        stmt = stmt.where(WebhookDelivery.failed_at >= since)
    return (await session.scalars(stmt.order_by(WebhookDelivery.created_at).limit(limit))).all()


async def fail_pending_of_endpoint(
    session: AsyncSession, org_id: uuid.UUID, endpoint_id: uuid.UUID, now: datetime, reason: str
) -> int:
    result = await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.org_id == org_id, WebhookDelivery.endpoint_id == endpoint_id,
               WebhookDelivery.status == DeliveryStatus.PENDING.value)
        .values(status=DeliveryStatus.FAILED.value, failed_at=now, next_attempt_at=None, attempt_started_at=None,
                last_error=reason, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


async def attempts_of(session: AsyncSession, org_id: uuid.UUID, delivery_id: uuid.UUID,
                      limit: int = 100) -> Sequence[WebhookAttempt]:
    return (await session.scalars(
        select(WebhookAttempt).where(WebhookAttempt.org_id == org_id, WebhookAttempt.delivery_id == delivery_id)
        .order_by(WebhookAttempt.number.desc()).limit(limit)
    )).all()


# ----------------------------------------------------------------------------- inbound
async def get_source_for_receiver(session: AsyncSession, source_id: uuid.UUID) -> InboundSource | None:
    """Cross-tenant by design: the receiver does not know the organization yet."""
    await bind_inbound_source(session, source_id)
    return await session.scalar(select(InboundSource).where(InboundSource.id == source_id))


async def sweep_sources_for_account(session: AsyncSession, provider: str,
                                    account: str) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """``(source id, org id)`` of every app-secret source of one platform account, in any
    organization and enabled or not (the app-wide privacy receiver; see inbound)."""
    await open_sweep(session, "inbound_webhook_sources")
    rows = await session.execute(
        select(InboundSource.id, InboundSource.org_id)
        .where(InboundSource.provider == provider, InboundSource.account == account.lower(),
               InboundSource.secret_blob.is_(None))
        .order_by(InboundSource.created_at, InboundSource.id))
    return [(row[0], row[1]) for row in rows]


async def get_source(session: AsyncSession, org_id: uuid.UUID, source_id: uuid.UUID) -> InboundSource | None:
    return await session.scalar(
        select(InboundSource).where(InboundSource.org_id == org_id, InboundSource.id == source_id))


async def insert_inbound_once(session: AsyncSession, values: dict[str, Any]) -> bool:
    return await insert_once(session, InboundEvent, values, ["source_id", "delivery_id"])


async def get_inbound_by_delivery(
    session: AsyncSession, org_id: uuid.UUID, source_id: uuid.UUID, delivery_id: str
) -> InboundEvent | None:
    return await session.scalar(select(InboundEvent).where(
        InboundEvent.org_id == org_id, InboundEvent.source_id == source_id, InboundEvent.delivery_id == delivery_id))


async def get_inbound(session: AsyncSession, org_id: uuid.UUID, event_id: uuid.UUID,
                      for_update: bool = False) -> InboundEvent | None:
    stmt = select(InboundEvent).where(InboundEvent.org_id == org_id, InboundEvent.id == event_id)
    if for_update and _is_postgres(session):
        stmt = stmt.with_for_update()
    return await session.scalar(stmt)


async def claim_inbound(
    session: AsyncSession, org_id: uuid.UUID, event_id: uuid.UUID, now: datetime, lease_until: datetime
) -> bool:
    result = await session.execute(
        update(InboundEvent)
        .where(InboundEvent.org_id == org_id, InboundEvent.id == event_id,
               InboundEvent.status == InboundStatus.RECEIVED.value,
               or_(InboundEvent.next_attempt_at.is_(None), InboundEvent.next_attempt_at <= now))
        .values(next_attempt_at=lease_until)
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    return result.rowcount == 1


async def sweep_due_inbound(session: AsyncSession, now: datetime, limit: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
    await open_sweep(session, "inbound_webhook_events")
    rows = await session.execute(
        select(InboundEvent.id, InboundEvent.org_id)
        .where(InboundEvent.status == InboundStatus.RECEIVED.value,
               or_(InboundEvent.next_attempt_at.is_(None), InboundEvent.next_attempt_at <= now))
        .order_by(InboundEvent.received_at).limit(limit)
    )
    return [(row[0], row[1]) for row in rows.all()]


async def sweep_purge(session: AsyncSession, cutoff: datetime) -> int:
    """Retention delete across organizations; attempts go with their deliveries (FK cascade)."""
    await open_sweep(session, "webhook_deliveries", "webhook_events")
    result = await session.execute(
        sql_delete(WebhookDelivery)
        .where(WebhookDelivery.created_at < cutoff, WebhookDelivery.status != DeliveryStatus.PENDING.value)
        .execution_options(synchronize_session=False)
    )
    orphan = ~select(WebhookDelivery.id).where(WebhookDelivery.event_id == WebhookEvent.id).exists()
    await session.execute(
        sql_delete(WebhookEvent).where(WebhookEvent.created_at < cutoff, orphan)
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    return int(result.rowcount)
