"""How a connector's failure reaches the caller of apply/undo: a refusal is the caller's
conflict with the platform's state (409), a retryable failure is 503 with Retry-After, and
only an unreadable failure is a 502."""

from __future__ import annotations

import pytest

from omnify.actions.platforms import (
    PLATFORM_RETRY_AFTER_SECONDS,
    PlatformBusy,
    PlatformError,
    PlatformRefused,
    platform_error,
)
from omnify.integrations.base import (
    AuthExpired,
    AuthRevoked,
    CircuitOpen,
    ConnectorError,
    InvalidRequest,
    PermissionDenied,
    RateLimited,
    TransientError,
)


@pytest.mark.parametrize("kind", [InvalidRequest, PermissionDenied, AuthRevoked, AuthExpired])
def test_a_refusal_is_a_409_naming_the_platform(kind: type[ConnectorError]) -> None:
    err = platform_error(kind("Unsupported get request", status=400, platform_code="100"), "meta_ads")
    assert isinstance(err, PlatformRefused)
    assert (err.status, err.code) == (409, "platform-refused")
    assert err.extra == {"platform": "meta_ads", "platform_code": "100", "upstream_status": 400}
    assert "meta_ads: Unsupported get request" in str(err)


def test_rate_limited_is_a_503_with_the_platforms_own_wait() -> None:
    err = platform_error(RateLimited("slow down", retry_after=12.4, status=429), "google_ads")
    assert isinstance(err, PlatformBusy)
    assert (err.status, err.code) == (503, "platform-unavailable")
    assert err.headers == {"Retry-After": "13"}


@pytest.mark.parametrize("exc", [TransientError("boom", status=503), CircuitOpen("open")])
def test_transient_failures_are_503_with_a_default_wait(exc: ConnectorError) -> None:
    err = platform_error(exc, "tiktok_ads")
    assert err.status == 503 and err.headers == {"Retry-After": str(PLATFORM_RETRY_AFTER_SECONDS)}


def test_anything_else_is_a_502() -> None:
    err = platform_error(ConnectorError("unreadable answer", status=200), "linkedin_ads")
    assert isinstance(err, PlatformError) and err.status == 502 and err.code == "platform-error"
