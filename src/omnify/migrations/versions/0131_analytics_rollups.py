"""perf: per-client daily rollups (analytics_daily); ad_metrics_daily's indexes, tenant key first

Revision ID: 0131
Revises: 0005
Create Date: 2026-12-03 10:05:00

Issue 16. ``analytics_daily`` holds ad-level sums per (ad account, day, currency,
campaign), maintained by the sync in the same transaction as the raw rows
(:class:`omnify.sync.repository.MetricWriter`); analytics reads it instead of summing
``ad_metrics_daily``. Existing raw rows are summed into it here.

``ad_metrics_daily`` loses the indexes no query used and the foreign keys that cost a
look-up per inserted row (campaign, ad group, ad: plain references now; client: the
account's cascade covers it), and gets ``(org_id, client_id, day)`` for analytics
drill-downs and the brain, ``(ad_account_id, day)`` for the sync's window clean-up.
From 8 indexes and 7 foreign keys to 4 and 3.
"""
from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import omnify.core.db
from omnify.core.rls import disable_rls_sql, enable_rls_sql

revision: str = "0131"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NO_CAMPAIGN = uuid.UUID(int=0)
#: (name, column, referred table) of the foreign keys dropped, with their ON DELETE.
DROPPED_FKS = (
    ("fk_ad_metrics_daily_ad_group_id_ad_groups", "ad_group_id", "ad_groups", "SET NULL"),
    ("fk_ad_metrics_daily_ad_id_ads", "ad_id", "ads", "SET NULL"),
    ("fk_ad_metrics_daily_campaign_id_campaigns", "campaign_id", "campaigns", "SET NULL"),
    ("fk_ad_metrics_daily_client_id_client_profiles", "client_id", "client_profiles", "CASCADE"),
)
DROPPED_INDEXES = (
    ("ix_ad_metrics_daily_ad_account_id", ["ad_account_id"]),
    ("ix_ad_metrics_daily_ad_group_id", ["ad_group_id"]),
    ("ix_ad_metrics_daily_ad_id_day", ["ad_id", "day"]),
    ("ix_ad_metrics_daily_campaign_id", ["campaign_id"]),
    ("ix_ad_metrics_daily_client_id_day", ["client_id", "day"]),
    ("ix_ad_metrics_daily_org_id", ["org_id"]),
)
NEW_INDEXES = (
    ("ix_ad_metrics_daily_org_id_client_id_day", ["org_id", "client_id", "day"]),
    ("ix_ad_metrics_daily_ad_account_id_day", ["ad_account_id", "day"]),
)


def upgrade() -> None:
    for name, _cols in DROPPED_INDEXES:
        op.drop_index(name, table_name="ad_metrics_daily")
    with op.batch_alter_table("ad_metrics_daily") as batch:  # SQLite rebuilds the table for this
        for name, *_rest in DROPPED_FKS:
            batch.drop_constraint(name, type_="foreignkey")
    for name, cols in NEW_INDEXES:
        op.create_index(name, "ad_metrics_daily", cols, unique=False)

    op.create_table(
        "analytics_daily",
        sa.Column("ad_account_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("spend_minor", sa.BigInteger(), nullable=False),
        sa.Column("impressions", sa.BigInteger(), nullable=False),
        sa.Column("clicks", sa.BigInteger(), nullable=False),
        sa.Column("conversions_micros", sa.BigInteger(), nullable=False),
        sa.Column("revenue_minor", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", omnify.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["ad_account_id"], ["ad_accounts.id"],
                                name=op.f("fk_analytics_daily_ad_account_id_ad_accounts"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"],
                                name=op.f("fk_analytics_daily_org_id_organizations"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("ad_account_id", "day", "currency", "campaign_id", name=op.f("pk_analytics_daily")),
    )
    op.create_index("ix_analytics_daily_org_id_client_id_day", "analytics_daily", ["org_id", "client_id", "day"],
                    unique=False)
    if op.get_bind().dialect.name == "postgresql":
        for statement in enable_rls_sql("analytics_daily"):
            op.execute(statement)
    _sum_existing_rows()


def _sum_existing_rows() -> None:
    """Migrations run as the owner role (no RLS): every organization's rows at once."""
    m = sa.table("ad_metrics_daily", *(sa.column(c) for c in (
        "org_id", "client_id", "ad_account_id", "platform", "day", "currency", "spend_minor", "impressions",
        "clicks", "revenue_minor", "level")), sa.column("campaign_id", sa.Uuid()), sa.column("conversions", sa.Float()))
    r = sa.table("analytics_daily", *(sa.column(c) for c in (
        "org_id", "client_id", "ad_account_id", "platform", "day", "currency", "campaign_id", "spend_minor",
        "impressions", "clicks", "conversions_micros", "revenue_minor", "updated_at")))
    source = (sa.select(m.c.org_id, m.c.client_id, m.c.ad_account_id, m.c.platform, m.c.day, m.c.currency,
                        sa.func.coalesce(m.c.campaign_id, sa.literal(NO_CAMPAIGN, sa.Uuid())),
                        sa.func.sum(m.c.spend_minor), sa.func.sum(m.c.impressions), sa.func.sum(m.c.clicks),
                        sa.func.sum(sa.cast(sa.func.round(m.c.conversions * 1_000_000), sa.BigInteger)),
                        sa.func.sum(m.c.revenue_minor),
                        sa.literal(datetime.now(UTC), omnify.core.db.UTCDateTime(timezone=True)))
              .where(m.c.level == "ad")
              .group_by(m.c.org_id, m.c.client_id, m.c.ad_account_id, m.c.platform, m.c.day, m.c.currency,
                        m.c.campaign_id))
    op.get_bind().execute(r.insert().from_select(list(r.c.keys()), source))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in disable_rls_sql("analytics_daily"):
            op.execute(statement)
    op.drop_table("analytics_daily")
    for name, _cols in NEW_INDEXES:
        op.drop_index(name, table_name="ad_metrics_daily")
    with op.batch_alter_table("ad_metrics_daily") as batch:
        for name, column, referred, ondelete in DROPPED_FKS:
            batch.create_foreign_key(name, referred, [column], ["id"], ondelete=ondelete)
    for name, cols in DROPPED_INDEXES:
        op.create_index(name, "ad_metrics_daily", cols, unique=False)
