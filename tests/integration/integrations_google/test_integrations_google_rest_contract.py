"""Contract: the Google sandbox answers the REST interface the way Google's reference shows.

The official ``google-ads`` Python library cannot be used here: it speaks gRPC only (its
service transports are ``grpc`` and ``grpc_asyncio``; no REST transport exists in google-ads
34.x, the release for v26), while our connector and the sandbox speak REST. So the contract
is a set of request/response pairs transcribed from Google's REST reference
(``google_ads_rest_reference.json``, one source URL per pair), covering every call the
connector makes and each injected fault: every pair is replayed against the sandbox and the
answer must have the reference's status, keys, JSON types and error codes.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from omnify.integrations.base import TokenSet
from omnify.integrations.google.sandbox import GoogleSandbox, budget_id
from omnify.integrations.google.version import POLICY
from omnify.integrations.sandbox_common import SandboxServer

Env = tuple[GoogleSandbox, SandboxServer]
REFERENCE = json.loads((Path(__file__).parent / "google_ads_rest_reference.json").read_text())
CUSTOMER = "3456789012"  # directly accessible (no login-customer-id needed)


def shape(value: Any) -> Any:
    """Keys and JSON types, recursively (a list by its first element)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if isinstance(value, bool):
        return "bool"
    return "number" if isinstance(value, int | float) else type(value).__name__


def codes(value: Any) -> list[Any]:
    """The parts of an error a client branches on: status, @type, errorCode."""
    if isinstance(value, dict):
        keys = ("@type", "errorCode", *(("status",) if "code" in value else ()))  # status of an error envelope
        found = [(k, value[k]) for k in keys if k in value]
        return found + [c for v in value.values() for c in codes(v)]
    if isinstance(value, list):
        return [c for v in value for c in codes(v)]
    return []


def fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


async def replay(env: Env, pair: dict[str, Any], values: dict[str, str], token: str) -> httpx.Response:
    sandbox, server = env
    req = pair["request"]
    headers = {"Authorization": f"Bearer {token}", "developer-token": sandbox.config.developer_token}
    for name in req.get("drop_headers", []):
        headers.pop(name)
    if "fault" in req:
        sandbox.injector.configure(**req["fault"])
    body = json.loads(fill(json.dumps(req["body"]), values)) if "body" in req else None
    form = json.loads(fill(json.dumps(req["form"]), values)) if "form" in req else None
    async with httpx.AsyncClient(base_url=server.url) as c:
        return await c.request(req["method"], fill(req["path"], values), headers=headers, json=body, data=form)


@pytest.fixture
def values(google_sandbox: Env, google_tokens: TokenSet) -> dict[str, str]:
    sandbox, _ = google_sandbox
    acc = sandbox.world.account(CUSTOMER)
    ad = next(iter(acc.ads.values()))
    campaign = next(iter(acc.campaigns))
    return {"version": POLICY.pinned, "customer": CUSTOMER, "campaign": campaign, "adGroup": ad.ad_group_id,
            "ad": ad.id, "budget": budget_id(campaign), "since": str(acc.metrics.end - timedelta(days=2)),
            "until": str(acc.metrics.end), "refresh_token": google_tokens.refresh_token or "",
            "client_id": sandbox.config.client_id, "client_secret": sandbox.config.client_secret}


@pytest.mark.parametrize("pair", REFERENCE["pairs"], ids=[p["name"] for p in REFERENCE["pairs"]])
async def test_sandbox_answers_like_the_reference(
    google_sandbox: Env, google_tokens: TokenSet, values: dict[str, str], pair: dict[str, Any]
) -> None:
    sandbox, _ = google_sandbox
    sandbox.config.search_page_size = 1  # CUSTOMER has 2 campaigns: two pages
    token = google_tokens.access_token
    if pair["request"].get("token") == "expired":
        token = sandbox.tokens.issue_tokens(client_id=sandbox.config.client_id, subject="google-sandbox-user",
                                            scopes=["https://www.googleapis.com/auth/adwords"],
                                            access_ttl=-1).access_token
    if "{last_page_token}" in json.dumps(pair["request"]):
        first = next(p for p in REFERENCE["pairs"] if p["name"] == "search, first page")
        values = {**values, "last_page_token": (await replay(google_sandbox, first, values, token)).json()[
            "nextPageToken"]}
    try:
        got = await replay(google_sandbox, pair, values, token)
    finally:
        sandbox.config.search_page_size = 10_000
        sandbox.world.reset()
    want = json.loads(fill(json.dumps(pair["response"]), values))
    assert got.status_code == want["status"], got.text
    assert shape(got.json()) == shape(want["body"]), got.text
    assert codes(got.json()) == codes(want["body"])


async def test_pages_cover_every_row_once_and_tokens_are_bound_to_their_query(
    google_sandbox: Env, google_tokens: TokenSet
) -> None:
    sandbox, server = google_sandbox
    headers = {"Authorization": f"Bearer {google_tokens.access_token}",
               "developer-token": sandbox.config.developer_token, "login-customer-id": sandbox.config.manager_id}
    query = "SELECT ad_group_ad.ad.id FROM ad_group_ad ORDER BY ad_group_ad.ad.id"
    url = f"/{POLICY.pinned}/customers/1234567890/googleAds:search"
    sandbox.config.search_page_size = 7
    try:
        async with httpx.AsyncClient(base_url=server.url, headers=headers) as c:
            seen, token, pages = [], None, 0
            while True:
                body = (await c.post(url, json={"query": query, **({"pageToken": token} if token else {})})).json()
                seen += [r["adGroupAd"]["ad"]["id"] for r in body.get("results", [])]
                pages += 1
                token = body.get("nextPageToken")
                if not token:
                    break
            other = await c.post(url, json={"query": "SELECT campaign.id FROM campaign", "pageToken": body.get(
                "nextPageToken") or json.dumps(1)})
            forged = await c.post(url, json={"query": query, "pageToken": "bm90LWEtdG9rZW4"})
    finally:
        sandbox.config.search_page_size = 10_000
    ads = sandbox.world.account("1234567890").ads
    assert sorted(seen) == sorted(ads) and len(seen) == len(set(seen)) and pages == -(-len(ads) // 7)
    for bad in (other, forged):
        assert bad.status_code == 400
        assert bad.json()["error"]["details"][0]["errors"][0]["errorCode"] == {"requestError": "INVALID_PAGE_TOKEN"}


async def test_unknown_version_is_googles_html_404(google_sandbox: Env, google_tokens: TokenSet) -> None:
    _, server = google_sandbox
    async with httpx.AsyncClient(base_url=server.url) as c:
        r = await c.get("/v99/customers:listAccessibleCustomers",
                        headers={"Authorization": f"Bearer {google_tokens.access_token}"})
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert "was not found on this server" in r.text


def test_google_ads_library_has_no_rest_transport() -> None:
    """Documents why the contract above is REST pairs and not the SDK: if google-ads ever ships a
    REST transport, this fails and the pairs should be replaced by the library itself."""
    lib = pytest.importorskip("google.ads.googleads.client", reason="google-ads is not a dependency (gRPC only)")
    from google.ads.googleads.v26.services.services.google_ads_service import transports  # type: ignore

    assert lib is not None and not hasattr(transports, "GoogleAdsServiceRestTransport")
