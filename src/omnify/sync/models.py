"""The normalized copy of each client's platform data, and the bookkeeping of syncs.

One shape whatever the platform (see :mod:`omnify.integrations.base`), so analytics and
the brain read ``ad_metrics_daily`` and never care where a row came from. Platform ids
are unique per *connection* (``connection_id, external_id``): that pair is the upsert
key, so running a sync twice converges on the same rows. Money is integer minor units
with its ISO 4217 currency beside it.

``updated_at`` changes only when a synced value changed (the upsert's ``WHERE ... IS
DISTINCT FROM``), which is what makes "a second identical run changes no row" true and
lets readers cache on it.

Foreign keys point at our own ids (UUIDs), resolved during the sync; a metric row whose
ad the platform no longer lists keeps its ``entity_external_id`` and a null ``ad_id``.
"""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, Date, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from omnify.core.db import Base, IdMixin, JSONType, TenantMixin, TimestampMixin, utcnow


class Stream(enum.StrEnum):
    CAMPAIGNS = "campaigns"
    AD_GROUPS = "ad_groups"
    ADS = "ads"
    DAILY_METRICS = "daily_metrics"
    SHOP_CUSTOMERS = "shop_customers"
    SHOP_ORDERS = "shop_orders"


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    #: Stopped by a platform rate limit; the task comes back after ``Retry-After``.
    DEFERRED = "deferred"


class RunMode(enum.StrEnum):
    BACKFILL = "backfill"
    INCREMENTAL = "incremental"


class _Synced(IdMixin, TenantMixin):
    """Columns every synced row has: who owns it and which connection brought it."""

    @declared_attr
    def client_id(cls) -> Mapped[uuid.UUID]:
        return mapped_column(ForeignKey("client_profiles.id", ondelete="CASCADE"), index=True)

    @declared_attr
    def connection_id(cls) -> Mapped[uuid.UUID]:
        return mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))

    platform: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class _InAccount:
    @declared_attr
    def ad_account_id(cls) -> Mapped[uuid.UUID]:
        return mapped_column(ForeignKey("ad_accounts.id", ondelete="CASCADE"), index=True)


class SyncAdAccount(_Synced, Base):
    __tablename__ = "ad_accounts"
    __table_args__ = (UniqueConstraint("connection_id", "external_id"),)

    name: Mapped[str] = mapped_column(String(255))
    currency: Mapped[str] = mapped_column(String(3))
    timezone: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))


class SyncCampaign(_Synced, _InAccount, Base):
    __tablename__ = "campaigns"
    __table_args__ = (UniqueConstraint("connection_id", "external_id"),)

    name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    objective: Mapped[str | None] = mapped_column(String(64))
    daily_budget_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    platform_updated_at: Mapped[datetime | None]


class SyncAdGroup(_Synced, _InAccount, Base):
    __tablename__ = "ad_groups"
    __table_args__ = (UniqueConstraint("connection_id", "external_id"),)

    campaign_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"),
                                                          index=True)
    name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    daily_budget_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    targeting: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    platform_updated_at: Mapped[datetime | None]


class SyncCreative(_Synced, _InAccount, Base):
    __tablename__ = "creatives"
    __table_args__ = (UniqueConstraint("connection_id", "external_id"),)

    name: Mapped[str] = mapped_column(String(255))
    title: Mapped[str | None] = mapped_column(String(255))
    body: Mapped[str | None] = mapped_column(Text)
    image_url: Mapped[str | None] = mapped_column(String(2048))
    video_id: Mapped[str | None] = mapped_column(String(128))
    call_to_action: Mapped[str | None] = mapped_column(String(64))


class SyncAd(_Synced, _InAccount, Base):
    __tablename__ = "ads"
    __table_args__ = (UniqueConstraint("connection_id", "external_id"),)

    campaign_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"),
                                                          index=True)
    ad_group_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("ad_groups.id", ondelete="SET NULL"),
                                                          index=True)
    creative_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("creatives.id", ondelete="SET NULL"),
                                                          index=True)
    name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    platform_updated_at: Mapped[datetime | None]


class AdMetricDaily(IdMixin, TenantMixin, _InAccount, Base):
    """One entity (an ad; a campaign where a platform only reports there) on one day.

    Indexes are the few the readers and the writer need, tenant key first (0131): the
    upsert key, ``(org_id, client_id, day)`` for analytics drill-downs and the brain, and
    ``(ad_account_id, day)`` for the sync's window clean-up and the cascade from accounts.
    ``client_id``, ``campaign_id``, ``ad_group_id`` and ``ad_id`` are plain references, not
    foreign keys: a
    foreign key per row costs a look-up on every insert, and ``ON DELETE SET NULL`` would
    need an index each to find the rows; the sync resolves them and only deletes entities
    together with their account, whose cascade removes the metric rows.
    """

    __tablename__ = "ad_metrics_daily"
    __table_args__ = (
        UniqueConstraint("connection_id", "level", "entity_external_id", "day"),
        Index("ix_ad_metrics_daily_org_id_client_id_day", "org_id", "client_id", "day"),
    )

    @declared_attr
    def org_id(cls) -> Mapped[uuid.UUID]:
        return mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))

    @declared_attr
    def ad_account_id(cls) -> Mapped[uuid.UUID]:
        return mapped_column(ForeignKey("ad_accounts.id", ondelete="CASCADE"))

    client_id: Mapped[uuid.UUID]  # no foreign key: the account's cascade covers a client's deletion
    connection_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(32))
    level: Mapped[str] = mapped_column(String(16))
    entity_external_id: Mapped[str] = mapped_column(String(64))
    day: Mapped[date] = mapped_column(Date)
    campaign_id: Mapped[uuid.UUID | None]
    ad_group_id: Mapped[uuid.UUID | None]
    ad_id: Mapped[uuid.UUID | None]
    currency: Mapped[str] = mapped_column(String(3))
    spend_minor: Mapped[int] = mapped_column(BigInteger)
    impressions: Mapped[int] = mapped_column(BigInteger)
    clicks: Mapped[int] = mapped_column(BigInteger)
    conversions: Mapped[float] = mapped_column(Float)
    revenue_minor: Mapped[int] = mapped_column(BigInteger)
    reach: Mapped[int | None] = mapped_column(BigInteger)
    frequency: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


