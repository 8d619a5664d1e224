"""Meta connector over real HTTP against the Meta sandbox."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
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
    RateLimited,
    TokenSet,
    TransientError,
)
from omnify.integrations.http import CircuitBreakers
from omnify.integrations.meta.sandbox import MetaSandbox, MetaSandboxConfig
from omnify.integrations.sandbox_common import SandboxServer

from .conftest import REDIRECT, fast_retry, make_connector, oauth_dance

Env = tuple[MetaSandbox, SandboxServer]
BIG = "1000001"


async def test_protocol_and_authorize_url(meta_sandbox: Env) -> None:
    sandbox, server = meta_sandbox
    async with make_connector(sandbox, server) as c:
        assert isinstance(c, AdConnector)
        start = c.authorize_url(redirect_uri=REDIRECT, state="abc")
    parts = urlsplit(start.url)
    assert parts.path == "/v26.0/dialog/oauth"
    q = parse_qs(parts.query)
    assert q["client_id"] == [sandbox.config.app_id] and q["state"] == ["abc"]
    assert q["scope"] == ["ads_read,ads_management,business_management"] and start.code_verifier is None


async def test_full_oauth_dance_consent_screen_and_long_lived_token(meta_sandbox: Env) -> None:
    sandbox, server = meta_sandbox
    async with make_connector(sandbox, server) as c:
        start = c.authorize_url(redirect_uri=REDIRECT, state="s-1")
        async with httpx.AsyncClient() as browser:
            page = await browser.get(start.url)
            assert page.status_code == 200 and "Omnify (sandbox)" in page.text and "ads_management" in page.text
            approved = await browser.post(start.url, data={"decision": "approve"})
            denied = await browser.post(start.url, data={"decision": "deny"})
        assert parse_qs(urlsplit(denied.headers["location"]).query)["error"] == ["access_denied"]
        code = parse_qs(urlsplit(approved.headers["location"]).query)["code"][0]
        tokens = await c.exchange_code(code=code, redirect_uri=REDIRECT)
        assert tokens.expires_at is not None
        assert tokens.expires_at - datetime.now(UTC) > timedelta(days=59)  # long-lived, not the 2 h one
        assert set(tokens.scopes) == {"ads_read", "ads_management", "business_management"}
        info = await c.verify()
        assert info["user_id"] and info["missing_scopes"] == []
        # a code is single use
        with pytest.raises(InvalidRequest):
            await c.exchange_code(code=code, redirect_uri=REDIRECT)
        # redirect_uri must match the dialog's
        other = await oauth_dance(c)
        assert other.access_token != tokens.access_token
        start = c.authorize_url(redirect_uri=REDIRECT, state="s-2")
        async with httpx.AsyncClient() as browser:
            r = await browser.get(start.url + "&sandbox_auto_approve=1")
        code = parse_qs(urlsplit(r.headers["location"]).query)["code"][0]
        with pytest.raises(InvalidRequest, match="redirect_uri"):
            await c.exchange_code(code=code, redirect_uri="http://127.0.0.1:9/elsewhere")
        with pytest.raises(InvalidRequest, match="PKCE"):
            await c.exchange_code(code="x", redirect_uri=REDIRECT, code_verifier="v")


async def test_wrong_app_secret_is_refused_without_retry(meta_sandbox: Env) -> None:
    sandbox, server = meta_sandbox
    from omnify.integrations.meta import MetaAdsConnector, MetaConfig

    cfg = MetaConfig(app_id=sandbox.config.app_id, app_secret="wrong-secret-value", graph_url=server.url)
    async with MetaAdsConnector(cfg, retry=fast_retry(), breakers=CircuitBreakers()) as c:
        with pytest.raises(InvalidRequest, match="client secret"):
            await c.exchange_code(code="whatever", redirect_uri=REDIRECT)
    assert len(sandbox.journal.entries("/oauth/access_token")) == 1


async def test_list_accounts(meta_sandbox: Env, meta_tokens: TokenSet) -> None:
    sandbox, server = meta_sandbox
    async with make_connector(sandbox, server, meta_tokens, page_size=2) as c:
        accounts = await c.list_ad_accounts()
    assert [a.external_id for a in accounts] == ["1000001", "1000002", "1000003"]
    assert accounts[1].currency == "EUR" and accounts[0].status == EntityStatus.ACTIVE
    assert len(sandbox.journal.entries("/me/adaccounts")) == 2  # paged 2 + 1


async def test_read_every_stream_with_paging(meta_sandbox: Env, meta_tokens: TokenSet) -> None:
    sandbox, server = meta_sandbox
    acc = sandbox.world.account(BIG)
    async with make_connector(sandbox, server, meta_tokens, page_size=30) as c:
        campaigns = [x async for x in c.campaigns(BIG)]
        groups = [x async for x in c.ad_groups(f"act_{BIG}")]
        ads = [x async for x in c.ads(BIG)]
    assert {x.external_id for x in campaigns} == set(acc.campaigns)
    assert {x.external_id for x in groups} == set(acc.ad_groups)
    assert len(ads) == len(acc.ads) == 200 and len({a.external_id for a in ads}) == 200
    assert len([e for e in sandbox.journal.entries() if e.path.endswith(f"/act_{BIG}/ads")]) == 7  # 200 / 30
    camp = campaigns[0]
    src = acc.campaigns[camp.external_id]
    assert camp.daily_budget_minor == src.daily_budget_minor and camp.status == EntityStatus.ACTIVE
    assert camp.objective and camp.objective.startswith("OUTCOME_") and camp.updated_at is not None
    g = next(x for x in groups if x.external_id == next(iter(acc.ad_groups)))
    assert g.campaign_external_id in acc.campaigns and g.targeting["geo_locations"]["countries"] == ["US"]
    ad = next(x for x in ads if x.external_id == next(iter(acc.ads)))
    src_ad = acc.ads[ad.external_id]
    assert ad.creative is not None and ad.creative.title == src_ad.creative.title
    assert ad.creative.image_url == src_ad.creative.image_url and ad.ad_group_external_id == src_ad.ad_group_id


async def test_daily_metrics_map_to_minor_units(meta_sandbox: Env, meta_tokens: TokenSet) -> None:
    sandbox, server = meta_sandbox
    acc = sandbox.world.account(BIG)
    until = acc.metrics.end - timedelta(days=3)
    since = until - timedelta(days=39)  # two insights windows (31 + 9 days)
    async with make_connector(sandbox, server, meta_tokens) as c:
        rows = [m async for m in c.daily_metrics(BIG, since, until)]
    truth = acc.metric_rows(since, until)
    assert len(rows) == len(truth) > 1000
    assert {r.day for r in rows} == {since + timedelta(days=i) for i in range(40)}
    windows = sandbox.journal.entries(f"/act_{BIG}/insights")
    assert len(windows) >= 2
    # hand-check: for a few (ad, day) cells compare with the sandbox's ground-truth cube
    by_key = {(r.entity_external_id, r.day): r for r in rows}
    checked = 0
    for ad in list(acc.ads.values())[::37]:
        for offset in (0, 17, 39):
            day = since + timedelta(days=offset)
            j = (day - acc.metrics.start).days
            spend = int(acc.metrics.spend_minor[ad.index, j])
            impressions = int(acc.metrics.impressions[ad.index, j])
            if impressions == 0:
                assert (ad.id, day) not in by_key
                continue
            r = by_key[(ad.id, day)]
            assert r.spend_minor == spend  # "12.34" -> 1234, exactly
            assert r.impressions == impressions and r.clicks == int(acc.metrics.clicks[ad.index, j])
            assert r.conversions == float(acc.metrics.conversions[ad.index, j])
            assert r.revenue_minor == int(acc.metrics.revenue_minor[ad.index, j])
            assert r.currency == "USD" and r.level == Level.AD
            assert r.campaign_external_id == ad.campaign_id and r.ad_group_external_id == ad.ad_group_id
            checked += 1
    assert checked >= 10
    assert sum(r.spend_minor for r in rows) == int(truth.spend_minor.sum())
    assert sum(r.revenue_minor for r in rows) == int(truth.revenue_minor.sum())


async def test_eur_account_and_invalid_range(meta_sandbox: Env, meta_tokens: TokenSet) -> None:
    sandbox, server = meta_sandbox
    acc = sandbox.world.account("1000002")
    day = acc.metrics.end - timedelta(days=10)
    async with make_connector(sandbox, server, meta_tokens) as c:
        rows = [m async for m in c.daily_metrics("act_1000002", day, day)]
        with pytest.raises(InvalidRequest):
            _ = [m async for m in c.daily_metrics("1000002", day, day - timedelta(days=1))]
        with pytest.raises(InvalidRequest, match="does not exist"):
            _ = [x async for x in c.campaigns("999999")]
    assert rows and all(r.currency == "EUR" for r in rows)
    assert sum(r.spend_minor for r in rows) == int(acc.metric_rows(day, day).spend_minor.sum())


async def test_expired_token_then_refresh(meta_sandbox: Env, meta_tokens: TokenSet) -> None:
    sandbox, server = meta_sandbox
    async with make_connector(sandbox, server, meta_tokens) as c:
        # refresh before expiry (what the scheduled task does): a new long-lived token
        fresh = await c.refresh(meta_tokens)
        assert fresh.access_token != meta_tokens.access_token and fresh.expires_at is not None
        assert len(await c.list_ad_accounts()) == 3
        # every token expires at the platform -> reads say AuthExpired (190/463)
        sandbox.injector.configure(expire_tokens=True)
        with pytest.raises(AuthExpired) as info:
            await c.list_ad_accounts()
        assert info.value.platform_code == "190/463"
        # Meta cannot refresh an expired token: the connection needs a new login
        with pytest.raises(AuthRevoked, match="log in again"):
            await c.refresh(fresh)
        again = await oauth_dance(c)
        assert len(await c.list_ad_accounts()) == 3
        assert again.access_token != fresh.access_token


async def test_revoke_deauthorizes(meta_sandbox: Env, meta_tokens: TokenSet) -> None:
    sandbox, server = meta_sandbox
    async with make_connector(sandbox, server, meta_tokens) as c:
        await c.revoke(meta_tokens)
        with pytest.raises(AuthRevoked) as info:
            await c.verify()
    assert info.value.platform_code == "190/458"


async def test_rate_limit_is_honoured_with_measured_wait(meta_sandbox: Env, meta_tokens: TokenSet) -> None:
    sandbox, server = meta_sandbox
    sandbox.injector.configure(rate_limit_next=1, retry_after=1.0, match="/insights")
    day = sandbox.world.account(BIG).metrics.end - timedelta(days=5)
    async with make_connector(sandbox, server, meta_tokens) as c:
        rows = [m async for m in c.daily_metrics(BIG, day, day)]
    assert rows
    first, second = sandbox.journal.entries("/insights")[:2]
    assert first.status == 400 and first.fault == "rate_limit" and second.status == 200
    assert second.at - first.at >= 1.0


async def test_rate_limit_longer_than_cap_goes_back_to_caller(meta_sandbox: Env, meta_tokens: TokenSet) -> None:
    sandbox, server = meta_sandbox
    sandbox.injector.configure(rate_limit_next=1, retry_after=120, match="/campaigns")
    async with make_connector(sandbox, server, meta_tokens, retry=fast_retry(max_retry_after=10)) as c:
        with pytest.raises(RateLimited) as info:
            _ = [x async for x in c.campaigns(BIG)]
    assert info.value.retry_after == 120 and info.value.platform_code == "80004"


async def test_5xx_burst_retried_then_success(meta_sandbox: Env, meta_tokens: TokenSet) -> None:
    sandbox, server = meta_sandbox
    sandbox.injector.configure(errors_5xx_next=3, match="/campaigns")
    async with make_connector(sandbox, server, meta_tokens) as c:
        campaigns = [x async for x in c.campaigns(BIG)]
    assert len(campaigns) == 5
    assert [e.status for e in sandbox.journal.entries("/campaigns")] == [503, 503, 503, 200]


async def test_circuit_opens_after_repeated_failures(meta_sandbox: Env, meta_tokens: TokenSet) -> None:
    sandbox, server = meta_sandbox
    breakers = CircuitBreakers(threshold=3, cooldown=30)
    sandbox.injector.configure(errors_5xx_next=100, match="/adsets")
    async with make_connector(sandbox, server, meta_tokens, breakers=breakers,
                              retry=fast_retry(max_attempts=2)) as c:
        with pytest.raises(TransientError):
            _ = [x async for x in c.ad_groups(BIG)]
        with pytest.raises(CircuitOpen):
            _ = [x async for x in c.ad_groups(BIG)]
        hits = len(sandbox.journal.entries("/adsets"))
        with pytest.raises(CircuitOpen):
            _ = [x async for x in c.campaigns(BIG)]  # same account: short-circuited
        assert len(sandbox.journal.entries("/adsets")) == hits == 3
        assert await breakers.state(f"meta_ads:{BIG}") == "opened"
        sandbox.injector.reset()
        assert len([x async for x in c.campaigns("1000003")]) == 2  # other accounts unaffected


async def test_writes_are_reflected_in_reads(meta_sandbox: Env, meta_tokens: TokenSet) -> None:
    sandbox, server = meta_sandbox
    acc = sandbox.world.account("1000003")
    camp_id, camp = next(iter(acc.campaigns.items()))
    ad = next(a for a in acc.ads.values() if a.campaign_id == camp_id)
    group_id = ad.ad_group_id
    today = acc.metrics.end
    async with make_connector(sandbox, server, meta_tokens) as c:
        result = await c.set_status("1000003", Level.AD, ad.id, EntityStatus.PAUSED)
        assert result.before == {"status": "active"} and result.after == {"status": "paused"}
        ads = {x.external_id: x async for x in c.ads("1000003")}
        assert ads[ad.id].status == EntityStatus.PAUSED
        # One entity read back (what settles an interrupted action): an ad has no budget on Meta.
        assert await c.read_entity("1000003", Level.AD, ad.id) == {"status": "paused", "daily_budget_minor": None}
        metrics = [m async for m in c.daily_metrics("1000003", today, today)]
        assert ad.id not in {m.entity_external_id for m in metrics}  # a paused ad stops delivering
        await c.set_status("1000003", Level.AD, ad.id, EntityStatus.ACTIVE)
        assert {x.external_id: x async for x in c.ads("1000003")}[ad.id].status == EntityStatus.ACTIVE

        await c.set_status("1000003", Level.CAMPAIGN, camp_id, EntityStatus.PAUSED)
        assert {x.external_id: x async for x in c.campaigns("1000003")}[camp_id].status == EntityStatus.PAUSED
        await c.set_status("1000003", Level.CAMPAIGN, camp_id, EntityStatus.ACTIVE)

        before_spend = sum([m.spend_minor async for m in c.daily_metrics("1000003", today, today)
                            if m.campaign_external_id == camp_id])
        old = camp.daily_budget_minor
        result = await c.set_daily_budget("1000003", Level.CAMPAIGN, camp_id, old * 2)
        assert result.before == {"daily_budget_minor": old} and result.after == {"daily_budget_minor": old * 2}
        camps = {x.external_id: x async for x in c.campaigns("1000003")}
        assert camps[camp_id].daily_budget_minor == old * 2
        assert await c.read_entity("1000003", Level.CAMPAIGN, camp_id) == {"status": "active",
                                                                           "daily_budget_minor": old * 2}
        after_spend = sum([m.spend_minor async for m in c.daily_metrics("1000003", today, today)
                           if m.campaign_external_id == camp_id])
        assert after_spend == pytest.approx(2 * before_spend, rel=0.05, abs=10)

        with pytest.raises(InvalidRequest, match="no budget"):
            await c.set_daily_budget("1000003", Level.AD, ad.id, 5000)
        with pytest.raises(InvalidRequest, match="budget optimization"):
            await c.set_daily_budget("1000003", Level.AD_GROUP, group_id, 5000)
        with pytest.raises(InvalidRequest, match="too low"):
            await c.set_daily_budget("1000003", Level.CAMPAIGN, camp_id, 50)
        with pytest.raises(InvalidRequest, match="does not belong"):
            await c.set_status(BIG, Level.AD, ad.id, EntityStatus.PAUSED)
        with pytest.raises(InvalidRequest, match="does not belong"):
            await c.read_entity(BIG, Level.AD, ad.id)
    sandbox.world.reset()


async def test_usage_header_near_limit_paces_the_next_call() -> None:
    sandbox = MetaSandbox(MetaSandboxConfig(buc_call_limit=4, buc_window_seconds=1.5, days=30))
    with sandbox.server() as server:
        async with make_connector(sandbox, server, throttle_max_pause=1.5) as c:
            await oauth_dance(c)
            for _ in range(5):  # usage header climbs 25..100%; at 100% the client pauses
                _ = [x async for x in c.campaigns("1000003")]
        entries = sandbox.journal.entries("/campaigns")
    assert [e.status for e in entries] == [200] * 5  # never refused
    assert entries[4].at - entries[3].at >= 1.5


async def test_spent_usage_budget_gives_80004_and_is_waited_out() -> None:
    sandbox = MetaSandbox(MetaSandboxConfig(buc_call_limit=3, buc_window_seconds=1.2, days=30))
    with sandbox.server() as server:
        async with make_connector(sandbox, server, throttle_soft_limit_pct=101) as c:  # no pacing
            await oauth_dance(c)
            for _ in range(4):
                _ = [x async for x in c.campaigns("1000003")]
        entries = sandbox.journal.entries("/campaigns")
    assert [e.status for e in entries] == [200, 200, 200, 400, 200]
    assert entries[4].at - entries[3].at >= 1.0  # Retry-After (window remainder) honoured


async def test_no_token_or_secret_in_logs_or_errors(
    meta_sandbox: Env, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox, server = meta_sandbox
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    async with make_connector(sandbox, server) as c:
        tokens = await oauth_dance(c)
        sandbox.injector.configure(errors_5xx_next=2, rate_limit_next=1, retry_after=0.2, match="/campaigns")
        _ = [x async for x in c.campaigns(BIG)]
        _ = [m async for m in c.daily_metrics(BIG, sandbox.world.end - timedelta(days=3), sandbox.world.end)]
        sandbox.injector.configure(expire_tokens=True)
        for call in (c.list_ad_accounts(), c.refresh(tokens)):
            try:
                await call
            except Exception as exc:  # we inspect every failure text
                errors.append(f"{exc!r} {exc}")
    out = capsys.readouterr()
    blob = caplog.text + out.out + out.err + " ".join(errors)
    assert len(errors) == 2
    assert tokens.access_token not in blob
    assert sandbox.config.app_secret not in blob
    assert "EAAsbx-at-" not in blob
