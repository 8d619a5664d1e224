"""jobs: dead-letter store (job_failures) and idempotency claims (job_runs)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 10:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import omnify.core.db

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("jobs",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_failures",
        sa.Column("task_name", sa.String(length=255), nullable=False),
        sa.Column("task_id", sa.String(length=64), nullable=False),
        sa.Column("queue", sa.String(length=255), nullable=True),
        sa.Column("task_args", omnify.core.db.JSONType, nullable=False),
        sa.Column("task_kwargs", omnify.core.db.JSONType, nullable=False),
        sa.Column("error_type", sa.String(length=255), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("traceback", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=True),
        sa.Column("trace_id", sa.String(length=64), nullable=True),
        sa.Column("first_failed_at", omnify.core.db.UTCDateTime(), nullable=False),
        sa.Column("last_failed_at", omnify.core.db.UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("replay_count", sa.Integer(), nullable=False),
        sa.Column("replayed_at", omnify.core.db.UTCDateTime(), nullable=True),
        sa.Column("replay_task_id", sa.String(length=64), nullable=True),
        sa.Column("replay_of_id", sa.Uuid(), nullable=True),
        sa.Column("resolved_at", omnify.core.db.UTCDateTime(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", omnify.core.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", omnify.core.db.UTCDateTime(), nullable=False),
        sa.CheckConstraint("status IN ('dead', 'replayed', 'resolved')", name=op.f("ck_job_failures_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_failures")),
        sa.UniqueConstraint("task_id", name=op.f("uq_job_failures_task_id")),
    )
    op.create_index(op.f("ix_job_failures_created_at"), "job_failures", ["created_at"])
    op.create_index(op.f("ix_job_failures_org_id"), "job_failures", ["org_id"])
    op.create_index(op.f("ix_job_failures_task_name"), "job_failures", ["task_name"])
    op.create_index("ix_job_failures_status_created_at", "job_failures", ["status", "created_at"])
    op.create_table(
        "job_runs",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("task_name", sa.String(length=255), nullable=True),
        sa.Column("task_id", sa.String(length=64), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", omnify.core.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", omnify.core.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_runs")),
        sa.UniqueConstraint("key", name=op.f("uq_job_runs_key")),
    )
    op.create_index(op.f("ix_job_runs_created_at"), "job_runs", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_job_runs_created_at"), table_name="job_runs")
    op.drop_table("job_runs")
    op.drop_index("ix_job_failures_status_created_at", table_name="job_failures")
    op.drop_index(op.f("ix_job_failures_task_name"), table_name="job_failures")
    op.drop_index(op.f("ix_job_failures_org_id"), table_name="job_failures")
    op.drop_index(op.f("ix_job_failures_created_at"), table_name="job_failures")
    op.drop_table("job_failures")
