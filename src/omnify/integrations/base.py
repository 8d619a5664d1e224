"""The one interface every platform connector implements, and our normalized model.

Why a normalized model: the brain and analytics read one shape whatever the platform.
Money is always integer *minor units* plus an ISO 4217 currency (Meta budgets are already
minor units; Google reports micros; TikTok reports decimal strings) so sums never drift.
Connectors never touch the database: they speak HTTP and return these records; the sync
service (omnify.sync) upserts them.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol, runtime_checkable


class Platform(enum.StrEnum):
    META_ADS = "meta_ads"
    GOOGLE_ADS = "google_ads"
    TIKTOK_ADS = "tiktok_ads"
    LINKEDIN_ADS = "linkedin_ads"
    SHOPIFY = "shopify"


class EntityStatus(enum.StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    ARCHIVED = "archived"
    DELETED = "deleted"
    UNKNOWN = "unknown"


class Level(enum.StrEnum):
    CAMPAIGN = "campaign"
    AD_GROUP = "ad_group"
    AD = "ad"


# ------------------------------------------------------------------------------ errors
class ConnectorError(Exception):
    """Base of every connector failure. Messages never contain tokens or secrets."""

    retryable: bool = False

    def __init__(self, message: str, *, status: int | None = None, platform_code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.platform_code = platform_code


class AuthExpired(ConnectorError):
    """Access token expired: refresh and retry once."""


class AuthRevoked(ConnectorError):
    """The user revoked access or the refresh token is dead: the connection needs re-auth."""


class PermissionDenied(ConnectorError):
    """Token valid but lacks a scope or access to this account."""


class RateLimited(ConnectorError):
    retryable = True

    def __init__(self, message: str, *, retry_after: float, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class TransientError(ConnectorError):
    """5xx, timeouts, connection resets: safe to retry with backoff."""

    retryable = True


class InvalidRequest(ConnectorError):
    """The platform rejected our request (bad field, bad id): do not retry."""


class CircuitOpen(ConnectorError):
    """Too many consecutive failures for this account: calls are short-circuited for a while."""


def retry_after_seconds(exc: ConnectorError) -> int | None:
    """The platform's own wait before a retry, in whole seconds rounded up (a client's
    ``Retry-After``), or None when it named none."""
    wait = getattr(exc, "retry_after", None)
    return int(wait) + 1 if isinstance(wait, int | float) else None


# ------------------------------------------------------------------------------ OAuth
@dataclass(frozen=True, slots=True)
class OAuthStart:
    url: str
    state: str
    code_verifier: str | None = None  # PKCE; kept server-side, never sent to the browser


@dataclass(slots=True)
class TokenSet:
    access_token: str
    refresh_token: str | None = None
    expires_at: datetime | None = None
    scopes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. shop domain, advertiser ids


# ------------------------------------------------------------------------------ normalized records
@dataclass(slots=True)
class AdAccount:
    external_id: str
    name: str
    currency: str
    timezone: str = "UTC"
    status: EntityStatus = EntityStatus.ACTIVE


@dataclass(slots=True)
class Campaign:
    external_id: str
    account_external_id: str
    name: str
    status: EntityStatus
    objective: str | None = None
    daily_budget_minor: int | None = None
    updated_at: datetime | None = None


@dataclass(slots=True)
class AdGroup:
    external_id: str
    account_external_id: str
    campaign_external_id: str
    name: str
    status: EntityStatus
    daily_budget_minor: int | None = None
    targeting: dict[str, Any] = field(default_factory=dict)
    updated_at: datetime | None = None


@dataclass(slots=True)
class Creative:
    external_id: str
    account_external_id: str
    name: str
    title: str | None = None
    body: str | None = None
    image_url: str | None = None
    video_id: str | None = None
    call_to_action: str | None = None


@dataclass(slots=True)
class Ad:
    external_id: str
    account_external_id: str
    campaign_external_id: str
    ad_group_external_id: str
    name: str
    status: EntityStatus
    creative: Creative | None = None
    updated_at: datetime | None = None


@dataclass(slots=True)
class DailyMetric:
    """One ad (or campaign, for platforms that only report there) on one day."""

    account_external_id: str
    level: Level
    entity_external_id: str
    day: date
    currency: str
    spend_minor: int
    impressions: int
    clicks: int
    conversions: float
    revenue_minor: int
    reach: int | None = None
    frequency: float | None = None
    campaign_external_id: str | None = None
    ad_group_external_id: str | None = None


@dataclass(slots=True)
class ShopCustomer:
    external_id: str
    email: str | None
    first_name: str | None
    last_name: str | None
    orders_count: int
    total_spent_minor: int
    currency: str
    created_at: datetime
    updated_at: datetime | None = None


@dataclass(slots=True)
class ShopOrder:
    external_id: str
    customer_external_id: str | None
    name: str
    total_minor: int
    currency: str
    financial_status: str | None
    created_at: datetime
    updated_at: datetime | None = None
    line_items: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class ShopProduct:
    external_id: str
    title: str
    status: str
    vendor: str | None = None
    product_type: str | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What a write action changed, so the caller can audit and undo it."""

    level: Level
    entity_external_id: str
    before: dict[str, Any]
    after: dict[str, Any]


# ------------------------------------------------------------------------------ connector protocol
@runtime_checkable
class AdConnector(Protocol):
    """Implemented by meta, google, tiktok, linkedin. All methods do real HTTP to base_url."""

    platform: Platform

    # OAuth
    def authorize_url(self, *, redirect_uri: str, state: str) -> OAuthStart: ...
    async def exchange_code(
        self, *, code: str, redirect_uri: str, code_verifier: str | None = None
    ) -> TokenSet: ...
    async def refresh(self, tokens: TokenSet) -> TokenSet: ...
    async def revoke(self, tokens: TokenSet) -> None: ...

    # reads (tokens bound at construction or via with_tokens)
    async def verify(self) -> dict[str, Any]: ...
    async def list_ad_accounts(self) -> list[AdAccount]: ...
    def campaigns(self, account_id: str) -> AsyncIterator[Campaign]: ...
    def ad_groups(self, account_id: str) -> AsyncIterator[AdGroup]: ...
    def ads(self, account_id: str) -> AsyncIterator[Ad]: ...
    def daily_metrics(self, account_id: str, since: date, until: date) -> AsyncIterator[DailyMetric]: ...

    async def read_entity(self, account_id: str, level: Level, entity_id: str) -> dict[str, Any]:
        """One entity's writable state now: ``{"status": <EntityStatus value>, "daily_budget_minor":
        int | None}`` (the fields :meth:`set_status`/:meth:`set_daily_budget` change, in the shape
        of their ``after``), so an action interrupted mid-apply can be settled from what the
        platform shows. Raises :class:`InvalidRequest` for an entity not in the account."""
        ...

    # writes
    async def set_status(
        self, account_id: str, level: Level, entity_id: str, status: EntityStatus
    ) -> ActionResult: ...
    async def set_daily_budget(
        self, account_id: str, level: Level, entity_id: str, amount_minor: int
    ) -> ActionResult: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class CommerceConnector(Protocol):
    """Implemented by shopify."""

    platform: Platform

    async def verify(self) -> dict[str, Any]: ...
    def orders(self, updated_since: datetime | None = None) -> AsyncIterator[ShopOrder]: ...
    def customers(self, updated_since: datetime | None = None) -> AsyncIterator[ShopCustomer]: ...
    def products(self, updated_since: datetime | None = None) -> AsyncIterator[ShopProduct]: ...
    async def aclose(self) -> None: ...
