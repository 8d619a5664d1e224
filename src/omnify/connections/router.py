"""/orgs/{org_id}/clients/{client_id}/connections: connect a platform, pick accounts, test, disconnect.

The callback (``/connections/{platform}/callback``) is the one route without a bearer
token: the platform sends the user's browser there, and the signed state in the query
string says who started the flow and for which organization and client.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import JSONResponse, RedirectResponse, Response

from omnify.auth.deps import OrgContext, require
from omnify.auth.permissions import Permission
from omnify.connections import service
from omnify.connections.connectors import ConnectorFactory
from omnify.connections.models import BackfillStatus, Connection, ConnectionStatus
from omnify.connections.schemas import (
    AccountOut,
    AccountSelectionIn,
    BackfillOut,
    ConnectionOut,
    ConnectionTestOut,
)
from omnify.core.browser import prefers_html
from omnify.core.deps import SessionDep, SettingsDep, request_meta
from omnify.core.errors import Forbidden
from omnify.credentials.platforms import Platform as CredentialPlatform
from omnify.integrations.base import Platform

router = APIRouter(tags=["connections"])

BASE = "/orgs/{org_id}/clients/{client_id}/connections"
Reader = Annotated[OrgContext, Depends(require(Permission.CLIENTS_READ))]
Manager = Annotated[OrgContext, Depends(require(Permission.CONNECTIONS_MANAGE))]


def connector_factory(request: Request) -> ConnectorFactory:
    """The app's factory (tests and special deployments set ``app.state.connector_factory``)."""
    factory = getattr(request.app.state, "connector_factory", None)
    if factory is None:
        factory = ConnectorFactory(request.app.state.settings)
        request.app.state.connector_factory = factory
    assert isinstance(factory, ConnectorFactory)
    return factory


Factory = Annotated[ConnectorFactory, Depends(connector_factory)]


def connection_out(conn: Connection) -> dict[str, Any]:
    progress = service.backfill_progress(conn)
    selected = {str(a) for a in conn.selected_account_ids}
    accounts = [AccountOut(id=str(a.get("id")), name=str(a.get("name") or ""), currency=str(a.get("currency") or ""),
                           timezone=str(a.get("timezone") or ""), status=str(a.get("status") or ""),
                           selected=str(a.get("id")) in selected)
                for a in conn.available_accounts if isinstance(a, dict)]
    return ConnectionOut(
        id=conn.id, client_id=conn.client_id, platform=CredentialPlatform(conn.platform),
        status=ConnectionStatus(conn.status), shop_domain=conn.shop_domain, accounts=accounts,
        selected_account_ids=[str(a) for a in conn.selected_account_ids], scopes=[str(s) for s in conn.scopes],
        token_expires_at=conn.token_expires_at, connected_at=conn.connected_at,
        disconnected_at=conn.disconnected_at, last_verified_at=conn.last_verified_at, last_error=conn.last_error,
        last_error_code=conn.last_error_code, last_synced_at=conn.last_synced_at,
        last_sync_status=conn.last_sync_status, next_sync_at=conn.next_sync_at,
        backfill=BackfillOut(status=BackfillStatus(conn.backfill_status), days=conn.backfill_days,
                             percent=progress.percent, rows=conn.backfill_rows or 0,
                             units_done=conn.backfill_units_done or 0, units_total=conn.backfill_units_total or 0,
                             started_at=conn.backfill_started_at, finished_at=conn.backfill_finished_at,
                             eta_seconds=progress.eta_seconds),
        created_at=conn.created_at, updated_at=conn.updated_at,
    ).model_dump(mode="json")


def _platform(value: CredentialPlatform) -> Platform:
    return Platform(value.value)


@router.get(BASE, response_model=list[ConnectionOut])
async def list_connections(client_id: uuid.UUID, ctx: Reader) -> Any:
    """Every platform connection of the client (one per platform, at most four)."""
    return [connection_out(c) for c in await service.list_connections(ctx.session, ctx.org_id, client_id)]


@router.get(BASE + "/{platform}/authorize", status_code=status.HTTP_302_FOUND,
            responses={302: {"description": "Redirect to the platform's consent screen."},
                       422: {"description": "Missing or invalid `shop` (Shopify) / platform not configured."}})
