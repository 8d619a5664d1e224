"""Test helpers every platform connector's integration tests use the same way."""

from __future__ import annotations

from typing import Any

import httpx

from omnify.integrations.base import ConnectorError


async def approve_consent(authorize_url: str) -> httpx.URL:
    """Play the user's browser on a sandbox consent screen: open it, approve, and return the
    callback URL the platform redirects to (not followed: the test inspects it)."""
    async with httpx.AsyncClient() as browser:
        page = await browser.get(authorize_url)
        assert page.status_code == 200 and 'value="approve"' in page.text
        decision = await browser.post(authorize_url, data={"decision": "approve"})
    assert decision.status_code == 302
    return httpx.URL(decision.headers["location"])


class RecordingObserver:
    """Keeps every text the HTTP layer hands to its observer (what would be logged), so a
    test can prove no token or secret reaches it."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def on_response(self, **kw: Any) -> None:
        self.texts.append(repr(kw))

    def on_error(self, *, error: ConnectorError, **kw: Any) -> None:
        self.texts.append(f"{error!s} {error!r} {kw!r}")

    def on_retry(self, *, error: ConnectorError, **kw: Any) -> None:
        self.texts.append(f"retry {error!s} {kw!r}")

    def on_breaker(self, **kw: Any) -> None:
        self.texts.append(repr(kw))
