"""actions: when an action was claimed applying/undoing (an interrupted apply is settled)

Revision ID: 0175
Revises: 0174
Create Date: 2026-12-04 23:45:00

An action is claimed ``applying`` (or ``undoing``) and committed before the platform
calls; a worker killed in between left it in that state for good, its recommendation
``applied``, and nobody learnt what the platform did. ``applying_started_at`` is set by
each claim; the reconciliation sweep reads the actions still claimed long after it,
across organizations, so ``actions`` admits the ``app.sweep`` read clause of ``actions``
(as the webhook and rules sweeps do); ``(status, applying_started_at)`` serves that read.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import omnify.core.db
from omnify.core.rls import enable_rls_sql

revision: str = "0175"
down_revision: str | None = "0174"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SWEEP = "'actions' = ANY(string_to_array(current_setting('app.sweep', true), ','))"


def upgrade() -> None:
    op.add_column("actions",
                  sa.Column("applying_started_at", omnify.core.db.UTCDateTime(timezone=True), nullable=True))
    op.create_index("ix_actions_status_applying_started_at", "actions", ["status", "applying_started_at"])
    if op.get_bind().dialect.name == "postgresql":
        for statement in enable_rls_sql("actions", SWEEP):
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in enable_rls_sql("actions"):
            op.execute(statement)
    op.drop_index("ix_actions_status_applying_started_at", table_name="actions")
    op.drop_column("actions", "applying_started_at")
