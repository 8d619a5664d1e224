"""LinkedIn sandbox on a free loopback port, and connector/OAuth helpers as fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from omnify.integrations.base import TokenSet
from omnify.integrations.http import CircuitBreakers, RetryPolicy
from omnify.integrations.linkedin import LinkedInAdsConnector, LinkedInConfig
from omnify.integrations.linkedin.sandbox import LinkedInSandbox, LinkedInSandboxConfig
from tests.integration.integrations_linkedin.linkedin_helpers import (
    LINKEDIN_END,
    LINKEDIN_REDIRECT,
    Dance,
    MakeConnector,
    auth_code_for,
)


@pytest.fixture(scope="module")
def linkedin_sandbox() -> Iterator[LinkedInSandbox]:
    sandbox = LinkedInSandbox(LinkedInSandboxConfig(end=LINKEDIN_END, days=120))
    sandbox.serve()
    yield sandbox
    sandbox.stop()


@pytest.fixture(autouse=True)
def _fresh_sandbox_state(linkedin_sandbox: LinkedInSandbox) -> Iterator[None]:
    """Every test starts from the generated world, no faults, an empty journal, default limits."""
    config = linkedin_sandbox.config
    saved = (config.daily_quota, config.max_elements, config.issue_refresh_tokens)
    linkedin_sandbox.injector.reset()
    linkedin_sandbox.journal.clear()
    linkedin_sandbox.reset()
    yield
    config.daily_quota, config.max_elements, config.issue_refresh_tokens = saved


@pytest.fixture
async def make_linkedin(linkedin_sandbox: LinkedInSandbox) -> AsyncIterator[MakeConnector]:
    made: list[LinkedInAdsConnector] = []

    def make(tokens: TokenSet | None = None, *, breakers: CircuitBreakers | None = None,
             retry: RetryPolicy | None = None, on_tokens: Any = None, observer: Any = None,
             **settings: Any) -> LinkedInAdsConnector:
        values: dict[str, Any] = {
            "client_id": linkedin_sandbox.client_id, "client_secret": linkedin_sandbox.client_secret,
            "api_url": linkedin_sandbox.url, "oauth_url": f"{linkedin_sandbox.url}/oauth/v2",
        }
        connector = LinkedInAdsConnector(
            LinkedInConfig(**{**values, **settings}), tokens, on_tokens=on_tokens, observer=observer,
            retry=retry or RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05, jitter=0.01),
            breakers=breakers or CircuitBreakers(threshold=50, cooldown=0.5),
        )
        made.append(connector)
        return connector

    yield make
    for c in made:
        await c.aclose()


@pytest.fixture
def linkedin_dance(make_linkedin: MakeConnector) -> Dance:
    async def dance(state: str = "state-li-1") -> TokenSet:
        async with make_linkedin() as c:
            return await c.exchange_code(code=await auth_code_for(c, state), redirect_uri=LINKEDIN_REDIRECT)

    return dance
