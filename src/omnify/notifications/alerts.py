"""E-mails triggered by domain events: onboarding completed, credential expiring, sync failing.

Called by the domain-event dispatcher (:mod:`omnify.webhooks.dispatcher`) in the same
transaction that fans the event out to webhooks and marks it dispatched, so each event
produces its e-mails exactly once; the dedupe keys make a re-dispatch harmless anyway.
Recipients are the organization's owners and admins (the people who can act on them).

Payload fields come from the emitting domain and may be partial while those domains
evolve; every lookup has a readable fallback rather than failing the dispatch.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from omnify.auth.models import User
from omnify.core.pagination import PageParams
from omnify.notifications.service import queue_email
from omnify.orgs import service as orgs
from omnify.orgs.models import Role
from omnify.settings import Settings

ContextBuilder = Callable[[Settings, uuid.UUID, dict[str, Any]], dict[str, Any]]


def _client_name(payload: dict[str, Any]) -> str:
    return str(payload.get("company_name") or payload.get("client_name") or "A client")


def _client_url(settings: Settings, org_id: uuid.UUID, payload: dict[str, Any]) -> str:
    client = payload.get("client_id")
    base = f"{settings.public_base_url}/orgs/{org_id}"
    return f"{base}/clients/{client}" if client else f"{base}/clients"


def _onboarding(settings: Settings, org_id: uuid.UUID, payload: dict[str, Any]) -> dict[str, Any]:
    return {"client_name": _client_name(payload), "client_url": _client_url(settings, org_id, payload)}


def _credential(settings: Settings, org_id: uuid.UUID, payload: dict[str, Any]) -> dict[str, Any]:
    return {"client_name": _client_name(payload), "platform": str(payload.get("platform") or "platform"),
            "expires_at": str(payload.get("expires_at") or "soon"),
            "reconnect_url": _client_url(settings, org_id, payload) + "/connections"}


def _sync(settings: Settings, org_id: uuid.UUID, payload: dict[str, Any]) -> dict[str, Any]:
    return {"client_name": _client_name(payload), "platform": str(payload.get("platform") or "platform"),
            "error_message": str(payload.get("message") or payload.get("error_code") or "No details were given."),
            "details_url": _client_url(settings, org_id, payload) + "/connections"}


#: domain event type -> (template, context builder, dedupe scope).
RULES: dict[str, tuple[str, ContextBuilder, Callable[[str, dict[str, Any], datetime], str]]] = {
    "client.onboarding_completed": ("onboarding_completed", _onboarding,
                                    lambda eid, p, _t: f"onboarding:{p.get('client_id') or eid}"),
    "credential.expiring": ("credential_expiring", _credential,
                            lambda eid, p, _t: f"credential-expiring:{p.get('client_id')}:{p.get('platform')}:"
                                               f"{p.get('expires_at') or eid}"),
    # A failing sync is retried by its scheduler: one e-mail per connection and day is enough.
    "sync.failed": ("sync_failing", _sync,
                    lambda eid, p, t: f"sync-failing:{p.get('connection_id') or p.get('client_id') or eid}:"
                                      f"{t.date().isoformat()}"),
}


async def admins(session: AsyncSession, org_id: uuid.UUID) -> list[User]:
    """The organization's active owners and admins: who alerts go to by default."""
    people: list[User] = []
    for role in (Role.OWNER, Role.ADMIN):
        rows = await orgs.list_members(session, org_id, PageParams(limit=200), role)
        people.extend(user for _m, user in rows if user.is_active)
    return people


async def emails_for_event(
    session: AsyncSession, settings: Settings, org_id: uuid.UUID, event_id: uuid.UUID, event_type: str,
    payload: dict[str, Any], occurred_at: datetime,
) -> int:
    """Queue the e-mails ``event_type`` calls for; how many were queued."""
    rule = RULES.get(event_type)
    if rule is None:
        return 0
    template, build, scope = rule
    org = await orgs.get_org(session, org_id)
    specific = build(settings, org_id, payload)
    key = scope(str(event_id), payload, occurred_at)
    count = 0
    for user in await admins(session, org_id):
        await queue_email(session, to=user.email, template=template, org_id=org_id,
                          dedupe_key=f"{key}:{user.id}"[:200],
                          context={"name": user.name, "org_name": org.name, **specific})
        count += 1
    return count
