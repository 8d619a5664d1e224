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
from fastapi import BackgroundTasks, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from omnify.auth import principals
from omnify.auth import repository as auth_repo
from omnify.auth import sessions as browser_sessions
from omnify.auth.models import User
from omnify.auth.permissions import API_KEY_SCOPES, Permission, role_allows, scopes_allow
from omnify.core import browser
from omnify.core.context import Actor
from omnify.core.db import bind_tenant, set_tenant, utcnow
from omnify.core.deps import SessionDep, SettingsDep, client_ip
from omnify.core.errors import Forbidden, NotFound, Unauthorized
from omnify.core.openapi import raises
from omnify.core.ratelimit import Limit, PendingLimits
from omnify.core.security import API_KEY_PREFIX, InvalidToken, decode_access_token, sha256_hex
from omnify.orgs import quotas
from omnify.orgs.models import Role
from omnify.settings import Settings

bearer = HTTPBearer(auto_error=False, description="Access JWT from /auth/login, or an API key (omk_...).")
API_KEY_TOUCH_INTERVAL = timedelta(minutes=1)


@dataclass(slots=True)
class Principal:
    """The caller. ``user`` is the ORM row only where this request loaded it (browser
    sessions, :func:`current_user`); the cached paths carry immutable facts instead
    (``user_facts`` / ``key``), so nothing shared between requests can be mutated."""

    user: User | None = None
    scopes: list[str] = field(default_factory=list)
    user_facts: principals.UserFacts | None = None
    key: principals.KeyFacts | None = None

    @property
    def kind(self) -> str:
        return "api_key" if self.key is not None else "user"

    @property
    def user_id(self) -> uuid.UUID | None:
        if self.user is not None:
            return self.user.id
        return self.user_facts.id if self.user_facts is not None else None

    @property
    def id(self) -> str:
        if self.key is not None:
            return str(self.key.id)
        user_id = self.user_id
        assert user_id is not None
        return str(user_id)

    @property
    def label(self) -> str:
        if self.key is not None:
            return self.key.label
        if self.user is not None:
            return self.user.email
        assert self.user_facts is not None
        return self.user_facts.email

    def limit(self, settings: Settings) -> Limit:
        """This caller's own rate limit."""
        if self.key is not None:
            return Limit("api_key", str(self.key.id), settings.rate_limit_api_key)
        return Limit("user", self.id, settings.rate_limit_user)


@dataclass(slots=True)
class OrgContext:
    org_id: uuid.UUID
    principal: Principal
    role: Role
    actor: Actor
    session: AsyncSession
    #: Set by ``require(..., defer_limits=True)``: the route applies them (one Redis trip).
    limits: PendingLimits | None = None


def actor_for(request: Request, principal: Principal) -> Actor:
    return Actor(
        actor_type=principal.kind,
        actor_id=principal.id,
        label=principal.label,
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
        request_id=getattr(request.state, "request_id", None),
    )


async def _principal_from_api_key(request: Request, session: AsyncSession, token: str,
                                  background: BackgroundTasks) -> Principal:
    key_hash = sha256_hex(token)
    facts = await principals.key_facts(session, key_hash)
    now = utcnow()
    if facts is None or facts.revoked or (facts.expires_at and facts.expires_at <= now):
        raise Unauthorized("The API key is unknown, revoked or expired.", code="invalid-api-key")
    if facts.last_used_at is None or now - facts.last_used_at > API_KEY_TOUCH_INTERVAL:
        # Throttled so a busy key does not write on every call, and written after the
        # response, in a transaction of its own: using a key costs the request nothing.
        principals.note_key_used(key_hash, facts, now)
        background.add_task(principals.touch_key, request.app.state.db, facts, now)
    return Principal(key=facts, scopes=[s for s in facts.scopes if s in API_KEY_SCOPES])


async def _principal_from_browser_session(request: Request, session: AsyncSession, settings: Settings) -> Principal:
    """The web app's cookie session: the same gate as a bearer token, plus CSRF on writes
    (a cookie is sent by the browser on its own, a bearer header never is)."""
    found = await browser_sessions.resolve(session, settings, browser.session_cookie(request, settings))
    if found is None:
        raise Unauthorized("Send `Authorization: Bearer <access token or API key>`.")
    await browser.require_csrf(request, settings)
    request.state.browser_session = found[0]
    return Principal(user=found[1])


