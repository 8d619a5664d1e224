"""Tables of the job system: the dead-letter store and the idempotency claims.

Neither uses ``TenantMixin``: system tasks (purges, token refresh sweeps) have no
organization, and an operator must see every failure across tenants. ``org_id`` is kept
as plain data (indexed, no foreign key) so a failure outlives the organization it
concerned, which is exactly when someone asks what happened.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from omnify.core.db import Base, IdMixin, TimestampMixin, utcnow


class FailureStatus(enum.StrEnum):
    DEAD = "dead"  # waiting for an operator
    REPLAYED = "replayed"  # re-enqueued; a new failure row appears if it fails again
    RESOLVED = "resolved"  # closed by an operator without replay


class JobFailure(IdMixin, TimestampMixin, Base):
    """One task that exhausted its retries or raised a non-retryable error."""

    __tablename__ = "job_failures"
    __table_args__ = (
        Index("ix_job_failures_status_created_at", "status", "created_at"),
        CheckConstraint("status IN ('dead', 'replayed', 'resolved')", name="status"),
    )

    task_name: Mapped[str] = mapped_column(String(255), index=True)
    #: Celery task id of the failed run; unique so a redelivered failure (worker died
    #: after recording it, before acknowledging) updates the row instead of doubling it.
    task_id: Mapped[str] = mapped_column(String(64), unique=True)
    queue: Mapped[str | None] = mapped_column(String(255))
    task_args: Mapped[list[Any]] = mapped_column(default=list)
    task_kwargs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error_type: Mapped[str] = mapped_column(String(255))
    error: Mapped[str] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    org_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    trace_id: Mapped[str | None] = mapped_column(String(64))
    first_failed_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_failed_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Indexed by ix_job_failures_status_created_at (status first), which also serves the
    # "newest dead ones" list the operator looks at.
    status: Mapped[str] = mapped_column(String(16), default=FailureStatus.DEAD.value)
    replay_count: Mapped[int] = mapped_column(Integer, default=0)
    replayed_at: Mapped[datetime | None] = mapped_column()
    replay_task_id: Mapped[str | None] = mapped_column(String(64))
    #: The failure this run was a replay of, when it failed again.
    replay_of_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    resolved_at: Mapped[datetime | None] = mapped_column()


class JobRun(IdMixin, TimestampMixin, Base):
    """An idempotency claim: the effect keyed ``key`` has been committed.

    The row is inserted in the *same* transaction as the effect (see
    :func:`omnify.jobs.idempotency.once`), so after a crash either both exist or
    neither does, and a redelivered task finds the claim and skips the effect.
    """

    __tablename__ = "job_runs"

    key: Mapped[str] = mapped_column(String(255), unique=True)
    task_name: Mapped[str | None] = mapped_column(String(255))
    task_id: Mapped[str | None] = mapped_column(String(64))
