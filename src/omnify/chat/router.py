"""/orgs/{org_id}/chat: Slack and Teams connections, channels, routes and their delivery log;
the Slack OAuth callback, the signed interactivity endpoint and signed chart images."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse, RedirectResponse

from omnify.auth.deps import OrgContext, require
from omnify.auth.permissions import Permission
from omnify.chat import service
from omnify.chat.models import ChatKind
from omnify.chat.schemas import (
    AuthorizeOut,
    ChannelIn,
    ChannelOut,
    ConnectionOut,
    RouteIn,
    RouteOut,
    SlackChannelOut,
    WebhookConnectionIn,
)
from omnify.core.deps import SessionDep, SettingsDep
from omnify.core.errors import Forbidden
from omnify.core.openapi import problems
from omnify.core.pagination import Page, PageParams, fields_param, page_params, page_response
from omnify.webhooks.schemas import DeliveryOut

router = APIRouter(tags=["alerts"])
BASE = "/orgs/{org_id}/chat"
Manage = Annotated[OrgContext, Depends(require(Permission.WEBHOOKS_MANAGE))]


@router.get(BASE + "/connections", response_model=list[ConnectionOut])
async def list_connections(ctx: Manage) -> Any:
    return await service.list_connections(ctx.session, ctx.org_id)


@router.post(BASE + "/connections", response_model=ChannelOut, status_code=201)
async def connect_webhook(body: WebhookConnectionIn, ctx: Manage, settings: SettingsDep) -> Any:
    """A Slack incoming webhook or a Teams webhook/workflow URL; returns its channel."""
    _conn, channel = await service.connect_webhook(ctx.session, settings, ctx.org_id, ctx.actor,
                                                   kind=ChatKind(body.kind), name=body.name, url=body.url)
    return channel


@router.delete(BASE + "/connections/{connection_id}", status_code=204)
async def delete_connection(connection_id: uuid.UUID, ctx: Manage) -> Response:
    await service.delete_connection(ctx.session, ctx.org_id, ctx.actor, connection_id)
    return Response(status_code=204)


@router.get(BASE + "/slack/authorize", response_model=AuthorizeOut, responses=problems(409))
async def slack_authorize(ctx: Manage, settings: SettingsDep) -> Any:
    """Slack's consent URL for installing the Omnify app (and linking your Slack user)."""
    user_id = ctx.principal.user_id
    if ctx.principal.kind != "user" or user_id is None:
        raise Forbidden("Install Slack as a user: the installer's Slack account is linked to them.",
                        code="user-required")
    return {"authorize_url": service.slack_authorize_url(settings, ctx.org_id, user_id)}


@router.get("/chat/slack/callback", include_in_schema=True, responses=problems(400, 409, 502))
async def slack_callback(session: SessionDep, settings: SettingsDep,
                         code: Annotated[str, Query(min_length=1, max_length=500)],
                         state: Annotated[str, Query(min_length=1, max_length=2000)]) -> RedirectResponse:
    """Slack's redirect after consent: the state is signed and names the organization and user."""
    conn = await service.complete_slack_install(session, settings, code, state)
    return RedirectResponse(f"/orgs/{conn.org_id}/settings/alerts?connected={conn.id}", status_code=303)


@router.get(BASE + "/connections/{connection_id}/slack-channels", response_model=list[SlackChannelOut],
            responses=problems(409, 502))
async def slack_channels(connection_id: uuid.UUID, ctx: Manage, settings: SettingsDep) -> Any:
    """The channel picker: channels the bot can post to."""
    return await service.slack_channels(ctx.session, settings, ctx.org_id, connection_id)


@router.post(BASE + "/connections/{connection_id}/channels", response_model=ChannelOut, status_code=201)
async def add_slack_channel(connection_id: uuid.UUID, body: ChannelIn, ctx: Manage, settings: SettingsDep) -> Any:
    return await service.add_slack_channel(ctx.session, settings, ctx.org_id, ctx.actor, connection_id,
                                           body.channel_id)


