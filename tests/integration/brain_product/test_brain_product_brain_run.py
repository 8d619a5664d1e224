"""Brain runs through the API: manual run -> fatigue recommendation -> apply -> undo, the run
record and its routes, and a failed run.

These runs read the Meta sandbox's own series (the rows a sync of that account would
write) so they can use an account of 120 days without connecting it; the whole loop with
a real OAuth connection and a real sync in front is
tests/integration/sync/test_sync_brain_e2e.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from omnify.brain_runs import loader
from omnify.brain_runs import service as brain_service
from omnify.brain_runs.models import RunTrigger
from omnify.brain_runs.translate import AdDay, AdInfo, CampaignInfo, ClientData
from omnify.core.db import Database, bind_tenant
from omnify.events import service as events
from omnify.settings import Settings
from tests.chat_server import ChatServer, chat_answer, serve_chat
from tests.integration.brain_product.conftest import ACCOUNT, MetaEnv, Team, connect_meta, new_client, org_url


def _key(external: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"meta_ads/{external}"))


def sandbox_client_data(env: MetaEnv, client_id: str, since: date, until: date) -> ClientData:
    acc = env.sandbox.world.account(ACCOUNT)
    campaigns = {_key(c.id): CampaignInfo(_key(c.id), c.id, c.name, "meta_ads", ACCOUNT, c.daily_budget_minor,
                                          c.status) for c in acc.campaigns.values()}
    ads = {_key(a.id): AdInfo(_key(a.id), a.id, a.name, "meta_ads", ACCOUNT, _key(a.campaign_id), a.status)
           for a in acc.ads.values()}
    rows = acc.metric_rows(since, until)
    days = [AdDay(_key(r["entity_id"]), r["day"], acc.currency, r["spend_minor"], r["impressions"], r["clicks"],
                  r["conversions"], r["revenue_minor"]) for r in (rows.row(i) for i in range(len(rows)))]
    return ClientData(client_id=client_id, ads=ads, campaigns=campaigns, days=days)


@pytest.fixture
def synced_sandbox(monkeypatch: pytest.MonkeyPatch, meta_env: MetaEnv) -> None:
    async def load(session: Any, org_id: uuid.UUID, client_id: uuid.UUID, *, since: date, until: date,
                   orders_since: date) -> ClientData:
        return sandbox_client_data(meta_env, str(client_id), since, until)

    monkeypatch.setattr(loader, "load_client_data", load)


async def test_brain_run_to_fatigue_recommendation_apply_and_undo(
    api: httpx.AsyncClient, team: Team, meta_env: MetaEnv, database: Database, synced_sandbox: None
) -> None:
    meta_env.sandbox.reset()
    client_id = await new_client(api, team.owner)
    await connect_meta(api, team.owner, client_id, meta_env)
    run = await api.post(org_url(team.member, "clients", client_id, "brain-runs"), headers=team.member.headers)
    assert run.status_code == 201, run.text
    body = run.json()
    assert body["status"] == "succeeded" and body["trigger"] == "manual"
    assert 0 < body["duration_ms"] < 5_000 and body["inputs"]["currencies"] == ["USD"]
    assert body["outcome"]["created"] >= 1 and body["timings"]["brain"]["USD"]["fatigue"] >= 0

    recs = (await api.get(org_url(team.viewer, "recommendations"), headers=team.viewer.headers,
                          params={"client_id": client_id, "module": "fatigue", "status": "open"})).json()["items"]
    assert recs, "the sandbox plants fatigued creatives; the run must find at least one"
    rec = max(recs, key=lambda r: r["confidence"])
    assert rec["actionable"] and rec["action"]["type"] == "pause_ad" and rec["platform"] == "meta_ads"
    assert rec["expected_impact"]["currency"] == "USD" and rec["expected_impact"]["amount_minor"] > 0
    assert rec["evidence"]["series"] and rec["dedupe_key"].startswith("USD|fatigue:")
    external = rec["action"]["entity_id"]
    ad = meta_env.sandbox.world.find(external)[2]
    assert ad.creative.fatigue_onset is not None  # ground truth: this creative really fatigues
    async with database.sessionmaker() as s:
        await bind_tenant(s, uuid.UUID(team.owner.org_id))
        created = await events.list_for_org(s, uuid.UUID(team.owner.org_id), "recommendation.created", limit=500)
    assert any(e.payload["recommendation_id"] == rec["id"] for e in created)

    # A second run finds the same things: nothing new, nothing duplicated.
    again = (await api.post(org_url(team.member, "clients", client_id, "brain-runs"),
                            headers=team.member.headers)).json()
    assert again["outcome"]["created"] == 0 and again["outcome"]["updated"] == body["outcome"]["created"]

    key = {"Idempotency-Key": f"e2e-{uuid.uuid4()}"}
    first = await api.post(org_url(team.member, "recommendations", rec["id"], "apply"),
                           headers={**team.member.headers, **key})
    second = await api.post(org_url(team.member, "recommendations", rec["id"], "apply"),
                            headers={**team.member.headers, **key})
    assert first.status_code == second.status_code == 200, first.text
    assert first.json()["id"] == second.json()["id"]
    assert ad.status == "paused"
    assert len([e for e in meta_env.writes() if external in e.path]) == 1
    action_id = first.json()["id"]

    audit = (await api.get(org_url(team.owner, "audit"), headers=team.owner.headers,
                           params={"limit": 100})).json()["items"]
    assert [e for e in audit if e["action"] == "action.applied" and e["target_id"] == action_id]
    async with database.sessionmaker() as s:
        await bind_tenant(s, uuid.UUID(team.owner.org_id))
        applied = await events.list_for_org(s, uuid.UUID(team.owner.org_id), "action.applied")
    assert [e for e in applied if e.payload["action_id"] == action_id]

    undo = await api.post(org_url(team.member, "actions", action_id, "undo"), headers=team.member.headers)
    assert undo.status_code == 200 and undo.json()["status"] == "undone"
    assert ad.status == "active"

    history = (await api.get(org_url(team.viewer, "clients", client_id, "brain-runs"),
                             headers=team.viewer.headers)).json()["items"]
    assert [h["id"] for h in history] == [again["id"], body["id"]]


async def test_brain_run_routes(api: httpx.AsyncClient, team: Team, synced_sandbox: None) -> None:
    client_id = await new_client(api, team.owner)
    url = org_url(team.owner, "clients", client_id, "brain-runs")
    assert (await api.post(url)).status_code == 401
    assert (await api.get(url)).status_code == 401
    assert (await api.post(url, headers=team.viewer.headers)).status_code == 403
    assert (await api.get(url, headers=team.viewer.headers)).status_code == 200
    assert (await api.post(org_url(team.owner, "clients", "nope", "brain-runs"),
                           headers=team.owner.headers)).status_code == 422
    assert (await api.get(url, headers=team.owner.headers, params={"limit": 0})).status_code == 422
    assert (await api.post(url, headers=team.outsider.headers)).status_code == 404
    assert (await api.post(org_url(team.outsider, "clients", client_id, "brain-runs"),
                           headers=team.outsider.headers)).status_code == 404
    assert (await api.get(org_url(team.outsider, "clients", client_id, "brain-runs"),
                          headers=team.outsider.headers)).status_code == 404
    assert (await api.post(org_url(team.owner, "clients", str(uuid.uuid4()), "brain-runs"),
                           headers=team.owner.headers)).status_code == 404


async def test_failed_run_is_recorded(api: httpx.AsyncClient, team: Team, database: Database,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*args: Any, **kwargs: Any) -> ClientData:
        raise RuntimeError("metrics store unreachable")

    monkeypatch.setattr(loader, "load_client_data", broken)
    client_id = await new_client(api, team.owner)
    org_id = uuid.UUID(team.owner.org_id)
    async with database.sessionmaker() as s:
        await bind_tenant(s, org_id)
        with pytest.raises(RuntimeError):
            await brain_service.run_for_client(s, org_id, uuid.UUID(client_id), RunTrigger.SCHEDULE)
    url = org_url(team.owner, "clients", client_id, "brain-runs")
    [run] = (await api.get(url, headers=team.owner.headers)).json()["items"]
    assert run["status"] == "failed" and run["error"] == "RuntimeError: metrics store unreachable"
    assert run["trigger"] == "schedule" and run["duration_ms"] is not None and run["finished_at"] is not None


@pytest.fixture
def llm_server() -> Iterator[ChatServer]:
    yield from serve_chat()


async def test_llm_idea_assistant_is_used_when_configured_and_falls_back(
    api: httpx.AsyncClient, team: Team, database: Database, brain_settings: Settings, llm_server: ChatServer,
    synced_sandbox: None,
) -> None:
    client_id = await new_client(api, team.owner)
    org_id = uuid.UUID(team.owner.org_id)
    llm = brain_settings.model_copy(update={"ideas_llm_base_url": llm_server.url, "ideas_llm_model": "m-test",
                                            "ideas_llm_api_key": SecretStr("sk-llm-secret-123")})
    drafted = {"ideas": [{"title": "Try-on reels for the summer range", "rationale": "ROAS 4.1 on Meta video ads",
                          "platform": "meta_ads", "audience": "women 25-44", "creative_angle": "try-on",
                          "suggested_daily_budget": 80}]}
    llm_server.answers.append((200, chat_answer(json.dumps(drafted))))

    async def run(settings: Settings | None) -> list[dict[str, Any]]:
        async with database.sessionmaker() as s:
            await bind_tenant(s, org_id)
            done = await brain_service.run_for_client(s, org_id, uuid.UUID(client_id), RunTrigger.MANUAL,
                                                      settings=settings)
            assert done.status == "succeeded", done.error
        resp = await api.get(org_url(team.owner, "recommendations"), headers=team.owner.headers,
                             params={"client_id": client_id, "module": "ideas", "limit": 100})
        return list(resp.json()["items"])

    ideas = await run(llm)
    [sent] = llm_server.seen
    assert sent["path"] == "/v1/chat/completions" and sent["auth"] == "Bearer sk-llm-secret-123"
    assert sent["body"]["model"] == "m-test"
    assert json.loads(sent["body"]["messages"][1]["content"])["profile"]["company_name"]
    assert [i["title"] for i in ideas] == ["Try-on reels for the summer range"]
    assert ideas[0]["evidence"]["source"] == "llm:m-test"
    assert ideas[0]["evidence"]["evidence"] == {"provider": "openai-compatible", "model": "m-test"}

    # The endpoint fails: the run still succeeds, with the offline ideas and the error noted.
    llm_server.answers.append((503, b'{"error": "overloaded"}'))
    fallback = [i for i in await run(llm) if i["evidence"]["evidence"].get("provider_error")]
    assert fallback and all(i["evidence"]["source"] == "rules" for i in fallback)
    assert len(llm_server.seen) == 2
    # Not configured (the default): no request leaves the machine.
    await run(None)
    assert len(llm_server.seen) == 2


def test_sandbox_days_cover_the_lookback(meta_env: MetaEnv) -> None:
    end = meta_env.sandbox.world.account(ACCOUNT).metrics.end
    data = sandbox_client_data(meta_env, "c", end - timedelta(days=30), end)
    assert data.days and data.currencies() == ["USD"]
