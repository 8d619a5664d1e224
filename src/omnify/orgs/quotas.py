"""Plan limits and the one helper that checks them.

Limits come from the organization's plan, overridden per organization by ``OrgQuota``.
Usage is measured from live data by providers that each domain registers (members here,
clients and storage in their own packages), so there is no counter that can drift.
API calls per day are counted by the rate limiter (Redis or memory), not the database,
so counting them costs no write per request.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from omnify.core.db import utcnow
from omnify.core.errors import QuotaExceeded
from omnify.core.invalidation import LocalCache, watch
from omnify.orgs import repository
from omnify.orgs.models import OrgQuota

Resource = Literal["members", "clients", "storage_bytes", "api_calls_per_day"]
RESOURCES: tuple[Resource, ...] = ("members", "clients", "storage_bytes", "api_calls_per_day")

GiB = 1024**3
PLANS: dict[str, dict[Resource, int]] = {
    "free": {"members": 5, "clients": 10, "storage_bytes": 5 * GiB, "api_calls_per_day": 50_000},
    "pro": {"members": 25, "clients": 100, "storage_bytes": 100 * GiB, "api_calls_per_day": 500_000},
    "enterprise": {"members": 500, "clients": 5000, "storage_bytes": 5000 * GiB, "api_calls_per_day": 10_000_000},
}

UsageProvider = Callable[[AsyncSession, uuid.UUID], Awaitable[int]]
_usage: dict[Resource, UsageProvider] = {}


def register_usage(resource: Resource, provider: UsageProvider) -> None:
    _usage[resource] = provider


async def _members_usage(session: AsyncSession, org_id: uuid.UUID) -> int:
    # Pending invitations hold a seat: otherwise a burst of invites overshoots the plan.
    return await repository.count_members(session, org_id) + await repository.count_pending_invitations(
        session, org_id, utcnow()
    )


register_usage("members", _members_usage)


#: Plan limits per organization, for a few seconds (every API request reads the daily
#: call quota); dropped when the organization or its quota row changes.
_LIMITS: LocalCache[uuid.UUID, dict[Resource, int]] = LocalCache("plan_limits")
watch(OrgQuota, lambda q: [("org", str(q.org_id))])


async def limits_for(session: AsyncSession, org_id: uuid.UUID) -> dict[Resource, int]:
    cached = _LIMITS.get(org_id)
    if cached is not None:
        return dict(cached)
    limits = await _read_limits(session, org_id)
    _LIMITS.put(org_id, limits, [("org", str(org_id))])
    return dict(limits)


async def _read_limits(session: AsyncSession, org_id: uuid.UUID) -> dict[Resource, int]:
    org = await repository.get_org(session, org_id)
    plan = PLANS.get(org.plan if org else "free", PLANS["free"])
    limits = dict(plan)
    override = await repository.get_quota(session, org_id)
    if override:
        for res in RESOURCES:
            value = getattr(override, res)
            if value is not None:
                limits[res] = value
    return limits


async def usage_for(session: AsyncSession, org_id: uuid.UUID, resource: Resource) -> int | None:
    provider = _usage.get(resource)
    return await provider(session, org_id) if provider else None


@dataclass(frozen=True, slots=True)
class QuotaLine:
    resource: Resource
    limit: int
    used: int | None


async def report(session: AsyncSession, org_id: uuid.UUID) -> list[QuotaLine]:
    limits = await limits_for(session, org_id)
    return [QuotaLine(res, limits[res], await usage_for(session, org_id, res)) for res in RESOURCES]


async def check_quota(session: AsyncSession, org_id: uuid.UUID, resource: Resource, adding: int = 1) -> None:
    """Raise a 402 problem when ``adding`` more of ``resource`` would pass the limit."""
    limits = await limits_for(session, org_id)
    used = await usage_for(session, org_id, resource) or 0
    limit = limits[resource]
    if used + adding > limit:
        raise QuotaExceeded(
            f"This organization's plan allows {limit} {resource.replace('_', ' ')}; "
            f"{used} in use and {adding} more requested.",
            resource=resource,
            limit=limit,
            used=used,
        )
