"""Meta Marketing API (Graph) shapes -> our normalized model, and Graph errors -> typed errors.

Graph specifics this module owns:

* Errors are ``{"error": {"message", "type", "code", "error_subcode", "fbtrace_id",
  "is_transient"}}``, usually with HTTP 400 whatever the cause, so the *code* decides:
  190 is an auth failure (subcode 463/467 say *expired*, 458/459/460/464/492 or none say
  *revoked/invalid*: re-auth needed), 17/613/80000-80014/4/32 are throttling, 10 and
  200-299 are permissions, 1/2 (and ``is_transient``) are transient, the rest invalid.
* Throttling state arrives in ``X-Business-Use-Case-Usage`` (per business object: percent of
  call_count / total_cputime / total_time and ``estimated_time_to_regain_access`` in
  *minutes*) and ``X-Ad-Account-Usage`` (``acc_id_util_pct``, ``reset_time_duration`` s).
* Money: insights report ``spend`` and ``action_values`` as decimal strings in the account
  currency; budgets (``daily_budget``) are already integer minor units as strings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
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
from omnify.integrations.http import parse_retry_after
from omnify.integrations.meta.version import POLICY as VERSION_POLICY
from omnify.integrations.money import decimal_to_minor

API_VERSION = VERSION_POLICY.pinned  # integrations/meta/version.py
BUC_HEADER = "X-Business-Use-Case-Usage"
AD_ACCOUNT_USAGE_HEADER = "X-Ad-Account-Usage"
APP_USAGE_HEADER = "X-App-Usage"

RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, *range(80000, 80015)})
AUTH_EXPIRED_SUBCODES = frozenset({463, 467})
PERMISSION_CODES = frozenset({3, 10, *range(200, 300)})
TRANSIENT_CODES = frozenset({1, 2})
# Meta lists several overlapping purchase action types; the first present wins so a purchase
# is never counted twice (omni_purchase already includes the pixel and app purchases).
DEFAULT_CONVERSION_ACTIONS: tuple[str, ...] = (
    "omni_purchase",
    "purchase",
    "offsite_conversion.fb_pixel_purchase",
)
# Above this percentage of any BUC budget we slow down before Meta refuses.
THROTTLE_SOFT_LIMIT_PCT = 90.0

CAMPAIGN_FIELDS = "id,account_id,name,status,effective_status,objective,daily_budget,lifetime_budget,updated_time"
ADSET_FIELDS = (
    "id,account_id,campaign_id,name,status,effective_status,daily_budget,lifetime_budget,"
    "targeting,bid_strategy,updated_time"
)
AD_FIELDS = (
    "id,account_id,campaign_id,adset_id,name,status,effective_status,updated_time,"
    "creative{id,name,title,body,image_url,video_id,call_to_action_type}"
)
INSIGHTS_FIELDS = (
    "account_id,account_currency,campaign_id,adset_id,ad_id,date_start,date_stop,"
    "spend,impressions,reach,frequency,clicks,actions,action_values"
)
ACCOUNT_FIELDS = "id,account_id,name,currency,timezone_name,account_status"

_STATUS = {
    "ACTIVE": EntityStatus.ACTIVE,
    "PAUSED": EntityStatus.PAUSED,
    "ARCHIVED": EntityStatus.ARCHIVED,
    "DELETED": EntityStatus.DELETED,
}
STATUS_TO_META = {EntityStatus.ACTIVE: "ACTIVE", EntityStatus.PAUSED: "PAUSED", EntityStatus.ARCHIVED: "ARCHIVED",
                  EntityStatus.DELETED: "DELETED"}
# ad account_status: 1 active, 2 disabled, 3 unsettled, 7 pending risk review, 8 pending settlement,
# 9 in grace period, 100 pending closure, 101 closed, 201/202 any active/closed.
_ACCOUNT_STATUS = {1: EntityStatus.ACTIVE, 2: EntityStatus.PAUSED, 3: EntityStatus.PAUSED, 7: EntityStatus.PAUSED,
                   8: EntityStatus.PAUSED, 9: EntityStatus.ACTIVE, 100: EntityStatus.ARCHIVED,
                   101: EntityStatus.DELETED}


# ------------------------------------------------------------------------------ errors
def graph_error(body: Any) -> Mapping[str, Any] | None:
    err = body.get("error") if isinstance(body, Mapping) else None
    return err if isinstance(err, Mapping) else None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def parse_usage_header(value: str | None) -> list[dict[str, Any]]:
    """Flatten X-Business-Use-Case-Usage (``{obj_id: [ {type, call_count, ...} ]}``) or
    X-App-Usage / X-Ad-Account-Usage (one flat object) into a list of usage dicts."""
    if not value:
        return []
    try:
        data = json.loads(value)
    except ValueError:
        return []
    if isinstance(data, Mapping):
        if all(isinstance(v, list) for v in data.values()) and data:
            return [dict(item) for items in data.values() for item in items if isinstance(item, Mapping)]
        return [dict(data)]
    return []


def regain_seconds(headers: httpx.Headers) -> float | None:
    """Longest wait any usage header announces, in seconds (None when none does)."""
    waits: list[float] = []
    for usage in parse_usage_header(headers.get(BUC_HEADER)):
        minutes = usage.get("estimated_time_to_regain_access")
        if isinstance(minutes, int | float) and minutes > 0:
            waits.append(float(minutes) * 60.0)
    for usage in parse_usage_header(headers.get(AD_ACCOUNT_USAGE_HEADER)):
        reset = usage.get("reset_time_duration")
        if isinstance(reset, int | float) and reset > 0:
            waits.append(float(reset))
    return max(waits) if waits else None


def max_usage_pct(headers: httpx.Headers) -> float:
    pct = 0.0
    for name in (BUC_HEADER, APP_USAGE_HEADER):
        for usage in parse_usage_header(headers.get(name)):
            for key in ("call_count", "total_cputime", "total_time"):
                v = usage.get(key)
                if isinstance(v, int | float):
                    pct = max(pct, float(v))
    for usage in parse_usage_header(headers.get(AD_ACCOUNT_USAGE_HEADER)):
        v = usage.get("acc_id_util_pct")
        if isinstance(v, int | float):
            pct = max(pct, float(v))
    return pct


def throttle_hint(
    response: httpx.Response, *, soft_limit_pct: float = THROTTLE_SOFT_LIMIT_PCT, max_pause: float = 60.0
) -> float:
    """Pause before the next call when a usage budget is nearly spent: the regain time if
    Meta announces one, else a pause growing linearly from 0 at the soft limit to
    ``max_pause`` at 100%. Cheaper than being refused: a refusal in BUC extends the block."""
    pct = max_usage_pct(response.headers)
    if pct < soft_limit_pct:
        return 0.0
    regain = regain_seconds(response.headers)
    if regain:
        return regain
    span = max(100.0 - soft_limit_pct, 1e-9)
    return max_pause * min(1.0, (pct - soft_limit_pct) / span)


def error_for_response(response: httpx.Response, *, default_retry_after: float = 60.0) -> ConnectorError | None:
    """Graph error object -> typed error (None: no Graph error, let the generic mapping decide)."""
    try:
        body = response.json()
    except ValueError:
        return None
    err = graph_error(body)
    if err is None:
        return None
    code = _int(err.get("code"))
    sub = _int(err.get("error_subcode"))
    message = str(err.get("error_user_msg") or err.get("message") or "Graph API error")
    kind = str(err.get("type") or "")
    where = f"{response.request.method} {response.request.url.path}"
    text = f"{where}: ({code}{'/' + str(sub) if sub else ''} {kind}) {message}"
    pcode = str(code) if code is not None else None
    status = response.status_code
    if code == 190 or (kind == "OAuthException" and code in (102, 2500)):
        if sub in AUTH_EXPIRED_SUBCODES:
            return AuthExpired(text, status=status, platform_code=f"190/{sub}")
        return AuthRevoked(text, status=status, platform_code=f"{code}/{sub}" if sub else pcode)
    if code in RATE_LIMIT_CODES:
        # An explicit Retry-After (proxies, our sandbox) wins over Meta's minute-granular
        # estimate; with neither, wait a conservative default.
        header = response.headers.get("retry-after")
        retry_after = (
            parse_retry_after(header, default_retry_after) if header
            else (regain_seconds(response.headers) or default_retry_after)
        )
        return RateLimited(text, retry_after=retry_after, status=status, platform_code=pcode)
    if code in PERMISSION_CODES:
        return PermissionDenied(text, status=status, platform_code=pcode)
    transient_flag = err.get("is_transient")
    if transient_flag is True or status >= 500 or (code in TRANSIENT_CODES and transient_flag is not False):
        return TransientError(text, status=status, platform_code=pcode)
    return InvalidRequest(text, status=status, platform_code=pcode)


# ------------------------------------------------------------------------------ records
def parse_time(value: Any) -> datetime | None:
    """Graph times look like ``2026-01-31T12:00:00+0000``."""
    if not value:
        return None
    try:
        return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%S%z").astimezone(UTC)
    except ValueError:
        try:
            return datetime.fromisoformat(str(value)).astimezone(UTC)
        except ValueError:
            return None


def status_from(item: Mapping[str, Any]) -> EntityStatus:
    # `status` is what the advertiser set (what we can change); effective_status mixes in
    # parents' state (CAMPAIGN_PAUSED), which the hierarchy already conveys.
    return _STATUS.get(str(item.get("status") or item.get("effective_status") or "").upper(), EntityStatus.UNKNOWN)


def account_id_bare(account_id: str) -> str:
    return account_id.removeprefix("act_")


def budget_minor(value: Any) -> int | None:
    """Meta budgets are strings of the currency's minor unit; "0" means no budget at this level."""
    n = _int(value)
    return n if n else None


