"""/auth and /me endpoints."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import Response

from omnify.auth import service
from omnify.auth.deps import CurrentUser, Principal, actor_for
from omnify.auth.schemas import (
    LoginIn,
    MembershipOut,
    MeOut,
    MeUpdateIn,
    PasswordChangeIn,
    PasswordResetIn,
    PasswordResetRequestIn,
    RefreshIn,
    RegisterIn,
    RegisterOut,
    TokenOut,
    UserOut,
)
from omnify.core.context import Actor
from omnify.core.deps import SessionDep, SettingsDep, client_ip, request_meta
from omnify.core.openapi import problems, raises
from omnify.orgs.models import Role

router = APIRouter(tags=["auth"])


@raises(429)
async def auth_rate_limit(request: Request) -> None:
    """Per-IP limit on the unauthenticated endpoints (credential stuffing, sign-up spam)."""
    settings = request.app.state.settings
    await request.app.state.rate_limiter.hit(request, "ip", client_ip(request), settings.rate_limit_auth)


AuthLimited = Depends(auth_rate_limit)
MetaDep = Annotated[Actor, Depends(request_meta)]


@router.post("/auth/register", status_code=status.HTTP_201_CREATED, response_model=RegisterOut,
             dependencies=[AuthLimited])
async def register(body: RegisterIn, session: SessionDep, settings: SettingsDep, meta: MetaDep) -> Any:
    reg = await service.register(session, settings, meta, email=body.email, password=body.password,
                                 name=body.name, organization_name=body.organization_name)
    return RegisterOut(
        user=UserOut.model_validate(reg.user),
        organization=MembershipOut(org_id=reg.org.id, org_name=reg.org.name, org_slug=reg.org.slug,
                                   role=Role.OWNER),
        tokens=reg.tokens,
    )


@router.post("/auth/login", response_model=TokenOut, dependencies=[AuthLimited],
             responses=problems(401))
async def login(body: LoginIn, session: SessionDep, settings: SettingsDep, meta: MetaDep) -> TokenOut:
    return await service.login(session, settings, meta, email=body.email, password=body.password)


@router.post("/auth/refresh", response_model=TokenOut, dependencies=[AuthLimited], responses=problems(401))
async def refresh(body: RefreshIn, session: SessionDep, settings: SettingsDep, meta: MetaDep) -> TokenOut:
    return await service.refresh(session, settings, meta, body.refresh_token)


@router.post("/auth/password-reset/request", status_code=status.HTTP_202_ACCEPTED, dependencies=[AuthLimited],
             response_class=Response, responses={202: {"description": "Accepted (no body)."}})
async def request_password_reset(body: PasswordResetRequestIn, session: SessionDep, settings: SettingsDep) -> Response:
    """Always 202, whether or not the address has an account (no enumeration)."""
    await service.request_password_reset(session, settings, body.email)
    return Response(status_code=status.HTTP_202_ACCEPTED)


@router.post("/auth/password-reset", status_code=status.HTTP_204_NO_CONTENT, dependencies=[AuthLimited])
async def reset_password(body: PasswordResetIn, session: SessionDep, settings: SettingsDep, meta: MetaDep) -> Response:
    """Sets a new password from an e-mailed token; every session of the user ends."""
    await service.reset_password(session, settings, meta, token=body.token, new=body.new_password)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(user: CurrentUser, session: SessionDep, body: RefreshIn | None = None) -> Response:
    """With a refresh token: end that session. Without: end every session of the user."""
    await service.logout(session, user, body.refresh_token if body else None)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _me(session: SessionDep, user: CurrentUser) -> MeOut:
    rows = await service.memberships(session, user)
    return MeOut(
        **UserOut.model_validate(user).model_dump(),
        memberships=[MembershipOut(org_id=o, org_name=n, org_slug=s, role=Role(r)) for o, n, s, r in rows],
    )


@router.get("/me", response_model=MeOut)
async def me(session: SessionDep, user: CurrentUser) -> MeOut:
    return await _me(session, user)


@router.patch("/me", response_model=MeOut)
async def update_me(body: MeUpdateIn, session: SessionDep, user: CurrentUser) -> MeOut:
    await service.update_profile(session, user, name=body.name, email_opt_out_digest=body.email_opt_out_digest)
    return await _me(session, user)


@router.post("/me/password", response_model=TokenOut)
async def change_password(
    body: PasswordChangeIn, request: Request, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> TokenOut:
    """Changes the password, ends every other session and returns fresh tokens."""
    actor = actor_for(request, Principal(user=user))
    return await service.change_password(session, settings, user, actor, current=body.current_password,
                                         new=body.new_password)
