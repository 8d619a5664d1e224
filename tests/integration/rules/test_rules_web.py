"""The automation pages of the web app: rules (editor, preview, backtest, run, history),
alert channels and routes, a client's reports. Signed in with a browser session."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.integration.connections.conn_support import Env
from tests.integration.rules.rules_support import Synced
from tests.integration.web.web_support import WebSession, new_web, sign_in
from tests.slack_server import SlackServer, serve_slack


@pytest.fixture(scope="module")
def receiver() -> Iterator[SlackServer]:
    yield from serve_slack()


@pytest.fixture
async def web(env: Env, synced: Synced) -> AsyncIterator[WebSession]:
    session = new_web(env.app)
    resp = await sign_in(session, synced.team.owner.email, synced.team.owner.password)
    assert resp.status_code == 303, resp.text[:500]
    yield session
    await session.aclose()


async def test_rule_pages_from_editor_to_history(web: WebSession, synced: Synced) -> None:
    base = f"/orgs/{synced.team.owner.org_id}"
    listing = await web.get(f"{base}/rules")
    assert listing.status_code == 200 and "Automation rules" in listing.text and "Stop-loss" in listing.text
    editor = await web.get(f"{base}/rules/new")
    assert editor.status_code == 200 and 'hx-post="' in editor.text

    bad = {"conditions": {"all": [{"metric": "spend", "window": "last_3_weeks", "op": ">", "value": 1}]},
           "actions": [{"type": "pause"}]}
    refused = await web.post(f"{base}/rules/new", {"name": "Bad", "definition": json.dumps(bad)})
    assert refused.status_code == 422 and "definition.conditions.all.0.window" in refused.text
    good = {"scope": {"client_ids": [synced.team.client_id]},
            "conditions": {"all": [{"metric": "impressions", "window": "last_7_days", "op": ">", "value": 0}]},
            "actions": [{"type": "pause"}], "max_actions_per_run": 2}
    preview = await web.htmx("POST", f"{base}/rules/check", {"mode": "preview", "definition": json.dumps(good)})
    assert preview.status_code == 200 and "Matches now" in preview.text
    backtest = await web.htmx("POST", f"{base}/rules/check", {"mode": "backtest", "definition": json.dumps(good)})
    assert backtest.status_code == 200 and "Backtest:" in backtest.text
    created = await web.post(f"{base}/rules/new", {"name": "Web rule", "definition": json.dumps(good),
                                                   "dry_run": "true"})
    detail = await web.follow(created)
    assert detail.status_code == 200 and "Web rule" in detail.text and "dry run" in detail.text
    rule_path = created.headers["location"].split("?")[0]
    ran = await web.post(f"{rule_path}/run")
    evaluation = await web.follow(ran)
    assert evaluation.status_code == 200 and "matched" in evaluation.text and "dry run" in evaluation.text
    paused = await web.follow(await web.post(f"{rule_path}/pause"))
    assert "Resume" in paused.text


async def test_alert_and_report_pages(web: WebSession, synced: Synced, receiver: SlackServer) -> None:
    base = f"/orgs/{synced.team.owner.org_id}"
    page = await web.get(f"{base}/settings/alerts")
    assert page.status_code == 200 and "Alerts in Slack and Teams" in page.text
    added = await web.post(f"{base}/settings/alerts/webhook", {"kind": "teams_webhook", "name": "Team room",
                                                                "url": f"{receiver.url}/hooks/web-teams"})
    listed = await web.follow(added)
    assert "Team room" in listed.text and receiver.url not in listed.text  # the URL is a secret
    blocked = await web.post(f"{base}/settings/alerts/webhook", {"kind": "slack_webhook", "name": "x",
                                                                  "url": "http://10.0.0.1/hooks"})
    assert blocked.status_code == 422 and "non-public" in blocked.text

    reports = await web.get(f"{base}/clients/{synced.team.client_id}/reports")
    assert reports.status_code == 200 and "ad_metrics_daily.csv" in reports.text
    saved = await web.post(f"{base}/clients/{synced.team.client_id}/reports",
                           {"cadence": "weekly", "send_time": "07:15", "recipients": "a@client.example, b@client.example"})
    again = await web.follow(saved)
    assert "a@client.example, b@client.example" in again.text
