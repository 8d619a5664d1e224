"""Google sandbox on a free loopback port, plus a connector factory with fast retries."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from omnify.integrations.base import TokenSet
from omnify.integrations.google import GoogleAdsConnector, GoogleConfig
from omnify.integrations.google.sandbox import GoogleSandbox, GoogleSandboxConfig
from omnify.integrations.http import CircuitBreakers, RetryPolicy
from omnify.integrations.sandbox_common import SandboxServer

REDIRECT = "http://127.0.0.1:8000/api/v1/oauth/google/callback"


@pytest.fixture(scope="module")
def google_sandbox() -> Iterator[tuple[GoogleSandbox, SandboxServer]]:
    sandbox = GoogleSandbox(GoogleSandboxConfig())
    server = sandbox.server().start()
    yield sandbox, server
    server.stop()


@pytest.fixture(autouse=True)
def _clean_faults(google_sandbox: tuple[GoogleSandbox, SandboxServer]) -> None:
    google_sandbox[0].injector.reset()
    google_sandbox[0].journal.clear()


def google_config(sandbox: GoogleSandbox, server: SandboxServer, **kw: object) -> GoogleConfig:
    base: dict[str, object] = {
        "client_id": sandbox.config.client_id, "client_secret": sandbox.config.client_secret,
        "developer_token": sandbox.config.developer_token, "ads_url": server.url,
        "auth_url": f"{server.url}/o/oauth2/v2/auth", "token_url": f"{server.url}/token",
        "revoke_url": f"{server.url}/revoke",
    }
    base.update(kw)
    return GoogleConfig(**base)  # type: ignore[arg-type]


def fast_retry(**kw: object) -> RetryPolicy:
    base: dict[str, object] = {"max_attempts": 4, "base_delay": 0.01, "max_delay": 0.05, "jitter": 0.01}
    base.update(kw)
    return RetryPolicy(**base)  # type: ignore[arg-type]


def make_connector(sandbox: GoogleSandbox, server: SandboxServer, tokens: TokenSet | None = None, *,
                   breakers: CircuitBreakers | None = None, retry: RetryPolicy | None = None,
                   **config: object) -> GoogleAdsConnector:
    return GoogleAdsConnector(google_config(sandbox, server, **config), tokens,
                              retry=retry or fast_retry(), breakers=breakers or CircuitBreakers(threshold=50))


async def authorize(connector: GoogleAdsConnector, state: str = "st-1") -> tuple[str, str]:
    """Run the browser part; returns (code, code_verifier)."""
    start = connector.authorize_url(redirect_uri=REDIRECT, state=state)
    async with httpx.AsyncClient() as browser:
        resp = await browser.get(start.url + "&sandbox_auto_approve=1")
    assert resp.status_code == 302, resp.text
    q = parse_qs(urlsplit(resp.headers["location"]).query)
    assert q["state"] == [state]
    assert start.code_verifier
    return q["code"][0], start.code_verifier


async def oauth_dance(connector: GoogleAdsConnector) -> TokenSet:
    code, verifier = await authorize(connector)
    return await connector.exchange_code(code=code, redirect_uri=REDIRECT, code_verifier=verifier)


@pytest.fixture
async def google_tokens(google_sandbox: tuple[GoogleSandbox, SandboxServer]) -> TokenSet:
    sandbox, server = google_sandbox
    async with make_connector(sandbox, server) as c:
        return await oauth_dance(c)
