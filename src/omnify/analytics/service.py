"""The analytics report of one client: validate, serve from cache, or compute and cache.

A request's budget (issue 16): a cache hit is one Redis round trip (rate limits and the
look-up together) and no database round trip once the caller is known; a miss adds one
analytics query, which also checks the client (see :mod:`omnify.analytics.repository`).
The report is encoded once (orjson): the same bytes are cached and sent.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from omnify.analytics import repository
from omnify.analytics.cache import get_cache
from omnify.analytics.kpis import Dimension, Granularity, previous_range, rollup
from omnify.core.errors import UnprocessableEntity
from omnify.core.ratelimit import PendingLimits
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


async def report_json(
    session: AsyncSession, settings: Settings, org_id: uuid.UUID, client_id: uuid.UUID, q: Query,
    limits: PendingLimits | None = None,
) -> tuple[bytes, bool]:
    """(the report as JSON bytes, served from cache).

    ``limits``: the request's rate limits, still to be checked; they are, first of all, in
    the same Redis round trip as the cache look-up. A hit touches no database: the entry
    exists only if the client did when it was computed (its key carries the caller's
    organization, so another tenant can never reach it), and a miss checks the client in
    the analytics query itself.
    """
    cache = get_cache(settings)
    found = await cache.lookup(org_id, client_id, q.params(), limits)
    validate(q)
    if found.body is not None:
        return found.body, True
    prev_since, prev_until = previous_range(q.since, q.until) if q.compare else (None, None)
    read_from = prev_since or q.since
    rows = await repository.load_rows(session, org_id, client_id, read_from, q.until, q.group_by)
    current = [r for r in rows if r.day >= q.since]
    previous = [r for r in rows if r.day < q.since] if q.compare else None
    reports = rollup(current, since=q.since, until=q.until, granularity=q.granularity, dimension=q.group_by,
                     previous_rows=previous, top=q.top)
    body = orjson.dumps({
        "client_id": str(client_id), "since": q.since.isoformat(), "until": q.until.isoformat(),
        "granularity": q.granularity.value, "group_by": q.group_by.value,
        "previous_since": prev_since.isoformat() if prev_since else None,
        "previous_until": prev_until.isoformat() if prev_until else None,
        "currencies": [r.to_dict() for r in reports],
    })
    await cache.store(found, body)
    return body, False


async def report(
    session: AsyncSession, settings: Settings, org_id: uuid.UUID, client_id: uuid.UUID, q: Query
) -> tuple[dict[str, Any], bool]:
    """(report, served from cache), decoded: for pages that render it."""
    body, hit = await report_json(session, settings, org_id, client_id, q)
    return dict(orjson.loads(body)), hit


def default_range(today: date) -> tuple[date, date]:
    """The last 30 complete days."""
    until = today - timedelta(days=1)
    return until - timedelta(days=29), until
