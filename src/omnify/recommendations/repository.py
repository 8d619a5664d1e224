"""All SQL for recommendations; every query takes the organization."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from omnify.core.pagination import PageParams, keyset
from omnify.recommendations.models import Recommendation


@dataclass(frozen=True, slots=True)
class Filters:
    client_id: uuid.UUID | None = None
    status: str | None = None
    module: str | None = None
    kind: str | None = None
    platform: str | None = None
    min_confidence: float | None = None
    created_since: datetime | None = None


async def get(session: AsyncSession, org_id: uuid.UUID, rec_id: uuid.UUID) -> Recommendation | None:
    return await session.scalar(
        select(Recommendation).where(Recommendation.org_id == org_id, Recommendation.id == rec_id)
    )


async def list_page(
    session: AsyncSession, org_id: uuid.UUID, params: PageParams, filters: Filters
) -> Sequence[Recommendation]:
    stmt = select(Recommendation).where(Recommendation.org_id == org_id)
    if filters.client_id is not None:
        stmt = stmt.where(Recommendation.client_id == filters.client_id)
    if filters.status is not None:
        stmt = stmt.where(Recommendation.status == filters.status)
    if filters.module is not None:
        stmt = stmt.where(Recommendation.module == filters.module)
    if filters.kind is not None:
        stmt = stmt.where(Recommendation.kind == filters.kind)
    if filters.platform is not None:
        stmt = stmt.where(Recommendation.platform == filters.platform)
    if filters.min_confidence is not None:
        stmt = stmt.where(Recommendation.confidence >= filters.min_confidence)
    if filters.created_since is not None:
        stmt = stmt.where(Recommendation.created_at >= filters.created_since)
    stmt = keyset(stmt, Recommendation.created_at, Recommendation.id, params)  # type: ignore[arg-type]
    return (await session.scalars(stmt)).all()


async def by_keys(
    session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, keys: Sequence[str]
) -> dict[str, Recommendation]:
    out: dict[str, Recommendation] = {}
    # Chunked: an IN list of thousands of parameters is slow on SQLite and capped there.
    for i in range(0, len(keys), 500):
        chunk = list(keys[i : i + 500])
        rows = await session.scalars(select(Recommendation).where(
            Recommendation.org_id == org_id, Recommendation.client_id == client_id,
            Recommendation.dedupe_key.in_(chunk)))
        out.update({r.dedupe_key: r for r in rows})
    return out


async def open_for_client(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID) -> Sequence[Recommendation]:
    return (await session.scalars(select(Recommendation).where(
        Recommendation.org_id == org_id, Recommendation.client_id == client_id, Recommendation.status == "open"
    ))).all()


async def claim_status(
    session: AsyncSession, org_id: uuid.UUID, rec_id: uuid.UUID, *, expected: str, new: str, at: datetime,
    by: str | None,
) -> bool:
    """Compare-and-set of the status: True for the one caller that moved it."""
    result = await session.execute(
        update(Recommendation)
        .where(Recommendation.org_id == org_id, Recommendation.id == rec_id, Recommendation.status == expected)
        .values(status=new, status_changed_at=at, status_changed_by=by, updated_at=at)
        .execution_options(synchronize_session=False)
    )
    return (getattr(result, "rowcount", 0) or 0) == 1


def add(session: AsyncSession, obj: object) -> None:
    session.add(obj)


async def open_counts(session: AsyncSession, org_id: uuid.UUID) -> dict[uuid.UUID, int]:
    rows = await session.execute(
        select(Recommendation.client_id, func.count()).where(Recommendation.org_id == org_id,
                                                             Recommendation.status == "open")
        .group_by(Recommendation.client_id)
    )
    return {client_id: int(n) for client_id, n in rows.all()}


async def digest_new_by_module(session: AsyncSession, org_id: uuid.UUID, start: datetime,
                               end: datetime) -> dict[str, int]:
    """Recommendations first raised in ``[start, end)``, by brain module (the weekly digest)."""
    rows = await session.execute(
        select(Recommendation.module, func.count()).where(
            Recommendation.org_id == org_id, Recommendation.first_seen_at >= start, Recommendation.first_seen_at < end)
        .group_by(Recommendation.module))
    return {str(module): int(count) for module, count in rows}


async def digest_top_open(session: AsyncSession, org_id: uuid.UUID, limit: int = 3) -> Sequence[Recommendation]:
    """The open recommendations worth the most, biggest expected impact first."""
    return (await session.scalars(
        select(Recommendation).where(Recommendation.org_id == org_id, Recommendation.status == "open",
                                     Recommendation.impact_minor.is_not(None))
        .order_by(Recommendation.impact_minor.desc(), Recommendation.id).limit(limit))).all()


async def count_open(session: AsyncSession, org_id: uuid.UUID) -> int:
    return int(await session.scalar(select(func.count()).select_from(Recommendation).where(
        Recommendation.org_id == org_id, Recommendation.status == "open")) or 0)
