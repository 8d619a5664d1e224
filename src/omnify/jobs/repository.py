"""All SQL of the job system. Synchronous: workers and the CLI call it directly, the async
API through ``AsyncSession.run_sync`` (one implementation, no drift between the two).

Not tenant-scoped on purpose: dead letters are an operator's (platform admin's) view
across organizations, and system tasks have no organization.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from omnify.core.db import utcnow
from omnify.core.pagination import PageParams, keyset
from omnify.jobs.models import FailureStatus, JobFailure, JobRun


@dataclass(frozen=True, slots=True)
class FailureFilter:
    status: FailureStatus | None = None
    task_name: str | None = None
    org_id: uuid.UUID | None = None


def get_failure(session: Session, failure_id: uuid.UUID) -> JobFailure | None:
    return session.get(JobFailure, failure_id)


def get_failure_by_task_id(session: Session, task_id: str) -> JobFailure | None:
    return session.scalars(select(JobFailure).where(JobFailure.task_id == task_id)).first()


def list_failures(session: Session, flt: FailureFilter, params: PageParams) -> Sequence[JobFailure]:
    """Newest first, one page plus one look-ahead row (see core.pagination.keyset)."""
    stmt = select(JobFailure)
    if flt.status is not None:
        stmt = stmt.where(JobFailure.status == flt.status.value)
    if flt.task_name:
        stmt = stmt.where(JobFailure.task_name == flt.task_name)
    if flt.org_id is not None:
        stmt = stmt.where(JobFailure.org_id == flt.org_id)
    return session.scalars(keyset(stmt, JobFailure.created_at, JobFailure.id, params)).all()


def add_failure(session: Session, failure: JobFailure) -> JobFailure:
    session.add(failure)
    session.flush()
    return failure


def mark_replayed(session: Session, failure_id: uuid.UUID, replay_task_id: str) -> bool:
    """Compare-and-set dead -> replayed; false when another operator got there first."""
    now = utcnow()
    result = session.execute(
        update(JobFailure)
        .where(JobFailure.id == failure_id, JobFailure.status == FailureStatus.DEAD.value)
        .values(
            status=FailureStatus.REPLAYED.value,
            replayed_at=now,
            replay_task_id=replay_task_id,
            replay_count=JobFailure.replay_count + 1,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


def mark_resolved(session: Session, failure_id: uuid.UUID) -> bool:
    now = utcnow()
    result = session.execute(
        update(JobFailure)
        .where(JobFailure.id == failure_id, JobFailure.status == FailureStatus.DEAD.value)
        .values(status=FailureStatus.RESOLVED.value, resolved_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


def delete_failures(session: Session, *, before: datetime, statuses: Sequence[FailureStatus]) -> int:
    result = session.execute(
        delete(JobFailure)
        .where(JobFailure.created_at < before, JobFailure.status.in_([s.value for s in statuses]))
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def delete_job_runs(session: Session, *, before: datetime) -> int:
    result = session.execute(
        delete(JobRun).where(JobRun.created_at < before).execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
