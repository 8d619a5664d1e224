"""Load one client's synced rows into :class:`~omnify.brain_runs.translate.ClientData`."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from omnify.analytics import synced
from omnify.brain_runs.translate import AdDay, AdInfo, CampaignInfo, ClientData, OrderRow


def _day(value: object) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


async def load_client_data(
    session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, *, since: date, until: date,
    orders_since: date,
) -> ClientData:
    ads_rows, campaign_rows = await synced.entities(session, org_id, client_id)
    campaigns = {
        str(r["id"]): CampaignInfo(
            key=str(r["id"]), external_id=str(r["external_id"]), name=r.get("name"),
            platform=str(r.get("platform") or "unknown"), account_external_id=str(r.get("account_external_id") or ""),
            daily_budget_minor=int(r["budget"]) if r.get("budget") else None, status=r.get("status"))
        for r in campaign_rows
    }
    ads = {
        str(r["id"]): AdInfo(
            key=str(r["id"]), external_id=str(r["external_id"]), name=r.get("name"),
            platform=str(r.get("platform") or "unknown"), account_external_id=str(r.get("account_external_id") or ""),
            campaign_key=str(r.get("campaign") or "campaign"), status=r.get("status"),
            account_name=r.get("account_name"))
        for r in ads_rows
    }
    days = [
        AdDay(ad_key=str(r["ad_id"]), day=_day(r["day"]), currency=str(r["currency"] or "").upper(),
              spend_minor=int(r["spend_minor"] or 0), impressions=int(r["impressions"] or 0),
              clicks=int(r["clicks"] or 0), conversions=float(r["conversions"] or 0),
              revenue_minor=int(r["revenue_minor"] or 0),
              frequency=float(r["frequency"]) if r.get("frequency") is not None else None)
        for r in await synced.ad_days(session, org_id, client_id, since, until)
        if r["ad_id"] is not None
    ]
    orders = [
        OrderRow(customer_key=str(r["customer"]), day=_day(r["created"]), total_minor=int(r["total_minor"] or 0),
                 currency=str(r["currency"] or "").upper())
        for r in await synced.orders(session, org_id, client_id, orders_since)
    ]
    return ClientData(client_id=str(client_id), ads=ads, campaigns=campaigns, days=days, orders=orders)


async def clients_with_data(session: AsyncSession, org_id: uuid.UUID) -> list[uuid.UUID]:
    return await synced.clients_with_data(session, org_id)
