"""TikTok connector over real HTTP against the TikTok sandbox (and TikTok's own SDK)."""

from __future__ import annotations

import asyncio
import itertools
import logging
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
import structlog

from omnify.integrations.base import (
    AdConnector,
    AuthExpired,
    AuthRevoked,
    CircuitOpen,
    EntityStatus,
    InvalidRequest,
    Level,
    PermissionDenied,
    RateLimited,
    TokenSet,
    TransientError,
)
from omnify.integrations.http import CircuitBreakers, RetryPolicy
from omnify.integrations.tiktok import mapping
from omnify.integrations.tiktok.sandbox import TikTokSandbox
from tests.integration.integrations_shared.connector_helpers import RecordingObserver
from tests.integration.integrations_tiktok.tiktok_helpers import (
    TIKTOK_END,
    TIKTOK_REDIRECT,
    Dance,
    MakeConnector,
    auth_code_for,
)

BIG = "1000001"  # 5 campaigns, 20 ad groups, 200 ads, USD
EUR = "1000002"


# ------------------------------------------------------------------------------ OAuth
async def test_auth_code_flow_consent_exchange_and_single_use(
    tiktok_sandbox: TikTokSandbox, make_tiktok: MakeConnector
) -> None:
    async with make_tiktok() as c:
        assert isinstance(c, AdConnector)
        start = c.authorize_url(redirect_uri=TIKTOK_REDIRECT, state="st-42")
        url = httpx.URL(start.url)
        assert url.path == "/portal/auth" and url.params["app_id"] == tiktok_sandbox.app_id
        assert url.params["redirect_uri"] == TIKTOK_REDIRECT and url.params["state"] == "st-42"
        assert start.code_verifier is None  # TikTok has no PKCE

        code = await auth_code_for(c, "st-42")
        tokens = await c.exchange_code(code=code, redirect_uri=TIKTOK_REDIRECT)
        assert tokens.access_token.startswith("ttk-at-") and tokens.refresh_token
        assert tokens.extra["advertiser_ids"] == ["1000001", "1000002", "1000003"]
        assert tokens.expires_at is not None and tokens.expires_at > datetime.now(UTC) + timedelta(hours=23)

        with pytest.raises(InvalidRequest) as replay:  # an auth_code is single-use
            await c.exchange_code(code=code, redirect_uri=TIKTOK_REDIRECT)
        assert replay.value.platform_code == str(mapping.CODE_AUTH_CODE_INVALID)
        # the exchange is never retried: exactly one request per exchange attempt
        assert len(tiktok_sandbox.journal.entries("/oauth2/access_token/")) == 2


async def test_exchange_refused_with_wrong_app_secret(
    tiktok_sandbox: TikTokSandbox, make_tiktok: MakeConnector
) -> None:
    async with make_tiktok() as good:
        code = await auth_code_for(good)
    async with make_tiktok(secret="not-the-app-secret") as c:
        with pytest.raises(InvalidRequest) as err:
            await c.exchange_code(code=code, redirect_uri=TIKTOK_REDIRECT)
    assert err.value.platform_code == str(mapping.CODE_INVALID_APP)


async def test_denied_consent_redirects_with_error(tiktok_sandbox: TikTokSandbox, make_tiktok: MakeConnector) -> None:
    async with make_tiktok() as c:
        start = c.authorize_url(redirect_uri=TIKTOK_REDIRECT, state="st-deny")
    async with httpx.AsyncClient() as browser:
        resp = await browser.post(start.url, data={"decision": "deny"})
    location = httpx.URL(resp.headers["location"])
    assert location.params["error"] == "access_denied" and location.params["state"] == "st-deny"
    assert "auth_code" not in location.params


