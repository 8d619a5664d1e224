"""The organization's overview: every client with its last 30 days, and what waits."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from omnify.analytics import service as analytics
from omnify.analytics.kpis import Dimension, Granularity
from omnify.clients import service as clients
from omnify.core.db import utcnow
from omnify.core.deps import SettingsDep
from omnify.core.pagination import PageParams
from omnify.recommendations import service as recommendations
from omnify.recommendations.repository import Filters
from omnify.web.deps import ClientsReader, OrgReader, csrf_guard, org_shell
from omnify.web.templating import render

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf_guard)])

OVERVIEW_CLIENTS = 12


@router.get("/orgs/{org_id}")
async def overview(request: Request, ctx: ClientsReader, settings: SettingsDep) -> Response:
    web = await org_shell(request, ctx, "overview")
    rows = await clients.list_clients(ctx.session, ctx.org_id, PageParams(limit=OVERVIEW_CLIENTS))
    counts = await recommendations.open_counts(ctx.session, ctx.org_id)
    since, until = analytics.default_range(utcnow().date())
    summary: list[dict[str, Any]] = []
    for client in rows[:OVERVIEW_CLIENTS]:
        report, _hit = await analytics.report(ctx.session, settings, ctx.org_id, client.id, analytics.Query(
            since, until, Granularity.TOTAL, Dimension.NONE, compare=True, top=1))
        summary.append({"client": client, "open": counts.get(client.id, 0), "currencies": report["currencies"]})
    waiting = await recommendations.list_recommendations(ctx.session, ctx.org_id, PageParams(limit=5),
                                                         Filters(status="open"))
    names = {c.id: c.company_name for c in rows}
    return render(request, "orgs/overview.html", {
        "web": web, "summary": summary, "more": len(rows) > OVERVIEW_CLIENTS, "waiting": waiting[:5],
        "open_total": sum(counts.values()), "names": names, "since": since, "until": until,
        "previous_days": (until - since + timedelta(days=1)).days})


@router.get("/orgs/{org_id}/settings")
async def settings_index(ctx: OrgReader) -> Response:
    """Settings open on the team page (everyone can see the team)."""
    return RedirectResponse(f"/orgs/{ctx.org_id}/settings/team", status_code=303)
