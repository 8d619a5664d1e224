"""Client reports: CSV exports of the analytics tables, the PDF report, report schedules,
and the unsubscribe link of report e-mails."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse, StreamingResponse
from markupsafe import escape

from omnify.auth.deps import OrgContext, require
from omnify.auth.permissions import Permission
from omnify.core.db import utcnow
from omnify.core.deps import SessionDep, SettingsDep
from omnify.core.errors import UnprocessableEntity
from omnify.core.openapi import problems
from omnify.core.storage import content_disposition
from omnify.reports import service
from omnify.reports.models import Cadence
from omnify.reports.schemas import ExportTableOut, ScheduleIn, ScheduleOut, ScheduleUpdateIn

router = APIRouter(tags=["reports"])
BASE = "/orgs/{org_id}/clients/{client_id}"
Reader = Annotated[OrgContext, Depends(require(Permission.CLIENTS_READ))]
Writer = Annotated[OrgContext, Depends(require(Permission.CLIENTS_WRITE))]


@router.get(BASE + "/exports", response_model=list[ExportTableOut])
async def list_exports(client_id: uuid.UUID, ctx: Reader) -> Any:
    """Every table that can be exported as CSV, with its columns."""
    out = []
    for name, dated in service.EXPORT_TABLES.items():
        out.append({"table": name, "columns": await service.export_header(ctx.session, ctx.org_id, client_id, name),
                    "dated": dated is not None})
    return out


@router.get(BASE + "/exports/{table}.csv", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}}})
async def export_csv(
    client_id: uuid.UUID, table: str, request: Request, ctx: Reader,
    since: Annotated[date | None, Query()] = None, until: Annotated[date | None, Query()] = None,
) -> StreamingResponse:
    """The client's rows of one analytics table, streamed (any size); money in minor units plus decimals."""
    if since and until and since > until:
        raise UnprocessableEntity("The range is empty.", errors=[{"loc": ["query", "since"], "field": "since",
                                                                  "msg": "must not be after until"}])
    await service.export_header(ctx.session, ctx.org_id, client_id, table)
    await service.record_export(ctx.session, ctx.org_id, ctx.actor, client_id, table, since, until)
    body = service.stream_csv(request.app.state.db, ctx.org_id, client_id, table, since, until)
    return StreamingResponse(body, media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": content_disposition(f"{table}.csv"), "Cache-Control": "no-store"})


@router.get(BASE + "/report.pdf", response_class=Response, responses={200: {"content": {"application/pdf": {}}}})
async def report_pdf(
    client_id: uuid.UUID, ctx: Reader, settings: SettingsDep,
    since: Annotated[date | None, Query(description="Default: 30 days ago.")] = None,
    until: Annotated[date | None, Query(description="Default: yesterday.")] = None,
) -> Response:
    """The branded report of one period: KPIs with change, charts, top and bottom campaigns and
    ads, actions and their effect, open recommendations."""
    today = utcnow().date()
    until = until or today - timedelta(days=1)
    since = since or until - timedelta(days=29)
    filename, pdf = await service.render_report(ctx.session, settings, ctx.org_id, client_id, since, until)
    return Response(pdf, media_type="application/pdf", headers={
        "Content-Disposition": content_disposition(filename), "Cache-Control": "no-store"})


@router.get(BASE + "/report-schedules", response_model=list[ScheduleOut])
async def list_schedules(client_id: uuid.UUID, ctx: Reader) -> Any:
    return await service.list_schedules(ctx.session, ctx.org_id, client_id)


@router.post(BASE + "/report-schedules", response_model=ScheduleOut, status_code=201)
async def create_schedule(client_id: uuid.UUID, body: ScheduleIn, ctx: Writer) -> Any:
    """E-mail the PDF weekly or monthly, at a local time in the client's time zone."""
    return await service.create_schedule(ctx.session, ctx.org_id, ctx.actor, client_id, cadence=Cadence(body.cadence),
                                         weekday=body.weekday, day_of_month=body.day_of_month,
                                         send_time=body.send_time, recipients=[str(r) for r in body.recipients],
                                         enabled=body.enabled)


@router.patch(BASE + "/report-schedules/{schedule_id}", response_model=ScheduleOut)
async def update_schedule(client_id: uuid.UUID, schedule_id: uuid.UUID, body: ScheduleUpdateIn, ctx: Writer) -> Any:
    changes = {k: getattr(body, k) for k in body.model_fields_set}
    if changes.get("recipients") is not None:
        changes["recipients"] = [str(r) for r in changes["recipients"]]
    return await service.update_schedule(ctx.session, ctx.org_id, ctx.actor, client_id, schedule_id, changes)


@router.delete(BASE + "/report-schedules/{schedule_id}", status_code=204)
async def delete_schedule(client_id: uuid.UUID, schedule_id: uuid.UUID, ctx: Writer) -> Response:
    await service.delete_schedule(ctx.session, ctx.org_id, ctx.actor, client_id, schedule_id)
    return Response(status_code=204)


@router.get("/reports/unsubscribe", response_class=HTMLResponse, responses=problems(400))
async def unsubscribe(session: SessionDep, settings: SettingsDep,
                      token: Annotated[str, Query(min_length=10, max_length=2000)]) -> HTMLResponse:
    """The link in report e-mails (and their List-Unsubscribe header): no login needed."""
    email, client = await service.unsubscribe(session, settings, token)
    return HTMLResponse(f"<!doctype html><html lang=en><meta charset=utf-8><title>Unsubscribed</title>"
                        f"<p>{escape(email)} will no longer receive reports for {escape(client)}.</p></html>")


@router.post("/reports/unsubscribe", response_class=HTMLResponse, include_in_schema=False)
async def unsubscribe_one_click(session: SessionDep, settings: SettingsDep,
                                token: Annotated[str, Query(min_length=10, max_length=2000)]) -> HTMLResponse:
    """RFC 8058 one-click unsubscribe (mail clients POST to the List-Unsubscribe URL)."""
    return await unsubscribe(session, settings, token)
