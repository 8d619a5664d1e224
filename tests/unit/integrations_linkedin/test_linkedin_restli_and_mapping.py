"""LinkedIn's Rest.li encoding and its shapes -> our records and typed errors (no I/O)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import httpx
import pytest

from omnify.integrations.base import (
    AuthExpired,
    AuthRevoked,
    EntityStatus,
    InvalidRequest,
    PermissionDenied,
    RateLimited,
    TransientError,
)
from omnify.integrations.linkedin import mapping, restli
from omnify.integrations.linkedin.oauth import token_set_from


# ------------------------------------------------------------------------------ Rest.li
def test_encoding_leaves_structure_bare_and_escapes_strings() -> None:
    assert restli.encode({"status": {"values": ["ACTIVE", "PAUSED"]}}) == "(status:(values:List(ACTIVE,PAUSED)))"
    assert restli.encode(["urn:li:sponsoredAccount:1"]) == "List(urn%3Ali%3AsponsoredAccount%3A1)"
    assert restli.encode(restli.date_range(date(2026, 1, 2), date(2026, 1, 31))) == (
        "(end:(day:31,month:1,year:2026),start:(day:2,month:1,year:2026))")
    assert restli.encode("a b,(c)") == "a%20b%2C%28c%29" and restli.encode("") == "''"
    assert restli.encode(True) == "true" and restli.encode(None) == ""
    assert restli.query({"q": "search", "pageToken": None, "n": 5}, fields=["a", "b"]) == "q=search&n=5&fields=a,b"


@pytest.mark.parametrize("value", [
    {"status": {"values": ["ACTIVE", "PAUSED"]}},
    ["urn:li:sponsoredCampaign:12", "a,b", "(x)", ""],
    {"start": {"year": "2026", "month": "1", "day": "2"}, "name": "Q1: launch"},
    [],
    {},
])
def test_decoding_reads_back_what_encoding_wrote(value: object) -> None:
    assert restli.decode(restli.encode(value)) == value  # type: ignore[arg-type]


@pytest.mark.parametrize("raw", [
    "List(urn:li:sponsoredAccount:1)",  # unescaped ':' inside a list item
    "(start:(year:2026)",  # unbalanced
    "List(a,)",  # empty item
    "(a:b)c",  # trailing characters
])
def test_decoding_refuses_what_linkedin_refuses(raw: str) -> None:
    with pytest.raises(restli.RestliDecodeError):
        restli.decode(raw)


def test_top_level_plain_values_and_urn_ids() -> None:
    assert restli.decode("urn:li:sponsoredAccount:1") == "urn:li:sponsoredAccount:1"
    assert restli.parse_query("q=search&search=(a:b)&x=") == {"q": "search", "search": "(a:b)", "x": ""}
    assert restli.urn_id("urn:li:sponsoredCreative:55", restli.URN_CREATIVE) == "55"
    assert restli.urn_id("urn:li:person:abc") == "abc" and restli.urn_id("123") == "123"


# ------------------------------------------------------------------------------ errors
def _response(status: int, body: object, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers,
                          request=httpx.Request("GET", "https://api.linkedin.com/rest/adAccounts?q=search"))


@pytest.mark.parametrize(("status", "code", "kind"), [
    (401, "EXPIRED_ACCESS_TOKEN", AuthExpired),
    (401, "INVALID_ACCESS_TOKEN", AuthExpired),
    (401, "REVOKED_ACCESS_TOKEN", AuthRevoked),
    (403, "ACCESS_DENIED", PermissionDenied),
    (404, "NOT_FOUND", InvalidRequest),
    (426, "NONEXISTENT_VERSION", InvalidRequest),
    (500, "INTERNAL_SERVER_ERROR", TransientError),
    (504, None, TransientError),
])
def test_error_bodies_map_to_typed_errors(status: int, code: str | None, kind: type[Exception]) -> None:
    body = {"status": status, "message": "m", **({"code": code} if code else {})}
    error = mapping.error_for_response(_response(status, body))
    assert isinstance(error, kind) and error.platform_code == code and error.status == status


def test_daily_throttles_wait_until_midnight_utc_and_others_follow_retry_after() -> None:
    body = {"status": 429, "serviceErrorCode": 101, "code": "TOO_MANY_REQUESTS",
            "message": "Resource level throttle APPLICATION DAY limit for calls to this resource is reached."}
    now = datetime(2026, 12, 3, 22, 30, tzinfo=UTC)
    error = mapping.error_for_response(_response(429, body), now=now)
    assert isinstance(error, RateLimited) and error.retry_after == 5400.0
    burst = {"status": 429, "code": "TOO_MANY_REQUESTS", "message": "Too many requests"}
    error = mapping.error_for_response(_response(429, burst, {"Retry-After": "7"}), now=now)
    assert isinstance(error, RateLimited) and error.retry_after == 7.0


def test_validation_errors_name_the_field_and_oauth_errors_keep_their_code() -> None:
    body = {"status": 400, "code": "VALIDATION_FAILED", "message": "Validation failed", "errorDetails": {
        "inputErrors": [{"code": "BELOW_MINIMUM", "description": "Daily budget must be at least 10.00 USD",
                         "input": {"inputPath": {"fieldPath": "dailyBudget.amount"}}}]}}
    error = mapping.error_for_response(_response(400, body))
    assert isinstance(error, InvalidRequest) and "dailyBudget.amount: Daily budget must be at least" in str(error)
    oauth = mapping.error_for_response(_response(400, {"error": "invalid_request", "error_description": "bad"}))
    assert isinstance(oauth, InvalidRequest) and oauth.platform_code == "invalid_request"
    client = mapping.error_for_response(_response(401, {"error": "invalid_client"}))
    assert isinstance(client, PermissionDenied)
    assert mapping.error_for_response(_response(200, {"elements": []})) is None


# ------------------------------------------------------------------------------ records
def test_campaign_creative_and_analytics_records() -> None:
    campaign = {"id": 42, "name": "Q1 Leads", "status": "COMPLETED", "objectiveType": "LEAD_GENERATION",
                "dailyBudget": {"amount": "75.50", "currencyCode": "EUR"},
                "campaignGroup": "urn:li:sponsoredCampaignGroup:7",
                "changeAuditStamps": {"lastModified": {"time": 1767225600000}}}
    c = mapping.campaign_from(campaign, account_id="9", currency="EUR")
    assert (c.external_id, c.status, c.daily_budget_minor, c.objective) == (
        "42", EntityStatus.ARCHIVED, 7550, "LEAD_GENERATION")
    assert c.updated_at == datetime(2026, 1, 1, tzinfo=UTC)
    g = mapping.ad_group_from(campaign, account_id="9", groups={"7": {"name": "Always on", "status": "ACTIVE"}})
    assert g.campaign_external_id == "42" and g.daily_budget_minor is None
    assert g.targeting["campaign_group"] == {"id": "7", "name": "Always on", "status": "ACTIVE"}

    creative = {"id": "urn:li:sponsoredCreative:501", "campaign": "urn:li:sponsoredCampaign:42",
                "intendedStatus": "PAUSED", "content": {"textAd": {"headline": "Hi", "description": "There"}}}
    ad = mapping.ad_from(creative, account_id="9")
    assert (ad.external_id, ad.campaign_external_id, ad.ad_group_external_id, ad.status) == (
        "501", "42", "42", EntityStatus.PAUSED)
    assert ad.creative is not None and (ad.creative.title, ad.creative.body, ad.name) == ("Hi", "There", "Hi")

    element = {"pivotValues": ["urn:li:sponsoredCreative:501"],
               "dateRange": {"start": {"year": 2026, "month": 3, "day": 4}, "end": {"year": 2026, "month": 3, "day": 4}},
               "impressions": 1000, "clicks": 12, "costInLocalCurrency": "12.346", "externalWebsiteConversions": 2,
               "oneClickLeads": 1, "conversionValueInLocalCurrency": "99.90", "approximateMemberReach": 400}
    m = mapping.metric_from(element, account_id="9", currency="EUR", campaign_of={"501": "42"})
    assert (m.day, m.spend_minor, m.conversions, m.revenue_minor, m.reach, m.frequency) == (
        date(2026, 3, 4), 1235, 3.0, 9990, 400, 2.5)
    assert m.campaign_external_id == "42" and m.entity_external_id == "501"


def test_metric_chunks_fit_the_field_limit_and_merge_back() -> None:
    chunks = mapping.metric_chunks(mapping.ANALYTICS_METRICS, 5)
    assert all(len(c) + 2 <= 5 for c in chunks) and [m for c in chunks for m in c] == list(mapping.ANALYTICS_METRICS)
    assert mapping.metric_chunks(mapping.ANALYTICS_METRICS, 20) == [list(mapping.ANALYTICS_METRICS)]
    with pytest.raises(ValueError):
        mapping.metric_chunks(mapping.ANALYTICS_METRICS, 2)
    key = {"pivotValues": ["p"], "dateRange": {"start": {"year": 2026, "month": 1, "day": 1}}}
    merged = mapping.merge_elements([[{**key, "impressions": 1}], [{**key, "clicks": 2}]])
    assert merged == [{**key, "impressions": 1, "clicks": 2}]


def test_token_answers() -> None:
    now = datetime(2026, 12, 3, tzinfo=UTC)
    first = token_set_from({"access_token": "a" * 10, "expires_in": 5184000, "refresh_token": "r" * 10,
                            "refresh_token_expires_in": 31536000, "scope": "r_ads,rw_ads"}, now=now)
    assert first.scopes == ["r_ads", "rw_ads"] and first.expires_at == datetime(2027, 2, 1, tzinfo=UTC)
    assert first.extra["refresh_token_expires_at"] == "2027-12-03T00:00:00+00:00"
    again = token_set_from({"access_token": "b" * 10, "expires_in": 60}, previous=first, now=now)
    assert again.refresh_token == first.refresh_token and again.scopes == first.scopes
    with pytest.raises(InvalidRequest):
        token_set_from({"expires_in": 5}, now=now)