def account_from(item: Mapping[str, Any]) -> AdAccount:
    status_code = _int(item.get("account_status"))
    return AdAccount(
        external_id=account_id_bare(str(item.get("account_id") or item["id"])),
        name=str(item.get("name") or item["id"]),
        currency=str(item.get("currency") or "USD"),
        timezone=str(item.get("timezone_name") or "UTC"),
        status=_ACCOUNT_STATUS.get(status_code or 0, EntityStatus.UNKNOWN),
    )


def campaign_from(item: Mapping[str, Any], account_id: str) -> Campaign:
    return Campaign(
        external_id=str(item["id"]),
        account_external_id=account_id_bare(str(item.get("account_id") or account_id)),
        name=str(item.get("name") or ""),
        status=status_from(item),
        objective=item.get("objective"),
        daily_budget_minor=budget_minor(item.get("daily_budget")),
        updated_at=parse_time(item.get("updated_time")),
    )


def ad_group_from(item: Mapping[str, Any], account_id: str) -> AdGroup:
    targeting = item.get("targeting")
    return AdGroup(
        external_id=str(item["id"]),
        account_external_id=account_id_bare(str(item.get("account_id") or account_id)),
        campaign_external_id=str(item.get("campaign_id") or ""),
        name=str(item.get("name") or ""),
        status=status_from(item),
        daily_budget_minor=budget_minor(item.get("daily_budget")),
        targeting=dict(targeting) if isinstance(targeting, Mapping) else {},
        updated_at=parse_time(item.get("updated_time")),
    )


