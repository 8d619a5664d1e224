"""GET /orgs/{org_id}/audit: the organization's audit trail (admins and owners)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from omnify.audit import service
from omnify.audit.schemas import AuditEntryOut
from omnify.auth.deps import OrgContext, require
from omnify.auth.permissions import Permission
from omnify.core.errors import UnprocessableEntity
from omnify.core.pagination import Page, PageParams, fields_param, page_params, page_response

router = APIRouter(tags=["audit"])


@router.get("/orgs/{org_id}/audit", response_model=Page[AuditEntryOut])
async def list_audit(
    ctx: Annotated[OrgContext, Depends(require(Permission.AUDIT_READ))],
    paging: Annotated[PageParams, Depends(page_params)],
    fields: Annotated[set[str] | None, Depends(fields_param)],
    action: Annotated[str | None, Query(max_length=80, description="Exact action, e.g. `auth.login`.")] = None,
    action_prefix: Annotated[str | None, Query(max_length=80, description="e.g. `member.`")] = None,
    actor_type: Annotated[str | None, Query(pattern="^(user|api_key|system)$")] = None,
    actor_id: Annotated[str | None, Query(max_length=64)] = None,
    target_type: Annotated[str | None, Query(max_length=60)] = None,
    target_id: Annotated[str | None, Query(max_length=64)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Any:
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise UnprocessableEntity(f"`{name}` needs a timezone, e.g. 2026-01-01T00:00:00Z.")
    filters = {"action": action, "action_prefix": action_prefix, "actor_type": actor_type, "actor_id": actor_id,
               "target_type": target_type, "target_id": target_id, "since": since, "until": until}
    rows = await service.list_entries(ctx.session, ctx.org_id, paging, filters)
    return page_response(AuditEntryOut, rows, paging, fields)
