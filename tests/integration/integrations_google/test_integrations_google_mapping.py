"""Google error envelopes and micros mapping (pure functions)."""

from __future__ import annotations

import httpx
import pytest

from omnify.integrations.base import (
    AuthExpired,
    AuthRevoked,
    ConnectorError,
    InvalidRequest,
    PermissionDenied,
    RateLimited,
    TransientError,
)
from omnify.integrations.google import mapping


def envelope(status: int, grpc: str, family: str | None = None, value: str | None = None,
             retry_delay: str | None = None) -> httpx.Response:
    err: dict[str, object] = {"code": status, "message": "m", "status": grpc}
    if family:
        item: dict[str, object] = {"errorCode": {family: value}, "message": "detail"}
        if retry_delay:
            item["details"] = {"quotaErrorDetails": {"retryDelay": retry_delay}}
        err["details"] = [{"@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
                           "errors": [item]}]
    return httpx.Response(status, json={"error": err},
                          request=httpx.Request("POST", "https://ads.example/v26/customers/1/googleAds:searchStream"))


@pytest.mark.parametrize(
    ("resp", "expected"),
    [
        (envelope(401, "UNAUTHENTICATED", "authenticationError", "OAUTH_TOKEN_EXPIRED"), AuthExpired),
        (envelope(401, "UNAUTHENTICATED", "authenticationError", "OAUTH_TOKEN_REVOKED"), AuthRevoked),
        (envelope(401, "UNAUTHENTICATED"), AuthExpired),
        (envelope(401, "UNAUTHENTICATED", "authenticationError", "DEVELOPER_TOKEN_INVALID"), PermissionDenied),
        (envelope(403, "PERMISSION_DENIED", "authorizationError", "USER_PERMISSION_DENIED"), PermissionDenied),
        (envelope(429, "RESOURCE_EXHAUSTED", "quotaError", "RESOURCE_EXHAUSTED", "2.5s"), RateLimited),
        (envelope(500, "INTERNAL", "internalError", "INTERNAL_ERROR"), TransientError),
        (envelope(503, "UNAVAILABLE"), TransientError),
        (envelope(400, "INVALID_ARGUMENT", "queryError", "UNRECOGNIZED_FIELD"), InvalidRequest),
    ],
)
def test_error_mapping(resp: httpx.Response, expected: type[ConnectorError]) -> None:
    err = mapping.error_for_response(resp)
    assert type(err) is expected
    if isinstance(err, RateLimited):
        assert err.retry_after == 2.5 and err.platform_code == "quotaError.RESOURCE_EXHAUSTED"


def test_oauth_shape_and_success() -> None:
    req = httpx.Request("POST", "https://oauth.example/token")
    grant = mapping.error_for_response(httpx.Response(400, json={"error": "invalid_grant",
                                                                 "error_description": "Bad Request"}, request=req))
    assert isinstance(grant, InvalidRequest) and grant.platform_code == "invalid_grant"
    client = mapping.error_for_response(httpx.Response(401, json={"error": "invalid_client"}, request=req))
    assert isinstance(client, PermissionDenied)
    assert mapping.error_for_response(httpx.Response(200, json={}, request=req)) is None
    quota = mapping.error_for_response(httpx.Response(429, json={"error": {"code": 429}}, request=req,
                                                      headers={"Retry-After": "4"}))
    assert isinstance(quota, RateLimited) and quota.retry_after == 4


def test_micros() -> None:
    assert mapping.micros_to_minor("12345000", "USD") == 1234  # 12.345 -> half-even 12.34
    assert mapping.micros_to_minor("12355000", "USD") == 1236
    assert mapping.micros_to_minor("1500000000", "JPY") == 1500
    assert mapping.micros_to_minor(None, "USD") == 0
    assert mapping.minor_to_micros(1234, "USD") == 12_340_000
    assert mapping.minor_to_micros(1500, "JPY") == 1_500_000_000
    assert mapping.parse_duration("30s") == 30 and mapping.parse_duration("soon") is None
    assert mapping.last_id("customers/1/adGroupAds/22~33") == "33"
