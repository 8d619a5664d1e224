"""A NUL character (U+0000) anywhere in a request is a 422, never a 500, on both databases.

PostgreSQL refuses U+0000 in ``text`` and ``jsonb``; SQLite stores it. The probes of issue 20
found sixteen places answering 500 on PostgreSQL (list filters and text fields); every one is
replayed here, through the one gate (:class:`omnify.core.middleware.RejectNulMiddleware`), and
the stored value is unchanged afterwards.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.factories import Account, register

NUL = "a\u0000b"


@pytest.fixture(scope="module")
async def world(client: httpx.AsyncClient) -> dict[str, Any]:
    owner = await register(client)
    org = f"/api/v1/orgs/{owner.org_id}"
    made = await client.post(f"{org}/clients", headers=owner.headers, json={"company_name": "Acme"})
    assert made.status_code == 201, made.text
    hook = await client.post(f"{org}/webhook-endpoints", headers=owner.headers,
                             json={"url": "https://hooks.example.com/in", "description": "kept"})
    assert hook.status_code == 201, hook.text
    return {"owner": owner, "org": org, "client": made.json()["id"], "endpoint": hook.json()["id"]}


def _filters(w: dict[str, Any]) -> list[str]:
    org, endpoint = w["org"], w["endpoint"]
    return [
        f"{org}/clients?q=a%00b",
        f"{org}/clients?industry=%00",
        f"{org}/audit?action=x%00",
        f"{org}/audit?action_prefix=x%00",
        f"{org}/audit?actor_type=%00user",
        f"{org}/audit?target_type=client%00",
        f"{org}/audit?target_id=%00",
        f"{org}/webhook-endpoints/{endpoint}/deliveries?event_type=client.created%00",
        f"{org}/clients?q=ok&%00=x",
    ]


async def test_nul_in_list_filters_is_422(client: httpx.AsyncClient, world: dict[str, Any]) -> None:
    owner: Account = world["owner"]
    for url in _filters(world):
        resp = await client.get(url, headers=owner.headers)
        assert resp.status_code == 422, (url, resp.status_code, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
        body = resp.json()
        assert body["errors"][0]["type"] == "string_nul_character", body
        assert body["errors"][0]["loc"][0] == "query"


def _writes(w: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], str]]:
    org = w["org"]
    return [
        ("POST", f"{org}/api-keys", {"name": NUL}, "body.name"),
        ("PATCH", org, {"name": NUL}, "body.name"),
        ("PATCH", org, {"settings": {"note": NUL}}, "body.settings.note"),
        ("PATCH", org, {"settings": {NUL: 1}}, "body.settings.ab"),
        ("PATCH", "/api/v1/me", {"name": NUL}, "body.name"),
        ("PATCH", f"{org}/clients/{w['client']}", {"website": "https://a.example/\u0000"}, "body.website"),
        ("POST", f"{org}/clients", {"company_name": "x", "tags": ["ok", "\u0000"]}, "body.tags.1"),
        ("POST", f"{org}/webhook-endpoints", {"url": "https://h.example.com/x", "description": NUL},
         "body.description"),
        ("PATCH", f"{org}/webhook-endpoints/{w['endpoint']}", {"description": NUL}, "body.description"),
    ]


async def test_nul_in_json_fields_is_422_and_stores_nothing(client: httpx.AsyncClient, world: dict[str, Any]) -> None:
    owner: Account = world["owner"]
    for method, url, payload, field in _writes(world):
        resp = await client.request(method, url, headers=owner.headers, json=payload)
        assert resp.status_code == 422, (method, url, resp.status_code, resp.text)
        fields = [".".join(str(p) for p in e["loc"]) for e in resp.json()["errors"]]
        assert field in fields, (url, fields)
    me = await client.get("/api/v1/me", headers=owner.headers)
    assert me.json()["name"] == "Test Person"
    hook = await client.get(f"{world['org']}/webhook-endpoints/{world['endpoint']}", headers=owner.headers)
    assert hook.json()["description"] == "kept"
    keys = await client.get(f"{world['org']}/api-keys", headers=owner.headers)
    assert keys.json()["items"] == []


async def test_escaped_backslash_u0000_is_ordinary_text(client: httpx.AsyncClient, world: dict[str, Any]) -> None:
    """``"\\\\u0000"`` in JSON is a backslash followed by ``u0000``: six printable characters."""
    owner: Account = world["owner"]
    raw = b'{"name": "lit \\\\u0000 eral"}'
    resp = await client.patch("/api/v1/me", headers={**owner.headers, "Content-Type": "application/json"},
                              content=raw)
    assert resp.status_code == 200, resp.text
    assert resp.json()["name"] == "lit \\u0000 eral"


async def test_nul_in_path_and_form_body(client: httpx.AsyncClient, world: dict[str, Any]) -> None:
    owner: Account = world["owner"]
    resp = await client.get(f"{world['org']}/clients/%00", headers=owner.headers)
    assert resp.status_code == 422, resp.text
    resp = await client.post("/api/v1/auth/login", content=b"email=a%00@example.com&password=x",
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 422, resp.text
    # A UTF-16 JSON body (json.loads detects it) cannot smuggle the NUL past the gate either.
    resp = await client.patch("/api/v1/me", headers={**owner.headers, "Content-Type": "application/json"},
                              content='{"name": "a\\u0000b"}'.encode("utf-16"))
    assert resp.status_code in (400, 422), resp.text


async def test_a_browser_gets_the_html_problem_page(client: httpx.AsyncClient) -> None:
    resp = await client.get("/login?next=%00", headers={"Accept": "text/html"})
    assert resp.status_code == 422
    assert resp.headers["content-type"].startswith("text/html")


async def test_outsider_registration_with_nul_org_name(client: httpx.AsyncClient) -> None:
    resp = await client.post("/api/v1/auth/register", json={
        "email": "nul-org@example.com", "password": "correct-horse-battery-staple-42", "name": "N",
        "organization_name": NUL})
    assert resp.status_code == 422, resp.text
    again = await register(client, email="nul-org@example.com")  # nothing half-created
    assert again.email == "nul-org@example.com"
