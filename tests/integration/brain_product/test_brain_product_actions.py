"""One-click actions against the Meta sandbox: apply, idempotency, guardrails, approval, undo."""

from __future__ import annotations

import dataclasses
import uuid

import httpx
from prometheus_client import REGISTRY

from omnify.core.db import Database, bind_tenant
from omnify.events import service as events
from tests.integration.brain_product.conftest import (
    MetaEnv,
    Team,
    budget_finding,
    connect_meta,
    new_client,
    org_url,
    pause_finding,
    rec_id_by_key,
    sandbox_ads,
    sandbox_campaigns,
    seed,
)


def _applied_count(module: str) -> float:
    return REGISTRY.get_sample_value("omnify_actions_applied_total", {"module": module}) or 0.0


async def _setup_pause(api: httpx.AsyncClient, team: Team, meta_env: MetaEnv, database: Database,
                       ad_index: int) -> tuple[str, str, object]:
    client_id = await new_client(api, team.owner)
    await connect_meta(api, team.owner, client_id, meta_env)
    ad = sandbox_ads(meta_env)[ad_index]
    finding = pause_finding(ad, key=f"USD|fatigue:{ad.id}:{uuid.uuid4().hex[:6]}")
    await seed(database, team.owner.org_id, client_id, [finding])
    return client_id, await rec_id_by_key(api, team.owner, client_id, finding.dedupe_key), ad


async def test_apply_pauses_the_ad_audits_emits_and_undo_restores(
    api: httpx.AsyncClient, team: Team, meta_env: MetaEnv, database: Database
) -> None:
    _client_id, rec_id, ad = await _setup_pause(api, team, meta_env, database, 0)
    ad.status = "active"
    before_count = _applied_count("fatigue")
    writes_before = len(meta_env.writes())

    resp = await api.post(org_url(team.member, "recommendations", rec_id, "apply"), headers=team.member.headers,
                          json={"note": "CTR keeps falling"})
    assert resp.status_code == 200, resp.text
    action = resp.json()
    assert action["status"] == "applied" and action["undoable"] is True
    assert action["changes"][0]["before"] == {"status": "active"}
    assert action["changes"][0]["after"] == {"status": "paused"}
    assert meta_env.sandbox.world.find(ad.id)[2].status == "paused"  # the platform shows it paused
    assert len(meta_env.writes()) == writes_before + 1
    assert _applied_count("fatigue") == before_count + 1

    rec = (await api.get(org_url(team.member, "recommendations", rec_id), headers=team.member.headers)).json()
    assert rec["status"] == "applied"

    audit = (await api.get(org_url(team.owner, "audit"), headers=team.owner.headers,
                           params={"limit": 50})).json()["items"]
    applied = [e for e in audit if e["action"] == "action.applied" and e["target_id"] == action["id"]]
    assert applied and applied[0]["changes"]["changes"][0]["after"] == {"status": "paused"}
    assert any(e["action"] == "credential.decrypted" for e in audit)
    async with database.sessionmaker() as s:
        await bind_tenant(s, uuid.UUID(team.owner.org_id))
        emitted = await events.list_for_org(s, uuid.UUID(team.owner.org_id), "action.applied")
    assert any(e.payload["action_id"] == action["id"] and e.payload["platform"] == "meta_ads" for e in emitted)

    undo = await api.post(org_url(team.member, "actions", action["id"], "undo"), headers=team.member.headers)
    assert undo.status_code == 200, undo.text
    assert undo.json()["status"] == "undone" and undo.json()["undoable"] is False
    assert meta_env.sandbox.world.find(ad.id)[2].status == "active"
    rec = (await api.get(org_url(team.member, "recommendations", rec_id), headers=team.member.headers)).json()
    assert rec["status"] == "open"  # the finding still stands; it can be applied again
    again = await api.post(org_url(team.member, "actions", action["id"], "undo"), headers=team.member.headers)
    assert again.status_code == 409 and again.json()["type"].endswith("action-state-conflict")


