"""Stored recommendations of the brain.

One row per finding per client: the brain's ``dedupe_key`` (for example
``fatigue:<ad>:<onset>``, prefixed with the currency of the data it came from) is the
natural key, unique per client, so the same finding on the next run updates the row
(evidence, confidence, impact, ``last_seen_at``) instead of adding one. An open
recommendation that a later run no longer finds is marked expired; applied and dismissed
ones keep their status whatever later runs say, so a dismissed finding does not nag.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from omnify.brain_runs import models as _brain_runs  # noqa: F401  - brain_runs.id is referenced below
from omnify.core.db import Base, IdMixin, JSONType, TenantMixin, TimestampMixin


class RecommendationStatus(enum.StrEnum):
    OPEN = "open"
    APPLIED = "applied"
    DISMISSED = "dismissed"
    EXPIRED = "expired"


class Recommendation(IdMixin, TimestampMixin, TenantMixin, Base):
    __tablename__ = "recommendations"
    __table_args__ = (
        UniqueConstraint("org_id", "client_id", "dedupe_key"),
        Index("ix_recommendations_org_id_created_at", "org_id", "created_at"),
        Index("ix_recommendations_org_id_status", "org_id", "status"),
        Index("ix_recommendations_org_id_client_id_status", "org_id", "client_id", "status"),
    )

    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_profiles.id", ondelete="CASCADE"), index=True)
    #: The run that last saw this finding.
    brain_run_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("brain_runs.id", ondelete="SET NULL"),
                                                           index=True)
    module: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(40))
    dedupe_key: Mapped[str] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(String(300))
    #: What it is about: {"level": "ad", "id": <our ad id>, "name": ..., "platform": ...}.
    target: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    platform: Mapped[str | None] = mapped_column(String(32))
    confidence: Mapped[float] = mapped_column(Float)
    #: Expected impact in money, integer minor units of ``currency`` (None: not quantifiable).
    impact_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    #: Machine-readable one-click action (None: advice only, nothing to apply).
    action: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    #: The numbers behind it and a short series for a chart.
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=RecommendationStatus.OPEN.value)
    status_changed_at: Mapped[datetime | None]
    #: Why it was dismissed (free text from the user) or expired.
    status_reason: Mapped[str | None] = mapped_column(String(500))
    status_changed_by: Mapped[str | None] = mapped_column(String(320))
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    seen_count: Mapped[int] = mapped_column(default=1)
