"""Browser sessions of the web app: start, resolve, end.

The cookie carries an opaque random token; the database keeps its SHA-256 (see
:class:`omnify.auth.models.BrowserSession` for why this is server-side rather than the
API's rotating refresh tokens). A session ends when it is logged out, reaches its
absolute lifetime, sits idle too long, or when the user's ``session_version`` moves on
(password change or reset, "log out everywhere"), or the account is disabled.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from omnify.auth import repository
from omnify.auth.models import BrowserSession, User
from omnify.core.context import Actor
from omnify.core.db import utcnow
from omnify.core.security import sha256_hex
from omnify.settings import Settings

SESSION_PREFIX = "obs_"
#: ``last_seen_at`` is written at most this often, so page views do not all write.
TOUCH_INTERVAL = timedelta(minutes=5)
_MAX_TOKEN_LENGTH = 128


def new_session_token() -> str:
    return SESSION_PREFIX + secrets.token_urlsafe(32)


async def start(session: AsyncSession, settings: Settings, user: User, actor: Actor,
                org_id: uuid.UUID | None = None) -> str:
    """Create a session for ``user``; returns the cookie value (shown nowhere else). Commits."""
    token = new_session_token()
    now = utcnow()
    repository.add(session, BrowserSession(
        user_id=user.id, token_hash=sha256_hex(token), session_version=user.session_version,
        expires_at=now + timedelta(seconds=settings.web_session_ttl_seconds), last_seen_at=now,
        last_org_id=org_id, ip=actor.ip, user_agent=(actor.user_agent or "")[:400] or None,
    ))
    await session.commit()
    return token


def _usable(row: BrowserSession, user: User, settings: Settings) -> bool:
    now = utcnow()
    return (row.revoked_at is None and row.expires_at > now
            and now - row.last_seen_at <= timedelta(seconds=settings.web_session_idle_seconds)
            and user.is_active and user.session_version == row.session_version)


async def resolve(session: AsyncSession, settings: Settings,
                  token: str | None) -> tuple[BrowserSession, User] | None:
    """The live session and user behind a cookie value, or ``None``."""
    if not token or not token.startswith(SESSION_PREFIX) or len(token) > _MAX_TOKEN_LENGTH:
        return None
    found = await repository.get_browser_session(session, sha256_hex(token))
    if found is None or not _usable(*found, settings):
        return None
    row, user = found
    now = utcnow()
    if now - row.last_seen_at > TOUCH_INTERVAL:
        row.last_seen_at = now
        await session.commit()
    return row, user


async def end(session: AsyncSession, token: str | None) -> None:
    """Log this browser out (unknown or already ended tokens are fine). Commits."""
    if not token or len(token) > _MAX_TOKEN_LENGTH:
        return
    found = await repository.get_browser_session(session, sha256_hex(token))
    if found is not None and found[0].revoked_at is None:
        found[0].revoked_at = utcnow()
        await session.commit()


async def end_all(session: AsyncSession, user: User) -> None:
    """Log the user out of every browser and every API session. Commits."""
    now = utcnow()
    await repository.revoke_browser_sessions(session, user.id, now)
    await repository.revoke_all_for_user(session, user.id, now)
    user.session_version += 1
    await session.commit()


async def remember_org(session: AsyncSession, row: BrowserSession, org_id: uuid.UUID) -> None:
    """Where ``GET /`` lands next time; written only when it changes."""
    if row.last_org_id != org_id:
        row.last_org_id = org_id
        await session.commit()