async def test_idempotency_key_acts_once(
    api: httpx.AsyncClient, team: Team, meta_env: MetaEnv, database: Database
) -> None:
    _client_id, rec_id, ad = await _setup_pause(api, team, meta_env, database, 1)
    ad.status = "active"
    writes_before = len(meta_env.writes())
    headers = {**team.owner.headers, "Idempotency-Key": f"apply-{uuid.uuid4()}"}
    first = await api.post(org_url(team.owner, "recommendations", rec_id, "apply"), headers=headers)
    second = await api.post(org_url(team.owner, "recommendations", rec_id, "apply"), headers=headers)
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert first.json() == second.json()
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert len(meta_env.writes()) == writes_before + 1  # the platform was called once
    listed = (await api.get(org_url(team.owner, "actions"), headers=team.owner.headers,
                            params={"recommendation_id": rec_id})).json()["items"]
    assert len(listed) == 1
    # The same key with another request is refused; a new key on an applied recommendation is a 409.
    reused = await api.post(org_url(team.owner, "recommendations", rec_id, "apply"), headers=headers,
                            json={"note": "different"})
    assert reused.status_code == 422 and reused.json()["type"].endswith("idempotency-key-reused")
    fresh = await api.post(org_url(team.owner, "recommendations", rec_id, "apply"),
                           headers={**team.owner.headers, "Idempotency-Key": "another-key"})
    assert fresh.status_code == 409 and fresh.json()["type"].endswith("recommendation-not-open")
    assert len(meta_env.writes()) == writes_before + 1
    bad = await api.post(org_url(team.owner, "recommendations", rec_id, "apply"),
                         headers={**team.owner.headers, "Idempotency-Key": "bad key with spaces"})
    assert bad.status_code == 400 and bad.json()["type"].endswith("invalid-idempotency-key")


async def test_guardrails_roles_threshold_approval_and_reject(
    api: httpx.AsyncClient, team: Team, meta_env: MetaEnv, database: Database
) -> None:
    client_id, rec_id, ad = await _setup_pause(api, team, meta_env, database, 2)
    ad.status = "active"
    url = org_url(team.member, "recommendations", rec_id, "apply")
    # Viewer: the permission itself is missing.
    viewer = await api.post(url, headers=team.viewer.headers)
    assert viewer.status_code == 403 and viewer.json()["type"].endswith("insufficient-role")
    # Guardrails: only admins apply, and anything moving more than 10.00/day needs approval.
    patch = await api.patch(org_url(team.owner), headers=team.owner.headers, json={"settings": {"guardrails": {
        "apply_roles": ["owner", "admin"], "approval_threshold_minor": 1_000}}})
    assert patch.status_code == 200, patch.text
    member = await api.post(url, headers=team.member.headers)
    assert member.status_code == 403 and member.json()["type"].endswith("guardrail-role")
    await api.patch(org_url(team.owner), headers=team.owner.headers, json={"settings": {"guardrails": {
        "approval_threshold_minor": 1_000}}})
    writes_before = len(meta_env.writes())
    pending = await api.post(url, headers=team.member.headers)
    assert pending.status_code == 202, pending.text
    action = pending.json()
    assert action["status"] == "pending_approval" and action["requires_approval"] is True
    assert len(meta_env.writes()) == writes_before and meta_env.sandbox.world.find(ad.id)[2].status == "active"
    dup = await api.post(url, headers=team.member.headers)
    assert dup.status_code == 409 and dup.json()["type"].endswith("action-state-conflict")
    # A member cannot approve; an admin can, and the action is applied then.
    refused = await api.post(org_url(team.member, "actions", action["id"], "approve"), headers=team.member.headers)
    assert refused.status_code == 403
    approved = await api.post(org_url(team.admin, "actions", action["id"], "approve"), headers=team.admin.headers)
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "applied" and approved.json()["approved_by"] == team.admin.email
    assert meta_env.sandbox.world.find(ad.id)[2].status == "paused"
    # Reject path on a second recommendation.
    other_ad = sandbox_ads(meta_env)[3]
    finding = pause_finding(other_ad, key=f"USD|fatigue:{other_ad.id}:rej")
    await seed(database, team.owner.org_id, client_id, [finding])
    rec2 = await rec_id_by_key(api, team.owner, client_id, finding.dedupe_key)
    pending2 = (await api.post(org_url(team.member, "recommendations", rec2, "apply"),
                               headers=team.member.headers)).json()
    bad = await api.post(org_url(team.admin, "actions", pending2["id"], "reject"), headers=team.admin.headers,
                         json={"reason": ""})
    assert bad.status_code == 422
    rejected = await api.post(org_url(team.admin, "actions", pending2["id"], "reject"), headers=team.admin.headers,
                              json={"reason": "Seasonal creative, keep it"})
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    # An owner/admin applying directly over the threshold is the approval step itself.
    direct = await api.post(org_url(team.admin, "recommendations", rec2, "apply"), headers=team.admin.headers)
    assert direct.status_code == 200, direct.text
    assert direct.json()["approved_by"] == team.admin.email
    # Invalid guardrails fail closed.
    await api.patch(org_url(team.owner), headers=team.owner.headers,
                    json={"settings": {"guardrails": {"max_budget_change_per_day": "lots"}}})
    third = pause_finding(sandbox_ads(meta_env)[4], key="USD|fatigue:closed")
    await seed(database, team.owner.org_id, client_id, [third])
    rec3 = await rec_id_by_key(api, team.owner, client_id, third.dedupe_key)
    closed = await api.post(org_url(team.owner, "recommendations", rec3, "apply"), headers=team.owner.headers)
    assert closed.status_code == 409 and closed.json()["type"].endswith("guardrails-invalid")


