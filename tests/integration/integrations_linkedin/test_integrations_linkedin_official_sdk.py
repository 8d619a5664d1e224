"""LinkedIn's official Python client (``linkedin-api-client``) pointed at the sandbox.

Why: our connector and our sandbox were written from the same reading of LinkedIn's docs, so a
shape mistake would be shared and invisible. LinkedIn's own client is an independent reading
(its Rest.li encoder, its headers, its response parsing), so every call the connector makes,
and every fault the sandbox injects, is driven through it here. The client is used unchanged:
only its base URLs (module constants, its one configuration point) and the app's credentials
are set.

Not in the client: token revocation (it has introspection but no ``revoke``), so the revoke is
sent over the client's own ``requests`` session and its effect read back through the client's
introspection.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from omnify.integrations.base import EntityStatus, TokenSet
from omnify.integrations.linkedin import mapping, version
from omnify.integrations.linkedin.sandbox import METRICS, LinkedInSandbox
from tests.integration.integrations_linkedin.linkedin_helpers import (
    BIG,
    LINKEDIN_END,
    LINKEDIN_REDIRECT,
    SMALL,
    MakeConnector,
)

pytest.importorskip("linkedin_api", reason="linkedin-api-client not installed")

import linkedin_api.clients.auth.utils.oauth as sdk_oauth
import linkedin_api.common.constants as sdk_constants
from linkedin_api.clients.auth.client import AuthClient
from linkedin_api.clients.restli.client import RestliClient

V = version.PINNED


@pytest.fixture
def sdk(linkedin_sandbox: LinkedInSandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[AuthClient, Any]]:
    """The client's base URLs on the sandbox; an AuthClient with the sandbox app's credentials."""
    monkeypatch.setattr(sdk_constants, "OAUTH_BASE_URL", f"{linkedin_sandbox.url}/oauth/v2")
    monkeypatch.setattr(sdk_oauth, "OAUTH_BASE_URL", f"{linkedin_sandbox.url}/oauth/v2")
    monkeypatch.setattr(sdk_constants, "VERSIONED_BASE_URL", f"{linkedin_sandbox.url}/rest")
    auth = AuthClient(client_id=linkedin_sandbox.client_id, client_secret=linkedin_sandbox.client_secret,
                      redirect_url=LINKEDIN_REDIRECT)
    yield auth, RestliClient()


def _authorize(auth: AuthClient) -> dict[str, Any]:
    """The 3-legged dance: the client's authorization URL, the member's consent, the exchange."""
    url = auth.generate_member_auth_url(scopes=list(mapping.SCOPES), state="sdk-state")
    consent = httpx.get(url + "&sandbox_auto_approve=1", timeout=10)
    assert consent.status_code == 302
    back = httpx.URL(consent.headers["location"])
    assert back.params["state"] == "sdk-state"
    token = auth.exchange_auth_code_for_access_token(back.params["code"])
    assert token.status_code == 200 and token.access_token and token.refresh_token
    assert token.expires_in == 60 * 86400 and token.refresh_token_expires_in > 364 * 86400
    assert set(token.scope.split(",")) == set(mapping.SCOPES)
    return {"access": token.access_token, "refresh": token.refresh_token}


def _pages(restli: RestliClient, path: str, access: str, query: dict[str, Any],
           path_keys: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every element of a cursor-paged finder (``query["q"]`` names it); the client leaves
    ``metadata.nextPageToken`` in the raw body, so the loop reads it there."""
    finder, params = query["q"], {k: v for k, v in query.items() if k != "q"}
    out: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = {**params, "pageSize": 2, **({"pageToken": token} if token else {})}
        resp = restli.finder(resource_path=path, finder_name=finder, path_keys=path_keys, query_params=page,
                             access_token=access, version_string=V)
        assert resp.status_code == 200, resp.response.text
        out += resp.elements
        token = resp.response.json().get("metadata", {}).get("nextPageToken")
        if not token:
            return out