# ------------------------------------------------------------------------------ reads
async def test_verify_and_list_ad_accounts(make_tiktok: MakeConnector, tiktok_dance: Dance) -> None:
    tokens = await tiktok_dance()
    async with make_tiktok(tokens) as c:
        info = await c.verify()
        assert info["ok"] is True and info["advertisers"] == 3
        accounts = {a.external_id: a for a in await c.list_ad_accounts()}
    assert set(accounts) == {"1000001", "1000002", "1000003"}
    assert accounts[BIG].currency == "USD" and accounts[EUR].currency == "EUR"
    assert accounts[EUR].timezone == "Europe/Berlin" and accounts[BIG].status is EntityStatus.ACTIVE


async def test_every_stream_pages_through_page_info(
    tiktok_sandbox: TikTokSandbox, make_tiktok: MakeConnector, tiktok_dance: Dance
) -> None:
    tokens = await tiktok_dance()
    world = tiktok_sandbox.world.account(BIG)
    async with make_tiktok(tokens, page_size=7) as c:
        campaigns = [x async for x in c.campaigns(BIG)]
        groups = [x async for x in c.ad_groups(BIG)]
        ads = [x async for x in c.ads(BIG)]
    assert sorted(x.external_id for x in campaigns) == sorted(world.campaigns)
    assert sorted(x.external_id for x in groups) == sorted(world.ad_groups)
    assert sorted(x.external_id for x in ads) == sorted(world.ads)
    assert len(tiktok_sandbox.journal.entries("/ad/get/")) == -(-200 // 7)  # 29 pages, none skipped
    assert len(tiktok_sandbox.journal.entries("/adgroup/get/")) == 3

    camp = next(x for x in campaigns if x.external_id == next(iter(world.campaigns)))
    wc = world.campaigns[camp.external_id]
    assert camp.daily_budget_minor == wc.daily_budget_minor and camp.status is EntityStatus.ACTIVE
    assert camp.account_external_id == BIG and camp.updated_at is not None
    ad = next(x for x in ads if x.external_id == next(iter(world.ads)))
    wa = world.ads[ad.external_id]
    assert (ad.campaign_external_id, ad.ad_group_external_id) == (wa.campaign_id, wa.ad_group_id)
    assert ad.creative is not None and ad.creative.body == wa.creative.body
    assert ad.creative.call_to_action == wa.creative.call_to_action
    group = next(x for x in groups if x.external_id in world.ad_groups)
    assert group.daily_budget_minor is None  # budget lives on the campaign (BUDGET_MODE_INFINITE)
    assert "age_groups" in group.targeting and "location_ids" in group.targeting


async def test_daily_metrics_exact_money_and_30_day_windows(
    tiktok_sandbox: TikTokSandbox, make_tiktok: MakeConnector, tiktok_dance: Dance
) -> None:
    tokens = await tiktok_dance()
    since, until = TIKTOK_END - timedelta(days=44), TIKTOK_END  # 45 days -> 2 report windows
    async with make_tiktok(tokens, report_page_size=800) as c:
        rows = [m async for m in c.daily_metrics(BIG, since, until)]
    truth = tiktok_sandbox.world.account(BIG).metric_rows(since, until)
    assert len(rows) == len(truth) > 4000
    expected = {(truth.entity_ids[i], truth.days[i]): truth.row(i) for i in range(len(truth))}
    for m in rows:
        t = expected[(m.entity_external_id, m.day)]
        assert (m.spend_minor, m.revenue_minor, m.impressions, m.clicks) == (
            t["spend_minor"],
            t["revenue_minor"],
            t["impressions"],
            t["clicks"],
        )
        assert m.currency == "USD" and m.level is Level.AD and m.campaign_external_id
    assert sum(m.spend_minor for m in rows) == int(truth.spend_minor.sum())
    reports = tiktok_sandbox.journal.entries("/report/integrated/get/")
    assert len(reports) >= 2 and all(e.status == 200 for e in reports)

    # Hand-check one row against the raw HTTP response: "12.34" (string) -> 1234 minor units.
    async with httpx.AsyncClient(base_url=tiktok_sandbox.url) as raw:
        resp = await raw.get(
            "/open_api/v1.3/report/integrated/get/",
            headers={"Access-Token": tokens.access_token},
            params={
                "advertiser_id": BIG,
                "report_type": "BASIC",
                "data_level": "AUCTION_AD",
                "dimensions": '["ad_id","stat_time_day"]',
                "metrics": '["spend","total_complete_payment_rate","impressions"]',
                "start_date": TIKTOK_END.isoformat(),
                "end_date": TIKTOK_END.isoformat(),
                "page_size": 1,
            },
        )
    body = resp.json()
    assert resp.status_code == 200 and body["code"] == 0 and body["data"]["page_info"]["page_size"] == 1
    row = body["data"]["list"][0]
    spend_text = row["metrics"]["spend"]
    assert isinstance(spend_text, str) and "." in spend_text
    mine = next(m for m in rows if m.entity_external_id == row["dimensions"]["ad_id"] and m.day == TIKTOK_END)
    assert mine.spend_minor == int(Decimal(spend_text) * 100)
    assert mine.revenue_minor == int(Decimal(row["metrics"]["total_complete_payment_rate"]) * 100)


async def test_eur_account_and_hand_computed_mapping(make_tiktok: MakeConnector, tiktok_dance: Dance) -> None:
    tokens = await tiktok_dance()
    async with make_tiktok(tokens) as c:
        rows = [m async for m in c.daily_metrics(EUR, TIKTOK_END, TIKTOK_END)]
    assert rows and all(m.currency == "EUR" for m in rows)
    # Literal rows as TikTok sends them (strings, "-" for unavailable), converted by hand.
    row = {
        "dimensions": {"ad_id": "77", "stat_time_day": "2025-06-30 00:00:00"},
        "metrics": {
            "spend": "1234.56",
            "impressions": "1000",
            "clicks": "12",
            "conversion": "3",
            "total_complete_payment_rate": "0.30",
            "reach": "-",
            "frequency": "1.25",
            "campaign_id": "5",
            "adgroup_id": "6",
        },
    }
    m = mapping.metric_from_row(row, account_id="1", currency="USD")
    assert (m.spend_minor, m.revenue_minor, m.impressions, m.clicks, m.conversions) == (123456, 30, 1000, 12, 3.0)
    assert (m.reach, m.frequency, m.day, m.campaign_external_id) == (None, 1.25, date(2025, 6, 30), "5")
    assert (
        mapping.metric_from_row({**row, "metrics": {"spend": "1500"}}, account_id="1", currency="JPY").spend_minor
        == 1500
    )
    assert (
        mapping.metric_from_row({**row, "metrics": {"spend": "1.234"}}, account_id="1", currency="KWD").spend_minor
        == 1234
    )
    # 0.1 + 0.2 in floats is 0.30000000000000004; in minor units it is exactly 30.
    assert (
        sum(
            mapping.metric_from_row({**row, "metrics": {"spend": s}}, account_id="1", currency="USD").spend_minor
            for s in ("0.1", "0.2")
        )
        == 30
    )


async def test_metrics_refuses_reversed_range(make_tiktok: MakeConnector, tiktok_dance: Dance) -> None:
    async with make_tiktok(await tiktok_dance()) as c:
        with pytest.raises(InvalidRequest):
            [m async for m in c.daily_metrics(BIG, TIKTOK_END, TIKTOK_END - timedelta(days=1))]


async def test_foreign_advertiser_is_permission_denied(
    tiktok_sandbox: TikTokSandbox, make_tiktok: MakeConnector, tiktok_dance: Dance
) -> None:
    async with make_tiktok(await tiktok_dance()) as c:
        with pytest.raises(PermissionDenied) as err:
            [x async for x in c.campaigns("9999999")]
    assert err.value.platform_code == "40001"
    # an authorization that covers only the EUR advertiser
    data = tiktok_sandbox.grant_tokens([EUR])
    async with make_tiktok(TokenSet(access_token=data["access_token"])) as c:
        assert [a.external_id for a in await c.list_ad_accounts()] == [EUR]
        with pytest.raises(PermissionDenied):
            [x async for x in c.ads(BIG)]


# ------------------------------------------------------------------------------ tokens
async def test_expired_token_is_refreshed_once_and_call_replayed(
    tiktok_sandbox: TikTokSandbox, make_tiktok: MakeConnector, tiktok_dance: Dance
) -> None:
    tokens = await tiktok_dance()
    seen: list[TokenSet] = []

    async def persist(fresh: TokenSet) -> None:
        seen.append(fresh)

    async with make_tiktok(tokens, on_tokens=persist) as c:
        tiktok_sandbox.injector.configure(expire_tokens=True)
        campaigns = [x async for x in c.campaigns(BIG)]
        assert len(campaigns) == 5
        assert len(seen) == 1 and seen[0].access_token != tokens.access_token
        assert c.tokens is seen[0] and seen[0].refresh_token == tokens.refresh_token
    # the first API call (advertiser/info) got 40102 inside an HTTP 200 envelope, then was replayed
    assert [e.status for e in tiktok_sandbox.journal.entries("/advertiser/info/")] == [200, 200]
    assert len(tiktok_sandbox.journal.entries("/campaign/get/")) == 1
    assert len(tiktok_sandbox.journal.entries("/oauth2/refresh_token/")) == 1

    # The old token is now useless; without a refresh token the error surfaces as AuthExpired.
    tiktok_sandbox.injector.configure(expire_tokens=True)
    stale = TokenSet(access_token=seen[0].access_token)
    async with make_tiktok(stale) as c:
        with pytest.raises(AuthExpired) as err:
            await c.verify()
    assert err.value.platform_code == "40102"


async def test_proactive_refresh_before_expiry(
    tiktok_sandbox: TikTokSandbox, make_tiktok: MakeConnector, tiktok_dance: Dance
) -> None:
    tokens = await tiktok_dance()
    tokens.expires_at = datetime.now(UTC) + timedelta(seconds=30)  # inside the 300 s skew
    async with make_tiktok(tokens) as c:
        await c.verify()
        assert c.tokens is not None and c.tokens.access_token != tokens.access_token
    assert len(tiktok_sandbox.journal.entries("/oauth2/refresh_token/")) == 1


async def test_revoke_makes_token_and_refresh_dead(make_tiktok: MakeConnector, tiktok_dance: Dance) -> None:
    tokens = await tiktok_dance()
    async with make_tiktok(tokens) as c:
        await c.revoke(tokens)
        with pytest.raises(AuthRevoked):
            await c.verify()  # 40105: refreshing cannot help, no refresh attempted
        with pytest.raises(AuthRevoked):
            await c.refresh(tokens)


# ------------------------------------------------------------------------------ resilience
async def test_rate_limit_code_40100_waits_before_retrying(
    tiktok_sandbox: TikTokSandbox, make_tiktok: MakeConnector, tiktok_dance: Dance
) -> None:
    tokens = await tiktok_dance()
    tiktok_sandbox.injector.configure(rate_limit_next=2, match="/campaign/get/")
    async with make_tiktok(tokens, rate_limit_wait=0.4) as c:
        campaigns = [x async for x in c.campaigns(BIG)]
    assert len(campaigns) == 5
    hits = tiktok_sandbox.journal.entries("/campaign/get/")
    assert [e.fault for e in hits] == ["rate_limit", "rate_limit", None]
    gaps = [b.at - a.at for a, b in itertools.pairwise(hits)]
    assert all(g >= 0.4 for g in gaps), gaps  # measured on the server: the client stayed away


async def test_rate_limit_longer_than_allowed_is_raised(
    tiktok_sandbox: TikTokSandbox, make_tiktok: MakeConnector, tiktok_dance: Dance
) -> None:
    tokens = await tiktok_dance()
    tiktok_sandbox.injector.configure(rate_limit_next=1, match="/campaign/get/")
    retry = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05, jitter=0.01, max_retry_after=5)
    async with make_tiktok(tokens, rate_limit_wait=60.0, retry=retry) as c:
        with pytest.raises(RateLimited) as err:
            [x async for x in c.campaigns(BIG)]
    assert err.value.retry_after == 60.0 and err.value.platform_code == "40100"


