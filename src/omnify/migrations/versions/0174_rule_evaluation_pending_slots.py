"""rules: a scheduled slot is recorded 'pending' when its rule's next run is advanced

Revision ID: 0174
Revises: 0173
Create Date: 2026-12-04 20:00:00

Issue 20: the beat job advanced ``rules.next_run_at`` before it evaluated the due slots,
so a worker killed in between lost those slots for good. The job now inserts one
``pending`` evaluation per due slot in the transaction that advances ``next_run_at``;
``client_ids`` keeps the clients a daily slot is for (their local day), so a later sweep
can evaluate exactly that slot. The sweep reads pending and lapsed evaluations across
organizations, so ``rule_evaluations`` admits the ``app.sweep`` read clause of
``rules``; ``(status, started_at)`` serves that read.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from omnify.core.rls import enable_rls_sql

revision: str = "0174"
down_revision: str | None = "0173"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SWEEP = "'rules' = ANY(string_to_array(current_setting('app.sweep', true), ','))"


def upgrade() -> None:
    op.add_column("rule_evaluations", sa.Column(
        "client_ids", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True))
    op.create_index("ix_rule_evaluations_status_started_at", "rule_evaluations", ["status", "started_at"])
    if op.get_bind().dialect.name == "postgresql":
        for statement in enable_rls_sql("rule_evaluations", SWEEP):
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in enable_rls_sql("rule_evaluations"):
            op.execute(statement)
    op.drop_index("ix_rule_evaluations_status_started_at", table_name="rule_evaluations")
    op.drop_column("rule_evaluations", "client_ids")