def test_every_connector_call_through_the_official_client(
        sdk: tuple[AuthClient, RestliClient], linkedin_sandbox: LinkedInSandbox) -> None:
    auth, restli = sdk
    tokens = _authorize(auth)
    access = tokens["access"]

    # Refresh: a new access token, the same refresh token.
    refreshed = auth.exchange_refresh_token_for_access_token(tokens["refresh"])
    assert refreshed.status_code == 200 and refreshed.refresh_token == tokens["refresh"]
    assert refreshed.access_token != access
    access = refreshed.access_token

    # adAccountUsers (start/count) and adAccounts search (pageSize/pageToken) + get.
    users = restli.finder(resource_path="/adAccountUsers", finder_name="authenticatedUser", access_token=access,
                          version_string=V, query_params={"start": 0, "count": 2})
    assert users.status_code == 200 and users.paging.total == 3 and len(users.elements) == 2
    assert users.elements[0]["user"] == "urn:li:person:sbxMember01"
    accounts = _pages(restli, "/adAccounts", access, {"q": "search",
                                                      "search": {"status": {"values": ["ACTIVE", "DRAFT"]}}})
    assert [a["id"] for a in accounts] == [int(a) for a in sorted(linkedin_sandbox.world.accounts)]
    one = restli.get(resource_path="/adAccounts/{id}", path_keys={"id": int(SMALL)}, access_token=access,
                     version_string=V)
    assert one.status_code == 200 and one.entity["currency"] == "USD"

    # Campaign groups, campaigns and creatives, nested under the account, paged.
    world = linkedin_sandbox.world.account(BIG)
    groups = _pages(restli, "/adAccounts/{id}/adCampaignGroups", access,
                    {"q": "search", "search": {"status": {"values": ["ACTIVE", "PAUSED"]}}}, {"id": int(BIG)})
    campaigns = _pages(restli, "/adAccounts/{id}/adCampaigns", access,
                       {"q": "search", "search": {"status": {"values": ["ACTIVE", "PAUSED", "ARCHIVED"]}}},
                       {"id": int(BIG)})
    assert sorted(str(c["id"]) for c in campaigns) == sorted(world.campaigns)
    assert {c["campaignGroup"] for c in campaigns} == {f"urn:li:sponsoredCampaignGroup:{g['id']}" for g in groups}
    creatives = _pages(restli, "/adAccounts/{id}/creatives", access, {"q": "criteria"}, {"id": int(BIG)})
    assert len(creatives) == len(world.ads)
    only = _pages(restli, "/adAccounts/{id}/creatives", access,
                  {"q": "criteria", "campaigns": [creatives[0]["campaign"]], "intendedStatuses": ["ACTIVE"]},
                  {"id": int(BIG)})
    assert only and {c["campaign"] for c in only} == {creatives[0]["campaign"]}
    campaign_id = campaigns[0]["id"]
    got = restli.get(resource_path="/adAccounts/{a}/adCampaigns/{c}", path_keys={"a": int(BIG), "c": campaign_id},
                     access_token=access, version_string=V)
    assert got.status_code == 200 and got.entity["dailyBudget"]["currencyCode"] == "USD"
    creative_urn = creatives[0]["id"]
    got = restli.get(resource_path="/adAccounts/{a}/creatives/{c}", path_keys={"a": int(BIG), "c": creative_urn},
                     access_token=access, version_string=V)
    assert got.status_code == 200 and got.entity["id"] == creative_urn

    # adAnalytics, analytics finder, CREATIVE pivot, DAILY, one day: spend adds up to the world's.
    day = LINKEDIN_END - timedelta(days=2)
    fields = ",".join([*mapping.ANALYTICS_KEYS, *mapping.ANALYTICS_METRICS])
    report = restli.finder(resource_path="/adAnalytics", finder_name="analytics", access_token=access,
                           version_string=V, query_params={
                               "pivot": "CREATIVE", "timeGranularity": "DAILY",
                               "dateRange": {"start": {"year": day.year, "month": day.month, "day": day.day},
                                             "end": {"year": day.year, "month": day.month, "day": day.day}},
                               "accounts": [f"urn:li:sponsoredAccount:{BIG}"], "fields": fields})
    assert report.status_code == 200, report.response.text
    truth = world.metric_rows(day, day)
    assert len(report.elements) == len(truth)
    assert sum(Decimal(e["costInLocalCurrency"]) for e in report.elements) * 100 == int(truth.spend_minor.sum())
    assert set(report.elements[0]) == {*mapping.ANALYTICS_KEYS, *mapping.ANALYTICS_METRICS}
    by_campaign = restli.finder(resource_path="/adAnalytics", finder_name="analytics", access_token=access,
                                version_string=V, query_params={
                                    "pivot": "CAMPAIGN", "timeGranularity": "ALL",
                                    "dateRange": {"start": {"year": day.year, "month": day.month, "day": day.day}},
                                    "campaigns": [f"urn:li:sponsoredCampaign:{campaign_id}"],
                                    "fields": "pivotValues,impressions"})
    assert by_campaign.status_code == 200 and by_campaign.elements[0]["pivotValues"] == [
        f"urn:li:sponsoredCampaign:{campaign_id}"]

    # Partial updates: campaign status and daily budget, creative intendedStatus.
    paused = restli.partial_update(resource_path="/adAccounts/{a}/adCampaigns/{c}",
                                   path_keys={"a": int(BIG), "c": campaign_id}, patch_set_object={"status": "PAUSED"},
                                   access_token=access, version_string=V)
    assert paused.status_code == 204 and world.campaigns[str(campaign_id)].status == "paused"
    budget = restli.partial_update(resource_path="/adAccounts/{a}/adCampaigns/{c}",
                                   path_keys={"a": int(BIG), "c": campaign_id},
                                   patch_set_object={"dailyBudget": {"amount": "123.45", "currencyCode": "USD"}},
                                   access_token=access, version_string=V)
    assert budget.status_code == 204 and world.campaigns[str(campaign_id)].daily_budget_minor == 12345
    creative = restli.partial_update(resource_path="/adAccounts/{a}/creatives/{c}",
                                     path_keys={"a": int(BIG), "c": creative_urn},
                                     patch_set_object={"intendedStatus": "PAUSED"}, access_token=access,
                                     version_string=V)
    assert creative.status_code == 204 and world.ads[creative_urn.rsplit(":", 1)[1]].status == "paused"

    # Revocation (not in the client: its session sends the documented form), read back by introspection.
    revoke = auth.session.post(f"{linkedin_sandbox.url}/oauth/v2/revoke", data={
        "client_id": linkedin_sandbox.client_id, "client_secret": linkedin_sandbox.client_secret, "token": access})
    assert revoke.status_code == 200
    seen = auth.introspect_access_token(access)
    assert seen.active is False and seen.status == "revoked"


