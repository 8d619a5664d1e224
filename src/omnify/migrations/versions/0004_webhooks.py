"""webhooks: outbound endpoints, events, deliveries, attempts; inbound sources and events; outbox provider id

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-26 12:00:00

Generated with Alembic's autogenerate against the models, then given the row-level
security policies (with the sweep/receiver read clauses documented in
omnify.webhooks.models) and a downgrade that drops exactly what it created.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import omnify.core.db
from omnify.core.rls import disable_rls_sql, enable_rls_sql

revision: str = "0004"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("webhooks",)
depends_on: str | Sequence[str] | None = None


def _sweep(table: str) -> str:
    return f"'{table}' = ANY(string_to_array(current_setting('app.sweep', true), ','))"


#: Tenant tables in creation order (dropped in reverse), with their extra read clause.
RLS_TABLES: dict[str, str | None] = {
    "inbound_webhook_sources": "id::text = current_setting('app.inbound_source_id', true)",
    "webhook_endpoints": None,
    "webhook_events": _sweep("webhook_events"),
    "inbound_webhook_events": _sweep("inbound_webhook_events"),
    "webhook_deliveries": _sweep("webhook_deliveries"),
    "webhook_attempts": None,
}


def upgrade() -> None:
    op.create_table('inbound_webhook_sources',
    sa.Column('provider', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('account', sa.String(length=255), nullable=True),
    sa.Column('ref_type', sa.String(length=40), nullable=True),
    sa.Column('ref_id', sa.String(length=64), nullable=True),
    sa.Column('secret_blob', sa.LargeBinary(), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_inbound_webhook_sources_org_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbound_webhook_sources'))
    )
    op.create_index(op.f('ix_inbound_webhook_sources_created_at'), 'inbound_webhook_sources', ['created_at'], unique=False)
    op.create_index(op.f('ix_inbound_webhook_sources_org_id'), 'inbound_webhook_sources', ['org_id'], unique=False)
    op.create_table('webhook_endpoints',
    sa.Column('url', sa.String(length=2048), nullable=False),
    sa.Column('description', sa.String(length=500), nullable=True),
    sa.Column('event_types', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('disabled_reason', sa.String(length=40), nullable=True),
    sa.Column('disabled_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('secret_blob', sa.LargeBinary(), nullable=False),
    sa.Column('secret_hint', sa.String(length=20), nullable=False),
    sa.Column('previous_secret_blob', sa.LargeBinary(), nullable=True),
    sa.Column('previous_secret_expires_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('secret_rotated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('failing_since', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_success_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_failure_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_webhook_endpoints_org_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_endpoints'))
    )
    op.create_index(op.f('ix_webhook_endpoints_created_at'), 'webhook_endpoints', ['created_at'], unique=False)
    op.create_index(op.f('ix_webhook_endpoints_org_id'), 'webhook_endpoints', ['org_id'], unique=False)
    op.create_index('ix_webhook_endpoints_org_id_created_at', 'webhook_endpoints', ['org_id', 'created_at'], unique=False)
    op.create_table('webhook_events',
    sa.Column('type', sa.String(length=80), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_webhook_events_org_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_events'))
    )
    op.create_index(op.f('ix_webhook_events_org_id'), 'webhook_events', ['org_id'], unique=False)
    op.create_index('ix_webhook_events_org_id_created_at', 'webhook_events', ['org_id', 'created_at'], unique=False)
    op.create_table('inbound_webhook_events',
    sa.Column('source_id', sa.Uuid(), nullable=False),
    sa.Column('provider', sa.String(length=40), nullable=False),
    sa.Column('delivery_id', sa.String(length=255), nullable=False),
    sa.Column('topic', sa.String(length=120), nullable=False),
    sa.Column('occurred_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('received_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('headers', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('processed_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(length=500), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_inbound_webhook_events_org_id_organizations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['source_id'], ['inbound_webhook_sources.id'], name=op.f('fk_inbound_webhook_events_source_id_inbound_webhook_sources'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbound_webhook_events')),
    sa.UniqueConstraint('source_id', 'delivery_id', name=op.f('uq_inbound_webhook_events_source_id_delivery_id'))
    )
    op.create_index(op.f('ix_inbound_webhook_events_org_id'), 'inbound_webhook_events', ['org_id'], unique=False)
    op.create_index('ix_inbound_webhook_events_org_id_received_at', 'inbound_webhook_events', ['org_id', 'received_at'], unique=False)
    op.create_index('ix_inbound_webhook_events_status_next_attempt_at', 'inbound_webhook_events', ['status', 'next_attempt_at'], unique=False)
    op.create_table('webhook_deliveries',
    sa.Column('endpoint_id', sa.Uuid(), nullable=False),
    sa.Column('event_id', sa.Uuid(), nullable=False),
    sa.Column('event_type', sa.String(length=80), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('cycle_attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_attempt_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_status_code', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.String(length=500), nullable=True),
    sa.Column('succeeded_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('failed_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('replay_count', sa.Integer(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['endpoint_id'], ['webhook_endpoints.id'], name=op.f('fk_webhook_deliveries_endpoint_id_webhook_endpoints'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['event_id'], ['webhook_events.id'], name=op.f('fk_webhook_deliveries_event_id_webhook_events'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_webhook_deliveries_org_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_deliveries')),
    sa.UniqueConstraint('endpoint_id', 'event_id', name=op.f('uq_webhook_deliveries_endpoint_id_event_id'))
    )
    op.create_index(op.f('ix_webhook_deliveries_created_at'), 'webhook_deliveries', ['created_at'], unique=False)
    op.create_index('ix_webhook_deliveries_endpoint_id_created_at', 'webhook_deliveries', ['endpoint_id', 'created_at'], unique=False)
    op.create_index(op.f('ix_webhook_deliveries_event_id'), 'webhook_deliveries', ['event_id'], unique=False)
    op.create_index(op.f('ix_webhook_deliveries_org_id'), 'webhook_deliveries', ['org_id'], unique=False)
    op.create_index('ix_webhook_deliveries_status_next_attempt_at', 'webhook_deliveries', ['status', 'next_attempt_at'], unique=False)
    op.create_table('webhook_attempts',
    sa.Column('delivery_id', sa.Uuid(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('url', sa.String(length=2048), nullable=False),
    sa.Column('ip', sa.String(length=64), nullable=True),
    sa.Column('success', sa.Boolean(), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('duration_ms', sa.Integer(), nullable=False),
    sa.Column('response_excerpt', sa.Text(), nullable=True),
    sa.Column('error', sa.String(length=500), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['delivery_id'], ['webhook_deliveries.id'], name=op.f('fk_webhook_attempts_delivery_id_webhook_deliveries'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_webhook_attempts_org_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_attempts')),
    sa.UniqueConstraint('delivery_id', 'number', name=op.f('uq_webhook_attempts_delivery_id_number'))
    )
    op.create_index(op.f('ix_webhook_attempts_org_id'), 'webhook_attempts', ['org_id'], unique=False)

    with op.batch_alter_table("email_outbox") as batch_op:
        batch_op.add_column(sa.Column("provider_message_id", sa.String(length=255), nullable=True))

    if op.get_bind().dialect.name == "postgresql":
        for table, extra in RLS_TABLES.items():
            for stmt in enable_rls_sql(table, extra):
                op.execute(stmt)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in RLS_TABLES:
            for stmt in disable_rls_sql(table):
                op.execute(stmt)
    with op.batch_alter_table("email_outbox") as batch_op:
        batch_op.drop_column("provider_message_id")
    for table in reversed(list(RLS_TABLES)):
        op.drop_table(table)
