"""The analytics read: daily sums from the synced metrics, as :class:`MetricRow` values."""

from __future__ import annotations

import uuid
from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession

from omnify.analytics import synced
from omnify.analytics.kpis import Dimension, MetricRow


async def load_rows(
    session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, since: date, until: date, group_by: Dimension
) -> list[MetricRow]:
    rows = await synced.metric_sums(session, org_id, client_id, since, until, group_by.value)
    return [
        MetricRow(
            day=r["day"] if isinstance(r["day"], date) else date.fromisoformat(str(r["day"])[:10]),
            currency=str(r["currency"] or "").upper() or "XXX",
            spend_minor=int(r["spend_minor"] or 0), impressions=int(r["impressions"] or 0),
            clicks=int(r["clicks"] or 0), conversions=float(r["conversions"] or 0),
            revenue_minor=int(r["revenue_minor"] or 0),
            platform=str(r["platform"]) if r.get("platform") is not None else None,
            key=str(r["key"]) if r.get("key") is not None else None,
            label=str(r["label"]) if r.get("label") is not None else None,
        )
        for r in rows
    ]
