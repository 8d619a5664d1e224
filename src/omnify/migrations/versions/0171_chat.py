"""chat: Slack and Teams alert connections, channels, routes, linked Slack users; endpoint kinds

Revision ID: 0171
Revises: 0170
Create Date: 2026-12-03 13:00:00

Issue 19: alerts to Slack and Microsoft Teams. A chat channel is delivered through a
webhook endpoint of a chat kind (``webhook_endpoints.kind``: standard, slack_webhook,
slack_app, teams_webhook; ``options`` holds e.g. the Slack channel id), so the webhooks
engine's retries, dead letters and delivery log serve both. Existing endpoints become
``standard``. New tables are tenant-owned with the row-level-security policy of
omnify.core.rls.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import omnify.core.db
from omnify.core.rls import disable_rls_sql, enable_rls_sql

revision: str = "0171"
down_revision: str | None = "0170"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("chat_connections", "chat_user_links", "chat_channels", "chat_routes")


def upgrade() -> None:
    op.create_table('chat_connections',
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('secret_blob', sa.LargeBinary(), nullable=False),
    sa.Column('secret_hint', sa.String(length=80), nullable=False),
    sa.Column('slack_team_id', sa.String(length=32), nullable=True),
    sa.Column('slack_team_name', sa.String(length=200), nullable=True),
    sa.Column('slack_bot_user_id', sa.String(length=32), nullable=True),
    sa.Column('installed_by_id', sa.Uuid(), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['installed_by_id'], ['users.id'], name=op.f('fk_chat_connections_installed_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_chat_connections_org_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chat_connections'))
    )
    op.create_index(op.f('ix_chat_connections_created_at'), 'chat_connections', ['created_at'], unique=False)
    op.create_index(op.f('ix_chat_connections_installed_by_id'), 'chat_connections', ['installed_by_id'], unique=False)
    op.create_index(op.f('ix_chat_connections_org_id'), 'chat_connections', ['org_id'], unique=False)
    op.create_index('ix_chat_connections_org_id_created_at', 'chat_connections', ['org_id', 'created_at'], unique=False)
    op.create_index(op.f('ix_chat_connections_slack_team_id'), 'chat_connections', ['slack_team_id'], unique=False)
    op.create_table('chat_user_links',
    sa.Column('slack_team_id', sa.String(length=32), nullable=False),
    sa.Column('slack_user_id', sa.String(length=32), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_chat_user_links_org_id_organizations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_chat_user_links_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chat_user_links')),
    sa.UniqueConstraint('org_id', 'slack_team_id', 'slack_user_id', name=op.f('uq_chat_user_links_org_id_slack_team_id_slack_user_id'))
    )
    op.create_index(op.f('ix_chat_user_links_created_at'), 'chat_user_links', ['created_at'], unique=False)
    op.create_index(op.f('ix_chat_user_links_org_id'), 'chat_user_links', ['org_id'], unique=False)
    op.create_index(op.f('ix_chat_user_links_user_id'), 'chat_user_links', ['user_id'], unique=False)
    op.create_table('chat_channels',
    sa.Column('connection_id', sa.Uuid(), nullable=False),
    sa.Column('endpoint_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('channel_ref', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['connection_id'], ['chat_connections.id'], name=op.f('fk_chat_channels_connection_id_chat_connections'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['endpoint_id'], ['webhook_endpoints.id'], name=op.f('fk_chat_channels_endpoint_id_webhook_endpoints'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_chat_channels_org_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chat_channels')),
    sa.UniqueConstraint('connection_id', 'channel_ref', name=op.f('uq_chat_channels_connection_id_channel_ref'))
    )
    op.create_index(op.f('ix_chat_channels_created_at'), 'chat_channels', ['created_at'], unique=False)
    op.create_index(op.f('ix_chat_channels_endpoint_id'), 'chat_channels', ['endpoint_id'], unique=False)
    op.create_index(op.f('ix_chat_channels_org_id'), 'chat_channels', ['org_id'], unique=False)
    op.create_table('chat_routes',
    sa.Column('channel_id', sa.Uuid(), nullable=False),
    sa.Column('event_kind', sa.String(length=32), nullable=False),
    sa.Column('client_id', sa.Uuid(), nullable=True),
    sa.Column('client_key', sa.String(length=36), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['chat_channels.id'], name=op.f('fk_chat_routes_channel_id_chat_channels'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['client_id'], ['client_profiles.id'], name=op.f('fk_chat_routes_client_id_client_profiles'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_chat_routes_org_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chat_routes')),
    sa.UniqueConstraint('org_id', 'channel_id', 'event_kind', 'client_key', name=op.f('uq_chat_routes_org_id_channel_id_event_kind_client_key'))
    )
    op.create_index(op.f('ix_chat_routes_channel_id'), 'chat_routes', ['channel_id'], unique=False)
    op.create_index(op.f('ix_chat_routes_client_id'), 'chat_routes', ['client_id'], unique=False)
    op.create_index(op.f('ix_chat_routes_created_at'), 'chat_routes', ['created_at'], unique=False)
    op.create_index(op.f('ix_chat_routes_org_id'), 'chat_routes', ['org_id'], unique=False)
    op.create_index('ix_chat_routes_org_id_event_kind', 'chat_routes', ['org_id', 'event_kind'], unique=False)
    op.add_column('webhook_endpoints', sa.Column('kind', sa.String(length=20), server_default='standard', nullable=False))
    op.add_column('webhook_endpoints', sa.Column('options', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True))

    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            for statement in enable_rls_sql(table):
                op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            for statement in disable_rls_sql(table):
                op.execute(statement)
    op.drop_column('webhook_endpoints', 'options')
    op.drop_column('webhook_endpoints', 'kind')
    op.drop_index('ix_chat_routes_org_id_event_kind', table_name='chat_routes')
    op.drop_index(op.f('ix_chat_routes_org_id'), table_name='chat_routes')
    op.drop_index(op.f('ix_chat_routes_created_at'), table_name='chat_routes')
    op.drop_index(op.f('ix_chat_routes_client_id'), table_name='chat_routes')
    op.drop_index(op.f('ix_chat_routes_channel_id'), table_name='chat_routes')
    op.drop_table('chat_routes')
    op.drop_index(op.f('ix_chat_channels_org_id'), table_name='chat_channels')
    op.drop_index(op.f('ix_chat_channels_endpoint_id'), table_name='chat_channels')
    op.drop_index(op.f('ix_chat_channels_created_at'), table_name='chat_channels')
    op.drop_table('chat_channels')
    op.drop_index(op.f('ix_chat_user_links_user_id'), table_name='chat_user_links')
    op.drop_index(op.f('ix_chat_user_links_org_id'), table_name='chat_user_links')
    op.drop_index(op.f('ix_chat_user_links_created_at'), table_name='chat_user_links')
    op.drop_table('chat_user_links')
    op.drop_index(op.f('ix_chat_connections_slack_team_id'), table_name='chat_connections')
    op.drop_index('ix_chat_connections_org_id_created_at', table_name='chat_connections')
    op.drop_index(op.f('ix_chat_connections_org_id'), table_name='chat_connections')
    op.drop_index(op.f('ix_chat_connections_installed_by_id'), table_name='chat_connections')
    op.drop_index(op.f('ix_chat_connections_created_at'), table_name='chat_connections')
    op.drop_table('chat_connections')
