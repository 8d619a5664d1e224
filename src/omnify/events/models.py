"""The domain-event outbox.

Events are rows written in the same transaction as the change they describe, so an
event exists if and only if its change committed. A dispatcher (the webhooks and
notifications layers) reads undispatched rows in ``created_at`` order and stamps
``dispatched_at``; nothing here knows who consumes them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from omnify.core.db import Base, IdMixin, JSONType, TenantMixin, utcnow


class DomainEvent(IdMixin, TenantMixin, Base):
    __tablename__ = "domain_events"
    __table_args__ = (
        # The dispatcher's queue: oldest undispatched first.
        Index("ix_domain_events_dispatched_at_created_at", "dispatched_at", "created_at"),
        Index("ix_domain_events_org_id_created_at", "org_id", "created_at"),
        Index("ix_domain_events_org_id_type", "org_id", "type"),
    )

    type: Mapped[str] = mapped_column(String(80))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    dispatched_at: Mapped[datetime | None]