async def test_budget_change_cap_and_apply(
    api: httpx.AsyncClient, team: Team, meta_env: MetaEnv, database: Database
) -> None:
    client_id = await new_client(api, team.owner)
    await connect_meta(api, team.owner, client_id, meta_env)
    c1, c2 = sandbox_campaigns(meta_env)
    b1, b2 = c1.daily_budget_minor, c2.daily_budget_minor
    too_much = budget_finding([(c1, b1, b1 * 2)], key="USD|allocation:big")
    ok = budget_finding([(c1, b1, int(b1 * 1.1)), (c2, b2, int(b2 * 0.9))], key="USD|allocation:ok")
    await seed(database, team.owner.org_id, client_id, [too_much, ok])
    big = await rec_id_by_key(api, team.owner, client_id, too_much.dedupe_key)
    resp = await api.post(org_url(team.owner, "recommendations", big, "apply"), headers=team.owner.headers)
    assert resp.status_code == 409 and resp.json()["type"].endswith("guardrail-budget-change")
    assert resp.json()["offending"][0]["entity_id"] == c1.id
    assert c1.daily_budget_minor == b1

    small = await rec_id_by_key(api, team.owner, client_id, ok.dedupe_key)
    applied = await api.post(org_url(team.owner, "recommendations", small, "apply"), headers=team.owner.headers)
    assert applied.status_code == 200, applied.text
    body = applied.json()
    assert body["money_per_day_minor"] == abs(int(b1 * 1.1) - b1) + abs(int(b2 * 0.9) - b2)
    assert c1.daily_budget_minor == int(b1 * 1.1) and c2.daily_budget_minor == int(b2 * 0.9)
    assert [c["before"] for c in body["changes"]] == [{"daily_budget_minor": b1}, {"daily_budget_minor": b2}]

    # The cap is per day from the day's starting level: another +10% on c1 would be +21%.
    more = budget_finding([(c1, int(b1 * 1.1), int(b1 * 1.21))], key="USD|allocation:more")
    await seed(database, team.owner.org_id, client_id, [more])
    more_id = await rec_id_by_key(api, team.owner, client_id, more.dedupe_key)
    capped = await api.post(org_url(team.owner, "recommendations", more_id, "apply"), headers=team.owner.headers)
    assert capped.status_code == 409 and capped.json()["offending"][0]["from_minor"] == b1

    undo = await api.post(org_url(team.owner, "actions", body["id"], "undo"), headers=team.owner.headers)
    assert undo.status_code == 200, undo.text
    assert c1.daily_budget_minor == b1 and c2.daily_budget_minor == b2


async def test_platform_failure_reverts_partial_changes(
    api: httpx.AsyncClient, team: Team, meta_env: MetaEnv, database: Database
) -> None:
    client_id = await new_client(api, team.owner)
    await connect_meta(api, team.owner, client_id, meta_env)
    c1, _ = sandbox_campaigns(meta_env)
    b1 = c1.daily_budget_minor
    finding = budget_finding([(c1, b1, int(b1 * 1.05))], key="USD|allocation:fail")
    # Second item names an entity that does not exist on the platform: Meta refuses it.
    assert finding.action is not None
    finding.action["budgets"].append({"platform": "meta_ads", "account_id": "1000003", "level": "campaign",
                                      "entity_id": "999999999999", "name": "ghost", "campaign_id": "x",
                                      "current_minor": 1000, "recommended_minor": 1050})
    await seed(database, team.owner.org_id, client_id, [finding])
    rec_id = await rec_id_by_key(api, team.owner, client_id, finding.dedupe_key)
    resp = await api.post(org_url(team.owner, "recommendations", rec_id, "apply"),
                          headers={**team.owner.headers, "Idempotency-Key": "fail-once"})
    assert resp.status_code == 409, resp.text  # the platform refused: a conflict, not a 5xx
    assert resp.json()["type"].endswith("platform-refused")
    assert resp.json()["platform"] == "meta_ads" and resp.json()["upstream_status"] == 400
    assert c1.daily_budget_minor == b1  # the first change was reverted
    actions = (await api.get(org_url(team.owner, "actions"), headers=team.owner.headers,
                             params={"recommendation_id": rec_id})).json()["items"]
    assert actions[0]["status"] == "failed" and actions[0]["changes"][0]["reverted"] is True
    rec = (await api.get(org_url(team.owner, "recommendations", rec_id), headers=team.owner.headers)).json()
    assert rec["status"] == "open"


