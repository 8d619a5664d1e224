"""The analytics report of one client: validate, serve from cache, or compute and cache.

The client check runs before the cache (an unknown or foreign client is a 404 whatever
is cached); everything after it is served from the cache when the client's data has
not changed since (see :mod:`omnify.analytics.cache`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from omnify.analytics import repository
from omnify.analytics.cache import get_cache
from omnify.analytics.kpis import Dimension, Granularity, previous_range, rollup
from omnify.clients import service as clients
from omnify.core.errors import UnprocessableEntity
from omnify.settings import Settings

MAX_RANGE_DAYS = 731


@dataclass(frozen=True, slots=True)
class Query:
    since: date
    until: date
    granularity: Granularity
    group_by: Dimension
    compare: bool
    top: int

    def params(self) -> dict[str, Any]:
        return {"since": self.since.isoformat(), "until": self.until.isoformat(), "g": self.granularity.value,
                "by": self.group_by.value, "cmp": self.compare, "top": self.top, "v": 1}


def validate(q: Query) -> None:
    errors = []
    if q.since > q.until:
        errors.append({"loc": ["query", "since"], "field": "since", "msg": "must not be after until"})
    elif (q.until - q.since).days + 1 > MAX_RANGE_DAYS:
        errors.append({"loc": ["query", "until"], "field": "until",
                       "msg": f"the range is limited to {MAX_RANGE_DAYS} days"})
    if errors:
        raise UnprocessableEntity("The request has invalid fields.", errors=errors)


async def report(
    session: AsyncSession, settings: Settings, org_id: uuid.UUID, client_id: uuid.UUID, q: Query
) -> tuple[dict[str, Any], bool]:
    """(report, served from cache)."""
    validate(q)
    await clients.get_client(session, org_id, client_id)
    cache = get_cache(settings)
    key, cached = await cache.get_report(org_id, client_id, q.params())
    if cached is not None:
        return cached, True
    prev_since, prev_until = previous_range(q.since, q.until) if q.compare else (None, None)
    read_from = prev_since or q.since
    rows = await repository.load_rows(session, org_id, client_id, read_from, q.until, q.group_by)
    current = [r for r in rows if r.day >= q.since]
    previous = [r for r in rows if r.day < q.since] if q.compare else None
    reports = rollup(current, since=q.since, until=q.until, granularity=q.granularity, dimension=q.group_by,
                     previous_rows=previous, top=q.top)
    body = {
        "client_id": str(client_id), "since": q.since.isoformat(), "until": q.until.isoformat(),
        "granularity": q.granularity.value, "group_by": q.group_by.value,
        "previous_since": prev_since.isoformat() if prev_since else None,
        "previous_until": prev_until.isoformat() if prev_until else None,
        "currencies": [r.to_dict() for r in reports],
    }
    await cache.put_report(key, body)
    return body, False


def default_range(today: date) -> tuple[date, date]:
    """The last 30 complete days."""
    until = today - timedelta(days=1)
    return until - timedelta(days=29), until
