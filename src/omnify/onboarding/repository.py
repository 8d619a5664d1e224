"""All SQL of onboarding state; every function takes the organization scope."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from omnify.core.db import insert_once, utcnow
from omnify.onboarding.models import OnboardingState


async def get(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID) -> OnboardingState | None:
    return await session.scalar(
        select(OnboardingState).where(OnboardingState.org_id == org_id, OnboardingState.client_id == client_id)
    )


async def count_completed(session: AsyncSession, org_id: uuid.UUID) -> int:
    stmt = select(func.count()).select_from(OnboardingState).where(
        OnboardingState.org_id == org_id, OnboardingState.completed_at.is_not(None)
    )
    return int(await session.scalar(stmt) or 0)


def add(session: AsyncSession, obj: object) -> None:
    session.add(obj)


async def create_once(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID) -> None:
    """The client's onboarding row, unless a concurrent request created it first."""
    now = utcnow()
    await insert_once(session, OnboardingState, {"id": uuid.uuid4(), "org_id": org_id, "client_id": client_id,
                                                 "created_at": now, "updated_at": now},
                      ["client_id"])


async def mark_completed(session: AsyncSession, org_id: uuid.UUID, state_id: uuid.UUID, when: datetime) -> bool:
    """Set ``completed_at`` only if still unset: of two concurrent completions exactly one
    wins (on PostgreSQL the loser waits for the row lock, then matches nothing)."""
    result = await session.execute(
        update(OnboardingState)
        .where(OnboardingState.org_id == org_id, OnboardingState.id == state_id,
               OnboardingState.completed_at.is_(None))
        .values(completed_at=when, updated_at=when)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))
