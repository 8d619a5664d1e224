"""The client dashboard: KPI cards with period-over-period change, spend and revenue/ROAS
over time by platform, breakdowns by campaign and ad, and the sync state of every
connection with "sync now".

Everything comes from the analytics service (the same cached report the API serves) and
the connections service; this module only shapes it for the page. Chart data travels as
a JSON block read by ``charts.js`` (the CSP forbids inline script).
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from omnify.analytics import service as analytics
from omnify.analytics.kpis import Dimension, Granularity
from omnify.clients import service as clients
from omnify.connections import service as connections
from omnify.core.db import utcnow
from omnify.core.deps import SettingsDep
from omnify.core.errors import Conflict
from omnify.credentials.platforms import Platform as CredentialPlatform
from omnify.integrations.base import Platform
from omnify.integrations.money import currency_exponent
from omnify.sync import service as sync
from omnify.web.deps import ClientsReader, ConnectionsManager, csrf_guard, org_shell
from omnify.web.templating import platform_label, render

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf_guard)])
BASE = "/orgs/{org_id}/clients/{client_id}"

#: The KPI cards, in order: (key in the report, label, kind, higher is better).
KPI_CARDS: tuple[tuple[str, str, str, bool], ...] = (
    ("spend_minor", "Spend", "money", True),
    ("revenue_minor", "Revenue", "money", True),
    ("roas", "ROAS", "ratio", True),
    ("cpa_minor", "CPA", "money", False),
    ("ctr", "CTR", "percent", True),
    ("conversions", "Conversions", "number", True),
)
#: Campaigns and ads listed in the breakdown tables (by spend).
TOP_KEYS = 50
#: Quick ranges offered next to the date inputs.
PRESETS = (7, 30, 90)


def _range(since: date | None, until: date | None, days: int | None) -> tuple[date, date]:
    d_since, d_until = analytics.default_range(utcnow().date())
    if days:
        return d_until - timedelta(days=days - 1), d_until
    until = until or (d_until if since is None or since <= d_until else since)
    since = since or (until - (d_until - d_since))
    return since, until


def _epoch(day: str) -> int:
    return int(datetime.combine(date.fromisoformat(day), time(), tzinfo=UTC).timestamp())


def chart_data(daily: dict[str, Any], by_platform: dict[str, Any], currency: str) -> dict[str, Any]:
    """uPlot's columnar series: one x axis of days, spend and revenue per platform, ROAS total.

    Every platform gets a value (0) on every day of the range so the lines do not skip
    days without rows; ROAS is ``None`` (a gap) on a day without spend.
    """
    days = sorted({r["period"] for r in daily["rows"]} | {r["period"] for r in by_platform["rows"]})
    platforms = sorted({str(r.get("platform") or r.get("key") or "") for r in by_platform["rows"]})
    index = {d: i for i, d in enumerate(days)}
    scale = 10.0 ** currency_exponent(currency)  # charts plot amounts, not minor units
    spend = {p: [0.0] * len(days) for p in platforms}
    revenue = {p: [0.0] * len(days) for p in platforms}
    for r in by_platform["rows"]:
        p = str(r.get("platform") or r.get("key") or "")
        spend[p][index[r["period"]]] = r["spend_minor"] / scale
        revenue[p][index[r["period"]]] = r["revenue_minor"] / scale
    roas: list[float | None] = [None] * len(days)
    for r in daily["rows"]:
        roas[index[r["period"]]] = r.get("roas")
    return {"x": [_epoch(d) for d in days], "platforms": platforms, "spend": spend, "revenue": revenue,
            "roas": roas, "labels": {p: platform_label(p) for p in platforms}}


async def _reports(ctx: Any, settings: Any, client_id: uuid.UUID, since: date, until: date) -> list[dict[str, Any]]:
    """One entry per currency: totals with change, chart series, campaign and ad rows."""

    async def one(g: Granularity, by: Dimension, compare: bool, top: int) -> dict[str, Any]:
        report, _hit = await analytics.report(ctx.session, settings, ctx.org_id, client_id,
                                              analytics.Query(since, until, g, by, compare, top))
        return {c["currency"]: c for c in report["currencies"]}

    daily = await one(Granularity.DAY, Dimension.NONE, True, 1)
    platform = await one(Granularity.DAY, Dimension.PLATFORM, False, 100)
    campaigns = await one(Granularity.TOTAL, Dimension.CAMPAIGN, False, TOP_KEYS)
    ads = await one(Granularity.TOTAL, Dimension.AD, False, TOP_KEYS)
    empty = {"rows": [], "keys_total": 0, "keys_omitted": 0}
    out = []
    for currency, rep in daily.items():
        out.append({"currency": currency, "totals": rep["totals"], "previous": rep["previous"],
                    "change": rep["change"] or {},
                    "chart": chart_data(rep, platform.get(currency, empty), currency),
                    "campaigns": campaigns.get(currency, empty), "ads": ads.get(currency, empty)})
    return out


@router.get(BASE + "/dashboard")
async def dashboard(
    request: Request, client_id: uuid.UUID, ctx: ClientsReader, settings: SettingsDep,
    since: Annotated[date | None, Query()] = None, until: Annotated[date | None, Query()] = None,
    days: Annotated[int | None, Query(ge=1, le=analytics.MAX_RANGE_DAYS)] = None,
) -> Response:
    web = await org_shell(request, ctx, "clients")
    client = await clients.get_client(ctx.session, ctx.org_id, client_id)
    since, until = _range(since, until, days)
    reports = await _reports(ctx, settings, client_id, since, until)  # validates the range (422 page)
    conns = await connections.list_connections(ctx.session, ctx.org_id, client_id)
    progress = {c.id: connections.backfill_progress(c) for c in conns}
    return render(request, "client/dashboard.html", {
        "web": web, "client": client, "since": since, "until": until, "reports": reports,
        "kpi_cards": KPI_CARDS, "presets": PRESETS, "connections": conns, "progress": progress,
        "previous_days": (until - since).days + 1,
        "syncing": any(c.backfill_status == "running" for c in conns)})


@router.post(BASE + "/connections/{platform}/sync")
async def sync_now(client_id: uuid.UUID, platform: CredentialPlatform, ctx: ConnectionsManager,
                   back: Annotated[str | None, Query(max_length=20)] = None) -> Response:
    """Queue a sync now (the same service call as ``POST .../sync`` of the API)."""
    page = "connections" if back == "connections" else "dashboard"
    try:
        await sync.request_sync(ctx.session, ctx.org_id, ctx.actor, client_id, Platform(platform.value))
    except Conflict:  # not connected, or no account picked: the page says what to do
        await ctx.session.rollback()  # a redirect follows: nothing of this session is rendered
        return RedirectResponse(f"/orgs/{ctx.org_id}/clients/{client_id}/{page}?flash=sync-refused",
                                status_code=303)
    return RedirectResponse(f"/orgs/{ctx.org_id}/clients/{client_id}/{page}?flash=sync-queued", status_code=303)


@router.get(BASE + "/sync-status")
async def sync_status(request: Request, client_id: uuid.UUID, ctx: ClientsReader) -> Response:
    """The sync-status fragment (HTMX polls it while a backfill runs)."""
    web = await org_shell(request, ctx, "clients")
    client = await clients.get_client(ctx.session, ctx.org_id, client_id)
    conns = await connections.list_connections(ctx.session, ctx.org_id, client_id)
    return render(request, "client/_connections_status.html", {
        "web": web, "client": client, "connections": conns,
        "progress": {c.id: connections.backfill_progress(c) for c in conns},
        "syncing": any(c.backfill_status == "running" for c in conns)})
