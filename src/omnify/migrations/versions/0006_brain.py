"""brain: brain runs, recommendations, actions, Idempotency-Key records

Revision ID: 0006
Revises: 0003
Create Date: 2026-11-25 10:06:39

The brain's product side (issue 7). Every table is tenant-owned and gets the
row-level-security policy of omnify.core.rls on PostgreSQL. It needs only the client
profiles (0003): it reads the synced tables but has no foreign key into them, so it
branches from onboarding and lands independently of the sync migration.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import omnify.core.db
from omnify.core.rls import disable_rls_sql, enable_rls_sql

revision: str = "0006"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = ("brain",)
depends_on: str | Sequence[str] | None = None

#: In creation order; dropped in reverse (children before parents).
TABLES = ("idempotency_keys", "brain_runs", "recommendations", "actions")


def upgrade() -> None:
    op.create_table('idempotency_keys',
    sa.Column('principal_id', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('response_status', sa.Integer(), nullable=True),
    sa.Column('response_body', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('expires_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_idempotency_keys_org_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_idempotency_keys')),
    sa.UniqueConstraint('org_id', 'principal_id', 'key', name=op.f('uq_idempotency_keys_org_id_principal_id_key'))
    )
    op.create_index(op.f('ix_idempotency_keys_created_at'), 'idempotency_keys', ['created_at'], unique=False)
    op.create_index(op.f('ix_idempotency_keys_org_id'), 'idempotency_keys', ['org_id'], unique=False)
    op.create_index('ix_idempotency_keys_org_id_created_at', 'idempotency_keys', ['org_id', 'created_at'], unique=False)

    op.create_table('brain_runs',
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('started_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('duration_ms', sa.Float(), nullable=True),
    sa.Column('timings', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('inputs', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('outcome', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('warnings', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('error', sa.String(length=500), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['client_profiles.id'], name=op.f('fk_brain_runs_client_id_client_profiles'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_brain_runs_org_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_brain_runs'))
    )
    op.create_index(op.f('ix_brain_runs_client_id'), 'brain_runs', ['client_id'], unique=False)
    op.create_index(op.f('ix_brain_runs_created_at'), 'brain_runs', ['created_at'], unique=False)
    op.create_index(op.f('ix_brain_runs_org_id'), 'brain_runs', ['org_id'], unique=False)
    op.create_index('ix_brain_runs_org_id_client_id_created_at', 'brain_runs', ['org_id', 'client_id', 'created_at'], unique=False)
    op.create_index('ix_brain_runs_org_id_created_at', 'brain_runs', ['org_id', 'created_at'], unique=False)

    op.create_table('recommendations',
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('brain_run_id', sa.Uuid(), nullable=True),
    sa.Column('module', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('dedupe_key', sa.String(length=255), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('target', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('platform', sa.String(length=32), nullable=True),
    sa.Column('confidence', sa.Float(), nullable=False),
    sa.Column('impact_minor', sa.BigInteger(), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('action', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('evidence', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('status_changed_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('status_reason', sa.String(length=500), nullable=True),
    sa.Column('status_changed_by', sa.String(length=320), nullable=True),
    sa.Column('first_seen_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('seen_count', sa.Integer(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['brain_run_id'], ['brain_runs.id'], name=op.f('fk_recommendations_brain_run_id_brain_runs'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['client_id'], ['client_profiles.id'], name=op.f('fk_recommendations_client_id_client_profiles'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_recommendations_org_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recommendations')),
    sa.UniqueConstraint('org_id', 'client_id', 'dedupe_key', name=op.f('uq_recommendations_org_id_client_id_dedupe_key'))
    )
    op.create_index(op.f('ix_recommendations_brain_run_id'), 'recommendations', ['brain_run_id'], unique=False)
    op.create_index(op.f('ix_recommendations_client_id'), 'recommendations', ['client_id'], unique=False)
    op.create_index(op.f('ix_recommendations_created_at'), 'recommendations', ['created_at'], unique=False)
    op.create_index(op.f('ix_recommendations_org_id'), 'recommendations', ['org_id'], unique=False)
    op.create_index('ix_recommendations_org_id_client_id_status', 'recommendations', ['org_id', 'client_id', 'status'], unique=False)
    op.create_index('ix_recommendations_org_id_created_at', 'recommendations', ['org_id', 'created_at'], unique=False)
    op.create_index('ix_recommendations_org_id_status', 'recommendations', ['org_id', 'status'], unique=False)

    op.create_table('actions',
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('recommendation_id', sa.Uuid(), nullable=True),
    sa.Column('module', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('platform', sa.String(length=32), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('plan', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('changes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('money_per_day_minor', sa.BigInteger(), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('summary', sa.String(length=500), nullable=False),
    sa.Column('requested_by_type', sa.String(length=16), nullable=False),
    sa.Column('requested_by_id', sa.String(length=64), nullable=True),
    sa.Column('requested_by_label', sa.String(length=320), nullable=True),
    sa.Column('approved_by_label', sa.String(length=320), nullable=True),
    sa.Column('approved_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('applied_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('undone_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('undone_by_label', sa.String(length=320), nullable=True),
    sa.Column('error', sa.String(length=500), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['client_profiles.id'], name=op.f('fk_actions_client_id_client_profiles'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_actions_org_id_organizations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['recommendation_id'], ['recommendations.id'], name=op.f('fk_actions_recommendation_id_recommendations'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_actions'))
    )
    op.create_index(op.f('ix_actions_client_id'), 'actions', ['client_id'], unique=False)
    op.create_index(op.f('ix_actions_created_at'), 'actions', ['created_at'], unique=False)
    op.create_index(op.f('ix_actions_org_id'), 'actions', ['org_id'], unique=False)
    op.create_index('ix_actions_org_id_client_id_created_at', 'actions', ['org_id', 'client_id', 'created_at'], unique=False)
    op.create_index('ix_actions_org_id_created_at', 'actions', ['org_id', 'created_at'], unique=False)
    op.create_index('ix_actions_org_id_status', 'actions', ['org_id', 'status'], unique=False)
    op.create_index(op.f('ix_actions_recommendation_id'), 'actions', ['recommendation_id'], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            for statement in enable_rls_sql(table):
                op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in reversed(TABLES):
            for statement in disable_rls_sql(table):
                op.execute(statement)
    for table in reversed(TABLES):
        op.drop_table(table)
