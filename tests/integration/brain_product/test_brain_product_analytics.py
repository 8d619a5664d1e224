"""Analytics endpoint: hand-computed KPIs, per-currency reports, the cache, and the route matrix.

The rows normally come from the synced ``ad_metrics_daily`` table (omnify.sync), which
is not in this build yet: the read (``analytics.repository.load_rows``) is fed a fixed,
hand-written fixture through a spy that also counts database reads, so the cache test can
prove the second call never reached the loader.
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
from omnify.settings import Settings
from tests.integration.brain_product.conftest import Team, new_client, org_url

D = date.fromisoformat
FIXTURE = [
    # previous period (2026-02-22..2026-02-28)
    MetricRow(D("2026-02-25"), "USD", 1_000, 10_000, 100, 4, 3_000, "meta_ads", "c1", "Spring"),
    # current period (2026-03-01..2026-03-07)
    MetricRow(D("2026-03-01"), "USD", 2_000, 40_000, 200, 5, 10_000, "meta_ads", "c1", "Spring"),
    MetricRow(D("2026-03-02"), "USD", 1_000, 10_000, 50, 0, 0, "google_ads", "c2", "Search"),
    MetricRow(D("2026-03-03"), "USD", 1_000, 50_000, 250, 5, 5_000, "meta_ads", "c1", "Spring"),
    MetricRow(D("2026-03-03"), "EUR", 700, 7_000, 70, 1, 2_100, "meta_ads", "c3", "Herbst"),
]


@pytest.fixture
def loader_spy(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    async def load_rows(session: Any, org_id: uuid.UUID, client_id: uuid.UUID, since: date, until: date,
                        group_by: Dimension) -> list[MetricRow]:
        calls.append({"since": since, "until": until, "group_by": group_by})
        rows = [r for r in FIXTURE if since <= r.day <= until]
        if group_by == Dimension.NONE:
            return [MetricRow(r.day, r.currency, r.spend_minor, r.impressions, r.clicks, r.conversions,
                              r.revenue_minor) for r in rows]
        return rows

    monkeypatch.setattr(repository, "load_rows", load_rows)
    return calls


def _hits(result: str) -> float:
    return REGISTRY.get_sample_value("omnify_cache_requests_total", {"cache": "analytics", "result": result}) or 0.0


async def test_kpis_match_hand_computed_fixture_and_second_call_is_cached(
    api: httpx.AsyncClient, team: Team, loader_spy: list[dict[str, Any]], brain_settings: Settings
) -> None:
    client_id = await new_client(api, team.owner)
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
    api: httpx.AsyncClient, team: Team, loader_spy: list[dict[str, Any]]
) -> None:
    client_id = await new_client(api, team.owner)
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
        ("2026-03-01", "c1", "Spring", "meta_ads", 2_000), ("2026-03-03", "c1", "Spring", "meta_ads", 1_000)]
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
