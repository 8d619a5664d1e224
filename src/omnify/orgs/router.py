"""/orgs: organizations, members, invitations, API keys and quotas."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import Response

from omnify.auth.deps import CurrentUser, OrgContext, Principal, actor_for, require
from omnify.auth.permissions import Permission
from omnify.core.deps import SessionDep, SettingsDep
from omnify.core.openapi import problems
from omnify.core.pagination import Page, PageParams, fields_param, page_params, page_response
from omnify.orgs import quotas, service
from omnify.orgs.models import Invitation, Role
from omnify.orgs.schemas import (
    ApiKeyCreatedOut,
    ApiKeyIn,
    ApiKeyOut,
    InvitationAcceptIn,
    InvitationIn,
    InvitationOut,
    MemberOut,
    MemberUpdateIn,
    MyOrgOut,
    OrgCreateIn,
    OrgOut,
    OrgUpdateIn,
    QuotaLineOut,
    QuotaOut,
)

router = APIRouter(tags=["organizations"])

Paging = Annotated[PageParams, Depends(page_params)]
Fields = Annotated[set[str] | None, Depends(fields_param)]


def _inv_out(inv: Invitation) -> dict[str, Any]:
    return InvitationOut.model_validate(
        {**{c: getattr(inv, c) for c in InvitationOut.model_fields if c != "status"},
         "status": service.invitation_status(inv)}
    ).model_dump(mode="json")


def _membership_key(row: tuple[Any, Any]) -> tuple[Any, uuid.UUID]:
    return row[0].created_at, row[0].id


@router.get("/orgs", response_model=Page[MyOrgOut])
async def list_my_orgs(session: SessionDep, user: CurrentUser, paging: Paging, fields: Fields) -> Any:
    rows = await service.memberships_of(session, user, paging)
    return page_response(
        MyOrgOut, rows, paging, fields, key=_membership_key,
        dump=lambda r: MyOrgOut(**OrgOut.model_validate(r[1]).model_dump(), role=r[0].role).model_dump(mode="json"),
    )


@router.post("/orgs", status_code=status.HTTP_201_CREATED, response_model=OrgOut)
async def create_org(body: OrgCreateIn, request: Request, session: SessionDep, user: CurrentUser) -> Any:
    org = await service.create_org(session, user, body.name, actor_for(request, Principal(user=user)))
    await session.commit()
    return org


@router.get("/orgs/{org_id}", response_model=OrgOut)
async def get_org(ctx: Annotated[OrgContext, Depends(require(Permission.ORG_READ))]) -> Any:
    return await service.get_org(ctx.session, ctx.org_id)


@router.patch("/orgs/{org_id}", response_model=OrgOut)
async def update_org(body: OrgUpdateIn, ctx: Annotated[OrgContext, Depends(require(Permission.ORG_UPDATE))]) -> Any:
    return await service.update_org(ctx.session, ctx.org_id, ctx.actor, name=body.name, settings=body.settings)


@router.get("/orgs/{org_id}/quota", response_model=QuotaOut)
async def get_quota(ctx: Annotated[OrgContext, Depends(require(Permission.QUOTA_READ))]) -> Any:
    org = await service.get_org(ctx.session, ctx.org_id)
    lines = await quotas.report(ctx.session, ctx.org_id)
    return QuotaOut(plan=org.plan, quotas=[QuotaLineOut(resource=q.resource, limit=q.limit, used=q.used)
                                           for q in lines])


# ---------------------------------------------------------------------------------- members
def _member_out(m: Any, u: Any) -> dict[str, Any]:
    return MemberOut(id=m.id, user_id=u.id, email=u.email, name=u.name, role=m.role,
                     created_at=m.created_at).model_dump(mode="json")


@router.get("/orgs/{org_id}/members", response_model=Page[MemberOut])
async def list_members(
    ctx: Annotated[OrgContext, Depends(require(Permission.MEMBERS_READ))], paging: Paging, fields: Fields,
    role: Annotated[Role | None, Query()] = None,
) -> Any:
    rows = await service.list_members(ctx.session, ctx.org_id, paging, role)
    return page_response(MemberOut, rows, paging, fields, key=_membership_key, dump=lambda r: _member_out(*r))


@router.patch("/orgs/{org_id}/members/{user_id}", response_model=MemberOut)
async def change_member_role(
    user_id: uuid.UUID, body: MemberUpdateIn,
    ctx: Annotated[OrgContext, Depends(require(Permission.MEMBERS_MANAGE))],
) -> Any:
    m, u = await service.change_role(ctx.session, ctx.org_id, ctx.role, ctx.actor, user_id, body.role)
    return _member_out(m, u)


@router.delete("/orgs/{org_id}/members/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_member(
    user_id: uuid.UUID, ctx: Annotated[OrgContext, Depends(require(Permission.MEMBERS_MANAGE))]
) -> Response:
    await service.remove_member(ctx.session, ctx.org_id, ctx.role, ctx.actor, user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# ---------------------------------------------------------------------------------- invitations
@router.post("/orgs/{org_id}/invitations", status_code=status.HTTP_201_CREATED, response_model=InvitationOut,
             responses=problems(402))  # the plan's member quota counts pending invitations
async def invite(
    body: InvitationIn, settings: SettingsDep,
    ctx: Annotated[OrgContext, Depends(require(Permission.INVITATIONS_MANAGE))],
) -> Any:
    """Creates the invitation and queues the e-mail carrying its one-time token."""
    inv = await service.invite(ctx.session, settings, ctx.org_id, ctx.role, ctx.actor, email=body.email,
                               role=body.role)
    return _inv_out(inv)


@router.get("/orgs/{org_id}/invitations", response_model=Page[InvitationOut])
async def list_invitations(
    ctx: Annotated[OrgContext, Depends(require(Permission.INVITATIONS_MANAGE))], paging: Paging, fields: Fields
) -> Any:
    rows = await service.list_invitations(ctx.session, ctx.org_id, paging)
    return page_response(InvitationOut, rows, paging, fields, dump=_inv_out)


@router.delete("/orgs/{org_id}/invitations/{invitation_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_invitation(
    invitation_id: uuid.UUID, ctx: Annotated[OrgContext, Depends(require(Permission.INVITATIONS_MANAGE))]
) -> Response:
    await service.revoke_invitation(ctx.session, ctx.org_id, ctx.actor, invitation_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/invitations/accept", response_model=MyOrgOut, responses=problems(404, 409, 410))
async def accept_invitation(
    body: InvitationAcceptIn, request: Request, session: SessionDep, user: CurrentUser
) -> Any:
    membership = await service.accept_invitation(session, user, actor_for(request, Principal(user=user)), body.token)
    org = await service.get_org(session, membership.org_id)
    return MyOrgOut(**OrgOut.model_validate(org).model_dump(), role=membership.role)


# ---------------------------------------------------------------------------------- API keys
@router.get("/orgs/{org_id}/api-keys", response_model=Page[ApiKeyOut])
async def list_api_keys(
    ctx: Annotated[OrgContext, Depends(require(Permission.API_KEYS_MANAGE))], paging: Paging, fields: Fields
) -> Any:
    return page_response(ApiKeyOut, await service.list_api_keys(ctx.session, ctx.org_id, paging), paging, fields)


@router.post("/orgs/{org_id}/api-keys", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreatedOut)
async def create_api_key(
    body: ApiKeyIn, ctx: Annotated[OrgContext, Depends(require(Permission.API_KEYS_MANAGE))]
) -> Any:
    key, token = await service.create_api_key(ctx.session, ctx.org_id, ctx.actor, name=body.name,
                                              scopes=list(body.scopes), expires_at=body.expires_at)
    return ApiKeyCreatedOut(**ApiKeyOut.model_validate(key).model_dump(), key=token)


@router.delete("/orgs/{org_id}/api-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_api_key(
    key_id: uuid.UUID, ctx: Annotated[OrgContext, Depends(require(Permission.API_KEYS_MANAGE))]
) -> Response:
    await service.revoke_api_key(ctx.session, ctx.org_id, ctx.actor, key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
