from __future__ import annotations

import httpx
import pytest

from tests.conftest import make_settings
from tests.factories import STRONG_PASSWORD, register, unique_email

PROBLEM = "application/problem+json"


async def test_register_then_me(client: httpx.AsyncClient) -> None:
    acct = await register(client, org="Acme Agency")
    resp = await client.get("/api/v1/me", headers=acct.headers)
    assert resp.status_code == 200
    body = resp.json()
    assert body["email"] == acct.email
    assert body["memberships"][0]["role"] == "owner"
    assert body["memberships"][0]["org_name"] == "Acme Agency"
    assert "password_hash" not in body


async def test_register_validation_and_duplicates(client: httpx.AsyncClient) -> None:
    resp = await client.post("/api/v1/auth/register", json={"email": "not-an-email", "password": "x"})
    assert resp.status_code == 422
    assert resp.headers["content-type"].startswith(PROBLEM)
    fields = {e["field"] for e in resp.json()["errors"]}
    assert {"email", "name", "organization_name"} <= fields

    email = unique_email()
    weak = await client.post("/api/v1/auth/register", json={
        "email": email, "password": "password123", "name": "A", "organization_name": "B"})
    assert weak.status_code == 422
    assert weak.json()["type"].endswith("weak-password")

    await register(client, email=email)
    dup = await client.post("/api/v1/auth/register", json={
        "email": email.upper(), "password": STRONG_PASSWORD, "name": "A", "organization_name": "B"})
    assert dup.status_code == 409
    assert dup.json()["type"].endswith("email-taken")


async def test_login_wrong_password_and_unknown_user(client: httpx.AsyncClient) -> None:
    acct = await register(client)
    bad = await client.post("/api/v1/auth/login", json={"email": acct.email, "password": "nope-nope-nope"})
    unknown = await client.post("/api/v1/auth/login", json={"email": unique_email(), "password": "nope-nope"})
    assert bad.status_code == unknown.status_code == 401
    assert bad.json()["detail"] == unknown.json()["detail"]  # no account enumeration
    ok = await client.post("/api/v1/auth/login", json={"email": acct.email.upper(), "password": acct.password})
    assert ok.status_code == 200
    assert ok.json()["token_type"] == "bearer"


async def test_unauthenticated_and_garbage_tokens(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/me")).status_code == 401
    for token in ("garbage", "a.b.c", "omk_deadbeef_nope"):
        resp = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 401
        assert resp.headers["content-type"].startswith(PROBLEM)


async def test_refresh_rotates_and_reuse_revokes_family(client: httpx.AsyncClient) -> None:
    acct = await register(client)
    first = await client.post("/api/v1/auth/refresh", json={"refresh_token": acct.refresh_token})
    assert first.status_code == 200
    rotated = first.json()["refresh_token"]
    assert rotated != acct.refresh_token

    # The spent token comes back (stolen): refused, and the family dies with it.
    reuse = await client.post("/api/v1/auth/refresh", json={"refresh_token": acct.refresh_token})
    assert reuse.status_code == 401
    assert reuse.json()["type"].endswith("refresh-token-reused")
    after = await client.post("/api/v1/auth/refresh", json={"refresh_token": rotated})
    assert after.status_code == 401

    # Other sessions (another login) are a different family and survive.
    login = await client.post("/api/v1/auth/login", json={"email": acct.email, "password": acct.password})
    again = await client.post("/api/v1/auth/refresh", json={"refresh_token": login.json()["refresh_token"]})
    assert again.status_code == 200


async def test_logout_ends_session(client: httpx.AsyncClient) -> None:
    acct = await register(client)
    resp = await client.post("/api/v1/auth/logout", headers=acct.headers, json={"refresh_token": acct.refresh_token})
    assert resp.status_code == 204
    assert (await client.post("/api/v1/auth/refresh", json={"refresh_token": acct.refresh_token})).status_code == 401
    # logout without a token ends every session, access tokens included
    resp = await client.post("/api/v1/auth/logout", headers=acct.headers)
    assert resp.status_code == 204
    assert (await client.get("/api/v1/me", headers=acct.headers)).status_code == 401


async def test_password_change_invalidates_old_tokens(client: httpx.AsyncClient) -> None:
    acct = await register(client)
    wrong = await client.post("/api/v1/me/password", headers=acct.headers,
                              json={"current_password": "wrong-one-here", "new_password": "another-strong-pass-77"})
    assert wrong.status_code == 401
    resp = await client.post("/api/v1/me/password", headers=acct.headers,
                             json={"current_password": acct.password, "new_password": "another-strong-pass-77"})
    assert resp.status_code == 200
    assert (await client.get("/api/v1/me", headers=acct.headers)).status_code == 401
    new_headers = {"Authorization": f"Bearer {resp.json()['access_token']}"}
    assert (await client.get("/api/v1/me", headers=new_headers)).status_code == 200
    old_login = await client.post("/api/v1/auth/login", json={"email": acct.email, "password": acct.password})
    assert old_login.status_code == 401


async def test_malformed_json_wrong_types_and_unknown_route(client: httpx.AsyncClient) -> None:
    resp = await client.post("/api/v1/auth/login", content=b'{"email": ', headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    assert resp.headers["content-type"].startswith(PROBLEM)
    assert resp.json()["type"].endswith("malformed-json")

    resp = await client.post("/api/v1/auth/login", json={"email": 12, "password": ["x"]})
    assert resp.status_code == 422
    assert {e["field"] for e in resp.json()["errors"]} == {"email", "password"}

    resp = await client.get("/api/v1/no-such-thing")
    assert resp.status_code == 404
    assert resp.headers["content-type"].startswith(PROBLEM)
    assert "Traceback" not in resp.text


async def test_oversized_body_is_413(client: httpx.AsyncClient, settings) -> None:  # type: ignore[no-untyped-def]
    big = b'{"email": "' + b"a" * (settings.max_request_body_bytes + 10) + b'"}'
    resp = await client.post("/api/v1/auth/login", content=big, headers={"Content-Type": "application/json"})
    assert resp.status_code == 413
    assert resp.headers["content-type"].startswith(PROBLEM)


async def test_auth_rate_limit_answers_429_with_retry_after(db_urls, tmp_path, database) -> None:  # type: ignore[no-untyped-def]
    from omnify.app import create_app

    s = make_settings(tmp_path, db_urls, rate_limit_auth="3/minute")
    limited = create_app(s, database)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=limited), base_url="http://t") as c:
        codes = []
        for _ in range(4):
            r = await c.post("/api/v1/auth/login", json={"email": unique_email(), "password": "whatever-pass"})
            codes.append(r.status_code)
        assert codes[:3] == [401, 401, 401]
        assert codes[3] == 429
        assert int(r.headers["Retry-After"]) >= 1
        assert r.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("path", ["/api/v1/me", "/api/v1/orgs"])
async def test_api_key_cannot_use_user_endpoints(client: httpx.AsyncClient, path: str) -> None:
    acct = await register(client)
    key = await client.post(f"/api/v1/orgs/{acct.org_id}/api-keys", headers=acct.headers,
                            json={"name": "ci", "scopes": ["read"]})
    resp = await client.get(path, headers={"Authorization": f"Bearer {key.json()['key']}"})
    assert resp.status_code == 403
