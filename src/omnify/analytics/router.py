"""/orgs/{org_id}/clients/{client_id}/analytics: KPI rollups, period over period, per currency."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from omnify.analytics import service
from omnify.analytics.kpis import Dimension, Granularity
from omnify.analytics.schemas import AnalyticsOut
from omnify.auth.deps import OrgContext, require
from omnify.auth.permissions import Permission
from omnify.core.db import utcnow
from omnify.core.deps import SettingsDep

router = APIRouter(tags=["analytics"])


@router.get("/orgs/{org_id}/clients/{client_id}/analytics", response_model=AnalyticsOut)
async def client_analytics(
    client_id: uuid.UUID,
    ctx: Annotated[OrgContext, Depends(require(Permission.CLIENTS_READ, defer_limits=True))],
    settings: SettingsDep,
    since: Annotated[date | None, Query(description="First day (inclusive); default: 30 days before `until`.")] = None,
    until: Annotated[date | None, Query(description="Last day (inclusive); default: yesterday (UTC).")] = None,
    granularity: Annotated[Granularity, Query()] = Granularity.DAY,
    group_by: Annotated[Dimension, Query()] = Dimension.NONE,
    compare: Annotated[bool, Query(description="Add the previous period of equal length.")] = True,
    top: Annotated[int, Query(ge=1, le=1000, description="Keys (campaigns, ads) with the most spend to list.")] = 100,
) -> Any:
    """Money is integer minor units per currency; ratios are recomputed from sums."""
    d_since, d_until = service.default_range(utcnow().date())
    until = until or (d_until if since is None or since <= d_until else since)
    since = since or (until - (d_until - d_since))
    body, hit = await service.report_json(ctx.session, settings, ctx.org_id, client_id,
                                          service.Query(since, until, granularity, group_by, compare, top),
                                          limits=ctx.limits)
    return Response(body, media_type="application/json",
                    headers={"X-Cache": "hit" if hit else "miss", "Cache-Control": "private, max-age=0"})
