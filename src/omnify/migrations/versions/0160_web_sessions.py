"""web: browser sessions of the web app

Revision ID: 0160
Revises: 0001
Create Date: 2026-12-03 09:00:00

The web app (issue 15) signs browsers in with an opaque HttpOnly cookie whose SHA-256
is stored here. Users are global (not tenant rows), like ``refresh_tokens``: no
row-level-security policy, every query goes by the token hash or the user id.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import omnify.core.db

revision: str = "0160"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("web",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('browser_sessions',
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('session_version', sa.Integer(), nullable=False),
    sa.Column('expires_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', omnify.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_org_id', sa.Uuid(), nullable=True),
    sa.Column('ip', sa.String(length=64), nullable=True),
    sa.Column('user_agent', sa.String(length=400), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', omnify.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_browser_sessions_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_browser_sessions')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_browser_sessions_token_hash'))
    )
    op.create_index(op.f('ix_browser_sessions_created_at'), 'browser_sessions', ['created_at'], unique=False)
    op.create_index(op.f('ix_browser_sessions_user_id'), 'browser_sessions', ['user_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_browser_sessions_user_id'), table_name='browser_sessions')
    op.drop_index(op.f('ix_browser_sessions_created_at'), table_name='browser_sessions')
    op.drop_table('browser_sessions')
