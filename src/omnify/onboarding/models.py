"""What onboarding remembers: the platforms chosen and when it completed.

Everything else about progress is computed from live state (profile, files,
credentials, ideas), so it cannot drift from what the client really has.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index
from sqlalchemy.orm import Mapped, mapped_column

from omnify.core.db import Base, IdMixin, JSONType, TenantMixin, TimestampMixin


class OnboardingState(IdMixin, TimestampMixin, TenantMixin, Base):
    __tablename__ = "client_onboarding"
    __table_args__ = (Index("ix_client_onboarding_org_id_completed_at", "org_id", "completed_at"),)

    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_profiles.id", ondelete="CASCADE"), unique=True)
    #: Platforms the agency chose to connect; null = not chosen (connected ones count).
    platforms: Mapped[list[Any] | None] = mapped_column(JSONType)
    #: First time every step was done. Sticky: onboarding is a milestone, not a live gauge.
    completed_at: Mapped[datetime | None]