async def test_5xx_is_retried(tiktok_sandbox: TikTokSandbox, make_tiktok: MakeConnector, tiktok_dance: Dance) -> None:
    tokens = await tiktok_dance()
    tiktok_sandbox.injector.configure(errors_5xx_next=2, error_status=503, match="/ad/get/")
    async with make_tiktok(tokens) as c:
        ads = [x async for x in c.ads(BIG)]
    assert len(ads) == 200
    assert [e.status for e in tiktok_sandbox.journal.entries("/ad/get/")][:3] == [503, 503, 200]


async def test_circuit_opens_after_repeated_failures_then_recovers(
    tiktok_sandbox: TikTokSandbox, make_tiktok: MakeConnector, tiktok_dance: Dance
) -> None:
    tokens = await tiktok_dance()
    breakers = CircuitBreakers(threshold=3, cooldown=0.5)
    tiktok_sandbox.injector.configure(errors_5xx_next=100, error_status=502, match="/campaign/get/")
    async with make_tiktok(tokens, breakers=breakers) as c:
        with pytest.raises((CircuitOpen, TransientError)):
            [x async for x in c.campaigns(BIG)]
        assert await breakers.state(f"tiktok_ads:{BIG}") == "opened"
        before = len(tiktok_sandbox.journal.entries("/campaign/get/"))
        assert before == 3  # the 4th attempt was short-circuited
        with pytest.raises(CircuitOpen):
            [x async for x in c.campaigns(BIG)]
        assert len(tiktok_sandbox.journal.entries("/campaign/get/")) == before  # nothing sent while open
        assert await breakers.state(f"tiktok_ads:{EUR}") == "closed"  # one breaker per advertiser
        tiktok_sandbox.injector.reset()
        await asyncio.sleep(0.6)  # cooldown -> half-open; one success closes it
        assert len([x async for x in c.campaigns(BIG)]) == 5
        assert await breakers.state(f"tiktok_ads:{BIG}") == "closed"


