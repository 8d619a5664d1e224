"""Authentication and the tenant/permission gate every org route passes through.

``require(Permission.X)`` is the only authorization check in the API: it resolves the
caller (JWT or API key), loads their membership in the ``{org_id}`` of the path, binds the
database session to that organization (row-level security on PostgreSQL), applies the
per-user/key/org rate limits, and answers 404 when the caller is not a member (no
existence leak) or 403 when the role or key scope lacks the permission.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated

import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from omnify.auth import repository as auth_repo
from omnify.auth.models import User
from omnify.auth.permissions import API_KEY_SCOPES, Permission, role_allows, scopes_allow
from omnify.core.context import Actor
from omnify.core.db import bind_tenant, utcnow
from omnify.core.deps import SessionDep, SettingsDep, client_ip
from omnify.core.errors import Forbidden, NotFound, Unauthorized
from omnify.core.security import API_KEY_PREFIX, InvalidToken, decode_access_token, sha256_hex
from omnify.orgs import quotas
from omnify.orgs import repository as org_repo
from omnify.orgs.models import ApiKey, Role

bearer = HTTPBearer(auto_error=False, description="Access JWT from /auth/login, or an API key (omk_...).")
API_KEY_TOUCH_INTERVAL = timedelta(minutes=1)


@dataclass(slots=True)
class Principal:
    user: User | None = None
    api_key: ApiKey | None = None
    scopes: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return "user" if self.user else "api_key"

    @property
    def id(self) -> str:
        if self.user:
            return str(self.user.id)
        assert self.api_key is not None
        return str(self.api_key.id)

    @property
    def label(self) -> str:
        if self.user:
            return self.user.email
        assert self.api_key is not None
        return f"{self.api_key.prefix} ({self.api_key.name})"


@dataclass(slots=True)
class OrgContext:
    org_id: uuid.UUID
    principal: Principal
    role: Role
    actor: Actor
    session: AsyncSession


def actor_for(request: Request, principal: Principal) -> Actor:
    return Actor(
        actor_type=principal.kind,
        actor_id=principal.id,
        label=principal.label,
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
        request_id=getattr(request.state, "request_id", None),
    )


async def _principal_from_api_key(request: Request, session: AsyncSession, token: str) -> Principal:
    key_hash = sha256_hex(token)
    await bind_tenant(session, None, api_key_hash=key_hash)
    key = await org_repo.get_api_key_by_hash(session, key_hash)
    now = utcnow()
    if key is None or key.revoked_at is not None or (key.expires_at and key.expires_at <= now):
        raise Unauthorized("The API key is unknown, revoked or expired.", code="invalid-api-key")
    await bind_tenant(session, key.org_id, api_key_hash=key_hash)  # a key acts only in its own org
    if key.last_used_at is None or now - key.last_used_at > API_KEY_TOUCH_INTERVAL:
        key.last_used_at = now  # throttled so a busy key does not write on every call
        await session.commit()
    settings = request.app.state.settings
    await request.app.state.rate_limiter.hit(request, "api_key", str(key.id), settings.rate_limit_api_key)
    return Principal(api_key=key, scopes=[s for s in key.scopes if s in API_KEY_SCOPES])


async def get_principal(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if credentials is None or not credentials.credentials:
        raise Unauthorized("Send `Authorization: Bearer <access token or API key>`.")
    token = credentials.credentials
    if token.startswith(API_KEY_PREFIX):
        principal = await _principal_from_api_key(request, session, token)
    else:
        try:
            claims = decode_access_token(settings, token)
        except InvalidToken as exc:
            raise Unauthorized(str(exc).capitalize() + ".", code="invalid-token") from exc
        user = await auth_repo.get_user(session, claims.user_id)
        if user is None or not user.is_active or user.session_version != claims.session_version:
            raise Unauthorized("The session has ended; log in again.", code="invalid-token")
        await request.app.state.rate_limiter.hit(request, "user", str(user.id), settings.rate_limit_user)
        principal = Principal(user=user)
    request.state.principal_id = principal.id
    structlog.contextvars.bind_contextvars(
        user_id=str(principal.user.id) if principal.user else None,
        api_key_id=str(principal.api_key.id) if principal.api_key else None,
    )
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def current_user(principal: PrincipalDep) -> User:
    if principal.user is None:
        raise Forbidden("This endpoint needs a user session, not an API key.", code="user-required")
    return principal.user


CurrentUser = Annotated[User, Depends(current_user)]


def require(permission: Permission) -> Callable[..., Awaitable[OrgContext]]:
    """Dependency factory: the caller must hold ``permission`` in the path's organization."""

    async def dependency(
        org_id: uuid.UUID, request: Request, session: SessionDep, principal: PrincipalDep, settings: SettingsDep
    ) -> OrgContext:
        if principal.api_key is not None:
            if principal.api_key.org_id != org_id:
                raise NotFound("Organization not found.")
            role = API_KEY_SCOPES["write" if "write" in principal.scopes else "read"]
            await bind_tenant(session, org_id)
            if not scopes_allow(principal.scopes, permission):
                raise Forbidden(f"This API key's scopes do not allow {permission.value}.", code="insufficient-scope")
        else:
            assert principal.user is not None
            await bind_tenant(session, org_id, user_id=str(principal.user.id))
            membership = await org_repo.get_membership(session, org_id, principal.user.id)
            if membership is None:
                raise NotFound("Organization not found.")
            role = membership.role
            if not role_allows(role, permission):
                raise Forbidden(f"Your role ({role.value}) does not allow {permission.value}.",
                                code="insufficient-role")
        limiter = request.app.state.rate_limiter
        await limiter.hit(request, "org", str(org_id), settings.rate_limit_org)
        daily = (await quotas.limits_for(session, org_id))["api_calls_per_day"]
        await limiter.hit(request, "org", f"{org_id}:daily", f"{daily}/day")
        request.state.org_id = str(org_id)
        structlog.contextvars.bind_contextvars(org_id=str(org_id))
        return OrgContext(org_id=org_id, principal=principal, role=role, actor=actor_for(request, principal),
                          session=session)

    return dependency


async def require_platform_admin(user: CurrentUser) -> User:
    if not user.is_platform_admin:
        raise Forbidden("Platform administrators only.", code="platform-admin-required")
    return user


PlatformAdmin = Annotated[User, Depends(require_platform_admin)]
