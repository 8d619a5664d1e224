"""Meta sandbox on a free loopback port, plus a connector factory with fast retries."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from omnify.integrations.base import TokenSet
from omnify.integrations.http import CircuitBreakers, RetryPolicy
from omnify.integrations.meta import MetaAdsConnector, MetaConfig
from omnify.integrations.meta.sandbox import MetaSandbox, MetaSandboxConfig
from omnify.integrations.sandbox_common import SandboxServer

REDIRECT = "http://127.0.0.1:8000/api/v1/oauth/meta/callback"


@pytest.fixture(scope="module")
def meta_sandbox() -> Iterator[tuple[MetaSandbox, SandboxServer]]:
    sandbox = MetaSandbox(MetaSandboxConfig())
    server = sandbox.server().start()
    yield sandbox, server
    server.stop()


@pytest.fixture(autouse=True)
def _clean_faults(meta_sandbox: tuple[MetaSandbox, SandboxServer]) -> None:
    meta_sandbox[0].injector.reset()
    meta_sandbox[0].journal.clear()


def meta_config(sandbox: MetaSandbox, server: SandboxServer, **kw: object) -> MetaConfig:
    return MetaConfig(app_id=sandbox.config.app_id, app_secret=sandbox.config.app_secret,
                      graph_url=server.url, dialog_url=server.url, **kw)  # type: ignore[arg-type]


def fast_retry(**kw: object) -> RetryPolicy:
    base: dict[str, object] = {"max_attempts": 4, "base_delay": 0.01, "max_delay": 0.05, "jitter": 0.01}
    base.update(kw)
    return RetryPolicy(**base)  # type: ignore[arg-type]


def make_connector(sandbox: MetaSandbox, server: SandboxServer, tokens: TokenSet | None = None,
                   *, breakers: CircuitBreakers | None = None, retry: RetryPolicy | None = None,
                   **config: object) -> MetaAdsConnector:
    return MetaAdsConnector(meta_config(sandbox, server, **config), tokens,
                            retry=retry or fast_retry(), breakers=breakers or CircuitBreakers(threshold=50))


async def oauth_dance(connector: MetaAdsConnector, state: str = "state-123") -> TokenSet:
    start = connector.authorize_url(redirect_uri=REDIRECT, state=state)
    async with httpx.AsyncClient() as browser:
        resp = await browser.get(start.url + "&sandbox_auto_approve=1")
    assert resp.status_code == 302, resp.text
    query = parse_qs(urlsplit(resp.headers["location"]).query)
    assert query["state"] == [state]
    return await connector.exchange_code(code=query["code"][0], redirect_uri=REDIRECT)


@pytest.fixture
async def meta_tokens(meta_sandbox: tuple[MetaSandbox, SandboxServer]) -> TokenSet:
    sandbox, server = meta_sandbox
    async with make_connector(sandbox, server) as c:
        return await oauth_dance(c)