# ------------------------------------------------------------------------------ writes
@pytest.mark.parametrize("level", [Level.CAMPAIGN, Level.AD_GROUP, Level.AD])
async def test_status_writes_are_reflected_in_reads_and_metrics(
    level: Level, tiktok_sandbox: TikTokSandbox, make_tiktok: MakeConnector, tiktok_dance: Dance
) -> None:
    world = tiktok_sandbox.world.account(BIG)
    entity_id = next(
        iter({Level.CAMPAIGN: world.campaigns, Level.AD_GROUP: world.ad_groups, Level.AD: world.ads}[level])
    )
    async with make_tiktok(await tiktok_dance()) as c:
        result = await c.set_status(BIG, level, entity_id, EntityStatus.PAUSED)
        assert (result.before, result.after) == ({"status": "active"}, {"status": "paused"})
        reader = {Level.CAMPAIGN: c.campaigns, Level.AD_GROUP: c.ad_groups, Level.AD: c.ads}[level]
        assert {x.external_id: x.status async for x in reader(BIG)}[entity_id] is EntityStatus.PAUSED
        assert (await c.read_entity(BIG, level, entity_id))["status"] == "paused"  # one entity read back
        affected = {a.id for a in world.ads.values() if entity_id in (a.id, a.ad_group_id, a.campaign_id)}
        today = [m async for m in c.daily_metrics(BIG, TIKTOK_END, TIKTOK_END)]
        assert today and not {m.entity_external_id for m in today} & affected  # paused: no delivery

        back = await c.set_status(BIG, level, entity_id, EntityStatus.ACTIVE)
        assert back.after == {"status": "active"}
        assert {x.external_id: x.status async for x in reader(BIG)}[entity_id] is EntityStatus.ACTIVE
        with pytest.raises(InvalidRequest):
            await c.set_status(BIG, level, entity_id, EntityStatus.ARCHIVED)