Index("ix_ad_metrics_daily_ad_account_id_day", AdMetricDaily.ad_account_id, AdMetricDaily.day)

#: ``analytics_daily.campaign_id`` of rows whose campaign is unknown (the key cannot be NULL).
NO_CAMPAIGN = uuid.UUID(int=0)


class AnalyticsDaily(TenantMixin, Base):
    """The per-client daily rollup that analytics reads: ad-level metrics summed per
    (ad account, day, currency, campaign), platform beside them.

    The sync writes it in the same transaction as the raw rows of a window, from the very
    rows it just staged (:class:`omnify.sync.repository.MetricWriter`): a window read from a
    platform is that account's complete truth for those days, so its sums replace the
    rollup's, and a re-sync that rewrites a window leaves the rollup exact. Keyed by
    account (not only client) for that reason: one account's window never touches
    another's sums. A 90-day report reads days x campaigns rows instead of days x ads.

    Sums are integers: money in minor units, conversions in millionths
    (``conversions_micros``), so a sum is exact and independent of row order.
    """

    __tablename__ = "analytics_daily"
    __table_args__ = (Index("ix_analytics_daily_org_id_client_id_day", "org_id", "client_id", "day"),)

    @declared_attr
    def org_id(cls) -> Mapped[uuid.UUID]:
        return mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))

    ad_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ad_accounts.id", ondelete="CASCADE"),
                                                     primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    campaign_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    client_id: Mapped[uuid.UUID]
    platform: Mapped[str] = mapped_column(String(32))
    spend_minor: Mapped[int] = mapped_column(BigInteger)
    impressions: Mapped[int] = mapped_column(BigInteger)
    clicks: Mapped[int] = mapped_column(BigInteger)
    conversions_micros: Mapped[int] = mapped_column(BigInteger)
    revenue_minor: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class SyncShopCustomer(_Synced, Base):
    __tablename__ = "shop_customers"
    __table_args__ = (UniqueConstraint("connection_id", "external_id"),)

    email: Mapped[str | None] = mapped_column(String(320))
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    orders_count: Mapped[int] = mapped_column(Integer)
    total_spent_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    customer_created_at: Mapped[datetime]
    platform_updated_at: Mapped[datetime | None]


class SyncShopOrder(_Synced, Base):
    __tablename__ = "shop_orders"
    __table_args__ = (
        UniqueConstraint("connection_id", "external_id"),
        Index("ix_shop_orders_org_id_client_id_ordered_at", "org_id", "client_id", "ordered_at"),
    )

    customer_external_id: Mapped[str | None] = mapped_column(String(64))
    customer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("shop_customers.id", ondelete="SET NULL"),
                                                          index=True)
    name: Mapped[str] = mapped_column(String(64))
    total_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    financial_status: Mapped[str | None] = mapped_column(String(32))
    ordered_at: Mapped[datetime]
    platform_updated_at: Mapped[datetime | None]
    line_items: Mapped[list[Any]] = mapped_column(JSONType, default=list)


class SyncRun(IdMixin, TimestampMixin, TenantMixin, Base):
    """One sync of one connection: what it read and wrote, and how it ended."""

    __tablename__ = "sync_runs"
    __table_args__ = (
        Index("ix_sync_runs_connection_id_started_at", "connection_id", "started_at"),
        Index("ix_sync_runs_org_id_created_at", "org_id", "created_at"),
    )

    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_profiles.id", ondelete="CASCADE"), index=True)
    connection_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(32))
    mode: Mapped[str] = mapped_column(String(16))
    trigger: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    accounts: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    rows_read: Mapped[int] = mapped_column(BigInteger, default=0)
    rows_written: Mapped[int] = mapped_column(BigInteger, default=0)
    #: {stream: {"read": n, "written": n}}
    streams: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(String(1000))


class SyncCursor(IdMixin, TenantMixin, Base):
    """How far one stream of one account has been read (a date or a platform timestamp)."""

    __tablename__ = "sync_cursors"
    __table_args__ = (UniqueConstraint("connection_id", "account_external_id", "stream"),)

    connection_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    account_external_id: Mapped[str] = mapped_column(String(255))
    stream: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
