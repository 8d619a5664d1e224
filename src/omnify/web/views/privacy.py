"""A client's Shopify privacy requests (customers/data_request, customers/redact,
shop/redact): what each asked, when it was done, how many rows it touched, and for a data
request the export to hand to the shopper.

Over :mod:`omnify.privacy.service` with the API's permission (``audit:read``): the export
link is signed, short-lived and audited by the service, exactly as ``GET .../export``.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from omnify.clients import service as clients
from omnify.core.deps import SettingsDep
from omnify.core.errors import AppError
from omnify.privacy import service as privacy
from omnify.privacy.models import PrivacyTopic
from omnify.web.deps import AuditReader, csrf_guard, org_shell
from omnify.web.paging import page_or_newest
from omnify.web.templating import render

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf_guard)])
BASE = "/orgs/{org_id}/clients/{client_id}/privacy"
PAGE = 50


def _base(org_id: uuid.UUID, client_id: uuid.UUID) -> str:
    return f"/orgs/{org_id}/clients/{client_id}/privacy"


@router.get(BASE)
async def privacy_requests(request: Request, client_id: uuid.UUID, ctx: AuditReader) -> Response:
    web = await org_shell(request, ctx, "clients")
    client = await clients.get_client(ctx.session, ctx.org_id, client_id)
    raw = (request.query_params.get("topic") or "").strip()
    errors: list[str] = []
    topic: PrivacyTopic | None = None
    if raw:
        try:
            topic = PrivacyTopic(raw)
        except ValueError:
            errors.append(f"Unknown topic {raw[:60]!r}: showing every request.")
            raw = ""
    items, next_cursor, _ = await page_or_newest(
        request, PAGE, lambda p: privacy.list_requests(ctx.session, ctx.org_id, client_id, p, topic), errors,
        "requests")
    base = _base(ctx.org_id, client_id)
    older = f"{base}?cursor={next_cursor}" + (f"&topic={raw}" if raw else "") if next_cursor else None
    return render(request, "client/privacy.html", {
        "web": web, "client": client, "requests": items, "errors": errors, "topic": raw,
        "topics": [t.value for t in PrivacyTopic], "older_href": older, "base": base})


@router.post(BASE + "/{request_id}/export")
async def privacy_export(request: Request, client_id: uuid.UUID, request_id: uuid.UUID, ctx: AuditReader,
                         settings: SettingsDep) -> Response:
    """Hands out the signed link (audited); a request without an export says why."""
    base = _base(ctx.org_id, client_id)
    try:
        link = await privacy.export_link(ctx.session, settings, ctx.actor, ctx.org_id, client_id, request_id)
    except AppError as exc:
        if exc.code in ("no-export", "export-erased"):
            return RedirectResponse(f"{base}?flash={exc.code}", status_code=303)
        raise
    return RedirectResponse(link.url, status_code=303)
