"""Scheduled client reports: who gets which client's PDF, how often, at what local time.

``last_period`` names the last period sent (``W:2026-03-02`` for the week starting then,
``M:2026-03`` for a month); the beat compares it with the period due now, so a schedule
sends each period once however often the beat runs. ``unsubscribed`` keeps the addresses
that used the e-mail's unsubscribe link: they stay off the list even if re-added by
mistake, until someone re-adds them on purpose (which clears the entry).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime, time
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from omnify.core.db import Base, IdMixin, JSONType, TenantMixin, TimestampMixin


class Cadence(enum.StrEnum):
    WEEKLY = "weekly"
    MONTHLY = "monthly"


class ReportSchedule(IdMixin, TimestampMixin, TenantMixin, Base):
    __tablename__ = "report_schedules"
    __table_args__ = (Index("ix_report_schedules_org_id_client_id", "org_id", "client_id"),)

    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_profiles.id", ondelete="CASCADE"), index=True)
    cadence: Mapped[str] = mapped_column(String(16))
    #: Weekly: the local weekday it is sent (0 = Monday); monthly: the day of the month (1-28).
    weekday: Mapped[int] = mapped_column(default=0)
    day_of_month: Mapped[int] = mapped_column(default=1)
    send_time: Mapped[time]
    recipients: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    unsubscribed: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    enabled: Mapped[bool] = mapped_column(default=True)
    last_period: Mapped[str | None] = mapped_column(String(20))
    last_sent_at: Mapped[datetime | None]
    created_by_label: Mapped[str | None] = mapped_column(String(320))