async def test_sdk_writes_are_what_our_connector_reads(sdk: tuple[AuthClient, RestliClient],
                                                       linkedin_sandbox: LinkedInSandbox,
                                                       make_linkedin: MakeConnector) -> None:
    _auth, restli = sdk
    access = linkedin_sandbox.grant_tokens()["access_token"]
    campaign = next(iter(linkedin_sandbox.world.account(SMALL).campaigns))
    resp = restli.partial_update(resource_path="/adAccounts/{a}/adCampaigns/{c}",
                                 path_keys={"a": int(SMALL), "c": int(campaign)}, patch_set_object={"status": "PAUSED"},
                                 access_token=access, version_string=V)
    assert resp.status_code == 204
    async with make_linkedin(TokenSet(access_token=access)) as c:
        statuses = {x.external_id: x.status async for x in c.campaigns(SMALL)}
    assert statuses[campaign] is EntityStatus.PAUSED


def _error(resp: Any) -> dict[str, Any]:
    body = resp.response.json()
    assert isinstance(body, dict)
    return body


def test_every_injected_fault_reaches_the_official_client_in_linkedin_shape(
        sdk: tuple[AuthClient, RestliClient], linkedin_sandbox: LinkedInSandbox) -> None:
    auth, restli = sdk
    tokens = _authorize(auth)
    access = tokens["access"]

    def accounts(token: str = access, version_string: str = V) -> Any:
        return restli.finder(resource_path="/adAccounts", finder_name="search", access_token=token,
                             version_string=version_string, query_params={"pageSize": 10})

    # 429: LinkedIn's daily throttle body, no Retry-After.
    linkedin_sandbox.injector.configure(rate_limit_next=1)
    throttled = accounts()
    assert throttled.status_code == 429 and "retry-after" not in throttled.headers
    assert _error(throttled) == {"status": 429, "serviceErrorCode": 101, "code": "TOO_MANY_REQUESTS",
                                 "message": "Resource level throttle APPLICATION DAY limit for calls to this "
                                            "resource is reached."}
    # The sandbox's own daily quota, the same answer.
    linkedin_sandbox.config.daily_quota = 1
    assert accounts().status_code == 200 and accounts().status_code == 429
    linkedin_sandbox.config.daily_quota = None

    # 5xx bursts, then recovery.
    linkedin_sandbox.injector.configure(errors_5xx_next=2, error_status=503)
    assert [accounts().status_code for _ in range(3)] == [503, 503, 200]
    linkedin_sandbox.injector.configure(errors_5xx_next=1, error_status=500)
    failed = accounts()
    assert failed.status_code == 500 and _error(failed)["code"] == "INTERNAL_SERVER_ERROR"

    # Latency: slow but correct.
    linkedin_sandbox.injector.configure(latency_ms=150, match="/adAccounts")
    assert accounts().status_code == 200
    linkedin_sandbox.injector.configure(latency_ms=0, match=None)

    # Expired access token -> 401 EXPIRED_ACCESS_TOKEN; the client's refresh brings it back.
    linkedin_sandbox.injector.configure(expire_tokens=True)
    expired = accounts()
    assert expired.status_code == 401 and _error(expired)["code"] == "EXPIRED_ACCESS_TOKEN"
    assert _error(expired)["serviceErrorCode"] == 65602
    access = auth.exchange_refresh_token_for_access_token(tokens["refresh"]).access_token
    assert accounts(access).status_code == 200

    # A version LinkedIn no longer serves, and an invalid token.
    old = accounts(access, "202401")
    assert old.status_code == 426 and _error(old) == {"status": 426, "code": "NONEXISTENT_VERSION",
                                                      "message": "Requested version 20240101 is not active"}
    assert _error(accounts("not-a-token"))["code"] == "INVALID_ACCESS_TOKEN"

    # A scope the token lacks, and LinkedIn's validation errors.
    reader = linkedin_sandbox.grant_tokens(scopes=("r_ads",))["access_token"]
    campaign = next(iter(linkedin_sandbox.world.account(SMALL).campaigns))
    denied = restli.partial_update(resource_path="/adAccounts/{a}/adCampaigns/{c}",
                                   path_keys={"a": int(SMALL), "c": int(campaign)},
                                   patch_set_object={"status": "PAUSED"}, access_token=reader, version_string=V)
    assert denied.status_code == 403 and _error(denied)["code"] == "ACCESS_DENIED"
    low = restli.partial_update(resource_path="/adAccounts/{a}/adCampaigns/{c}",
                                path_keys={"a": int(SMALL), "c": int(campaign)},
                                patch_set_object={"dailyBudget": {"amount": "2.00", "currencyCode": "USD"}},
                                access_token=access, version_string=V)
    body = _error(low)
    assert low.status_code == 400 and body["code"] == "VALIDATION_FAILED"
    assert body["errorDetails"]["inputErrors"][0]["input"]["inputPath"]["fieldPath"] == "dailyBudget.amount"
    wide = ",".join(["dateRange", "pivotValues", *sorted(METRICS)][:21])
    too_wide = restli.finder(resource_path="/adAnalytics", finder_name="analytics", access_token=access,
                             version_string=V, query_params={
                                 "pivot": "CREATIVE", "timeGranularity": "DAILY",
                                 "dateRange": {"start": {"year": 2026, "month": 6, "day": 1}},
                                 "accounts": [f"urn:li:sponsoredAccount:{SMALL}"], "fields": wide})
    assert too_wide.status_code == 400 and "at most 20 fields" in _error(too_wide)["message"]

    # Revoked by the member -> 401 REVOKED_ACCESS_TOKEN, and the refresh token is dead too.
    auth.session.post(f"{linkedin_sandbox.url}/oauth/v2/revoke", data={
        "client_id": linkedin_sandbox.client_id, "client_secret": linkedin_sandbox.client_secret, "token": access})
    revoked = accounts(access)
    assert revoked.status_code == 401 and _error(revoked)["code"] == "REVOKED_ACCESS_TOKEN"
    dead = auth.exchange_refresh_token_for_access_token(tokens["refresh"])
    assert dead.status_code == 400 and dead.response.json()["error"] == "invalid_request"
