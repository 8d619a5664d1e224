"""Reports API: streamed CSV exports of the analytics tables, the PDF route, report schedules."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from omnify.core.db import Base, Database, utcnow
from omnify.reports import service as reports
from tests.factories import register
from tests.integration.connections.conn_support import Env
from tests.integration.rules.rules_support import Synced


def client_url(synced: Synced, *rest: str) -> str:
    return synced.url("clients", synced.team.client_id, *rest)


async def test_csv_exports_stream_every_row_of_every_table(env: Env, synced: Synced, owner_database: Database,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reports, "EXPORT_BATCH", 97)  # many batches, as a large export would have
    viewer = synced.team.viewer
    tables = (await env.api.get(client_url(synced, "exports"), headers=viewer.headers)).json()
    assert {t["table"] for t in tables} == set(reports.EXPORT_TABLES)
    cid = uuid.UUID(synced.team.client_id)
    until = utcnow().date() - timedelta(days=1)
    since = until - timedelta(days=59)
    for name in ("ad_metrics_daily", "ads", "campaigns", "analytics_daily"):
        params = {"since": since.isoformat(), "until": until.isoformat()} if name in ("ad_metrics_daily",
                                                                                          "analytics_daily") else {}
        resp = await env.api.get(client_url(synced, "exports", f"{name}.csv"), headers=viewer.headers, params=params)
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith("text/csv")
        assert f'filename="{name}.csv"' in resp.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(resp.text)))
        table = Base.metadata.tables[name]
        conds = [table.c.client_id == cid]
        if params:
            conds += [table.c.day >= since, table.c.day <= until]
        async with owner_database.sessionmaker() as s:
            expected = await s.scalar(select(func.count()).select_from(table).where(*conds))
        assert len(rows) == expected and expected > 0, name
        assert "org_id" not in rows[0]
        if name == "ad_metrics_daily":
            assert {r["client_id"] for r in rows} == {str(cid)} and min(r["day"] for r in rows) >= since.isoformat()
            some = rows[0]
            assert float(some["spend_decimal"]) == pytest.approx(int(some["spend_minor"]) / 100)
    audit = (await env.api.get(synced.url("audit"), headers=synced.team.owner.headers)).json()["items"]
    assert any(e["action"] == "report.exported" and e["changes"]["table"] == "ads" for e in audit)
    unknown = await env.api.get(client_url(synced, "exports", "users.csv"), headers=viewer.headers)
    assert unknown.status_code == 404
    outsider = synced.team.outsider
    foreign = await env.api.get(client_url(synced, "exports", "ads.csv"), headers=outsider.headers)
    assert foreign.status_code == 404
    other = await register(env.api)
    theirs = await env.api.get(f"/api/v1/orgs/{other.org_id}/clients/{cid}/exports/ads.csv", headers=other.headers)
    assert theirs.status_code == 404
    empty = await env.api.get(client_url(synced, "exports", "ad_metrics_daily.csv"), headers=viewer.headers,
                              params={"since": until.isoformat(), "until": since.isoformat()})
    assert empty.status_code == 422 and empty.json()["errors"][0]["field"] == "since"


async def test_pdf_route_and_schedule_validation(env: Env, synced: Synced) -> None:
    viewer, owner = synced.team.viewer, synced.team.owner
    pdf = await env.api.get(client_url(synced, "report.pdf"), headers=viewer.headers)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content[:5] == b"%PDF-" and ".pdf" in pdf.headers["content-disposition"]
    bad = await env.api.get(client_url(synced, "report.pdf"), headers=viewer.headers,
                            params={"since": "2026-02-01", "until": "2026-01-01"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "since"
    assert (await env.api.get(client_url(synced, "report.pdf"))).status_code == 401
    assert (await env.api.get(client_url(synced, "report.pdf"), headers=synced.team.outsider.headers)
            ).status_code == 404

    url = client_url(synced, "report-schedules")
    refused = await env.api.post(url, headers=viewer.headers, json={"cadence": "weekly", "recipients": ["a@b.co"]})
    assert refused.status_code == 403
    for body, field in (({"cadence": "daily", "recipients": ["a@b.co"]}, "cadence"),
                        ({"cadence": "weekly", "recipients": ["not-an-email"]}, "recipients.0"),
                        ({"cadence": "monthly", "day_of_month": 31, "recipients": ["a@b.co"]}, "day_of_month"),
                        ({"cadence": "weekly", "recipients": []}, "recipients")):
        resp = await env.api.post(url, headers=owner.headers, json=body)
        assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == field, resp.text
    created = await env.api.post(url, headers=owner.headers, json={
        "cadence": "monthly", "day_of_month": 2, "send_time": "09:30", "recipients": ["CMO@Client.example"]})
    assert created.status_code == 201, created.text
    schedule = created.json()
    assert schedule["recipients"] == ["cmo@client.example"] and schedule["last_period"] is None
    patched = await env.api.patch(f"{url}/{schedule['id']}", headers=owner.headers, json={"enabled": False})
    assert patched.status_code == 200 and patched.json()["enabled"] is False
    assert (await env.api.get(url, headers=viewer.headers)).json()[0]["id"] == schedule["id"]
    assert (await env.api.delete(f"{url}/{schedule['id']}", headers=owner.headers)).status_code == 204
    garbage = await env.api.get("/api/v1/reports/unsubscribe", params={"token": "x" * 40})
    assert garbage.status_code == 400