async def test_budget_writes_exact_and_reflected(
    tiktok_sandbox: TikTokSandbox, make_tiktok: MakeConnector, tiktok_dance: Dance
) -> None:
    world = tiktok_sandbox.world.account(BIG)
    campaign_id = next(iter(world.campaigns))
    group_id = next(iter(world.ad_groups))
    before = world.campaigns[campaign_id].daily_budget_minor
    async with make_tiktok(await tiktok_dance()) as c:
        result = await c.set_daily_budget(BIG, Level.CAMPAIGN, campaign_id, 12345)  # 123.45 USD
        assert result.before == {"daily_budget_minor": before, "currency": "USD"}
        assert result.after == {"daily_budget_minor": 12345, "currency": "USD"}
        assert {x.external_id: x.daily_budget_minor async for x in c.campaigns(BIG)}[campaign_id] == 12345
        assert (await c.read_entity(BIG, Level.CAMPAIGN, campaign_id))["daily_budget_minor"] == 12345

        await c.set_daily_budget(BIG, Level.AD_GROUP, group_id, 4999)
        assert {x.external_id: x.daily_budget_minor async for x in c.ad_groups(BIG)}[group_id] == 4999
        assert world.ad_groups[group_id].daily_budget_minor == 4999
        assert await c.read_entity(BIG, Level.AD_GROUP, group_id) == {"status": "active", "daily_budget_minor": 4999}
        assert (await c.read_entity(BIG, Level.AD, next(iter(world.ads))))["daily_budget_minor"] is None

        with pytest.raises(InvalidRequest):
            await c.set_daily_budget(BIG, Level.AD, next(iter(world.ads)), 1000)
        with pytest.raises(InvalidRequest):
            await c.set_daily_budget(BIG, Level.CAMPAIGN, campaign_id, 0)


