"""All SQL for actions; every query takes the organization."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from omnify.actions.models import Action, ActionStatus
from omnify.core.db import open_sweep
from omnify.core.pagination import PageParams, keyset


async def get(session: AsyncSession, org_id: uuid.UUID, action_id: uuid.UUID) -> Action | None:
    return await session.scalar(select(Action).where(Action.org_id == org_id, Action.id == action_id))


async def list_page(
    session: AsyncSession, org_id: uuid.UUID, params: PageParams, *, client_id: uuid.UUID | None = None,
    status: str | None = None, recommendation_id: uuid.UUID | None = None,
) -> Sequence[Action]:
    stmt = select(Action).where(Action.org_id == org_id)
    if client_id is not None:
        stmt = stmt.where(Action.client_id == client_id)
    if status is not None:
        stmt = stmt.where(Action.status == status)
    if recommendation_id is not None:
        stmt = stmt.where(Action.recommendation_id == recommendation_id)
    stmt = keyset(stmt, Action.created_at, Action.id, params)  # type: ignore[arg-type]
    return (await session.scalars(stmt)).all()


async def pending_for_recommendation(session: AsyncSession, org_id: uuid.UUID, rec_id: uuid.UUID) -> Action | None:
    return await session.scalar(select(Action).where(
        Action.org_id == org_id, Action.recommendation_id == rec_id,
        Action.status == ActionStatus.PENDING_APPROVAL.value).limit(1))


async def latest_for_recommendation(session: AsyncSession, org_id: uuid.UUID, rec_id: uuid.UUID) -> Action | None:
    return await session.scalar(select(Action).where(Action.org_id == org_id, Action.recommendation_id == rec_id)
                                .order_by(Action.created_at.desc()).limit(1))


async def applied_since(
    session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, since: datetime
) -> Sequence[Action]:
    """Actions whose changes still stand, applied since ``since`` (oldest first)."""
    return (await session.scalars(select(Action).where(
        Action.org_id == org_id, Action.client_id == client_id, Action.status == ActionStatus.APPLIED.value,
        Action.applied_at >= since).order_by(Action.applied_at))).all()


async def claim_status(
    session: AsyncSession, org_id: uuid.UUID, action_id: uuid.UUID, *, expected: str, new: str, at: datetime
) -> bool:
    """Compare-and-set of the status; a claim (to ``applying``/``undoing``) also records when
    it was made, so the reconciliation sweep can tell an apply in flight from a dead one."""
    values: dict[str, object] = {"status": new, "updated_at": at}
    if new in (ActionStatus.APPLYING.value, ActionStatus.UNDOING.value):
        values["applying_started_at"] = at
    result = await session.execute(
        update(Action).where(Action.org_id == org_id, Action.id == action_id, Action.status == expected)
        .values(**values).execution_options(synchronize_session=False)
    )
    return (getattr(result, "rowcount", 0) or 0) == 1


#: The states a worker leaves an action in when it dies between the claim and the record.
IN_FLIGHT = (ActionStatus.APPLYING.value, ActionStatus.UNDOING.value)


async def interrupted(session: AsyncSession, claimed_before: datetime,
                      limit: int) -> list[tuple[uuid.UUID, uuid.UUID, str, datetime | None]]:
    """(org id, action id, status, claimed at) of actions still ``applying``/``undoing`` whose
    claim is older than ``claimed_before`` (their worker died), oldest first, across
    organizations. A row claimed before migration 0175 has no claim time: its last update
    stands in for it."""
    await open_sweep(session, "actions")
    rows = await session.execute(
        select(Action.org_id, Action.id, Action.status, Action.applying_started_at)
        .where(Action.status.in_(IN_FLIGHT),
               or_(Action.applying_started_at < claimed_before,
                   and_(Action.applying_started_at.is_(None), Action.updated_at < claimed_before)))
        .order_by(Action.applying_started_at).limit(limit))
    return [(r[0], r[1], r[2], r[3]) for r in rows.all()]


async def take_over(session: AsyncSession, org_id: uuid.UUID, action_id: uuid.UUID, *, status: str,
                    claimed_at: datetime | None, new_claimed_at: datetime | None) -> bool:
    """Move the claim time of an in-flight action from ``claimed_at`` to ``new_claimed_at``
    if it is still that action in that state: the compare-and-set by which one sweep (of two
    running at once) takes an interrupted action over, and hands it back when the platform
    cannot be read."""
    same = (Action.applying_started_at.is_(None) if claimed_at is None
            else Action.applying_started_at == claimed_at)
    result = await session.execute(
        update(Action).where(Action.org_id == org_id, Action.id == action_id, Action.status == status, same)
        .values(applying_started_at=new_claimed_at).execution_options(synchronize_session=False))
    return (getattr(result, "rowcount", 0) or 0) == 1


def add(session: AsyncSession, obj: object) -> None:
    session.add(obj)


async def digest_by_status(session: AsyncSession, org_id: uuid.UUID, start: datetime,
                           end: datetime) -> list[tuple[str, str, str | None, int, int]]:
    """``(status, kind, currency, count, money per day)`` of actions created in ``[start, end)``."""
    rows = await session.execute(
        select(Action.status, Action.kind, Action.currency, func.count(),
               func.coalesce(func.sum(Action.money_per_day_minor), 0))
        .where(Action.org_id == org_id, Action.created_at >= start, Action.created_at < end)
        .group_by(Action.status, Action.kind, Action.currency))
    return [(str(s), str(k), c, int(n), int(m or 0)) for s, k, c, n, m in rows]
