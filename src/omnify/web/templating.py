"""Jinja2 rendering for the web app: one environment, the filters pages share, and
:func:`render`, which also hands the page its CSRF token (and sets the CSRF cookie the
first time a browser is seen)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import ChainableUndefined, Environment, FileSystemLoader, select_autoescape
from jinja2.filters import do_filesizeformat as filesizeformat
from starlette.requests import Request
from starlette.responses import HTMLResponse

from omnify.core import browser
from omnify.credentials.platforms import PLATFORMS, Platform
from omnify.integrations.money import currency_exponent, minor_to_decimal
from omnify.web.assets import StaticAssets

TEMPLATES_DIR = Path(__file__).parent / "templates"
CSRF_COOKIE_MAX_AGE = 365 * 24 * 3600
NONE = "\u2013"  # an en dash stands for a missing figure

#: Notices a redirect may ask a page to show (``?flash=<code>``): a fixed list, so a
#: crafted link cannot put words of its own on our pages.
FLASH: dict[str, str] = {
    "action-applied": "Applied on the ad platform.",
    "action-pending": "Over the approval threshold: an admin must approve it.",
    "action-undone": "Undone: the previous state is restored.",
    "action-rejected": "Rejected.",
    "recommendation-dismissed": "Dismissed.",
    "signed-out": "You are signed out.",
    "password-reset": "Your password was changed. Sign in with the new one.",
    "reset-sent": "If an account exists for that address, a reset link is on its way.",
    "password-changed": "Password changed. Your other sessions were signed out.",
    "profile-saved": "Profile saved.",
    "preferences-saved": "Notification preferences saved.",
    "client-created": "Client created. Let's onboard it.",
    "client-archived": "Client archived. You can restore it for 30 days.",
    "client-restored": "Client restored.",
    "connected": "Connected. Pick the accounts to sync if asked, and the backfill starts.",
    "accounts-saved": "Accounts saved; the backfill is running.",
    "sync-queued": "Sync queued.",
    "sync-refused": "Not synced: the connection needs to be connected with its accounts picked first.",
    "disconnected": "Disconnected; the stored authorization was revoked and deleted.",
    "invitation-sent": "Invitation sent.",
    "invitation-revoked": "Invitation revoked.",
    "invitation-accepted": "Welcome! You joined the organization.",
    "member-updated": "Member updated.",
    "member-removed": "Member removed.",
    "key-revoked": "API key revoked.",
    "applied": "Applied on the platform.",
    "queued-for-approval": "Over the approval threshold: an admin has to approve it.",
    "dismissed": "Recommendation dismissed.",
    "undone": "Undone on the platform.",
    "approved": "Approved and applied.",
    "rejected": "Rejected.",
    "endpoint-deleted": "Webhook endpoint deleted.",
    "endpoint-saved": "Webhook endpoint saved.",
    "replayed": "Queued for delivery again.",
    "test-sent": "Test event queued: it appears in the delivery log below.",
    "job-replayed": "Job re-enqueued.",
    "job-resolved": "Job closed without replay.",
    "saved": "Saved.",
    "no-export": "Only a customers/data_request has an export.",
    "export-erased": "This export was erased by a later redaction request.",
    "idea-saved": "Campaign idea saved.",
    "onboarded": "Onboarding complete.",
}


def platform_label(value: Any) -> str:
    try:
        return PLATFORMS[Platform(str(value))].label
    except (ValueError, KeyError):
        return str(value or "").replace("_", " ").title()


def money(amount_minor: Any, currency: str | None, *, digits: int | None = None) -> str:
    """Minor units as an amount of ``currency`` (2 decimals for USD, none for JPY)."""
    if amount_minor is None:
        return NONE
    cur = (currency or "").upper()
    try:
        value = minor_to_decimal(round(float(amount_minor)), cur) if cur else Decimal(amount_minor) / 100
        places = currency_exponent(cur) if digits is None and cur else (digits if digits is not None else 2)
    except (ValueError, ArithmeticError):
        return str(amount_minor)
    return f"{value:,.{places}f} {cur}".strip()


def percent(value: Any, digits: int = 1) -> str:
    if value is None:
        return NONE
    return f"{float(value) * 100:.{digits}f} %"


def signed_percent(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{float(value) * 100:+.1f} %"


def number(value: Any, digits: int = 0) -> str:
    if value is None:
        return NONE
    return f"{float(value):,.{digits}f}"


def when(value: Any) -> str:
    if value is None or value == "":
        return NONE
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return str(value)
    if isinstance(value, datetime):
        return value.strftime("%-d %b %Y, %H:%M") + (" UTC" if value.utcoffset() is not None else "")
    if isinstance(value, date):
        return value.strftime("%-d %b %Y")
    return str(value)


def filesize(value: Any) -> str:
    return str(filesizeformat(value, binary=True))


@lru_cache(maxsize=1)
def assets() -> StaticAssets:
    return StaticAssets()


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True, default=True),
        undefined=ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(filesize=filesize, money=money, percent=percent, signed_percent=signed_percent,
                       number=number, when=when, platform=platform_label)
    env.globals.update(asset=assets().url, platforms=list(Platform), platform_label=platform_label)
    return env


def render(request: Request, template: str, context: dict[str, Any] | None = None, *, status: int = 200,
           headers: dict[str, str] | None = None) -> HTMLResponse:
    settings = request.app.state.settings
    flash = FLASH.get(request.query_params.get("flash", ""))
    values: dict[str, Any] = {"request": request, "csrf_token": browser.csrf_token(request, settings),
                              "csrf_field": browser.CSRF_FIELD, "flash": flash}
    values.setdefault("page", None)
    values.setdefault("web", None)
    values.update(context or {})
    body = environment().get_template(template).render(values)
    response = HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store", **(headers or {})})
    issued = getattr(request.state, "csrf_secret", None)
    if isinstance(issued, str):
        browser.set_cookie(response, settings, browser.cookie_policy(settings).csrf_name, issued,
                           CSRF_COOKIE_MAX_AGE)
    return response
