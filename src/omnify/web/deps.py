"""What every signed-in page needs around its content: who, in which organization, with
which role, and the other organizations for the switcher.

Pages are authorized by exactly the API's gate, ``require(Permission.X)`` (the cookie
session is one more way :func:`omnify.auth.deps.get_principal` finds the caller), so a
viewer's write is refused by the same code whether it comes from curl or a form, and
another organization's object is the same 404.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from omnify.auth import service as auth_service
from omnify.auth import sessions as browser_sessions
from omnify.auth.deps import OrgContext, get_principal, require
from omnify.auth.models import BrowserSession, User
from omnify.auth.permissions import Permission, role_allows
from omnify.core import browser
from omnify.core.db import bind_tenant
from omnify.core.deps import SessionDep, SettingsDep
from omnify.orgs.models import Role


@dataclass(slots=True)
class OrgLink:
    id: uuid.UUID
    name: str
    role: str


@dataclass(slots=True)
class Shell:
    """The layout's view of the caller; ``can`` hides what the server would refuse anyway."""

    user: User
    org_id: uuid.UUID | None = None
    org_name: str | None = None
    role: Role | None = None
    orgs: list[OrgLink] = field(default_factory=list)
    section: str = ""

    def can(self, permission: str) -> bool:
        return self.role is not None and role_allows(self.role, Permission(permission))

    @property
    def is_platform_admin(self) -> bool:
        return bool(self.user.is_platform_admin)

    @property
    def base(self) -> str:
        return f"/orgs/{self.org_id}"


async def csrf_guard(request: Request, settings: SettingsDep) -> None:
    """Every unsafe request to a web route carries its token (forms and HTMX alike)."""
    await browser.require_csrf(request, settings)


async def roll_back(request: Request, session: AsyncSession, user: User | None = None) -> None:
    """Undo a refused write and keep the page that explains it renderable.

    A rollback expires every object the session loaded. The error page then reads the
    signed-in user (its shell) and the browser-session row (the remembered organization);
    an expired attribute would load lazily, which async SQLAlchemy cannot do (MissingGreenlet:
    a 500 instead of the form's 422, found by the web scan). Both are read again here, in the
    new transaction (which re-applies the tenant binding).
    """
    await session.rollback()
    for obj in (user, getattr(request.state, "browser_session", None)):
        if obj is not None and obj in session:
            await session.refresh(obj)


async def _orgs(session: AsyncSession, user: User) -> list[OrgLink]:
    return [OrgLink(id=o, name=n, role=r) for o, n, _s, r in await auth_service.memberships(session, user)]


async def org_shell(request: Request, ctx: OrgContext, section: str = "") -> Shell:
    """The shell of an organization page; remembers the organization for ``GET /``."""
    assert ctx.principal.user is not None
    orgs = await _orgs(ctx.session, ctx.principal.user)
    await bind_tenant(ctx.session, ctx.org_id, user_id=str(ctx.principal.user.id))  # memberships unbinds it
    row = getattr(request.state, "browser_session", None)
    if isinstance(row, BrowserSession):
        await browser_sessions.remember_org(ctx.session, row, ctx.org_id)
    name = next((o.name for o in orgs if o.id == ctx.org_id), None)
    return Shell(user=ctx.principal.user, org_id=ctx.org_id, org_name=name, role=ctx.role, orgs=orgs,
                 section=section)


async def user_shell(session: AsyncSession, user: User, section: str = "") -> Shell:
    return Shell(user=user, orgs=await _orgs(session, user), section=section)


async def signed_in_user(request: Request, session: SessionDep, settings: SettingsDep) -> User | None:
    """The browser's user, or ``None`` (public pages: sign-in, sign-up, reset)."""
    found = await browser_sessions.resolve(session, settings, browser.session_cookie(request, settings))
    if found is None:
        return None
    request.state.browser_session = found[0]
    return found[1]


async def web_user(request: Request, session: SessionDep, settings: SettingsDep) -> User:
    """A signed-in user (via the API gate, so rate limits and CSRF apply the same way)."""
    principal = await get_principal(request, session, settings, None)
    assert principal.user is not None  # no bearer header: only the cookie can have matched
    return principal.user


MaybeUser = Annotated[User | None, Depends(signed_in_user)]
WebUser = Annotated[User, Depends(web_user)]


# The API's gate, one alias per permission pages ask for.
OrgReader = Annotated[OrgContext, Depends(require(Permission.ORG_READ))]
OrgAdmin = Annotated[OrgContext, Depends(require(Permission.ORG_UPDATE))]
MembersReader = Annotated[OrgContext, Depends(require(Permission.MEMBERS_READ))]
MembersManager = Annotated[OrgContext, Depends(require(Permission.MEMBERS_MANAGE))]
Inviter = Annotated[OrgContext, Depends(require(Permission.INVITATIONS_MANAGE))]
KeysManager = Annotated[OrgContext, Depends(require(Permission.API_KEYS_MANAGE))]
AuditReader = Annotated[OrgContext, Depends(require(Permission.AUDIT_READ))]
QuotaReader = Annotated[OrgContext, Depends(require(Permission.QUOTA_READ))]
ClientsReader = Annotated[OrgContext, Depends(require(Permission.CLIENTS_READ))]
ClientsWriter = Annotated[OrgContext, Depends(require(Permission.CLIENTS_WRITE))]
ConnectionsManager = Annotated[OrgContext, Depends(require(Permission.CONNECTIONS_MANAGE))]
WebhooksManager = Annotated[OrgContext, Depends(require(Permission.WEBHOOKS_MANAGE))]
RecsReader = Annotated[OrgContext, Depends(require(Permission.RECOMMENDATIONS_READ))]
Applier = Annotated[OrgContext, Depends(require(Permission.ACTIONS_APPLY))]
Approver = Annotated[OrgContext, Depends(require(Permission.ACTIONS_APPROVE))]


def login_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return "/login?next=" + quote(target, safe="")


def safe_next(value: str | None) -> str:
    """Only our own paths after sign-in (``//evil.example`` and absolute URLs go home)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value
