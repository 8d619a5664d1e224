"""/orgs/{org_id}/clients/{client_id}/credentials: connect, inspect (masked) and remove platform keys."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, status
from fastapi.responses import JSONResponse, Response

from omnify.auth.deps import OrgContext, require
from omnify.auth.permissions import Permission
from omnify.core.deps import SettingsDep
from omnify.core.pagination import Page, PageParams, fields_param, page_params, page_response
from omnify.credentials import service
from omnify.credentials.keys import keyrings_for
from omnify.credentials.models import PlatformCredential
from omnify.credentials.platforms import Platform
from omnify.credentials.schemas import CredentialIn, CredentialOut

router = APIRouter(tags=["credentials"])

BASE = "/orgs/{org_id}/clients/{client_id}/credentials"
Reader = Annotated[OrgContext, Depends(require(Permission.CLIENTS_READ))]
Writer = Annotated[OrgContext, Depends(require(Permission.CREDENTIALS_WRITE))]


def credential_out(row: PlatformCredential) -> dict[str, Any]:
    return CredentialOut(
        id=row.id, client_id=row.client_id, platform=Platform(row.platform), account_id=row.account_id,
        hints={str(k): str(v) for k, v in row.hints.items()}, scopes=[str(s) for s in row.scopes],
        expires_at=row.expires_at, status=service.status_of(row), last_verified_at=row.last_verified_at,
        last_error=row.last_error, created_at=row.created_at, updated_at=row.updated_at,
    ).model_dump(mode="json")


@router.get(BASE, response_model=Page[CredentialOut])
async def list_credentials(
    client_id: uuid.UUID, ctx: Reader,
    paging: Annotated[PageParams, Depends(page_params)], fields: Annotated[set[str] | None, Depends(fields_param)],
) -> Any:
    rows = await service.list_credentials(ctx.session, ctx.org_id, client_id, paging)
    return page_response(CredentialOut, rows, paging, fields, dump=credential_out)


@router.put(BASE + "/{platform}", response_model=CredentialOut,
            responses={201: {"model": CredentialOut, "description": "Connected for the first time."}})
async def put_credential(
    client_id: uuid.UUID, platform: Platform, body: CredentialIn, ctx: Writer, settings: SettingsDep
) -> Any:
    """Store (or replace) the secrets; they are encrypted at once and never returned."""
    row, created = await service.put_credential(ctx.session, keyrings_for(settings), ctx.org_id, ctx.actor,
                                                client_id, platform, body)
    return JSONResponse(credential_out(row), status_code=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


@router.get(BASE + "/{platform}", response_model=CredentialOut)
async def get_credential(client_id: uuid.UUID, platform: Platform, ctx: Reader) -> Any:
    return credential_out(await service.get_credential(ctx.session, ctx.org_id, client_id, platform))


@router.delete(BASE + "/{platform}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_credential(client_id: uuid.UUID, platform: Platform, ctx: Writer) -> Response:
    await service.delete_credential(ctx.session, ctx.org_id, ctx.actor, client_id, platform)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
