"""Recommendations inbox and actions history pages: the API's permission gates on every write."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime

import httpx

from omnify.clients import service as clients
from omnify.clients.schemas import ClientCreateIn
from omnify.core.context import Actor
from omnify.core.db import Database, bind_tenant
from omnify.recommendations import service as rec_service
from tests.factories import register
from tests.integration.web.test_web_audit import _join_as_viewer
from tests.integration.web.web_support import WebSession, sign_up


async def test_empty_inbox_and_history_say_what_to_do(web: WebSession) -> None:
    await sign_up(web)
    inbox = await web.get(f"/orgs/{web.org_id}/recommendations")
    assert inbox.status_code == 200 and "Connect a platform" in inbox.text
    history = await web.get(f"/orgs/{web.org_id}/actions")
    assert history.status_code == 200 and "Apply a recommendation" in history.text
    odd = await web.get(f"/orgs/{web.org_id}/recommendations", params={"status": "bogus", "client_id": "x"})
    assert odd.status_code == 200


async def test_unknown_objects_are_404_and_writes_need_csrf(web: WebSession) -> None:
    await sign_up(web)
    await web.get(f"/orgs/{web.org_id}/recommendations")
    missing = uuid.uuid4()
    for path in (f"/recommendations/{missing}/apply", f"/recommendations/{missing}/dismiss",
                 f"/actions/{missing}/undo", f"/actions/{missing}/approve"):
        resp = await web.post(f"/orgs/{web.org_id}{path}")
        assert resp.status_code == 404 and "Page not found" in resp.text, (path, resp.status_code)
        forged = await web.post(f"/orgs/{web.org_id}{path}", csrf=False)
        assert forged.status_code == 403, (path, forged.status_code)


async def test_viewers_cannot_write_and_other_orgs_are_404(web: WebSession, other_web: WebSession,
                                                          owner_database: Database,
                                                          client: httpx.AsyncClient) -> None:
    await sign_up(web)
    await _join_as_viewer(web, other_web, owner_database)
    page = await other_web.get(f"/orgs/{web.org_id}/recommendations")
    assert page.status_code == 200 and "/apply" not in page.text
    rid = uuid.uuid4()
    for path in (f"/recommendations/{rid}/apply", f"/recommendations/{rid}/dismiss", f"/actions/{rid}/undo",
                 f"/actions/{rid}/approve", f"/actions/{rid}/reject"):
        refused = await other_web.post(f"/orgs/{web.org_id}{path}")
        assert refused.status_code == 403, (path, refused.status_code)
    stranger = await register(client)
    for path in ("/recommendations", "/actions"):
        resp = await web.get(f"/orgs/{stranger.org_id}{path}")
        assert resp.status_code == 404 and "Page not found" in resp.text


async def test_each_finding_shows_the_chart_of_its_metric_around_the_change(web: WebSession,
                                                                            owner_database: Database) -> None:
    """The evidence chart a brain run stored with a finding, drawn by charts.js from a JSON block
    (no inline script): days as epoch seconds, money as amounts, the onset and the anomalous
    days marked, the same story in words; findings without a chart get none, nor the library."""
    await sign_up(web)
    org_id = uuid.UUID(web.org_id)
    actor = Actor(actor_type="user", actor_id=None, label=web.email, request_id="chart-test")
    days = [f"2026-03-{d:02d}" for d in range(1, 21)]
    fatigue = rec_service.Finding(
        module="fatigue", kind="pause_ad", dedupe_key="USD|fatigue:ad-1:2026-03-11", title="Creative fatigue on ad one",
        target={"level": "ad", "id": str(uuid.uuid4()), "name": "ad one"}, platform="meta_ads", confidence=0.9,
        impact_minor=4_200, currency="USD", action=None,
        evidence={"ctr_drop": 0.5, "onset_date": "2026-03-11", "chart": {
            "metric": "ctr", "title": "Daily click-through rate of the ad", "x": days,
            "series": [{"label": "CTR", "unit": "percent", "values": [0.02] * 10 + [0.01] * 10},
                       {"label": "Level before the decline", "unit": "percent", "dash": True, "values": [0.02] * 20}],
            "marks": [{"date": "2026-03-11", "label": "decline starts"}], "band": None}})
    anomaly = rec_service.Finding(
        module="anomaly", kind="investigate", dedupe_key="USD|anomaly:campaign:c1:2026-03-15", title="SPEND spike",
        target={"level": "campaign", "id": "c1"}, platform=None, confidence=0.75, impact_minor=9_900, currency="USD",
        action=None, evidence={"peak_z": 7.5, "chart": {
            "metric": "spend", "title": "Daily spend and conversions of the campaign", "x": days,
            "series": [{"label": "Spend", "unit": "money", "values": [12_345] * 20},
                       {"label": "Conversions", "unit": "count", "values": [3] * 20}],
            "marks": [], "band": ["2026-03-15", "2026-03-16"]}})
    idea = rec_service.Finding(module="ideas", kind="idea", dedupe_key="USD|idea:1", title="An idea",
                               target={"level": "client", "id": "x"}, platform=None, confidence=0.5,
                               impact_minor=None, currency="USD", action=None, evidence={"score": 1})
    async with owner_database.sessionmaker() as session:
        await bind_tenant(session, org_id)
        client = await clients.create_client(session, org_id, actor, ClientCreateIn(company_name="Chart Co"))
        await rec_service.merge_findings(session, org_id, client.id, [idea], None, expire_missing=False)
        await session.commit()
    plain = await web.get(f"/orgs/{web.org_id}/recommendations")
    assert plain.status_code == 200 and "An idea" in plain.text
    assert 'data-chart="evidence"' not in plain.text and "uPlot" not in plain.text  # no chart, no library
    async with owner_database.sessionmaker() as session:
        await bind_tenant(session, org_id)
        await rec_service.merge_findings(session, org_id, client.id, [fatigue, anomaly, idea], None)
        await session.commit()

    page = await web.get(f"/orgs/{web.org_id}/recommendations")
    assert page.status_code == 200 and "vendor/uPlot.iife.min." in page.text and "/charts." in page.text
    assert page.text.count('data-chart="evidence"') == 2
    blocks = [json.loads(b) for b in re.findall(r'<script type="application/json" id="chart-data-[^"]+">(.*?)</script>',
                                               page.text, re.S)]
    by_title = {b["title"]: b for b in blocks}
    ctr = by_title["Daily click-through rate of the ad"]
    march_1 = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp())
    assert ctr["x"][0] == march_1 and ctr["x"][-1] == march_1 + 19 * 86_400
    assert ctr["marks"] == [{"x": march_1 + 10 * 86_400, "label": "decline starts", "date": "2026-03-11"}]
    assert ctr["series"][1]["dash"] is True and ctr["band"] is None
    assert "The decline starts on 2026-03-11: CTR 2.00 % on average before it, 1.00 % over the last 7 days." in (
        ctr["summary"])
    assert "The decline starts on 2026-03-11" in page.text  # the chart's text alternative is on the page
    money = by_title["Daily spend and conversions of the campaign"]
    assert money["series"][0]["values"][0] == 123.45 and money["series"][1]["values"][0] == 3  # amounts, counts
    assert money["band"] == [march_1 + 14 * 86_400, march_1 + 16 * 86_400]  # through the end of the last day
    assert "Shaded: 2026-03-15 to 2026-03-16." in money["summary"]
