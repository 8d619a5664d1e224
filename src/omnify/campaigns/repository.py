"""All SQL for campaign ideas and their attachments; every function takes the org scope."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from omnify.campaigns.models import CampaignIdea, CampaignIdeaFile, IdeaStatus
from omnify.core.pagination import PageParams, keyset


async def get(
    session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, idea_id: uuid.UUID
) -> CampaignIdea | None:
    return await session.scalar(
        select(CampaignIdea).where(CampaignIdea.org_id == org_id, CampaignIdea.client_id == client_id,
                                   CampaignIdea.id == idea_id)
    )


async def list_ideas(
    session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, params: PageParams, status: IdeaStatus | None
) -> Sequence[CampaignIdea]:
    stmt = select(CampaignIdea).where(CampaignIdea.org_id == org_id, CampaignIdea.client_id == client_id)
    if status is not None:
        stmt = stmt.where(CampaignIdea.status == status.value)
    return (await session.scalars(keyset(stmt, CampaignIdea.created_at, CampaignIdea.id, params))).all()


async def count_not_archived(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID) -> int:
    stmt = select(func.count()).select_from(CampaignIdea).where(
        CampaignIdea.org_id == org_id, CampaignIdea.client_id == client_id,
        CampaignIdea.status != IdeaStatus.ARCHIVED.value,
    )
    return int(await session.scalar(stmt) or 0)


async def attachments(
    session: AsyncSession, org_id: uuid.UUID, idea_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[uuid.UUID]]:
    if not idea_ids:
        return {}
    rows = await session.execute(
        select(CampaignIdeaFile.idea_id, CampaignIdeaFile.file_id)
        .where(CampaignIdeaFile.org_id == org_id, CampaignIdeaFile.idea_id.in_(list(idea_ids)))
        .order_by(CampaignIdeaFile.idea_id, CampaignIdeaFile.position)
    )
    out: dict[uuid.UUID, list[uuid.UUID]] = {i: [] for i in idea_ids}
    for idea_id, file_id in rows.all():
        out[idea_id].append(file_id)
    return out


async def replace_attachments(
    session: AsyncSession, org_id: uuid.UUID, idea_id: uuid.UUID, file_ids: Sequence[uuid.UUID]
) -> None:
    await session.execute(
        delete(CampaignIdeaFile).where(CampaignIdeaFile.org_id == org_id, CampaignIdeaFile.idea_id == idea_id)
    )
    for position, file_id in enumerate(file_ids):
        session.add(CampaignIdeaFile(id=uuid.uuid4(), org_id=org_id, idea_id=idea_id, file_id=file_id,
                                     position=position))


async def detach_file(session: AsyncSession, org_id: uuid.UUID, file_id: uuid.UUID) -> None:
    await session.execute(
        delete(CampaignIdeaFile).where(CampaignIdeaFile.org_id == org_id, CampaignIdeaFile.file_id == file_id)
    )


async def delete_idea(session: AsyncSession, org_id: uuid.UUID, idea_id: uuid.UUID) -> None:
    await session.execute(delete(CampaignIdea).where(CampaignIdea.org_id == org_id, CampaignIdea.id == idea_id))


def add(session: AsyncSession, obj: object) -> None:
    session.add(obj)
