"""LinkedIn Ads end to end on its sandbox: connect through Omnify's OAuth routes -> a real sync
fills the normalized tables (LinkedIn campaigns as campaigns, creatives as ads) -> analytics
report exactly the platform's numbers -> the queued brain run reads them -> a recommendation
on a LinkedIn campaign is applied through the connector, audited, and undone."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from omnify.core.db import Database, bind_tenant, utcnow
from omnify.recommendations import service as rec_service
from omnify.settings import Settings
from omnify.sync.models import SyncAd, SyncCampaign
from tests.conftest import DatabaseUrls
from tests.integration.connections.conn_support import (
    HISTORY_DAYS,
    LINKEDIN_MID,
    Enqueued,
    Env,
    Sandboxes,
    Team,
    open_env,
)
from tests.integration.sync.sync_support import connected, run
from tests.integration.sync.test_sync_brain_e2e import org_url, run_queued_brain


@pytest.fixture(scope="module")
async def env(boxes: Sandboxes, settings: Settings, db_urls: DatabaseUrls, database: Database,
              owner_database: Database) -> AsyncIterator[Env]:
    """The app on the sandboxes, backfilling their whole history (the brain needs it)."""
    async with open_env(boxes, settings, db_urls, database, owner_database,
                        sync_backfill_days=HISTORY_DAYS) as opened:
        yield opened


async def synced(env: Env, team: Team, model: Any) -> dict[str, Any]:
    org = uuid.UUID(team.owner.org_id)
    async with env.db.sessionmaker() as session:
        await bind_tenant(session, org)
        rows = (await session.scalars(select(model).where(model.org_id == org))).all()
        return {r.external_id: r for r in rows}


async def audit_of(env: Env, team: Team, action_id: str) -> list[dict[str, Any]]:
    items = (await env.api.get(org_url(team, "audit"), headers=team.owner.headers,
                               params={"limit": 200})).json()["items"]
    return [e for e in items if e["target_id"] == action_id]


def linkedin_writes(env: Env, entity: str) -> list[int]:
    return [e.status for e in env.boxes.linkedin.journal.entries() if e.method == "POST" and entity in e.path]


async def test_linkedin_sync_feeds_analytics_and_the_brain_and_actions_apply_audit_undo(
        env: Env, team: Team, enqueued: Enqueued) -> None:
    world = env.boxes.linkedin.world.account(LINKEDIN_MID)

    # 1. Connect through Omnify's routes (OAuth with LinkedIn's consent screen) and backfill.
    conn_id = await connected(env, team, "linkedin_ads", LINKEDIN_MID)
    first = await run(env, team, conn_id)
    assert first.status == "succeeded" and first.mode == "backfill", first
    campaigns = await synced(env, team, SyncCampaign)
    assert {k: c.daily_budget_minor for k, c in campaigns.items()} == {
        k: c.daily_budget_minor for k, c in world.campaigns.items()}
    assert {c.objective for c in campaigns.values()} <= {"WEBSITE_CONVERSIONS", "LEAD_GENERATION"}
    assert sorted(await synced(env, team, SyncAd)) == sorted(world.ads)

    # 2. Analytics read the rollups the sync maintained: exactly LinkedIn's numbers.
    until = utcnow().date() - timedelta(days=1)
    since = until - timedelta(days=29)
    resp = await env.api.get(org_url(team, "clients", team.client_id, "analytics"), headers=team.viewer.headers,
                             params={"since": since.isoformat(), "until": until.isoformat(), "group_by": "platform",
                                     "granularity": "total", "compare": "false"})
    assert resp.status_code == 200, resp.text
    [usd] = resp.json()["currencies"]
    truth = world.metric_rows(since, until)
    assert usd["totals"]["spend_minor"] == int(truth.spend_minor.sum()) > 0
    assert usd["totals"]["revenue_minor"] == int(truth.revenue_minor.sum())
    assert usd["totals"]["impressions"] == int(truth.impressions.sum())
    assert {r["platform"] for r in usd["rows"]} == {"linkedin_ads"}

    # 3. The sync queued a brain run; over LinkedIn's rows it finds what the sandbox planted.
    [brain] = await run_queued_brain(env, enqueued, team)
    assert brain["status"] == "succeeded" and brain["created"] >= 1, brain
    recs = (await env.api.get(org_url(team, "recommendations"), headers=team.viewer.headers,
                              params={"client_id": team.client_id, "limit": 200})).json()["items"]
    fatigue = [r for r in recs if r["module"] == "fatigue" and r["platform"] == "linkedin_ads"]
    assert fatigue, [(r["module"], r["title"]) for r in recs]
    rec = max(fatigue, key=lambda r: r["confidence"])
    creative = rec["action"]["entity_id"]
    assert rec["action"]["account_id"] == LINKEDIN_MID and world.ads[creative].creative.fatigue_onset is not None

    # 4. Apply the brain's pause of a LinkedIn creative, then undo it.
    key = {"Idempotency-Key": f"li-{uuid.uuid4()}"}
    applied = await env.api.post(org_url(team, "recommendations", rec["id"], "apply"), headers={**team.admin.headers,
                                                                                               **key})
    assert applied.status_code == 200 and applied.json()["status"] == "applied", applied.text
    assert world.ads[creative].status == "paused" and linkedin_writes(env, creative) == [204]
    undone = await env.api.post(org_url(team, "actions", applied.json()["id"], "undo"), headers=team.admin.headers)
    assert undone.status_code == 200 and undone.json()["status"] == "undone", undone.text
    assert world.ads[creative].status == "active" and linkedin_writes(env, creative) == [204, 204]

    # 5. A budget change on a LinkedIn campaign (the allocation module's action shape).
    camp_id, camp = next(iter(world.campaigns.items()))
    before = camp.daily_budget_minor
    target = before * 11 // 10
    finding = rec_service.Finding(
        module="allocation", kind="change_budgets", dedupe_key=f"USD|allocation:li-{uuid.uuid4().hex[:6]}",
        title="Reallocate daily budgets across 1 campaigns", target={"level": "client", "id": "budgets"},
        platform="linkedin_ads", confidence=0.9, impact_minor=10_000, currency="USD",
        action={"type": "set_budgets", "currency": "USD", "budgets": [
            {"platform": "linkedin_ads", "account_id": LINKEDIN_MID, "level": "campaign", "entity_id": camp_id,
             "name": camp.name, "campaign_id": str(campaigns[camp_id].id), "current_minor": before,
             "recommended_minor": target}]},
        evidence={"daily_revenue_change": 12.5})
    async with env.db.sessionmaker() as session:
        await bind_tenant(session, uuid.UUID(team.owner.org_id))
        await rec_service.merge_findings(session, uuid.UUID(team.owner.org_id), uuid.UUID(team.client_id),
                                         [finding], None, expire_missing=False)
        await session.commit()
    recs = (await env.api.get(org_url(team, "recommendations"), headers=team.viewer.headers,
                              params={"client_id": team.client_id, "module": "allocation"})).json()["items"]
    [budget_rec] = [r for r in recs if r["dedupe_key"] == finding.dedupe_key]
    applied = await env.api.post(org_url(team, "recommendations", budget_rec["id"], "apply"),
                                 headers={**team.admin.headers, "Idempotency-Key": f"li-{uuid.uuid4()}"})
    assert applied.status_code == 200, applied.text
    action = applied.json()
    assert action["status"] == "applied" and camp.daily_budget_minor == target
    assert action["changes"][0]["before"]["daily_budget_minor"] == before
    assert action["changes"][0]["after"]["daily_budget_minor"] == target
    assert [e["action"] for e in await audit_of(env, team, action["id"])] == ["action.applied"]

    # The next (incremental) sync reads the new budget back.
    again = await run(env, team, conn_id)
    assert again.status == "succeeded" and again.mode == "incremental"
    assert (await synced(env, team, SyncCampaign))[camp_id].daily_budget_minor == target

    undone = await env.api.post(org_url(team, "actions", action["id"], "undo"), headers=team.admin.headers)
    assert undone.status_code == 200 and undone.json()["status"] == "undone", undone.text
    assert camp.daily_budget_minor == before and linkedin_writes(env, f"adCampaigns/{camp_id}") == [204, 204]
    assert "action.undone" in [e["action"] for e in await audit_of(env, team, action["id"])]
