"""The weekly performance digest: one e-mail per organization member, opt-out per user.

What goes in it comes from *section providers* that each domain registers from its
``digest.py`` (the brain's recommendations, spend and sync health, the actions taken):
this module owns the rhythm, the recipients and the rendering, not the numbers. Every
module of :data:`PROVIDER_MODULES` must import: a missing one is an error at the first
digest, not a silently shorter e-mail. An organization whose providers have nothing to
say for the week gets no e-mail: an empty digest teaches people to ignore it.

Opt-out: ``users.email_opt_out_digest`` (``PATCH /api/v1/me``) is honoured when the
digest is queued; the e-mail carries the preferences link and a ``List-Unsubscribe``
header. Each (organization, user, week) is queued at most once (dedupe key), so the
beat job may run twice without sending twice.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from omnify.audit import service as audit
from omnify.core.db import bind_tenant, utcnow
from omnify.core.logging import get_logger
from omnify.core.pagination import PageParams, encode_cursor
from omnify.notifications.service import queue_email
from omnify.orgs import service as orgs
from omnify.settings import Settings

log = get_logger(__name__)

#: Modules that call :func:`register_section` on import.
PROVIDER_MODULES = ("omnify.recommendations.digest", "omnify.sync.digest", "omnify.actions.digest")


@dataclass(frozen=True, slots=True)
class DigestRow:
    label: str
    value: str


@dataclass(frozen=True, slots=True)
class DigestSection:
    title: str
    rows: list[DigestRow]
    note: str | None = None
    order: int = 100

    def as_context(self) -> dict[str, Any]:
        return {"title": self.title, "rows": [{"label": r.label, "value": r.value} for r in self.rows],
                "note": self.note}


def tally(counts: Mapping[str, int]) -> str:
    """``{"fatigue": 2, "anomaly": 1}`` -> ``"3 (1 anomaly, 2 fatigue)"``: a row value."""
    total = sum(counts.values())
    parts = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in sorted(counts.items()) if n)
    return f"{total} ({parts})" if parts else str(total)


SectionProvider = Callable[[AsyncSession, uuid.UUID, datetime, datetime], Awaitable[DigestSection | None]]


@dataclass
class _Registry:
    providers: dict[str, SectionProvider] = field(default_factory=dict)
    loaded: bool = False


_registry = _Registry()


def register_section(name: str, provider: SectionProvider) -> None:
    """Add (or replace) a section provider: ``await provider(session, org_id, start, end)``."""
    _registry.providers[name] = provider


def unregister_section(name: str) -> None:
    _registry.providers.pop(name, None)


def _load_providers() -> None:
    if _registry.loaded:
        return
    for module in PROVIDER_MODULES:
        importlib.import_module(module)
    _registry.loaded = True


def week_bounds(now: datetime) -> tuple[datetime, datetime]:
    """The last full ISO week (Monday 00:00 UTC to Monday 00:00 UTC) before ``now``."""
    monday = datetime.combine((now - timedelta(days=now.weekday())).date(), time(0), tzinfo=now.tzinfo)
    return monday - timedelta(days=7), monday


async def sections_for(session: AsyncSession, org_id: uuid.UUID, start: datetime, end: datetime) -> list[DigestSection]:
    _load_providers()
    found: list[DigestSection] = []
    for name, provider in sorted(_registry.providers.items()):
        try:
            section = await provider(session, org_id, start, end)
        except Exception as exc:  # one broken provider must not cancel everyone's digest
            log.warning("digest.provider_failed", provider=name, org_id=str(org_id),
                        error=f"{type(exc).__name__}: {exc}"[:300])
            continue
        if section is not None and section.rows:
            found.append(section)
    return sorted(found, key=lambda s: (s.order, s.title))


async def queue_org_digest(
    session: AsyncSession, settings: Settings, org_id: uuid.UUID, *, now: datetime | None = None
) -> int:
    """Queue this week's digest for every member of one organization who did not opt out.

    The caller has bound ``session`` to ``org_id`` and commits.
    """
    start, end = week_bounds(now or utcnow())
    sections = await sections_for(session, org_id, start, end)
    if not sections:
        return 0
    org = await orgs.get_org(session, org_id)
    base = f"{settings.public_base_url}"
    queued = 0
    params = PageParams(limit=200)
    while True:
        rows = await orgs.list_members(session, org_id, params)
        for _membership, user in rows[: params.limit]:
            if not user.is_active or user.email_opt_out_digest:
                continue
            await queue_email(
                session, to=user.email, template="weekly_digest", org_id=org_id,
                dedupe_key=f"digest:{org_id}:{user.id}:{start.date().isoformat()}",
                context={"name": user.name, "org_name": org.name, "period_start": start.isoformat(),
                         "period_end": end.isoformat(), "sections": [s.as_context() for s in sections],
                         "dashboard_url": f"{base}/orgs/{org_id}",
                         "preferences_url": f"{base}/settings/notifications"},
            )
            queued += 1
        if len(rows) <= params.limit:
            return queued
        last = rows[params.limit - 1][0]
        params = PageParams(limit=200, cursor=encode_cursor(last.created_at, last.id))


async def queue_all_digests(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, *, now: datetime | None = None
) -> int:
    """The weekly beat job: every organization, one transaction each."""
    async with sessionmaker() as session:
        org_ids = await audit.org_ids(session)
    total = 0
    for org_id in org_ids:
        async with sessionmaker() as session:
            await bind_tenant(session, org_id)
            try:
                total += await queue_org_digest(session, settings, org_id, now=now)
                await session.commit()
            except Exception as exc:
                await session.rollback()
                log.error("digest.org_failed", org_id=str(org_id), error=f"{type(exc).__name__}: {exc}"[:300])
    return total
