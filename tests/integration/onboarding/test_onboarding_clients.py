"""Client profiles: CRUD, validation, search/filters/cursor/fields, uniqueness, soft delete, purge."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select

from omnify.audit.models import AuditLog
from omnify.clients import service as clients_service
from omnify.clients.models import ClientProfile
from omnify.core.db import Database, utcnow
from omnify.events.models import DomainEvent
from omnify.files.models import UploadedFile
from omnify.files.service import storage_for
from omnify.orgs.models import OrgQuota
from omnify.settings import Settings
from tests.factories import register
from tests.integration.onboarding.onboarding_support import (
    Team,
    clients_url,
    file_rows,
    new_client,
    png,
    stored_files,
    upload,
)

FULL = {
    "company_name": "  Acme   Outdoor  ",
    "industry": "Retail",
    "website": "https://acme.example.com/shop",
    "description": "Tents and boots.\nSince 1990.",
    "contact_name": "Ada Lovelace",
    "contact_email": "ada@acme.example.com",
    "contact_phone": "+44 20 7946 0958",
    "timezone": "Europe/London",
    "currency": "gbp",
    "brand": {"colors": ["#1a2b3c", "#fff"], "tone_of_voice": "Warm, outdoorsy.",
              "target_audience": "Hikers 25-45", "competitors": ["Globex", "Initech"]},
    "tags": ["Outdoor", "outdoor", "VIP"],
    "metadata": {"crm_id": 42},
}


async def test_create_get_update_and_normalisation(client: httpx.AsyncClient, team: Team,
                                                   owner_database: Database) -> None:
    h = team.owner.headers
    resp = await client.post(clients_url(team.owner), headers=h, json=FULL)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["company_name"] == "Acme Outdoor"
    assert body["contact_phone"] == "+442079460958"  # E.164
    assert body["currency"] == "GBP"
    assert body["brand"]["colors"] == ["#1A2B3C", "#FFF"]
    assert body["tags"] == ["outdoor", "vip"]
    assert body["metadata"] == {"crm_id": 42}
    assert body["status"] == "active" and body["archived_at"] is None

    got = await client.get(clients_url(team.owner, body["id"]), headers=team.viewer.headers)
    assert got.status_code == 200 and got.json() == body

    patched = await client.patch(clients_url(team.owner, body["id"]), headers=h,
                                 json={"industry": "Sports", "description": None, "status": "paused"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["industry"] == "Sports" and patched.json()["description"] is None
    assert patched.json()["status"] == "paused" and patched.json()["website"] == FULL["website"]

    async with owner_database.sessionmaker() as s:
        actions = (await s.scalars(select(AuditLog.action).where(AuditLog.target_id == body["id"]))).all()
        assert {"client.created", "client.updated"} <= set(actions)
        event = await s.scalar(select(DomainEvent).where(DomainEvent.org_id == uuid.UUID(team.owner.org_id),
                                                         DomainEvent.type == "client.created"))
        assert event is not None and event.payload["client_id"] == body["id"] and event.dispatched_at is None


@pytest.mark.parametrize(("field", "value"), [
    ("website", "ftp://acme.example.com"),
    ("website", "https://user:pw@acme.example.com"),
    ("website", "not a url"),
    ("contact_phone", "020 7946 0958"),  # national form: ambiguous
    ("contact_phone", "+1 555"),
    ("contact_email", "nobody"),
    ("timezone", "Mars/Olympus"),
    ("timezone", "GMT+2"),
    ("currency", "ABC"),
    ("currency", "XXX"),
    ("brand", {"colors": ["red"]}),
    ("brand", {"unknown": 1}),
    ("tags", [""]),
    ("metadata", {"k": "x" * 30_000}),
    ("company_name", "   "),
    ("nonsense", 1),
])
async def test_validation_failures(client: httpx.AsyncClient, shared: Team, field: str, value: object) -> None:
    body = {"company_name": "Valid Co", field: value}
    resp = await client.post(clients_url(shared.owner), headers=shared.owner.headers, json=body)
    assert resp.status_code == 422, resp.text
    problem = resp.json()
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert any(e["field"] == field or e["field"].startswith(field) for e in problem["errors"]), problem


async def test_patch_cannot_clear_company_name(client: httpx.AsyncClient, shared: Team,
                                               shared_client_id: str) -> None:
    resp = await client.patch(clients_url(shared.owner, shared_client_id), headers=shared.owner.headers,
                              json={"company_name": None})
    assert resp.status_code == 422


async def test_list_search_filters_cursor_and_fields(client: httpx.AsyncClient, team: Team) -> None:
    h = team.owner.headers
    names = ["Blue Whale Ltd", "blue_sky corp", "Red Fox", "Blue%Percent"]
    made = [await new_client(client, team.owner, company_name=n, industry="Retail" if i % 2 else "Food")
            for i, n in enumerate(names)]

    found = (await client.get(clients_url(team.owner), headers=h, params={"q": "BLUE"})).json()["items"]
    assert {c["company_name"] for c in found} == {"Blue Whale Ltd", "blue_sky corp", "Blue%Percent"}
    # LIKE wildcards in the search term are literal
    pct = (await client.get(clients_url(team.owner), headers=h, params={"q": "e%p"})).json()["items"]
    assert [c["company_name"] for c in pct] == ["Blue%Percent"]
    under = (await client.get(clients_url(team.owner), headers=h, params={"q": "_"})).json()["items"]
    assert [c["company_name"] for c in under] == ["blue_sky corp"]

    retail = (await client.get(clients_url(team.owner), headers=h, params={"industry": "Retail"})).json()["items"]
    assert {c["id"] for c in retail} == {made[1]["id"], made[3]["id"]}

    await client.patch(clients_url(team.owner, made[0]["id"]), headers=h, json={"status": "paused"})
    paused = (await client.get(clients_url(team.owner), headers=h, params={"status": "paused"})).json()["items"]
    assert [c["id"] for c in paused] == [made[0]["id"]]

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 3, "fields": "company_name"}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get(clients_url(team.owner), headers=h, params=params)).json()
        assert all(set(item) == {"id", "company_name"} for item in page["items"])
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [c["id"] for c in reversed(made)]  # newest first, no gaps or repeats

    bad = await client.get(clients_url(team.owner), headers=h, params={"fields": "secret_sauce"})
    assert bad.status_code == 400
    bad = await client.get(clients_url(team.owner), headers=h, params={"status": "gone"})
    assert bad.status_code == 422


async def test_company_name_unique_among_live_clients(client: httpx.AsyncClient, team: Team) -> None:
    h = team.owner.headers
    first = await new_client(client, team.owner, company_name="Globex")
    dup = await client.post(clients_url(team.owner), headers=h, json={"company_name": "  GLOBEX "})
    assert dup.status_code == 409 and dup.json()["type"].endswith("duplicate-client-name")
    # another organization may use the name
    other = await client.post(clients_url(team.outsider), headers=team.outsider.headers,
                              json={"company_name": "Globex"})
    assert other.status_code == 201
    # renaming onto a taken name is refused too
    second = await new_client(client, team.owner, company_name="Initech")
    clash = await client.patch(clients_url(team.owner, second["id"]), headers=h, json={"company_name": "globex"})
    assert clash.status_code == 409

    # archived clients free their name; restoring then conflicts until renamed
    assert (await client.delete(clients_url(team.owner, first["id"]), headers=h)).status_code == 204
    reuse = await client.post(clients_url(team.owner), headers=h, json={"company_name": "Globex"})
    assert reuse.status_code == 201
    conflict = await client.post(clients_url(team.owner, first["id"], "restore"), headers=h)
    assert conflict.status_code == 409
    await client.patch(clients_url(team.owner, reuse.json()["id"]), headers=h, json={"company_name": "Globex 2"})
    restored = await client.post(clients_url(team.owner, first["id"], "restore"), headers=h)
    assert restored.status_code == 200 and restored.json()["status"] == "active"


async def test_soft_delete_and_restore(client: httpx.AsyncClient, team: Team) -> None:
    h = team.owner.headers
    c = await new_client(client, team.owner)
    await client.patch(clients_url(team.owner, c["id"]), headers=h, json={"status": "paused"})
    assert (await client.delete(clients_url(team.owner, c["id"]), headers=h)).status_code == 204
    assert (await client.delete(clients_url(team.owner, c["id"]), headers=h)).status_code == 204  # idempotent

    archived = (await client.get(clients_url(team.owner, c["id"]), headers=h)).json()
    assert archived["status"] == "archived" and archived["archived_at"]
    assert archived["purge_after"] > archived["archived_at"]
    listed = (await client.get(clients_url(team.owner), headers=h)).json()["items"]
    assert c["id"] not in {i["id"] for i in listed}
    with_archived = (await client.get(clients_url(team.owner), headers=h,
                                      params={"include_archived": "true"})).json()["items"]
    assert c["id"] in {i["id"] for i in with_archived}

    # an archived client is frozen
    frozen = await client.patch(clients_url(team.owner, c["id"]), headers=h, json={"industry": "X"})
    assert frozen.status_code == 409 and frozen.json()["type"].endswith("client-archived")
    assert (await upload(client, team.owner, c["id"], png())).status_code == 409

    restored = await client.post(clients_url(team.owner, c["id"], "restore"), headers=h)
    assert restored.status_code == 200
    assert restored.json()["status"] == "paused"  # back to what it was
    assert restored.json()["archived_at"] is None


async def test_client_quota(client: httpx.AsyncClient, owner_database: Database) -> None:
    acct = await register(client)
    async with owner_database.sessionmaker() as s:
        s.add(OrgQuota(org_id=uuid.UUID(acct.org_id), clients=2))
        await s.commit()
    a = await new_client(client, acct)
    await new_client(client, acct)
    over = await client.post(clients_url(acct), headers=acct.headers, json={"company_name": "Third"})
    assert over.status_code == 402 and over.json()["resource"] == "clients"
    # archiving frees a seat; restoring needs one
    await client.delete(clients_url(acct, a["id"]), headers=acct.headers)
    third = await new_client(client, acct, company_name="Third")
    assert (await client.post(clients_url(acct, a["id"], "restore"), headers=acct.headers)).status_code == 402
    quota = (await client.get(f"/api/v1/orgs/{acct.org_id}/quota", headers=acct.headers)).json()
    assert {q["resource"]: q["used"] for q in quota["quotas"]}["clients"] == 2
    assert third["company_name"] == "Third"


async def test_purge_removes_archived_clients_after_30_days(
    client: httpx.AsyncClient, team: Team, settings: Settings, database: Database, owner_database: Database
) -> None:
    h = team.owner.headers
    old = await new_client(client, team.owner)
    recent = await new_client(client, team.owner)
    live = await new_client(client, team.owner)
    for c in (old, recent, live):
        assert (await upload(client, team.owner, c["id"], png(color="blue"))).status_code == 201
    assert stored_files(settings, team.owner.org_id, old["id"])
    await client.delete(clients_url(team.owner, old["id"]), headers=h)
    await client.delete(clients_url(team.owner, recent["id"]), headers=h)
    async with owner_database.sessionmaker() as s:  # age the first archive past the window
        row = await s.get(ClientProfile, uuid.UUID(old["id"]))
        assert row is not None
        row.archived_at = utcnow() - timedelta(days=31)
        await s.commit()

    report = await clients_service.purge_archived_clients(database, storage_for(settings))
    assert report.errors == []
    assert report.clients >= 1 and report.objects >= 2  # original + thumbnail
    assert (await client.get(clients_url(team.owner, old["id"]), headers=h)).status_code == 404
    assert stored_files(settings, team.owner.org_id, old["id"]) == []
    assert await file_rows(owner_database, old["id"]) == 0
    for kept in (recent, live):
        assert (await client.get(clients_url(team.owner, kept["id"]), headers=h)).status_code == 200
        assert stored_files(settings, team.owner.org_id, kept["id"])
    async with owner_database.sessionmaker() as s:
        purged = await s.scalar(select(func.count()).select_from(AuditLog).where(
            AuditLog.action == "client.purged", AuditLog.target_id == old["id"]))
        assert purged == 1
        used = await s.scalar(select(func.sum(UploadedFile.size + UploadedFile.thumbnail_size))
                              .where(UploadedFile.org_id == uuid.UUID(team.owner.org_id)))
    quota = (await client.get(f"/api/v1/orgs/{team.owner.org_id}/quota", headers=h)).json()
    assert {q["resource"]: q["used"] for q in quota["quotas"]}["storage_bytes"] == used
    # running it again is a no-op
    again = await clients_service.purge_archived_clients(database, storage_for(settings))
    assert again.errors == []
