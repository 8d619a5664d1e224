"""TikTok Business API v1.3 shapes -> our normalized records, and its return codes -> typed errors.

Pure functions only (no I/O) so every mapping decision is unit-testable with a literal dict.

Facts of the API this module encodes (TikTok API for Business docs, v1.3):

* Every response is an envelope ``{code, message, request_id, data}``; errors usually come
  with HTTP 200 and a non-zero ``code`` (the "Return codes" appendix), so the HTTP status
  alone says nothing.
* Object getters page with ``page_info {page, page_size, total_number, total_page}``.
* Money in reports is a decimal *string* in the advertiser's currency ("12.34"); budgets in
  campaign/adgroup objects are JSON numbers. Unavailable metrics come back as ``"-"``.
* Times are ``"YYYY-MM-DD HH:MM:SS"`` in UTC (object timestamps) or in the advertiser's
  time zone (report ``stat_time_day``, whose time part is always midnight).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

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
from omnify.integrations.money import decimal_to_minor, to_decimal
from omnify.integrations.tiktok.version import POLICY as VERSION_POLICY

API_PREFIX = f"/open_api/{VERSION_POLICY.pinned}"  # integrations/tiktok/version.py

# ------------------------------------------------------------------------------ return codes
OK = 0
CODE_NO_PERMISSION = 40001
CODE_INVALID_PARAM = 40002
CODE_NOT_FOUND = 40007
CODE_RATE_LIMITED = 40100
CODE_INVALID_APP = 40101
CODE_TOKEN_EXPIRED = 40102
CODE_TOKEN_INVALID = 40105
CODE_REFRESH_TOKEN_INVALID = 40107
CODE_AUTH_CODE_INVALID = 40110
CODE_AUTH_CODE_EXPIRED = 40131
CODE_SYSTEM_ERROR = 50000
CODE_SERVICE_UNAVAILABLE = 50002

_EXPIRED = frozenset({CODE_TOKEN_EXPIRED})
# A token TikTok no longer recognises (revoked by the advertiser, or never valid) and a dead
# refresh token both mean a human must authorize again: refreshing cannot help.
_REVOKED = frozenset({CODE_TOKEN_INVALID, CODE_REFRESH_TOKEN_INVALID})
_PERMISSION = frozenset({CODE_NO_PERMISSION})

# Operation status we send, and the normalized status it means.
_FROM_OPERATION: dict[str, EntityStatus] = {
    "ENABLE": EntityStatus.ACTIVE,
    "DISABLE": EntityStatus.PAUSED,
    "DELETE": EntityStatus.DELETED,
}
_TO_OPERATION: dict[EntityStatus, str] = {
    EntityStatus.ACTIVE: "ENABLE",
    EntityStatus.PAUSED: "DISABLE",
    EntityStatus.DELETED: "DELETE",
}
_ADVERTISER_STATUS: dict[str, EntityStatus] = {
    "STATUS_ENABLE": EntityStatus.ACTIVE,
    "STATUS_DISABLE": EntityStatus.PAUSED,
    "STATUS_LIMIT": EntityStatus.PAUSED,
    "STATUS_SELF_SERVICE_UNAUDITED": EntityStatus.PAUSED,
    "STATUS_PENDING_CONFIRM": EntityStatus.PAUSED,
    "STATUS_PENDING_VERIFIED": EntityStatus.PAUSED,
    "STATUS_CONFIRM_FAIL": EntityStatus.PAUSED,
    "STATUS_WAIT_FOR_BPM_AUDIT": EntityStatus.PAUSED,
}
DAILY_BUDGET_MODES = frozenset({"BUDGET_MODE_DAY", "BUDGET_MODE_DYNAMIC_DAILY_BUDGET"})

REPORT_METRICS: tuple[str, ...] = (
    "spend",
    "impressions",
    "clicks",
    "conversion",
    # Despite the name this is the total purchase *value* ("Total complete payment value"),
    # the revenue the TikTok pixel attributes to the ad.
    "total_complete_payment_rate",
    "reach",
    "frequency",
    # Attribute metrics (valid with an ad_id dimension): the hierarchy of each row, so a
    # metric row can be joined even if the ad was deleted before the next structure sync.
    "campaign_id",
    "adgroup_id",
)
REPORT_DIMENSIONS: tuple[str, ...] = ("ad_id", "stat_time_day")
MAX_DAYS_PER_REPORT = 30  # stat_time_day requests may span at most 30 days


def error_from_envelope(body: Any, *, http_status: int, where: str, rate_limit_wait: float) -> ConnectorError | None:
    """The typed error a TikTok envelope stands for, or None when ``code`` is 0 / absent.

    ``where`` is "METHOD /path" (never the query: it may carry app secrets). The message keeps
    TikTok's own text and request_id, which is what TikTok support asks for.
    """
    if not isinstance(body, Mapping) or "code" not in body:
        return None
    try:
        code = int(body["code"])
    except (TypeError, ValueError):
        return InvalidRequest(f"{where}: malformed envelope code {body.get('code')!r}", status=http_status)
    if code == OK:
        return None
    message = str(body.get("message") or "").strip() or "no message"
    request_id = body.get("request_id")
    text = f"{where}: TikTok code {code}: {message}" + (f" (request_id {request_id})" if request_id else "")
    kw: dict[str, Any] = {"status": http_status, "platform_code": str(code)}
    if code == CODE_RATE_LIMITED:
        return RateLimited(text, retry_after=rate_limit_wait, **kw)
    if code in _EXPIRED:
        return AuthExpired(text, **kw)
    if code in _REVOKED:
        return AuthRevoked(text, **kw)
    if code in _PERMISSION:
        return PermissionDenied(text, **kw)
    if code >= 50000:
        return TransientError(text, **kw)
    return InvalidRequest(text, **kw)


# ------------------------------------------------------------------------------ values
def parse_time(value: Any) -> datetime | None:
    """``"2024-03-01 12:30:00"`` (UTC) -> aware datetime; tolerant of ISO 8601 too."""
    if not value or not isinstance(value, str) or value == "-":
        return None
    text = value.strip().replace("T", " ").removesuffix("Z")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_day(value: Any) -> date:
    """Report ``stat_time_day`` ``"2024-03-01 00:00:00"`` -> the advertiser-local date."""
    if not isinstance(value, str) or len(value) < 10:
        raise InvalidRequest(f"report row has no usable stat_time_day: {value!r}")
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        raise InvalidRequest(f"report row has no usable stat_time_day: {value!r}") from None


def _metric_decimal(value: Any) -> Decimal:
    if value is None or value == "-" or value == "":
        return Decimal(0)
    return to_decimal(value)


def _metric_int(value: Any) -> int:
    d = _metric_decimal(value)
    if d != d.to_integral_value():
        raise InvalidRequest(f"expected a whole number, got {value!r}")
    return int(d)


def _opt_int(value: Any) -> int | None:
    if value is None or value == "-" or value == "":
        return None
    return _metric_int(value)


def _opt_float(value: Any) -> float | None:
    if value is None or value == "-" or value == "":
        return None
    return float(_metric_decimal(value))


def entity_status(operation_status: Any, secondary_status: Any = None) -> EntityStatus:
    """Deleted wins (a deleted campaign keeps operation_status DISABLE), then the on/off switch."""
    secondary = str(secondary_status or "")
    if secondary.endswith("_DELETE") or operation_status == "DELETE":
        return EntityStatus.DELETED
    return _FROM_OPERATION.get(str(operation_status or ""), EntityStatus.UNKNOWN)


def operation_status_for(status: EntityStatus) -> str:
    try:
        return _TO_OPERATION[status]
    except KeyError:
        raise InvalidRequest(f"TikTok has no operation status for {status.value!r}") from None


def daily_budget_minor(budget_mode: Any, budget: Any, currency: str) -> int | None:
    """Only a daily (or dynamic daily) budget is a *daily* budget; total/unlimited -> None."""
    if budget_mode not in DAILY_BUDGET_MODES or budget is None:
        return None
    return decimal_to_minor(budget, currency)


# ------------------------------------------------------------------------------ records
def account_from_info(info: Mapping[str, Any]) -> AdAccount:
    return AdAccount(
        external_id=str(info["advertiser_id"]),
        name=str(info.get("name") or info.get("advertiser_name") or info["advertiser_id"]),
        currency=str(info.get("currency") or "USD").upper(),
        timezone=str(info.get("display_timezone") or info.get("timezone") or "UTC"),
        status=_ADVERTISER_STATUS.get(str(info.get("status") or ""), EntityStatus.UNKNOWN),
    )


def campaign_from(item: Mapping[str, Any], *, account_id: str, currency: str) -> Campaign:
    return Campaign(
        external_id=str(item["campaign_id"]),
        account_external_id=account_id,
        name=str(item.get("campaign_name") or ""),
        status=entity_status(item.get("operation_status"), item.get("secondary_status")),
        objective=item.get("objective_type"),
        daily_budget_minor=daily_budget_minor(item.get("budget_mode"), item.get("budget"), currency),
        updated_at=parse_time(item.get("modify_time")) or parse_time(item.get("create_time")),
    )


_TARGETING_FIELDS = (
    "location_ids",
    "age_groups",
    "gender",
    "languages",
    "interest_category_ids",
    "placement_type",
    "placements",
    "operating_systems",
    "audience_ids",
    "excluded_audience_ids",
)


def ad_group_from(item: Mapping[str, Any], *, account_id: str, currency: str) -> AdGroup:
    return AdGroup(
        external_id=str(item["adgroup_id"]),
        account_external_id=account_id,
        campaign_external_id=str(item.get("campaign_id") or ""),
        name=str(item.get("adgroup_name") or ""),
        status=entity_status(item.get("operation_status"), item.get("secondary_status")),
        daily_budget_minor=daily_budget_minor(item.get("budget_mode"), item.get("budget"), currency),
        targeting={k: item[k] for k in _TARGETING_FIELDS if item.get(k) not in (None, [], "")},
        updated_at=parse_time(item.get("modify_time")) or parse_time(item.get("create_time")),
    )


def ad_from(item: Mapping[str, Any], *, account_id: str) -> Ad:
    """TikTok has no separate creative object in ad/get: the creative is the ad's own media
    (a video or images) plus its text, keyed on the media id so two ads sharing one video
    share one creative (that is what creative-fatigue analysis needs)."""
    ad_id = str(item["ad_id"])
    image_ids = item.get("image_ids") or []
    video_id = item.get("video_id") or None
    media_key = video_id or (image_ids[0] if image_ids else None) or ad_id
    creative = Creative(
        external_id=str(media_key),
        account_external_id=account_id,
        name=str(item.get("ad_name") or ad_id),
        title=item.get("display_name") or None,
        body=item.get("ad_text") or None,
        image_url=None,  # ad/get returns image ids only; URLs need file/image/ad/info
        video_id=str(video_id) if video_id else None,
        call_to_action=item.get("call_to_action") or None,
    )
    return Ad(
        external_id=ad_id,
        account_external_id=account_id,
        campaign_external_id=str(item.get("campaign_id") or ""),
        ad_group_external_id=str(item.get("adgroup_id") or ""),
        name=str(item.get("ad_name") or ""),
        status=entity_status(item.get("operation_status"), item.get("secondary_status")),
        creative=creative,
        updated_at=parse_time(item.get("modify_time")) or parse_time(item.get("create_time")),
    )


def metric_from_row(row: Mapping[str, Any], *, account_id: str, currency: str) -> DailyMetric:
    """One ``report/integrated/get`` row (BASIC, AUCTION_AD, [ad_id, stat_time_day])."""
    dims = row.get("dimensions") or {}
    m = row.get("metrics") or {}
    ad_id = dims.get("ad_id")
    if not ad_id:
        raise InvalidRequest("report row has no ad_id dimension")
    campaign_id = m.get("campaign_id")
    adgroup_id = m.get("adgroup_id")
    return DailyMetric(
        account_external_id=account_id,
        level=Level.AD,
        entity_external_id=str(ad_id),
        day=parse_day(dims.get("stat_time_day")),
        currency=currency,
        spend_minor=decimal_to_minor(_metric_decimal(m.get("spend")), currency),
        impressions=_metric_int(m.get("impressions")),
        clicks=_metric_int(m.get("clicks")),
        conversions=float(_metric_decimal(m.get("conversion"))),
        revenue_minor=decimal_to_minor(_metric_decimal(m.get("total_complete_payment_rate")), currency),
        reach=_opt_int(m.get("reach")),
        frequency=_opt_float(m.get("frequency")),
        campaign_external_id=str(campaign_id) if campaign_id not in (None, "", "-") else None,
        ad_group_external_id=str(adgroup_id) if adgroup_id not in (None, "", "-") else None,
    )


def level_noun(level: Level) -> str:
    """Our level -> the TikTok object family used in paths and id fields."""
    return {Level.CAMPAIGN: "campaign", Level.AD_GROUP: "adgroup", Level.AD: "ad"}[level]
