"""/orgs/{org_id}/clients/{client_id}/connections/{platform}/runs|sync: sync history and "sync now"."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, status
from fastapi.responses import JSONResponse

from omnify.auth.deps import OrgContext, require
from omnify.auth.permissions import Permission
from omnify.connections.router import connection_out
from omnify.connections.schemas import ConnectionOut
from omnify.core.pagination import Page, PageParams, fields_param, page_params, page_response
from omnify.credentials.platforms import Platform as CredentialPlatform
from omnify.integrations.base import Platform
from omnify.sync import service
from omnify.sync.schemas import SyncRunOut, run_out

router = APIRouter(tags=["sync"])

BASE = "/orgs/{org_id}/clients/{client_id}/connections/{platform}"
Reader = Annotated[OrgContext, Depends(require(Permission.CLIENTS_READ))]
Manager = Annotated[OrgContext, Depends(require(Permission.CONNECTIONS_MANAGE))]


@router.get(BASE + "/runs", response_model=Page[SyncRunOut])
async def list_runs(
    client_id: uuid.UUID, platform: CredentialPlatform, ctx: Reader,
    paging: Annotated[PageParams, Depends(page_params)], fields: Annotated[set[str] | None, Depends(fields_param)],
) -> Any:
    """Sync runs of the connection, newest first: mode, status, rows read/written, error."""
    rows = await service.list_runs(ctx.session, ctx.org_id, client_id, Platform(platform.value), paging)
    return page_response(SyncRunOut, rows, paging, fields, dump=run_out)


@router.post(BASE + "/sync", status_code=status.HTTP_202_ACCEPTED, response_model=ConnectionOut)
async def sync_now(client_id: uuid.UUID, platform: CredentialPlatform, ctx: Manager) -> Any:
    """Queue an incremental sync (or the pending backfill) now."""
    conn = await service.request_sync(ctx.session, ctx.org_id, ctx.actor, client_id, Platform(platform.value))
    return JSONResponse(connection_out(conn), status_code=status.HTTP_202_ACCEPTED)
