"""All SQL for client profiles; every function takes the organization scope."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from omnify.clients.models import ClientProfile, ClientStatus
from omnify.core.pagination import PageParams, keyset
from omnify.orgs.models import Organization


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def get(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID) -> ClientProfile | None:
    return await session.scalar(
        select(ClientProfile).where(ClientProfile.org_id == org_id, ClientProfile.id == client_id)
    )


async def live_name_taken(
    session: AsyncSession, org_id: uuid.UUID, name_key: str, exclude_id: uuid.UUID | None = None
) -> bool:
    stmt = select(func.count()).select_from(ClientProfile).where(
        ClientProfile.org_id == org_id, ClientProfile.name_key == name_key, ClientProfile.archived_at.is_(None)
    )
    if exclude_id is not None:
        stmt = stmt.where(ClientProfile.id != exclude_id)
    return int(await session.scalar(stmt) or 0) > 0


async def list_clients(
    session: AsyncSession,
    org_id: uuid.UUID,
    params: PageParams,
    *,
    search: str | None = None,
    status: ClientStatus | None = None,
    industry: str | None = None,
    include_archived: bool = False,
) -> Sequence[ClientProfile]:
    stmt = select(ClientProfile).where(ClientProfile.org_id == org_id)
    if status is not None:
        stmt = stmt.where(ClientProfile.status == status.value)
    elif not include_archived:
        stmt = stmt.where(ClientProfile.archived_at.is_(None))
    if industry:
        stmt = stmt.where(ClientProfile.industry == industry)
    if search:
        # Contains-search on the folded name: the plan caps clients per organization
        # (5000 on the largest), so scanning one org's index range stays cheap.
        stmt = stmt.where(ClientProfile.name_key.like(f"%{_escape_like(search)}%", escape="\\"))
    stmt = keyset(stmt, ClientProfile.created_at, ClientProfile.id, params)
    return (await session.scalars(stmt)).all()


async def count_live(session: AsyncSession, org_id: uuid.UUID) -> int:
    stmt = select(func.count()).select_from(ClientProfile).where(
        ClientProfile.org_id == org_id, ClientProfile.archived_at.is_(None)
    )
    return int(await session.scalar(stmt) or 0)


async def archived_before(
    session: AsyncSession, org_id: uuid.UUID, cutoff: datetime, limit: int
) -> Sequence[ClientProfile]:
    stmt = (
        select(ClientProfile)
        .where(ClientProfile.org_id == org_id, ClientProfile.archived_at.is_not(None),
               ClientProfile.archived_at < cutoff)
        .order_by(ClientProfile.archived_at, ClientProfile.id)
        .limit(limit)
    )
    return (await session.scalars(stmt)).all()


async def delete_client(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID) -> None:
    """Remove the row; foreign keys cascade to the client's files, credentials and ideas rows."""
    await session.execute(
        delete(ClientProfile).where(ClientProfile.org_id == org_id, ClientProfile.id == client_id)
    )


async def lock_org(session: AsyncSession, org_id: uuid.UUID) -> None:
    """Serialize quota-checked inserts of one organization.

    Takes the same row lock the audit log's sequence bump takes, so call it *first* in
    the transaction: one lock order everywhere means no deadlock. SQLite has no row
    locks (its writers are serialized anyway) and SQLAlchemy drops the clause there.
    """
    await session.execute(select(Organization.id).where(Organization.id == org_id).with_for_update())


async def org_ids(session: AsyncSession) -> list[uuid.UUID]:
    """Every organization (not a tenant table): maintenance jobs walk them one by one."""
    return list((await session.scalars(select(Organization.id).order_by(Organization.id))).all())


def add(session: AsyncSession, obj: object) -> None:
    session.add(obj)
