"""The onboarding wizard per client: company profile -> brand (colours, tone, files) ->
platforms (the connections flow) -> first campaign idea -> done.

Resumable: ``/onboarding`` lands on the first step still pending, as the onboarding
service computes it from live state (a logo uploaded through the API counts the same).
Files are uploaded by ``upload.js`` straight to the API's streamed upload route (same
sniffing, quotas and refusal reasons), with the browser session and its CSRF token.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from omnify.campaigns import service as campaigns
from omnify.campaigns.schemas import IdeaCreateIn
from omnify.clients import service as clients
from omnify.clients.schemas import ClientUpdateIn
from omnify.connections import service as connections
from omnify.core.deps import SettingsDep
from omnify.core.errors import AppError
from omnify.core.pagination import PageParams
from omnify.credentials.platforms import Platform
from omnify.files import service as files
from omnify.onboarding import service as onboarding
from omnify.onboarding.schemas import OnboardingIn
from omnify.web.deps import ClientsReader, ClientsWriter, csrf_guard, org_shell, roll_back
from omnify.web.forms import app_error_fields, form_data, form_lists, parse
from omnify.web.templating import render
from omnify.web.views.connections import authorize_url

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf_guard)])
BASE = "/orgs/{org_id}/clients/{client_id}/onboarding"
#: Wizard pages in order, with the service's step keys each one completes.
PAGES: tuple[tuple[str, str], ...] = (("company", "Company"), ("brand", "Brand"), ("platforms", "Platforms"),
                                      ("idea", "First idea"), ("done", "Done"))
FILES_SHOWN = 50


def page_of(step_key: str) -> str:
    if step_key == "company_info":
        return "company"
    if step_key in ("logo", "brand_assets"):
        return "brand"
    if step_key.startswith("connect_"):
        return "platforms"
    if step_key == "first_campaign_idea":
        return "idea"
    return "done"


def _url(org_id: uuid.UUID, client_id: uuid.UUID, page: str) -> str:
    return f"/orgs/{org_id}/clients/{client_id}/onboarding/{page}"


@router.get(BASE)
async def resume(client_id: uuid.UUID, ctx: ClientsReader) -> Response:
    """Land on the next pending step."""
    progress = await onboarding.get_progress(ctx.session, ctx.org_id, client_id)
    nxt = progress.next_step
    return RedirectResponse(_url(ctx.org_id, client_id, page_of(nxt.key) if nxt else "done"), status_code=303)


async def _file_rows(ctx: Any, settings: Any, client_id: uuid.UUID) -> list[dict[str, Any]]:
    storage = files.storage_for(settings)
    out = []
    for f in await files.list_files(ctx.session, ctx.org_id, client_id, PageParams(limit=FILES_SHOWN)):
        thumb = None
        if f.thumbnail_key:
            thumb = (await files.download_link(ctx.session, settings, storage, ctx.org_id, client_id, f.id,
                                               "thumbnail")).url
        out.append({"file": f, "thumbnail": thumb})
    return out


async def _page(request: Request, ctx: Any, settings: Any, client_id: uuid.UUID, page: str, *,
                errors: dict[str, str] | None = None, values: dict[str, Any] | None = None,
                status: int = 200) -> Response:
    web = await org_shell(request, ctx, "clients")
    client = await clients.get_client(ctx.session, ctx.org_id, client_id)
    progress = await onboarding.get_progress(ctx.session, ctx.org_id, client_id)
    done_pages = {p for p, _ in PAGES if p != "done"} - {page_of(s.key) for s in progress.steps if not s.done}
    context: dict[str, Any] = {
        "web": web, "client": client, "progress": progress, "page": page, "pages": PAGES, "done_pages": done_pages,
        "errors": errors or {}, "values": values or {}, "steps": {s.key: s for s in progress.steps}}
    if page == "brand":
        context["files"] = await _file_rows(ctx, settings, client_id)
        context["upload_url"] = f"/api/v1/orgs/{ctx.org_id}/clients/{client_id}/files"
    if page == "platforms":
        conns = {c.platform: c for c in await connections.list_connections(ctx.session, ctx.org_id, client_id)}
        chosen = {p.value for p in progress.platforms}
        context["platform_rows"] = [
            {"platform": p.value, "chosen": p.value in chosen, "conn": conns.get(p.value),
             "authorize": authorize_url(ctx.org_id, client_id, p.value),
             "progress": connections.backfill_progress(conns[p.value]) if p.value in conns else None}
            for p in Platform]
    return render(request, "client/onboarding.html", context, status=status)


@router.get(BASE + "/{page}")
async def wizard_page(request: Request, client_id: uuid.UUID, page: str, ctx: ClientsReader,
                      settings: SettingsDep) -> Response:
    if page not in {p for p, _ in PAGES}:
        return RedirectResponse(f"/orgs/{ctx.org_id}/clients/{client_id}/onboarding", status_code=303)
    if page == "done":
        progress = await onboarding.get_progress(ctx.session, ctx.org_id, client_id)
        if progress.all_done and progress.completed_at is None:
            # The service records completion (audit, event) the first time it sees it.
            await onboarding.refresh(ctx.session, ctx.org_id, client_id, ctx.actor)
            await ctx.session.commit()
    return await _page(request, ctx, settings, client_id, page)


@router.get(BASE + "/brand/files")
async def file_list(request: Request, client_id: uuid.UUID, ctx: ClientsReader, settings: SettingsDep) -> Response:
    """The uploaded files with thumbnails (re-fetched by upload.js after a batch)."""
    return render(request, "client/_files.html", {"files": await _file_rows(ctx, settings, client_id)})


async def _update(request: Request, ctx: Any, settings: Any, client_id: uuid.UUID, page: str,
                  data: dict[str, Any], nxt: str, shown: dict[str, str] | None = None) -> Response:
    body, errors = parse(ClientUpdateIn, data)
    errors = {("colors" if k == "brand" else k): v for k, v in errors.items()}  # brand errors are the colours
    if body is not None:
        try:
            await clients.update_client(ctx.session, ctx.org_id, ctx.actor, client_id, body)
        except AppError as exc:
            if exc.status >= 500 or exc.status == 404:
                raise
            await roll_back(request, ctx.session, ctx.principal.user)
            errors = app_error_fields(exc) or {"form": exc.detail}
        else:
            return RedirectResponse(_url(ctx.org_id, client_id, nxt), status_code=303)
    flat = shown if shown is not None else {k: v for k, v in data.items() if isinstance(v, str)}
    return await _page(request, ctx, settings, client_id, page, errors=errors, values=flat, status=422)


@router.post(BASE + "/company")
async def save_company(request: Request, client_id: uuid.UUID, ctx: ClientsWriter, settings: SettingsDep) -> Response:
    data: dict[str, Any] = {k: v for k, v in (await form_data(request)).items() if v != ""}
    return await _update(request, ctx, settings, client_id, "company", data, "brand")


@router.post(BASE + "/brand")
async def save_brand(request: Request, client_id: uuid.UUID, ctx: ClientsWriter, settings: SettingsDep) -> Response:
    form = await form_data(request)
    colors = [c.strip() for c in form.get("colors", "").replace(";", ",").split(",") if c.strip()]
    brand: dict[str, Any] = {"colors": colors}
    for key in ("tone_of_voice", "target_audience"):
        if form.get(key):
            brand[key] = form[key]
    return await _update(request, ctx, settings, client_id, "brand", {"brand": brand}, "platforms", form)


@router.post(BASE + "/platforms")
async def save_platforms(request: Request, client_id: uuid.UUID, ctx: ClientsWriter,
                         settings: SettingsDep) -> Response:
    chosen = (await form_lists(request)).get("platforms", [])
    body, errors = parse(OnboardingIn, {"platforms": chosen} if chosen else {})
    if body is None:
        return await _page(request, ctx, settings, client_id, "platforms", status=422,
                           errors={"platforms": "Choose at least one platform." if not chosen
                                   else next(iter(errors.values()))})
    await onboarding.choose_platforms(ctx.session, ctx.org_id, ctx.actor, client_id, body.platforms)
    return RedirectResponse(_url(ctx.org_id, client_id, "platforms"), status_code=303)


@router.post(BASE + "/idea")
async def save_idea(request: Request, client_id: uuid.UUID, ctx: ClientsWriter, settings: SettingsDep) -> Response:
    data = await form_data(request)
    body, errors = parse(IdeaCreateIn, data)
    if body is not None:
        try:
            await campaigns.create_idea(ctx.session, ctx.org_id, ctx.actor, client_id, body)
        except AppError as exc:
            if exc.status >= 500 or exc.status == 404:
                raise
            await roll_back(request, ctx.session, ctx.principal.user)
            errors = app_error_fields(exc) or {"title": exc.detail}
        else:
            return RedirectResponse(f"/orgs/{ctx.org_id}/clients/{client_id}/onboarding?flash=idea-saved",
                                    status_code=303)
    return await _page(request, ctx, settings, client_id, "idea", errors=errors, values=data, status=422)
