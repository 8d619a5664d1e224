"""Jinja2 rendering of e-mails: a subject, a plain-text part and an HTML part per message.

Each message ``name`` has three templates under ``templates/``: ``name.subject.txt``,
``name.txt`` and ``name.html``. :data:`MESSAGES` lists what each one needs in its
context; :func:`omnify.notifications.service.queue_email` checks it when the message
is queued, so a missing value fails the business transaction that forgot it instead
of a worker hours later. Rendering uses ``StrictUndefined`` for the same reason.

HTML autoescaping is on (context values come from users: organization and client
names); the text part and the subject are not HTML and are not escaped. The subject is
collapsed to one line so a value with a newline cannot inject a header.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, TemplateNotFound, select_autoescape

#: message name -> context keys it cannot render without.
MESSAGES: dict[str, frozenset[str]] = {
    "invitation": frozenset({"org_name", "role", "inviter", "accept_url", "expires_at"}),
    "password_reset": frozenset({"name", "reset_url", "expires_at"}),
    "onboarding_completed": frozenset({"name", "org_name", "client_name", "client_url"}),
    "credential_expiring": frozenset({"name", "org_name", "client_name", "platform", "expires_at",
                                      "reconnect_url"}),
    "sync_failing": frozenset({"name", "org_name", "client_name", "platform", "error_message", "details_url"}),
    "webhook_endpoint_disabled": frozenset({"name", "org_name", "endpoint_url", "failing_since", "disabled_at",
                                            "manage_url"}),
    "weekly_digest": frozenset({"name", "org_name", "period_start", "period_end", "sections", "dashboard_url",
                                "preferences_url"}),
    # automation (issue 19)
    "rule_fired": frozenset({"rule_name", "client_name", "count", "lines", "details_url"}),
    "client_report": frozenset({"client_name", "org_name", "period_label", "since", "until", "unsubscribe_url",
                                "attachments"}),
}

PLATFORM_NAMES = {
    "meta_ads": "Meta Ads",
    "google_ads": "Google Ads",
    "tiktok_ads": "TikTok Ads",
    "linkedin_ads": "LinkedIn Ads",
    "shopify": "Shopify",
}


class TemplateError(ValueError):
    """Unknown message or incomplete context: a programming error, never retried."""


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def _parse(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def _when(value: Any) -> str:
    parsed = _parse(value)
    if parsed is None:
        return str(value)
    return parsed.strftime("%-d %b %Y, %H:%M") + (" UTC" if parsed.utcoffset() is not None else "")


def _day(value: Any) -> str:
    parsed = _parse(value)
    return parsed.strftime("%-d %b %Y") if parsed else str(value)


def _platform(value: Any) -> str:
    return PLATFORM_NAMES.get(str(value), str(value).replace("_", " ").title())


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("omnify.notifications", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
        undefined=StrictUndefined,
        trim_blocks=False,
        keep_trailing_newline=False,
    )
    env.filters.update(when=_when, day=_day, platform=_platform)
    return env


def check_context(name: str, context: dict[str, Any]) -> None:
    if name not in MESSAGES:
        raise TemplateError(f"unknown e-mail template {name!r}; known: {', '.join(sorted(MESSAGES))}")
    missing = MESSAGES[name] - context.keys()
    if missing:
        raise TemplateError(f"e-mail template {name!r} needs {', '.join(sorted(missing))}")


def render(name: str, context: dict[str, Any]) -> RenderedEmail:
    check_context(name, context)
    env = environment()
    try:
        subject = " ".join(env.get_template(f"{name}.subject.txt").render(context).split())
        text = env.get_template(f"{name}.txt").render(context).strip() + "\n"
        html = env.get_template(f"{name}.html").render({**context, "subject": subject})
    except TemplateNotFound as exc:
        raise TemplateError(f"e-mail template file {exc.name} is missing") from None
    except Exception as exc:  # StrictUndefined and filter errors: the message cannot be built
        raise TemplateError(f"e-mail template {name!r} failed to render: {type(exc).__name__}: {exc}") from None
    return RenderedEmail(subject=subject, text=text, html=html)
