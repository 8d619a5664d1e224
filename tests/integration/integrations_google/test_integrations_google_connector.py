"""Google Ads connector over real HTTP against the Google sandbox."""

from __future__ import annotations

import logging
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from omnify.integrations.base import (
    AdConnector,
    AuthExpired,
    AuthRevoked,
    CircuitOpen,
    EntityStatus,
    InvalidRequest,
    Level,
    PermissionDenied,
    TokenSet,
    TransientError,
)
from omnify.integrations.google.oauth import code_challenge
from omnify.integrations.google.sandbox import GoogleSandbox
from omnify.integrations.http import CircuitBreakers
from omnify.integrations.sandbox_common import SandboxServer

from .conftest import REDIRECT, authorize, fast_retry, make_connector, oauth_dance

Env = tuple[GoogleSandbox, SandboxServer]
BIG = "1234567890"  # under the manager
DIRECT = "3456789012"  # directly accessible


async def test_authorize_url_uses_pkce_s256_and_offline_access(google_sandbox: Env) -> None:
    sandbox, server = google_sandbox
    async with make_connector(sandbox, server) as c:
        assert isinstance(c, AdConnector)
        start = c.authorize_url(redirect_uri=REDIRECT, state="xyz")
    q = parse_qs(urlsplit(start.url).query)
    assert q["code_challenge_method"] == ["S256"] and start.code_verifier is not None
    assert q["code_challenge"] == [code_challenge(start.code_verifier)]
    assert 43 <= len(start.code_verifier) <= 128
    assert q["access_type"] == ["offline"] and q["scope"] == ["https://www.googleapis.com/auth/adwords"]
    assert start.code_verifier not in start.url


async def test_oauth_dance_pkce_mismatch_and_replay(google_sandbox: Env) -> None:
    sandbox, server = google_sandbox
    async with make_connector(sandbox, server) as c:
        # consent screen, for real: render, then approve / deny
        start = c.authorize_url(redirect_uri=REDIRECT, state="s")
        async with httpx.AsyncClient() as browser:
            page = await browser.get(start.url)
            assert page.status_code == 200 and "adwords" in page.text
            denied = await browser.post(start.url, data={"decision": "deny"})
            approved = await browser.post(start.url, data={"decision": "approve"})
        assert parse_qs(urlsplit(denied.headers["location"]).query)["error"] == ["access_denied"]
        code = parse_qs(urlsplit(approved.headers["location"]).query)["code"][0]
        assert start.code_verifier is not None
        tokens = await c.exchange_code(code=code, redirect_uri=REDIRECT, code_verifier=start.code_verifier)
        assert tokens.refresh_token and tokens.expires_at and "https://www.googleapis.com/auth/adwords" in tokens.scopes
        with pytest.raises(InvalidRequest) as info:  # replayed code
            await c.exchange_code(code=code, redirect_uri=REDIRECT, code_verifier=start.code_verifier)
        assert info.value.platform_code == "invalid_grant"

        code, verifier = await authorize(c)
        with pytest.raises(InvalidRequest) as info:  # PKCE verifier mismatch refused
            await c.exchange_code(code=code, redirect_uri=REDIRECT, code_verifier=verifier[:-2] + "xy")
        assert info.value.platform_code == "invalid_grant"
        with pytest.raises(InvalidRequest, match="code_verifier"):
            await c.exchange_code(code=code, redirect_uri=REDIRECT)
    # a client that does not send a challenge at all is refused by the sandbox
    async with httpx.AsyncClient() as browser:
        r = await browser.get(f"{server.url}/o/oauth2/v2/auth", params={
            "client_id": sandbox.config.client_id, "redirect_uri": REDIRECT, "response_type": "code",
            "scope": "https://www.googleapis.com/auth/adwords", "state": "q", "sandbox_auto_approve": "1"})
    assert "error=invalid_request" in r.headers["location"]


