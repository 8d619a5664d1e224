"""One row per brain run of one client: when, why, how long, what it produced."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, String, UniqueConstraint
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


class BrainCalendar(IdMixin, TimestampMixin, TenantMixin, Base):
    """A client's market calendar for the brain: its country, and the days it added or removed.

    The country's public holidays and retail events come from :mod:`omnify.brain.calendar`;
    this row holds only the client's choices, so a corrected holiday rule reaches every
    client without a data migration.
    """

    __tablename__ = "brain_calendars"
    __table_args__ = (UniqueConstraint("org_id", "client_id"),)

    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_profiles.id", ondelete="CASCADE"), index=True)
    #: ISO 3166-1 alpha-2; None: no country calendar (only the added days).
    country: Mapped[str | None] = mapped_column(String(2))
    #: [{"start": "YYYY-MM-DD", "end": "YYYY-MM-DD", "name": "..."}]: the client's own market days.
    added: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    #: ["YYYY-MM-DD", ...]: country days that do not move this client's market.
    removed: Mapped[list[Any]] = mapped_column(JSONType, default=list)
