"""/orgs/{org_id}/clients: client profiles (CRUD, search, soft delete and restore)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, status
from fastapi.responses import Response

from omnify.auth.deps import OrgContext, require
from omnify.auth.permissions import Permission
from omnify.clients import service
from omnify.clients.models import ClientProfile, ClientStatus
from omnify.clients.schemas import ClientCreateIn, ClientOut, ClientUpdateIn
from omnify.core.pagination import Page, PageParams, fields_param, page_params, page_response

router = APIRouter(tags=["clients"])

BASE = "/orgs/{org_id}/clients"
Reader = Annotated[OrgContext, Depends(require(Permission.CLIENTS_READ))]
Writer = Annotated[OrgContext, Depends(require(Permission.CLIENTS_WRITE))]


def client_out(c: ClientProfile) -> dict[str, Any]:
    return ClientOut.model_validate({
        "id": c.id, "company_name": c.company_name, "industry": c.industry, "website": c.website,
        "description": c.description, "contact_name": c.contact_name, "contact_email": c.contact_email,
        "contact_phone": c.contact_phone, "timezone": c.timezone, "currency": c.currency, "status": c.status,
        "brand": c.brand or {}, "tags": c.tags or [], "metadata": c.extra or {}, "archived_at": c.archived_at,
        "purge_after": service.purge_after(c), "created_at": c.created_at, "updated_at": c.updated_at,
    }).model_dump(mode="json")


@router.get(BASE, response_model=Page[ClientOut])
async def list_clients(
    ctx: Reader,
    paging: Annotated[PageParams, Depends(page_params)],
    fields: Annotated[set[str] | None, Depends(fields_param)],
    q: Annotated[str | None, Query(max_length=200, description="Search in company names (case-insensitive).")] = None,
    status_filter: Annotated[ClientStatus | None, Query(alias="status")] = None,
    industry: Annotated[str | None, Query(max_length=100, description="Exact industry.")] = None,
    include_archived: Annotated[bool, Query(description="Also list archived (restorable) clients.")] = False,
) -> Any:
    rows = await service.list_clients(ctx.session, ctx.org_id, paging, search=q, status=status_filter,
                                      industry=industry, include_archived=include_archived)
    return page_response(ClientOut, rows, paging, fields, dump=client_out)


@router.post(BASE, status_code=status.HTTP_201_CREATED, response_model=ClientOut,
             responses={402: {"description": "Client quota reached."}, 409: {"description": "Name in use."}})
async def create_client(body: ClientCreateIn, ctx: Writer) -> Any:
    return client_out(await service.create_client(ctx.session, ctx.org_id, ctx.actor, body))


@router.get(BASE + "/{client_id}", response_model=ClientOut)
async def get_client(client_id: uuid.UUID, ctx: Reader) -> Any:
    return client_out(await service.get_client(ctx.session, ctx.org_id, client_id))


@router.patch(BASE + "/{client_id}", response_model=ClientOut)
async def update_client(client_id: uuid.UUID, body: ClientUpdateIn, ctx: Writer) -> Any:
    return client_out(await service.update_client(ctx.session, ctx.org_id, ctx.actor, client_id, body))


@router.delete(BASE + "/{client_id}", status_code=status.HTTP_204_NO_CONTENT)
async def archive_client(client_id: uuid.UUID, ctx: Writer) -> Response:
    """Soft delete: restorable for 30 days (see `purge_after`), then purged with its files."""
    await service.archive_client(ctx.session, ctx.org_id, ctx.actor, client_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(BASE + "/{client_id}/restore", response_model=ClientOut)
async def restore_client(client_id: uuid.UUID, ctx: Writer) -> Any:
    return client_out(await service.restore_client(ctx.session, ctx.org_id, ctx.actor, client_id))
