"""Alert messages for Slack (Block Kit, built with slack_sdk's models) and Teams (Adaptive Cards).

One neutral :class:`Alert` per event - a title, the numbers as label/value pairs, a link to
the finding in the web app, an optional chart image and optional Apply/Dismiss buttons -
rendered twice: :func:`slack_message` builds ``slack_sdk.models.blocks`` objects (so the
SDK validates lengths and shapes when the message is built, not Slack when it arrives)
and :func:`teams_message` an Adaptive Card 1.4 in the message envelope Teams workflows and
incoming webhooks accept. Buttons appear only where the destination can call us back
(a Slack app): a plain webhook message gets the link instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    ImageBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from omnify.integrations.money import MoneyError, format_minor

PLATFORMS = {"meta_ads": "Meta Ads", "google_ads": "Google Ads", "tiktok_ads": "TikTok Ads",
             "linkedin_ads": "LinkedIn Ads", "shopify": "Shopify"}
APPLY, DISMISS = "omnify_apply", "omnify_dismiss"
#: event type -> (title, summary when the event has no message, link label)
CONNECTION_ALERTS = {
    "sync.failed": ("Sync failing", "The sync failed.", "See connection"),
    "connection.failed": ("Connection lost", "The platform stopped accepting our credentials.", "Reconnect"),
}


@dataclass
class Alert:
    title: str
    summary: str
    fields: list[tuple[str, str]] = field(default_factory=list)
    link: str | None = None
    link_label: str = "Open in Omnify"
    image_url: str | None = None
    image_alt: str = "chart"
    #: (recommendation id, label) pairs that get Apply / Dismiss buttons (Slack app only).
    decisions: list[tuple[str, str]] = field(default_factory=list)
    org_id: str = ""
    color: str = "default"  # good | warning | attention (Teams)

    @property
    def fallback(self) -> str:
        """The notification text (phones, screen readers, clients without blocks)."""
        return f"{self.title}: {self.summary}"[:3000]


def _platform(value: Any) -> str:
    return PLATFORMS.get(str(value), str(value or "platform"))


def _money(amount: Any, currency: Any) -> str:
    try:
        return format_minor(int(amount), str(currency))
    except (MoneyError, TypeError, ValueError):
        return str(amount)


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.2f}"
    return "n/a" if v is None else str(v)


def alert_for(event_type: str, data: dict[str, Any], *, base_url: str, org_id: str,
              image_url: str | None = None) -> Alert:
    """The alert of one webhook envelope's ``type`` and ``data``."""
    org = f"{base_url}/orgs/{org_id}"
    if event_type == "rule.fired":
        entities = list(data.get("entities") or [])
        effect = str(data.get("effect") or "notify")
        verb = {"pause": "paused", "resume": "resumed", "set_budget": "re-budgeted",
                "change_budget": "re-budgeted"}.get(effect, "flagged")
        outcomes: dict[str, int] = {}
        for e in entities:
            outcomes[str(e.get("outcome"))] = outcomes.get(str(e.get("outcome")), 0) + 1
        alert = Alert(
            title=f"Rule “{data.get('rule_name')}” fired for {data.get('client_name') or 'a client'}",
            summary=f"{data.get('count', len(entities))} {'item' if data.get('count') == 1 else 'items'} {verb} "
                    f"({', '.join(f'{n} {k}' for k, n in sorted(outcomes.items()))})",
            link=str(data.get("url") or f"{org}/rules/{data.get('rule_id')}"), link_label="See values and undo",
            image_url=image_url, image_alt="Daily spend of the matched items", org_id=org_id, color="warning")
        for e in entities[:8]:
            values = "; ".join(f"{k} = {_value(v)}" for k, v in list((e.get("values") or {}).items())[:3])
            alert.fields.append((f"{e.get('name')} ({_platform(e.get('platform'))})",
                                 f"{e.get('outcome')}" + (f" · {values}" if values else "")))
            if e.get("outcome") == "recommended" and e.get("recommendation_id"):
                alert.decisions.append((str(e["recommendation_id"]), str(e.get("name"))))
        return alert
    if event_type == "recommendation.created":
        impact = data.get("expected_impact") or {}
        fields = [("Confidence", f"{float(data.get('confidence') or 0):.0%}"),
                  ("Platform", _platform(data.get("platform")))]
        if impact.get("amount_minor") is not None:
            fields.append(("Expected impact", _money(impact["amount_minor"], impact.get("currency"))))
        module = str(data.get("module") or "brain")
        alert = Alert(title=("Anomaly: " if module == "anomaly" else "Recommendation: ") + str(data.get("title")),
                      summary=f"{module.replace('_', ' ').capitalize()} finding for a client",
                      fields=fields, link=f"{org}/recommendations/{data.get('recommendation_id')}",
                      link_label="Review", org_id=org_id, color="attention" if module == "anomaly" else "default")
        if data.get("actionable") and data.get("recommendation_id"):
            alert.decisions.append((str(data["recommendation_id"]), str(data.get("title"))))
        return alert
    if event_type in CONNECTION_ALERTS:
        title, fallback, label = CONNECTION_ALERTS[event_type]
        return Alert(title=f"{title}: {_platform(data.get('platform'))}",
                     summary=str(data.get("message") or data.get("error_code") or fallback),
                     fields=[("Error", str(data.get("error_code") or "unknown"))],
                     link=f"{org}/clients/{data.get('client_id')}/connections", link_label=label,
                     org_id=org_id, color="attention")
    if event_type == "guardrail.hit":
        return Alert(title=f"Guardrail stopped “{data.get('rule_name') or 'an automation'}”",
                     summary=str(data.get("detail") or "A guardrail refused an automated change."),
                     fields=[("Guardrail", str(data.get("code"))),
                             ("Item", str((data.get("entity") or {}).get("name") or "n/a"))],
                     link=f"{org}/rules/{data.get('rule_id')}", link_label="See the rule", org_id=org_id,
                     color="warning")
    if event_type == "webhook.test":
        return Alert(title="Omnify is connected", summary="Alerts routed to this channel will appear here.",
                     link=f"{org}/settings/alerts", link_label="Alert settings", org_id=org_id, color="good")
    return Alert(title=event_type, summary=json.dumps(data)[:500], org_id=org_id)


