"""/orgs/{org_id}/clients/{client_id}/brain-runs: run the brain now, and the run history."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, status

from omnify.auth.deps import OrgContext, require
from omnify.auth.permissions import Permission
from omnify.brain_runs import service
from omnify.brain_runs.models import RunTrigger
from omnify.brain_runs.schemas import BrainRunOut
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