def creative_from(item: Mapping[str, Any], account_id: str) -> Creative:
    return Creative(
        external_id=str(item["id"]),
        account_external_id=account_id_bare(account_id),
        name=str(item.get("name") or ""),
        title=item.get("title"),
        body=item.get("body"),
        image_url=item.get("image_url"),
        video_id=item.get("video_id"),
        call_to_action=item.get("call_to_action_type"),
    )


def ad_from(item: Mapping[str, Any], account_id: str) -> Ad:
    acc = account_id_bare(str(item.get("account_id") or account_id))
    creative = item.get("creative")
    return Ad(
        external_id=str(item["id"]),
        account_external_id=acc,
        campaign_external_id=str(item.get("campaign_id") or ""),
        ad_group_external_id=str(item.get("adset_id") or ""),
        name=str(item.get("name") or ""),
        status=status_from(item),
        creative=creative_from(creative, acc) if isinstance(creative, Mapping) and creative.get("id") else None,
        updated_at=parse_time(item.get("updated_time")),
    )


def _action_value(actions: Any, wanted: Sequence[str]) -> str | None:
    if not isinstance(actions, list):
        return None
    by_type = {str(a.get("action_type")): a.get("value") for a in actions if isinstance(a, Mapping)}
    for action_type in wanted:
        if action_type in by_type:
            return str(by_type[action_type])
    return None


def metric_from(
    row: Mapping[str, Any],
    *,
    account_id: str,
    currency: str,
    conversion_actions: Sequence[str] = DEFAULT_CONVERSION_ACTIONS,
) -> DailyMetric:
    """One ``level=ad, time_increment=1`` insights row. Numbers arrive as strings."""
    cur = str(row.get("account_currency") or currency)
    conv = _action_value(row.get("actions"), conversion_actions)
    value = _action_value(row.get("action_values"), conversion_actions)
    reach = _int(row.get("reach"))
    freq = row.get("frequency")
    return DailyMetric(
        account_external_id=account_id_bare(str(row.get("account_id") or account_id)),
        level=Level.AD,
        entity_external_id=str(row["ad_id"]),
        day=date.fromisoformat(str(row["date_start"])),
        currency=cur,
        spend_minor=decimal_to_minor(row.get("spend") or "0", cur),
        impressions=_int(row.get("impressions")) or 0,
        clicks=_int(row.get("clicks")) or 0,
        conversions=float(conv) if conv is not None else 0.0,
        revenue_minor=decimal_to_minor(value or "0", cur),
        reach=reach,
        frequency=float(freq) if freq not in (None, "") else None,
        campaign_external_id=str(row["campaign_id"]) if row.get("campaign_id") else None,
        ad_group_external_id=str(row["adset_id"]) if row.get("adset_id") else None,
    )
