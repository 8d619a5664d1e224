"""Graph API shapes of the Meta sandbox, checked raw and through the official SDK."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

import httpx
import pytest

from omnify.integrations.base import TokenSet
from omnify.integrations.meta.sandbox import MetaSandbox, parse_fields
from omnify.integrations.sandbox_common import SandboxServer

Env = tuple[MetaSandbox, SandboxServer]


def proof(secret: str, token: str) -> str:
    return hmac.new(secret.encode(), token.encode(), hashlib.sha256).hexdigest()


async def test_paths_versions_and_token_placement(meta_sandbox: Env, meta_tokens: TokenSet) -> None:
    _, server = meta_sandbox
    tok = meta_tokens.access_token
    async with httpx.AsyncClient(base_url=server.url) as c:
        for path in ("/v26.0/act_1000003/campaigns", "/v26.0/act_1000003/campaigns/", "/v25.0/act_1000003/campaigns",
                     "/act_1000003/campaigns"):
            r = await c.get(path, params={"access_token": tok, "fields": "id,name"})
            assert r.status_code == 200, (path, r.text)
            assert len(r.json()["data"]) == 2 and set(r.json()["data"][0]) == {"id", "name"}
        for gone in ("/v22.0/act_1000003/campaigns", "/v19.0/me"):  # switched off by Meta
            r = await c.get(gone, params={"access_token": tok})
            assert r.status_code == 400 and r.json()["error"]["code"] == 2635, r.text
            assert "latest version: v27.0" in r.json()["error"]["message"]
        r = await c.get("/v99.0/me", params={"access_token": tok})
        assert r.json()["error"]["code"] == 100 and r.json()["error"]["error_subcode"] == 33
        r = await c.get("/v26.0/me", headers={"Authorization": f"OAuth {tok}"})
        assert r.json()["id"]
        assert "X-Business-Use-Case-Usage".lower() in (await c.get(
            "/v26.0/act_1000003", params={"access_token": tok})).headers


async def test_graph_error_objects(meta_sandbox: Env, meta_tokens: TokenSet) -> None:
    sandbox, server = meta_sandbox
    tok = meta_tokens.access_token
    async with httpx.AsyncClient(base_url=server.url) as c:
        cases = [
            (await c.get("/v26.0/me"), 2500, None),
            (await c.get("/v26.0/me", params={"access_token": "garbage"}), 190, None),
            (await c.get("/v26.0/act_1000003/campaigns", params={"access_token": tok, "fields": "id,bogus"}), 100,
             None),
            (await c.get("/v26.0/act_42/campaigns", params={"access_token": tok}), 100, 33),
            (await c.get("/v26.0/me", params={"access_token": tok, "appsecret_proof": "0" * 64}), 100, None),
            (await c.get("/v26.0/act_1000003/insights", params={"access_token": tok, "time_range": "{bad"}), 100,
             None),
            (await c.get("/v26.0/act_1000003/campaigns", params={"access_token": tok, "after": "%%%"}), 100, None),
        ]
        camp = next(iter(sandbox.world.account("1000003").campaigns))
        cases.append((await c.post(f"/v26.0/{camp}", data={"access_token": tok, "status": "SLEEPING"}), 100, None))
    for resp, code, sub in cases:
        assert resp.status_code == 400, resp.text
        err = resp.json()["error"]
        assert err["code"] == code and err["type"] and err["message"] and err["fbtrace_id"]
        assert err.get("error_subcode") == sub
    ok_proof = proof(sandbox.config.app_secret, tok)
    async with httpx.AsyncClient(base_url=server.url) as c:
        assert (await c.get("/v26.0/me", params={"access_token": tok, "appsecret_proof": ok_proof})).status_code == 200


async def test_paging_cursors_and_next(meta_sandbox: Env, meta_tokens: TokenSet) -> None:
    _, server = meta_sandbox
    async with httpx.AsyncClient(base_url=server.url) as c:
        params = {"access_token": meta_tokens.access_token, "limit": "2", "fields": "id"}
        first = (await c.get("/v26.0/act_1000001/campaigns", params=params)).json()
        assert set(first["paging"]["cursors"]) == {"before", "after"} and "next" in first["paging"]
        nxt = (await c.get(first["paging"]["next"])).json()  # the next URL works as given
        last = (await c.get("/v26.0/act_1000001/campaigns",
                            params={**params, "after": nxt["paging"]["cursors"]["after"]})).json()
        ids = [x["id"] for page in (first, nxt, last) for x in page["data"]]
        assert len(ids) == 5 == len(set(ids))
        assert "next" not in last["paging"] and "previous" in last["paging"]


async def test_insights_shape(meta_sandbox: Env, meta_tokens: TokenSet) -> None:
    sandbox, server = meta_sandbox
    acc = sandbox.world.account("1000003")
    day = acc.metrics.end - timedelta(days=2)
    async with httpx.AsyncClient(base_url=server.url) as c:
        r = await c.get("/v26.0/act_1000003/insights", params={
            "access_token": meta_tokens.access_token, "level": "campaign", "time_increment": "all_days",
            "time_range": f'{{"since":"{(day - timedelta(days=6)).isoformat()}","until":"{day.isoformat()}"}}',
            "fields": "campaign_id,spend,impressions,clicks,actions,action_values,date_start,date_stop"})
    rows = r.json()["data"]
    assert len(rows) == 2
    for row in rows:
        assert isinstance(row["spend"], str) and isinstance(row["impressions"], str)
        assert row["date_start"] == (day - timedelta(days=6)).isoformat() and row["date_stop"] == day.isoformat()
        assert row["campaign_id"] in acc.campaigns


def test_fields_parser() -> None:
    assert parse_fields("id,creative{id,title},insights.limit(2){spend}") == {
        "id": None, "creative": {"id": None, "title": None}, "insights": {"spend": None}}
    with pytest.raises(Exception, match="Syntax"):
        parse_fields("id,{x}")
    with pytest.raises(Exception, match="Syntax"):
        parse_fields("id,creative{id")


@pytest.mark.filterwarnings("ignore:campaigns does not allow field")
def test_official_sdk_drives_the_sandbox(meta_sandbox: Env, meta_tokens: TokenSet) -> None:
    """facebook-business, pointed at the sandbox, works unchanged (paging, insights, writes, errors)."""
    sdk = pytest.importorskip("facebook_business")
    from facebook_business.adobjects.adaccount import AdAccount
    from facebook_business.adobjects.adsinsights import AdsInsights
    from facebook_business.adobjects.campaign import Campaign
    from facebook_business.adobjects.user import User
    from facebook_business.api import FacebookAdsApi
    from facebook_business.exceptions import FacebookRequestError
    from facebook_business.session import FacebookSession

    sandbox, server = meta_sandbox
    session = FacebookSession(sandbox.config.app_id, sandbox.config.app_secret, meta_tokens.access_token)
    session.GRAPH = server.url  # the one knob: where the Graph lives
    api = FacebookAdsApi(session, api_version="v26.0")
    assert sdk is not None

    accounts = list(User(fbid="me", api=api).get_ad_accounts(fields=["account_id", "name", "currency"]))
    assert [a["account_id"] for a in accounts] == ["1000001", "1000002", "1000003"]

    big = AdAccount("act_1000001", api=api)
    campaigns = list(big.get_campaigns(fields=[Campaign.Field.name, Campaign.Field.daily_budget],
                                       params={"limit": 2}))  # 3 pages through cursors
    assert len(campaigns) == 5
    acc = sandbox.world.account("1000001")
    assert {c["id"]: int(c["daily_budget"]) for c in campaigns} == {
        k: v.daily_budget_minor for k, v in acc.campaigns.items()}
    assert len(list(big.get_ads(fields=["name", "creative"], params={"limit": 100}))) == 200

    day = acc.metrics.end - timedelta(days=4)
    rows = list(big.get_insights(
        fields=[AdsInsights.Field.ad_id, AdsInsights.Field.spend, AdsInsights.Field.actions],
        params={"level": "ad", "time_increment": 1, "time_range": {"since": day.isoformat(), "until": day.isoformat()},
                "limit": 50}))
    truth = acc.metric_rows(day, day)
    assert len(rows) == len(truth)
    assert sum(round(float(r["spend"]) * 100) for r in rows) == int(truth.spend_minor.sum())

    small = sandbox.world.account("1000003")
    camp_id = next(iter(small.campaigns))
    Campaign(camp_id, api=api).api_update(params={"status": "PAUSED"})
    assert small.campaigns[camp_id].status == "paused"
    Campaign(camp_id, api=api).api_update(params={"status": "ACTIVE"})
    assert Campaign(camp_id, api=api).api_get(fields=["status"])["status"] == "ACTIVE"

    with pytest.raises(FacebookRequestError) as info:
        AdAccount("act_1000003", api=api).get_campaigns(fields=["nonexistent_field"])
    assert info.value.api_error_code() == 100
    sandbox.world.reset()
