"""LinkedIn connector over real HTTP against the LinkedIn sandbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from omnify.integrations.base import (
    AdConnector,
    AuthRevoked,
    EntityStatus,
    InvalidRequest,
    Level,
    PermissionDenied,
    RateLimited,
    TokenSet,
)
from omnify.integrations.http import RetryPolicy
from omnify.integrations.linkedin import mapping, restli, version
from omnify.integrations.linkedin.sandbox import LinkedInSandbox
from tests.integration.integrations_linkedin.linkedin_helpers import (
    BIG,
    EUR,
    LINKEDIN_END,
    LINKEDIN_REDIRECT,
    SMALL,
    Dance,
    MakeConnector,
    auth_code_for,
)
from tests.integration.integrations_shared.connector_helpers import RecordingObserver


def _granted(sandbox: LinkedInSandbox, **kw: Any) -> TokenSet:
    body = sandbox.grant_tokens(**kw)
    return TokenSet(access_token=body["access_token"], refresh_token=body.get("refresh_token"),
                    expires_at=datetime.now(UTC) + timedelta(seconds=body["expires_in"]))


def _analytics_calls(sandbox: LinkedInSandbox) -> int:
    return len([e for e in sandbox.journal.entries("/rest/adAnalytics") if e.method == "GET"])


# ------------------------------------------------------------------------------ OAuth
async def test_member_authorization_exchange_refresh_and_revoke(linkedin_sandbox: LinkedInSandbox,
                                                                make_linkedin: MakeConnector) -> None:
    async with make_linkedin() as c:
        assert isinstance(c, AdConnector)
        start = c.authorize_url(redirect_uri=LINKEDIN_REDIRECT, state="st-7")
        url = httpx.URL(start.url)
        assert url.path == "/oauth/v2/authorization" and url.params["response_type"] == "code"
        assert url.params["scope"] == "r_ads rw_ads r_ads_reporting" and "%20" in start.url
        assert url.params["client_id"] == linkedin_sandbox.client_id and start.code_verifier is None

        code = await auth_code_for(c, "st-7")
        tokens = await c.exchange_code(code=code, redirect_uri=LINKEDIN_REDIRECT)
        assert tokens.access_token.startswith("li-at-") and tokens.refresh_token
        assert sorted(tokens.scopes) == ["r_ads", "r_ads_reporting", "rw_ads"]
        assert tokens.expires_at is not None and tokens.expires_at > datetime.now(UTC) + timedelta(days=59)
        refresh_until = datetime.fromisoformat(tokens.extra["refresh_token_expires_at"])
        assert refresh_until > datetime.now(UTC) + timedelta(days=364)

        with pytest.raises(InvalidRequest) as replay:  # a code is single-use
            await c.exchange_code(code=code, redirect_uri=LINKEDIN_REDIRECT)
        assert replay.value.platform_code == "invalid_request"

        # A refresh: new access token, the same refresh token, whose lifetime keeps running.
        fresh = await c.refresh(tokens)
        assert fresh.access_token != tokens.access_token and fresh.refresh_token == tokens.refresh_token
        assert datetime.fromisoformat(fresh.extra["refresh_token_expires_at"]) <= refresh_until + timedelta(
            seconds=2)
        assert c.tokens is fresh and (await c.verify())["user_id"] == "sbxMember01"

        await c.revoke(fresh)
        with pytest.raises(AuthRevoked):
            await c.verify()
        with pytest.raises(AuthRevoked):  # the grant is gone: its refresh token too
            await c.refresh(fresh)


async def test_denied_consent_and_unauthorized_scope_come_back_as_errors(linkedin_sandbox: LinkedInSandbox,
                                                                         make_linkedin: MakeConnector) -> None:
    async with make_linkedin() as c:
        start = c.authorize_url(redirect_uri=LINKEDIN_REDIRECT, state="no")
    async with httpx.AsyncClient() as browser:
        denied = await browser.post(start.url, data={"decision": "deny"})
    back = httpx.URL(denied.headers["location"])
    assert back.params["error"] == "user_cancelled_authorize" and back.params["state"] == "no"

    async with make_linkedin(scopes=("r_ads", "w_member_social_feed")) as c:
        start = c.authorize_url(redirect_uri=LINKEDIN_REDIRECT, state="sc")
    async with httpx.AsyncClient() as browser:
        refused = await browser.get(start.url)
    back = httpx.URL(refused.headers["location"])
    assert back.params["error"] == "unauthorized_scope_error" and "w_member_social_feed" in back.params[
        "error_description"]


# ------------------------------------------------------------------------------ reads
async def test_reads_page_through_accounts_campaigns_groups_and_creatives(
        linkedin_sandbox: LinkedInSandbox, make_linkedin: MakeConnector, linkedin_dance: Dance) -> None:
    tokens = await linkedin_dance()
    world = linkedin_sandbox.world.account(BIG)
    async with make_linkedin(tokens, page_size=3) as c:
        info = await c.verify()
        assert info["accounts"] == [BIG, EUR, SMALL] and info["api_version"] == version.PINNED
        accounts = {a.external_id: a for a in await c.list_ad_accounts()}
        assert accounts[EUR].currency == "EUR" and accounts[BIG].timezone == "UTC"

        campaigns = [x async for x in c.campaigns(BIG)]
        assert sorted(x.external_id for x in campaigns) == sorted(world.campaigns)
        for camp in campaigns:
            truth = world.campaigns[camp.external_id]
            assert camp.daily_budget_minor == truth.daily_budget_minor and camp.status is EntityStatus.ACTIVE
            assert camp.objective in ("WEBSITE_CONVERSIONS", "LEAD_GENERATION")
        groups = [x async for x in c.ad_groups(BIG)]
        assert [g.external_id for g in groups] == [x.external_id for x in campaigns]
        assert all(g.daily_budget_minor is None and g.targeting["campaign_group"]["name"] for g in groups)
        ads = [x async for x in c.ads(BIG)]
        assert sorted(a.external_id for a in ads) == sorted(world.ads)
        assert all(a.campaign_external_id == world.ads[a.external_id].campaign_id for a in ads)
        assert any(a.creative and a.creative.title for a in ads)  # text ads carry a headline
    pages = [e for e in linkedin_sandbox.journal.entries("/creatives") if e.method == "GET"]
    assert len(pages) == 8  # 24 creatives, 3 per page
    assert len([e for e in linkedin_sandbox.journal.entries("/adCampaigns") if e.method == "GET"]) == 2


async def test_daily_metrics_match_the_platform_exactly(linkedin_sandbox: LinkedInSandbox,
                                                       make_linkedin: MakeConnector) -> None:
    since, until = LINKEDIN_END - timedelta(days=44), LINKEDIN_END
    truth = linkedin_sandbox.world.account(BIG).metric_rows(since, until)
    async with make_linkedin(_granted(linkedin_sandbox)) as c:
        rows = [m async for m in c.daily_metrics(BIG, since, until)]
    assert len(rows) == len(truth)
    assert sum(r.spend_minor for r in rows) == int(truth.spend_minor.sum())
    assert sum(r.impressions for r in rows) == int(truth.impressions.sum())
    assert sum(r.clicks for r in rows) == int(truth.clicks.sum())
    assert sum(r.revenue_minor for r in rows) == int(truth.revenue_minor.sum())
    assert sum(r.conversions for r in rows) == pytest.approx(float(truth.conversions.sum()))
    assert {r.day for r in rows} <= {since + timedelta(days=i) for i in range(45)}
    assert all(r.level is Level.AD and r.currency == "USD" and r.reach for r in rows)
    assert _analytics_calls(linkedin_sandbox) == 2  # 45 days in 31-day windows


async def test_twenty_field_limit_chunks_metrics_and_merges_them(linkedin_sandbox: LinkedInSandbox,
                                                                  make_linkedin: MakeConnector) -> None:
    day = LINKEDIN_END - timedelta(days=3)
    tokens = _granted(linkedin_sandbox)
    async with make_linkedin(tokens) as c:
        whole = sorted([m async for m in c.daily_metrics(SMALL, day, day)], key=lambda m: m.entity_external_id)
    linkedin_sandbox.journal.clear()
    async with make_linkedin(tokens, fields_per_call=5) as c:  # 3 metrics + dateRange + pivotValues per call
        chunked = sorted([m async for m in c.daily_metrics(SMALL, day, day)], key=lambda m: m.entity_external_id)
    assert chunked == whole and whole
    assert _analytics_calls(linkedin_sandbox) == len(mapping.metric_chunks(mapping.ANALYTICS_METRICS, 5)) == 3


async def test_a_window_at_the_element_cap_is_read_again_in_halves(linkedin_sandbox: LinkedInSandbox,
                                                                  make_linkedin: MakeConnector) -> None:
    since, until = LINKEDIN_END - timedelta(days=9), LINKEDIN_END
    tokens = _granted(linkedin_sandbox)
    async with make_linkedin(tokens) as c:
        whole = [m async for m in c.daily_metrics(BIG, since, until)]
    linkedin_sandbox.config.max_elements = 60  # ~24 creatives a day: 10 days do not fit
    linkedin_sandbox.journal.clear()
    async with make_linkedin(tokens, max_elements=60) as c:
        split = [m async for m in c.daily_metrics(BIG, since, until)]
    key = lambda m: (m.day, m.entity_external_id)  # noqa: E731
    assert sorted(split, key=key) == sorted(whole, key=key) and len(whole) > 60
    assert _analytics_calls(linkedin_sandbox) > 2


# ------------------------------------------------------------------------------ writes
async def test_pause_resume_and_budget_change_the_platform(linkedin_sandbox: LinkedInSandbox,
                                                          make_linkedin: MakeConnector) -> None:
    world = linkedin_sandbox.world.account(SMALL)
    campaign_id = next(iter(world.campaigns))
    ad_id = next(iter(world.ads))
    async with make_linkedin(_granted(linkedin_sandbox)) as c:
        paused = await c.set_status(SMALL, Level.CAMPAIGN, campaign_id, EntityStatus.PAUSED)
        assert paused.before == {"status": "active"} and paused.after == {"status": "paused"}
        assert world.campaigns[campaign_id].status == "paused"
        assert {x.external_id: x.status async for x in c.campaigns(SMALL)}[campaign_id] is EntityStatus.PAUSED
        # The ad-group level is the same LinkedIn campaign (LinkedIn has no level in between).
        resumed = await c.set_status(SMALL, Level.AD_GROUP, campaign_id, EntityStatus.ACTIVE)
        assert resumed.before == {"status": "paused"} and world.campaigns[campaign_id].status == "active"

        creative = await c.set_status(SMALL, Level.AD, ad_id, EntityStatus.PAUSED)
        assert creative.entity_external_id == ad_id and world.ads[ad_id].status == "paused"
        assert await c.read_entity(SMALL, Level.AD, ad_id) == {"status": "paused", "daily_budget_minor": None}

        before = world.campaigns[campaign_id].daily_budget_minor
        change = await c.set_daily_budget(SMALL, Level.CAMPAIGN, campaign_id, before + 1250)
        assert change.before == {"daily_budget_minor": before, "currency": "USD"}
        assert world.campaigns[campaign_id].daily_budget_minor == before + 1250
        assert await c.read_entity(SMALL, Level.CAMPAIGN, campaign_id) == {"status": "active",
                                                                           "daily_budget_minor": before + 1250}

        with pytest.raises(InvalidRequest) as too_small:
            await c.set_daily_budget(SMALL, Level.CAMPAIGN, campaign_id, 500)
        assert too_small.value.platform_code == "VALIDATION_FAILED" and "at least 10.00 USD" in str(too_small.value)
        with pytest.raises(InvalidRequest):
            await c.set_daily_budget(SMALL, Level.AD, ad_id, 5000)
        with pytest.raises(InvalidRequest):
            await c.set_status(SMALL, Level.CAMPAIGN, campaign_id, EntityStatus.DELETED)
    writes = [e for e in linkedin_sandbox.journal.entries() if e.method == "POST" and e.path.startswith("/rest/")]
    assert [w.status for w in writes] == [204, 204, 204, 204, 400]


# ------------------------------------------------------------------------------ faults and throttles
async def test_expired_token_is_refreshed_once_and_handed_back(linkedin_sandbox: LinkedInSandbox,
                                                              make_linkedin: MakeConnector) -> None:
    handed: list[TokenSet] = []
    tokens = _granted(linkedin_sandbox)
    async with make_linkedin(tokens, on_tokens=handed.append) as c:
        linkedin_sandbox.injector.configure(expire_tokens=True)
        assert [a.external_id for a in await c.list_ad_accounts()] == [BIG, EUR, SMALL]
    assert len(handed) == 1 and handed[0].refresh_token == tokens.refresh_token
    assert handed[0].access_token != tokens.access_token


async def test_server_errors_are_retried_and_daily_throttles_defer_until_midnight_utc(
        linkedin_sandbox: LinkedInSandbox, make_linkedin: MakeConnector) -> None:
    waits: list[float] = []

    async def no_sleep(seconds: float) -> None:
        waits.append(seconds)

    retry = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05, jitter=0.0, max_retry_after=300.0,
                        sleep=no_sleep)
    async with make_linkedin(_granted(linkedin_sandbox), retry=retry) as c:
        linkedin_sandbox.injector.configure(errors_5xx_next=2, error_status=503)
        assert len([x async for x in c.campaigns(SMALL)]) == 2
        assert len(waits) == 2

        linkedin_sandbox.injector.configure(rate_limit_next=1)
        linkedin_sandbox.journal.clear()
        with pytest.raises(RateLimited) as throttled:
            [x async for x in c.ads(SMALL)]
        now = datetime.now(UTC)
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        assert abs(throttled.value.retry_after - (midnight - now).total_seconds()) < 60
        assert throttled.value.platform_code == "TOO_MANY_REQUESTS"
        assert len(linkedin_sandbox.journal.entries("/creatives")) == 1  # not hammered again

        # The sandbox's own daily quota answers the same way once spent.
        linkedin_sandbox.config.daily_quota = 1  # per resource (adCampaigns) per UTC day
        [x async for x in c.campaigns(SMALL)]
        with pytest.raises(RateLimited):
            [x async for x in c.campaigns(EUR)]
        with pytest.raises(RateLimited):
            [x async for x in c.campaigns(EUR)]


async def test_a_sunset_version_and_a_missing_scope_are_clear_refusals(linkedin_sandbox: LinkedInSandbox,
                                                                     make_linkedin: MakeConnector) -> None:
    tokens = _granted(linkedin_sandbox)
    async with make_linkedin(tokens, api_version="202401") as c:
        with pytest.raises(InvalidRequest) as old:
            await c.list_ad_accounts()
    assert old.value.status == 426 and old.value.platform_code == "NONEXISTENT_VERSION"
    assert "Requested version 20240101 is not active" in str(old.value) and "OMNIFY_LINKEDIN_API_VERSION" in str(
        old.value)

    no_reporting = _granted(linkedin_sandbox, scopes=("r_ads", "rw_ads"))
    async with make_linkedin(no_reporting) as c:
        with pytest.raises(PermissionDenied) as denied:
            [m async for m in c.daily_metrics(SMALL, LINKEDIN_END, LINKEDIN_END)]
    assert denied.value.platform_code == "ACCESS_DENIED"


async def test_the_sandbox_answers_linkedin_shapes_to_raw_http(linkedin_sandbox: LinkedInSandbox) -> None:
    token = linkedin_sandbox.grant_tokens()["access_token"]
    auth = {"Authorization": f"Bearer {token}", "X-Restli-Protocol-Version": "2.0.0"}
    async with httpx.AsyncClient(base_url=linkedin_sandbox.url) as http:
        missing = await http.get("/rest/adAccounts?q=search", headers=auth)
        assert missing.status_code == 400 and missing.json()["code"] == "VERSION_MISSING"
        versioned = {**auth, "LinkedIn-Version": version.PINNED}
        nobody = await http.get("/rest/adAccounts?q=search", headers={"LinkedIn-Version": version.PINNED})
        assert nobody.status_code == 401 and nobody.json()["serviceErrorCode"] == 65604
        # A generic client escapes the Rest.li parentheses: LinkedIn reads garbage and says 400.
        escaped = await http.get("/rest/adAnalytics", headers=versioned, params={
            "q": "analytics", "pivot": "CREATIVE", "timeGranularity": "DAILY",
            "dateRange": "(start:(year:2026,month:6,day:1))", "accounts": f"List({restli.URN_ACCOUNT}{SMALL})"})
        assert escaped.status_code == 400 and escaped.json()["code"] == "ILLEGAL_ARGUMENT"
        unescaped = await http.get(f"/rest/adAnalytics?q=analytics&pivot=CREATIVE&timeGranularity=DAILY"
                                   f"&dateRange=(start:(year:2026,month:6,day:1))"
                                   f"&accounts=List(urn:li:sponsoredAccount:{SMALL})", headers=versioned)
        assert unescaped.status_code == 400 and "unescaped ':'" in unescaped.json()["message"]
        too_many = ",".join(["dateRange", "pivotValues", *sorted(m for m in _metric_names())][:21])
        wide = await http.get(f"/rest/adAnalytics?q=analytics&pivot=CREATIVE&timeGranularity=DAILY"
                              f"&dateRange=(start:(year:2026,month:6,day:1),end:(year:2026,month:6,day:2))"
                              f"&accounts=List(urn%3Ali%3AsponsoredAccount%3A{SMALL})&fields={too_many}",
                              headers=versioned)
        assert wide.status_code == 400 and "at most 20 fields" in wide.json()["message"]


def _metric_names() -> list[str]:
    from omnify.integrations.linkedin.sandbox import METRICS

    return sorted(METRICS)


async def test_no_token_or_secret_reaches_the_logs(linkedin_sandbox: LinkedInSandbox, make_linkedin: MakeConnector,
                                                  linkedin_dance: Dance) -> None:
    observer = RecordingObserver()
    tokens = await linkedin_dance("log-check")
    async with make_linkedin(tokens, observer=observer) as c:
        linkedin_sandbox.injector.configure(expire_tokens=True)
        await c.verify()
        fresh = c.tokens
        await c.revoke(tokens)
        with pytest.raises(AuthRevoked):
            await c.verify()
    text = "\n".join(observer.texts)
    assert fresh is not None and observer.texts
    for secret in (tokens.access_token, tokens.refresh_token, fresh.access_token, linkedin_sandbox.client_secret):
        assert secret and secret not in text
