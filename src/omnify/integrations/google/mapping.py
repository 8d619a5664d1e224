"""Google Ads API (REST, JSON) shapes -> normalized model; Google error envelopes -> typed errors.

Google specifics owned here:

* Error envelope ``{"error": {"code", "message", "status", "details": [GoogleAdsFailure]}}``
  where each failure error carries ``errorCode`` as a one-key object naming the error
  family (``{"authenticationError": "OAUTH_TOKEN_EXPIRED"}``) and, for quota errors,
  ``details.quotaErrorDetails.retryDelay`` (a protobuf Duration such as ``"30s"``).
  The OAuth endpoints use the RFC 6749 shape instead: ``{"error": "invalid_grant", ...}``.
* JSON is lowerCamelCase; int64 values (ids, micros, impressions) are strings, doubles
  (conversions, conversions_value) are numbers.
* Money is micros (1e-6 of the currency unit): ``cost_micros``, ``amount_micros``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import httpx

from omnify.integrations.base import (
    Ad,
    AdAccount,
    AdGroup,
    AuthExpired,
    AuthRevoked,
    Campaign,
    ConnectorError,
    Creative,
    DailyMetric,
    EntityStatus,
    InvalidRequest,
    Level,
    PermissionDenied,
    RateLimited,
    TransientError,
)
from omnify.integrations.google.version import POLICY as VERSION_POLICY
from omnify.integrations.http import parse_retry_after
from omnify.integrations.money import currency_exponent, decimal_to_minor

API_VERSION = VERSION_POLICY.pinned  # integrations/google/version.py
ADWORDS_SCOPE = "https://www.googleapis.com/auth/adwords"
MICROS = 1_000_000

_EXPIRED = {"OAUTH_TOKEN_EXPIRED"}
_REVOKED = {"OAUTH_TOKEN_REVOKED", "OAUTH_TOKEN_INVALID", "OAUTH_TOKEN_DISABLED", "GOOGLE_ACCOUNT_DELETED",
            "NOT_ADS_USER", "OAUTH_TOKEN_HEADER_INVALID"}
_STATUS = {"ENABLED": EntityStatus.ACTIVE, "PAUSED": EntityStatus.PAUSED, "REMOVED": EntityStatus.DELETED}
STATUS_TO_GOOGLE = {EntityStatus.ACTIVE: "ENABLED", EntityStatus.PAUSED: "PAUSED"}
_CUSTOMER_STATUS = {"ENABLED": EntityStatus.ACTIVE, "SUSPENDED": EntityStatus.PAUSED,
                    "CANCELED": EntityStatus.DELETED, "CLOSED": EntityStatus.DELETED}


# ------------------------------------------------------------------------------ money
def micros_to_minor(micros: Any, currency: str) -> int:
    """``"12340000"`` micros of USD -> 1234 cents (half-even: no upward drift in sums)."""
    if micros in (None, ""):
        return 0
    exp = currency_exponent(currency)
    value = Decimal(str(micros)).scaleb(exp - 6)
    return int(value.to_integral_value(rounding=ROUND_HALF_EVEN))


def minor_to_micros(amount_minor: int, currency: str) -> int:
    factor: int = 10 ** (6 - currency_exponent(currency))
    return amount_minor * factor


# ------------------------------------------------------------------------------ errors
def parse_duration(value: Any) -> float | None:
    """Protobuf JSON Duration (``"30s"``, ``"1.5s"``) -> seconds."""
    if not isinstance(value, str) or not value.endswith("s"):
        return None
    try:
        return max(float(value[:-1]), 0.0)
    except ValueError:
        return None


def failure_errors(body: Any) -> list[Mapping[str, Any]]:
    """The GoogleAdsFailure ``errors`` list of an error envelope (empty when absent)."""
    err = body.get("error") if isinstance(body, Mapping) else None
    details = err.get("details") if isinstance(err, Mapping) else None
    out: list[Mapping[str, Any]] = []
    for d in details or []:
        if isinstance(d, Mapping):
            out.extend(e for e in d.get("errors") or [] if isinstance(e, Mapping))
    return out


def error_codes(body: Any) -> list[tuple[str, str]]:
    """``[("authenticationError", "OAUTH_TOKEN_EXPIRED"), ...]``."""
    codes: list[tuple[str, str]] = []
    for e in failure_errors(body):
        code = e.get("errorCode")
        if isinstance(code, Mapping):
            codes.extend((str(k), str(v)) for k, v in code.items())
    return codes


def error_for_response(response: httpx.Response, *, default_retry_after: float = 30.0) -> ConnectorError | None:
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    where = f"{response.request.method} {response.request.url.path}"
    status = response.status_code
    err = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(err, str):  # OAuth endpoint (RFC 6749 shape)
        text = f"{where}: {err}: {body.get('error_description') or ''}".rstrip(": ")
        if err == "invalid_client":
            return PermissionDenied(text, status=status, platform_code=err)
        if err in ("temporarily_unavailable", "server_error"):
            return TransientError(text, status=status, platform_code=err)
        return InvalidRequest(text, status=status, platform_code=err)
    if not isinstance(err, Mapping):
        return None
    codes = error_codes(body)
    family_values = [v for _, v in codes]
    first = next((f"{k}.{v}" for k, v in codes), None)
    messages = "; ".join(str(e.get("message")) for e in failure_errors(body) if e.get("message"))
    text = f"{where}: {err.get('status') or status} {err.get('message') or ''}"
    if messages:
        text += f" ({messages})"
    grpc = str(err.get("status") or "")
    if status == 429 or grpc == "RESOURCE_EXHAUSTED" or any(k == "quotaError" for k, _ in codes):
        delay = None
        for e in failure_errors(body):
            q = (e.get("details") or {}).get("quotaErrorDetails") if isinstance(e.get("details"), Mapping) else None
            if isinstance(q, Mapping):
                delay = parse_duration(q.get("retryDelay"))
        if delay is None:
            delay = parse_retry_after(response.headers.get("retry-after"), default_retry_after)
        return RateLimited(text, retry_after=delay, status=status, platform_code=first or grpc)
    if any(v in _EXPIRED for v in family_values):
        return AuthExpired(text, status=status, platform_code=first)
    if any(v in _REVOKED for v in family_values):
        return AuthRevoked(text, status=status, platform_code=first)
    if status == 401 or grpc == "UNAUTHENTICATED":
        if any(v == "DEVELOPER_TOKEN_INVALID" for v in family_values):
            return PermissionDenied(text, status=status, platform_code=first)
        # Google's bare 401 ("invalid authentication credentials") is what an expired access
        # token usually gets: refresh once; a dead refresh token will then say invalid_grant.
        return AuthExpired(text, status=status, platform_code=first or grpc)
    if status == 403 or grpc == "PERMISSION_DENIED":
        return PermissionDenied(text, status=status, platform_code=first or grpc)
    if status >= 500 or grpc in ("INTERNAL", "UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED"):
        return TransientError(text, status=status, platform_code=first or grpc)
    return InvalidRequest(text, status=status, platform_code=first or grpc)


# ------------------------------------------------------------------------------ GAQL
def gaql(select: Iterable[str], resource: str, where: Iterable[str] = ()) -> str:
    conditions = list(where)
    # GAQL, not SQL, and read-only; every interpolated value is a field name of ours, a date
    # object or an id checked to be digits by the caller.
    text = f"SELECT {', '.join(select)} FROM {resource}"  # noqa: S608
    if conditions:
        text += " WHERE " + " AND ".join(conditions)
    return text


CUSTOMER_FIELDS = ("customer.id", "customer.descriptive_name", "customer.currency_code", "customer.time_zone",
                   "customer.status", "customer.manager")
CUSTOMER_CLIENT_FIELDS = ("customer_client.id", "customer_client.descriptive_name", "customer_client.currency_code",
                          "customer_client.time_zone", "customer_client.status", "customer_client.manager",
                          "customer_client.level")
CAMPAIGN_FIELDS = ("campaign.id", "campaign.name", "campaign.status", "campaign.advertising_channel_type",
                   "campaign.campaign_budget", "campaign_budget.amount_micros")
AD_GROUP_FIELDS = ("ad_group.id", "ad_group.name", "ad_group.status", "ad_group.type", "ad_group.cpc_bid_micros",
                   "campaign.id")
AD_FIELDS = ("ad_group_ad.ad.id", "ad_group_ad.ad.name", "ad_group_ad.status", "ad_group_ad.ad.type",
             "ad_group_ad.ad.final_urls", "ad_group_ad.ad.responsive_search_ad.headlines",
             "ad_group_ad.ad.responsive_search_ad.descriptions", "ad_group.id", "campaign.id")
METRIC_FIELDS = ("ad_group_ad.ad.id", "ad_group.id", "campaign.id", "segments.date", "metrics.cost_micros",
                 "metrics.impressions", "metrics.clicks", "metrics.conversions", "metrics.conversions_value")


# ------------------------------------------------------------------------------ records
def _status(value: Any) -> EntityStatus:
    return _STATUS.get(str(value or "").upper(), EntityStatus.UNKNOWN)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def last_id(resource_name: Any) -> str:
    """``customers/1/adGroupAds/22~33`` -> ``33``; ``customers/1/campaigns/7`` -> ``7``."""
    tail = str(resource_name or "").rsplit("/", 1)[-1]
    return tail.rsplit("~", 1)[-1]


def account_from(customer: Mapping[str, Any]) -> AdAccount:
    return AdAccount(
        external_id=str(customer["id"]),
        name=str(customer.get("descriptiveName") or customer["id"]),
        currency=str(customer.get("currencyCode") or "USD"),
        timezone=str(customer.get("timeZone") or "UTC"),
        status=_CUSTOMER_STATUS.get(str(customer.get("status") or "ENABLED"), EntityStatus.UNKNOWN),
    )


def campaign_from(row: Mapping[str, Any], customer_id: str, currency: str) -> Campaign:
    c = row["campaign"]
    budget = row.get("campaignBudget") or {}
    amount = budget.get("amountMicros")
    return Campaign(
        external_id=str(c["id"]),
        account_external_id=customer_id,
        name=str(c.get("name") or ""),
        status=_status(c.get("status")),
        objective=c.get("advertisingChannelType"),
        daily_budget_minor=micros_to_minor(amount, currency) if amount not in (None, "") else None,
    )


def ad_group_from(row: Mapping[str, Any], customer_id: str) -> AdGroup:
    g = row["adGroup"]
    return AdGroup(
        external_id=str(g["id"]),
        account_external_id=customer_id,
        campaign_external_id=str((row.get("campaign") or {}).get("id") or last_id(g.get("campaign"))),
        name=str(g.get("name") or ""),
        status=_status(g.get("status")),
        targeting={k: g[k] for k in ("type", "cpcBidMicros") if k in g},
    )


def _texts(assets: Any) -> list[str]:
    return [str(a.get("text")) for a in assets or [] if isinstance(a, Mapping) and a.get("text")]


def ad_from(row: Mapping[str, Any], customer_id: str) -> Ad:
    aga = row["adGroupAd"]
    ad = aga.get("ad") or {}
    rsa = ad.get("responsiveSearchAd") or {}
    headlines, descriptions = _texts(rsa.get("headlines")), _texts(rsa.get("descriptions"))
    final_urls = ad.get("finalUrls") or []
    creative = Creative(
        external_id=str(ad["id"]),  # Google has no separate creative object: the ad is the creative
        account_external_id=customer_id,
        name=str(ad.get("name") or ad["id"]),
        title=" | ".join(headlines) or None,
        body=" ".join(descriptions) or None,
        image_url=None,
        call_to_action=str(final_urls[0]) if final_urls else None,
    )
    return Ad(
        external_id=str(ad["id"]),
        account_external_id=customer_id,
        campaign_external_id=str((row.get("campaign") or {}).get("id") or ""),
        ad_group_external_id=str((row.get("adGroup") or {}).get("id") or last_id(aga.get("adGroup"))),
        name=str(ad.get("name") or ad["id"]),
        status=_status(aga.get("status")),
        creative=creative,
    )


def metric_from(row: Mapping[str, Any], customer_id: str, currency: str) -> DailyMetric:
    m = row.get("metrics") or {}
    ad = (row.get("adGroupAd") or {}).get("ad") or {}
    value = m.get("conversionsValue")
    return DailyMetric(
        account_external_id=customer_id,
        level=Level.AD,
        entity_external_id=str(ad["id"]),
        day=date.fromisoformat(str(row["segments"]["date"])),
        currency=currency,
        spend_minor=micros_to_minor(m.get("costMicros"), currency),
        impressions=_int(m.get("impressions")),
        clicks=_int(m.get("clicks")),
        conversions=float(m.get("conversions") or 0.0),
        revenue_minor=decimal_to_minor(value if value is not None else 0, currency),
        campaign_external_id=str((row.get("campaign") or {}).get("id") or "") or None,
        ad_group_external_id=str((row.get("adGroup") or {}).get("id") or "") or None,
    )
