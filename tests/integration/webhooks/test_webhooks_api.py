"""Every /webhook-endpoints route: happy path, validation, no auth, viewer/member 403, other org 404."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from omnify.audit.models import AuditLog
from omnify.core.db import Database, bind_tenant
from omnify.settings import Settings
from omnify.webhooks import service
from omnify.webhooks.config import WebhookConfig
from omnify.webhooks.models import WebhookEndpoint
from tests.factories import Account, add_member, register


@dataclass
class Team:
    owner: Account
    admin: Account
    member: Account
    viewer: Account
    outsider: Account
    endpoint_id: str
    delivery_id: str
    foreign_endpoint_id: str


def base(org_id: str) -> str:
    return f"/api/v1/orgs/{org_id}/webhook-endpoints"


async def _create(client: httpx.AsyncClient, who: Account, **body: Any) -> httpx.Response:
    payload = {"url": "https://hooks.example.com/omnify", **body}
    return await client.post(base(who.org_id), headers=who.headers, json=payload)


async def _dead_letter(database: Database, settings: Settings, org_id: str, delivery_id: str) -> None:
    """One blocked attempt with a one-attempt schedule: the delivery is dead-lettered."""
    config = WebhookConfig(production=True, retry_schedule=(0,))
    async with database.sessionmaker() as session:
        outcome = await service.attempt_delivery(session, settings, config, uuid.UUID(delivery_id),
                                                 uuid.UUID(org_id))
    assert outcome is not None and outcome.status == "failed"


@pytest.fixture(scope="module")
async def team(client: httpx.AsyncClient) -> Team:
    owner = await register(client)
    admin = await add_member(client, owner, "admin")
    member = await add_member(client, owner, "member")
    viewer = await add_member(client, owner, "viewer")
    outsider = await register(client)
    created = await _create(client, owner, description="matrix")
    assert created.status_code == 201, created.text
    endpoint_id = created.json()["id"]
    test = await client.post(f"{base(owner.org_id)}/{endpoint_id}/test", headers=owner.headers)
    assert test.status_code == 202, test.text
    foreign = await _create(client, outsider)
    return Team(owner, admin, member, viewer, outsider, endpoint_id, test.json()["id"], foreign.json()["id"])


def _routes(t: Team, org_id: str, endpoint_id: str, delivery_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    b = base(org_id)
    return [
        ("GET", f"/api/v1/orgs/{org_id}/webhook-event-types", None),
        ("GET", b, None),
        ("POST", b, {"url": "https://hooks.example.com/x"}),
        ("GET", f"{b}/{endpoint_id}", None),
        ("PATCH", f"{b}/{endpoint_id}", {"description": "changed"}),
        ("DELETE", f"{b}/{endpoint_id}", None),
        ("POST", f"{b}/{endpoint_id}/rotate-secret", None),
        ("POST", f"{b}/{endpoint_id}/test", None),
        ("GET", f"{b}/{endpoint_id}/deliveries", None),
        ("GET", f"{b}/{endpoint_id}/deliveries/{delivery_id}", None),
        ("POST", f"{b}/{endpoint_id}/deliveries/{delivery_id}/replay", None),
        ("POST", f"{b}/{endpoint_id}/replay", {}),
    ]


ROUTE_IDS = ["event-types", "list", "create", "get", "update", "delete", "rotate", "test", "deliveries",
             "delivery", "replay", "bulk-replay"]


@pytest.mark.parametrize("index", range(12), ids=ROUTE_IDS)
async def test_no_auth_is_401(client: httpx.AsyncClient, team: Team, index: int) -> None:
    method, path, body = _routes(team, team.owner.org_id, team.endpoint_id, team.delivery_id)[index]
    resp = await client.request(method, path, json=body)
    assert resp.status_code == 401
    assert resp.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("role", ["viewer", "member"])
@pytest.mark.parametrize("index", range(12), ids=ROUTE_IDS)
async def test_viewer_and_member_are_403(client: httpx.AsyncClient, team: Team, index: int, role: str) -> None:
    who = getattr(team, role)
    method, path, body = _routes(team, team.owner.org_id, team.endpoint_id, team.delivery_id)[index]
    resp = await client.request(method, path, json=body, headers=who.headers)
    assert resp.status_code == 403, resp.text
    assert resp.json()["type"].endswith("insufficient-role")


@pytest.mark.parametrize("index", range(12), ids=ROUTE_IDS)
async def test_other_org_is_404(client: httpx.AsyncClient, team: Team, index: int) -> None:
    # The outsider (owner of another org) aims at our organization...
    method, path, body = _routes(team, team.owner.org_id, team.endpoint_id, team.delivery_id)[index]
    resp = await client.request(method, path, json=body, headers=team.outsider.headers)
    assert resp.status_code == 404, resp.text
    # ... and our owner aims at the outsider's endpoint through our own organization.
    if index >= 3:
        method, path, body = _routes(team, team.owner.org_id, team.foreign_endpoint_id, team.delivery_id)[index]
        resp = await client.request(method, path, json=body, headers=team.owner.headers)
        assert resp.status_code == 404, resp.text


async def test_endpoint_lifecycle(client: httpx.AsyncClient, team: Team, owner_database: Database) -> None:
    admin = team.admin
    resp = await _create(client, admin, event_types=["sync.failed", "client.created", "sync.failed"],
                         description="  CRM   sync ")
    assert resp.status_code == 201, resp.text
    created = resp.json()
    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 40
    assert created["secret_hint"] == created["secret"][:10] + "…"
    assert created["event_types"] == ["client.created", "sync.failed"]
    assert created["description"] == "CRM sync"
    endpoint_id = created["id"]

    got = (await client.get(f"{base(admin.org_id)}/{endpoint_id}", headers=admin.headers)).json()
    assert "secret" not in got and got["url"] == "https://hooks.example.com/omnify"

    listed = await client.get(base(admin.org_id), headers=admin.headers, params={"fields": "url", "limit": 1})
    assert listed.status_code == 200
    assert listed.json()["items"][0].keys() == {"id", "url"} and listed.json()["next_cursor"]

    patched = await client.patch(f"{base(admin.org_id)}/{endpoint_id}", headers=admin.headers,
                                 json={"enabled": False, "url": "https://other.example.com/h"})
    assert patched.status_code == 200
    assert patched.json()["enabled"] is False and patched.json()["disabled_reason"] == "manual"
    again = await client.patch(f"{base(admin.org_id)}/{endpoint_id}", headers=admin.headers, json={"enabled": True})
    assert again.json()["enabled"] is True and again.json()["disabled_reason"] is None

    rotated = await client.post(f"{base(admin.org_id)}/{endpoint_id}/rotate-secret", headers=admin.headers)
    assert rotated.status_code == 200
    assert rotated.json()["secret"] != created["secret"]
    assert rotated.json()["previous_secret_expires_at"] is not None

    async with owner_database.sessionmaker() as s:
        row = await s.get(WebhookEndpoint, uuid.UUID(endpoint_id))
        assert row is not None
        for secret in (created["secret"], rotated.json()["secret"]):  # encrypted at rest
            assert secret.encode() not in row.secret_blob
            assert row.previous_secret_blob is None or secret.encode() not in row.previous_secret_blob
        actions = (await s.scalars(select(AuditLog.action).where(AuditLog.target_id == endpoint_id))).all()
        assert {"webhook_endpoint.created", "webhook_endpoint.updated", "webhook_endpoint.secret_rotated"} \
            <= set(actions)
        assert all(created["secret"] not in str(e.changes) for e in
                   (await s.scalars(select(AuditLog).where(AuditLog.target_id == endpoint_id))).all())

    deleted = await client.delete(f"{base(admin.org_id)}/{endpoint_id}", headers=admin.headers)
    assert deleted.status_code == 204
    assert (await client.get(f"{base(admin.org_id)}/{endpoint_id}", headers=admin.headers)).status_code == 404


async def test_event_types_catalogue(client: httpx.AsyncClient, team: Team) -> None:
    resp = await client.get(f"/api/v1/orgs/{team.owner.org_id}/webhook-event-types", headers=team.owner.headers)
    assert resp.status_code == 200
    names = {i["id"] for i in resp.json()["items"]}
    assert {"client.created", "client.onboarding_completed", "credential.expiring", "connection.failed",
            "sync.completed", "sync.failed", "recommendation.created", "action.applied"} <= names
    assert "webhook.test" not in names
    bad = await client.get(f"/api/v1/orgs/{team.owner.org_id}/webhook-event-types", headers=team.owner.headers,
                           params={"fields": "nope"})
    assert bad.status_code == 400


@pytest.mark.parametrize("body,field", [
    ({"url": "ftp://hooks.example.com/x"}, "url"),
    ({"url": "https://user:pw@hooks.example.com/x"}, "url"),
    ({"url": "not a url at all"}, "url"),
    ({"url": "https://hooks.example.com/x", "event_types": ["nope.never"]}, "event_types"),
    ({"url": "https://hooks.example.com/x", "secret": "mine"}, "secret"),
    ({"url": "https://hooks.example.com/x", "description": "x" * 501}, "description"),
])
async def test_create_validation(client: httpx.AsyncClient, team: Team, body: dict[str, Any], field: str) -> None:
    resp = await client.post(base(team.owner.org_id), headers=team.owner.headers, json=body)
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert any(field in e["field"] for e in resp.json()["errors"])


async def test_other_validation_failures(client: httpx.AsyncClient, team: Team) -> None:
    b, h = base(team.owner.org_id), team.owner.headers
    checks = [
        await client.get(b, headers=h, params={"limit": 0}),
        await client.get(f"{b}/not-a-uuid", headers=h),
        await client.patch(f"{b}/{team.endpoint_id}", headers=h, json={"event_types": ["bogus"]}),
        await client.patch(f"{b}/{team.endpoint_id}", headers=h, json={"url": "gopher://x.example.com"}),
        await client.delete(f"{b}/not-a-uuid", headers=h),
        await client.post(f"{b}/not-a-uuid/rotate-secret", headers=h),
        await client.post(f"{b}/{team.endpoint_id}/test", headers={**h, "Idempotency-Key": "k" * 201}),
        await client.get(f"{b}/{team.endpoint_id}/deliveries", headers=h, params={"status": "bogus"}),
        await client.get(f"{b}/{team.endpoint_id}/deliveries/not-a-uuid", headers=h),
        await client.post(f"{b}/{team.endpoint_id}/deliveries/not-a-uuid/replay", headers=h),
        await client.post(f"{b}/{team.endpoint_id}/replay", headers=h, json={"since": "2026-01-01T00:00:00"}),
    ]
    assert [r.status_code for r in checks] == [422] * len(checks), [r.text for r in checks if r.status_code != 422]
    assert all(r.headers["content-type"].startswith("application/problem+json") for r in checks)


async def test_test_event_replay_and_idempotency(
    client: httpx.AsyncClient, team: Team, database: Database, settings: Settings
) -> None:
    owner = team.owner
    b = base(owner.org_id)
    endpoint = (await _create(client, owner)).json()["id"]
    first = await client.post(f"{b}/{endpoint}/test", headers={**owner.headers, "Idempotency-Key": "click-1"})
    again = await client.post(f"{b}/{endpoint}/test", headers={**owner.headers, "Idempotency-Key": "click-1"})
    other = await client.post(f"{b}/{endpoint}/test", headers=owner.headers)
    assert first.status_code == again.status_code == other.status_code == 202
    assert first.json()["id"] == again.json()["id"] != other.json()["id"]
    assert first.json()["status"] == "pending" and first.json()["event_type"] == "webhook.test"

    delivery_id = first.json()["id"]
    not_dead = await client.post(f"{b}/{endpoint}/deliveries/{delivery_id}/replay", headers=owner.headers)
    assert not_dead.status_code == 409 and not_dead.json()["type"].endswith("delivery-not-failed")

    await _dead_letter(database, settings, owner.org_id, delivery_id)
    detail = (await client.get(f"{b}/{endpoint}/deliveries/{delivery_id}", headers=owner.headers)).json()
    assert detail["status"] == "failed" and detail["payload"]["type"] == "webhook.test"
    assert detail["attempt_log"][0]["error"].startswith("blocked:")

    dead = await client.get(f"{b}/{endpoint}/deliveries", headers=owner.headers, params={"status": "failed"})
    assert [d["id"] for d in dead.json()["items"]] == [delivery_id]

    replayed = await client.post(f"{b}/{endpoint}/deliveries/{delivery_id}/replay", headers=owner.headers)
    assert replayed.status_code == 202
    assert replayed.json()["status"] == "pending" and replayed.json()["replay_count"] == 1

    await _dead_letter(database, settings, owner.org_id, delivery_id)
    await _dead_letter(database, settings, owner.org_id, other.json()["id"])
    bulk = await client.post(f"{b}/{endpoint}/replay", headers=owner.headers, json={})
    assert bulk.status_code == 202 and bulk.json() == {"replayed": 2}

    # A disabled endpoint refuses tests and replays.
    await client.patch(f"{b}/{endpoint}", headers=owner.headers, json={"enabled": False})
    assert (await client.post(f"{b}/{endpoint}/test", headers=owner.headers)).status_code == 409
    assert (await client.post(f"{b}/{endpoint}/replay", headers=owner.headers, json={})).status_code == 409
    pending = await client.get(f"{b}/{endpoint}/deliveries", headers=owner.headers, params={"status": "pending"})
    assert pending.json()["items"] == []  # disabling dead-lettered what was pending


async def test_endpoint_rows_are_tenant_isolated(client: httpx.AsyncClient, team: Team, database: Database) -> None:
    """With RLS a session bound to one org cannot even see another's endpoints."""
    if database.dialect != "postgresql":
        pytest.skip("row-level security is PostgreSQL-only")
    async with database.sessionmaker() as s:
        await bind_tenant(s, uuid.UUID(team.outsider.org_id))
        rows = (await s.scalars(select(WebhookEndpoint.org_id))).all()
        assert rows and {str(r) for r in rows} == {team.outsider.org_id}
        await bind_tenant(s, None)
        assert (await s.scalars(select(WebhookEndpoint.id))).all() == []


async def test_registration_is_isolated(client: httpx.AsyncClient) -> None:
    a, b = await register(client), await register(client)
    created = await _create(client, a)
    assert created.status_code == 201
    assert (await client.get(base(b.org_id), headers=b.headers)).json()["items"] == []