@raises(401, 403)  # no or a bad token or key; a browser session without its CSRF token
async def resolve_principal(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    background: BackgroundTasks,
) -> Principal:
    """Who is calling, without counting the call against their rate limit (see
    :func:`get_principal` and :func:`require`, which do)."""
    if credentials is None or not credentials.credentials:
        principal = await _principal_from_browser_session(request, session, settings)
    elif (token := credentials.credentials).startswith(API_KEY_PREFIX):
        principal = await _principal_from_api_key(request, session, token, background)
    else:
        try:
            claims = decode_access_token(settings, token)
        except InvalidToken as exc:
            raise Unauthorized(str(exc).capitalize() + ".", code="invalid-token") from exc
        facts = await principals.user_facts(session, claims.user_id)
        if facts is None or not facts.is_active or facts.session_version != claims.session_version:
            raise Unauthorized("The session has ended; log in again.", code="invalid-token")
        principal = Principal(user_facts=facts)
    request.state.principal_id = principal.id
    structlog.contextvars.bind_contextvars(
        user_id=str(principal.user_id) if principal.user_id else None,
        api_key_id=str(principal.key.id) if principal.key else None,
    )
    return principal


_PRINCIPAL_LIMITED = "principal_limit_claimed"


def _claim_principal_limit(request: Request) -> bool:
    """True the first time per request: the caller's own limit is counted once, by whichever
    of :func:`get_principal` and :func:`require` runs first."""
    if getattr(request.state, _PRINCIPAL_LIMITED, False):
        return False
    setattr(request.state, _PRINCIPAL_LIMITED, True)
    return True


@raises(429)
async def get_principal(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The caller, counted against their own rate limit. (Routes behind :func:`require`
    take the faster path: the touch of an API key's ``last_used_at`` after the response,
    the limits in one trip with the organization's.)"""
    background = BackgroundTasks()
    principal = await resolve_principal(request, session, settings, credentials, background)
    await background()
    if _claim_principal_limit(request):
        await request.app.state.rate_limiter.hit_many(request, [principal.limit(settings)])
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


@raises(401, 403)  # 403: an API key where a user is needed
async def current_user(principal: PrincipalDep, session: SessionDep) -> User:
    """The calling user's row, loaded in this request's session (routes change it)."""
    if principal.kind != "user":
        raise Forbidden("This endpoint needs a user session, not an API key.", code="user-required")
    if principal.user is None:
        assert principal.user_id is not None
        principal.user = await auth_repo.get_user(session, principal.user_id)
        if principal.user is None:
            raise Unauthorized("The session has ended; log in again.", code="invalid-token")
    return principal.user


CurrentUser = Annotated[User, Depends(current_user)]


def require(permission: Permission, *, defer_limits: bool = False) -> Callable[..., Awaitable[OrgContext]]:
    """Dependency factory: the caller must hold ``permission`` in the path's organization.

    The caller's, the organization's and the daily-quota rate limits are checked together
    in one trip to the limiter. With ``defer_limits`` they are *not* checked here: the
    route gets them as ``ctx.limits`` and must apply them before doing anything else (the
    analytics route does, in the same Redis round trip as its cache look-up).

    Known callers cost no database round trip: facts about keys, users, roles and plan
    limits are cached briefly (see :mod:`omnify.auth.principals`).
    """

    @raises(403, 404, 429)
    async def dependency(
        org_id: uuid.UUID, request: Request, session: SessionDep, settings: SettingsDep,
        principal: Annotated[Principal, Depends(resolve_principal)],
    ) -> OrgContext:
        if principal.key is not None:
            if principal.key.org_id != org_id:
                raise NotFound("Organization not found.")
            role = API_KEY_SCOPES["write" if "write" in principal.scopes else "read"]
            set_tenant(session, org_id)
            if not scopes_allow(principal.scopes, permission):
                raise Forbidden(f"This API key's scopes do not allow {permission.value}.", code="insufficient-scope")
        else:
            user_id = principal.user_id
            assert user_id is not None
            await bind_tenant(session, org_id, user_id=str(user_id))
            found = await principals.role_of(session, org_id, user_id)
            if found is None:
                raise NotFound("Organization not found.")
            role = found
            if not role_allows(role, permission):
                raise Forbidden(f"Your role ({role.value}) does not allow {permission.value}.",
                                code="insufficient-role")
        daily = (await quotas.limits_for(session, org_id))["api_calls_per_day"]
        checks = [Limit("org", str(org_id), settings.rate_limit_org), Limit("org", f"{org_id}:daily", f"{daily}/day")]
        if _claim_principal_limit(request):
            checks.insert(0, principal.limit(settings))
        pending = PendingLimits(request.app.state.rate_limiter, request, checks)
        if not defer_limits:
            await pending.apply()
        request.state.org_id = str(org_id)
        structlog.contextvars.bind_contextvars(org_id=str(org_id))
        return OrgContext(org_id=org_id, principal=principal, role=role, actor=actor_for(request, principal),
                          session=session, limits=pending if defer_limits else None)

    return dependency


@raises(403)
async def require_platform_admin(user: CurrentUser) -> User:
    if not user.is_platform_admin:
        raise Forbidden("Platform administrators only.", code="platform-admin-required")
    return user


PlatformAdmin = Annotated[User, Depends(require_platform_admin)]
