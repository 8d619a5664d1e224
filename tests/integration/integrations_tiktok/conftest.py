"""TikTok sandbox on a free loopback port, and connector/OAuth helpers as fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from omnify.integrations.base import TokenSet
from omnify.integrations.http import CircuitBreakers, RetryPolicy
from omnify.integrations.sandbox_data import World, WorldConfig
from omnify.integrations.tiktok import TikTokConnector, TikTokSettings
from omnify.integrations.tiktok.sandbox import TikTokSandbox
from tests.integration.integrations_tiktok.tiktok_helpers import (
    TIKTOK_END,
    TIKTOK_REDIRECT,
    Dance,
    MakeConnector,
    auth_code_for,
)


@pytest.fixture(scope="module")
def tiktok_sandbox() -> Iterator[TikTokSandbox]:
    sandbox = TikTokSandbox(world=World(WorldConfig(platform="tiktok_ads", end=TIKTOK_END)))
    sandbox.serve()
    yield sandbox
    sandbox.stop()


@pytest.fixture(autouse=True)
def _fresh_sandbox_state(tiktok_sandbox: TikTokSandbox) -> None:
    """Every test starts from the generated world, no faults, an empty journal."""
    tiktok_sandbox.injector.reset()
    tiktok_sandbox.journal.clear()
    tiktok_sandbox.reset()


@pytest.fixture
async def make_tiktok(tiktok_sandbox: TikTokSandbox) -> AsyncIterator[MakeConnector]:
    made: list[TikTokConnector] = []

    def make(
        tokens: TokenSet | None = None,
        *,
        breakers: CircuitBreakers | None = None,
        retry: RetryPolicy | None = None,
        on_tokens: Any = None,
        observer: Any = None,
        **settings: Any,
    ) -> TikTokConnector:
        values: dict[str, Any] = {
            "app_id": tiktok_sandbox.app_id,
            "secret": tiktok_sandbox.secret,
            "base_url": tiktok_sandbox.url,
            "auth_url": f"{tiktok_sandbox.url}/portal/auth",
        }
        connector = TikTokConnector(
            TikTokSettings(**{**values, **settings}),
            tokens,
            on_tokens=on_tokens,
            observer=observer,
            retry=retry or RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05, jitter=0.01),
            breakers=breakers or CircuitBreakers(threshold=50, cooldown=0.5),
        )
        made.append(connector)
        return connector

    yield make
    for c in made:  # closing twice is harmless; tests that forgot still release their sockets
        await c.aclose()


@pytest.fixture
def tiktok_dance(make_tiktok: MakeConnector) -> Dance:
    async def dance(state: str = "state-tt-1") -> TokenSet:
        async with make_tiktok() as c:
            return await c.exchange_code(code=await auth_code_for(c, state), redirect_uri=TIKTOK_REDIRECT)

    return dance
