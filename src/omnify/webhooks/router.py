"""/orgs/{org_id}/webhook-endpoints (admins and owners) and the inbound receiver."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, status
from fastapi.responses import JSONResponse, Response

from omnify.auth.deps import OrgContext, require
from omnify.auth.permissions import Permission
from omnify.core.deps import SessionDep, SettingsDep
from omnify.core.pagination import Page, PageParams, fields_param, page_params, page_response, select_fields
from omnify.webhooks import inbound, service
from omnify.webhooks.config import WebhookConfig
from omnify.webhooks.events import CATALOGUE, SUBSCRIBABLE
from omnify.webhooks.models import WebhookDelivery, WebhookEndpoint
from omnify.webhooks.schemas import (
    AppInboundAck,
    AttemptOut,
    BulkReplayIn,
    BulkReplayOut,
    DeliveryDetailOut,
    DeliveryOut,
    EndpointCreateIn,
    EndpointOut,
    EndpointSecretOut,
    EndpointUpdateIn,
    EventTypeOut,
    InboundAck,
)

router = APIRouter(tags=["webhooks"])

Paging = Annotated[PageParams, Depends(page_params)]
Fields = Annotated[set[str] | None, Depends(fields_param)]
Manage = Annotated[OrgContext, Depends(require(Permission.WEBHOOKS_MANAGE))]
BASE = "/orgs/{org_id}/webhook-endpoints"


def _config(settings: SettingsDep) -> WebhookConfig:
    return WebhookConfig.from_settings(settings)


Config = Annotated[WebhookConfig, Depends(_config)]


def _with_secret(endpoint: WebhookEndpoint, secret: str) -> EndpointSecretOut:
    return EndpointSecretOut(**EndpointOut.model_validate(endpoint).model_dump(), secret=secret)


@router.get("/orgs/{org_id}/webhook-event-types", response_model=Page[EventTypeOut])
async def list_event_types(ctx: Manage, fields: Fields) -> Any:
    """The catalogue endpoints can subscribe to, with a versioned example payload each."""
    items = [EventTypeOut(id=e.name, version=e.version, description=e.description, example=e.example)
             .model_dump(mode="json") for name, e in sorted(CATALOGUE.items()) if name in SUBSCRIBABLE]
    return JSONResponse({"items": select_fields(EventTypeOut, items, fields), "next_cursor": None})


@router.get(BASE, response_model=Page[EndpointOut])
async def list_endpoints(ctx: Manage, paging: Paging, fields: Fields) -> Any:
    rows = await service.list_endpoints(ctx.session, ctx.org_id, paging)
    return page_response(EndpointOut, rows, paging, fields)


@router.post(BASE, status_code=status.HTTP_201_CREATED, response_model=EndpointSecretOut)
async def create_endpoint(body: EndpointCreateIn, ctx: Manage, settings: SettingsDep, config: Config) -> Any:
    """Create an endpoint. The response carries the signing secret: it is shown only once."""
    endpoint, secret = await service.create_endpoint(
        ctx.session, settings, config, ctx.org_id, ctx.actor, url=body.url, description=body.description,
        event_types=body.event_types, enabled=body.enabled)
    return _with_secret(endpoint, secret)


@router.get(BASE + "/{endpoint_id}", response_model=EndpointOut)
async def get_endpoint(endpoint_id: uuid.UUID, ctx: Manage) -> Any:
    return await service.get_endpoint(ctx.session, ctx.org_id, endpoint_id)


@router.patch(BASE + "/{endpoint_id}", response_model=EndpointOut)
async def update_endpoint(endpoint_id: uuid.UUID, body: EndpointUpdateIn, ctx: Manage, config: Config) -> Any:
    """Change URL, description, event types or ``enabled``; disabling dead-letters what is pending."""
    return await service.update_endpoint(ctx.session, config, ctx.org_id, ctx.actor, endpoint_id,
                                         changes=body.model_dump(exclude_unset=True))


@router.delete(BASE + "/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_endpoint(endpoint_id: uuid.UUID, ctx: Manage) -> Response:
    await service.delete_endpoint(ctx.session, ctx.org_id, ctx.actor, endpoint_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(BASE + "/{endpoint_id}/rotate-secret", response_model=EndpointSecretOut)
async def rotate_secret(endpoint_id: uuid.UUID, ctx: Manage, settings: SettingsDep, config: Config) -> Any:
    """A new secret (shown once); the old one keeps signing alongside it for 24 hours."""
    endpoint, secret = await service.rotate_secret(ctx.session, settings, config, ctx.org_id, ctx.actor,
                                                   endpoint_id)
    return _with_secret(endpoint, secret)


@router.post(BASE + "/{endpoint_id}/test", status_code=status.HTTP_202_ACCEPTED, response_model=DeliveryOut)
async def send_test_event(
    endpoint_id: uuid.UUID, ctx: Manage,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)] = None,
) -> Any:
    """Queue a ``webhook.test`` event to this endpoint; follow it in its deliveries."""
    return await service.send_test_event(ctx.session, ctx.org_id, ctx.actor, endpoint_id, idempotency_key)


@router.get(BASE + "/{endpoint_id}/deliveries", response_model=Page[DeliveryOut])
async def list_deliveries(
    endpoint_id: uuid.UUID, ctx: Manage, paging: Paging, fields: Fields,
    status_: Annotated[Literal["pending", "succeeded", "failed"] | None, Query(alias="status")] = None,
    event_type: Annotated[str | None, Query(max_length=80)] = None,
) -> Any:
    rows = await service.list_deliveries(ctx.session, ctx.org_id, endpoint_id, paging, status_, event_type)
    return page_response(DeliveryOut, rows, paging, fields)


@router.get(BASE + "/{endpoint_id}/deliveries/{delivery_id}", response_model=DeliveryDetailOut)
async def get_delivery(endpoint_id: uuid.UUID, delivery_id: uuid.UUID, ctx: Manage) -> Any:
    """One delivery with its payload and every attempt (newest first)."""
    detail = await service.get_delivery(ctx.session, ctx.org_id, endpoint_id, delivery_id)
    return DeliveryDetailOut(**DeliveryOut.model_validate(detail.delivery).model_dump(), payload=detail.payload,
                             attempt_log=[AttemptOut.model_validate(a) for a in detail.attempts])


@router.post(BASE + "/{endpoint_id}/deliveries/{delivery_id}/replay", status_code=status.HTTP_202_ACCEPTED,
             response_model=DeliveryOut)
async def replay_delivery(endpoint_id: uuid.UUID, delivery_id: uuid.UUID, ctx: Manage) -> WebhookDelivery:
    """Send a dead-lettered delivery again, with a fresh retry schedule."""
    return await service.replay_delivery(ctx.session, ctx.org_id, ctx.actor, endpoint_id, delivery_id)


@router.post(BASE + "/{endpoint_id}/replay", status_code=status.HTTP_202_ACCEPTED, response_model=BulkReplayOut)
async def replay_dead(endpoint_id: uuid.UUID, body: BulkReplayIn, ctx: Manage) -> Any:
    """Replay every dead-lettered delivery of the endpoint (optionally since a time), up to 1000."""
    count = await service.replay_dead(ctx.session, ctx.org_id, ctx.actor, endpoint_id, body.since)
    return BulkReplayOut(replayed=count)


# ------------------------------------------------------------------------------ inbound
@router.post("/webhooks/inbound/{provider}/{source_id}", response_model=InboundAck, tags=["inbound webhooks"],
             responses={401: {"description": "Signature missing or invalid"},
                        404: {"description": "Unknown provider or source"}})
async def receive_inbound(
    provider: Annotated[str, Path(max_length=40, pattern=r"^[a-z][a-z0-9_]*$")], source_id: uuid.UUID, request: Request,
    session: SessionDep, settings: SettingsDep, config: Config,
) -> Any:
    """Receiver for platform webhooks (Shopify: ``/webhooks/inbound/shopify/{source_id}``).

    Authenticated by the platform's HMAC over the raw body, not by a bearer token.
    """
    await request.app.state.rate_limiter.hit(request, "org", f"inbound:{source_id}", settings.rate_limit_org)
    body = await request.body()
    received = await inbound.receive(session, settings, config, provider, source_id, request.headers, body)
    return InboundAck(status="duplicate" if received.duplicate else "accepted", id=received.event_id)


@router.post("/webhooks/inbound/{provider}", response_model=AppInboundAck, tags=["inbound webhooks"],
             responses={400: {"description": "Topic not accepted at the app-wide address, or malformed"},
                        401: {"description": "Signature missing or invalid"},
                        404: {"description": "Unknown provider"}})
async def receive_inbound_app_level(
    provider: Annotated[str, Path(max_length=40, pattern=r"^[a-z][a-z0-9_]*$")], request: Request,
    session: SessionDep, settings: SettingsDep, config: Config,
) -> Any:
    """App-wide receiver for what a platform sends to one address per app (Shopify's
    mandatory privacy webhooks: customers/data_request, customers/redact, shop/redact).

    Signed with the app's secret; routed by ``X-Shopify-Shop-Domain`` to every
    organization that connected the shop. An unknown shop is acknowledged (200).
    """
    await request.app.state.rate_limiter.hit(request, "org", f"inbound:{provider}:app", settings.rate_limit_org)
    body = await request.body()
    received = await inbound.receive_app_level(session, config, provider, request.headers, body)
    if not received:
        return AppInboundAck(status="ignored", ids=[])
    state = "duplicate" if all(r.duplicate for r in received) else "accepted"
    return AppInboundAck(status=state, ids=[r.event_id for r in received])
