"""All SQL of the reports domain; every method takes the organization."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from omnify.reports.models import ReportSchedule


def add(session: AsyncSession, obj: object) -> None:
    session.add(obj)


async def delete(session: AsyncSession, obj: object) -> None:
    await session.delete(obj)


async def schedule(session: AsyncSession, org_id: uuid.UUID, schedule_id: uuid.UUID) -> ReportSchedule | None:
    return await session.scalar(select(ReportSchedule).where(ReportSchedule.org_id == org_id,
                                                             ReportSchedule.id == schedule_id))


async def schedules_of_client(session: AsyncSession, org_id: uuid.UUID,
                              client_id: uuid.UUID) -> Sequence[ReportSchedule]:
    return (await session.scalars(select(ReportSchedule).where(
        ReportSchedule.org_id == org_id, ReportSchedule.client_id == client_id)
        .order_by(ReportSchedule.created_at))).all()


async def enabled_schedules(session: AsyncSession, org_id: uuid.UUID) -> Sequence[ReportSchedule]:
    return (await session.scalars(select(ReportSchedule).where(
        ReportSchedule.org_id == org_id, ReportSchedule.enabled.is_(True)).order_by(ReportSchedule.created_at))).all()
