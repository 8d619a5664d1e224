"""onboarding: client profiles, uploaded files, platform credentials, campaign ideas, onboarding state, domain events

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-26 10:00:00

Every table here is tenant-owned: on PostgreSQL each gets the row-level-security
policy of omnify.core.rls. Generated with Alembic's autogenerate against the models,
then given the RLS statements and a downgrade that drops what it created.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import omnify.core.db
from omnify.core.rls import disable_rls_sql, enable_rls_sql

revision: str = "0003"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("onboarding",)
depends_on: str | Sequence[str] | None = None

#: In creation order; dropped in reverse (children before parents).
TABLES = (
    "client_profiles",
    "domain_events",
    "campaign_ideas",
    "client_onboarding",
    "platform_credentials",
    "uploaded_files",
    "campaign_idea_files",
)


def upgrade() -> None:
    op.create_table('client_profiles',
    sa.Column('company_name', sa.String(length=200), nullable=False),
    sa.Column('name_key', sa.String(length=200), nullable=False),
    sa.Column('industry', sa.String(length=100), nullable=True),
    sa.Column('website', sa.String(length=2048), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('contact_name', sa.String(length=200), nullable=True),
    sa.Column('contact_email', sa.String(length=320), nullable=True),
    sa.Column('contact_phone', sa.String(length=16), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('brand', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('tags', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('metadata', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('status_before_archive', sa.String(length=16), nullable=True),
    sa.Column('archived_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_by_id', sa.Uuid(), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_client_profiles_created_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_client_profiles_org_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_client_profiles'))
    )
    op.create_index('ix_client_profiles_archived_at', 'client_profiles', ['archived_at'], unique=False)
    op.create_index(op.f('ix_client_profiles_created_at'), 'client_profiles', ['created_at'], unique=False)
    op.create_index(op.f('ix_client_profiles_created_by_id'), 'client_profiles', ['created_by_id'], unique=False)
    op.create_index(op.f('ix_client_profiles_org_id'), 'client_profiles', ['org_id'], unique=False)
    op.create_index('ix_client_profiles_org_id_created_at', 'client_profiles', ['org_id', 'created_at'], unique=False)
    op.create_index('ix_client_profiles_org_id_industry', 'client_profiles', ['org_id', 'industry'], unique=False)
    op.create_index('ix_client_profiles_org_id_status', 'client_profiles', ['org_id', 'status'], unique=False)
    op.create_index('uq_client_profiles_org_id_name_key_live', 'client_profiles', ['org_id', 'name_key'], unique=True, postgresql_where=sa.text('archived_at IS NULL'), sqlite_where=sa.text('archived_at IS NULL'))
    op.create_table('domain_events',
    sa.Column('type', sa.String(length=80), nullable=False),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('dispatched_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_domain_events_org_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_domain_events'))
    )
    op.create_index('ix_domain_events_dispatched_at_created_at', 'domain_events', ['dispatched_at', 'created_at'], unique=False)
    op.create_index(op.f('ix_domain_events_org_id'), 'domain_events', ['org_id'], unique=False)
    op.create_index('ix_domain_events_org_id_created_at', 'domain_events', ['org_id', 'created_at'], unique=False)
    op.create_index('ix_domain_events_org_id_type', 'domain_events', ['org_id', 'type'], unique=False)
    op.create_table('campaign_ideas',
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('objective', sa.String(length=32), nullable=True),
    sa.Column('target_audience', sa.Text(), nullable=True),
    sa.Column('platforms', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('budget_amount', sa.Numeric(precision=14, scale=2), nullable=True),
    sa.Column('budget_currency', sa.String(length=3), nullable=True),
    sa.Column('start_date', sa.Date(), nullable=True),
    sa.Column('end_date', sa.Date(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('status_changed_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_by_id', sa.Uuid(), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['client_profiles.id'], name=op.f('fk_campaign_ideas_client_id_client_profiles'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_campaign_ideas_created_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_campaign_ideas_org_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_campaign_ideas'))
    )
    op.create_index(op.f('ix_campaign_ideas_client_id'), 'campaign_ideas', ['client_id'], unique=False)
    op.create_index(op.f('ix_campaign_ideas_created_at'), 'campaign_ideas', ['created_at'], unique=False)
    op.create_index(op.f('ix_campaign_ideas_created_by_id'), 'campaign_ideas', ['created_by_id'], unique=False)
    op.create_index(op.f('ix_campaign_ideas_org_id'), 'campaign_ideas', ['org_id'], unique=False)
    op.create_index('ix_campaign_ideas_org_id_client_id_created_at', 'campaign_ideas', ['org_id', 'client_id', 'created_at'], unique=False)
    op.create_index('ix_campaign_ideas_org_id_client_id_status', 'campaign_ideas', ['org_id', 'client_id', 'status'], unique=False)
    op.create_index('ix_campaign_ideas_org_id_status', 'campaign_ideas', ['org_id', 'status'], unique=False)
    op.create_table('client_onboarding',
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('platforms', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('completed_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['client_profiles.id'], name=op.f('fk_client_onboarding_client_id_client_profiles'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_client_onboarding_org_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_client_onboarding')),
    sa.UniqueConstraint('client_id', name=op.f('uq_client_onboarding_client_id'))
    )
    op.create_index(op.f('ix_client_onboarding_created_at'), 'client_onboarding', ['created_at'], unique=False)
    op.create_index(op.f('ix_client_onboarding_org_id'), 'client_onboarding', ['org_id'], unique=False)
    op.create_index('ix_client_onboarding_org_id_completed_at', 'client_onboarding', ['org_id', 'completed_at'], unique=False)
    op.create_table('platform_credentials',
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('platform', sa.String(length=32), nullable=False),
    sa.Column('secret_blob', sa.LargeBinary(), nullable=False),
    sa.Column('master_key_id', sa.String(length=64), nullable=False),
    sa.Column('hints', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('account_id', sa.String(length=255), nullable=True),
    sa.Column('scopes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('expires_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('last_verified_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(length=500), nullable=True),
    sa.Column('last_used_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_by_id', sa.Uuid(), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['client_profiles.id'], name=op.f('fk_platform_credentials_client_id_client_profiles'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_platform_credentials_created_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_platform_credentials_org_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_platform_credentials')),
    sa.UniqueConstraint('client_id', 'platform', name=op.f('uq_platform_credentials_client_id_platform'))
    )
    op.create_index(op.f('ix_platform_credentials_client_id'), 'platform_credentials', ['client_id'], unique=False)
    op.create_index(op.f('ix_platform_credentials_created_at'), 'platform_credentials', ['created_at'], unique=False)
    op.create_index(op.f('ix_platform_credentials_created_by_id'), 'platform_credentials', ['created_by_id'], unique=False)
    op.create_index(op.f('ix_platform_credentials_master_key_id'), 'platform_credentials', ['master_key_id'], unique=False)
    op.create_index(op.f('ix_platform_credentials_org_id'), 'platform_credentials', ['org_id'], unique=False)
    op.create_index('ix_platform_credentials_org_id_client_id', 'platform_credentials', ['org_id', 'client_id'], unique=False)
    op.create_index('ix_platform_credentials_org_id_status', 'platform_credentials', ['org_id', 'status'], unique=False)
    op.create_table('uploaded_files',
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('category', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('content_type', sa.String(length=127), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('storage_backend', sa.String(length=16), nullable=False),
    sa.Column('storage_key', sa.String(length=1024), nullable=False),
    sa.Column('width', sa.Integer(), nullable=True),
    sa.Column('height', sa.Integer(), nullable=True),
    sa.Column('thumbnail_key', sa.String(length=1024), nullable=True),
    sa.Column('thumbnail_size', sa.BigInteger(), nullable=False),
    sa.Column('uploaded_by_id', sa.Uuid(), nullable=True),
    sa.Column('deleted_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['client_profiles.id'], name=op.f('fk_uploaded_files_client_id_client_profiles'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_uploaded_files_org_id_organizations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['uploaded_by_id'], ['users.id'], name=op.f('fk_uploaded_files_uploaded_by_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_uploaded_files')),
    sa.UniqueConstraint('storage_key', name=op.f('uq_uploaded_files_storage_key'))
    )
    op.create_index(op.f('ix_uploaded_files_client_id'), 'uploaded_files', ['client_id'], unique=False)
    op.create_index(op.f('ix_uploaded_files_created_at'), 'uploaded_files', ['created_at'], unique=False)
    op.create_index(op.f('ix_uploaded_files_org_id'), 'uploaded_files', ['org_id'], unique=False)
    op.create_index('ix_uploaded_files_org_id_client_id_category', 'uploaded_files', ['org_id', 'client_id', 'category'], unique=False)
    op.create_index('ix_uploaded_files_org_id_client_id_created_at', 'uploaded_files', ['org_id', 'client_id', 'created_at'], unique=False)
    op.create_index('ix_uploaded_files_org_id_deleted_at', 'uploaded_files', ['org_id', 'deleted_at'], unique=False)
    op.create_index(op.f('ix_uploaded_files_uploaded_by_id'), 'uploaded_files', ['uploaded_by_id'], unique=False)
    op.create_index('uq_uploaded_files_client_id_sha256_live', 'uploaded_files', ['client_id', 'sha256'], unique=True, postgresql_where=sa.text('deleted_at IS NULL'), sqlite_where=sa.text('deleted_at IS NULL'))
    op.create_table('campaign_idea_files',
    sa.Column('idea_id', sa.Uuid(), nullable=False),
    sa.Column('file_id', sa.Uuid(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['file_id'], ['uploaded_files.id'], name=op.f('fk_campaign_idea_files_file_id_uploaded_files'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['idea_id'], ['campaign_ideas.id'], name=op.f('fk_campaign_idea_files_idea_id_campaign_ideas'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_campaign_idea_files_org_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_campaign_idea_files')),
    sa.UniqueConstraint('idea_id', 'file_id', name=op.f('uq_campaign_idea_files_idea_id_file_id'))
    )
    op.create_index(op.f('ix_campaign_idea_files_file_id'), 'campaign_idea_files', ['file_id'], unique=False)
    op.create_index(op.f('ix_campaign_idea_files_idea_id'), 'campaign_idea_files', ['idea_id'], unique=False)
    op.create_index(op.f('ix_campaign_idea_files_org_id'), 'campaign_idea_files', ['org_id'], unique=False)

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
