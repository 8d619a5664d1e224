"""Slack and Teams alerts end to end against local receivers (never Slack or Microsoft).

A rule fires on synced sandbox data; the outbox dispatcher routes ``rule.fired`` to a Slack
incoming webhook and a Teams workflow URL on a local server; the webhooks engine delivers
(a first 429 with Retry-After is honoured); the Slack message is parsed back with
slack_sdk's own Block Kit models. A Slack app is installed through OAuth against the same
local server, a channel picked, a recommendation posted with buttons, and a signed click
applies it once even when Slack sends it twice; unsigned and stale clicks are refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
import warnings
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from slack_sdk.models.blocks import ActionsBlock, Block, HeaderBlock, ImageBlock
from sqlalchemy import select
from sqlalchemy.exc import SAWarning

from omnify.audit.models import AuditLog
from omnify.core.db import Database, bind_tenant
from omnify.recommendations import service as rec_service
from omnify.webhooks import dispatcher
from omnify.webhooks import service as webhooks
from omnify.webhooks.config import WebhookConfig
from tests.integration.connections.conn_support import Env
from tests.integration.rules.rules_support import Synced
from tests.slack_server import BOT_TOKEN, INSTALLER, TEAM, SlackServer, serve_slack

SIGNING_SECRET = "test-slack-signing-secret-0123456789"


@pytest.fixture(scope="module")
def slack_box() -> Iterator[SlackServer]:
    yield from serve_slack()


@pytest.fixture(scope="module")
def env_overrides(slack_box: SlackServer) -> dict[str, object]:
    return {"slack_client_id": "1234.5678", "slack_client_secret": "slack-client-secret",
            "slack_signing_secret": SIGNING_SECRET, "slack_api_url": f"{slack_box.url}/api",
            "slack_authorize_url": f"{slack_box.url}/oauth/v2/authorize", "webhook_retry_schedule": [0, 0, 0]}


def url(synced: Synced, *rest: str) -> str:
    return synced.url("chat", *rest)


async def deliver_all(env: Env, *, until: Any = None, timeout: float = 20.0) -> None:
    """Dispatch the outbox and attempt due deliveries (as the beat would) until ``until()`` holds."""
    config = WebhookConfig.from_settings(env.settings)
    deadline = time.monotonic() + timeout
    while True:
        await dispatcher.dispatch_pending(env.db.sessionmaker, env.settings)
        await webhooks.run_due(env.db.sessionmaker, env.settings, config)
        if until is None or until():
            return
        if time.monotonic() > deadline:
            raise AssertionError("deliveries did not arrive in time")
        await asyncio.sleep(0.3)


def sign(body: bytes, ts: int) -> dict[str, str]:
    digest = hmac.new(SIGNING_SECRET.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": f"v0={digest}",
            "Content-Type": "application/x-www-form-urlencoded"}


async def test_rule_fired_reaches_slack_and_teams_with_retry_after_and_a_chart(
    env: Env, synced: Synced, slack_box: SlackServer
) -> None:
    owner = synced.team.owner
    channels = {}
    for kind, name, hook in (("slack_webhook", "#acme-alerts", "slack-acme"), ("teams_webhook", "Acme", "teams")):
        resp = await env.api.post(url(synced, "connections"), headers=owner.headers,
                                  json={"kind": kind, "name": name, "url": f"{slack_box.url}/hooks/{hook}"})
        assert resp.status_code == 201, resp.text
        channels[kind] = resp.json()
        assert "hooks" not in json.dumps(channels[kind]) or resp.json()["name"] == name
        route = await env.api.post(url(synced, "routes"), headers=owner.headers, json={
            "channel_id": channels[kind]["id"], "event_kind": "rule_fired", "client_id": synced.team.client_id})
        assert route.status_code == 201, route.text
    listed = (await env.api.get(url(synced, "connections"), headers=owner.headers)).json()
    assert all(slack_box.url not in c["secret_hint"] or c["secret_hint"].endswith("…") for c in listed)
    slack_box.queue("/hooks/slack-acme", 429, b"rate_limited", {"Retry-After": "1"})

    rule = (await env.api.post(synced.url("rules"), headers=owner.headers, json={
        "name": "Big spenders", "definition": {
            "scope": {"client_ids": [synced.team.client_id]},
            "conditions": {"all": [{"metric": "impressions", "window": "last_7_days", "op": ">", "value": 0}]},
            "actions": [{"type": "notify", "channels": ["slack", "teams"]}], "max_actions_per_run": 3}})).json()
    run = (await env.api.post(synced.url("rules", rule["id"], "run"), headers=owner.headers)).json()
    assert run["acted"] == 3 and {e["outcome"] for e in run["entities"] if e["decision"] == "act"} == {"notified"}

    await deliver_all(env, until=lambda: bool(slack_box.posted("/hooks/teams")))
    first = (await env.api.get(url(synced, "channels", channels["slack_webhook"]["id"], "deliveries"),
                               headers=owner.headers)).json()["items"]
    assert first[0]["event_type"] == "rule.fired" and first[0]["last_status_code"] == 429
    assert first[0]["status"] == "pending"  # waiting for Slack's Retry-After, not the default schedule
    await deliver_all(env, until=lambda: len(slack_box.posted("/hooks/slack-acme")) >= 2)
    done = (await env.api.get(url(synced, "channels", channels["slack_webhook"]["id"], "deliveries"),
                              headers=owner.headers)).json()["items"]
    assert done[0]["status"] == "succeeded" and done[0]["attempts"] == 2

    message = slack_box.posted("/hooks/slack-acme")[-1].body
    blocks = [Block.parse(b) for b in message["blocks"]]
    for block in blocks:
        assert block is not None
        block.validate_json()  # slack_sdk's own rules (lengths, required fields)
    assert isinstance(blocks[0], HeaderBlock) and "Big spenders" in blocks[0].text.text
    assert not any(isinstance(b, ActionsBlock) for b in blocks)  # no buttons on a plain webhook
    [image] = [b for b in blocks if isinstance(b, ImageBlock)]
    assert "Big spenders" in message["text"]
    chart = urlsplit(image.image_url)
    png = await env.api.get(f"{chart.path}?{chart.query}")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"
    forged = await env.api.get(f"{chart.path}?token=not-a-token")
    assert forged.status_code == 404

    card = slack_box.posted("/hooks/teams")[-1].body
    assert card["type"] == "message"
    content = card["attachments"][0]["content"]
    assert card["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert content["type"] == "AdaptiveCard" and content["version"] == "1.4"
    facts = next(b for b in content["body"] if b["type"] == "FactSet")["facts"]
    assert len(facts) == 3 and all(f["value"].startswith("notified") for f in facts)
    assert content["actions"][0]["type"] == "Action.OpenUrl"


async def test_slack_app_install_picker_buttons_and_signed_clicks(
    env: Env, synced: Synced, slack_box: SlackServer, database: Database
) -> None:
    owner = synced.team.owner
    authorize = await env.api.get(url(synced, "slack", "authorize"), headers=owner.headers)
    assert authorize.status_code == 200, authorize.text
    state = parse_qs(urlsplit(authorize.json()["authorize_url"]).query)["state"][0]
    bad = await env.api.get("/api/v1/chat/slack/callback", params={"code": "good-code", "state": state + "x"})
    assert bad.status_code == 400
    back = await env.api.get("/api/v1/chat/slack/callback", params={"code": "good-code", "state": state})
    assert back.status_code == 303, back.text
    [conn] = [c for c in (await env.api.get(url(synced, "connections"), headers=owner.headers)).json()
              if c["kind"] == "slack_app"]
    assert conn["slack_team_id"] == TEAM["id"] and BOT_TOKEN not in json.dumps(conn)
    picker = (await env.api.get(url(synced, "connections", conn["id"], "slack-channels"), headers=owner.headers))
    assert [c["name"] for c in picker.json()] == ["acme-alerts", "ops"]
    unknown = await env.api.post(url(synced, "connections", conn["id"], "channels"), headers=owner.headers,
                                 json={"channel_id": "C0NOPE"})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "channel_id"
    channel = (await env.api.post(url(synced, "connections", conn["id"], "channels"), headers=owner.headers,
                                  json={"channel_id": "C0ALERTS"})).json()
    await env.api.post(url(synced, "routes"), headers=owner.headers,
                       json={"channel_id": channel["id"], "event_kind": "recommendation_created"})

    ad = next(a for a in env.boxes.meta.world.account("1000003").ads.values() if a.status == "active")
    finding = rec_service.Finding(
        module="fatigue", kind="pause_ad", dedupe_key=f"USD|fatigue:{ad.id}:{uuid.uuid4().hex[:6]}",
        title=f"Creative fatigue: pause {ad.name}", target={"level": "ad", "id": ad.id, "name": ad.name},
        platform="meta_ads", confidence=0.8, impact_minor=1234, currency="USD",
        action={"type": "pause_ad", "platform": "meta_ads", "account_id": "1000003", "entity_id": ad.id,
                "name": ad.name, "daily_spend_minor": 1000}, evidence={})
    org = uuid.UUID(owner.org_id)
    async with database.sessionmaker() as s:
        await bind_tenant(s, org)
        await rec_service.merge_findings(s, org, uuid.UUID(synced.team.client_id), [finding], None,
                                         expire_missing=False)
        await s.commit()
    await deliver_all(env, until=lambda: bool(slack_box.posted("/api/chat.postMessage")))
    call = slack_box.posted("/api/chat.postMessage")[-1]
    assert call.headers["authorization"] == f"Bearer {BOT_TOKEN}" and call.body["channel"] == "C0ALERTS"
    blocks = [Block.parse(b) for b in call.body["blocks"]]
    [buttons] = [b for b in blocks if isinstance(b, ActionsBlock)]
    buttons.validate_json()
    apply_button = buttons.elements[0]
    value = json.loads(apply_button.value)
    assert value["org"] == owner.org_id and apply_button.action_id == "omnify_apply"

    click = {"type": "block_actions", "team": {"id": TEAM["id"]}, "user": {"id": INSTALLER},
             "actions": [{"action_id": "omnify_apply", "value": apply_button.value, "action_ts": "1700000001.0002"}]}
    body = urlencode({"payload": json.dumps(click)}).encode()
    endpoint = "/api/v1/chat/slack/interactions"
    writes = len([e for e in env.boxes.meta.journal.entries() if e.method == "POST"])
    unsigned = await env.api.post(endpoint, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert unsigned.status_code == 401
    stale = await env.api.post(endpoint, content=body, headers=sign(body, int(time.time()) - 600))
    assert stale.status_code == 401
    tampered = await env.api.post(endpoint, content=body + b"x", headers=sign(body, int(time.time())))
    assert tampered.status_code == 401
    assert len([e for e in env.boxes.meta.journal.entries() if e.method == "POST"]) == writes

    first = await env.api.post(endpoint, content=body, headers=sign(body, int(time.time())))
    again = await env.api.post(endpoint, content=body, headers=sign(body, int(time.time())))
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert first.json()["text"].startswith(f"Applied by {owner.email}")
    assert again.json()["text"].startswith("Already done")
    assert len([e for e in env.boxes.meta.journal.entries() if e.method == "POST"]) == writes + 1
    assert env.boxes.meta.world.find(ad.id)[2].status == "paused"
    actions = (await env.api.get(synced.url("actions"), headers=owner.headers,
                                 params={"recommendation_id": value["rec"]})).json()["items"]
    assert len(actions) == 1 and actions[0]["requested_by"] == owner.email

    stranger = {**click, "user": {"id": "U0STRANGER"}}
    body2 = urlencode({"payload": json.dumps(stranger)}).encode()
    unlinked = await env.api.post(endpoint, content=body2, headers=sign(body2, int(time.time())))
    assert unlinked.status_code == 200 and "Link your Slack account" in unlinked.json()["text"]
    undo = await env.api.post(synced.url("actions", actions[0]["id"], "undo"), headers=owner.headers)
    assert undo.status_code == 200


async def test_removing_a_channel_takes_its_endpoint_and_routes_once(env: Env, synced: Synced,
                                                                     slack_box: SlackServer) -> None:
    owner = synced.team.owner
    channel = (await env.api.post(url(synced, "connections"), headers=owner.headers, json={
        "kind": "slack_webhook", "name": "#to-remove", "url": f"{slack_box.url}/hooks/remove-me"})).json()
    route = await env.api.post(url(synced, "routes"), headers=owner.headers, json={
        "channel_id": channel["id"], "event_kind": "rule_fired"})
    assert route.status_code == 201, route.text
    with warnings.catch_warnings():
        warnings.simplefilter("error", SAWarning)  # the ORM's "expected to delete 1 row, 0 matched" (CI's fuzz run)
        both = await asyncio.gather(*(env.api.delete(url(synced, "channels", channel["id"]), headers=owner.headers)
                                      for _ in range(2)))  # two removals at once: one wins, the other is told
    assert sorted(r.status_code for r in both) == [204, 404], [r.text for r in both]
    lost = next(r for r in both if r.status_code == 404)
    assert lost.headers["content-type"].startswith("application/problem+json")
    async with env.owner_db.sessionmaker() as session:
        removed = (await session.scalars(select(AuditLog).where(AuditLog.action == "chat_channel.removed",
                                                                 AuditLog.target_id == channel["id"]))).all()
    assert len(removed) == 1  # one removal recorded, not two
    routes = (await env.api.get(url(synced, "routes"), headers=owner.headers)).json()
    assert channel["id"] not in {r["channel_id"] for r in routes}
