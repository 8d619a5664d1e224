"""Clients: the list (search, status, onboarding progress), create, archive and restore."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from omnify.clients import service as clients
from omnify.clients.models import ClientStatus
from omnify.clients.schemas import ClientCreateIn
from omnify.core.errors import AppError
from omnify.core.pagination import PageParams, page_params, paginate_rows
from omnify.onboarding import service as onboarding
from omnify.web.deps import ClientsReader, ClientsWriter, csrf_guard, org_shell, roll_back
from omnify.web.forms import app_error_fields, form_data, parse
from omnify.web.templating import render

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf_guard)])
BASE = "/orgs/{org_id}/clients"
Paging = Annotated[PageParams, Depends(page_params)]


async def _list(request: Request, ctx: Any, paging: PageParams, q: str | None, status: ClientStatus | None,
                archived: bool, *, errors: dict[str, str] | None = None, values: dict[str, str] | None = None,
                http_status: int = 200) -> Response:
    rows = await clients.list_clients(ctx.session, ctx.org_id, paging, search=q or None, status=status,
                                      include_archived=archived or status == ClientStatus.ARCHIVED)
    items, next_cursor = paginate_rows(rows, paging, lambda c: (c.created_at, c.id))
    progress = {c.id: await onboarding.get_progress(ctx.session, ctx.org_id, c.id) for c in items}
    return render(request, "clients/list.html", {
        "web": await org_shell(request, ctx, "clients"), "clients": items, "progress": progress, "q": q or "",
        "status": status.value if status else "", "archived": archived, "next_cursor": next_cursor,
        "statuses": list(ClientStatus), "errors": errors or {}, "values": values or {}}, status=http_status)


@router.get(BASE)
async def client_list(
    request: Request, ctx: ClientsReader, paging: Paging,
    q: Annotated[str | None, Query(max_length=200)] = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
    archived: bool = False,
) -> Response:
    chosen = ClientStatus(status) if status in {s.value for s in ClientStatus} else None
    return await _list(request, ctx, paging, q, chosen, archived)


@router.post(BASE)
async def create_client(request: Request, ctx: ClientsWriter) -> Response:
    data = await form_data(request)
    body, errors = parse(ClientCreateIn, data)
    if body is not None:
        try:
            client = await clients.create_client(ctx.session, ctx.org_id, ctx.actor, body)
        except AppError as exc:
            await roll_back(request, ctx.session, ctx.principal.user)
            errors = app_error_fields(exc) or {"company_name": exc.detail}
        else:
            return RedirectResponse(f"/orgs/{ctx.org_id}/clients/{client.id}/onboarding?flash=client-created",
                                    status_code=303)
    return await _list(request, ctx, PageParams(limit=25), None, None, False, errors=errors, values=data,
                       http_status=422)


@router.get(BASE + "/{client_id}")
async def client_home(client_id: uuid.UUID, ctx: ClientsReader) -> Response:
    """The client's page: its dashboard once onboarded, the onboarding wizard before."""
    progress = await onboarding.get_progress(ctx.session, ctx.org_id, client_id)
    page = "dashboard" if progress.completed_at is not None or progress.all_done else "onboarding"
    return RedirectResponse(f"/orgs/{ctx.org_id}/clients/{client_id}/{page}", status_code=303)


@router.post(BASE + "/{client_id}/archive")
async def archive(client_id: uuid.UUID, ctx: ClientsWriter) -> Response:
    await clients.archive_client(ctx.session, ctx.org_id, ctx.actor, client_id)
    return RedirectResponse(f"/orgs/{ctx.org_id}/clients?archived=true&flash=client-archived", status_code=303)


@router.post(BASE + "/{client_id}/restore")
async def restore(client_id: uuid.UUID, ctx: ClientsWriter) -> Response:
    await clients.restore_client(ctx.session, ctx.org_id, ctx.actor, client_id)
    return RedirectResponse(f"/orgs/{ctx.org_id}/clients?flash=client-restored", status_code=303)