async def test_wrong_client_secret_and_developer_token(google_sandbox: Env, google_tokens: TokenSet) -> None:
    sandbox, server = google_sandbox
    async with make_connector(sandbox, server, client_secret="not-the-secret") as c:
        code, verifier = await authorize(c)
        with pytest.raises(PermissionDenied, match="invalid_client"):
            await c.exchange_code(code=code, redirect_uri=REDIRECT, code_verifier=verifier)
    async with make_connector(sandbox, server, google_tokens, developer_token="bogus-dev-token") as c:
        with pytest.raises(PermissionDenied) as info:
            await c.verify()
    assert info.value.platform_code == "authenticationError.DEVELOPER_TOKEN_INVALID"


async def test_list_accounts_walks_the_manager(google_sandbox: Env, google_tokens: TokenSet) -> None:
    sandbox, server = google_sandbox
    async with make_connector(sandbox, server, google_tokens) as c:
        accounts = await c.list_ad_accounts()
        assert sorted(a.external_id for a in accounts) == ["1234567890", "2345678901", "3456789012"]
        assert {a.external_id: a.currency for a in accounts}["2345678901"] == "EUR"
        assert c._login_for[BIG] == sandbox.config.manager_id and c._login_for[DIRECT] is None
    # without the manager as login-customer-id a managed account is refused, as Google does
    async with httpx.AsyncClient(base_url=server.url) as raw:
        headers = {"Authorization": f"Bearer {google_tokens.access_token}",
                   "developer-token": sandbox.config.developer_token}
        r = await raw.post(f"/v26/customers/{BIG}/googleAds:searchStream", headers=headers,
                           json={"query": "SELECT customer.id FROM customer"})
        assert r.status_code == 403
        err = r.json()["error"]
        assert err["status"] == "PERMISSION_DENIED"
        assert err["details"][0]["errors"][0]["errorCode"] == {"authorizationError": "USER_PERMISSION_DENIED"}


async def test_read_every_stream(google_sandbox: Env, google_tokens: TokenSet) -> None:
    sandbox, server = google_sandbox
    acc = sandbox.world.account(BIG)
    async with make_connector(sandbox, server, google_tokens) as c:  # no listing first: lazy discovery
        campaigns = [x async for x in c.campaigns(BIG)]
        groups = [x async for x in c.ad_groups("123-456-7890")]
        ads = [x async for x in c.ads(BIG)]
    assert {x.external_id: x.daily_budget_minor for x in campaigns} == {
        k: v.daily_budget_minor for k, v in acc.campaigns.items()}  # micros -> cents
    assert {x.external_id for x in groups} == set(acc.ad_groups)
    assert all(g.campaign_external_id == acc.ad_groups[g.external_id].campaign_id for g in groups)
    assert len(ads) == 200 == len({a.external_id for a in ads})
    ad = next(a for a in ads if a.external_id == next(iter(acc.ads)))
    src = acc.ads[ad.external_id]
    assert ad.ad_group_external_id == src.ad_group_id and ad.campaign_external_id == src.campaign_id
    assert ad.creative is not None and ad.creative.title and src.creative.title in ad.creative.title
    assert campaigns[0].status == EntityStatus.ACTIVE and campaigns[0].objective


async def test_daily_metrics_map_micros_to_minor_units(google_sandbox: Env, google_tokens: TokenSet) -> None:
    sandbox, server = google_sandbox
    acc = sandbox.world.account(BIG)
    until = acc.metrics.end - timedelta(days=2)
    since = until - timedelta(days=39)
    async with make_connector(sandbox, server, google_tokens) as c:
        rows = [m async for m in c.daily_metrics(BIG, since, until)]
    truth = acc.metric_rows(since, until)
    assert len(rows) == len(truth) > 1000  # the sandbox honoured the BETWEEN range
    assert min(r.day for r in rows) == since and max(r.day for r in rows) == until
    assert len(sandbox.journal.entries("googleAds:searchStream")) >= 2  # two 31-day windows (+ currency)
    by_key = {(r.entity_external_id, r.day): r for r in rows}
    checked = 0
    for ad in list(acc.ads.values())[::41]:
        for offset in (0, 20, 39):
            day = since + timedelta(days=offset)
            j = (day - acc.metrics.start).days
            if acc.metrics.impressions[ad.index, j] == 0:
                assert (ad.id, day) not in by_key  # zero rows omitted
                continue
            r = by_key[(ad.id, day)]
            assert r.spend_minor == int(acc.metrics.spend_minor[ad.index, j])
            assert r.revenue_minor == int(acc.metrics.revenue_minor[ad.index, j])
            assert r.conversions == float(acc.metrics.conversions[ad.index, j])
            assert r.clicks == int(acc.metrics.clicks[ad.index, j]) and r.currency == "USD"
            checked += 1
    assert checked >= 8
    assert sum(r.spend_minor for r in rows) == int(truth.spend_minor.sum())


