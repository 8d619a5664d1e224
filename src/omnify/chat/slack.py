"""Slack's Web API through slack_sdk: OAuth v2 install, channel listing, request signatures.

slack_sdk's ``WebClient`` is synchronous (its async client needs aiohttp, which nothing else
here uses), so calls run in a worker thread. ``base_url`` comes from settings
(``OMNIFY_SLACK_API_URL``): production talks to slack.com, tests to a local server that
speaks the same shapes. Messages are not sent from here: they go through the webhooks
delivery engine (retries, ``Retry-After``, dead letters; see :mod:`omnify.chat.formats`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import anyio
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.signature import SignatureVerifier

from omnify.core.errors import AppError, Conflict
from omnify.settings import Settings

BOT_SCOPES = ("chat:write", "channels:read", "groups:read")


class SlackNotConfigured(Conflict):
    code, title = "slack-not-configured", "The Slack app is not configured"


class SlackError(AppError):
    status, code, title = 502, "slack-error", "Slack refused the request"


def _secret(value: Any) -> str:
    raw = value.get_secret_value() if value is not None and hasattr(value, "get_secret_value") else value
    return str(raw or "").strip()


def require_app(settings: Settings) -> tuple[str, str]:
    client_id, secret = (settings.slack_client_id or "").strip(), _secret(settings.slack_client_secret)
    if not client_id or not secret:
        raise SlackNotConfigured("Set OMNIFY_SLACK_CLIENT_ID and OMNIFY_SLACK_CLIENT_SECRET to connect a Slack app; "
                                 "an incoming webhook needs neither.")
    return client_id, secret


def _client(settings: Settings, token: str | None = None) -> WebClient:
    return WebClient(token=token, base_url=settings.slack_api_url.rstrip("/") + "/", timeout=15)


@dataclass(frozen=True, slots=True)
class Installation:
    bot_token: str
    team_id: str
    team_name: str
    bot_user_id: str | None
    authed_user_id: str | None


async def exchange_code(settings: Settings, code: str, redirect_uri: str) -> Installation:
    client_id, secret = require_app(settings)

    def call() -> Any:
        return _client(settings).oauth_v2_access(client_id=client_id, client_secret=secret, code=code,
                                                 redirect_uri=redirect_uri)

    try:
        data = (await anyio.to_thread.run_sync(call)).data
    except SlackApiError as exc:
        raise SlackError(f"Slack refused the installation: {exc.response.get('error')}") from None
    except SlackClientError as exc:
        raise SlackError(f"Slack could not be reached: {type(exc).__name__}") from None
    assert isinstance(data, dict)
    team = data.get("team") or {}
    return Installation(bot_token=str(data["access_token"]), team_id=str(team.get("id") or ""),
                        team_name=str(team.get("name") or "Slack"), bot_user_id=data.get("bot_user_id"),
                        authed_user_id=(data.get("authed_user") or {}).get("id"))


async def list_channels(settings: Settings, token: str) -> list[dict[str, Any]]:
    """Channels the bot can post to (public and the private ones it was invited to), by name."""

    def call() -> list[dict[str, Any]]:
        client, cursor = _client(settings, token), None
        out: list[dict[str, Any]] = []
        for _ in range(20):  # at most 4,000 channels
            page = client.conversations_list(types="public_channel,private_channel", exclude_archived=True,
                                             limit=200, cursor=cursor)
            out.extend(page.get("channels") or [])
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        return out

    try:
        channels = await anyio.to_thread.run_sync(call)
    except SlackApiError as exc:
        raise SlackError(f"Slack refused to list channels: {exc.response.get('error')}") from None
    except SlackClientError as exc:
        raise SlackError(f"Slack could not be reached: {type(exc).__name__}") from None
    return sorted(({"id": str(c["id"]), "name": str(c.get("name") or c["id"]), "is_private": bool(c.get("is_private"))}
                   for c in channels), key=lambda c: c["name"])


def verify_request(settings: Settings, body: bytes, timestamp: str | None, signature: str | None,
                   now: float | None = None) -> bool:
    """Slack's v0 signature over the raw body, with a timestamp no older than five minutes."""
    secret = _secret(settings.slack_signing_secret)
    if not secret:
        return False
    # slack_sdk converts the header with int() and raised on anything else (an empty,
    # non-numeric or 400-digit X-Slack-Request-Timestamp answered 500): a timestamp that is
    # not a plausible count of seconds is simply not a valid signature.
    if timestamp is None or not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return False

    class _Clock:
        def now(self) -> float:
            return time.time() if now is None else now

    return SignatureVerifier(secret, clock=_Clock()).is_valid(body, timestamp, signature)  # type: ignore[arg-type]
