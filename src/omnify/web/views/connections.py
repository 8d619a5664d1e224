"""Connections per client: every platform with its status, accounts, last runs (rows and
errors), connect and reconnect through the platform's real OAuth consent (the API's
``/connections/{platform}/authorize``, which accepts the browser session), the account
picker the OAuth callback lands on, and the backfill's progress, polled by HTMX.

All of it over :mod:`omnify.connections.service` and :mod:`omnify.sync.service`, so a
viewer is refused here by the same gate as on the API.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from omnify.clients import service as clients
from omnify.connections import service as connections
from omnify.connections.models import BackfillStatus, Connection
from omnify.connections.router import Factory
from omnify.connections.schemas import AccountSelectionIn
from omnify.core.deps import SettingsDep
from omnify.core.errors import AppError, NotFound
from omnify.core.pagination import PageParams
from omnify.credentials.platforms import Platform as CredentialPlatform
from omnify.integrations.base import Platform
from omnify.sync import service as sync
from omnify.web.deps import ClientsReader, ConnectionsManager, csrf_guard, org_shell, roll_back
from omnify.web.forms import app_error_fields, form_lists, validation_errors
from omnify.web.templating import render

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf_guard)])
BASE = "/orgs/{org_id}/clients/{client_id}/connections"
#: Runs listed per connection.
LAST_RUNS = 5
#: While a backfill is pending or running, the progress fragment asks again this often.
POLL_SECONDS = 2


def in_progress(conn: Connection) -> bool:
    return conn.backfill_status in (BackfillStatus.PENDING.value, BackfillStatus.RUNNING.value)


def authorize_url(org_id: uuid.UUID, client_id: uuid.UUID, platform: str) -> str:
    """The API's start of the OAuth flow (a browser GET with the session cookie)."""
    return f"/api/v1/orgs/{org_id}/clients/{client_id}/connections/{platform}/authorize"


async def _find(ctx: Any, client_id: uuid.UUID, platform: CredentialPlatform) -> Connection:
    return await connections.get_connection(ctx.session, ctx.org_id, client_id, Platform(platform.value))


@router.get(BASE)
async def connection_list(request: Request, client_id: uuid.UUID, ctx: ClientsReader) -> Response:
    web = await org_shell(request, ctx, "clients")
    client = await clients.get_client(ctx.session, ctx.org_id, client_id)
    conns = {c.platform: c for c in await connections.list_connections(ctx.session, ctx.org_id, client_id)}
    runs = {p: list(await sync.list_runs(ctx.session, ctx.org_id, client_id, Platform(p), PageParams(limit=LAST_RUNS)))
            for p in conns}
    rows = [{"platform": p.value, "conn": conns.get(p.value), "runs": runs.get(p.value, [])[:LAST_RUNS],
             "authorize": authorize_url(ctx.org_id, client_id, p.value),
             "progress": connections.backfill_progress(conns[p.value]) if p.value in conns else None,
             "polling": p.value in conns and in_progress(conns[p.value])}
            for p in CredentialPlatform]
    return render(request, "client/connections.html", {
        "web": web, "client": client, "rows": rows, "poll": POLL_SECONDS})


async def _connected_page(request: Request, ctx: Any, client_id: uuid.UUID, platform: CredentialPlatform, *,
                          errors: dict[str, str] | None = None, status: int = 200) -> Response:
    web = await org_shell(request, ctx, "clients")
    client = await clients.get_client(ctx.session, ctx.org_id, client_id)
    conn = await _find(ctx, client_id, platform)
    selected = {str(a) for a in conn.selected_account_ids}
    accounts = [{"id": str(a.get("id")), "name": str(a.get("name") or a.get("id")),
                 "currency": str(a.get("currency") or ""), "timezone": str(a.get("timezone") or ""),
                 "selected": str(a.get("id")) in selected}
                for a in conn.available_accounts if isinstance(a, dict)]
    return render(request, "client/connected.html", {
        "web": web, "client": client, "conn": conn, "accounts": accounts, "errors": errors or {},
        "progress": connections.backfill_progress(conn), "polling": in_progress(conn), "poll": POLL_SECONDS,
        "authorize": authorize_url(ctx.org_id, client_id, platform.value)}, status=status)


@router.get(BASE + "/{platform}/connected")
async def connected(request: Request, client_id: uuid.UUID, platform: CredentialPlatform,
                    ctx: ClientsReader) -> Response:
    """Where the OAuth callback sends the browser: pick the accounts, watch the backfill."""
    return await _connected_page(request, ctx, client_id, platform)


@router.post(BASE + "/{platform}/accounts")
async def save_accounts(request: Request, client_id: uuid.UUID, platform: CredentialPlatform,
                        ctx: ConnectionsManager, next_page: Annotated[str | None, Query(alias="next", max_length=20)]
                        = None) -> Response:
    from pydantic import ValidationError

    chosen = (await form_lists(request)).get("account_ids", [])
    try:
        body = AccountSelectionIn(account_ids=chosen)
        await connections.select_accounts(ctx.session, ctx.org_id, ctx.actor, client_id, Platform(platform.value),
                                          body.account_ids)
    except ValidationError as exc:
        errors = validation_errors(exc)
        if not chosen:
            errors = {"account_ids": "Pick at least one account to sync."}
        return await _connected_page(request, ctx, client_id, platform, errors=errors, status=422)
    except AppError as exc:
        if exc.status >= 500 or isinstance(exc, NotFound):
            raise
        await roll_back(request, ctx.session, ctx.principal.user)
        return await _connected_page(request, ctx, client_id, platform, status=exc.status,
                                     errors=app_error_fields(exc) or {"account_ids": exc.detail})
    back = (f"/orgs/{ctx.org_id}/clients/{client_id}/onboarding" if next_page == "onboarding"
            else f"/orgs/{ctx.org_id}/clients/{client_id}/connections/{platform.value}/connected")
    return RedirectResponse(back + "?flash=accounts-saved", status_code=303)


@router.get(BASE + "/{platform}/progress")
async def progress(request: Request, client_id: uuid.UUID, platform: CredentialPlatform,
                   ctx: ClientsReader) -> Response:
    """The backfill fragment; it stops polling itself once the backfill is over."""
    conn = await _find(ctx, client_id, platform)
    return render(request, "client/_backfill.html", {
        "conn": conn, "client_id": client_id, "org_id": ctx.org_id, "progress": connections.backfill_progress(conn),
        "polling": in_progress(conn), "poll": POLL_SECONDS})


@router.post(BASE + "/{platform}/disconnect")
async def disconnect(client_id: uuid.UUID, platform: CredentialPlatform, ctx: ConnectionsManager,
                     settings: SettingsDep, factory: Factory) -> Response:
    await connections.disconnect(ctx.session, settings, factory, ctx.org_id, ctx.actor, client_id,
                                 Platform(platform.value))
    return RedirectResponse(f"/orgs/{ctx.org_id}/clients/{client_id}/connections?flash=disconnected",
                            status_code=303)