async def test_expired_token_refresh_and_revocation(google_sandbox: Env, google_tokens: TokenSet) -> None:
    sandbox, server = google_sandbox
    async with make_connector(sandbox, server, google_tokens) as c:
        assert len([x async for x in c.campaigns(DIRECT)]) == 2
        sandbox.injector.configure(expire_tokens=True)
        with pytest.raises(AuthExpired) as info:
            _ = [x async for x in c.campaigns(DIRECT)]
        assert info.value.platform_code == "authenticationError.OAUTH_TOKEN_EXPIRED"
        fresh = await c.refresh(google_tokens)
        assert fresh.access_token != google_tokens.access_token
        assert fresh.refresh_token == google_tokens.refresh_token
        assert len([x async for x in c.campaigns(DIRECT)]) == 2
        await c.revoke(fresh)  # revokes the grant: refresh token and its access tokens
        with pytest.raises(AuthRevoked):
            _ = [x async for x in c.campaigns(DIRECT)]
        with pytest.raises(AuthRevoked):
            await c.refresh(fresh)
        await c.revoke(fresh)  # idempotent


async def test_resource_exhausted_waits_retry_delay(google_sandbox: Env, google_tokens: TokenSet) -> None:
    sandbox, server = google_sandbox
    sandbox.injector.configure(rate_limit_next=1, retry_after=1.0, match="searchStream")
    async with make_connector(sandbox, server, google_tokens) as c:
        assert len([x async for x in c.campaigns(DIRECT)]) == 2
    first, second = sandbox.journal.entries("searchStream")[:2]
    assert first.status == 429 and second.status == 200
    assert second.at - first.at >= 1.0


async def test_5xx_burst_retried(google_sandbox: Env, google_tokens: TokenSet) -> None:
    sandbox, server = google_sandbox
    sandbox.injector.configure(errors_5xx_next=2, error_status=500, match="searchStream")
    async with make_connector(sandbox, server, google_tokens) as c:
        assert len([x async for x in c.ad_groups(DIRECT)]) == 4
    statuses = [e.status for e in sandbox.journal.entries("searchStream")]
    assert statuses[:3] == [500, 500, 200]


async def test_circuit_opens(google_sandbox: Env, google_tokens: TokenSet) -> None:
    sandbox, server = google_sandbox
    breakers = CircuitBreakers(threshold=3, cooldown=30)
    sandbox.injector.configure(errors_5xx_next=100, match=f"customers/{DIRECT}/")
    async with make_connector(sandbox, server, google_tokens, breakers=breakers,
                              retry=fast_retry(max_attempts=2)) as c:
        with pytest.raises(TransientError):
            _ = [x async for x in c.campaigns(DIRECT)]
        with pytest.raises(CircuitOpen):
            _ = [x async for x in c.ads(DIRECT)]
        hits = len(sandbox.journal.entries(f"customers/{DIRECT}/"))
        with pytest.raises(CircuitOpen):
            _ = [x async for x in c.ad_groups(DIRECT)]
        assert len(sandbox.journal.entries(f"customers/{DIRECT}/")) == hits
        assert await breakers.state(f"google_ads:{DIRECT}") == "opened"


