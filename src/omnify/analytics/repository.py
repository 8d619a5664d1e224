"""The analytics read: daily sums as :class:`MetricRow` values.

Reports grouped by nothing, platform or campaign read the per-client daily rollups the
sync maintains (``analytics_daily``: days x campaigns rows, not days x ads), summed once
more in the database, with integer sums (money in minor units, conversions in
millionths). Grouped by ad they read the raw rows (a drill-down).

The client's existence is checked **in the same statement** (the rollup is left-joined
to the client's row): a cache miss costs one analytics query, and an unknown or foreign
client (row-level security hides it too) is a 404 as before.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from sqlalchemy import BigInteger, Date, Uuid, bindparam, cast, func, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from omnify.analytics import synced
from omnify.analytics.kpis import Dimension, MetricRow
from omnify.clients import service as clients
from omnify.core.db import Base
from omnify.core.errors import NotFound

_MICROS = 1_000_000
NO_CAMPAIGN = uuid.UUID(int=0)  # omnify.sync.models.NO_CAMPAIGN; named here to keep the read independent


def _table(name: str) -> Any:
    table = Base.metadata.tables.get(name)
    if table is None:
        raise synced.SyncUnavailable(f"The synced table {name!r} does not exist in this build.")
    return table


async def load_rows(
    session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, since: date, until: date, group_by: Dimension
) -> list[MetricRow]:
    """Sums per (day, currency[, key]) in ``since..until``; NotFound for an unknown client."""
    if group_by == Dimension.AD:
        await clients.get_client(session, org_id, client_id)
        rows = await synced.metric_sums(session, org_id, client_id, since, until, group_by.value)
        return [_metric_row(r, float(r["conversions"] or 0)) for r in rows]
    # On the session's connection, not through the ORM session: a Core read needs none of
    # its unit-of-work machinery (a third of the cost of this call). The tenant binding
    # still happens, when the connection's transaction begins.
    connection = await session.connection()
    found = (await connection.execute(_rollup_statement(group_by), {
        "org_id": org_id, "client_id": client_id, "since": since, "until": until})).all()
    if not found:
        raise NotFound("Client not found.")
    out = []
    fields = found[0]._fields
    has_platform, has_key = "platform" in fields, "key" in fields
    for row in found:
        if row.day is None:
            continue  # the client exists and has no data in the range
        day = row.day if isinstance(row.day, date) else date.fromisoformat(str(row.day)[:10])
        key = row.key if has_key else None
        out.append(MetricRow(day, (row.currency or "XXX").upper(), row.spend_minor, row.impressions, row.clicks,
                             row.conversions_micros / _MICROS, row.revenue_minor,
                             row.platform if has_platform else None,
                             # spend no campaign could be found for is its own bucket, keyed None
                             str(key) if key is not None and key != NO_CAMPAIGN else None,
                             str(row.label) if has_key and row.label is not None else None))
    return out


_statements: dict[Dimension, Any] = {}


def _rollup_statement(group_by: Dimension) -> Any:
    """Built once per grouping (bound parameters): building a statement costs more than
    running it."""
    stmt = _statements.get(group_by)
    if stmt is not None:
        return stmt
    synced._tables("ad_metrics_daily")  # a build without the sync domain answers 503, as before
    r, c, cp = _table("analytics_daily"), _table("campaigns"), _table("client_profiles")
    org, client = bindparam("org_id", type_=Uuid()), bindparam("client_id", type_=Uuid())
    keys: list[Any] = [r.c.day.label("day"), r.c.currency.label("currency")]
    source: Any = r
    if group_by == Dimension.PLATFORM:
        keys.append(r.c.platform.label("platform"))
    elif group_by == Dimension.CAMPAIGN:
        source = r.outerjoin(c, c.c.id == r.c.campaign_id)
        keys += [r.c.campaign_id.label("key"), c.c.name.label("label"), r.c.platform.label("platform")]
    sums = [cast(func.sum(r.c[name]), BigInteger).label(name)
            for name in ("spend_minor", "impressions", "clicks", "conversions_micros", "revenue_minor")]
    agg = (select(*keys, *sums).select_from(source)
           .where(r.c.org_id == org, r.c.client_id == client, r.c.day >= bindparam("since", type_=Date()),
                  r.c.day <= bindparam("until", type_=Date()))
           .group_by(*keys).subquery("sums"))
    stmt = (select(cp.c.id.label("client"), *agg.c).select_from(cp.outerjoin(agg, true()))
            .where(cp.c.org_id == org, cp.c.id == client))
    _statements[group_by] = stmt
    return stmt


def _metric_row(r: Any, conversions: float) -> MetricRow:
    day = r["day"]
    return MetricRow(
        day=day if isinstance(day, date) else date.fromisoformat(str(day)[:10]),
        currency=str(r["currency"] or "").upper() or "XXX",
        spend_minor=int(r["spend_minor"] or 0), impressions=int(r["impressions"] or 0),
        clicks=int(r["clicks"] or 0), conversions=conversions, revenue_minor=int(r["revenue_minor"] or 0),
        platform=str(r["platform"]) if r.get("platform") is not None else None,
        key=str(r["key"]) if r.get("key") is not None else None,
        label=str(r["label"]) if r.get("label") is not None else None,
    )


async def business_totals(session: AsyncSession, org_id: uuid.UUID, since: date) -> tuple[int, dict[str, int]]:
    """``(onboarded clients, spend since ``since`` by currency)`` of one organization, for the
    business gauges (core.metrics); the session is bound to ``org_id``."""
    from sqlalchemy import func, select

    from omnify.onboarding.models import OnboardingState
    from omnify.sync.models import AdMetricDaily

    onboarded = await session.scalar(select(func.count()).select_from(OnboardingState).where(
        OnboardingState.org_id == org_id, OnboardingState.completed_at.is_not(None)))
    rows = await session.execute(select(AdMetricDaily.currency, func.sum(AdMetricDaily.spend_minor)).where(
        AdMetricDaily.org_id == org_id, AdMetricDaily.day >= since).group_by(AdMetricDaily.currency))
    return int(onboarded or 0), {str(c): int(v or 0) for c, v in rows}
