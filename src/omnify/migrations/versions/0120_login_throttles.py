"""auth: failed-login throttles per (e-mail, address) and per e-mail

Revision ID: 0120
Revises: 0001
Create Date: 2026-12-04 09:00:00

Replaces the per-user lockout (``users.failed_logins``/``locked_until``), which answered
``429 account-locked`` only for existing accounts (enumeration) and let anyone lock any
account with five guesses. Rows are keyed on HMACs of what was typed, so unknown
addresses are throttled exactly like real ones. Not a tenant table (logins precede any
organization), like ``users`` and ``refresh_tokens``: no row-level-security policy.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import omnify.core.db

revision: str = "0120"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "login_throttles",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failed_at", omnify.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("blocked_until", omnify.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("known_until", omnify.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", omnify.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_throttles")),
    )
    op.create_index(op.f("ix_login_throttles_account"), "login_throttles", ["account"], unique=False)
    op.create_index(op.f("ix_login_throttles_updated_at"), "login_throttles", ["updated_at"], unique=False)
    with op.batch_alter_table("users") as batch:
        batch.drop_column("locked_until")
        batch.drop_column("failed_logins")


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("locked_until", omnify.core.db.UTCDateTime(timezone=True), nullable=True))
    op.drop_index(op.f("ix_login_throttles_updated_at"), table_name="login_throttles")
    op.drop_index(op.f("ix_login_throttles_account"), table_name="login_throttles")
    op.drop_table("login_throttles")
