"""/orgs/{org_id}/clients/{client_id}/privacy-requests: what shops asked us to export or erase.

Compliance records holding (behind the export) a shopper's personal data: admins and
owners only, and every export link handed out is audited.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from omnify.auth.deps import OrgContext, require
from omnify.auth.permissions import Permission
from omnify.core.deps import SettingsDep
from omnify.core.pagination import Page, PageParams, fields_param, page_params, page_response
from omnify.files.schemas import DownloadOut
from omnify.privacy import service
from omnify.privacy.models import PrivacyTopic, ShopPrivacyRequest
from omnify.privacy.schemas import PrivacyRequestOut

router = APIRouter(tags=["privacy"])

BASE = "/orgs/{org_id}/clients/{client_id}/privacy-requests"
Compliance = Annotated[OrgContext, Depends(require(Permission.AUDIT_READ))]


def _out(row: ShopPrivacyRequest) -> dict[str, Any]:
    return PrivacyRequestOut.model_validate(
        {**{c: getattr(row, c) for c in PrivacyRequestOut.model_fields if c != "has_export"},
         "has_export": row.storage_key is not None}).model_dump(mode="json")


@router.get(BASE, response_model=Page[PrivacyRequestOut])
async def list_privacy_requests(
    client_id: uuid.UUID, ctx: Compliance, paging: Annotated[PageParams, Depends(page_params)],
    fields: Annotated[set[str] | None, Depends(fields_param)],
    topic: Annotated[PrivacyTopic | None, Query(description="Only this Shopify topic.")] = None,
) -> Any:
    """Newest first: Shopify's customers/data_request, customers/redact and shop/redact."""
    rows = await service.list_requests(ctx.session, ctx.org_id, client_id, paging, topic)
    return page_response(PrivacyRequestOut, rows, paging, fields, dump=_out)


@router.get(BASE + "/{request_id}", response_model=PrivacyRequestOut)
async def get_privacy_request(client_id: uuid.UUID, request_id: uuid.UUID, ctx: Compliance) -> Any:
    return _out(await service.get_request(ctx.session, ctx.org_id, client_id, request_id))


@router.get(BASE + "/{request_id}/export", response_model=DownloadOut)
async def privacy_export(client_id: uuid.UUID, request_id: uuid.UUID, ctx: Compliance, settings: SettingsDep) -> Any:
    """A signed link to the JSON export of a customers/data_request, for the merchant to
    send to the shopper who asked."""
    link = await service.export_link(ctx.session, settings, ctx.actor, ctx.org_id, client_id, request_id)
    return DownloadOut(url=link.url, expires_at=link.expires_at, filename=link.filename,
                       content_type=link.content_type)
