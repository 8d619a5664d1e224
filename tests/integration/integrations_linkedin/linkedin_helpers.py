"""Helpers shared by the LinkedIn integration tests (importable: conftest modules are not)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date

from omnify.integrations.base import TokenSet
from omnify.integrations.linkedin import LinkedInAdsConnector
from tests.integration.integrations_shared.connector_helpers import approve_consent

LINKEDIN_END = date(2026, 6, 30)  # last day of the sandbox's metrics (fixed: hand-checked rows)
LINKEDIN_REDIRECT = "http://127.0.0.1:8000/api/v1/connections/linkedin_ads/callback"
BIG, EUR, SMALL = "507400001", "507400002", "507400003"

MakeConnector = Callable[..., LinkedInAdsConnector]
Dance = Callable[..., Awaitable[TokenSet]]


async def auth_code_for(connector: LinkedInAdsConnector, state: str = "state-li-1") -> str:
    """Play the member's browser: open the authorization URL, approve, read the callback."""
    start = connector.authorize_url(redirect_uri=LINKEDIN_REDIRECT, state=state)
    callback = await approve_consent(start.url)
    assert str(callback).startswith(LINKEDIN_REDIRECT)
    assert callback.params["state"] == state
    return callback.params["code"]
