"""All SQL for organizations, memberships, invitations, API keys and quotas.

Every tenant query takes ``org_id`` explicitly; the exceptions are the look-ups by secret
hash (API key, invitation) and "my memberships", which PostgreSQL's RLS policies allow
only for the hash or user bound to the transaction (see core.db.set_tenant).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete as sa_delete
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from omnify.auth.models import User
from omnify.core.pagination import PageParams, keyset
from omnify.orgs.models import ApiKey, Invitation, Membership, Organization, OrgQuota, Role


async def get_org(session: AsyncSession, org_id: uuid.UUID) -> Organization | None:
    return await session.get(Organization, org_id)


async def slug_taken(session: AsyncSession, slug: str) -> bool:
    return await session.scalar(select(func.count()).where(Organization.slug == slug)) != 0


async def get_membership(session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID) -> Membership | None:
    return await session.scalar(
        select(Membership).where(Membership.org_id == org_id, Membership.user_id == user_id)
    )


async def memberships_of_user(
    session: AsyncSession, user_id: uuid.UUID, params: PageParams
) -> Sequence[tuple[Membership, Organization]]:
    stmt = (
        select(Membership, Organization)
        .join(Organization, Organization.id == Membership.org_id)
        .where(Membership.user_id == user_id)
    )
    stmt = keyset(stmt, Membership.created_at, Membership.id, params)  # type: ignore[arg-type]
    return [(row[0], row[1]) for row in (await session.execute(stmt)).all()]


async def list_members(
    session: AsyncSession, org_id: uuid.UUID, params: PageParams, role: Role | None = None
) -> Sequence[tuple[Membership, User]]:
    stmt = (
        select(Membership, User).join(User, User.id == Membership.user_id).where(Membership.org_id == org_id)
    )
    if role:
        stmt = stmt.where(Membership.role == role)
    stmt = keyset(stmt, Membership.created_at, Membership.id, params)  # type: ignore[arg-type]
    return [(row[0], row[1]) for row in (await session.execute(stmt)).all()]


async def count_members(session: AsyncSession, org_id: uuid.UUID, role: Role | None = None) -> int:
    stmt = select(func.count()).select_from(Membership).where(Membership.org_id == org_id)
    if role:
        stmt = stmt.where(Membership.role == role)
    return int(await session.scalar(stmt) or 0)


async def count_pending_invitations(session: AsyncSession, org_id: uuid.UUID, now: datetime) -> int:
    stmt = select(func.count()).select_from(Invitation).where(
        Invitation.org_id == org_id,
        Invitation.accepted_at.is_(None),
        Invitation.revoked_at.is_(None),
        Invitation.expires_at > now,
    )
    return int(await session.scalar(stmt) or 0)


async def get_invitation(session: AsyncSession, org_id: uuid.UUID, invitation_id: uuid.UUID) -> Invitation | None:
    return await session.scalar(
        select(Invitation).where(Invitation.org_id == org_id, Invitation.id == invitation_id)
    )


async def get_invitation_by_hash(session: AsyncSession, org_id: uuid.UUID, token_hash: str) -> Invitation | None:
    return await session.scalar(
        select(Invitation).where(Invitation.org_id == org_id, Invitation.token_hash == token_hash)
    )


async def pending_invitation_for_email(
    session: AsyncSession, org_id: uuid.UUID, email: str, now: datetime
) -> Invitation | None:
    return await session.scalar(
        select(Invitation).where(
            Invitation.org_id == org_id,
            Invitation.email == email,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
            Invitation.expires_at > now,
        )
    )


async def list_invitations(session: AsyncSession, org_id: uuid.UUID, params: PageParams) -> Sequence[Invitation]:
    stmt = keyset(select(Invitation).where(Invitation.org_id == org_id), Invitation.created_at, Invitation.id,
                  params)
    return (await session.scalars(stmt)).all()


async def list_api_keys(session: AsyncSession, org_id: uuid.UUID, params: PageParams) -> Sequence[ApiKey]:
    stmt = keyset(select(ApiKey).where(ApiKey.org_id == org_id), ApiKey.created_at, ApiKey.id, params)
    return (await session.scalars(stmt)).all()


async def get_api_key(session: AsyncSession, org_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey | None:
    return await session.scalar(select(ApiKey).where(ApiKey.org_id == org_id, ApiKey.id == key_id))


async def get_api_key_by_hash(session: AsyncSession, key_hash: str) -> ApiKey | None:
    """Cross-tenant by design: the caller bound ``app.api_key_hash`` for RLS first."""
    return await session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))


async def get_quota(session: AsyncSession, org_id: uuid.UUID) -> OrgQuota | None:
    return await session.scalar(select(OrgQuota).where(OrgQuota.org_id == org_id))


def add(session: AsyncSession, obj: object) -> None:
    session.add(obj)


async def delete(session: AsyncSession, obj: object) -> None:
    await session.delete(obj)


async def delete_invitations_expired_before(session: AsyncSession, org_id: uuid.UUID, cutoff: datetime) -> int:
    result = await session.execute(
        sa_delete(Invitation).where(Invitation.org_id == org_id, Invitation.expires_at < cutoff)
        .execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)
