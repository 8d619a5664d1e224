"""Audit log viewer: the organization's trail with filters, cursor paging and a JSON Lines
export of exactly what the filters select.

Reads go through ``omnify.audit.service`` with the same filters and the same permission
(``audit:read``) as ``GET /api/v1/orgs/{org_id}/audit``, so the page never shows a row the
API would hide. The export pages through the service (the API's page size) rather than one unbounded query.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from omnify.audit import service as audit
from omnify.core.pagination import MAX_LIMIT, PageParams, paginate_rows
from omnify.web.deps import AuditReader, csrf_guard, org_shell
from omnify.web.paging import page_or_newest
from omnify.web.templating import render

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf_guard)])
BASE = "/orgs/{org_id}/audit"
ACTOR_TYPES = ("user", "api_key", "system")
PAGE = 50


def _day(raw: str) -> date | None:
    try:
        return date.fromisoformat(raw) if raw else None
    except ValueError:
        return None


def _filters(request: Request) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """Service filters from the query string, the values to put back in the form, and the
    reasons any value was ignored (shown on the page instead of a silent empty list)."""
    q = request.query_params
    keys = ("action_prefix", "actor_type", "target_type", "since", "until")
    values = {k: (q.get(k) or "").strip()[:80] for k in keys}
    errors: list[str] = []
    if values["actor_type"] and values["actor_type"] not in ACTOR_TYPES:
        errors.append(f"Unknown actor type {values['actor_type']!r}: showing every actor.")
        values["actor_type"] = ""
    since, until = _day(values["since"]), _day(values["until"])
    for name, parsed in (("since", since), ("until", until)):
        if values[name] and parsed is None:
            errors.append(f"`{name}` must be a date like 2026-01-31: ignored.")
            values[name] = ""
    filters: dict[str, Any] = {
        "action_prefix": values["action_prefix"] or None, "actor_type": values["actor_type"] or None,
        "target_type": values["target_type"] or None,
        "since": datetime.combine(since, time.min, UTC) if since else None,
        # `until` is inclusive on the page (a day), exclusive in the service (an instant).
        "until": datetime.combine(until + timedelta(days=1), time.min, UTC) if until else None}
    return filters, values, errors


@router.get(BASE)
async def audit_log(request: Request, ctx: AuditReader) -> Response:
    filters, values, errors = _filters(request)
    items, next_cursor, _ = await page_or_newest(
        request, PAGE, lambda p: audit.list_entries(ctx.session, ctx.org_id, p, filters), errors, "entries")
    query = {k: v for k, v in values.items() if v}
    base = f"/orgs/{ctx.org_id}/audit"
    older = f"{base}?{urlencode({**query, 'cursor': next_cursor})}" if next_cursor else None
    return render(request, "settings/audit.html", {
        "web": await org_shell(request, ctx, "settings"), "entries": items, "next_cursor": next_cursor,
        "values": values, "errors": errors, "actor_types": ACTOR_TYPES,
        "export_href": f"{base}/export.jsonl" + (f"?{urlencode(query)}" if query else ""),
        "older_href": older,
        "changes": {e.id: json.dumps(e.changes, sort_keys=True, default=str) for e in items}})


@router.get(BASE + "/export.jsonl")
async def audit_export(request: Request, ctx: AuditReader) -> Response:
    filters, _, _ = _filters(request)

    # Built before the response starts: the request's database session ends with the request.
    lines: list[str] = []
    params = PageParams(limit=MAX_LIMIT)
    while True:
        rows = await audit.list_entries(ctx.session, ctx.org_id, params, filters)
        items, cursor = paginate_rows(rows, params, lambda r: (r.created_at, r.id))
        lines.extend(json.dumps(audit.entry_to_json(e), sort_keys=True) + "\n" for e in items)
        if cursor is None:
            break
        params = PageParams(limit=MAX_LIMIT, cursor=cursor)
    return Response("".join(lines), media_type="application/x-ndjson", headers={
        "content-disposition": f'attachment; filename="audit-{ctx.org_id}.jsonl"', "cache-control": "no-store"})