async def authorize(
    client_id: uuid.UUID, platform: CredentialPlatform, ctx: Manager, settings: SettingsDep, factory: Factory,
    shop: Annotated[str | None, Query(max_length=255, description="Shopify only: <name>.myshopify.com.")] = None,
) -> Response:
    """Start connecting: answers 302 to the platform with a signed, expiring state (and PKCE
    for Google). The platform sends the browser back to the callback route."""
    user_id = ctx.principal.user_id
    if user_id is None:
        raise Forbidden("Connecting a platform needs a user session, not an API key.", code="user-required")
    url = await service.start_authorization(ctx.session, settings, factory, ctx.org_id, ctx.actor,
                                            user_id, client_id, _platform(platform), shop=shop)
    return RedirectResponse(url, status_code=status.HTTP_302_FOUND, headers={"Cache-Control": "no-store"})


@router.get("/connections/{platform}/callback", response_model=ConnectionOut,
            responses={400: {"description": "Invalid, expired or reused state; denied or failed authorization."}})
async def callback(platform: CredentialPlatform, request: Request, session: SessionDep, settings: SettingsDep,
                   factory: Factory) -> Any:
    """Where the platform sends the user back. Verifies the state, exchanges the code, stores
    the tokens encrypted and answers with the connection and the accounts to pick from (a
    browser navigating here is sent on to the web app's page for the connection)."""
    conn = await service.complete_authorization(session, settings, factory, _platform(platform),
                                                request.query_params.multi_items(), request_meta(request))
    if prefers_html(request):  # a person's browser: on to the page that picks accounts and shows the backfill
        return RedirectResponse(f"/orgs/{conn.org_id}/clients/{conn.client_id}/connections/{platform.value}"
                                "/connected", status_code=status.HTTP_303_SEE_OTHER,
                                headers={"Cache-Control": "no-store"})
    return JSONResponse(connection_out(conn), headers={"Cache-Control": "no-store"})


@router.get(BASE + "/{platform}", response_model=ConnectionOut)
async def get_connection(client_id: uuid.UUID, platform: CredentialPlatform, ctx: Reader) -> Any:
    """Status, chosen accounts and backfill progress (percent, rows, ETA)."""
    return connection_out(await service.get_connection(ctx.session, ctx.org_id, client_id, _platform(platform)))


@router.put(BASE + "/{platform}/accounts", response_model=ConnectionOut)
async def select_accounts(client_id: uuid.UUID, platform: CredentialPlatform, body: AccountSelectionIn,
                          ctx: Manager) -> Any:
    """Choose which ad accounts to sync; newly chosen ones are backfilled."""
    conn = await service.select_accounts(ctx.session, ctx.org_id, ctx.actor, client_id, _platform(platform),
                                         body.account_ids)
    return connection_out(conn)


@router.post(BASE + "/{platform}/test", response_model=ConnectionTestOut)
async def test_connection(client_id: uuid.UUID, platform: CredentialPlatform, ctx: Manager, settings: SettingsDep,
                          factory: Factory) -> Any:
    """Call the platform with the stored authorization; records the outcome on the connection."""
    conn, ok, details = await service.test_connection(ctx.session, settings, factory, ctx.org_id, ctx.actor,
                                                      client_id, _platform(platform))
    return ConnectionTestOut(ok=ok, status=ConnectionStatus(conn.status), last_verified_at=conn.last_verified_at,
                             last_error=conn.last_error, details=details).model_dump(mode="json")


@router.delete(BASE + "/{platform}", status_code=status.HTTP_204_NO_CONTENT)
async def disconnect(client_id: uuid.UUID, platform: CredentialPlatform, ctx: Manager, settings: SettingsDep,
                     factory: Factory) -> Response:
    """Revoke the authorization at the platform and delete the stored secrets."""
    revoked = await service.disconnect(ctx.session, settings, factory, ctx.org_id, ctx.actor, client_id,
                                       _platform(platform))
    return Response(status_code=status.HTTP_204_NO_CONTENT,
                    headers={"X-Platform-Revoked": "true" if revoked else "false"})
