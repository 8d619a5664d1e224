"""perf: row-level-security policies compare typed values

Revision ID: 0130
Revises: 0007
Create Date: 2026-12-03 10:00:00

Issue 16. Every ``tenant_isolation`` policy compared ``org_id::text = current_setting(..)``:
a text conversion per row that no index can serve, so PostgreSQL filtered a tenant's
rows after reading them. They now compare ``org_id = NULLIF(current_setting(..),
'')::uuid`` (and the same for the ``user_id``/``id`` read clauses), a stable value the
planner matches against the ``(org_id, ...)`` indexes. Fresh databases get typed policies
from :mod:`omnify.core.rls` already; this rewrites the ones an existing database has,
whichever migration made them. It waits for every branch that creates tenant tables.
No-op on SQLite.
"""
from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from omnify.core.rls import retype_policies

revision: str = "0130"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = ("perf",)
depends_on: str | Sequence[str] | None = ("0002", "0006", "0160")


def upgrade() -> None:
    retype_policies(op.get_bind(), typed=True)


def downgrade() -> None:
    retype_policies(op.get_bind(), typed=False)
