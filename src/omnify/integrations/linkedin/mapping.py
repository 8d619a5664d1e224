"""LinkedIn Marketing API shapes -> our normalized records, and its errors -> typed errors.

Pure functions (no I/O), each decision testable with a literal dict.

How LinkedIn's ad hierarchy maps onto ours, and why:

* A LinkedIn **campaign** is our :class:`Campaign`. It is where LinkedIn keeps the daily
  budget, the bid, the objective and the status that starts and stops delivery, and it is what
  a marketer calls a campaign in Campaign Manager; mapping the **campaign group** there instead
  (many accounts keep every campaign in the one "Default Campaign Group") would leave the
  brain's budget allocation and the dashboards nothing useful to work with on LinkedIn.
* LinkedIn has no level between campaign and creative, and targeting lives on the campaign, so
  each campaign is also its own :class:`AdGroup` (same id, ``daily_budget_minor`` None so a
  budget is never counted twice); the ad group's ``targeting`` carries the campaign's
  ``targetingCriteria`` and its **campaign group** (id, name, status), which is where campaign
  groups live in our model.
* A **creative** is our :class:`Ad` (and its :class:`Creative`).

Facts of the API encoded here (LinkedIn Marketing API, versioned ``/rest``):

* Money is an object ``{"amount": "50.00", "currencyCode": "USD"}`` (decimal string) on
  entities and a decimal string (``costInLocalCurrency``) in analytics.
* Times are epoch milliseconds (``changeAuditStamps.lastModified.time``, ``lastModifiedAt``);
  analytics days are ``{"year", "month", "day"}`` in UTC (ad accounts have no time zone).
* Errors are ``{"status", "serviceErrorCode", "code", "message"}`` with the HTTP status;
  validation errors add ``errorDetails.inputErrors``; the OAuth endpoints answer RFC 6749
  ``{"error", "error_description"}``. Throttles are daily quotas (429, "... DAY limit ...")
  that reset at midnight UTC, and carry no ``Retry-After``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
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
from omnify.integrations.http import parse_retry_after, redact_url
from omnify.integrations.linkedin import restli
from omnify.integrations.money import decimal_to_minor, format_decimal, minor_to_decimal, to_decimal

SCOPES = ("r_ads", "rw_ads", "r_ads_reporting")

# ------------------------------------------------------------------------------ error codes
CODE_INVALID_TOKEN = "INVALID_ACCESS_TOKEN"
CODE_EXPIRED_TOKEN = "EXPIRED_ACCESS_TOKEN"
CODE_REVOKED_TOKEN = "REVOKED_ACCESS_TOKEN"
CODE_EMPTY_TOKEN = "EMPTY_ACCESS_TOKEN"
CODE_ACCESS_DENIED = "ACCESS_DENIED"
CODE_NOT_FOUND = "NOT_FOUND"
CODE_TOO_MANY_REQUESTS = "TOO_MANY_REQUESTS"
CODE_VERSION_MISSING = "VERSION_MISSING"
CODE_NONEXISTENT_VERSION = "NONEXISTENT_VERSION"
CODE_VALIDATION_FAILED = "VALIDATION_FAILED"
CODE_ILLEGAL_ARGUMENT = "ILLEGAL_ARGUMENT"
CODE_INTERNAL = "INTERNAL_SERVER_ERROR"
#: serviceErrorCode of each token failure (LinkedIn's error-handling guide).
SERVICE_CODES = {CODE_INVALID_TOKEN: 65600, CODE_REVOKED_TOKEN: 65601, CODE_EXPIRED_TOKEN: 65602,
                 CODE_EMPTY_TOKEN: 65604, CODE_ACCESS_DENIED: 100, CODE_TOO_MANY_REQUESTS: 101}

#: adAnalytics accepts at most this many entries in ``fields`` (metrics plus dateRange and
#: pivotValues), and answers at most this many elements (no paging: a bigger result is cut).
MAX_ANALYTICS_FIELDS = 20
MAX_ANALYTICS_ELEMENTS = 15_000
#: What the connector reads per creative and day; ``conversions`` = website conversions +
#: lead-gen form submissions (LinkedIn's two conversion kinds that carry intent).
ANALYTICS_METRICS: tuple[str, ...] = (
    "impressions", "clicks", "landingPageClicks", "costInLocalCurrency", "externalWebsiteConversions",
    "oneClickLeads", "conversionValueInLocalCurrency", "approximateMemberReach",
)
ANALYTICS_KEYS = ("dateRange", "pivotValues")


def seconds_until_utc_midnight(now: datetime | None = None) -> float:
    moment = now or datetime.now(UTC)
    midnight = datetime.combine(moment.date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    return max((midnight - moment).total_seconds(), 1.0)


def error_for_response(response: httpx.Response, *, default_retry_after: float = 60.0,
                       now: datetime | None = None) -> ConnectorError | None:
    status = response.status_code
    if status < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, Mapping):
        return None
    where = f"{response.request.method} {redact_url(response.request.url)}"
    oauth_error = body.get("error")
    if isinstance(oauth_error, str):  # /oauth/v2 endpoints (RFC 6749 shape)
        text = f"{where}: {oauth_error}: {body.get('error_description') or ''}".rstrip(": ")
        if oauth_error == "invalid_client":
            return PermissionDenied(text, status=status, platform_code=oauth_error)
        if oauth_error in ("server_error", "temporarily_unavailable") or status >= 500:
            return TransientError(text, status=status, platform_code=oauth_error)
        return InvalidRequest(text, status=status, platform_code=oauth_error)
    code = str(body.get("code") or "") or None
    message = str(body.get("message") or "")
    details = _input_errors(body)
    text = f"{where}: HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
    if details:
        text += f" ({details})"
    if status == 429 or code == CODE_TOO_MANY_REQUESTS:
        if " DAY " in f" {message.upper()} ":
            wait = seconds_until_utc_midnight(now)  # daily quotas reset at midnight UTC
        else:
            wait = parse_retry_after(response.headers.get("retry-after"), default_retry_after)
        return RateLimited(text, retry_after=wait, status=status, platform_code=code)
    if code in (CODE_EXPIRED_TOKEN, CODE_INVALID_TOKEN, CODE_EMPTY_TOKEN):
        return AuthExpired(text, status=status, platform_code=code)
    if code == CODE_REVOKED_TOKEN:
        return AuthRevoked(text, status=status, platform_code=code)
    if status == 401:
        return AuthExpired(text, status=status, platform_code=code)
    if status == 403:
        return PermissionDenied(text, status=status, platform_code=code)
    if status == 426 or code == CODE_NONEXISTENT_VERSION:
        return InvalidRequest(f"{text}. LinkedIn no longer serves this API version: set OMNIFY_LINKEDIN_API_VERSION "
                              "to a current one (docs/integrations-linkedin.md)", status=status, platform_code=code)
    if status >= 500 or status in (408, 425):
        return TransientError(text, status=status, platform_code=code)
    return InvalidRequest(text, status=status, platform_code=code)


def _input_errors(body: Mapping[str, Any]) -> str:
    details = body.get("errorDetails")
    errors = details.get("inputErrors") if isinstance(details, Mapping) else None
    parts: list[str] = []
    for e in errors or []:
        if not isinstance(e, Mapping):
            continue
        path = ((e.get("input") or {}).get("inputPath") or {}).get("fieldPath") if isinstance(e.get("input"), Mapping) \
            else None
        parts.append(f"{path or '?'}: {e.get('description') or e.get('code') or 'invalid'}")
    return "; ".join(parts)


# ------------------------------------------------------------------------------ values
def obj(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a JSON object, else an empty one (absent or malformed nesting)."""
    return value if isinstance(value, Mapping) else {}


