"""Organization settings: team (members, roles, invitations), API keys, plan usage."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from omnify.auth.permissions import ROLE_RANK, Permission, role_allows
from omnify.core.deps import SettingsDep
from omnify.core.errors import AppError
from omnify.core.pagination import PageParams
from omnify.orgs import quotas
from omnify.orgs import service as orgs
from omnify.orgs.models import Role
from omnify.orgs.schemas import ApiKeyIn, InvitationIn, MemberUpdateIn
from omnify.web.deps import (
    Inviter,
    KeysManager,
    MembersManager,
    MembersReader,
    QuotaReader,
    Shell,
    csrf_guard,
    org_shell,
    roll_back,
)
from omnify.web.forms import app_error_fields, form_data, form_lists, parse
from omnify.web.templating import render

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf_guard)])
BASE = "/orgs/{org_id}/settings"
LIST_LIMIT = 200


def _back(org_id: uuid.UUID, page: str, flash: str) -> RedirectResponse:
    return RedirectResponse(f"/orgs/{org_id}/settings/{page}?flash={flash}", status_code=303)


# ------------------------------------------------------------------------------ team
async def _team(request: Request, ctx: Any, web: Shell, *, error: str | None = None,
                errors: dict[str, str] | None = None, values: dict[str, str] | None = None,
                status: int = 200) -> Response:
    members = await orgs.list_members(ctx.session, ctx.org_id, PageParams(limit=LIST_LIMIT))
    invitations = []
    if role_allows(ctx.role, Permission.INVITATIONS_MANAGE):
        invitations = [(inv, orgs.invitation_status(inv))
                       for inv in await orgs.list_invitations(ctx.session, ctx.org_id, PageParams(limit=LIST_LIMIT))]
    assignable = [r for r in Role if ctx.role == Role.OWNER or ROLE_RANK[r] < ROLE_RANK[Role.OWNER]]
    return render(request, "settings/team.html", {
        "web": web, "members": members[:LIST_LIMIT], "invitations": invitations, "roles": list(Role),
        "assignable": assignable, "error": error, "errors": errors or {}, "values": values or {}}, status=status)


@router.get(BASE + "/team")
async def team(request: Request, ctx: MembersReader) -> Response:
    return await _team(request, ctx, await org_shell(request, ctx, "settings"))


@router.post(BASE + "/invitations")
async def invite(request: Request, ctx: Inviter, settings: SettingsDep) -> Response:
    data = await form_data(request)
    body, errors = parse(InvitationIn, data)
    if body is not None:
        try:
            await orgs.invite(ctx.session, settings, ctx.org_id, ctx.role, ctx.actor, email=body.email, role=body.role)
        except AppError as exc:
            await roll_back(request, ctx.session, ctx.principal.user)
            errors = app_error_fields(exc) or {"email": exc.detail}
        else:
            return _back(ctx.org_id, "team", "invitation-sent")
    return await _team(request, ctx, await org_shell(request, ctx, "settings"), errors=errors, values=data,
                       error="The invitation was not sent.", status=422)


@router.post(BASE + "/invitations/{invitation_id}/revoke")
async def revoke_invitation(invitation_id: uuid.UUID, ctx: Inviter) -> Response:
    await orgs.revoke_invitation(ctx.session, ctx.org_id, ctx.actor, invitation_id)
    return _back(ctx.org_id, "team", "invitation-revoked")


@router.post(BASE + "/members/{user_id}/role")
async def change_role(request: Request, user_id: uuid.UUID, ctx: MembersManager) -> Response:
    body, _errors = parse(MemberUpdateIn, await form_data(request))
    if body is None:
        return await _team(request, ctx, await org_shell(request, ctx, "settings"), error="Choose a role.",
                           status=422)
    await orgs.change_role(ctx.session, ctx.org_id, ctx.role, ctx.actor, user_id, body.role)
    return _back(ctx.org_id, "team", "member-updated")


@router.post(BASE + "/members/{user_id}/remove")
async def remove_member(user_id: uuid.UUID, ctx: MembersManager) -> Response:
    await orgs.remove_member(ctx.session, ctx.org_id, ctx.role, ctx.actor, user_id)
    return _back(ctx.org_id, "team", "member-removed")


# ------------------------------------------------------------------------------ API keys
async def _keys(request: Request, ctx: Any, *, created: tuple[Any, str] | None = None,
                errors: dict[str, str] | None = None, status: int = 200) -> Response:
    keys = await orgs.list_api_keys(ctx.session, ctx.org_id, PageParams(limit=LIST_LIMIT))
    return render(request, "settings/api_keys.html", {
        "web": await org_shell(request, ctx, "settings"), "keys": keys[:LIST_LIMIT], "created": created,
        "errors": errors or {}}, status=status)


@router.get(BASE + "/api-keys")
async def api_keys(request: Request, ctx: KeysManager) -> Response:
    return await _keys(request, ctx)


@router.post(BASE + "/api-keys")
async def create_api_key(request: Request, ctx: KeysManager) -> Response:
    data = await form_lists(request)
    body, errors = parse(ApiKeyIn, {"name": (data.get("name") or [""])[0], "scopes": data.get("scopes") or ["read"]})
    if body is None:
        return await _keys(request, ctx, errors=errors, status=422)
    key, token = await orgs.create_api_key(ctx.session, ctx.org_id, ctx.actor, name=body.name,
                                           scopes=list(body.scopes), expires_at=body.expires_at)
    # Shown once, in this response only (never in a URL, never again).
    return await _keys(request, ctx, created=(key, token), status=201)


@router.post(BASE + "/api-keys/{key_id}/revoke")
async def revoke_api_key(key_id: uuid.UUID, ctx: KeysManager) -> Response:
    await orgs.revoke_api_key(ctx.session, ctx.org_id, ctx.actor, key_id)
    return _back(ctx.org_id, "api-keys", "key-revoked")


# ------------------------------------------------------------------------------ plan
@router.get(BASE + "/plan")
async def plan(request: Request, ctx: QuotaReader) -> Response:
    org = await orgs.get_org(ctx.session, ctx.org_id)
    lines = await quotas.report(ctx.session, ctx.org_id)
    return render(request, "settings/plan.html", {"web": await org_shell(request, ctx, "settings"), "org": org,
                                                  "lines": lines})
