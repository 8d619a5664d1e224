"""All SQL for uploaded files; every function takes the organization scope."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from omnify.core.pagination import PageParams, keyset
from omnify.files.models import UploadedFile


async def get(
    session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, file_id: uuid.UUID, *, live: bool = True
) -> UploadedFile | None:
    stmt = select(UploadedFile).where(
        UploadedFile.org_id == org_id, UploadedFile.client_id == client_id, UploadedFile.id == file_id
    )
    if live:
        stmt = stmt.where(UploadedFile.deleted_at.is_(None))
    return await session.scalar(stmt)


async def live_by_hash(
    session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, sha256: str
) -> UploadedFile | None:
    return await session.scalar(
        select(UploadedFile).where(
            UploadedFile.org_id == org_id, UploadedFile.client_id == client_id,
            UploadedFile.sha256 == sha256, UploadedFile.deleted_at.is_(None),
        )
    )


async def live_ids(
    session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    if not ids:
        return set()
    rows = await session.scalars(
        select(UploadedFile.id).where(
            UploadedFile.org_id == org_id, UploadedFile.client_id == client_id,
            UploadedFile.id.in_(list(ids)), UploadedFile.deleted_at.is_(None),
        )
    )
    return set(rows.all())


async def list_files(
    session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, params: PageParams, category: str | None
) -> Sequence[UploadedFile]:
    stmt = select(UploadedFile).where(
        UploadedFile.org_id == org_id, UploadedFile.client_id == client_id, UploadedFile.deleted_at.is_(None)
    )
    if category:
        stmt = stmt.where(UploadedFile.category == category)
    stmt = keyset(stmt, UploadedFile.created_at, UploadedFile.id, params)
    return (await session.scalars(stmt)).all()


async def count_live_by_category(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID) -> dict[str, int]:
    rows = await session.execute(
        select(UploadedFile.category, func.count())
        .where(UploadedFile.org_id == org_id, UploadedFile.client_id == client_id,
               UploadedFile.deleted_at.is_(None))
        .group_by(UploadedFile.category)
    )
    return {str(category): int(count) for category, count in rows.all()}


async def stored_bytes(session: AsyncSession, org_id: uuid.UUID) -> int:
    """Bytes the organization holds in storage: every row not purged yet, thumbnails included."""
    total = await session.scalar(
        select(func.coalesce(func.sum(UploadedFile.size + UploadedFile.thumbnail_size), 0))
        .where(UploadedFile.org_id == org_id)
    )
    return int(total or 0)


async def deleted_batch(session: AsyncSession, org_id: uuid.UUID, limit: int) -> Sequence[UploadedFile]:
    return (
        await session.scalars(
            select(UploadedFile)
            .where(UploadedFile.org_id == org_id, UploadedFile.deleted_at.is_not(None))
            .order_by(UploadedFile.deleted_at, UploadedFile.id)
            .limit(limit)
        )
    ).all()


async def keys_with_rows(session: AsyncSession, org_id: uuid.UUID, keys: Sequence[str]) -> set[str]:
    """Those of ``keys`` that a row names, as its object or its thumbnail (deleted rows too:
    their objects are the purge's)."""
    if not keys:
        return set()
    rows = await session.execute(
        select(UploadedFile.storage_key, UploadedFile.thumbnail_key).where(
            UploadedFile.org_id == org_id,
            or_(UploadedFile.storage_key.in_(list(keys)), UploadedFile.thumbnail_key.in_(list(keys))),
        )
    )
    return {key for pair in rows.all() for key in pair if key} & set(keys)


async def all_of_client(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID) -> Sequence[UploadedFile]:
    return (
        await session.scalars(
            select(UploadedFile).where(UploadedFile.org_id == org_id, UploadedFile.client_id == client_id)
        )
    ).all()


async def delete_row(session: AsyncSession, org_id: uuid.UUID, file_id: uuid.UUID) -> None:
    await session.execute(delete(UploadedFile).where(UploadedFile.org_id == org_id, UploadedFile.id == file_id))


def add(session: AsyncSession, obj: object) -> None:
    session.add(obj)
