"""One row per brain run of one client: when, why, how long, what it produced."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from omnify.core.db import Base, IdMixin, JSONType, TenantMixin, TimestampMixin


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class RunTrigger(enum.StrEnum):
    SYNC = "sync"  # after a sync wrote new rows
    SCHEDULE = "schedule"  # the beat's periodic sweep
    MANUAL = "manual"  # an API call


class BrainRun(IdMixin, TimestampMixin, TenantMixin, Base):
    __tablename__ = "brain_runs"
    __table_args__ = (
        Index("ix_brain_runs_org_id_created_at", "org_id", "created_at"),
        Index("ix_brain_runs_org_id_client_id_created_at", "org_id", "client_id", "created_at"),
    )

    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_profiles.id", ondelete="CASCADE"), index=True)
    trigger: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.RUNNING.value)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    #: Wall time of the whole run (load + brain + store), milliseconds.
    duration_ms: Mapped[float | None] = mapped_column(Float)
    #: Per-stage timings: load, brain modules (per currency), store.
    timings: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    #: Input sizes: metric rows, ads, orders, currencies.
    inputs: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    #: Recommendations created / updated / reopened / expired.
    outcome: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    warnings: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    error: Mapped[str | None] = mapped_column(String(500))
