"""brain: a market calendar per client (country, added and removed days)

Revision ID: 0100
Revises: 0006
Create Date: 2026-12-03 10:00:00

Issue 17: the anomaly and fatigue detectors treat a client's holidays and retail events
as market days. The country's days are computed (omnify.brain.calendar); this table
keeps what a client chose: its country and its own additions and removals. A tenant
table, with the row-level-security policy of omnify.core.rls on PostgreSQL.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import omnify.core.db
from omnify.core.rls import disable_rls_sql, enable_rls_sql

revision: str = "0100"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "brain_calendars",
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("added", _JSON, nullable=False),
        sa.Column("removed", _JSON, nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", omnify.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", omnify.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["client_profiles.id"],
                                name=op.f("fk_brain_calendars_client_id_client_profiles"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"],
                                name=op.f("fk_brain_calendars_org_id_organizations"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_brain_calendars")),
        sa.UniqueConstraint("org_id", "client_id", name=op.f("uq_brain_calendars_org_id_client_id")),
    )
    op.create_index(op.f("ix_brain_calendars_client_id"), "brain_calendars", ["client_id"], unique=False)
    op.create_index(op.f("ix_brain_calendars_created_at"), "brain_calendars", ["created_at"], unique=False)
    op.create_index(op.f("ix_brain_calendars_org_id"), "brain_calendars", ["org_id"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        for statement in enable_rls_sql("brain_calendars"):
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in disable_rls_sql("brain_calendars"):
            op.execute(statement)
    op.drop_index(op.f("ix_brain_calendars_org_id"), table_name="brain_calendars")
    op.drop_index(op.f("ix_brain_calendars_created_at"), table_name="brain_calendars")
    op.drop_index(op.f("ix_brain_calendars_client_id"), table_name="brain_calendars")
    op.drop_table("brain_calendars")
