"""Settings → Webhooks: endpoints (create, edit, rotate the secret, send a test, delete) and
each endpoint's delivery log with replay of dead letters.

Every write goes through :mod:`omnify.webhooks.service` with the API's request schema and
the API's permission (``webhooks:manage``, admins and owners), so the SSRF guard, the
audit trail and the tenant scope are the ones ``/api/v1/orgs/{org_id}/webhook-endpoints``
uses. The signing secret is in the response to create and to rotate only: never in a URL,
never in a later page (the service keeps it sealed).

The addresses match what the "endpoint disabled" e-mail links to
(``/orgs/{org_id}/webhooks/{endpoint_id}``).
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from omnify.core import browser
from omnify.core.deps import SettingsDep
from omnify.core.errors import AppError
from omnify.core.pagination import PageParams
from omnify.web.deps import WebhooksManager, csrf_guard, org_shell
from omnify.web.forms import Errors, app_error_fields, form_lists, parse
from omnify.web.paging import page_or_newest
from omnify.web.templating import render
from omnify.webhooks import service as webhooks
from omnify.webhooks.config import WebhookConfig
from omnify.webhooks.events import CATALOGUE, SUBSCRIBABLE
from omnify.webhooks.models import DeliveryStatus, WebhookEndpoint
from omnify.webhooks.schemas import EndpointCreateIn, EndpointUpdateIn

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf_guard)])
BASE = "/orgs/{org_id}/webhooks"
LIST_LIMIT = 50  # the service caps an organization at MAX_ENDPOINTS_PER_ORG (50)
DELIVERIES_PAGE = 25
#: While a listed delivery is pending, the log fragment asks again this often (HTMX).
POLL_SECONDS = 2
STATUSES = tuple(s.value for s in DeliveryStatus)
#: The catalogue an endpoint can subscribe to, for the checkboxes (name, description).
EVENT_TYPES = [(name, CATALOGUE[name].description) for name in sorted(SUBSCRIBABLE)]


def _base(org_id: uuid.UUID) -> str:
    return f"/orgs/{org_id}/webhooks"


def _config(settings: Any) -> WebhookConfig:
    return WebhookConfig.from_settings(settings)


def _form(data: dict[str, list[str]]) -> dict[str, Any]:
    """The endpoint form as the API's body: an unticked checkbox is absent, so ``enabled``
    is false unless it is sent; no ticked event type means every event type."""
    first = {k: (v[0] if v else "") for k, v in data.items()}
    return {"url": first.get("url", ""), "description": first.get("description", ""),
            "event_types": data.get("event_types") or [], "enabled": first.get("enabled") == "on"}


# ------------------------------------------------------------------------------ list + create
async def _list(request: Request, ctx: Any, *, errors: Errors | None = None, values: dict[str, Any] | None = None,
                status: int = 200) -> Response:
    endpoints = await webhooks.list_endpoints(ctx.session, ctx.org_id, PageParams(limit=LIST_LIMIT))
    return render(request, "settings/webhooks.html", {
        "web": await org_shell(request, ctx, "settings"), "endpoints": endpoints[:LIST_LIMIT],
        "event_types": EVENT_TYPES, "errors": errors or {},
        "values": values or {"url": "", "description": "", "event_types": [], "enabled": True},
        "error": "The endpoint was not created." if errors else None}, status=status)


@router.get(BASE)
async def endpoint_list(request: Request, ctx: WebhooksManager) -> Response:
    return await _list(request, ctx)


@router.post(BASE)
async def create_endpoint(request: Request, ctx: WebhooksManager, settings: SettingsDep) -> Response:
    values = _form(await form_lists(request))
    body, errors = parse(EndpointCreateIn, values)
    if body is None:
        return await _list(request, ctx, errors=errors, values=values, status=422)
    try:
        endpoint, secret = await webhooks.create_endpoint(
            ctx.session, settings, _config(settings), ctx.org_id, ctx.actor, url=body.url,
            description=body.description, event_types=body.event_types, enabled=body.enabled)
    except AppError as exc:  # the SSRF guard or the endpoint limit: refused before any write
        return await _list(request, ctx, errors=app_error_fields(exc) or {"url": exc.detail}, values=values,
                           status=exc.status)
    # Shown once, in this response only (never in a URL, never again).
    return await _detail(request, ctx, endpoint, secret=secret, notice="Endpoint created.", status=201)


# ------------------------------------------------------------------------------ one endpoint
async def _deliveries(request: Request, ctx: Any, endpoint: WebhookEndpoint) -> dict[str, Any]:
    """The delivery log's context: filtered by ``status``, newest first, cursor-paged."""
    q = request.query_params
    status = q.get("status") or ""
    notes: list[str] = []
    if status and status not in STATUSES:
        notes.append(f"Unknown status {status[:40]!r}: showing every delivery.")
        status = ""
    items, next_cursor, params = await page_or_newest(
        request, DELIVERIES_PAGE,
        lambda p: webhooks.list_deliveries(ctx.session, ctx.org_id, endpoint.id, p, status or None, None),
        notes, "deliveries")
    here = f"{_base(ctx.org_id)}/{endpoint.id}"
    query = {"status": status} if status else {}
    current = {**query, "cursor": params.cursor} if params.cursor else query
    return {
        "deliveries": items, "status": status, "statuses": STATUSES, "notes": notes,
        "older_href": f"{here}?{urlencode({**query, 'cursor': next_cursor})}" if next_cursor else None,
        "poll_href": f"{here}/deliveries" + (f"?{urlencode(current)}" if current else ""),
        "polling": any(d.status == DeliveryStatus.PENDING.value for d in items), "poll": POLL_SECONDS,
    }


