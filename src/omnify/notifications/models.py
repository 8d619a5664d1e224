"""The e-mail outbox: messages are written in the business transaction, sent by a job.

Writing to the outbox in the same transaction as the change that causes the e-mail
means an invitation can never be created without its e-mail queued, nor an e-mail sent
for an invitation that rolled back.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from omnify.core.db import Base, IdMixin, JSONType, TimestampMixin


class EmailOutbox(IdMixin, TimestampMixin, Base):
    __tablename__ = "email_outbox"
    __table_args__ = (Index("ix_email_outbox_status_next_attempt_at", "status", "next_attempt_at"),)

    org_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"),
                                                     index=True)
    to_email: Mapped[str] = mapped_column(String(320))
    template: Mapped[str] = mapped_column(String(80))
    context: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    #: queued (waiting or leased by a sender) | sent | failed (permanent error or retries exhausted)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(1000))
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    #: The provider's id for the accepted message (SES MessageId, Resend id), for support
    #: and bounce matching. Added by migration 0004.
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
