"""Rate limits with the in-memory storage: headers, 429 problem, scopes, client IP."""

from __future__ import annotations

import socket
import uuid

import pytest
from prometheus_client import REGISTRY
from starlette.requests import Request

from omnify.core.errors import RateLimited
from omnify.core.ratelimit import RateLimiter, RateLimitStatus, client_ip, redis_storage_uri


def _rate_limited_count(scope: str) -> float:
    return REGISTRY.get_sample_value("omnify_rate_limited_total", {"scope": scope}) or 0.0


def _request(client_host: str = "10.0.0.1", headers: dict[str, str] | None = None) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/",
            "headers": raw,
            "client": (client_host, 5555),
            "query_string": b"",
        }
    )


async def test_n_allowed_then_429_with_retry_after(make_client) -> None:
    _, client = await make_client()
    before = _rate_limited_count("ip")
    remaining = []
    for _ in range(3):
        resp = await client.get("/limited")
        assert resp.status_code == 200
        assert resp.headers["RateLimit-Limit"] == "3"
        assert 0 < int(resp.headers["RateLimit-Reset"]) <= 60
        remaining.append(int(resp.headers["RateLimit-Remaining"]))
    assert remaining == [2, 1, 0]

    blocked = await client.get("/limited")
    assert blocked.status_code == 429
    assert blocked.headers["content-type"] == "application/problem+json"
    retry_after = int(blocked.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert blocked.headers["RateLimit-Remaining"] == "0"
    body = blocked.json()
    assert body["status"] == 429
    assert body["type"].endswith("/rate-limited")
    assert "ip" in body["detail"]
    assert body["scope"] == "ip"
    assert body["retry_after"] == retry_after
    assert _rate_limited_count("ip") == before + 1


async def test_most_restrictive_limit_wins_in_headers(make_client) -> None:
    # /limited checks ip (3/minute) and user (100/minute): headers must describe the ip one.
    _, client = await make_client()
    resp = await client.get("/limited")
    assert resp.headers["RateLimit-Limit"] == "3"
    assert resp.headers["RateLimit-Policy"] == "3;w=60"


async def test_ip_rate_limit_dependency_uses_the_named_setting(make_client) -> None:
    _, client = await make_client(rate_limit_auth="2/minute")
    assert [(await client.post("/login-like")).status_code for _ in range(3)] == [200, 200, 429]


async def test_disabled_limiter_never_blocks(make_client) -> None:
    _, client = await make_client(rate_limit_enabled=False)
    for _ in range(6):
        resp = await client.get("/limited")
        assert resp.status_code == 200
        assert "RateLimit-Limit" not in resp.headers


async def test_routes_without_limits_carry_no_headers(make_client) -> None:
    _, client = await make_client()
    resp = await client.get("/healthz")
    assert "RateLimit-Limit" not in resp.headers


async def test_scopes_and_identities_are_independent(settings_for) -> None:
    limiter = RateLimiter(settings_for())
    try:
        ident = uuid.uuid4().hex
        await limiter.hit(None, "user", ident, "1/minute")
        await limiter.hit(None, "org", ident, "1/minute")  # other scope, own budget
        await limiter.hit(None, "user", ident + "x", "1/minute")  # other identity
        with pytest.raises(RateLimited) as excinfo:
            await limiter.hit(None, "user", ident, "1/minute")
        assert "user" in excinfo.value.detail
        assert excinfo.value.headers["Retry-After"].isdigit()
    finally:
        await limiter.close()


async def test_multiple_limits_in_one_string(settings_for) -> None:
    limiter = RateLimiter(settings_for())
    request = _request()
    try:
        ident = uuid.uuid4().hex
        await limiter.hit(request, "api_key", ident, "5/minute;2/hour")
        await limiter.hit(request, "api_key", ident, "5/minute;2/hour")
        status = request.state.rate_limit
        assert isinstance(status, RateLimitStatus)
        assert (status.limit, status.remaining, status.window) == (2, 0, 3600)
        with pytest.raises(RateLimited, match="2 per hour"):
            await limiter.hit(request, "api_key", ident, "5/minute;2/hour")
    finally:
        await limiter.close()


async def test_ipv6_clients_are_bucketed_by_64(settings_for) -> None:
    limiter = RateLimiter(settings_for())
    try:
        await limiter.hit(None, "ip", "2001:db8:1:2::1", "1/minute")
        with pytest.raises(RateLimited):
            await limiter.hit(None, "ip", "2001:db8:1:2::ffff", "1/minute")
        await limiter.hit(None, "ip", "2001:db8:1:3::1", "1/minute")  # another /64
    finally:
        await limiter.close()


async def test_bad_arguments_are_programming_errors(settings_for) -> None:
    limiter = RateLimiter(settings_for())
    try:
        with pytest.raises(ValueError, match="scope"):
            await limiter.hit(None, "planet", "x", "1/minute")
        with pytest.raises(ValueError, match="identity"):
            await limiter.hit(None, "user", "", "1/minute")
    finally:
        await limiter.close()


def test_malformed_configured_limit_fails_at_start(settings_for) -> None:
    with pytest.raises(ValueError, match="OMNIFY_RATE_LIMIT_USER"):
        RateLimiter(settings_for(rate_limit_user="lots"))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_redis_down_fails_open_with_warning(settings_for, capsys) -> None:
    limiter = RateLimiter(settings_for(redis_url=f"redis://127.0.0.1:{_closed_port()}/0"))
    assert limiter.backend == "redis"
    capsys.readouterr()
    try:
        for _ in range(5):
            await limiter.hit(None, "ip", "10.1.1.1", "1/minute")  # would block on a working store
    finally:
        await limiter.close()
    out = capsys.readouterr().out
    assert out.count("rate_limit_storage_unavailable") == 1  # throttled, not one per request
    assert '"level": "warning"' in out


def test_client_ip_is_the_socket_peer_never_the_header() -> None:
    """Proxy headers are resolved by the proxy middleware (trusted peers only), not here."""
    request = _request("10.0.0.9", {"X-Forwarded-For": "1.2.3.4"})
    assert client_ip(request) == "10.0.0.9"


def test_redis_storage_uri() -> None:
    assert redis_storage_uri("redis://h:6379/1") == "async+redis://h:6379/1"
    assert redis_storage_uri("rediss://h:6380/0") == "async+rediss://h:6380/0"
    assert redis_storage_uri("unix:///tmp/r.sock") == "async+redis+unix:///tmp/r.sock"
    with pytest.raises(ValueError):
        redis_storage_uri("memcached://h")
