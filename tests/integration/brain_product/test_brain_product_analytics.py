"""Analytics endpoint: hand-computed KPIs, per-currency reports, the cache, and the route matrix.

The hand-written fixture below is stored in the synced tables (``ad_accounts``,
``campaigns``, ``ads``, ``ad_metrics_daily``: what omnify.sync writes) and read back
through the real SQL. It is shaped to catch the mistakes such a read can make: one
campaign's day is split over two ads (the database must sum them), a campaign-level row
repeats an ad-level total (it must not be counted twice), and another client of the same
organization has rows on the same days (they must not leak in). ``load_rows`` is wrapped,
not replaced, only to count database reads for the cache test.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from omnify.analytics import cache as cache_mod
from omnify.analytics import repository
from omnify.analytics.kpis import Dimension, MetricRow
from omnify.connections.models import Connection
from omnify.core.db import Database, bind_tenant
from omnify.settings import Settings
from omnify.sync import repository as sync_repository
from omnify.sync.models import AdMetricDaily, SyncAd, SyncAdAccount, SyncCampaign
from tests.integration.brain_product.conftest import Team, new_client, org_url

D = date.fromisoformat
#: (day, currency, spend, impressions, clicks, conversions, revenue, platform, campaign, campaign name);
#: every figure asserted below is summed by hand from these lines.
FIXTURE = [
    # previous period (2026-02-22..2026-02-28)
    MetricRow(D("2026-02-25"), "USD", 1_000, 10_000, 100, 4, 3_000, "meta_ads", "c1", "Spring"),
    # current period (2026-03-01..2026-03-07); c1's first day is stored as two ads' rows
    MetricRow(D("2026-03-01"), "USD", 2_000, 40_000, 200, 5, 10_000, "meta_ads", "c1", "Spring"),
    MetricRow(D("2026-03-02"), "USD", 1_000, 10_000, 50, 0, 0, "google_ads", "c2", "Search"),
    MetricRow(D("2026-03-03"), "USD", 1_000, 50_000, 250, 5, 5_000, "meta_ads", "c1", "Spring"),
    MetricRow(D("2026-03-03"), "EUR", 700, 7_000, 70, 1, 2_100, "meta_ads", "c3", "Herbst"),
]
#: How a fixture line is split over ads: (ad suffix, fraction numerator of 4).
SPLIT = {("c1", D("2026-03-01")): (("a", 3), ("b", 1))}
CAMPAIGNS = {"c1": ("meta_ads", "USD"), "c2": ("google_ads", "USD"), "c3": ("meta_ads", "EUR")}


async def store_fixture(database: Database, org_id: str, client_id: str,
                        rows: list[MetricRow] = FIXTURE) -> dict[str, str]:
    """Write ``rows`` as a sync would (ad level, plus one campaign-level echo); campaign
    fixture keys -> the stored campaigns' ids."""
    org, client = uuid.UUID(org_id), uuid.UUID(client_id)
    keys: dict[str, str] = {}
    async with database.sessionmaker() as s:
        await bind_tenant(s, org)
        conns: dict[str, uuid.UUID] = {}
        accounts: dict[tuple[str, str], uuid.UUID] = {}
        ads: dict[tuple[str, str], uuid.UUID] = {}
        camps: dict[str, uuid.UUID] = {}
        for platform in sorted({p for p, _ in CAMPAIGNS.values()}):
            conns[platform] = uuid.uuid4()
            s.add(Connection(id=conns[platform], org_id=org, client_id=client, platform=platform))
        await s.flush()
        for (platform, currency) in sorted(set(CAMPAIGNS.values())):
            accounts[(platform, currency)] = uuid.uuid4()
            s.add(SyncAdAccount(id=accounts[(platform, currency)], org_id=org, client_id=client,
                                connection_id=conns[platform], platform=platform, external_id=f"acct-{currency}",
                                name=f"{platform} {currency}", currency=currency, timezone="UTC", status="active"))
        await s.flush()
        for key, (platform, currency) in CAMPAIGNS.items():
            name = next(r.label for r in rows if r.key == key)
            camps[key] = uuid.uuid4()
            keys[key] = str(camps[key])
            common = {"org_id": org, "client_id": client, "connection_id": conns[platform], "platform": platform,
                      "ad_account_id": accounts[(platform, currency)]}
            s.add(SyncCampaign(id=camps[key], external_id=f"{key}-ext", name=str(name), status="active",
                               currency=currency, **common))
            await s.flush()
            for suffix in ("a", "b"):
                ads[(key, suffix)] = uuid.uuid4()
                s.add(SyncAd(id=ads[(key, suffix)], external_id=f"{key}-{suffix}", name=f"{name} {suffix}",
                             status="active", campaign_id=camps[key], **common))
        await s.flush()
        for r in rows:
            assert r.key is not None and r.platform is not None
            platform, currency = CAMPAIGNS[r.key]
            common = {"org_id": org, "client_id": client, "connection_id": conns[platform], "platform": platform,
                      "ad_account_id": accounts[(platform, currency)], "campaign_id": camps[r.key], "day": r.day,
                      "currency": r.currency}
            for suffix, part in SPLIT.get((r.key, r.day), (("a", 4),)):
                s.add(AdMetricDaily(level="ad", entity_external_id=f"{r.key}-{suffix}", ad_id=ads[(r.key, suffix)],
                                    spend_minor=r.spend_minor * part // 4, impressions=r.impressions * part // 4,
                                    clicks=r.clicks * part // 4, conversions=r.conversions * part / 4,
                                    revenue_minor=r.revenue_minor * part // 4, **common))
            # Platforms also report the campaign's total; the analytics read must skip it.
            s.add(AdMetricDaily(level="campaign", entity_external_id=f"{r.key}-ext", spend_minor=r.spend_minor,
                                impressions=r.impressions, clicks=r.clicks, conversions=r.conversions,
                                revenue_minor=r.revenue_minor, **common))
        await s.flush()
        # Rows written behind the sync's back: sum them into the rollups as the sync would.
        await sync_repository.rebuild_rollups(s, org, client)
        await s.commit()
    return keys


@pytest.fixture
def loader_spy(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Counts the database reads; the rows still come from the real query."""
    calls: list[dict[str, Any]] = []
    real = repository.load_rows

    async def load_rows(session: Any, org_id: uuid.UUID, client_id: uuid.UUID, since: date, until: date,
                        group_by: Dimension) -> list[MetricRow]:
        calls.append({"since": since, "until": until, "group_by": group_by})
        return await real(session, org_id, client_id, since, until, group_by)

    monkeypatch.setattr(repository, "load_rows", load_rows)
    return calls


async def fixture_client(api: httpx.AsyncClient, team: Team, database: Database) -> tuple[str, dict[str, str]]:
    """A client holding FIXTURE, next to a sibling client whose rows must never show."""
    sibling = await new_client(api, team.owner)
    noise = [MetricRow(r.day, r.currency, r.spend_minor * 7, r.impressions, r.clicks, r.conversions,
                       r.revenue_minor, r.platform, r.key, r.label) for r in FIXTURE]
    await store_fixture(database, team.owner.org_id, sibling, noise)
    client_id = await new_client(api, team.owner)
    return client_id, await store_fixture(database, team.owner.org_id, client_id)


def _hits(result: str) -> float:
    return REGISTRY.get_sample_value("omnify_cache_requests_total", {"cache": "analytics", "result": result}) or 0.0


async def test_kpis_match_hand_computed_fixture_and_second_call_is_cached(
    api: httpx.AsyncClient, team: Team, loader_spy: list[dict[str, Any]], brain_settings: Settings,
    database: Database,
) -> None:
    client_id, _ = await fixture_client(api, team, database)
    url = org_url(team.viewer, "clients", client_id, "analytics")
    params = {"since": "2026-03-01", "until": "2026-03-07", "granularity": "week", "group_by": "none"}
    misses, hits = _hits("miss"), _hits("hit")
    first = await api.get(url, headers=team.viewer.headers, params=params)
    assert first.status_code == 200, first.text
    assert first.headers["X-Cache"] == "miss" and len(loader_spy) == 1
    assert loader_spy[0]["since"] == D("2026-02-22")  # one read covers the comparison period too
    body = first.json()
    assert body["previous_since"] == "2026-02-22" and body["previous_until"] == "2026-02-28"
    by = {c["currency"]: c for c in body["currencies"]}
    assert set(by) == {"EUR", "USD"}  # never added together
    usd = by["USD"]["totals"]
    # spend 4000, impressions 100000, clicks 500, conversions 10, revenue 15000 (by hand)
    assert (usd["spend_minor"], usd["impressions"], usd["clicks"], usd["conversions"], usd["revenue_minor"]) == (
        4_000, 100_000, 500, 10, 15_000)
    assert usd["ctr"] == 0.005 and usd["cpc_minor"] == 8.0 and usd["cpm_minor"] == 40.0
    assert usd["cpa_minor"] == 400.0 and usd["roas"] == 3.75
    # Previous: spend 1000, conv 4, revenue 3000 -> spend +300 %, conversions +150 %, ROAS 3.0 -> 3.75 = +25 %.
    assert by["USD"]["previous"]["spend_minor"] == 1_000
    assert by["USD"]["change"]["spend_minor"] == 3.0 and by["USD"]["change"]["conversions"] == 1.5
    assert by["USD"]["change"]["roas"] == 0.25
    # Week of Monday 2026-03-02; the range starts on Sunday 03-01, which is its own clipped bucket.
    assert [(r["period"], r["spend_minor"]) for r in by["USD"]["rows"]] == [("2026-03-01", 2_000),
                                                                          ("2026-03-02", 2_000)]
    eur = by["EUR"]
    assert eur["totals"]["spend_minor"] == 700 and eur["totals"]["roas"] == 3.0
    assert eur["previous"]["spend_minor"] == 0 and eur["change"]["spend_minor"] is None

    second = await api.get(url, headers=team.viewer.headers, params=params)
    assert second.status_code == 200 and second.headers["X-Cache"] == "hit"
    assert second.json() == body
    assert len(loader_spy) == 1  # served from cache: the loader (the DB read) did not run
    assert _hits("miss") == misses + 1 and _hits("hit") == hits + 1

    # A sync writing rows for this client invalidates its reports.
    await cache_mod.invalidate_client(uuid.UUID(team.owner.org_id), uuid.UUID(client_id), brain_settings)
    third = await api.get(url, headers=team.viewer.headers, params=params)
    assert third.headers["X-Cache"] == "miss" and len(loader_spy) == 2


async def test_group_by_campaign_daily_without_comparison(
    api: httpx.AsyncClient, team: Team, loader_spy: list[dict[str, Any]], database: Database
) -> None:
    client_id, keys = await fixture_client(api, team, database)
    resp = await api.get(org_url(team.owner, "clients", client_id, "analytics"), headers=team.owner.headers,
                         params={"since": "2026-03-01", "until": "2026-03-03", "group_by": "campaign",
                                 "compare": "false", "top": 1})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["previous_since"] is None
    usd = next(c for c in body["currencies"] if c["currency"] == "USD")
    assert usd["previous"] is None and usd["change"] is None
    assert usd["keys_total"] == 2 and usd["keys_omitted"] == 1  # c1 (3000) kept, c2 (1000) omitted
    assert [(r["period"], r["key"], r["label"], r["platform"], r["spend_minor"]) for r in usd["rows"]] == [
        ("2026-03-01", keys["c1"], "Spring", "meta_ads", 2_000), ("2026-03-03", keys["c1"], "Spring", "meta_ads", 1_000)]
    assert usd["rows"][0]["ctr"] == 0.005 and usd["rows"][1]["cpa_minor"] == 200.0


async def test_analytics_route_matrix(api: httpx.AsyncClient, team: Team, loader_spy: list[dict[str, Any]]) -> None:
    client_id = await new_client(api, team.owner)
    url = org_url(team.owner, "clients", client_id, "analytics")
    assert (await api.get(url)).status_code == 401
    assert (await api.get(url, headers=team.viewer.headers)).status_code == 200  # defaults: last 30 days
    for bad in ({"since": "2026-03-05", "until": "2026-03-01"}, {"since": "2020-01-01", "until": "2026-01-01"},
                {"granularity": "hour"}, {"group_by": "creative"}, {"since": "yesterday"}, {"top": 0}):
        resp = await api.get(url, headers=team.owner.headers, params=bad)
        assert resp.status_code == 422, (bad, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
    assert (await api.get(url, headers=team.outsider.headers)).status_code == 404
    other = org_url(team.outsider, "clients", client_id, "analytics")
    assert (await api.get(other, headers=team.outsider.headers)).status_code == 404
    assert (await api.get(org_url(team.owner, "clients", str(uuid.uuid4()), "analytics"),
                          headers=team.owner.headers)).status_code == 404
    assert (await api.get(org_url(team.owner, "clients", "x", "analytics"),
                          headers=team.owner.headers)).status_code == 422
