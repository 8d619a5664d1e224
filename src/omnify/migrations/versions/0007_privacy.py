"""privacy: Shopify privacy requests; app-wide receiver may sweep inbound sources

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-01 21:30:00

``shop_privacy_requests`` indexes what Shopify's mandatory privacy webhooks asked for
and where a data request's export is stored (issue 6). It hangs off a connection, so it
branches from the sync migration. It also needs the inbound sources of 0004: their RLS
policy gains a sweep clause so the app-wide privacy receiver, which knows only the shop
domain, can find which organizations hold that shop.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import omnify.core.db
from omnify.core.rls import disable_rls_sql, enable_rls_sql

revision: str = "0007"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = ("privacy",)
depends_on: str | Sequence[str] | None = ("0004",)

SOURCE_READ = "id::text = current_setting('app.inbound_source_id', true)"
SOURCE_SWEEP = "'inbound_webhook_sources' = ANY(string_to_array(current_setting('app.sweep', true), ','))"


def upgrade() -> None:
    op.create_table('shop_privacy_requests',
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('connection_id', sa.Uuid(), nullable=False),
    sa.Column('topic', sa.String(length=40), nullable=False),
    sa.Column('shop_domain', sa.String(length=255), nullable=False),
    sa.Column('customer_external_id', sa.String(length=64), nullable=True),
    sa.Column('shopify_request_id', sa.String(length=64), nullable=True),
    sa.Column('request_key', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('storage_key', sa.String(length=1024), nullable=True),
    sa.Column('rows_affected', sa.Integer(), nullable=False),
    sa.Column('created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('completed_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['client_profiles.id'], name=op.f('fk_shop_privacy_requests_client_id_client_profiles'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['connection_id'], ['connections.id'], name=op.f('fk_shop_privacy_requests_connection_id_connections'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_shop_privacy_requests_org_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shop_privacy_requests')),
    sa.UniqueConstraint('connection_id', 'topic', 'request_key', name=op.f('uq_shop_privacy_requests_connection_id_topic_request_key'))
    )
    op.create_index(op.f('ix_shop_privacy_requests_client_id'), 'shop_privacy_requests', ['client_id'], unique=False)
    op.create_index(op.f('ix_shop_privacy_requests_org_id'), 'shop_privacy_requests', ['org_id'], unique=False)
    op.create_index('ix_shop_privacy_requests_org_id_client_id_created_at', 'shop_privacy_requests', ['org_id', 'client_id', 'created_at'], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        for statement in enable_rls_sql("shop_privacy_requests"):
            op.execute(statement)
        for statement in enable_rls_sql("inbound_webhook_sources", f"({SOURCE_READ}) OR ({SOURCE_SWEEP})"):
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in enable_rls_sql("inbound_webhook_sources", SOURCE_READ):
            op.execute(statement)
        for statement in disable_rls_sql("shop_privacy_requests"):
            op.execute(statement)
    op.drop_table('shop_privacy_requests')