async def test_not_connected_and_advice_only(api: httpx.AsyncClient, team: Team, meta_env: MetaEnv,
                                             database: Database) -> None:
    client_id = await new_client(api, team.owner)  # no credential
    finding = pause_finding(sandbox_ads(meta_env)[5], key="USD|fatigue:nocred")
    advice = dataclasses.replace(finding, module="anomaly", kind="investigate", action=None,
                                 dedupe_key="USD|anomaly:x")
    await seed(database, team.owner.org_id, client_id, [finding, advice])
    rec_id = await rec_id_by_key(api, team.owner, client_id, finding.dedupe_key)
    resp = await api.post(org_url(team.owner, "recommendations", rec_id, "apply"), headers=team.owner.headers)
    assert resp.status_code == 409 and resp.json()["type"].endswith("platform-not-connected")
    advice_id = await rec_id_by_key(api, team.owner, client_id, advice.dedupe_key)
    resp = await api.post(org_url(team.owner, "recommendations", advice_id, "apply"), headers=team.owner.headers)
    assert resp.status_code == 409 and resp.json()["type"].endswith("recommendation-not-actionable")
    rec = (await api.get(org_url(team.owner, "recommendations", rec_id), headers=team.owner.headers)).json()
    assert rec["status"] == "open"


async def test_action_routes_auth_validation_and_tenancy(
    api: httpx.AsyncClient, team: Team, meta_env: MetaEnv, database: Database
) -> None:
    _client_id, rec_id, ad = await _setup_pause(api, team, meta_env, database, 6)
    ad.status = "active"
    apply_url = org_url(team.owner, "recommendations", rec_id, "apply")
    assert (await api.post(apply_url)).status_code == 401
    assert (await api.post(apply_url, headers=team.owner.headers, json={"bogus": 1})).status_code == 422
    assert (await api.post(org_url(team.owner, "recommendations", "not-a-uuid", "apply"),
                           headers=team.owner.headers)).status_code == 422
    assert (await api.post(apply_url, headers=team.outsider.headers)).status_code == 404
    other_org = org_url(team.outsider, "recommendations", rec_id, "apply")
    assert (await api.post(other_org, headers=team.outsider.headers)).status_code == 404
    action = (await api.post(apply_url, headers=team.owner.headers)).json()
    for verb in ("undo", "approve"):
        url = org_url(team.owner, "actions", action["id"], verb)
        assert (await api.post(url)).status_code == 401
        assert (await api.post(url, headers=team.viewer.headers)).status_code == 403
        assert (await api.post(org_url(team.outsider, "actions", action["id"], verb),
                               headers=team.outsider.headers)).status_code == 404
        assert (await api.post(org_url(team.owner, "actions", "nope", verb),
                               headers=team.owner.headers)).status_code == 422
    reject = org_url(team.owner, "actions", action["id"], "reject")
    assert (await api.post(reject, json={"reason": "x"})).status_code == 401
    assert (await api.post(reject, headers=team.viewer.headers, json={"reason": "x"})).status_code == 403
    assert (await api.post(reject, headers=team.owner.headers, json={"reason": "x"})).status_code == 409
    approve = await api.post(org_url(team.owner, "actions", action["id"], "approve"), headers=team.owner.headers)
    assert approve.status_code == 409
    # Reads: viewer may list and read; outsiders get 404; bad filters are 422.
    listed = await api.get(org_url(team.viewer, "actions"), headers=team.viewer.headers, params={"limit": 1})
    assert listed.status_code == 200 and len(listed.json()["items"]) == 1
    assert (await api.get(org_url(team.viewer, "actions"), headers=team.viewer.headers,
                          params={"status": "nonsense"})).status_code == 422
    assert (await api.get(org_url(team.viewer, "actions"))).status_code == 401
    detail = await api.get(org_url(team.viewer, "actions", action["id"]), headers=team.viewer.headers)
    assert detail.status_code == 200 and detail.json()["id"] == action["id"]
    assert (await api.get(org_url(team.outsider, "actions", action["id"]),
                          headers=team.outsider.headers)).status_code == 404
    assert (await api.get(org_url(team.owner, "actions", str(uuid.uuid4())),
                          headers=team.owner.headers)).status_code == 404
    await api.post(org_url(team.owner, "actions", action["id"], "undo"), headers=team.owner.headers)
