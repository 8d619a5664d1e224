"""Recommendations: merge across runs (no duplicates, expiry, reopen), list/filter/paginate, dismiss."""

from __future__ import annotations

import dataclasses
import uuid

import httpx
from sqlalchemy import select

from omnify.core.db import Database, bind_tenant
from omnify.events import service as events
from omnify.recommendations import service as rec_service
from omnify.recommendations.models import Recommendation
from tests.conftest import requires_postgres
from tests.integration.brain_product.conftest import (
    MetaEnv,
    Team,
    new_client,
    org_url,
    pause_finding,
    rec_id_by_key,
    sandbox_ads,
)


async def _merge(database: Database, org_id: str, client_id: str, findings: list[rec_service.Finding],
                 ) -> rec_service.MergeOutcome:
    async with database.sessionmaker() as s:
        await bind_tenant(s, uuid.UUID(org_id))
        out = await rec_service.merge_findings(s, uuid.UUID(org_id), uuid.UUID(client_id), findings, None)
        await s.commit()
        return out


async def _created_events(database: Database, org_id: str, client_id: str) -> int:
    async with database.sessionmaker() as s:
        await bind_tenant(s, uuid.UUID(org_id))
        rows = await events.list_for_org(s, uuid.UUID(org_id), "recommendation.created", limit=1000)
        return sum(1 for e in rows if e.payload["client_id"] == client_id)


async def test_merge_dedupes_expires_reopens_and_respects_decisions(
    api: httpx.AsyncClient, team: Team, meta_env: MetaEnv, database: Database
) -> None:
    client_id = await new_client(api, team.owner)
    ads = sandbox_ads(meta_env)
    a, b, c = (pause_finding(ad, key=f"USD|fatigue:{ad.id}") for ad in ads[:3])
    assert (await _merge(database, team.owner.org_id, client_id, [a, b, c])).to_dict() == {
        "created": 3, "updated": 0, "reopened": 0, "expired": 0, "untouched": 0}
    assert await _created_events(database, team.owner.org_id, client_id) == 3
    # Same findings again, with new evidence: updated in place, no new rows or events.
    a2 = dataclasses.replace(a, confidence=0.95, evidence={"ctr_drop": 0.5})
    out = await _merge(database, team.owner.org_id, client_id, [a2, b, c])
    assert (out.created, out.updated) == (0, 3)
    rec_a = await rec_id_by_key(api, team.owner, client_id, a.dedupe_key)
    body = (await api.get(org_url(team.owner, "recommendations", rec_a), headers=team.owner.headers)).json()
    assert body["confidence"] == 0.95 and body["evidence"] == {"ctr_drop": 0.5} and body["seen_count"] == 2
    assert body["expected_impact"] == {"amount_minor": 12_345, "currency": "USD"} and body["actionable"] is True
    # Dismiss b; c disappears from the next run (expired); b is seen again but stays dismissed.
    rec_b = await rec_id_by_key(api, team.owner, client_id, b.dedupe_key)
    dismissed = await api.post(org_url(team.member, "recommendations", rec_b, "dismiss"),
                               headers=team.member.headers, json={"reason": "  Brand   campaign, keep running "})
    assert dismissed.status_code == 200, dismissed.text
    assert dismissed.json()["status"] == "dismissed" and dismissed.json()["status_reason"] == \
        "Brand campaign, keep running"
    out = await _merge(database, team.owner.org_id, client_id, [a, b])
    assert (out.updated, out.untouched, out.expired) == (1, 1, 1)
    rec_c = await rec_id_by_key(api, team.owner, client_id, c.dedupe_key)
    assert (await api.get(org_url(team.owner, "recommendations", rec_c), headers=team.owner.headers)
            ).json()["status"] == "expired"
    assert (await api.get(org_url(team.owner, "recommendations", rec_b), headers=team.owner.headers)
            ).json()["status"] == "dismissed"
    # c comes back: reopened and announced again.
    out = await _merge(database, team.owner.org_id, client_id, [a, b, c])
    assert out.reopened == 1
    assert await _created_events(database, team.owner.org_id, client_id) == 4
    async with database.sessionmaker() as s:
        await bind_tenant(s, uuid.UUID(team.owner.org_id))
        rows = (await s.scalars(select(Recommendation).where(
            Recommendation.org_id == uuid.UUID(team.owner.org_id),
            Recommendation.client_id == uuid.UUID(client_id)))).all()
    assert len(rows) == 3  # never duplicated
    again = await api.post(org_url(team.owner, "recommendations", rec_b, "dismiss"), headers=team.owner.headers,
                           json={"reason": "again"})
    assert again.status_code == 409 and again.json()["type"].endswith("recommendation-not-open")