async def test_writes_reflected_in_reads(google_sandbox: Env, google_tokens: TokenSet) -> None:
    sandbox, server = google_sandbox
    acc = sandbox.world.account(BIG)
    camp_id, camp = next(iter(acc.campaigns.items()))
    group_id = next(g for g in acc.ad_groups if acc.ad_groups[g].campaign_id == camp_id)
    ad_id = next(a.id for a in acc.ads.values() if a.ad_group_id == group_id)
    async with make_connector(sandbox, server, google_tokens) as c:
        for level, entity in ((Level.AD, ad_id), (Level.AD_GROUP, group_id), (Level.CAMPAIGN, camp_id)):
            result = await c.set_status(BIG, level, entity, EntityStatus.PAUSED)
            assert result.before == {"status": "active"} and result.after == {"status": "paused"}
        assert {x.external_id: x.status async for x in c.ads(BIG)}[ad_id] == EntityStatus.PAUSED
        assert {x.external_id: x.status async for x in c.ad_groups(BIG)}[group_id] == EntityStatus.PAUSED
        assert {x.external_id: x.status async for x in c.campaigns(BIG)}[camp_id] == EntityStatus.PAUSED
        for level, entity in ((Level.AD, ad_id), (Level.AD_GROUP, group_id)):  # one entity read back
            assert await c.read_entity(BIG, level, entity) == {"status": "paused", "daily_budget_minor": None}
        today = acc.metrics.end
        assert ad_id not in {m.entity_external_id async for m in c.daily_metrics(BIG, today, today)}
        await c.set_status(BIG, Level.CAMPAIGN, camp_id, EntityStatus.ACTIVE)
        assert {x.external_id: x.status async for x in c.campaigns(BIG)}[camp_id] == EntityStatus.ACTIVE

        old = camp.daily_budget_minor
        result = await c.set_daily_budget(BIG, Level.CAMPAIGN, camp_id, old + 1234)
        assert result.before == {"daily_budget_minor": old} and result.after == {"daily_budget_minor": old + 1234}
        assert {x.external_id: x.daily_budget_minor async for x in c.campaigns(BIG)}[camp_id] == old + 1234
        assert await c.read_entity(BIG, Level.CAMPAIGN, camp_id) == {"status": "active",
                                                                     "daily_budget_minor": old + 1234}
        with pytest.raises(InvalidRequest, match="not found"):
            await c.read_entity(DIRECT, Level.CAMPAIGN, camp_id)
        with pytest.raises(InvalidRequest, match="campaign"):
            await c.set_daily_budget(BIG, Level.AD_GROUP, group_id, 5000)
        with pytest.raises(InvalidRequest, match="not found"):
            await c.set_status(BIG, Level.AD, "999", EntityStatus.PAUSED)
        with pytest.raises(InvalidRequest, match="not found"):  # an id of another account
            await c.set_status(DIRECT, Level.CAMPAIGN, camp_id, EntityStatus.PAUSED)
        with pytest.raises(InvalidRequest):
            await c.set_status(BIG, Level.AD, ad_id, EntityStatus.ARCHIVED)
    sandbox.world.reset()


async def test_no_token_or_secret_in_logs_or_errors(
    google_sandbox: Env, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox, server = google_sandbox
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    async with make_connector(sandbox, server) as c:
        tokens = await oauth_dance(c)
        sandbox.injector.configure(errors_5xx_next=1, rate_limit_next=1, retry_after=0.2, match="searchStream")
        _ = [x async for x in c.campaigns(DIRECT)]
        sandbox.injector.configure(expire_tokens=True)
        try:
            await c.list_ad_accounts()
        except AuthExpired as exc:
            errors.append(f"{exc!r} {exc}")
        await c.revoke(tokens)
        try:
            await c.refresh(tokens)
        except AuthRevoked as exc:
            errors.append(f"{exc!r} {exc}")
    out = capsys.readouterr()
    blob = caplog.text + out.out + out.err + " ".join(errors)
    assert len(errors) == 2
    for secret in (tokens.access_token, tokens.refresh_token or "-", sandbox.config.client_secret,
                   sandbox.config.developer_token):
        assert secret not in blob
