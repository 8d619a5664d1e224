"""Helpers shared by the TikTok integration tests (importable: conftest modules are not)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date

from omnify.integrations.base import TokenSet
from omnify.integrations.tiktok import TikTokConnector
from tests.integration.integrations_shared.connector_helpers import approve_consent

TIKTOK_END = date(2025, 6, 30)  # last day of the sandbox's metrics (fixed: hand-checked rows)
TIKTOK_REDIRECT = "http://127.0.0.1:8000/api/v1/oauth/tiktok_ads/callback"

MakeConnector = Callable[..., TikTokConnector]
Dance = Callable[..., Awaitable[TokenSet]]


async def auth_code_for(connector: TikTokConnector, state: str = "state-tt-1") -> str:
    """Play the advertiser's browser: open the authorization URL, approve, follow to our callback."""
    start = connector.authorize_url(redirect_uri=TIKTOK_REDIRECT, state=state)
    callback = await approve_consent(start.url)
    assert str(callback).startswith(TIKTOK_REDIRECT)
    assert callback.params["state"] == state
    assert callback.params["auth_code"] == callback.params["code"]
    return callback.params["auth_code"]
