"""Graph error codes, usage headers and row mapping (pure functions, table-driven)."""

from __future__ import annotations

import json
from datetime import date

import httpx
import pytest

from omnify.integrations.base import (
    AuthExpired,
    AuthRevoked,
    ConnectorError,
    EntityStatus,
    InvalidRequest,
    PermissionDenied,
    RateLimited,
    TransientError,
)
from omnify.integrations.meta import mapping


def response(error: dict[str, object] | None, status: int = 400, headers: dict[str, str] | None = None) -> httpx.Response:
    req = httpx.Request("GET", "https://graph.example/v26.0/act_1/insights?access_token=SECRET")
    body = {"error": error} if error is not None else {"data": []}
    return httpx.Response(status, json=body, headers=headers or {}, request=req)


@pytest.mark.parametrize(
    ("error", "status", "expected", "pcode"),
    [
        ({"code": 190, "error_subcode": 463, "type": "OAuthException", "message": "expired"}, 400, AuthExpired, "190/463"),
        ({"code": 190, "error_subcode": 467, "type": "OAuthException", "message": "invalid"}, 400, AuthExpired, "190/467"),
        ({"code": 190, "error_subcode": 460, "type": "OAuthException", "message": "pw"}, 400, AuthRevoked, "190/460"),
        ({"code": 190, "type": "OAuthException", "message": "bad"}, 400, AuthRevoked, "190"),
        ({"code": 17, "error_subcode": 2446079, "message": "User request limit reached"}, 400, RateLimited, "17"),
        ({"code": 613, "error_subcode": 1487742, "message": "too many calls"}, 400, RateLimited, "613"),
        ({"code": 80004, "message": "ad account"}, 400, RateLimited, "80004"),
        ({"code": 10, "message": "permission"}, 403, PermissionDenied, "10"),
        ({"code": 200, "message": "Permissions error"}, 400, PermissionDenied, "200"),
        ({"code": 2, "message": "temporarily unavailable", "is_transient": True}, 500, TransientError, "2"),
        ({"code": 1, "message": "unknown error"}, 400, TransientError, "1"),
        ({"code": 1, "message": "Error validating client secret.", "is_transient": False}, 400, InvalidRequest, "1"),
        ({"code": 100, "error_subcode": 33, "message": "no such object"}, 400, InvalidRequest, "100"),
    ],
)
def test_error_mapping(error: dict[str, object], status: int, expected: type[ConnectorError], pcode: str) -> None:
    err = mapping.error_for_response(response(error, status))
    assert type(err) is expected
    assert err is not None and err.platform_code == pcode and err.status == status
    assert "SECRET" not in str(err)


def test_no_graph_error_means_no_opinion() -> None:
    assert mapping.error_for_response(response(None, 200)) is None
    req = httpx.Request("GET", "https://graph.example/x")
    assert mapping.error_for_response(httpx.Response(502, text="<html>bad gateway</html>", request=req)) is None


def test_rate_limit_wait_sources() -> None:
    buc = json.dumps({"123": [{"type": "ads_insights", "call_count": 100, "total_cputime": 40, "total_time": 40,
                               "estimated_time_to_regain_access": 3}]})
    err = mapping.error_for_response(response({"code": 80004}, headers={"X-Business-Use-Case-Usage": buc}))
    assert isinstance(err, RateLimited) and err.retry_after == 180  # minutes -> seconds
    err = mapping.error_for_response(response({"code": 80004}, headers={"X-Business-Use-Case-Usage": buc,
                                                                      "Retry-After": "2"}))
    assert isinstance(err, RateLimited) and err.retry_after == 2
    err = mapping.error_for_response(response({"code": 17}))
    assert isinstance(err, RateLimited) and err.retry_after == 60  # conservative default


def test_usage_headers_and_throttle_hint() -> None:
    req = httpx.Request("GET", "https://graph.example/x")
    low = httpx.Response(200, json={}, request=req, headers={
        "X-Business-Use-Case-Usage": json.dumps({"1": [{"call_count": 50, "total_time": 10}]})})
    assert mapping.throttle_hint(low) == 0
    high = httpx.Response(200, json={}, request=req, headers={
        "X-App-Usage": json.dumps({"call_count": 95, "total_cputime": 5, "total_time": 5})})
    assert mapping.throttle_hint(high, max_pause=10) == pytest.approx(5.0)
    acct = httpx.Response(200, json={}, request=req, headers={
        "X-Ad-Account-Usage": json.dumps({"acc_id_util_pct": 99.0, "reset_time_duration": 42})})
    assert mapping.throttle_hint(acct) == 42
    assert mapping.parse_usage_header("not json") == []


def test_row_mapping() -> None:
    row = {"account_id": "1", "account_currency": "JPY", "ad_id": "9", "campaign_id": "7", "adset_id": "8",
           "date_start": "2026-03-01", "spend": "1500", "impressions": "1000", "clicks": "12", "reach": "800",
           "frequency": "1.25",
           "actions": [{"action_type": "link_click", "value": "12"}, {"action_type": "purchase", "value": "2"},
                       {"action_type": "omni_purchase", "value": "3"}],
           "action_values": [{"action_type": "omni_purchase", "value": "4500"}]}
    m = mapping.metric_from(row, account_id="act_1", currency="USD")
    assert (m.spend_minor, m.revenue_minor, m.conversions, m.currency) == (1500, 4500, 3.0, "JPY")
    assert m.day == date(2026, 3, 1) and m.reach == 800 and m.frequency == 1.25
    usd = mapping.metric_from({**row, "account_currency": "USD", "spend": "12.345", "actions": None,
                               "action_values": None}, account_id="1", currency="USD")
    assert usd.spend_minor == 1234 and usd.conversions == 0 and usd.revenue_minor == 0  # half-even
    camp = mapping.campaign_from({"id": "5", "name": "c", "status": "PAUSED", "daily_budget": "0",
                                  "updated_time": "2026-01-31T12:00:00+0000"}, "act_1")
    assert camp.status == EntityStatus.PAUSED and camp.daily_budget_minor is None and camp.account_external_id == "1"
    assert camp.updated_at is not None and camp.updated_at.hour == 12
    acc = mapping.account_from({"id": "act_42", "account_id": "42", "name": "x", "currency": "EUR",
                                "account_status": 2})
    assert acc.external_id == "42" and acc.status == EntityStatus.PAUSED
    assert mapping.parse_time("garbage") is None
