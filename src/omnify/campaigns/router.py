"""/orgs/{org_id}/clients/{client_id}/campaign-ideas: ideas and their review workflow."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, status
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from omnify.auth.deps import OrgContext, require
from omnify.auth.permissions import Permission
from omnify.campaigns import service
from omnify.campaigns.models import CampaignIdea, IdeaStatus
from omnify.campaigns.schemas import IdeaCreateIn, IdeaOut, IdeaStatusIn, IdeaUpdateIn
from omnify.core.pagination import Page, PageParams, fields_param, page_params, page_response

router = APIRouter(tags=["campaign ideas"])

BASE = "/orgs/{org_id}/clients/{client_id}/campaign-ideas"
Reader = Annotated[OrgContext, Depends(require(Permission.CLIENTS_READ))]
Writer = Annotated[OrgContext, Depends(require(Permission.CLIENTS_WRITE))]


def idea_out(idea: CampaignIdea, attached: list[uuid.UUID]) -> dict[str, Any]:
    return IdeaOut(
        id=idea.id, client_id=idea.client_id, title=idea.title, description=idea.description,
        objective=idea.objective, target_audience=idea.target_audience, platforms=idea.platforms,
        budget_amount=idea.budget_amount, budget_currency=idea.budget_currency, start_date=idea.start_date,
        end_date=idea.end_date, attached_file_ids=attached, status=IdeaStatus(idea.status),
        allowed_transitions=service.allowed_transitions(idea.status), status_changed_at=idea.status_changed_at,
        created_at=idea.created_at, updated_at=idea.updated_at,
    ).model_dump(mode="json")


async def _one(session: AsyncSession, org_id: uuid.UUID, idea: CampaignIdea) -> dict[str, Any]:
    attached = await service.attachments_of(session, org_id, [idea])
    return idea_out(idea, attached.get(idea.id, []))


@router.get(BASE, response_model=Page[IdeaOut])
async def list_ideas(
    client_id: uuid.UUID, ctx: Reader,
    paging: Annotated[PageParams, Depends(page_params)], fields: Annotated[set[str] | None, Depends(fields_param)],
    status_filter: Annotated[IdeaStatus | None, Query(alias="status")] = None,
) -> Any:
    rows = await service.list_ideas(ctx.session, ctx.org_id, client_id, paging, status_filter)
    attached = await service.attachments_of(ctx.session, ctx.org_id, rows[: paging.limit])
    return page_response(IdeaOut, rows, paging, fields, dump=lambda i: idea_out(i, attached.get(i.id, [])))


@router.post(BASE, status_code=status.HTTP_201_CREATED, response_model=IdeaOut)
async def create_idea(client_id: uuid.UUID, body: IdeaCreateIn, ctx: Writer) -> Any:
    idea = await service.create_idea(ctx.session, ctx.org_id, ctx.actor, client_id, body)
    return await _one(ctx.session, ctx.org_id, idea)


@router.get(BASE + "/{idea_id}", response_model=IdeaOut)
async def get_idea(client_id: uuid.UUID, idea_id: uuid.UUID, ctx: Reader) -> Any:
    idea = await service.get_idea(ctx.session, ctx.org_id, client_id, idea_id)
    return await _one(ctx.session, ctx.org_id, idea)


@router.patch(BASE + "/{idea_id}", response_model=IdeaOut)
async def update_idea(client_id: uuid.UUID, idea_id: uuid.UUID, body: IdeaUpdateIn, ctx: Writer) -> Any:
    idea = await service.update_idea(ctx.session, ctx.org_id, ctx.actor, client_id, idea_id, body)
    return await _one(ctx.session, ctx.org_id, idea)


@router.post(BASE + "/{idea_id}/status", response_model=IdeaOut,
             responses={409: {"description": "The workflow does not allow this transition."}})
async def change_status(client_id: uuid.UUID, idea_id: uuid.UUID, body: IdeaStatusIn, ctx: Writer) -> Any:
    """Move the idea through draft -> in_review -> approved -> launched -> archived."""
    idea = await service.change_status(ctx.session, ctx.org_id, ctx.actor, client_id, idea_id, body.status)
    return await _one(ctx.session, ctx.org_id, idea)


@router.delete(BASE + "/{idea_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_idea(client_id: uuid.UUID, idea_id: uuid.UUID, ctx: Writer) -> Response:
    await service.delete_idea(ctx.session, ctx.org_id, ctx.actor, client_id, idea_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
