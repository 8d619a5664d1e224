"""rules: automation rules, their evaluations and firings, and entity labels

Revision ID: 0170
Revises: 0006
Create Date: 2026-12-03 12:00:00

Issue 19: user-defined rules that act through the one-click action path. Every table is
tenant-owned with the row-level-security policy of omnify.core.rls; ``rules`` also
admits the beat sweep's ``app.sweep`` read clause (due rules across organizations).
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import omnify.core.db
from omnify.core.rls import disable_rls_sql, enable_rls_sql

revision: str = "0170"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("rules", "rule_evaluations", "rule_firings", "entity_labels")
SWEEP = {"rules": "'rules' = ANY(string_to_array(current_setting('app.sweep', true), ','))"}


def upgrade() -> None:
    op.create_table('rules',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('dry_run', sa.Boolean(), nullable=False),
    sa.Column('definition', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('template', sa.String(length=64), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_by_id', sa.Uuid(), nullable=True),
    sa.Column('created_by_label', sa.String(length=320), nullable=True),
    sa.Column('next_run_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_run_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_status', sa.String(length=16), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_rules_created_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_rules_org_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rules'))
    )
    op.create_index(op.f('ix_rules_created_at'), 'rules', ['created_at'], unique=False)
    op.create_index(op.f('ix_rules_org_id'), 'rules', ['org_id'], unique=False)
    op.create_index('ix_rules_org_id_created_at', 'rules', ['org_id', 'created_at'], unique=False)
    op.create_index(op.f('ix_rules_created_by_id'), 'rules', ['created_by_id'], unique=False)
    op.create_index('ix_rules_status_next_run_at', 'rules', ['status', 'next_run_at'], unique=False)
    op.create_table('entity_labels',
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('level', sa.String(length=16), nullable=False),
    sa.Column('entity_id', sa.String(length=64), nullable=False),
    sa.Column('label', sa.String(length=64), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['client_profiles.id'], name=op.f('fk_entity_labels_client_id_client_profiles'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_entity_labels_org_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_entity_labels')),
    sa.UniqueConstraint('org_id', 'level', 'entity_id', 'label', name=op.f('uq_entity_labels_org_id_level_entity_id_label'))
    )
    op.create_index(op.f('ix_entity_labels_created_at'), 'entity_labels', ['created_at'], unique=False)
    op.create_index(op.f('ix_entity_labels_org_id'), 'entity_labels', ['org_id'], unique=False)
    op.create_index('ix_entity_labels_org_id_client_id', 'entity_labels', ['org_id', 'client_id'], unique=False)
    op.create_index(op.f('ix_entity_labels_client_id'), 'entity_labels', ['client_id'], unique=False)
    op.create_table('rule_evaluations',
    sa.Column('rule_id', sa.Uuid(), nullable=False),
    sa.Column('rule_version', sa.Integer(), nullable=False),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('slot', sa.String(length=120), nullable=False),
    sa.Column('dry_run', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('started_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('as_of', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('matched', sa.Integer(), nullable=False),
    sa.Column('acted', sa.Integer(), nullable=False),
    sa.Column('skipped', sa.Integer(), nullable=False),
    sa.Column('failed', sa.Integer(), nullable=False),
    sa.Column('entities', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('error', sa.String(length=1000), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_rule_evaluations_org_id_organizations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['rule_id'], ['rules.id'], name=op.f('fk_rule_evaluations_rule_id_rules'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rule_evaluations')),
    sa.UniqueConstraint('rule_id', 'slot', name=op.f('uq_rule_evaluations_rule_id_slot'))
    )
    op.create_index(op.f('ix_rule_evaluations_org_id'), 'rule_evaluations', ['org_id'], unique=False)
    op.create_index('ix_rule_evaluations_org_id_rule_id_started_at', 'rule_evaluations', ['org_id', 'rule_id', 'started_at'], unique=False)
    op.create_table('rule_firings',
    sa.Column('rule_id', sa.Uuid(), nullable=False),
    sa.Column('evaluation_id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('entity_key', sa.String(length=64), nullable=False),
    sa.Column('level', sa.String(length=16), nullable=False),
    sa.Column('effect', sa.String(length=32), nullable=False),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.Column('dry_run', sa.Boolean(), nullable=False),
    sa.Column('action_id', sa.Uuid(), nullable=True),
    sa.Column('recommendation_id', sa.Uuid(), nullable=True),
    sa.Column('fired_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['action_id'], ['actions.id'], name=op.f('fk_rule_firings_action_id_actions'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['client_id'], ['client_profiles.id'], name=op.f('fk_rule_firings_client_id_client_profiles'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['evaluation_id'], ['rule_evaluations.id'], name=op.f('fk_rule_firings_evaluation_id_rule_evaluations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_rule_firings_org_id_organizations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['recommendation_id'], ['recommendations.id'], name=op.f('fk_rule_firings_recommendation_id_recommendations'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['rule_id'], ['rules.id'], name=op.f('fk_rule_firings_rule_id_rules'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rule_firings'))
    )
    op.create_index(op.f('ix_rule_firings_client_id'), 'rule_firings', ['client_id'], unique=False)
    op.create_index(op.f('ix_rule_firings_action_id'), 'rule_firings', ['action_id'], unique=False)
    op.create_index(op.f('ix_rule_firings_recommendation_id'), 'rule_firings', ['recommendation_id'], unique=False)
    op.create_index(op.f('ix_rule_firings_evaluation_id'), 'rule_firings', ['evaluation_id'], unique=False)
    op.create_index(op.f('ix_rule_firings_org_id'), 'rule_firings', ['org_id'], unique=False)
    op.create_index('ix_rule_firings_org_id_fired_at', 'rule_firings', ['org_id', 'fired_at'], unique=False)
    op.create_index('ix_rule_firings_rule_id_entity_key_fired_at', 'rule_firings', ['rule_id', 'entity_key', 'fired_at'], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            for statement in enable_rls_sql(table, SWEEP.get(table)):
                op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            for statement in disable_rls_sql(table):
                op.execute(statement)
    op.drop_index('ix_rule_firings_rule_id_entity_key_fired_at', table_name='rule_firings')
    op.drop_index('ix_rule_firings_org_id_fired_at', table_name='rule_firings')
    op.drop_index(op.f('ix_rule_firings_org_id'), table_name='rule_firings')
    op.drop_index(op.f('ix_rule_firings_evaluation_id'), table_name='rule_firings')
    op.drop_index(op.f('ix_rule_firings_client_id'), table_name='rule_firings')
    op.drop_index(op.f('ix_rule_firings_action_id'), table_name='rule_firings')
    op.drop_index(op.f('ix_rule_firings_recommendation_id'), table_name='rule_firings')
    op.drop_table('rule_firings')
    op.drop_index('ix_rule_evaluations_org_id_rule_id_started_at', table_name='rule_evaluations')
    op.drop_index(op.f('ix_rule_evaluations_org_id'), table_name='rule_evaluations')
    op.drop_table('rule_evaluations')
    op.drop_index('ix_entity_labels_org_id_client_id', table_name='entity_labels')
    op.drop_index(op.f('ix_entity_labels_client_id'), table_name='entity_labels')
    op.drop_index(op.f('ix_entity_labels_org_id'), table_name='entity_labels')
    op.drop_index(op.f('ix_entity_labels_created_at'), table_name='entity_labels')
    op.drop_table('entity_labels')
    op.drop_index('ix_rules_status_next_run_at', table_name='rules')
    op.drop_index('ix_rules_org_id_created_at', table_name='rules')
    op.drop_index(op.f('ix_rules_created_by_id'), table_name='rules')
    op.drop_index(op.f('ix_rules_org_id'), table_name='rules')
    op.drop_index(op.f('ix_rules_created_at'), table_name='rules')
    op.drop_table('rules')
