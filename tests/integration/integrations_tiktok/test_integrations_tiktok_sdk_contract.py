"""Contract: TikTok's official SDK (``tiktok-business-api-sdk-official``) drives the sandbox for
every call our connector makes and for each injected fault.

Only ``Configuration.host`` differs from production. Two connector calls have no SDK method
(``oauth2/refresh_token/`` and ``oauth2/revoke_token/``: the SDK's AuthenticationApi only has
``oauth2_access_token`` and ``oauth2_advertiser_get``); the connector tests cover those. The
SDK hard-codes ``/open_api/v1.3`` in its paths, so the switched-off v1.2 is shown raw.
"""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from omnify.integrations.tiktok.sandbox import TikTokSandbox
from omnify.integrations.tiktok.version import POLICY
from tests.integration.integrations_tiktok.tiktok_helpers import TIKTOK_END

sdk = pytest.importorskip("business_api_client", reason="tiktok-business-api-sdk-official not installed")

from business_api_client.api.account_management_api import AccountManagementApi  # noqa: E402
from business_api_client.api.ad_api import AdApi  # noqa: E402
from business_api_client.api.adgroup_api import AdgroupApi  # noqa: E402
from business_api_client.api.authentication_api import AuthenticationApi  # noqa: E402
from business_api_client.api.campaign_creation_api import CampaignCreationApi  # noqa: E402
from business_api_client.api.reporting_api import ReportingApi  # noqa: E402
from business_api_client.models import (  # noqa: E402
    AdgroupUpdateBody,
    AdStatusUpdateBody,
    CampaignStatusUpdateBody,
    CampaignUpdateBody,
)
from business_api_client.rest import ApiException  # noqa: E402
from business_api_client.tiktok_business.tiktok_exceptions import TiktokSDKError  # noqa: E402

BIG, SMALL = "1000001", "1000003"


@pytest.fixture
def client(tiktok_sandbox: TikTokSandbox) -> Any:
    config = sdk.Configuration()
    config.host = tiktok_sandbox.url
    return sdk.ApiClient(config)


@pytest.fixture
def access(tiktok_sandbox: TikTokSandbox) -> str:
    return str(tiktok_sandbox.grant_tokens()["access_token"])


def test_every_read_the_connector_makes(tiktok_sandbox: TikTokSandbox, client: Any, access: str) -> None:
    world = tiktok_sandbox.world
    listed = AuthenticationApi(client).oauth2_advertiser_get(tiktok_sandbox.app_id, tiktok_sandbox.secret, access)
    assert [a["advertiser_id"] for a in listed["data"]["list"]] == sorted(world.accounts)
    info = AccountManagementApi(client).advertiser_info([BIG, SMALL], access, fields=["advertiser_id", "currency",
                                                                                      "timezone", "name"])
    assert {a["advertiser_id"]: a["currency"] for a in info["data"]["list"]} == {
        BIG: world.account(BIG).currency, SMALL: world.account(SMALL).currency}

    acc = world.account(BIG)
    groups = AdgroupApi(client).adgroup_get(BIG, access, page=1, page_size=1000)["data"]
    ads, page = [], 1
    while True:
        body = AdApi(client).ad_get(BIG, access, page=page, page_size=100)["data"]
        ads += body["list"]
        if page >= body["page_info"]["total_page"]:
            break
        page += 1
    assert groups["page_info"]["total_number"] == len(acc.ad_groups) and len(ads) == len(acc.ads)
    campaigns = CampaignCreationApi(client).campaign_get(BIG, access, page=1, page_size=1000)["data"]["list"]
    assert {c["campaign_id"] for c in campaigns} == set(acc.campaigns)

    day = TIKTOK_END - timedelta(days=2)
    rows = ReportingApi(client).report_integrated_get(
        "BASIC", access, advertiser_id=BIG, data_level="AUCTION_AD", dimensions=["ad_id", "stat_time_day"],
        metrics=["spend", "impressions", "clicks", "conversion", "total_complete_payment_rate"],
        start_date=day.isoformat(), end_date=day.isoformat(), page=1, page_size=1000)["data"]["list"]
    truth = acc.metric_rows(day, day)
    assert len(rows) == len(truth)
    assert sum(Decimal(r["metrics"]["spend"]) for r in rows) * 100 == int(truth.spend_minor.sum())