async def test_list_filters_pagination_and_fields(
    api: httpx.AsyncClient, team: Team, meta_env: MetaEnv, database: Database
) -> None:
    c1, c2 = await new_client(api, team.owner), await new_client(api, team.owner)
    ads = sandbox_ads(meta_env)
    await _merge(database, team.owner.org_id, c1, [pause_finding(ad, key=f"k{i}") for i, ad in enumerate(ads[:5])])
    low = dataclasses.replace(pause_finding(ads[5], key="anomaly"), module="anomaly", kind="investigate",
                              action=None, confidence=0.3)
    await _merge(database, team.owner.org_id, c2, [low])
    url = org_url(team.viewer, "recommendations")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"client_id": c1, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await api.get(url, headers=team.viewer.headers, params=params)).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 5
    only = (await api.get(url, headers=team.viewer.headers, params={"module": "anomaly"})).json()["items"]
    assert [i["client_id"] for i in only] == [c2] and only[0]["actionable"] is False
    assert (await api.get(url, headers=team.viewer.headers, params={"min_confidence": 0.5, "client_id": c2})
            ).json()["items"] == []
    opened = (await api.get(url, headers=team.viewer.headers, params={"status": "open", "kind": "pause_ad",
                                                                     "platform": "meta_ads"})).json()["items"]
    assert len(opened) == 5
    slim = (await api.get(url, headers=team.viewer.headers, params={"fields": "title,status", "limit": 1})).json()
    assert set(slim["items"][0]) == {"id", "title", "status"}
    for bad in ({"status": "pending"}, {"min_confidence": 2}, {"client_id": "x"}, {"limit": 0},
                {"created_since": "2026-01-01T00:00:00"}, {"module": "DROP TABLE"}):
        resp = await api.get(url, headers=team.viewer.headers, params=bad)
        assert resp.status_code == 422, (bad, resp.text)
    assert (await api.get(url, headers=team.viewer.headers, params={"cursor": "garbage!"})).status_code == 400
    assert (await api.get(url, headers=team.viewer.headers,
                          params={"created_since": "2020-01-01T00:00:00Z"})).status_code == 200


async def test_recommendation_routes_auth_and_tenancy(
    api: httpx.AsyncClient, team: Team, meta_env: MetaEnv, database: Database
) -> None:
    client_id = await new_client(api, team.owner)
    finding = pause_finding(sandbox_ads(meta_env)[0], key="auth")
    await _merge(database, team.owner.org_id, client_id, [finding])
    rec_id = await rec_id_by_key(api, team.owner, client_id, "auth")
    detail = org_url(team.owner, "recommendations", rec_id)
    listing = org_url(team.owner, "recommendations")
    dismiss = detail + "/dismiss"
    assert (await api.get(listing)).status_code == 401
    assert (await api.get(detail)).status_code == 401
    assert (await api.post(dismiss, json={"reason": "x"})).status_code == 401
    assert (await api.get(detail, headers=team.viewer.headers)).status_code == 200
    assert (await api.post(dismiss, headers=team.viewer.headers, json={"reason": "x"})).status_code == 403
    assert (await api.post(dismiss, headers=team.member.headers, json={"reason": "   "})).status_code == 422
    assert (await api.post(dismiss, headers=team.member.headers, json={})).status_code == 422
    assert (await api.get(org_url(team.owner, "recommendations", "nope"),
                          headers=team.owner.headers)).status_code == 422
    # Another organization: its own path and ours both 404, never 403.
    assert (await api.get(listing, headers=team.outsider.headers)).status_code == 404
    assert (await api.get(detail, headers=team.outsider.headers)).status_code == 404
    theirs = org_url(team.outsider, "recommendations", rec_id)
    assert (await api.get(theirs, headers=team.outsider.headers)).status_code == 404
    assert (await api.post(theirs + "/dismiss", headers=team.outsider.headers,
                           json={"reason": "x"})).status_code == 404
    assert (await api.get(org_url(team.outsider, "recommendations"), headers=team.outsider.headers,
                          params={"client_id": client_id})).json()["items"] == []
    assert (await api.get(org_url(team.owner, "recommendations", str(uuid.uuid4())),
                          headers=team.owner.headers)).status_code == 404


@requires_postgres
async def test_row_level_security_hides_other_tenants_rows(
    api: httpx.AsyncClient, team: Team, meta_env: MetaEnv, database: Database, owner_database: Database
) -> None:
    from omnify.actions.models import Action, IdempotencyRecord
    from omnify.brain_runs.models import BrainRun

    client_id = await new_client(api, team.owner)
    await _merge(database, team.owner.org_id, client_id, [pause_finding(sandbox_ads(meta_env)[0], key="rls")])
    async with database.sessionmaker() as s:  # the app role, bound to the outsider's organization
        await bind_tenant(s, uuid.UUID(team.outsider.org_id))
        for model in (Recommendation, Action, IdempotencyRecord, BrainRun):
            rows = (await s.scalars(select(model).where(model.org_id == uuid.UUID(team.owner.org_id)))).all()
            assert rows == [], model.__tablename__
    async with owner_database.sessionmaker() as s:  # the owner role bypasses RLS: the row exists
        rows = (await s.scalars(select(Recommendation).where(
            Recommendation.org_id == uuid.UUID(team.owner.org_id), Recommendation.dedupe_key == "rls"))).all()
        assert len(rows) == 1
