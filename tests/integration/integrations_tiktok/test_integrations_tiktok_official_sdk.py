"""TikTok's official Python SDK (``business_api_client``) pointed at the sandbox.

Why: our connector and our sandbox were written from the same reading of the docs, so a
shape mistake would be shared and invisible; TikTok's own generated client is an
independent reading of the API (paths, JSON-encoded list parameters, the envelope).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from omnify.integrations.base import EntityStatus, TokenSet
from omnify.integrations.tiktok.sandbox import TikTokSandbox
from tests.integration.integrations_tiktok.tiktok_helpers import TIKTOK_END, TIKTOK_REDIRECT, MakeConnector

sdk = pytest.importorskip("business_api_client", reason="tiktok-business-api-sdk-official not installed")

from business_api_client.api.adgroup_api import AdgroupApi  # noqa: E402
from business_api_client.api.authentication_api import AuthenticationApi  # noqa: E402
from business_api_client.api.campaign_creation_api import CampaignCreationApi  # noqa: E402
from business_api_client.api.reporting_api import ReportingApi  # noqa: E402
from business_api_client.models import AdgroupStatusUpdateBody, Oauth2AccessTokenBody  # noqa: E402
from business_api_client.tiktok_business.tiktok_exceptions import TiktokSDKError  # noqa: E402

BIG = "1000001"


def _client(sandbox: TikTokSandbox) -> Any:
    config = sdk.Configuration()
    config.host = sandbox.url
    return sdk.ApiClient(config)


async def test_official_sdk_oauth_paging_reports_and_writes(
    tiktok_sandbox: TikTokSandbox, make_tiktok: MakeConnector
) -> None:
    async with httpx.AsyncClient() as browser:
        consent = await browser.get(
            f"{tiktok_sandbox.url}/portal/auth",
            params={
                "app_id": tiktok_sandbox.app_id,
                "redirect_uri": TIKTOK_REDIRECT,
                "state": "sdk",
                "sandbox_auto_approve": "1",
            },
        )
    auth_code = httpx.URL(consent.headers["location"]).params["auth_code"]
    client = _client(tiktok_sandbox)

    token = AuthenticationApi(client).oauth2_access_token(
        body=Oauth2AccessTokenBody(app_id=tiktok_sandbox.app_id, secret=tiktok_sandbox.secret, auth_code=auth_code)
    )
    access = token["data"]["access_token"]
    assert token["data"]["advertiser_ids"] == ["1000001", "1000002", "1000003"]

    advertisers = AuthenticationApi(client).oauth2_advertiser_get(tiktok_sandbox.app_id, tiktok_sandbox.secret, access)
    assert [a["advertiser_id"] for a in advertisers["data"]["list"]] == ["1000001", "1000002", "1000003"]

    # campaign/get: the SDK sends fields as a JSON list; page through page_info.
    api = CampaignCreationApi(client)
    seen: list[str] = []
    page = 1
    while True:
        resp = api.campaign_get(BIG, access, page=page, page_size=2, fields=["campaign_id", "budget", "budget_mode"])
        info = resp["data"]["page_info"]
        seen += [c["campaign_id"] for c in resp["data"]["list"]]
        assert set(resp["data"]["list"][0]) == {"campaign_id", "budget", "budget_mode"}
        if page >= info["total_page"]:
            break
        page += 1
    assert info["total_number"] == 5 and sorted(seen) == sorted(tiktok_sandbox.world.account(BIG).campaigns)

    # report/integrated/get through the SDK: spend strings add up exactly to the world's minor units.
    day = TIKTOK_END - timedelta(days=3)
    report = ReportingApi(client).report_integrated_get(
        "BASIC",
        access,
        advertiser_id=BIG,
        data_level="AUCTION_AD",
        dimensions=["ad_id", "stat_time_day"],
        metrics=["spend", "impressions"],
        start_date=day.isoformat(),
        end_date=day.isoformat(),
        page=1,
        page_size=1000,
    )
    rows = report["data"]["list"]
    truth = tiktok_sandbox.world.account(BIG).metric_rows(day, day)
    assert len(rows) == len(truth)
    assert sum(Decimal(r["metrics"]["spend"]) for r in rows) * 100 == int(truth.spend_minor.sum())

    # A write through the SDK is visible to our connector (same sandbox state).
    group_id = next(iter(tiktok_sandbox.world.account(BIG).ad_groups))
    update = AdgroupApi(client).adgroup_status_update(
        access, body=AdgroupStatusUpdateBody(advertiser_id=BIG, adgroup_ids=[group_id], operation_status="DISABLE")
    )
    assert update["data"] == {"adgroup_ids": [group_id], "status": "DISABLE"}
    async with make_tiktok(TokenSet(access_token=access)) as c:
        statuses = {g.external_id: g.status async for g in c.ad_groups(BIG)}
    assert statuses[group_id] is EntityStatus.PAUSED

    # Errors arrive as TikTok envelopes, which the SDK turns into its own exception.
    with pytest.raises(TiktokSDKError) as denied:
        api.campaign_get("9999999", access)
    assert "Error Code: 40001" in str(denied.value) and "No permission" in str(denied.value)
