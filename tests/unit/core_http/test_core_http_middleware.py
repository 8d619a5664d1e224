"""Request ids, security headers, CORS, gzip and request body limits."""

from __future__ import annotations

import gzip
import re
from collections.abc import AsyncIterator

import pytest

from omnify.core.middleware import CONTENT_SECURITY_POLICY, valid_request_id


async def test_request_id_generated_and_echoed(make_client) -> None:
    _, client = await make_client()
    resp = await client.get("/api/v1/things/1")
    rid = resp.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid)
    assert resp.json()["request_id"] == rid  # same value on request.state
    other = await client.get("/api/v1/things/1")
    assert other.headers["X-Request-ID"] != rid


async def test_valid_incoming_request_id_is_kept(make_client) -> None:
    _, client = await make_client()
    resp = await client.get("/api/v1/things/1", headers={"X-Request-ID": "edge-Proxy_1.2-3"})
    assert resp.headers["X-Request-ID"] == "edge-Proxy_1.2-3"
    assert resp.json()["request_id"] == "edge-Proxy_1.2-3"


@pytest.mark.parametrize("bad", ["has space", "a" * 129, 'x";drop', "ünïcode", "id\\n"])
async def test_invalid_incoming_request_id_is_replaced(make_client, bad: str) -> None:
    _, client = await make_client()
    resp = await client.get("/small", headers={"X-Request-ID": bad.encode("utf-8")})
    rid = resp.headers["X-Request-ID"]
    assert rid != bad
    assert re.fullmatch(r"[0-9a-f]{32}", rid)


def test_request_id_validation_rule() -> None:
    assert valid_request_id("a" * 128)
    assert not valid_request_id("a" * 129)
    assert not valid_request_id("")
    assert not valid_request_id(None)


async def test_request_id_on_404_problem(make_client) -> None:
    _, client = await make_client()
    resp = await client.get("/no/such/route", headers={"X-Request-ID": "nf-1"})
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.headers["X-Request-ID"] == "nf-1"
    assert resp.json()["request_id"] == "nf-1"


async def test_security_headers_over_http_without_hsts(make_client) -> None:
    _, client = await make_client()
    resp = await client.get("/small")
    assert resp.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert "Strict-Transport-Security" not in resp.headers


async def test_hsts_only_over_https(make_client) -> None:
    _, client = await make_client(base_url="https://testserver")
    resp = await client.get("/small")
    assert resp.headers["Strict-Transport-Security"].startswith("max-age=31536000")


async def test_hsts_forced_by_https_only_setting(make_client) -> None:
    _, client = await make_client(https_only=True)
    resp = await client.get("/small")
    assert "Strict-Transport-Security" in resp.headers


async def test_security_headers_on_error_responses(make_client) -> None:
    _, client = await make_client()
    resp = await client.get("/missing")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]


async def test_csp_allows_no_inline_code_and_no_third_party_origin(make_client) -> None:
    _, client = await make_client()
    csp = (await client.get("/small")).headers["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "http" not in csp  # no origin but 'self'


async def test_cors_allowed_origin(make_client) -> None:
    _, client = await make_client(cors_origins=["https://app.example.com"])
    resp = await client.get("/small", headers={"Origin": "https://app.example.com"})
    assert resp.headers["access-control-allow-origin"] == "https://app.example.com"
    assert resp.headers["access-control-allow-credentials"] == "true"
    assert "X-Request-ID" in resp.headers["access-control-expose-headers"]

    preflight = await client.options(
        "/echo",
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Content-Type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "X-Request-ID" in preflight.headers  # preflights pass through our context layer


async def test_cors_refused_origin(make_client) -> None:
    _, client = await make_client(cors_origins=["https://app.example.com"])
    resp = await client.get("/small", headers={"Origin": "https://evil.example.net"})
    assert resp.status_code == 200  # CORS is enforced by the browser; we just do not allow it
    assert "access-control-allow-origin" not in resp.headers
    preflight = await client.options(
        "/echo",
        headers={"Origin": "https://evil.example.net", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers


async def test_gzip_for_large_responses_only(make_client) -> None:
    _, client = await make_client()
    big = await client.get("/big", headers={"Accept-Encoding": "gzip"})
    assert big.headers["content-encoding"] == "gzip"
    assert len(big.json()["rows"]) == 300  # httpx decompressed it
    small = await client.get("/small", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in small.headers
    plain = await client.get("/big", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers


async def test_gzip_really_compresses(make_client) -> None:
    _, client = await make_client()
    async with client.stream("GET", "/big", headers={"Accept-Encoding": "gzip"}) as resp:
        raw = b"".join([chunk async for chunk in resp.aiter_raw()])
    assert len(gzip.decompress(raw)) > 4 * len(raw)


def _assert_413(resp, limit: int) -> None:
    assert resp.status_code == 413
    assert resp.headers["content-type"] == "application/problem+json"
    body = resp.json()
    assert body["status"] == 413
    assert body["type"].endswith("/payload-too-large")
    assert str(limit) in body["detail"]
    assert body["request_id"] == resp.headers["X-Request-ID"]


async def test_body_within_limit_is_accepted(make_client) -> None:
    _, client = await make_client()
    resp = await client.post("/echo", json={"data": "x" * 3000})
    assert resp.status_code == 200


async def test_oversized_body_by_content_length(make_client) -> None:
    _, client = await make_client()
    resp = await client.post("/echo", json={"data": "x" * 5000})
    _assert_413(resp, 4096)


async def test_oversized_body_by_content_length_on_unknown_route(make_client) -> None:
    _, client = await make_client()
    resp = await client.post("/nowhere", content=b"x" * 5000)
    _assert_413(resp, 4096)


async def _chunks(total: int, size: int = 1000) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield b"x" * n


@pytest.mark.parametrize("path", ["/raw", "/echo"])
async def test_oversized_chunked_body(make_client, path: str) -> None:
    _, client = await make_client()
    resp = await client.post(path, content=_chunks(10_000), headers={"Content-Type": "application/json"})
    assert "content-length" not in resp.request.headers  # really streamed
    _assert_413(resp, 4096)


async def test_chunked_body_within_limit(make_client) -> None:
    _, client = await make_client()
    resp = await client.post("/raw", content=_chunks(3000))
    assert resp.status_code == 200
    assert resp.json() == {"size": 3000}


async def test_upload_routes_get_the_upload_limit(make_client) -> None:
    _, client = await make_client()
    payload = b"p" * 20_000  # over the 4 KiB body limit, under the 64 KiB upload limit
    resp = await client.post("/api/v1/orgs/o1/files", files={"file": ("a.bin", payload)})
    assert resp.status_code == 200
    assert resp.json()["size"] > 20_000

    too_big = await client.post("/api/v1/orgs/o1/files", files={"file": ("a.bin", b"p" * 70_000)})
    _assert_413(too_big, 64 * 1024)

    # Same path without multipart: the ordinary limit applies.
    not_multipart = await client.post("/api/v1/orgs/o1/files", content=payload)
    _assert_413(not_multipart, 4096)
