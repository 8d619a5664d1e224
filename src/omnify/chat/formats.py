"""Slack and Teams message formats for the webhooks delivery engine (see :mod:`omnify.webhooks.formats`)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from omnify.chat.charts import chart_url
from omnify.chat.models import ChatKind
from omnify.chat.render import alert_for, slack_message, teams_message
from omnify.settings import Settings
from omnify.webhooks import formats
from omnify.webhooks.formats import Prepared
from omnify.webhooks.models import WebhookEndpoint
from omnify.webhooks.transport import AttemptResult


def _alert_args(settings: Settings, envelope: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    data = dict(envelope.get("data") or {})
    org_id = str(envelope.get("org_id"))
    image = None
    if (data.get("series") or {}).get("dates"):
        image = chart_url(settings, org_id, str(envelope.get("id")))
    return str(envelope.get("type")), data, {"base_url": settings.public_base_url, "org_id": org_id,
                                             "image_url": image}


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class SlackWebhook:
    """An incoming webhook: POST the message to its (secret) URL; no buttons (nobody to call back)."""

    async def prepare(self, settings: Settings, endpoint: WebhookEndpoint, secret: str,
                      envelope: dict[str, Any]) -> Prepared:
        event_type, data, kw = _alert_args(settings, envelope)
        return Prepared(secret, _encode(slack_message(alert_for(event_type, data, **kw), buttons=False)), {})

    def judge(self, result: AttemptResult) -> AttemptResult:
        return result


class SlackApp:
    """``chat.postMessage`` with the workspace's bot token, to the channel picked; with buttons.

    Slack answers HTTP 200 with ``{"ok": false, "error": ...}`` for most failures; those are
    failed attempts (retried, then dead-lettered) with Slack's error code in the log."""

    async def prepare(self, settings: Settings, endpoint: WebhookEndpoint, secret: str,
                      envelope: dict[str, Any]) -> Prepared:
        event_type, data, kw = _alert_args(settings, envelope)
        channel = str((endpoint.options or {}).get("channel") or "")
        body = slack_message(alert_for(event_type, data, **kw), buttons=True, channel=channel)
        return Prepared(f"{settings.slack_api_url.rstrip('/')}/chat.postMessage", _encode(body),
                        {"Authorization": f"Bearer {secret}"})

    def judge(self, result: AttemptResult) -> AttemptResult:
        if not result.ok or not result.response_excerpt:
            return result
        try:
            answer = json.loads(result.response_excerpt)
        except ValueError:
            return result
        if isinstance(answer, dict) and answer.get("ok") is False:
            return dataclasses.replace(result, ok=False, error=f"slack: {answer.get('error') or 'not ok'}"[:500])
        return result


class TeamsWebhook:
    """A Teams incoming webhook or Workflows URL: an Adaptive Card in a message envelope."""

    async def prepare(self, settings: Settings, endpoint: WebhookEndpoint, secret: str,
                      envelope: dict[str, Any]) -> Prepared:
        event_type, data, kw = _alert_args(settings, envelope)
        return Prepared(secret, _encode(teams_message(alert_for(event_type, data, **kw))), {})

    def judge(self, result: AttemptResult) -> AttemptResult:
        # Legacy connectors answer 200 with an error sentence instead of a status code.
        if result.ok and result.response_excerpt and "delivery failed" in result.response_excerpt.lower():
            return dataclasses.replace(result, ok=False, error=f"teams: {result.response_excerpt[:200]}")
        return result


formats.register(ChatKind.SLACK_WEBHOOK.value, SlackWebhook())
formats.register(ChatKind.SLACK_APP.value, SlackApp())
formats.register(ChatKind.TEAMS_WEBHOOK.value, TeamsWebhook())
