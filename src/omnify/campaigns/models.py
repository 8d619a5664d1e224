"""Campaign ideas and the brand files attached to them."""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ForeignKey, Index, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from omnify.core.db import Base, IdMixin, JSONType, TenantMixin, TimestampMixin


class IdeaStatus(enum.StrEnum):
    DRAFT = "draft"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    LAUNCHED = "launched"
    ARCHIVED = "archived"


class Objective(enum.StrEnum):
    """The outcome-based objectives the ad platforms converge on."""

    AWARENESS = "awareness"
    TRAFFIC = "traffic"
    ENGAGEMENT = "engagement"
    LEADS = "leads"
    APP_PROMOTION = "app_promotion"
    SALES = "sales"


class CampaignIdea(IdMixin, TimestampMixin, TenantMixin, Base):
    __tablename__ = "campaign_ideas"
    __table_args__ = (
        Index("ix_campaign_ideas_org_id_client_id_created_at", "org_id", "client_id", "created_at"),
        Index("ix_campaign_ideas_org_id_client_id_status", "org_id", "client_id", "status"),
        Index("ix_campaign_ideas_org_id_status", "org_id", "status"),
    )

    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_profiles.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    objective: Mapped[str | None] = mapped_column(String(32))
    target_audience: Mapped[str | None] = mapped_column(Text)
    platforms: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    budget_amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    budget_currency: Mapped[str | None] = mapped_column(String(3))
    start_date: Mapped[date | None]
    end_date: Mapped[date | None]
    status: Mapped[str] = mapped_column(String(16), default=IdeaStatus.DRAFT.value)
    status_changed_at: Mapped[datetime | None]
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)


class CampaignIdeaFile(IdMixin, TenantMixin, Base):
    """An attachment; both ends cascade, so a purged file or idea takes its links along."""

    __tablename__ = "campaign_idea_files"
    __table_args__ = (UniqueConstraint("idea_id", "file_id"),)

    idea_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("campaign_ideas.id", ondelete="CASCADE"), index=True)
    file_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("uploaded_files.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(default=0)
