"""All SQL for platform credentials; every function takes the organization scope."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from omnify.core.pagination import PageParams, keyset
from omnify.credentials.models import PlatformCredential


async def get(
    session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, platform: str
) -> PlatformCredential | None:
    return await session.scalar(
        select(PlatformCredential).where(
            PlatformCredential.org_id == org_id, PlatformCredential.client_id == client_id,
            PlatformCredential.platform == platform,
        )
    )


async def list_for_client(
    session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, params: PageParams
) -> Sequence[PlatformCredential]:
    stmt = select(PlatformCredential).where(
        PlatformCredential.org_id == org_id, PlatformCredential.client_id == client_id
    )
    return (await session.scalars(keyset(stmt, PlatformCredential.created_at, PlatformCredential.id, params))).all()


async def all_for_client(
    session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID
) -> Sequence[PlatformCredential]:
    return (
        await session.scalars(
            select(PlatformCredential).where(
                PlatformCredential.org_id == org_id, PlatformCredential.client_id == client_id
            )
        )
    ).all()


async def delete_row(session: AsyncSession, org_id: uuid.UUID, credential_id: uuid.UUID) -> None:
    await session.execute(
        delete(PlatformCredential).where(PlatformCredential.org_id == org_id, PlatformCredential.id == credential_id)
    )


async def not_under_key(
    session: AsyncSession, org_id: uuid.UUID, active_key_id: str, after: uuid.UUID | None, limit: int
) -> Sequence[tuple[uuid.UUID, bytes]]:
    """(id, blob) of rows wrapped by another master key than ``active_key_id``, by id."""
    stmt = select(PlatformCredential.id, PlatformCredential.secret_blob).where(
        PlatformCredential.org_id == org_id, PlatformCredential.master_key_id != active_key_id
    )
    if after is not None:
        stmt = stmt.where(PlatformCredential.id > after)
    rows = await session.execute(stmt.order_by(PlatformCredential.id).limit(limit))
    return [(row[0], bytes(row[1])) for row in rows.all()]


async def swap_blob(
    session: AsyncSession, org_id: uuid.UUID, credential_id: uuid.UUID, old: bytes, new: bytes, key_id: str
) -> bool:
    """Replace the blob only if nobody changed it meanwhile (compare-and-swap).

    A credential re-saved through the API during rotation already carries a fresh data
    key under the active master key; overwriting it with our re-wrap of the old one
    would silently revert the user's change.
    """
    result = await session.execute(
        update(PlatformCredential)
        .where(PlatformCredential.org_id == org_id, PlatformCredential.id == credential_id,
               PlatformCredential.secret_blob == old)
        .values(secret_blob=new, master_key_id=key_id)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def count_by_key(session: AsyncSession, org_id: uuid.UUID) -> dict[str, int]:
    rows = await session.execute(
        select(PlatformCredential.master_key_id, func.count())
        .where(PlatformCredential.org_id == org_id)
        .group_by(PlatformCredential.master_key_id)
    )
    return {str(k): int(n) for k, n in rows.all()}


def add(session: AsyncSession, obj: object) -> None:
    session.add(obj)