def test_every_write_the_connector_makes(tiktok_sandbox: TikTokSandbox, client: Any, access: str) -> None:
    acc = tiktok_sandbox.world.account(SMALL)
    campaign_id = next(iter(acc.campaigns))
    group = next(g for g in acc.ad_groups.values() if g.campaign_id == campaign_id)
    ad = next(a for a in acc.ads.values() if a.ad_group_id == group.id)
    camp_api = CampaignCreationApi(client)
    camp_api.campaign_status_update(access, body=CampaignStatusUpdateBody(
        advertiser_id=SMALL, campaign_ids=[campaign_id], operation_status="DISABLE"))
    AdApi(client).ad_status_update(access, body=AdStatusUpdateBody(
        advertiser_id=SMALL, ad_ids=[ad.id], operation_status="DISABLE"))
    assert (acc.campaigns[campaign_id].status, acc.ads[ad.id].status) == ("paused", "paused")
    updated = camp_api.campaign_update(access, body=CampaignUpdateBody(
        advertiser_id=SMALL, campaign_id=campaign_id, budget=123.45))
    assert updated["data"]["budget"] == 123.45 and acc.campaigns[campaign_id].daily_budget_minor == 12345

    # adgroup/update/: the SDK's ad-group call. With the campaign owning the budget it is refused.
    before = group.name
    with pytest.raises(TiktokSDKError, match="Error Code: 40002"):
        AdgroupApi(client).adgroup_update(access, body=AdgroupUpdateBody(
            advertiser_id=SMALL, adgroup_id=group.id, budget=50.0, adgroup_name="Never applied"))
    assert acc.ad_groups[group.id].name == before  # refused as a whole
    acc.campaigns[campaign_id].daily_budget_minor = None  # ad-group budgets (no CBO)
    renamed = AdgroupApi(client).adgroup_update(access, body=AdgroupUpdateBody(
        advertiser_id=SMALL, adgroup_id=group.id, budget=50.0, adgroup_name="Retargeting EU"))
    assert renamed["data"]["adgroup_name"] == "Retargeting EU" and renamed["data"]["budget"] == 50.0
    assert acc.ad_groups[group.id].daily_budget_minor == 5000


def test_injected_faults_reach_the_sdk(tiktok_sandbox: TikTokSandbox, client: Any, access: str) -> None:
    """A throttle is an HTTP 200 envelope (the SDK raises its TiktokSDKError); a server error is
    an HTTP 5xx carrying the envelope (the SDK's REST layer raises ApiException)."""
    api = CampaignCreationApi(client)
    tiktok_sandbox.injector.configure(rate_limit_next=1, match="/campaign/get")
    with pytest.raises(TiktokSDKError, match="Error Code: 40100"):
        api.campaign_get(BIG, access)
    tiktok_sandbox.injector.configure(errors_5xx_next=1, error_status=503)
    with pytest.raises(ApiException) as boom:
        api.campaign_get(BIG, access)
    assert boom.value.status == 503 and json.loads(boom.value.body)["code"] == 50000
    assert api.campaign_get(BIG, access)["data"]["list"]


def test_expired_token_and_expired_version(tiktok_sandbox: TikTokSandbox, client: Any) -> None:
    stale = tiktok_sandbox.store.issue_tokens(client_id=tiktok_sandbox.app_id, subject="sandbox-business-user",
                                              scopes=["ads"], access_ttl=-1, extra={"advertiser_ids": [BIG]})
    with pytest.raises(TiktokSDKError, match="Error Code: 40102"):
        CampaignCreationApi(client).campaign_get(BIG, stale.access_token)
    gone = sorted(v.name for v in POLICY.versions if POLICY.is_expired(v.name))[-1]
    r = httpx.get(f"{tiktok_sandbox.url}/open_api/{gone}/campaign/get/", params={"advertiser_id": BIG}, timeout=10)
    assert r.status_code == 404 and r.json()["code"] == 40002 and gone in r.json()["message"]
    assert r.json()["request_id"] and POLICY.pinned in r.json()["message"]