def money_minor(value: Any, currency: str) -> int | None:
    """``{"amount": "50.00", "currencyCode": "USD"}`` -> 5000 (in the object's currency)."""
    if not isinstance(value, Mapping) or value.get("amount") in (None, ""):
        return None
    return decimal_to_minor(value["amount"], str(value.get("currencyCode") or currency))


def money_object(amount_minor: int, currency: str) -> dict[str, str]:
    return {"amount": format_decimal(minor_to_decimal(amount_minor, currency)), "currencyCode": currency}


def epoch_ms(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return datetime.fromtimestamp(value / 1000.0, tz=UTC)


def _modified(item: Mapping[str, Any]) -> datetime | None:
    stamps = item.get("changeAuditStamps")
    if isinstance(stamps, Mapping):
        last = stamps.get("lastModified")
        if isinstance(last, Mapping):
            return epoch_ms(last.get("time"))
    return epoch_ms(item.get("lastModifiedAt"))


def day_of(value: Any) -> date:
    if not isinstance(value, Mapping):
        raise InvalidRequest(f"LinkedIn date is not an object: {value!r}")
    try:
        return date(int(value["year"]), int(value["month"]), int(value["day"]))
    except (KeyError, TypeError, ValueError):
        raise InvalidRequest(f"LinkedIn date is malformed: {value!r}") from None


_STATUS = {
    "ACTIVE": EntityStatus.ACTIVE,
    "PAUSED": EntityStatus.PAUSED,
    "DRAFT": EntityStatus.PAUSED,  # not delivering; resumable
    "ARCHIVED": EntityStatus.ARCHIVED,
    "COMPLETED": EntityStatus.ARCHIVED,
    "CANCELED": EntityStatus.ARCHIVED,
    "CANCELLED": EntityStatus.ARCHIVED,
    "PENDING_DELETION": EntityStatus.DELETED,
    "REMOVED": EntityStatus.DELETED,
}
WRITABLE_STATUS = {EntityStatus.ACTIVE: "ACTIVE", EntityStatus.PAUSED: "PAUSED", EntityStatus.ARCHIVED: "ARCHIVED"}


def entity_status(value: Any) -> EntityStatus:
    return _STATUS.get(str(value or "").upper(), EntityStatus.UNKNOWN)


# ------------------------------------------------------------------------------ records
def account_from(item: Mapping[str, Any]) -> AdAccount:
    status = str(item.get("status") or "")
    return AdAccount(
        external_id=str(item["id"]),
        name=str(item.get("name") or f"LinkedIn ad account {item['id']}"),
        currency=str(item.get("currency") or "USD").upper(),
        timezone="UTC",  # LinkedIn ad accounts report in UTC and have no time zone of their own
        status={"ACTIVE": EntityStatus.ACTIVE, "DRAFT": EntityStatus.PAUSED, "CANCELED": EntityStatus.ARCHIVED,
                "PENDING_DELETION": EntityStatus.DELETED, "REMOVED": EntityStatus.DELETED}.get(
                    status, EntityStatus.UNKNOWN),
    )


def campaign_from(item: Mapping[str, Any], *, account_id: str, currency: str) -> Campaign:
    return Campaign(
        external_id=str(item["id"]),
        account_external_id=account_id,
        name=str(item.get("name") or f"Campaign {item['id']}"),
        status=entity_status(item.get("status")),
        objective=str(item["objectiveType"]) if item.get("objectiveType") else None,
        daily_budget_minor=money_minor(item.get("dailyBudget"), currency),
        updated_at=_modified(item),
    )


def ad_group_from(item: Mapping[str, Any], *, account_id: str,
                  groups: Mapping[str, Mapping[str, Any]]) -> AdGroup:
    """The campaign again, as the level that carries targeting (see the module docstring)."""
    group_id = restli.urn_id(item.get("campaignGroup") or "", restli.URN_CAMPAIGN_GROUP) or None
    group = groups.get(group_id or "", {})
    targeting: dict[str, Any] = {
        "campaign_group": {"id": group_id, "name": group.get("name"), "status": group.get("status")},
        "type": item.get("type"),
        "cost_type": item.get("costType"),
        "locale": item.get("locale"),
        "targeting_criteria": item.get("targetingCriteria") or {},
    }
    return AdGroup(
        external_id=str(item["id"]),
        account_external_id=account_id,
        campaign_external_id=str(item["id"]),
        name=str(item.get("name") or f"Campaign {item['id']}"),
        status=entity_status(item.get("status")),
        daily_budget_minor=None,
        targeting=targeting,
        updated_at=_modified(item),
    )


def ad_from(item: Mapping[str, Any], *, account_id: str) -> Ad:
    creative_id = restli.urn_id(item["id"], restli.URN_CREATIVE)
    campaign_id = restli.urn_id(item.get("campaign") or "", restli.URN_CAMPAIGN)
    text_ad = obj(obj(item.get("content")).get("textAd"))
    name = str(item.get("name") or text_ad.get("headline") or f"Creative {creative_id}")
    return Ad(
        external_id=creative_id,
        account_external_id=account_id,
        campaign_external_id=campaign_id,
        ad_group_external_id=campaign_id,
        name=name,
        status=entity_status(item.get("intendedStatus")),
        creative=Creative(
            external_id=creative_id,
            account_external_id=account_id,
            name=name,
            title=str(text_ad["headline"]) if text_ad.get("headline") else None,
            body=str(text_ad["description"]) if text_ad.get("description") else None,
            image_url=None,
            call_to_action=None,
        ),
        updated_at=_modified(item),
    )


def _count(value: Any) -> int:
    if value in (None, ""):
        return 0
    return int(to_decimal(value))


def metric_from(element: Mapping[str, Any], *, account_id: str, currency: str,
                campaign_of: Mapping[str, str] | None = None) -> DailyMetric:
    pivots = element.get("pivotValues") or []
    if not pivots:
        raise InvalidRequest("LinkedIn analytics element without pivotValues")
    creative_id = restli.urn_id(pivots[0], restli.URN_CREATIVE)
    range_ = obj(element.get("dateRange"))
    impressions = _count(element.get("impressions"))
    reach = element.get("approximateMemberReach")
    reach_n = _count(reach) if reach not in (None, "") else None
    conversions = to_decimal(element.get("externalWebsiteConversions") or 0) + to_decimal(
        element.get("oneClickLeads") or 0)
    campaign = (campaign_of or {}).get(creative_id)
    return DailyMetric(
        account_external_id=account_id,
        level=Level.AD,
        entity_external_id=creative_id,
        day=day_of(range_.get("start")),
        currency=currency,
        spend_minor=decimal_to_minor(element.get("costInLocalCurrency") or 0, currency),
        impressions=impressions,
        clicks=_count(element.get("clicks")),
        conversions=float(conversions),
        revenue_minor=decimal_to_minor(element.get("conversionValueInLocalCurrency") or 0, currency),
        reach=reach_n,
        frequency=round(impressions / reach_n, 4) if reach_n else None,
        campaign_external_id=campaign,
        ad_group_external_id=campaign,
    )


def merge_elements(chunks: list[list[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Analytics answers of the same query with different ``fields`` (the 20-field limit),
    joined on (pivot value, day): one element per creative and day with every metric."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for chunk in chunks:
        for element in chunk:
            pivots = element.get("pivotValues") or [""]
            start = obj(obj(element.get("dateRange")).get("start"))
            key = (str(pivots[0]), f"{start.get('year')}-{start.get('month')}-{start.get('day')}")
            merged.setdefault(key, {}).update(element)
    return list(merged.values())


def metric_chunks(metrics: tuple[str, ...], fields_per_call: int) -> list[list[str]]:
    """Split metrics so each call's ``fields`` (metrics + dateRange + pivotValues) fits."""
    per = fields_per_call - len(ANALYTICS_KEYS)
    if per < 1:
        raise ValueError(f"fields_per_call must leave room for a metric beside {ANALYTICS_KEYS}")
    return [list(metrics[i:i + per]) for i in range(0, len(metrics), per)]

