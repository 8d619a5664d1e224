"""The rollups stay exact: analytics answers equal hand-computed figures before and after a
re-sync that rewrites a window, an identical re-run writes nothing, other tenants still 404.

Every number asserted below is summed by hand from the rows written in the test; nothing
is recomputed with the code under test. The first window is written in batches of three
rows, so a window spans several staged batches (and one key repeats across batches).
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from omnify.analytics import invalidate_client
from omnify.core.db import Database, bind_tenant
from omnify.settings import Settings
from omnify.sync import repository as sync_repository
from omnify.sync.models import AdMetricDaily, AnalyticsDaily
from tests.factories import Account as User
from tests.factories import register
from tests.integration.perf.perf_support import Account, ad_row, make_accounts, write_window

SPEC = {
    "meta": ("meta_ads", "USD", {"Spring": ["a1", "a2"], "Summer": ["b1"]}),
    "google": ("google_ads", "EUR", {"Search": ["c1"]}),
}


async def _client(api: httpx.AsyncClient, owner: User) -> str:
    resp = await api.post(f"/api/v1/orgs/{owner.org_id}/clients", headers=owner.headers,
                          json={"company_name": f"Exact {uuid.uuid4().hex[:6]}", "currency": "USD"})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def first_window(meta: Account) -> list[dict[str, Any]]:
    return [
        ad_row(meta, "a1", "2026-03-01", 1000, 10_000, 100, 2.5, 4000),
        ad_row(meta, "a1", "2026-03-02", 2000, 20_000, 150, 1.0, 3000),
        # the platform repeats a key on the next page: the last one wins (as in the raw table)
        ad_row(meta, "b1", "2026-03-02", 9999, 1, 1, 9.0, 1),
        ad_row(meta, "b1", "2026-03-02", 700, 7_000, 70, 0.0, 0),
        ad_row(meta, "a2", "2026-03-01", 500, 5_000, 50, 0.5, 1000),
        ad_row(meta, "b1", "2026-03-03", 300, 3_000, 30, 1.0, 900),
        # a campaign-level total repeating ad rows: never counted in ad-level figures
        ad_row(meta, None, "2026-03-01", 1500, 15_000, 150, 3.0, 5000, level="campaign", campaign="Spring"),
        # spend of an ad we do not know: counted, under no campaign
        ad_row(meta, None, "2026-03-03", 100, 1_000, 10, 0.0, 0),
    ]


def rewritten_window(meta: Account) -> list[dict[str, Any]]:
    """2026-03-02..03 read again: a1 restated, b1's 03-02 gone, a2 new on 03-03, the
    unknown ad gone, b1's 03-03 unchanged."""
    return [
        ad_row(meta, "a1", "2026-03-02", 1800, 20_000, 140, 1.0, 2500),
        ad_row(meta, "b1", "2026-03-03", 300, 3_000, 30, 1.0, 900),
        ad_row(meta, "a2", "2026-03-03", 400, 4_000, 40, 2.0, 1600),
    ]


async def report(api: httpx.AsyncClient, user: User, client_id: str, **params: str) -> dict[str, Any]:
    query = {"since": "2026-03-01", "until": "2026-03-03", "compare": "false", **params}
    resp = await api.get(f"/api/v1/orgs/{user.org_id}/clients/{client_id}/analytics", headers=user.headers,
                         params=query)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def by_currency(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["currency"]: c for c in body["currencies"]}


def sums(kpis: dict[str, Any]) -> tuple[int, int, int, float, int]:
    return (kpis["spend_minor"], kpis["impressions"], kpis["clicks"], kpis["conversions"], kpis["revenue_minor"])


