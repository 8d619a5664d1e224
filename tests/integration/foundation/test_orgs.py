from __future__ import annotations

import httpx

from tests.factories import add_member, invitation_token, register


async def test_create_list_get_patch_org(client: httpx.AsyncClient) -> None:
    acct = await register(client, org="First")
    created = await client.post("/api/v1/orgs", headers=acct.headers, json={"name": "Second Brand"})
    assert created.status_code == 201
    assert created.json()["slug"].startswith("second-brand")

    page1 = await client.get("/api/v1/orgs?limit=1", headers=acct.headers)
    assert page1.status_code == 200
    assert len(page1.json()["items"]) == 1 and page1.json()["next_cursor"]
    page2 = await client.get(f"/api/v1/orgs?limit=1&cursor={page1.json()['next_cursor']}", headers=acct.headers)
    names = {page1.json()["items"][0]["name"], page2.json()["items"][0]["name"]}
    assert names == {"First", "Second Brand"}
    assert page2.json()["next_cursor"] is None

    only = await client.get("/api/v1/orgs?fields=name", headers=acct.headers)
    assert set(only.json()["items"][0]) == {"id", "name"}
    bad_fields = await client.get("/api/v1/orgs?fields=nope", headers=acct.headers)
    assert bad_fields.status_code == 400
    bad_cursor = await client.get("/api/v1/orgs?cursor=%%%", headers=acct.headers)
    assert bad_cursor.status_code == 400

    patched = await client.patch(f"/api/v1/orgs/{acct.org_id}", headers=acct.headers,
                                 json={"name": "Renamed", "settings": {"max_budget_change_pct": 20}})
    assert patched.status_code == 200
    assert patched.json()["name"] == "Renamed"
    invalid = await client.patch(f"/api/v1/orgs/{acct.org_id}", headers=acct.headers, json={"name": "   "})
    assert invalid.status_code == 422
    unknown = await client.patch(f"/api/v1/orgs/{acct.org_id}", headers=acct.headers, json={"plan": "enterprise"})
    assert unknown.status_code == 422


async def test_members_roles_and_last_owner(client: httpx.AsyncClient) -> None:
    owner = await register(client)
    admin = await add_member(client, owner, "admin")
    member = await add_member(client, owner, "member")

    listing = await client.get(f"/api/v1/orgs/{owner.org_id}/members", headers=member.headers)
    assert listing.status_code == 200
    assert {m["role"] for m in listing.json()["items"]} == {"owner", "admin", "member"}

    # admin cannot create owners; owner can
    r = await client.patch(f"/api/v1/orgs/{owner.org_id}/members/{member.user_id}", headers=admin.headers,
                           json={"role": "owner"})
    assert r.status_code == 403
    r = await client.patch(f"/api/v1/orgs/{owner.org_id}/members/{member.user_id}", headers=admin.headers,
                           json={"role": "viewer"})
    assert r.status_code == 200 and r.json()["role"] == "viewer"
    r = await client.patch(f"/api/v1/orgs/{owner.org_id}/members/{member.user_id}", headers=owner.headers,
                           json={"role": "superuser"})
    assert r.status_code == 422

    # the last owner can neither be demoted nor removed
    r = await client.patch(f"/api/v1/orgs/{owner.org_id}/members/{owner.user_id}", headers=owner.headers,
                           json={"role": "admin"})
    assert r.status_code == 409 and r.json()["type"].endswith("last-owner")
    r = await client.delete(f"/api/v1/orgs/{owner.org_id}/members/{owner.user_id}", headers=owner.headers)
    assert r.status_code == 409

    r = await client.delete(f"/api/v1/orgs/{owner.org_id}/members/{member.user_id}", headers=admin.headers)
    assert r.status_code == 204
    r = await client.get(f"/api/v1/orgs/{owner.org_id}", headers=member.headers)
    assert r.status_code == 404  # removed members lose access entirely


