"""Rules over real synced sandbox data, acting through the one-click action path.

The client is connected to the Meta sandbox through the OAuth routes and synced for real;
the expected matches are computed here from the synced rows with plain SQL and Python
(never with the engine), and the sandbox's own state says what was paused.
"""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from omnify.actions.models import Action
from omnify.core.db import Database, bind_tenant, utcnow
from omnify.events import service as events
from omnify.recommendations.models import Recommendation
from omnify.rules import service as rules_service
from omnify.rules.models import Rule
from omnify.webhooks import dispatcher
from tests.factories import add_member
from tests.integration.connections.conn_support import Enqueued, Env
from tests.integration.rules.rules_support import AdDays, Synced, ad_days, window_sum


@pytest.fixture
def live_ads(env: Env, synced: Synced) -> Iterator[None]:
    """Every sandbox ad running at the start of a test (tests may run in any order)."""
    for ad in env.boxes.meta.world.account("1000003").ads.values():
        ad.status = "active"
    yield


async def create_rule(env: Env, synced: Synced, definition: dict[str, Any], *, dry_run: bool = False,
                      acct: Any = None) -> dict[str, Any]:
    acct = acct or synced.team.owner
    body = {"name": f"rule {uuid.uuid4().hex[:6]}", "definition": {
        "scope": {"client_ids": [synced.team.client_id]}, **definition}, "dry_run": dry_run}
    resp = await env.api.post(synced.url("rules"), headers=acct.headers, json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def run_now(env: Env, synced: Synced, rule_id: str, acct: Any = None) -> dict[str, Any]:
    acct = acct or synced.team.owner
    resp = await env.api.post(synced.url("rules", rule_id, "run"), headers=acct.headers)
    assert resp.status_code == 200, resp.text
    body = dict(resp.json())
    assert body["status"] == "succeeded", body
    return body


def sandbox_status(env: Env, external_id: str) -> str:
    return str(env.boxes.meta.world.find(external_id)[2].status)


def latest_day(data: AdDays) -> date:
    return max(d for series in data.days.values() for d in series)


def days_live(series: dict[date, Any], as_of: date) -> int:
    delivered = [d for d, v in series.items() if (v[0] > 0 or v[1] > 0) and d <= as_of]
    return (as_of - min(delivered)).days + 1 if delivered else 0


async def undo_all(env: Env, synced: Synced, action_ids: list[str]) -> None:
    for action_id in action_ids:
        resp = await env.api.post(synced.url("actions", action_id, "undo"), headers=synced.team.owner.headers)
        assert resp.status_code == 200, resp.text


# --------------------------------------------------------------------------------- tests
async def test_rule_pauses_exactly_the_hand_computed_ads_with_audit_and_undo(
    env: Env, synced: Synced, owner_database: Database, live_ads: None
) -> None:
    data = await ad_days(owner_database, synced.team.client_id)
    as_of = latest_day(data)
    spend7 = {ad: window_sum(s, as_of, 7, 0) / 100 for ad, s in data.days.items()}
    ctr7 = {ad: (window_sum(s, as_of, 7, 2) / window_sum(s, as_of, 7, 1) * 100) if window_sum(s, as_of, 7, 1)
            else None for ad, s in data.days.items()}
    spend_cut = round(statistics.median(spend7.values()), 2)
    ctr_cut = round(sorted(v for v in ctr7.values() if v is not None)[len(ctr7) * 3 // 4 - 1], 4)
    expected = {ad for ad in data.days if data.status[ad] == "active" and spend7[ad] > spend_cut
                and ctr7[ad] is not None and ctr7[ad] < ctr_cut and days_live(data.days[ad], as_of) >= 10}
    assert 0 < len(expected) < len(data.days), (spend7, ctr7)

    rule = await create_rule(env, synced, {
        "conditions": {"all": [{"metric": "spend", "window": "last_7_days", "op": ">", "value": spend_cut},
                               {"metric": "ctr", "window": "last_7_days", "op": "<", "value": ctr_cut}]},
        "min_data": {"min_days_live": 10}, "actions": [{"type": "pause"}], "max_actions_per_run": 100})
    evaluation = await run_now(env, synced, rule["id"])
    assert evaluation["as_of"] == {synced.team.client_id: as_of.isoformat()}
    acted = {e["entity"]["id"]: e for e in evaluation["entities"] if e["outcome"] == "applied"}
    assert set(acted) == expected
    assert evaluation["matched"] == len(expected) and evaluation["acted"] == len(expected)
    for ad in data.days:  # the platform itself shows exactly those paused
        assert sandbox_status(env, data.external[ad]) == ("paused" if ad in expected else "active"), ad
    some = next(iter(acted.values()))
    label = f"spend(last_7_days) > {spend_cut:g}"
    assert some["values"][label] == pytest.approx(spend7[some["entity"]["id"]], abs=0.01)

    # Through the one-click path: one applied action each, in the audit log as the rule.
    audit = (await env.api.get(synced.url("audit"), headers=synced.team.owner.headers,
                               params={"limit": 200})).json()["items"]
    applied = {e["target_id"]: e for e in audit if e["action"] == "action.applied"}
    action_ids = [str(e["action_id"]) for e in acted.values()]
    for action_id in action_ids:
        assert applied[action_id]["actor_type"] == "rule"
        action = (await env.api.get(synced.url("actions", action_id), headers=synced.team.owner.headers)).json()
        assert action["status"] == "applied" and action["module"] == "rules" and action["undoable"]
    # Undo restores every ad at the platform.
    await undo_all(env, synced, action_ids)
    for ad in expected:
        assert sandbox_status(env, data.external[ad]) == "active"


async def test_action_cap_and_cooldown_hold(env: Env, synced: Synced, owner_database: Database,
                                          live_ads: None) -> None:
    data = await ad_days(owner_database, synced.team.client_id)
    as_of = latest_day(data)
    spend7 = {ad: window_sum(s, as_of, 7, 0) for ad, s in data.days.items()
              if data.status[ad] == "active" and window_sum(s, as_of, 7, 0) > 0}
    ranked = sorted(spend7, key=lambda a: (-spend7[a], a))
    assert len(ranked) >= 5
    rule = await create_rule(env, synced, {
        "conditions": {"all": [{"metric": "spend", "window": "last_7_days", "op": ">", "value": 0}]},
        "actions": [{"type": "pause"}], "max_actions_per_run": 2, "cooldown_hours": 24})

    first = await run_now(env, synced, rule["id"])
    applied1 = [e["entity"]["id"] for e in first["entities"] if e["outcome"] == "applied"]
    assert applied1 == ranked[:2]  # the cap keeps the biggest spenders
    capped = [e for e in first["entities"] if e["outcome"] == "skipped"]
    assert len(capped) == len(ranked) - 2
    assert all(e["reason"] == "action cap reached (2 per run)" for e in capped)

    # The synced status still says active (no sync since): the cooldown is what stops a second pause.
    second = await run_now(env, synced, rule["id"])
    by_id = {e["entity"]["id"]: e for e in second["entities"]}
    for ad in applied1:
        assert by_id[ad]["outcome"] == "skipped" and by_id[ad]["reason"].startswith("cooldown until"), by_id[ad]
    applied2 = [e["entity"]["id"] for e in second["entities"] if e["outcome"] == "applied"]
    assert applied2 == ranked[2:4]
    actions = [e["action_id"] for ev in (first, second) for e in ev["entities"] if e["outcome"] == "applied"]
    assert len(actions) == 4
    await undo_all(env, synced, actions)


async def test_dry_run_changes_nothing(env: Env, synced: Synced, database: Database, live_ads: None) -> None:
    writes = len([e for e in env.boxes.meta.journal.entries() if e.method == "POST"])
    org = uuid.UUID(synced.team.owner.org_id)
    async with database.sessionmaker() as s:
        await bind_tenant(s, org)
        actions_before = len((await s.scalars(select(Action).where(Action.org_id == org))).all())
        recs_before = len((await s.scalars(select(Recommendation).where(Recommendation.org_id == org))).all())
    rule = await create_rule(env, synced, {
        "conditions": {"all": [{"metric": "impressions", "window": "last_7_days", "op": ">", "value": 0}]},
        "actions": [{"type": "pause"}, {"type": "notify", "channels": ["slack", "email"]}]}, dry_run=True)
    evaluation = await run_now(env, synced, rule["id"])
    assert evaluation["dry_run"] is True and evaluation["acted"] > 0
    assert {e["outcome"] for e in evaluation["entities"] if e["decision"] == "act"} == {"dry_run"}
    assert len([e for e in env.boxes.meta.journal.entries() if e.method == "POST"]) == writes
    async with database.sessionmaker() as s:
        await bind_tenant(s, org)
        assert len((await s.scalars(select(Action).where(Action.org_id == org))).all()) == actions_before
        assert len((await s.scalars(select(Recommendation).where(Recommendation.org_id == org))).all()) == recs_before
        fired = [e for e in await events.list_for_org(s, org, "rule.fired") if e.payload["rule_id"] == rule["id"]]
    assert fired == []  # a dry run sends no alert either
    for ad in env.boxes.meta.world.account("1000003").ads.values():
        assert ad.status == "active"


async def test_backtest_equals_an_independent_day_by_day_replay(env: Env, synced: Synced,
                                                                owner_database: Database) -> None:
    data = await ad_days(owner_database, synced.team.client_id)
    as_of = latest_day(data)
    spends = sorted(window_sum(s, as_of - timedelta(days=30), 3, 0) for s in data.days.values())
    cut = spends[len(spends) // 2] / 100  # about half the ads qualify on a typical day
    definition = {
        "scope": {"client_ids": [synced.team.client_id]}, "level": "ad",
        "conditions": {"all": [{"metric": "spend", "window": "last_3_days", "op": ">", "value": cut},
                               {"metric": "conversions", "window": "last_3_days", "op": "<=", "value": 2}]},
        "min_data": {"min_days_live": 7}, "actions": [{"type": "pause"}], "cooldown_hours": 0,
        "max_actions_per_run": 500}
    resp = await env.api.post(synced.url("rules", "backtest"), headers=synced.team.viewer.headers,
                              json={"definition": definition, "days": 90})
    assert resp.status_code == 200, resp.text
    [client] = resp.json()["clients"]
    last = date.fromisoformat(client["last_day"])
    first = date.fromisoformat(client["first_day"])
    assert last == utcnow().date() - timedelta(days=1) and (last - first).days == 89

    # The replay, written out by hand: each day, each ad, with only the days up to then.
    paused: dict[str, date] = {}
    expected_actions: list[tuple[str, str]] = []
    saved = 0
    day = first
    while day <= last:
        for ad, since in paused.items():
            if since < day:
                saved += data.days[ad].get(day, (0, 0, 0, 0.0, 0))[0]
        for ad in sorted(data.days):
            series = data.days[ad]
            running = ad not in paused and (series.get(day, (0, 0))[0] > 0 or series.get(day, (0, 0))[1] > 0)
            if not running:
                continue
            live = [d for d, v in series.items() if (v[0] > 0 or v[1] > 0) and d <= day]
            if not live or (day - min(live)).days + 1 < 7:
                continue
            if window_sum(series, day, 3, 0) / 100 > cut + 1e-9 and window_sum(series, day, 3, 3) <= 2 + 1e-9:
                expected_actions.append((day.isoformat(), ad))
                paused[ad] = day
        day += timedelta(days=1)
    got = sorted((a["day"], a["entity"]["id"]) for a in client["actions"])
    assert got == sorted(expected_actions)
    assert expected_actions, "the replay should act at least once on 90 days of sandbox data"
    assert client["summary"]["spend_saved_minor"] == ({"USD": saved} if saved else {})
    assert resp.json()["summary"]["actions"] == len(expected_actions)


async def test_guardrail_role_blocks_a_rule_of_a_member_and_is_announced(
    env: Env, synced: Synced, database: Database, live_ads: None
) -> None:
    team = synced.team
    member = await add_member(env.api, team.owner, "member")
    rule = await create_rule(env, synced, {
        "conditions": {"all": [{"metric": "impressions", "window": "last_7_days", "op": ">", "value": 0}]},
        "actions": [{"type": "pause"}], "max_actions_per_run": 1}, acct=member)
    patch = await env.api.patch(synced.url(), headers=team.owner.headers,
                                json={"settings": {"guardrails": {"apply_roles": ["owner", "admin"]}}})
    assert patch.status_code == 200, patch.text
    writes = len([e for e in env.boxes.meta.journal.entries() if e.method == "POST"])
    try:
        evaluation = await run_now(env, synced, rule["id"])
    finally:
        await env.api.patch(synced.url(), headers=team.owner.headers, json={"settings": {"guardrails": {}}})
    [blocked] = [e for e in evaluation["entities"] if e["decision"] == "act"]
    assert blocked["outcome"] == "failed" and blocked["reason"].startswith("guardrail-role")
    assert evaluation["failed"] == 1 and evaluation["acted"] == 0
    assert len([e for e in env.boxes.meta.journal.entries() if e.method == "POST"]) == writes
    org = uuid.UUID(team.owner.org_id)
    async with database.sessionmaker() as s:
        await bind_tenant(s, org)
        hits = [e for e in await events.list_for_org(s, org, "guardrail.hit") if e.payload["rule_id"] == rule["id"]]
        rec = await s.get(Recommendation, uuid.UUID(blocked["recommendation_id"]))
    assert hits and hits[0].payload["code"] == "guardrail-role"
    assert rec is not None and rec.status == "dismissed"  # no open leftover for a blocked automation


async def test_schedule_sweep_runs_each_slot_once_and_sync_triggers_after_sync_rules(
    env: Env, synced: Synced, database: Database, enqueued: Enqueued
) -> None:
    periodic = await create_rule(env, synced, {
        "conditions": {"all": [{"metric": "spend", "window": "today", "op": ">=", "value": 0}]},
        "actions": [{"type": "notify", "channels": ["webhook"]}], "schedule": {"every": "15m"}}, dry_run=True)
    now = utcnow()
    assert await rules_service.run_due(database.sessionmaker, env.settings, now=now) >= 1
    assert await rules_service.run_due(database.sessionmaker, env.settings, now=now) == 0  # slot done, not due
    resp = await env.api.get(synced.url("rules", periodic["id"], "evaluations"), headers=synced.team.viewer.headers)
    [evaluation] = resp.json()["items"]
    assert evaluation["trigger"] == "schedule" and evaluation["slot"].startswith("15m@")
    rule = (await env.api.get(synced.url("rules", periodic["id"]), headers=synced.team.viewer.headers)).json()
    assert rule["next_run_at"] > now.isoformat() and rule["last_status"] == "succeeded"

    after = await create_rule(env, synced, {
        "conditions": {"all": [{"metric": "clicks", "window": "yesterday", "op": ">=", "value": 0}]},
        "actions": [{"type": "notify", "channels": ["email"]}], "schedule": {"every": "after_sync"}}, dry_run=True)
    assert after["next_run_at"] is None
    org = uuid.UUID(synced.team.owner.org_id)
    async with database.sessionmaker() as s:
        await bind_tenant(s, org)
        event = await events.emit(s, org, "sync.completed", {"client_id": synced.team.client_id,
                                                             "platform": "meta_ads"})
        await s.commit()
    async with database.sessionmaker() as s:
        await dispatcher.dispatch_org(s, env.settings, org)
    [call] = [kw for kw in await enqueued.named(rules_service.RUN_TASK)
              if kw["rule_id"] == after["id"] and kw["slot"] == f"sync:{event.id}"]
    assert call["client_id"] == synced.team.client_id and call["slot"].startswith("sync:")
    async with database.sessionmaker() as s:
        first = await rules_service.run_rule(s, env.settings, org, uuid.UUID(after["id"]),
                                             trigger=rules_service.Trigger.SYNC, slot=call["slot"],
                                             client_ids=[call["client_id"]])
    async with database.sessionmaker() as s:
        again = await rules_service.run_rule(s, env.settings, org, uuid.UUID(after["id"]),
                                             trigger=rules_service.Trigger.SYNC, slot=call["slot"])
    assert first is not None and first.trigger == "sync" and again is None
    async with database.sessionmaker() as s:
        await bind_tenant(s, org)
        stored = await s.get(Rule, uuid.UUID(after["id"]))
        assert stored is not None and stored.last_status == "succeeded"