# ------------------------------------------------------------------------------ secrets
async def test_no_token_or_secret_in_logs_or_errors(
    tiktok_sandbox: TikTokSandbox,
    make_tiktok: MakeConnector,
    tiktok_dance: Dance,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    recorder = RecordingObserver()
    errors: list[str] = []
    with structlog.testing.capture_logs() as captured:
        tokens = await tiktok_dance()
        async with make_tiktok(tokens, rate_limit_wait=0.05, observer=recorder) as c:
            tiktok_sandbox.injector.configure(rate_limit_next=1, errors_5xx_next=1, match="/campaign/get/")
            [x async for x in c.campaigns(BIG)]
            tiktok_sandbox.injector.configure(expire_tokens=True)
            await c.verify()  # 40102 -> refresh -> replay
            fresh = c.tokens
            assert fresh is not None and fresh.access_token != tokens.access_token
            await c.revoke(fresh)
            for call in (c.verify(), c.refresh(fresh)):
                try:
                    await call
                except Exception as exc:  # the texts we would log or show a user
                    errors.append(f"{exc!s} {exc!r}")
    assert len(errors) == 2 and all("TikTok code" in e for e in errors)
    assert sum("retry" in t for t in recorder.texts) >= 2  # the failure paths really ran
    out = capsys.readouterr()
    haystack = "\n".join([repr(captured), caplog.text, out.out, out.err, *errors, *recorder.texts])
    for secret in (tokens.access_token, tokens.refresh_token, fresh.access_token, tiktok_sandbox.secret):
        assert secret and secret not in haystack