async def _detail(request: Request, ctx: Any, endpoint: WebhookEndpoint, *, secret: str | None = None,
                  notice: str | None = None, error: str | None = None, errors: Errors | None = None,
                  values: dict[str, Any] | None = None, status: int = 200) -> Response:
    log = await _deliveries(request, ctx, endpoint)
    return render(request, "settings/webhook.html", {
        "web": await org_shell(request, ctx, "settings"), "endpoint": endpoint, "secret": secret,
        "notice": notice, "error": error, "errors": errors or {}, "event_types": EVENT_TYPES,
        "values": values or {"url": endpoint.url, "description": endpoint.description or "",
                             "event_types": list(endpoint.event_types or []), "enabled": endpoint.enabled},
        # A fresh key per rendering: a double-clicked "Send a test" sends one event.
        "test_key": uuid.uuid4().hex, **log}, status=status)


async def _endpoint(ctx: Any, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    return await webhooks.get_endpoint(ctx.session, ctx.org_id, endpoint_id)


@router.get(BASE + "/{endpoint_id}")
async def endpoint_detail(request: Request, endpoint_id: uuid.UUID, ctx: WebhooksManager) -> Response:
    return await _detail(request, ctx, await _endpoint(ctx, endpoint_id))


@router.get(BASE + "/{endpoint_id}/deliveries")
async def delivery_log(request: Request, endpoint_id: uuid.UUID, ctx: WebhooksManager) -> Response:
    """The log alone, for HTMX polling; a browser opening it is sent to the full page."""
    endpoint = await _endpoint(ctx, endpoint_id)
    if not browser.is_htmx(request):
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(f"{_base(ctx.org_id)}/{endpoint.id}{query}", status_code=303)
    return render(request, "settings/_webhook_deliveries.html",
                  {"web": await org_shell(request, ctx, "settings"), "endpoint": endpoint,
                   **await _deliveries(request, ctx, endpoint)})


@router.post(BASE + "/{endpoint_id}")
async def update_endpoint(request: Request, endpoint_id: uuid.UUID, ctx: WebhooksManager,
                          settings: SettingsDep) -> Response:
    endpoint = await _endpoint(ctx, endpoint_id)
    values = _form(await form_lists(request))
    body, errors = parse(EndpointUpdateIn, {**values, "description": values["description"] or None})
    if not values["url"]:  # absent means "unchanged" to the API; an emptied field is a mistake
        body, errors = None, {**errors, "url": "Enter the URL that receives the events."}
    if body is not None:
        changes = body.model_dump()
        changes["description"] = body.description  # cleared on the form means cleared
        try:
            await webhooks.update_endpoint(ctx.session, _config(settings), ctx.org_id, ctx.actor, endpoint.id,
                                           changes=changes)
        except AppError as exc:  # the SSRF guard refuses before anything changes
            errors = app_error_fields(exc) or {"url": exc.detail}
        else:
            return RedirectResponse(f"{_base(ctx.org_id)}/{endpoint.id}?flash=endpoint-saved", status_code=303)
    return await _detail(request, ctx, endpoint, errors=errors, values=values,
                         error="The changes were not saved.", status=422)


@router.post(BASE + "/{endpoint_id}/rotate")
async def rotate_secret(request: Request, endpoint_id: uuid.UUID, ctx: WebhooksManager,
                        settings: SettingsDep) -> Response:
    endpoint, secret = await webhooks.rotate_secret(ctx.session, settings, _config(settings), ctx.org_id, ctx.actor,
                                                    endpoint_id)
    hours = _config(settings).secret_overlap / 3600
    return await _detail(request, ctx, endpoint, secret=secret,
                         notice=f"Secret rotated. The previous one keeps signing for {hours:g} hours.")


@router.post(BASE + "/{endpoint_id}/test")
async def send_test(request: Request, endpoint_id: uuid.UUID, ctx: WebhooksManager) -> Response:
    key = ((await form_lists(request)).get("idempotency_key") or [""])[0][:200] or None
    try:
        await webhooks.send_test_event(ctx.session, ctx.org_id, ctx.actor, endpoint_id, key)
    except AppError as exc:
        if exc.status == 404:
            raise
        return await _detail(request, ctx, await _endpoint(ctx, endpoint_id), error=exc.detail, status=exc.status)
    return RedirectResponse(f"{_base(ctx.org_id)}/{endpoint_id}?flash=test-sent", status_code=303)


@router.post(BASE + "/{endpoint_id}/delete")
async def delete_endpoint(endpoint_id: uuid.UUID, ctx: WebhooksManager) -> Response:
    await webhooks.delete_endpoint(ctx.session, ctx.org_id, ctx.actor, endpoint_id)
    return RedirectResponse(f"{_base(ctx.org_id)}?flash=endpoint-deleted", status_code=303)


# ------------------------------------------------------------------------------ deliveries
@router.get(BASE + "/{endpoint_id}/deliveries/{delivery_id}")
async def delivery_detail(request: Request, endpoint_id: uuid.UUID, delivery_id: uuid.UUID,
                          ctx: WebhooksManager) -> Response:
    endpoint = await _endpoint(ctx, endpoint_id)
    detail = await webhooks.get_delivery(ctx.session, ctx.org_id, endpoint.id, delivery_id)
    return render(request, "settings/webhook_delivery.html", {
        "web": await org_shell(request, ctx, "settings"), "endpoint": endpoint, "delivery": detail.delivery,
        "attempts": detail.attempts, "payload": json.dumps(detail.payload, indent=2, sort_keys=True)})


@router.post(BASE + "/{endpoint_id}/deliveries/{delivery_id}/replay")
async def replay_delivery(request: Request, endpoint_id: uuid.UUID, delivery_id: uuid.UUID,
                          ctx: WebhooksManager) -> Response:
    try:
        await webhooks.replay_delivery(ctx.session, ctx.org_id, ctx.actor, endpoint_id, delivery_id)
    except AppError as exc:  # not dead-lettered (any more), or the endpoint is disabled
        if exc.status == 404:
            raise
        return await _detail(request, ctx, await _endpoint(ctx, endpoint_id), error=exc.detail, status=exc.status)
    return RedirectResponse(f"{_base(ctx.org_id)}/{endpoint_id}?flash=replayed", status_code=303)
