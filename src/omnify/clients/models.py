"""Client profiles: one row per client an agency manages."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from omnify.core.db import Base, IdMixin, JSONType, TenantMixin, TimestampMixin


class ClientStatus(enum.StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    #: Soft-deleted: restorable until ``archived_at`` + the retention, then purged.
    ARCHIVED = "archived"


LIVE_CLIENT = text("archived_at IS NULL")


class ClientProfile(IdMixin, TimestampMixin, TenantMixin, Base):
    __tablename__ = "client_profiles"
    __table_args__ = (
        # Company names are unique per organization among live clients only, so an
        # archived client's name can be reused (and restoring it then answers 409).
        Index("uq_client_profiles_org_id_name_key_live", "org_id", "name_key", unique=True,
              postgresql_where=LIVE_CLIENT, sqlite_where=LIVE_CLIENT),
        Index("ix_client_profiles_org_id_created_at", "org_id", "created_at"),
        Index("ix_client_profiles_org_id_status", "org_id", "status"),
        Index("ix_client_profiles_org_id_industry", "org_id", "industry"),
        Index("ix_client_profiles_archived_at", "archived_at"),
    )

    company_name: Mapped[str] = mapped_column(String(200))
    #: Case- and space-insensitive form of the name, for uniqueness and search.
    name_key: Mapped[str] = mapped_column(String(200))
    industry: Mapped[str | None] = mapped_column(String(100))
    website: Mapped[str | None] = mapped_column(String(2048))
    description: Mapped[str | None] = mapped_column(Text)
    contact_name: Mapped[str | None] = mapped_column(String(200))
    contact_email: Mapped[str | None] = mapped_column(String(320))
    contact_phone: Mapped[str | None] = mapped_column(String(16))  # E.164: + and at most 15 digits
    timezone: Mapped[str | None] = mapped_column(String(64))
    currency: Mapped[str | None] = mapped_column(String(3))
    brand: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    tags: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    # ``metadata`` is reserved by SQLAlchemy's declarative base; the column keeps the name.
    extra: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=ClientStatus.ACTIVE.value)
    #: The status to return to on restore.
    status_before_archive: Mapped[str | None] = mapped_column(String(16))
    archived_at: Mapped[datetime | None]
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"),
                                                            index=True)

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None