async def test_answers_equal_hand_computed_figures_before_and_after_a_rewritten_window(
    client: httpx.AsyncClient, database: Database, settings: Settings,
) -> None:
    owner = await register(client)
    client_id = await _client(client, owner)
    accounts = await make_accounts(database, owner.org_id, client_id, SPEC)
    meta, google = accounts["meta"], accounts["google"]
    await write_window(database, owner.org_id, client_id, meta, "2026-03-01", "2026-03-03", first_window(meta))
    await write_window(database, owner.org_id, client_id, google, "2026-03-01", "2026-03-03",
                       [ad_row(google, "c1", "2026-03-01", 800, 8_000, 80, 4.0, 6400)])

    # ---- before: by hand from first_window() and the google row
    total = by_currency(await report(client, owner, client_id, granularity="total"))
    assert sums(total["USD"]["totals"]) == (4600, 46_000, 410, 5.0, 8900)
    assert sums(total["EUR"]["totals"]) == (800, 8_000, 80, 4.0, 6400)
    assert total["USD"]["totals"]["cpc_minor"] == round(4600 / 410, 4)
    assert total["USD"]["totals"]["roas"] == round(8900 / 4600, 4)
    days = by_currency(await report(client, owner, client_id, granularity="day"))["USD"]["rows"]
    assert [(r["period"], r["spend_minor"], r["clicks"]) for r in days] == [
        ("2026-03-01", 1500, 150), ("2026-03-02", 2700, 220), ("2026-03-03", 400, 40)]
    camps = by_currency(await report(client, owner, client_id, granularity="total", group_by="campaign"))["USD"]
    assert {r["label"]: r["spend_minor"] for r in camps["rows"]} == {"Spring": 3500, "Summer": 1000, None: 100}
    assert camps["keys_total"] == 3
    plats = by_currency(await report(client, owner, client_id, granularity="total", group_by="platform"))
    assert [(r["platform"], r["spend_minor"]) for r in plats["EUR"]["rows"]] == [("google_ads", 800)]
    ads = by_currency(await report(client, owner, client_id, granularity="total", group_by="ad"))["USD"]
    assert {r["label"]: r["spend_minor"] for r in ads["rows"]} == {
        "Spring a1": 3000, "Spring a2": 500, "Summer b1": 1000}  # drill-down: known ads only

    # ---- a re-sync rewrites 03-02..03 of the USD account
    writer = await write_window(database, owner.org_id, client_id, meta, "2026-03-02", "2026-03-03",
                                rewritten_window(meta))
    assert (writer.written, writer.deleted) == (2, 2)  # a1 restated, a2 new; b1 03-02 and the unknown ad gone
    await invalidate_client(uuid.UUID(owner.org_id), uuid.UUID(client_id), settings)  # as the sync does

    total = by_currency(await report(client, owner, client_id, granularity="total"))
    assert sums(total["USD"]["totals"]) == (4000, 42_000, 360, 7.0, 10_000)
    assert sums(total["EUR"]["totals"]) == (800, 8_000, 80, 4.0, 6400)
    assert total["USD"]["totals"]["cpc_minor"] == round(4000 / 360, 4)
    days = by_currency(await report(client, owner, client_id, granularity="day"))["USD"]["rows"]
    assert [(r["period"], r["spend_minor"], r["conversions"]) for r in days] == [
        ("2026-03-01", 1500, 3.0), ("2026-03-02", 1800, 1.0), ("2026-03-03", 700, 3.0)]
    camps = by_currency(await report(client, owner, client_id, granularity="total", group_by="campaign"))["USD"]
    assert {r["label"]: r["spend_minor"] for r in camps["rows"]} == {"Spring": 3700, "Summer": 300}

    # ---- the same window again, unchanged: nothing written, raw or rollup
    again = await write_window(database, owner.org_id, client_id, meta, "2026-03-02", "2026-03-03",
                               rewritten_window(meta))
    assert (again.written, again.deleted, again.rollup_written) == (0, 0, 0)

    # ---- the rollups equal a recomputation from the raw rows
    async with database.sessionmaker() as s:
        await bind_tenant(s, uuid.UUID(owner.org_id))
        kept = sorted(await _rollup_rows(s, client_id))
        await sync_repository.rebuild_rollups(s, uuid.UUID(owner.org_id), uuid.UUID(client_id))
        assert sorted(await _rollup_rows(s, client_id)) == kept
        raw = await s.scalar(select(func.count()).select_from(AdMetricDaily)
                             .where(AdMetricDaily.client_id == uuid.UUID(client_id)))
        assert raw == 7  # a1 03-01, a1 03-02, a2 03-01, a2 03-03, b1 03-03, Spring's total 03-01, c1 03-01
        await s.rollback()


async def _rollup_rows(s: Any, client_id: str) -> list[tuple[Any, ...]]:
    rows = await s.execute(select(AnalyticsDaily.ad_account_id, AnalyticsDaily.day, AnalyticsDaily.currency,
                                  AnalyticsDaily.campaign_id, AnalyticsDaily.spend_minor, AnalyticsDaily.impressions,
                                  AnalyticsDaily.clicks, AnalyticsDaily.conversions_micros,
                                  AnalyticsDaily.revenue_minor)
                           .where(AnalyticsDaily.client_id == uuid.UUID(client_id)))
    return [tuple(r) for r in rows]


async def test_other_tenants_and_unknown_clients_still_404(client: httpx.AsyncClient, database: Database) -> None:
    owner, outsider = await register(client), await register(client)
    client_id = await _client(client, owner)
    accounts = await make_accounts(database, owner.org_id, client_id, {"meta": SPEC["meta"]})
    await write_window(database, owner.org_id, client_id, accounts["meta"], "2026-03-01", "2026-03-03",
                       first_window(accounts["meta"]))
    assert (await report(client, owner, client_id))["currencies"]  # cached for the owner's org now
    url = f"/api/v1/orgs/{{org}}/clients/{client_id}/analytics"
    params = {"since": "2026-03-01", "until": "2026-03-03", "compare": "false"}
    # the outsider in their own org: the client is not theirs (cache key and RLS both say so)
    resp = await client.get(url.format(org=outsider.org_id), headers=outsider.headers, params=params)
    assert resp.status_code == 404
    # the outsider naming the owner's org: not a member
    resp = await client.get(url.format(org=owner.org_id), headers=outsider.headers, params=params)
    assert resp.status_code == 404
    resp = await client.get(f"/api/v1/orgs/{owner.org_id}/clients/{uuid.uuid4()}/analytics",
                            headers=owner.headers, params=params)
    assert resp.status_code == 404
    for group_by in ("none", "ad"):
        resp = await client.get(url.format(org=outsider.org_id), headers=outsider.headers,
                                params={**params, "group_by": group_by, "granularity": "week"})
        assert resp.status_code == 404, group_by


@pytest.mark.parametrize("batch_size", [1, 100])
async def test_batching_does_not_change_the_sums(client: httpx.AsyncClient, database: Database,
                                                 batch_size: int) -> None:
    owner = await register(client)
    client_id = await _client(client, owner)
    meta = (await make_accounts(database, owner.org_id, client_id, {"meta": SPEC["meta"]}))["meta"]
    await write_window(database, owner.org_id, client_id, meta, "2026-03-01", "2026-03-03", first_window(meta),
                       batch_size=batch_size)
    total = by_currency(await report(client, owner, client_id, granularity="total"))
    assert sums(total["USD"]["totals"]) == (4600, 46_000, 410, 5.0, 8900)
