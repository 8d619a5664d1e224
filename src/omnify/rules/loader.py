"""Load one client's synced entities and daily rows into an engine :class:`Frame`.

Reads through :mod:`omnify.analytics.synced` (the analytics layer's reader of the sync
domain's tables), as the brain does: one query for the entities, one for the days.
Campaign-level rules sum their ads' rows per campaign (ratios are recomputed from the
sums by the engine, never averaged).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from omnify.analytics import synced
from omnify.rules import repository
from omnify.rules.engine import DayRow, Entity, Frame


def _day(value: object) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


async def load_frame(
    session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, level: str, start: date, end: date,
    *, default_currency: str | None = None,
) -> Frame:
    ads_rows, campaign_rows = await synced.entities(session, org_id, client_id)
    labels = await repository.labels_of_client(session, org_id, client_id)
    raw = await synced.ad_days(session, org_id, client_id, start, end)
    currency_of: dict[str, str] = {}
    campaign_of_ad = {str(r["id"]): str(r["campaign"]) for r in ads_rows if r.get("campaign")}
    for r in raw:
        if r["ad_id"] is None:
            continue
        cur = str(r["currency"] or "").upper()
        ad_key = str(r["ad_id"])
        currency_of.setdefault(ad_key, cur)
        if ad_key in campaign_of_ad:
            currency_of.setdefault(campaign_of_ad[ad_key], cur)
    fallback = (default_currency or "USD").upper()
    camp_ext = {str(r["id"]): str(r["external_id"]) for r in campaign_rows}
    cid = str(client_id)
    entities: list[Entity] = []
    if level == "campaign":
        for r in campaign_rows:
            key = str(r["id"])
            entities.append(Entity(
                key=key, external_id=str(r["external_id"]), name=str(r.get("name") or ""),
                platform=str(r.get("platform") or "unknown"), account_id=str(r.get("account_external_id") or ""),
                level="campaign", client_id=cid, currency=currency_of.get(key, fallback),
                status=str(r.get("status") or "unknown"), campaign_key=key, campaign_external_id=camp_ext[key],
                budget_minor=int(r["budget"]) if r.get("budget") else None,
                labels=frozenset(labels.get(key, ()))))
    else:
        for r in ads_rows:
            key = str(r["id"])
            camp = str(r["campaign"]) if r.get("campaign") else None
            entities.append(Entity(
                key=key, external_id=str(r["external_id"]), name=str(r.get("name") or ""),
                platform=str(r.get("platform") or "unknown"), account_id=str(r.get("account_external_id") or ""),
                level="ad", client_id=cid, currency=currency_of.get(key, fallback),
                status=str(r.get("status") or "unknown"), campaign_key=camp,
                campaign_external_id=camp_ext.get(camp) if camp else None,
                labels=frozenset(labels.get(key, ()))))
    rows = []
    for r in raw:
        if r["ad_id"] is None:
            continue
        key = str(r["ad_id"])
        if level == "campaign":
            key = campaign_of_ad.get(key, "")
        rows.append(DayRow(key, _day(r["day"]), int(r["spend_minor"] or 0), int(r["impressions"] or 0),
                           int(r["clicks"] or 0), float(r["conversions"] or 0), int(r["revenue_minor"] or 0),
                           float(r["frequency"]) if r.get("frequency") is not None else None))
    return Frame.from_rows(entities, rows, start, end)
