"""Onboarding progress end to end: every step moved by the real API, completion recorded once."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import func, select

from omnify.audit.models import AuditLog
from omnify.core.db import Database, utcnow
from omnify.events.models import DomainEvent
from tests.integration.onboarding.onboarding_support import Team, clients_url, new_client, pdf, png, upload


async def _progress(client: httpx.AsyncClient, team: Team, client_id: str) -> dict[str, Any]:
    resp = await client.get(clients_url(team.owner, client_id, "onboarding"), headers=team.viewer.headers)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def _count(db: Database, org_id: str, *, action: str | None = None, event: str | None = None) -> int:
    async with db.sessionmaker() as s:
        if action:
            stmt = select(func.count()).select_from(AuditLog).where(
                AuditLog.org_id == uuid.UUID(org_id), AuditLog.action == action)
        else:
            stmt = select(func.count()).select_from(DomainEvent).where(
                DomainEvent.org_id == uuid.UUID(org_id), DomainEvent.type == event)
        return int(await s.scalar(stmt) or 0)


async def test_onboarding_moves_through_every_step(
    client: httpx.AsyncClient, team: Team, owner_database: Database
) -> None:
    h = team.owner.headers
    c = await new_client(client, team.owner, company_name="Trailhead Co")
    cid = c["id"]
    p = await _progress(client, team, cid)
    assert p["status"] == "not_started" and p["progress"] == 0.0 and p["completed_at"] is None
    assert p["pending_steps"] == ["company_info", "logo", "brand_assets", "connect_platform", "first_campaign_idea"]
    nxt = p["next_step"]
    assert isinstance(nxt, dict) and nxt["key"] == "company_info" and nxt["route"]["method"] == "PATCH"
    assert "industry" in nxt["advice"] and nxt["route"]["path"] == f"/api/v1/orgs/{team.owner.org_id}/clients/{cid}"

    # 1. company info
    await client.patch(clients_url(team.owner, cid), headers=h, json={
        "industry": "Outdoor", "website": "https://trailhead.example.com", "contact_name": "Jo",
        "contact_email": "jo@trailhead.example.com", "timezone": "America/Denver", "currency": "USD"})
    p = await _progress(client, team, cid)
    assert p["status"] == "in_progress" and p["completed_steps"] == ["company_info"] and p["progress"] == 0.2

    # choose platforms: one step each replaces the generic one
    bad = await client.put(clients_url(team.owner, cid, "onboarding"), headers=h, json={"platforms": []})
    assert bad.status_code == 422
    chosen = await client.put(clients_url(team.owner, cid, "onboarding"), headers=h,
                              json={"platforms": ["shopify", "meta_ads"]})
    assert chosen.status_code == 200, chosen.text
    p = chosen.json()
    assert [s["key"] for s in p["steps"]] == ["company_info", "logo", "brand_assets", "connect_shopify",
                                              "connect_meta_ads", "first_campaign_idea"]
    assert p["platforms_chosen"] is True and round(p["progress"], 4) == round(1 / 6, 4)

    # 2. logo
    assert (await upload(client, team.owner, cid, png(), category="logo")).status_code == 201
    # 3. brand assets: profile part, then a file
    await client.patch(clients_url(team.owner, cid), headers=h,
                       json={"brand": {"colors": ["#225533"], "tone_of_voice": "Friendly"}})
    p = await _progress(client, team, cid)
    brand = next(s for s in p["steps"] if s["key"] == "brand_assets")
    assert brand["done"] is False and brand["route"]["method"] == "POST" and "brand guide" in brand["advice"]
    assert (await upload(client, team.owner, cid, pdf("guide"), category="brand_guide")).status_code == 201
    p = await _progress(client, team, cid)
    assert p["completed_steps"] == ["company_info", "logo", "brand_assets"]

    # 4. platforms: an expired credential does not count
    expired = await client.put(clients_url(team.owner, cid, "credentials", "shopify"), headers=h, json={
        "secrets": {"access_token": "shpat_" + "a" * 32}, "account_id": "trailhead.myshopify.com",
        "expires_at": (utcnow() - timedelta(minutes=1)).isoformat()})
    assert expired.status_code == 201 and expired.json()["status"] == "expired"
    assert "connect_shopify" in (await _progress(client, team, cid))["pending_steps"]
    await client.put(clients_url(team.owner, cid, "credentials", "shopify"), headers=h, json={
        "secrets": {"access_token": "shpat_" + "b" * 32}, "account_id": "trailhead.myshopify.com"})
    await client.put(clients_url(team.owner, cid, "credentials", "meta_ads"), headers=h, json={
        "secrets": {"access_token": "EAAB" + "c" * 40}, "account_id": "act_42"})
    p = await _progress(client, team, cid)
    assert p["pending_steps"] == ["first_campaign_idea"] and p["status"] == "in_progress"
    assert await _count(owner_database, team.owner.org_id, event="client.onboarding_completed") == 0

    # 5. the first idea completes onboarding
    idea = await client.post(clients_url(team.owner, cid, "campaign-ideas"), headers=h, json={"title": "Kickoff"})
    assert idea.status_code == 201
    p = await _progress(client, team, cid)
    assert p["status"] == "completed" and p["progress"] == 1.0 and p["next_step"] is None
    assert p["pending_steps"] == [] and p["completed_at"]
    assert await _count(owner_database, team.owner.org_id, action="client.onboarding_completed") == 1
    assert await _count(owner_database, team.owner.org_id, event="client.onboarding_completed") == 1
    async with owner_database.sessionmaker() as s:
        event = await s.scalar(select(DomainEvent).where(DomainEvent.org_id == uuid.UUID(team.owner.org_id),
                                                         DomainEvent.type == "client.onboarding_completed"))
        assert event is not None
        assert event.payload["client_id"] == cid and event.payload["company_name"] == "Trailhead Co"
        assert event.payload["platforms"] == ["shopify", "meta_ads"]

    # completion is a milestone: a later regression shows in the steps, not in the status,
    # and reaching "all done" again does not announce it twice
    await client.delete(clients_url(team.owner, cid, "credentials", "meta_ads"), headers=h)
    p = await _progress(client, team, cid)
    assert p["status"] == "completed" and p["pending_steps"] == ["connect_meta_ads"]
    await client.put(clients_url(team.owner, cid, "credentials", "meta_ads"), headers=h, json={
        "secrets": {"access_token": "EAAB" + "d" * 40}, "account_id": "act_42"})
    assert await _count(owner_database, team.owner.org_id, event="client.onboarding_completed") == 1


async def test_connected_platforms_count_when_none_were_chosen(client: httpx.AsyncClient, team: Team) -> None:
    c = await new_client(client, team.owner)
    await client.put(clients_url(team.owner, c["id"], "credentials", "tiktok_ads"), headers=team.owner.headers,
                     json={"secrets": {"access_token": "t" * 30}, "account_id": "1234567890"})
    p = await _progress(client, team, c["id"])
    assert p["platforms_chosen"] is False and p["platforms"] == ["tiktok_ads"]
    assert "connect_tiktok_ads" in p["completed_steps"]
