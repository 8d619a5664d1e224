"""The Google sandbox answers the GAQL it is sent (and refuses what Google would)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from omnify.integrations.base import TokenSet
from omnify.integrations.google import gaql
from omnify.integrations.google.sandbox import GoogleSandbox
from omnify.integrations.sandbox_common import SandboxServer

Env = tuple[GoogleSandbox, SandboxServer]
DIRECT = "3456789012"
BIG = "1234567890"


async def stream(env: Env, tokens: TokenSet, query: str, customer: str = DIRECT) -> httpx.Response:
    sandbox, server = env
    headers = {"Authorization": f"Bearer {tokens.access_token}", "developer-token": sandbox.config.developer_token}
    if customer != DIRECT:
        headers["login-customer-id"] = sandbox.config.manager_id
    async with httpx.AsyncClient(base_url=server.url) as c:
        return await c.post(f"/v26/customers/{customer}/googleAds:searchStream", json={"query": query},
                            headers=headers)


def results(resp: httpx.Response) -> list[dict[str, Any]]:
    assert resp.status_code == 200, resp.text
    return [r for batch in resp.json() for r in batch.get("results", [])]


async def test_select_shapes_and_field_mask(google_sandbox: Env, google_tokens: TokenSet) -> None:
    resp = await stream(google_sandbox, google_tokens,
                        "SELECT campaign.id, campaign.name, campaign_budget.amount_micros FROM campaign")
    body = resp.json()
    assert body[0]["fieldMask"] == "campaign.id,campaign.name,campaignBudget.amountMicros"
    rows = results(resp)
    assert len(rows) == 2
    row = rows[0]
    assert set(row) == {"campaign", "campaignBudget"}
    assert row["campaign"]["resourceName"] == f"customers/{DIRECT}/campaigns/{row['campaign']['id']}"
    assert isinstance(row["campaign"]["id"], str) and isinstance(row["campaignBudget"]["amountMicros"], str)
    assert "status" not in row["campaign"]  # only what was selected


async def test_where_order_limit_are_applied(google_sandbox: Env, google_tokens: TokenSet) -> None:
    sandbox, _ = google_sandbox
    acc = sandbox.world.account(BIG)
    day = acc.metrics.end - timedelta(days=3)
    q = (f"SELECT ad_group_ad.ad.id, metrics.cost_micros, segments.date FROM ad_group_ad "
         f"WHERE segments.date = '{day.isoformat()}' AND metrics.impressions > 0 "
         f"ORDER BY metrics.cost_micros DESC LIMIT 5")
    rows = results(await stream(google_sandbox, google_tokens, q, BIG))
    costs = [int(r["metrics"]["costMicros"]) for r in rows]
    assert len(rows) == 5 and costs == sorted(costs, reverse=True)
    j = (day - acc.metrics.start).days
    top = sorted((int(acc.metrics.spend_minor[a.index, j]) for a in acc.ads.values()), reverse=True)[:5]
    assert [c // 10_000 for c in costs] == top
    assert {r["segments"]["date"] for r in rows} == {day.isoformat()}

    some_group = next(iter(acc.ad_groups))
    rows = results(await stream(google_sandbox, google_tokens,
                                f"SELECT ad_group_ad.ad.id, ad_group.id FROM ad_group_ad WHERE ad_group.id = {some_group}",
                                BIG))
    assert len(rows) == 10 and {r["adGroup"]["id"] for r in rows} == {some_group}
    rows = results(await stream(google_sandbox, google_tokens,
                                "SELECT campaign.id FROM campaign WHERE campaign.status IN ('PAUSED', 'REMOVED')"))
    assert rows == []
    rows = results(await stream(google_sandbox, google_tokens,
                                "SELECT campaign.id, metrics.clicks FROM campaign WHERE segments.date DURING LAST_7_DAYS"))
    assert len(rows) == 2 and all(int(r["metrics"]["clicks"]) >= 0 for r in rows)


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("SELECT campaign.bogus FROM campaign", "UNRECOGNIZED_FIELD"),
        ("SELECT ad_group.id FROM campaign", "PROHIBITED_RESOURCE_TYPE_IN_SELECT_CLAUSE"),
        ("SELECT campaign.id FROM nowhere", "INVALID_RESOURCE_NAME"),
        ("SELECT campaign.id, segments.date, metrics.clicks FROM campaign", "MISSING_DATE_RANGE"),
        ("SELECT campaign.id campaign", "EXPECTED_FROM"),
        ("SELECT campaign.id FROM campaign WHERE", "UNEXPECTED_END_OF_QUERY"),
        ("SELECT campaign.id FROM campaign LIMIT 0", "LIMIT_VALUE_NOT_POSITIVE"),
        ("", "QUERY_ERROR"),
    ],
)
async def test_bad_queries_are_refused(google_sandbox: Env, google_tokens: TokenSet, query: str, code: str) -> None:
    resp = await stream(google_sandbox, google_tokens, query)
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert err["status"] == "INVALID_ARGUMENT"
    assert err["details"][0]["errors"][0]["errorCode"] == {"queryError": code}


def test_parser_and_matcher() -> None:
    q = gaql.parse("select a.b, c.d FROM campaign where a.b between '2026-01-01' and '2026-01-31' "
                   "and c.d not in (1, 2) and e.f is not null and g.h like 'Acme%' order by a.b desc, c.d limit 7")
    assert q.select == ["a.b", "c.d"] and q.resource == "campaign" and q.limit == 7
    assert q.order_by == [("a.b", True), ("c.d", False)]
    ops = [c.op for c in q.where]
    assert ops == ["BETWEEN", "NOT_IN", "IS_NOT_NULL", "LIKE"]
    assert gaql.matches("2026-01-15", q.where[0]) and not gaql.matches("2026-02-01", q.where[0])
    assert gaql.matches("3", q.where[1]) and not gaql.matches("2", q.where[1])
    assert gaql.matches("x", q.where[2]) and not gaql.matches(None, q.where[2])
    assert gaql.matches("Acme Outdoor", q.where[3]) and not gaql.matches("Bright", q.where[3])
    assert gaql.matches(10, gaql.Condition("x", ">=", (9,)))
    assert gaql.matches("ENABLED", gaql.Condition("x", "=", ("ENABLED",)))
    with pytest.raises(gaql.GaqlError):
        gaql.parse("SELECT a FROM b WHERE c IN (1, 2")
    with pytest.raises(gaql.GaqlError):
        gaql.parse("SELECT a FROM b WHERE c ~ 1")
