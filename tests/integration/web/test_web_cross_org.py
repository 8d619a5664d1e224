"""Another organization's client dashboard, connections page and recommendations answer the
404 page, never a 403 (that would confirm the object exists) nor a 500, to a signed-in user
of a different organization: through the other organization's URL (not a member) and through
the user's own organization's URL carrying the other organization's ids."""

from __future__ import annotations

import uuid

import httpx

from omnify.core.db import Database, bind_tenant
from omnify.recommendations import service as rec_service
from tests.factories import Account, register
from tests.integration.web.web_support import WebSession, sign_in, sign_up

API = "/api/v1"


async def _stranger_with_a_recommendation(client: httpx.AsyncClient, db: Database) -> tuple[Account, str, str]:
    """An organization with a client and an open, applicable recommendation, as a brain run stores it."""
    stranger = await register(client)
    resp = await client.post(f"{API}/orgs/{stranger.org_id}/clients", headers=stranger.headers,
                             json={"company_name": f"Hidden {uuid.uuid4().hex[:6]}", "currency": "USD"})
    assert resp.status_code == 201, resp.text
    client_id = str(resp.json()["id"])
    ad_id = f"ad-{uuid.uuid4().hex[:8]}"
    finding = rec_service.Finding(
        module="fatigue", kind="pause_ad", dedupe_key=f"USD|fatigue:{ad_id}", title=f"Creative fatigue on {ad_id}",
        target={"level": "ad", "id": str(uuid.uuid4()), "name": ad_id, "platform": "meta_ads", "external_id": ad_id},
        platform="meta_ads", confidence=0.8, impact_minor=12_345, currency="USD",
        action={"type": "pause_ad", "platform": "meta_ads", "account_id": "1", "entity_id": ad_id, "name": ad_id,
                "daily_spend_minor": 2_000},
        evidence={"ctr_drop": 0.4})
    async with db.sessionmaker() as session:
        await bind_tenant(session, uuid.UUID(stranger.org_id))
        await rec_service.merge_findings(session, uuid.UUID(stranger.org_id), uuid.UUID(client_id), [finding], None,
                                         expire_missing=False)
        await session.commit()
    listed = await client.get(f"{API}/orgs/{stranger.org_id}/recommendations", headers=stranger.headers,
                              params={"client_id": client_id})
    assert listed.status_code == 200, listed.text
    [rec] = listed.json()["items"]
    return stranger, client_id, str(rec["id"])


def _is_not_found_page(resp: httpx.Response) -> bool:
    return (resp.status_code == 404 and resp.headers["content-type"].startswith("text/html")
            and "Page not found" in resp.text)


async def test_other_orgs_client_pages_are_a_404_page(web: WebSession, other_web: WebSession,
                                                      client: httpx.AsyncClient, owner_database: Database) -> None:
    await sign_up(web)
    stranger, client_id, rec_id = await _stranger_with_a_recommendation(client, owner_database)
    # The stranger sees these pages (so the 404s below are about the caller, not a broken page).
    assert (await sign_in(other_web, stranger.email, stranger.password)).status_code == 303
    for suffix in (f"/clients/{client_id}/dashboard", f"/clients/{client_id}/connections",
                   f"/recommendations?client_id={client_id}"):
        own = await other_web.get(f"/orgs/{stranger.org_id}{suffix}")
        assert own.status_code == 200, (suffix, own.status_code, own.text[:300])
    assert rec_id in own.text and f"/recommendations/{rec_id}/apply" in own.text

    for org in (stranger.org_id, web.org_id):  # their URL, and ours with their client's id
        for suffix in (f"/clients/{client_id}", f"/clients/{client_id}/dashboard",
                       f"/clients/{client_id}/dashboard?days=7", f"/clients/{client_id}/connections",
                       f"/clients/{client_id}/connections/meta_ads/connected"):
            resp = await web.get(f"/orgs/{org}{suffix}")
            assert _is_not_found_page(resp), (org == web.org_id, suffix, resp.status_code, resp.text[:300])
    for suffix in ("/recommendations", f"/recommendations?client_id={client_id}", "/actions"):
        resp = await web.get(f"/orgs/{stranger.org_id}{suffix}")
        assert _is_not_found_page(resp), (suffix, resp.status_code, resp.text[:300])

    # Writes on their recommendation, from our organization's URL and from theirs: 404 pages, and nothing changed.
    await web.get(f"/orgs/{web.org_id}/recommendations")
    for org in (web.org_id, stranger.org_id):
        for action in ("apply", "dismiss"):
            resp = await web.post(f"/orgs/{org}/recommendations/{rec_id}/{action}")
            assert _is_not_found_page(resp), (org == web.org_id, action, resp.status_code, resp.text[:300])
    ours = await web.get(f"/orgs/{web.org_id}/recommendations?client_id={client_id}")
    assert ours.status_code == 200 and rec_id not in ours.text
    after = await client.get(f"{API}/orgs/{stranger.org_id}/recommendations/{rec_id}", headers=stranger.headers)
    assert after.status_code == 200 and after.json()["status"] == "open", after.text
