"""/orgs/{org_id}/clients/{client_id}/brain-runs: run the brain now, and the run history."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, status

from omnify.auth.deps import OrgContext, require
from omnify.auth.permissions import Permission
from omnify.brain_runs import service
from omnify.brain_runs.models import RunTrigger
from omnify.brain_runs.schemas import BrainRunOut, CalendarIn, CalendarOut
from omnify.core.db import utcnow
from omnify.core.deps import SettingsDep
from omnify.core.pagination import Page, PageParams, fields_param, page_params, page_response

router = APIRouter(tags=["brain"])

BASE = "/orgs/{org_id}/clients/{client_id}/brain-runs"


@router.post(BASE, status_code=status.HTTP_201_CREATED, response_model=BrainRunOut)
async def run_now(
    client_id: uuid.UUID, ctx: Annotated[OrgContext, Depends(require(Permission.ACTIONS_APPLY))],
    settings: SettingsDep,
) -> Any:
    """Run the brain on the client's synced data now (well under a second per client)."""
    run = await service.run_for_client(ctx.session, ctx.org_id, client_id, RunTrigger.MANUAL, settings=settings)
    return BrainRunOut.model_validate(run).model_dump(mode="json")


@router.get(BASE, response_model=Page[BrainRunOut])
async def list_runs(
    client_id: uuid.UUID, ctx: Annotated[OrgContext, Depends(require(Permission.RECOMMENDATIONS_READ))],
    paging: Annotated[PageParams, Depends(page_params)], fields: Annotated[set[str] | None, Depends(fields_param)],
) -> Any:
    rows = await service.list_runs(ctx.session, ctx.org_id, client_id, paging)
    return page_response(BrainRunOut, rows, paging, fields)


CALENDAR = "/orgs/{org_id}/clients/{client_id}/calendar"
YearQuery = Annotated[int | None, Query(ge=2000, le=2100, description="Year of the listed days (default: this year)")]


@router.get(CALENDAR, response_model=CalendarOut)
async def get_calendar(
    client_id: uuid.UUID, ctx: Annotated[OrgContext, Depends(require(Permission.RECOMMENDATIONS_READ))],
    year: YearQuery = None,
) -> Any:
    """The client's market days (country holidays and retail events, plus its own), as the brain uses them."""
    out = await service.get_calendar(ctx.session, ctx.org_id, client_id, year or utcnow().year)
    return out.model_dump(mode="json")


@router.put(CALENDAR, response_model=CalendarOut)
async def put_calendar(
    client_id: uuid.UUID, body: CalendarIn, ctx: Annotated[OrgContext, Depends(require(Permission.CLIENTS_WRITE))],
    year: YearQuery = None,
) -> Any:
    """Set the client's country and its own added/removed market days (replaces the previous choice)."""
    out = await service.put_calendar(ctx.session, ctx.org_id, client_id, body, year or utcnow().year)
    return out.model_dump(mode="json")
