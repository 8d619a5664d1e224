"""reports: scheduled client report e-mails

Revision ID: 0172
Revises: 0171
Create Date: 2026-12-03 14:00:00

Issue 19: weekly or monthly PDF reports per client, e-mailed at a local time in the
client's time zone, with unsubscribes kept. Tenant-owned, with the row-level-security
policy of omnify.core.rls.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import omnify.core.db
from omnify.core.rls import disable_rls_sql, enable_rls_sql

revision: str = "0172"
down_revision: str | None = "0171"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('report_schedules',
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('cadence', sa.String(length=16), nullable=False),
    sa.Column('weekday', sa.Integer(), nullable=False),
    sa.Column('day_of_month', sa.Integer(), nullable=False),
    sa.Column('send_time', sa.Time(), nullable=False),
    sa.Column('recipients', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('unsubscribed', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('last_period', sa.String(length=20), nullable=True),
    sa.Column('last_sent_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_by_label', sa.String(length=320), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['client_profiles.id'], name=op.f('fk_report_schedules_client_id_client_profiles'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_report_schedules_org_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_report_schedules'))
    )
    op.create_index(op.f('ix_report_schedules_client_id'), 'report_schedules', ['client_id'], unique=False)
    op.create_index(op.f('ix_report_schedules_created_at'), 'report_schedules', ['created_at'], unique=False)
    op.create_index(op.f('ix_report_schedules_org_id'), 'report_schedules', ['org_id'], unique=False)
    op.create_index('ix_report_schedules_org_id_client_id', 'report_schedules', ['org_id', 'client_id'], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        for statement in enable_rls_sql("report_schedules"):
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in disable_rls_sql("report_schedules"):
            op.execute(statement)
    op.drop_index('ix_report_schedules_org_id_client_id', table_name='report_schedules')
    op.drop_index(op.f('ix_report_schedules_org_id'), table_name='report_schedules')
    op.drop_index(op.f('ix_report_schedules_created_at'), table_name='report_schedules')
    op.drop_index(op.f('ix_report_schedules_client_id'), table_name='report_schedules')
    op.drop_table('report_schedules')
