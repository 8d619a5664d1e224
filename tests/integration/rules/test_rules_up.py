"""Under `omnify up`, a rule fires on the demo data within one schedule period and its alerts
reach a local Slack receiver (parsed back with slack_sdk's models) and a local Teams one.

Nothing is called by hand: the rule is created through the API, the worker's beat runs the
due rule, the rule pauses through the Meta/Google/TikTok sandboxes, the outbox dispatcher
routes ``rule.fired`` to the two chat channels and the webhooks engine delivers them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from slack_sdk.models.blocks import Block, HeaderBlock

from tests.conftest import is_postgres
from tests.servers import omnify_up, wait_for
from tests.slack_server import SlackServer, serve_slack

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(is_postgres(), reason="`omnify up` is the embedded (SQLite) default; run once"),
]


@pytest.fixture
def receiver() -> Iterator[SlackServer]:
    yield from serve_slack()


def test_rule_fires_under_omnify_up_and_alerts_reach_slack_and_teams(tmp_path: Path,
                                                                     receiver: SlackServer) -> None:
    with omnify_up(tmp_path, {"OMNIFY_LOG_LEVEL": "WARNING", "OMNIFY_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1"}) as up:
        auth = up.demo_login()
        base = up.api
        org_id = httpx.get(f"{base}/me", headers=auth, timeout=10).json()["memberships"][0]["org_id"]
        org = f"{base}/orgs/{org_id}"
        clients = httpx.get(f"{org}/clients", headers=auth, timeout=10).json()["items"]
        acme = next(c for c in clients if c["company_name"] == "Acme Outdoor")

        for kind, name, hook in (("slack_webhook", "#acme-alerts", "slack"), ("teams_webhook", "Acme", "teams")):
            channel = httpx.post(f"{org}/chat/connections", headers=auth, timeout=10, json={
                "kind": kind, "name": name, "url": f"{receiver.url}/hooks/{hook}"})
            assert channel.status_code == 201, channel.text
            route = httpx.post(f"{org}/chat/routes", headers=auth, timeout=10, json={
                "channel_id": channel.json()["id"], "event_kind": "rule_fired", "client_id": acme["id"]})
            assert route.status_code == 201, route.text
        rule = httpx.post(f"{org}/rules", headers=auth, timeout=30, json={
            "name": "Stop-loss on Acme", "definition": {
                "scope": {"client_ids": [acme["id"]], "platforms": ["meta_ads"]},
                "conditions": {"all": [{"metric": "spend", "window": "last_7_days", "op": ">", "value": 1}]},
                "actions": [{"type": "pause"}, {"type": "notify", "channels": ["slack", "teams"]}],
                "schedule": {"every": "15m"}, "max_actions_per_run": 2}})
        assert rule.status_code == 201, rule.text
        rule_id = rule.json()["id"]
        started = time.monotonic()

        wait_for(lambda: bool(receiver.posted("/hooks/slack")) and bool(receiver.posted("/hooks/teams")), 240,
                 "the rule's alerts at the local Slack and Teams receivers", interval=1.0, proc=up.proc, log=up.log)
        assert time.monotonic() - started < 15 * 60  # within one schedule period (in practice about a minute)

        # The first slot is the one that alerted; a wall-clock 15-minute boundary crossed since then may have
        # brought the next slot due, which is a later slot and not a second run of this one.
        evaluations = httpx.get(f"{org}/rules/{rule_id}/evaluations", headers=auth, timeout=10).json()["items"]
        evaluation = min(evaluations, key=lambda e: e["slot"])
        assert len({e["slot"] for e in evaluations}) == len(evaluations) <= 2, evaluations
        assert evaluation["trigger"] == "schedule" and evaluation["acted"] == 2
        applied = [e for e in evaluation["entities"] if e.get("outcome") == "applied"]
        assert len(applied) == 2 and all(e["action_id"] for e in applied)

        message = receiver.posted("/hooks/slack")[0].body
        blocks = [Block.parse(b) for b in message["blocks"]]
        for block in blocks:
            assert block is not None
            block.validate_json()
        assert isinstance(blocks[0], HeaderBlock) and blocks[0].text is not None
        assert "Stop-loss on Acme" in blocks[0].text.text
        assert "Acme Outdoor" in blocks[0].text.text
        card = receiver.posted("/hooks/teams")[0].body
        content = card["attachments"][0]["content"]
        assert content["type"] == "AdaptiveCard" and "Stop-loss on Acme" in content["body"][0]["text"]
