"""webhooks: when the attempt in flight started (a worker killed mid-attempt is seen)

Revision ID: 0173
Revises: 0172
Create Date: 2026-12-04 16:15:00

Issue 20: a worker SIGKILLed during a webhook POST left no trace of its attempt; the
delivery was retried once its lease lapsed, but the lost attempt was neither logged nor
counted. ``attempt_started_at`` is set when an attempt claims the delivery and cleared
when its result is recorded: found set on the next claim, it is an attempt that was lost.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import omnify.core.db

revision: str = "0173"
down_revision: str | None = "0172"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("webhook_deliveries",
                  sa.Column("attempt_started_at", omnify.core.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("webhook_deliveries", "attempt_started_at")