def slack_blocks(alert: Alert, *, buttons: bool) -> list[Block]:
    blocks: list[Block] = [HeaderBlock(text=PlainTextObject(text=alert.title[:150])),
                           SectionBlock(text=MarkdownTextObject(text=alert.summary[:3000]))]
    if alert.fields:
        pairs = [MarkdownTextObject(text=f"*{label[:500]}*\n{value[:1400]}") for label, value in alert.fields[:10]]
        blocks.append(SectionBlock(fields=pairs))
    if alert.image_url:
        blocks.append(ImageBlock(image_url=alert.image_url, alt_text=alert.image_alt[:2000]))
    if buttons and alert.decisions:
        for rec_id, label in alert.decisions[:5]:
            value = json.dumps({"org": alert.org_id, "rec": rec_id}, separators=(",", ":"))
            blocks.append(DividerBlock())
            blocks.append(SectionBlock(text=MarkdownTextObject(text=f"*{label[:200]}*")))
            blocks.append(ActionsBlock(block_id=f"rec:{rec_id}", elements=[
                ButtonElement(text="Apply", action_id=APPLY, value=value, style="primary"),
                ButtonElement(text="Dismiss", action_id=DISMISS, value=value, style="danger"),
            ]))
    if alert.link:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=f"<{alert.link}|{alert.link_label}>")]))
    return blocks


def slack_message(alert: Alert, *, buttons: bool, channel: str | None = None) -> dict[str, Any]:
    """``chat.postMessage`` / incoming-webhook body; blocks validated by slack_sdk on build."""
    body: dict[str, Any] = {"text": alert.fallback,
                            "blocks": [b.to_dict() for b in slack_blocks(alert, buttons=buttons)]}
    if channel:
        body["channel"] = channel
    return body


def teams_message(alert: Alert) -> dict[str, Any]:
    """An Adaptive Card 1.4 in the ``message`` envelope of Teams webhooks and workflows."""
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": alert.title, "weight": "Bolder", "size": "Medium", "wrap": True,
         "color": {"warning": "Warning", "attention": "Attention", "good": "Good"}.get(alert.color, "Default")},
        {"type": "TextBlock", "text": alert.summary, "wrap": True},
    ]
    if alert.fields:
        body.append({"type": "FactSet", "facts": [{"title": k[:200], "value": v[:1000]}
                                                  for k, v in alert.fields[:10]]})
    if alert.image_url:
        body.append({"type": "Image", "url": alert.image_url, "altText": alert.image_alt, "size": "Stretch"})
    card: dict[str, Any] = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
                            "version": "1.4", "body": body}
    if alert.link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": alert.link_label, "url": alert.link}]
    return {"type": "message", "summary": alert.fallback[:250],
            "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
                             "content": card}]}
