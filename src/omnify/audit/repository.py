"""All SQL of the audit log. Appends are serialized per organization."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from omnify.audit.models import AuditLog
from omnify.core.pagination import PageParams, keyset
from omnify.orgs.models import Organization

GENESIS_HASH = "0" * 64


async def next_seq(session: AsyncSession, org_id: uuid.UUID) -> int:
    """Bump the org's counter. On PostgreSQL the UPDATE row-locks the organization until
    commit, so two concurrent appends can never read the same previous hash."""
    result = await session.execute(
        update(Organization)
        .where(Organization.id == org_id)
        .values(audit_seq=Organization.audit_seq + 1)
        .returning(Organization.audit_seq)
    )
    return int(result.scalar_one())


async def hash_at(session: AsyncSession, org_id: uuid.UUID, seq: int) -> str | None:
    return await session.scalar(select(AuditLog.hash).where(AuditLog.org_id == org_id, AuditLog.seq == seq))


def add(session: AsyncSession, entry: AuditLog) -> None:
    session.add(entry)


def _filtered(org_id: uuid.UUID, filters: dict[str, Any]) -> Select[Any]:
    stmt = select(AuditLog).where(AuditLog.org_id == org_id)
    for column in ("action", "actor_type", "actor_id", "target_type", "target_id"):
        if filters.get(column):
            stmt = stmt.where(getattr(AuditLog, column) == filters[column])
    if filters.get("action_prefix"):
        stmt = stmt.where(AuditLog.action.startswith(filters["action_prefix"]))
    if filters.get("since"):
        stmt = stmt.where(AuditLog.created_at >= filters["since"])
    if filters.get("until"):
        stmt = stmt.where(AuditLog.created_at < filters["until"])
    return stmt


async def list_entries(
    session: AsyncSession, org_id: uuid.UUID, params: PageParams, filters: dict[str, Any]
) -> Sequence[AuditLog]:
    stmt = keyset(_filtered(org_id, filters), AuditLog.created_at, AuditLog.id, params)
    return (await session.scalars(stmt)).all()


async def iter_chain(session: AsyncSession, org_id: uuid.UUID, batch: int = 1000,
                     after_seq: int = 0) -> AsyncIterator[AuditLog]:
    """Entries of one org in chain order (after ``after_seq``), streamed in batches to bound memory."""
    last_seq = after_seq
    while True:
        rows = (
            await session.scalars(
                select(AuditLog)
                .where(AuditLog.org_id == org_id, AuditLog.seq > last_seq)
                .order_by(AuditLog.seq)
                .limit(batch)
            )
        ).all()
        if not rows:
            return
        for row in rows:
            yield row
        last_seq = rows[-1].seq


async def delete_before(session: AsyncSession, org_id: uuid.UUID, cutoff: datetime,
                        max_seq: int | None = None) -> int:
    """Retention purge (only up to ``max_seq`` when given: what cold storage already holds).
    On PostgreSQL the immutability trigger lets DELETE through only inside a transaction
    that set ``omnify.audit_purge`` (owner role; the app role has no DELETE privilege at all)."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        await session.execute(text("SELECT set_config('omnify.audit_purge', 'on', true)"))
    stmt = delete(AuditLog).where(AuditLog.org_id == org_id, AuditLog.created_at < cutoff)
    if max_seq is not None:
        stmt = stmt.where(AuditLog.seq <= max_seq)
    result = await session.execute(stmt)
    return int(getattr(result, "rowcount", 0) or 0)


async def iter_range(
    session: AsyncSession, org_id: uuid.UUID, since: datetime | None, until: datetime | None
) -> AsyncIterator[AuditLog]:
    async for row in iter_chain(session, org_id):
        if since and row.created_at < since:
            continue
        if until and row.created_at >= until:
            continue
        yield row