async def test_invitation_lifecycle(client: httpx.AsyncClient) -> None:
    owner = await register(client)
    invitee = await register(client)
    other = await register(client)
    r = await client.post(f"/api/v1/orgs/{owner.org_id}/invitations", headers=owner.headers,
                          json={"email": invitee.email, "role": "viewer"})
    assert r.status_code == 201
    inv = r.json()
    assert inv["status"] == "pending" and "token" not in inv
    dup = await client.post(f"/api/v1/orgs/{owner.org_id}/invitations", headers=owner.headers,
                            json={"email": invitee.email, "role": "viewer"})
    assert dup.status_code == 409
    bad = await client.post(f"/api/v1/orgs/{owner.org_id}/invitations", headers=owner.headers,
                            json={"email": "nope", "role": "viewer"})
    assert bad.status_code == 422

    token = await invitation_token(client, inv["id"])
    wrong_person = await client.post("/api/v1/invitations/accept", headers=other.headers, json={"token": token})
    assert wrong_person.status_code == 403
    forged = await client.post("/api/v1/invitations/accept", headers=invitee.headers,
                               json={"token": token[:-4] + "AAAA"})
    assert forged.status_code == 404
    ok = await client.post("/api/v1/invitations/accept", headers=invitee.headers, json={"token": token})
    assert ok.status_code == 200 and ok.json()["role"] == "viewer"
    again = await client.post("/api/v1/invitations/accept", headers=invitee.headers, json={"token": token})
    assert again.status_code == 409

    listing = await client.get(f"/api/v1/orgs/{owner.org_id}/invitations", headers=owner.headers)
    assert [i["status"] for i in listing.json()["items"]] == ["accepted"]

    # revoke a second invitation; it can no longer be accepted
    r = await client.post(f"/api/v1/orgs/{owner.org_id}/invitations", headers=owner.headers,
                          json={"email": other.email, "role": "member"})
    token2 = await invitation_token(client, r.json()["id"])
    assert (await client.delete(f"/api/v1/orgs/{owner.org_id}/invitations/{r.json()['id']}",
                                headers=owner.headers)).status_code == 204
    assert (await client.post("/api/v1/invitations/accept", headers=other.headers,
                              json={"token": token2})).status_code == 409


async def test_api_keys_shown_once_scoped_and_revocable(client: httpx.AsyncClient) -> None:
    owner = await register(client)
    r = await client.post(f"/api/v1/orgs/{owner.org_id}/api-keys", headers=owner.headers,
                          json={"name": "reporting", "scopes": ["read"]})
    assert r.status_code == 201
    created = r.json()
    key = created["key"]
    assert key.startswith(created["prefix"] + "_")
    listing = await client.get(f"/api/v1/orgs/{owner.org_id}/api-keys", headers=owner.headers)
    assert key not in listing.text and created["prefix"] in listing.text

    key_headers = {"Authorization": f"Bearer {key}"}
    assert (await client.get(f"/api/v1/orgs/{owner.org_id}", headers=key_headers)).status_code == 200
    # read scope cannot write; keys never manage members or keys
    assert (await client.patch(f"/api/v1/orgs/{owner.org_id}", headers=key_headers,
                               json={"name": "x"})).status_code == 403
    assert (await client.get(f"/api/v1/orgs/{owner.org_id}/api-keys", headers=key_headers)).status_code == 403
    listing = await client.get(f"/api/v1/orgs/{owner.org_id}/api-keys", headers=owner.headers)
    assert listing.json()["items"][0]["last_used_at"] is not None

    # a key of one org does not open another org
    other = await register(client)
    assert (await client.get(f"/api/v1/orgs/{other.org_id}", headers=key_headers)).status_code == 404

    bad = await client.post(f"/api/v1/orgs/{owner.org_id}/api-keys", headers=owner.headers,
                            json={"name": "x", "scopes": ["admin"]})
    assert bad.status_code == 422
    assert (await client.delete(f"/api/v1/orgs/{owner.org_id}/api-keys/{created['id']}",
                                headers=owner.headers)).status_code == 204
    assert (await client.get(f"/api/v1/orgs/{owner.org_id}", headers=key_headers)).status_code == 401


async def test_quota_exceeded_is_a_clear_problem(client: httpx.AsyncClient, owner_database) -> None:  # type: ignore[no-untyped-def]
    import uuid

    from omnify.orgs.models import OrgQuota

    owner = await register(client)
    async with owner_database.sessionmaker() as s:
        s.add(OrgQuota(org_id=uuid.UUID(owner.org_id), members=2))
        await s.commit()
    ok = await client.post(f"/api/v1/orgs/{owner.org_id}/invitations", headers=owner.headers,
                           json={"email": "a-quota@example.com", "role": "member"})
    assert ok.status_code == 201
    over = await client.post(f"/api/v1/orgs/{owner.org_id}/invitations", headers=owner.headers,
                             json={"email": "b-quota@example.com", "role": "member"})
    assert over.status_code == 402
    body = over.json()
    assert body["resource"] == "members" and body["limit"] == 2 and body["used"] == 2
    quota = await client.get(f"/api/v1/orgs/{owner.org_id}/quota", headers=owner.headers)
    assert {q["resource"]: q["limit"] for q in quota.json()["quotas"]}["members"] == 2
