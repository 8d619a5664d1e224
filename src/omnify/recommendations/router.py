"""/orgs/{org_id}/recommendations: list (filters, cursor pages), detail, dismiss."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime

from omnify.auth.deps import OrgContext, require
from omnify.auth.permissions import Permission
from omnify.core.pagination import Page, PageParams, fields_param, page_params, page_response
from omnify.recommendations import service
from omnify.recommendations.models import RecommendationStatus
from omnify.recommendations.repository import Filters
from omnify.recommendations.schemas import DismissIn, RecommendationOut, recommendation_out

router = APIRouter(tags=["recommendations"])

BASE = "/orgs/{org_id}/recommendations"
Reader = Annotated[OrgContext, Depends(require(Permission.RECOMMENDATIONS_READ))]
Applier = Annotated[OrgContext, Depends(require(Permission.ACTIONS_APPLY))]


@router.get(BASE, response_model=Page[RecommendationOut])
async def list_recommendations(
    ctx: Reader,
    paging: Annotated[PageParams, Depends(page_params)],
    fields: Annotated[set[str] | None, Depends(fields_param)],
    client_id: Annotated[uuid.UUID | None, Query()] = None,
    status: Annotated[RecommendationStatus | None, Query()] = None,
    module: Annotated[str | None, Query(pattern=r"^[a-z_]{1,32}$")] = None,
    kind: Annotated[str | None, Query(pattern=r"^[a-z_]{1,40}$")] = None,
    platform: Annotated[str | None, Query(pattern=r"^[a-z_]{1,32}$")] = None,
    min_confidence: Annotated[float | None, Query(ge=0, le=1)] = None,
    created_since: Annotated[AwareDatetime | None, Query()] = None,
) -> Any:
    """Newest first. ``status=open`` is the to-do list; money is in minor units."""
    filters = Filters(client_id=client_id, status=status.value if status else None, module=module, kind=kind,
                      platform=platform, min_confidence=min_confidence, created_since=created_since)
    rows = await service.list_recommendations(ctx.session, ctx.org_id, paging, filters)
    return page_response(RecommendationOut, rows, paging, fields, dump=recommendation_out)


@router.get(BASE + "/{recommendation_id}", response_model=RecommendationOut)
async def get_recommendation(recommendation_id: uuid.UUID, ctx: Reader) -> Any:
    return recommendation_out(await service.get(ctx.session, ctx.org_id, recommendation_id))


@router.post(BASE + "/{recommendation_id}/dismiss", response_model=RecommendationOut)
async def dismiss_recommendation(recommendation_id: uuid.UUID, body: DismissIn, ctx: Applier) -> Any:
    """Close it without acting; later runs will not reopen it."""
    row = await service.dismiss(ctx.session, ctx.org_id, ctx.actor, recommendation_id, body.reason)
    return recommendation_out(row)
