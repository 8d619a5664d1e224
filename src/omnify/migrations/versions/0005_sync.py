"""sync: platform connections, OAuth states, normalized synced tables, sync runs and cursors

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-27 09:00:00

Issue 6's product side. Every table is tenant-owned and gets the row-level-security
policy of omnify.core.rls on PostgreSQL. It branches from onboarding (0003) because
connections and synced rows belong to client profiles (foreign keys to
``client_profiles``). Generated with Alembic's autogenerate against the models, then
given the RLS statements and a downgrade that drops what it created.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import omnify.core.db
from omnify.core.rls import disable_rls_sql, enable_rls_sql

revision: str = "0005"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = ("sync",)
depends_on: str | Sequence[str] | None = None

#: In creation order; dropped in reverse (children before parents).
TABLES = (
    "connections",
    "oauth_states",
    "ad_accounts",
    "shop_customers",
    "sync_cursors",
    "sync_runs",
    "campaigns",
    "creatives",
    "shop_orders",
    "ad_groups",
    "ads",
    "ad_metrics_daily",
)


def upgrade() -> None:
    op.create_table('connections',
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('platform', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('external_user_id', sa.String(length=255), nullable=True),
    sa.Column('shop_domain', sa.String(length=255), nullable=True),
    sa.Column('available_accounts', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('selected_account_ids', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('scopes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('token_expires_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('connected_by_id', sa.Uuid(), nullable=True),
    sa.Column('connected_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('disconnected_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_verified_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(length=1000), nullable=True),
    sa.Column('last_error_code', sa.String(length=64), nullable=True),
    sa.Column('last_synced_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_sync_status', sa.String(length=16), nullable=True),
    sa.Column('next_sync_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('consecutive_failures', sa.Integer(), nullable=False),
    sa.Column('backfill_status', sa.String(length=16), nullable=False),
    sa.Column('backfill_days', sa.Integer(), nullable=True),
    sa.Column('backfill_started_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('backfill_finished_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('backfill_units_total', sa.Integer(), nullable=False),
    sa.Column('backfill_units_done', sa.Integer(), nullable=False),
    sa.Column('backfill_rows', sa.BigInteger(), nullable=False),
    sa.Column('sync_lock_token', sa.String(length=64), nullable=True),
    sa.Column('sync_lock_expires_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('inbound_source_id', sa.Uuid(), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['client_profiles.id'], name=op.f('fk_connections_client_id_client_profiles'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['connected_by_id'], ['users.id'], name=op.f('fk_connections_connected_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_connections_org_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_connections')),
    sa.UniqueConstraint('client_id', 'platform', name=op.f('uq_connections_client_id_platform'))
    )
    op.create_index(op.f('ix_connections_connected_by_id'), 'connections', ['connected_by_id'], unique=False)
    op.create_index(op.f('ix_connections_created_at'), 'connections', ['created_at'], unique=False)
    op.create_index(op.f('ix_connections_org_id'), 'connections', ['org_id'], unique=False)
    op.create_index('ix_connections_org_id_client_id', 'connections', ['org_id', 'client_id'], unique=False)
    op.create_index('ix_connections_org_id_status_next_sync_at', 'connections', ['org_id', 'status', 'next_sync_at'], unique=False)
    op.create_index('ix_connections_org_id_token_expires_at', 'connections', ['org_id', 'token_expires_at'], unique=False)
    op.create_table('oauth_states',
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('platform', sa.String(length=32), nullable=False),
    sa.Column('nonce_hash', sa.String(length=64), nullable=False),
    sa.Column('redirect_uri', sa.String(length=2048), nullable=False),
    sa.Column('shop_domain', sa.String(length=255), nullable=True),
    sa.Column('verifier_blob', sa.LargeBinary(), nullable=True),
    sa.Column('expires_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('consumed_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['client_profiles.id'], name=op.f('fk_oauth_states_client_id_client_profiles'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_oauth_states_org_id_organizations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_oauth_states_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_oauth_states')),
    sa.UniqueConstraint('nonce_hash', name=op.f('uq_oauth_states_nonce_hash'))
    )
    op.create_index(op.f('ix_oauth_states_client_id'), 'oauth_states', ['client_id'], unique=False)
    op.create_index(op.f('ix_oauth_states_created_at'), 'oauth_states', ['created_at'], unique=False)
    op.create_index(op.f('ix_oauth_states_org_id'), 'oauth_states', ['org_id'], unique=False)
    op.create_index('ix_oauth_states_org_id_expires_at', 'oauth_states', ['org_id', 'expires_at'], unique=False)
    op.create_index(op.f('ix_oauth_states_user_id'), 'oauth_states', ['user_id'], unique=False)
    op.create_table('ad_accounts',
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('platform', sa.String(length=32), nullable=False),
    sa.Column('external_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('connection_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['client_profiles.id'], name=op.f('fk_ad_accounts_client_id_client_profiles'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['connection_id'], ['connections.id'], name=op.f('fk_ad_accounts_connection_id_connections'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_ad_accounts_org_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ad_accounts')),
    sa.UniqueConstraint('connection_id', 'external_id', name=op.f('uq_ad_accounts_connection_id_external_id'))
    )
    op.create_index(op.f('ix_ad_accounts_client_id'), 'ad_accounts', ['client_id'], unique=False)
    op.create_index(op.f('ix_ad_accounts_org_id'), 'ad_accounts', ['org_id'], unique=False)
    op.create_table('shop_customers',
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('first_name', sa.String(length=200), nullable=True),
    sa.Column('last_name', sa.String(length=200), nullable=True),
    sa.Column('orders_count', sa.Integer(), nullable=False),
    sa.Column('total_spent_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('customer_created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('platform_updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('platform', sa.String(length=32), nullable=False),
    sa.Column('external_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('connection_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['client_profiles.id'], name=op.f('fk_shop_customers_client_id_client_profiles'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['connection_id'], ['connections.id'], name=op.f('fk_shop_customers_connection_id_connections'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_shop_customers_org_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shop_customers')),
    sa.UniqueConstraint('connection_id', 'external_id', name=op.f('uq_shop_customers_connection_id_external_id'))
    )
    op.create_index(op.f('ix_shop_customers_client_id'), 'shop_customers', ['client_id'], unique=False)
    op.create_index(op.f('ix_shop_customers_org_id'), 'shop_customers', ['org_id'], unique=False)
    op.create_table('sync_cursors',
    sa.Column('connection_id', sa.Uuid(), nullable=False),
    sa.Column('account_external_id', sa.String(length=255), nullable=False),
    sa.Column('stream', sa.String(length=32), nullable=False),
    sa.Column('value', sa.String(length=64), nullable=False),
    sa.Column('updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['connection_id'], ['connections.id'], name=op.f('fk_sync_cursors_connection_id_connections'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_sync_cursors_org_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sync_cursors')),
    sa.UniqueConstraint('connection_id', 'account_external_id', 'stream', name=op.f('uq_sync_cursors_connection_id_account_external_id_stream'))
    )
    op.create_index(op.f('ix_sync_cursors_org_id'), 'sync_cursors', ['org_id'], unique=False)
    op.create_table('sync_runs',
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('connection_id', sa.Uuid(), nullable=False),
    sa.Column('platform', sa.String(length=32), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('accounts', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('started_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('rows_read', sa.BigInteger(), nullable=False),
    sa.Column('rows_written', sa.BigInteger(), nullable=False),
    sa.Column('streams', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('error_code', sa.String(length=64), nullable=True),
    sa.Column('error', sa.String(length=1000), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['client_profiles.id'], name=op.f('fk_sync_runs_client_id_client_profiles'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['connection_id'], ['connections.id'], name=op.f('fk_sync_runs_connection_id_connections'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_sync_runs_org_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sync_runs'))
    )
    op.create_index(op.f('ix_sync_runs_client_id'), 'sync_runs', ['client_id'], unique=False)
    op.create_index('ix_sync_runs_connection_id_started_at', 'sync_runs', ['connection_id', 'started_at'], unique=False)
    op.create_index(op.f('ix_sync_runs_created_at'), 'sync_runs', ['created_at'], unique=False)
    op.create_index(op.f('ix_sync_runs_org_id'), 'sync_runs', ['org_id'], unique=False)
    op.create_index('ix_sync_runs_org_id_created_at', 'sync_runs', ['org_id', 'created_at'], unique=False)
    op.create_table('campaigns',
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('objective', sa.String(length=64), nullable=True),
    sa.Column('daily_budget_minor', sa.BigInteger(), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('platform_updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('platform', sa.String(length=32), nullable=False),
    sa.Column('external_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('connection_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('ad_account_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['ad_account_id'], ['ad_accounts.id'], name=op.f('fk_campaigns_ad_account_id_ad_accounts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['client_id'], ['client_profiles.id'], name=op.f('fk_campaigns_client_id_client_profiles'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['connection_id'], ['connections.id'], name=op.f('fk_campaigns_connection_id_connections'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_campaigns_org_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_campaigns')),
    sa.UniqueConstraint('connection_id', 'external_id', name=op.f('uq_campaigns_connection_id_external_id'))
    )
    op.create_index(op.f('ix_campaigns_ad_account_id'), 'campaigns', ['ad_account_id'], unique=False)
    op.create_index(op.f('ix_campaigns_client_id'), 'campaigns', ['client_id'], unique=False)
    op.create_index(op.f('ix_campaigns_org_id'), 'campaigns', ['org_id'], unique=False)
    op.create_table('creatives',
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('title', sa.String(length=255), nullable=True),
    sa.Column('body', sa.Text(), nullable=True),
    sa.Column('image_url', sa.String(length=2048), nullable=True),
    sa.Column('video_id', sa.String(length=128), nullable=True),
    sa.Column('call_to_action', sa.String(length=64), nullable=True),
    sa.Column('platform', sa.String(length=32), nullable=False),
    sa.Column('external_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('connection_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('ad_account_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['ad_account_id'], ['ad_accounts.id'], name=op.f('fk_creatives_ad_account_id_ad_accounts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['client_id'], ['client_profiles.id'], name=op.f('fk_creatives_client_id_client_profiles'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['connection_id'], ['connections.id'], name=op.f('fk_creatives_connection_id_connections'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_creatives_org_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_creatives')),
    sa.UniqueConstraint('connection_id', 'external_id', name=op.f('uq_creatives_connection_id_external_id'))
    )
    op.create_index(op.f('ix_creatives_ad_account_id'), 'creatives', ['ad_account_id'], unique=False)
    op.create_index(op.f('ix_creatives_client_id'), 'creatives', ['client_id'], unique=False)
    op.create_index(op.f('ix_creatives_org_id'), 'creatives', ['org_id'], unique=False)
    op.create_table('shop_orders',
    sa.Column('customer_external_id', sa.String(length=64), nullable=True),
    sa.Column('customer_id', sa.Uuid(), nullable=True),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('total_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('financial_status', sa.String(length=32), nullable=True),
    sa.Column('ordered_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('platform_updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('line_items', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('platform', sa.String(length=32), nullable=False),
    sa.Column('external_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('connection_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['client_profiles.id'], name=op.f('fk_shop_orders_client_id_client_profiles'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['connection_id'], ['connections.id'], name=op.f('fk_shop_orders_connection_id_connections'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['customer_id'], ['shop_customers.id'], name=op.f('fk_shop_orders_customer_id_shop_customers'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_shop_orders_org_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shop_orders')),
    sa.UniqueConstraint('connection_id', 'external_id', name=op.f('uq_shop_orders_connection_id_external_id'))
    )
    op.create_index(op.f('ix_shop_orders_client_id'), 'shop_orders', ['client_id'], unique=False)
    op.create_index(op.f('ix_shop_orders_customer_id'), 'shop_orders', ['customer_id'], unique=False)
    op.create_index(op.f('ix_shop_orders_org_id'), 'shop_orders', ['org_id'], unique=False)
    op.create_index('ix_shop_orders_org_id_client_id_ordered_at', 'shop_orders', ['org_id', 'client_id', 'ordered_at'], unique=False)
    op.create_table('ad_groups',
    sa.Column('campaign_id', sa.Uuid(), nullable=True),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('daily_budget_minor', sa.BigInteger(), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('targeting', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('platform_updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('platform', sa.String(length=32), nullable=False),
    sa.Column('external_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('connection_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('ad_account_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['ad_account_id'], ['ad_accounts.id'], name=op.f('fk_ad_groups_ad_account_id_ad_accounts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_ad_groups_campaign_id_campaigns'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['client_id'], ['client_profiles.id'], name=op.f('fk_ad_groups_client_id_client_profiles'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['connection_id'], ['connections.id'], name=op.f('fk_ad_groups_connection_id_connections'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_ad_groups_org_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ad_groups')),
    sa.UniqueConstraint('connection_id', 'external_id', name=op.f('uq_ad_groups_connection_id_external_id'))
    )
    op.create_index(op.f('ix_ad_groups_ad_account_id'), 'ad_groups', ['ad_account_id'], unique=False)
    op.create_index(op.f('ix_ad_groups_campaign_id'), 'ad_groups', ['campaign_id'], unique=False)
    op.create_index(op.f('ix_ad_groups_client_id'), 'ad_groups', ['client_id'], unique=False)
    op.create_index(op.f('ix_ad_groups_org_id'), 'ad_groups', ['org_id'], unique=False)
    op.create_table('ads',
    sa.Column('campaign_id', sa.Uuid(), nullable=True),
    sa.Column('ad_group_id', sa.Uuid(), nullable=True),
    sa.Column('creative_id', sa.Uuid(), nullable=True),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('platform_updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('platform', sa.String(length=32), nullable=False),
    sa.Column('external_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('connection_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('ad_account_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['ad_account_id'], ['ad_accounts.id'], name=op.f('fk_ads_ad_account_id_ad_accounts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['ad_group_id'], ['ad_groups.id'], name=op.f('fk_ads_ad_group_id_ad_groups'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_ads_campaign_id_campaigns'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['client_id'], ['client_profiles.id'], name=op.f('fk_ads_client_id_client_profiles'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['connection_id'], ['connections.id'], name=op.f('fk_ads_connection_id_connections'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['creative_id'], ['creatives.id'], name=op.f('fk_ads_creative_id_creatives'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_ads_org_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ads')),
    sa.UniqueConstraint('connection_id', 'external_id', name=op.f('uq_ads_connection_id_external_id'))
    )
    op.create_index(op.f('ix_ads_ad_account_id'), 'ads', ['ad_account_id'], unique=False)
    op.create_index(op.f('ix_ads_ad_group_id'), 'ads', ['ad_group_id'], unique=False)
    op.create_index(op.f('ix_ads_campaign_id'), 'ads', ['campaign_id'], unique=False)
    op.create_index(op.f('ix_ads_client_id'), 'ads', ['client_id'], unique=False)
    op.create_index(op.f('ix_ads_creative_id'), 'ads', ['creative_id'], unique=False)
    op.create_index(op.f('ix_ads_org_id'), 'ads', ['org_id'], unique=False)
    op.create_table('ad_metrics_daily',
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('connection_id', sa.Uuid(), nullable=False),
    sa.Column('platform', sa.String(length=32), nullable=False),
    sa.Column('level', sa.String(length=16), nullable=False),
    sa.Column('entity_external_id', sa.String(length=64), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('campaign_id', sa.Uuid(), nullable=True),
    sa.Column('ad_group_id', sa.Uuid(), nullable=True),
    sa.Column('ad_id', sa.Uuid(), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('spend_minor', sa.BigInteger(), nullable=False),
    sa.Column('impressions', sa.BigInteger(), nullable=False),
    sa.Column('clicks', sa.BigInteger(), nullable=False),
    sa.Column('conversions', sa.Float(), nullable=False),
    sa.Column('revenue_minor', sa.BigInteger(), nullable=False),
    sa.Column('reach', sa.BigInteger(), nullable=True),
    sa.Column('frequency', sa.Float(), nullable=True),
    sa.Column('created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('ad_account_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['ad_account_id'], ['ad_accounts.id'], name=op.f('fk_ad_metrics_daily_ad_account_id_ad_accounts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['ad_group_id'], ['ad_groups.id'], name=op.f('fk_ad_metrics_daily_ad_group_id_ad_groups'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['ad_id'], ['ads.id'], name=op.f('fk_ad_metrics_daily_ad_id_ads'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_ad_metrics_daily_campaign_id_campaigns'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['client_id'], ['client_profiles.id'], name=op.f('fk_ad_metrics_daily_client_id_client_profiles'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['connection_id'], ['connections.id'], name=op.f('fk_ad_metrics_daily_connection_id_connections'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_ad_metrics_daily_org_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ad_metrics_daily')),
    sa.UniqueConstraint('connection_id', 'level', 'entity_external_id', 'day', name=op.f('uq_ad_metrics_daily_connection_id_level_entity_external_id_day'))
    )
    op.create_index(op.f('ix_ad_metrics_daily_ad_account_id'), 'ad_metrics_daily', ['ad_account_id'], unique=False)
    op.create_index(op.f('ix_ad_metrics_daily_ad_group_id'), 'ad_metrics_daily', ['ad_group_id'], unique=False)
    op.create_index('ix_ad_metrics_daily_ad_id_day', 'ad_metrics_daily', ['ad_id', 'day'], unique=False)
    op.create_index(op.f('ix_ad_metrics_daily_campaign_id'), 'ad_metrics_daily', ['campaign_id'], unique=False)
    op.create_index('ix_ad_metrics_daily_client_id_day', 'ad_metrics_daily', ['client_id', 'day'], unique=False)
    op.create_index(op.f('ix_ad_metrics_daily_org_id'), 'ad_metrics_daily', ['org_id'], unique=False)
    # ### end Alembic commands ###

    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            for stmt in enable_rls_sql(table):
                op.execute(stmt)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            for stmt in disable_rls_sql(table):
                op.execute(stmt)
    # Dropping a table drops its indexes and constraints with it, on both databases.
    for table in reversed(TABLES):
        op.drop_table(table)
