"""The append-only, hash-chained audit log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from omnify.core.db import Base, IdMixin, JSONType, TenantMixin, utcnow


class AuditLog(IdMixin, TenantMixin, Base):
    """One audited event. ``hash`` = SHA-256 over the previous entry's hash and this
    entry's canonical JSON, so editing or deleting any entry breaks every later link.
    On PostgreSQL a trigger refuses UPDATE and DELETE outright."""

    __tablename__ = "audit_log"
    __table_args__ = (
        UniqueConstraint("org_id", "seq"),
        Index("ix_audit_log_org_id_created_at", "org_id", "created_at"),
        Index("ix_audit_log_org_id_action", "org_id", "action"),
        Index("ix_audit_log_org_id_target", "org_id", "target_type", "target_id"),
    )

    seq: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_type: Mapped[str] = mapped_column(String(20))  # user | api_key | system
    actor_id: Mapped[str | None] = mapped_column(String(64))
    actor_label: Mapped[str | None] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(80))
    target_type: Mapped[str | None] = mapped_column(String(60))
    target_id: Mapped[str | None] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(400))
    request_id: Mapped[str | None] = mapped_column(String(128))
    changes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    @property
    def entry_id(self) -> uuid.UUID:
        return self.id