@router.get(BASE + "/channels", response_model=list[ChannelOut])
async def list_channels(ctx: Manage) -> Any:
    return await service.list_channels(ctx.session, ctx.org_id)


@router.delete(BASE + "/channels/{channel_id}", status_code=204)
async def remove_channel(channel_id: uuid.UUID, ctx: Manage) -> Response:
    await service.remove_channel(ctx.session, ctx.org_id, ctx.actor, channel_id)
    return Response(status_code=204)


@router.post(BASE + "/channels/{channel_id}/test", response_model=DeliveryOut, status_code=202)
async def send_test(channel_id: uuid.UUID, ctx: Manage,
                    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", min_length=1,
                                                                  max_length=200)] = None) -> Any:
    return await service.send_test(ctx.session, ctx.org_id, ctx.actor, channel_id, idempotency_key)


@router.get(BASE + "/channels/{channel_id}/deliveries", response_model=Page[DeliveryOut])
async def list_deliveries(
    channel_id: uuid.UUID, ctx: Manage, paging: Annotated[PageParams, Depends(page_params)],
    fields: Annotated[set[str] | None, Depends(fields_param)],
    status_: Annotated[Literal["pending", "succeeded", "failed"] | None, Query(alias="status")] = None,
) -> Any:
    """The delivery log: every message, its attempts' outcome, dead letters (status=failed)."""
    rows = await service.deliveries(ctx.session, ctx.org_id, channel_id, paging, status_)
    return page_response(DeliveryOut, rows, paging, fields)


@router.post(BASE + "/channels/{channel_id}/deliveries/{delivery_id}/replay", response_model=DeliveryOut,
             status_code=202)
async def replay(channel_id: uuid.UUID, delivery_id: uuid.UUID, ctx: Manage) -> Any:
    return await service.replay(ctx.session, ctx.org_id, ctx.actor, channel_id, delivery_id)


@router.get(BASE + "/routes", response_model=list[RouteOut])
async def list_routes(ctx: Manage) -> Any:
    return await service.list_routes(ctx.session, ctx.org_id)


@router.post(BASE + "/routes", response_model=RouteOut, status_code=201)
async def add_route(body: RouteIn, ctx: Manage) -> Any:
    """Send one kind of event (for one client, or every client) to a channel."""
    return await service.add_route(ctx.session, ctx.org_id, ctx.actor, channel_id=body.channel_id,
                                   event_kind=body.event_kind, client_id=body.client_id)


@router.delete(BASE + "/routes/{route_id}", status_code=204)
async def remove_route(route_id: uuid.UUID, ctx: Manage) -> Response:
    await service.remove_route(ctx.session, ctx.org_id, ctx.actor, route_id)
    return Response(status_code=204)


@router.post("/chat/slack/interactions", status_code=status.HTTP_200_OK,
             responses={401: {"description": "Signature missing, wrong or older than five minutes"}})
async def slack_interactions(
    request: Request, session: SessionDep, settings: SettingsDep,
    x_slack_request_timestamp: Annotated[str | None, Header()] = None,
    x_slack_signature: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Slack's interactivity request URL: Apply / Dismiss clicks on alert messages."""
    body = await request.body()
    reply = await service.handle_interaction(session, settings, body, x_slack_request_timestamp, x_slack_signature)
    return JSONResponse(reply.body())


@router.get("/chat/charts/{event_id}.png", response_class=Response,
            responses={200: {"content": {"image/png": {}}}, 404: {"description": "Unknown or expired link"}})
async def chart(event_id: uuid.UUID, session: SessionDep, settings: SettingsDep,
                token: Annotated[str, Query(min_length=10, max_length=2000)]) -> Response:
    """An alert's chart, for chat clients that fetch images by URL (signed, expiring link)."""
    png = await service.chart_png(session, settings, token, event_id)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})
