"""SQL for users and refresh tokens (global tables, not tenant-scoped)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import case, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from omnify.auth.models import BrowserSession, LoginThrottle, RefreshToken, User
from omnify.core.db import insert_once


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


async def get_user_by_email(session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(User.email == email.lower()))


def add(session: AsyncSession, obj: object) -> None:
    session.add(obj)


async def get_refresh(session: AsyncSession, token_hash: str, *, for_update: bool = False) -> RefreshToken | None:
    stmt = select(RefreshToken).where(RefreshToken.token_hash == token_hash)
    if for_update:
        stmt = stmt.with_for_update()
    return await session.scalar(stmt)


async def revoke_family(session: AsyncSession, family_id: uuid.UUID, now: datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def revoke_all_for_user(session: AsyncSession, user_id: uuid.UUID, now: datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def get_browser_session(session: AsyncSession, token_hash: str) -> tuple[BrowserSession, User] | None:
    """The session and its user in one round trip (every signed-in page asks)."""
    row = (await session.execute(
        select(BrowserSession, User).join(User, User.id == BrowserSession.user_id)
        .where(BrowserSession.token_hash == token_hash)
    )).first()
    return (row[0], row[1]) if row is not None else None


async def revoke_browser_sessions(session: AsyncSession, user_id: uuid.UUID, now: datetime) -> None:
    await session.execute(
        update(BrowserSession)
        .where(BrowserSession.user_id == user_id, BrowserSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )


# ------------------------------------------------------------------ login throttles
async def get_throttles(session: AsyncSession, keys: list[str]) -> dict[str, LoginThrottle]:
    rows = await session.scalars(select(LoginThrottle).where(LoginThrottle.key.in_(keys)))
    return {row.key: row for row in rows}


async def count_failure(session: AsyncSession, key: str, account: str, now: datetime, window_start: datetime) -> int:
    """Add one failure to ``key`` (restarting the count when the last one is older than
    ``window_start``) and return the new count; atomic under concurrent attempts."""
    await insert_once(session, LoginThrottle, {"key": key, "account": account, "failures": 0, "updated_at": now},
                      ["key"])
    stale = or_(LoginThrottle.last_failed_at.is_(None), LoginThrottle.last_failed_at < window_start)
    failures = await session.scalar(
        update(LoginThrottle).where(LoginThrottle.key == key)
        .values(failures=case((stale, 1), else_=LoginThrottle.failures + 1), last_failed_at=now, updated_at=now)
        .returning(LoginThrottle.failures)
        .execution_options(synchronize_session=False)
    )
    return int(failures or 0)


async def block_until(session: AsyncSession, key: str, until: datetime) -> None:
    await session.execute(update(LoginThrottle).where(LoginThrottle.key == key).values(blocked_until=until)
                          .execution_options(synchronize_session=False))


async def mark_known(session: AsyncSession, key: str, account: str, now: datetime, until: datetime) -> None:
    """A successful sign-in from this pair: clear its failures and remember it."""
    await insert_once(session, LoginThrottle, {"key": key, "account": account, "failures": 0, "updated_at": now},
                      ["key"])
    await session.execute(
        update(LoginThrottle).where(LoginThrottle.key == key)
        .values(failures=0, blocked_until=None, known_until=until, updated_at=now)
        .execution_options(synchronize_session=False)
    )


async def clear_failures(session: AsyncSession, account: str, now: datetime, *, keys: list[str] | None = None) -> None:
    """Forget failures of an e-mail (every pair and the account row, or only ``keys``)."""
    stmt = update(LoginThrottle).where(LoginThrottle.account == account)
    if keys is not None:
        stmt = stmt.where(LoginThrottle.key.in_(keys))
    await session.execute(stmt.values(failures=0, blocked_until=None, updated_at=now)
                          .execution_options(synchronize_session=False))


async def purge_throttles(session: AsyncSession, idle_before: datetime, now: datetime) -> int:
    """Delete rows idle since ``idle_before`` that no longer remember a known pair."""
    result = await session.execute(
        delete(LoginThrottle).where(
            LoginThrottle.updated_at < idle_before,
            or_(LoginThrottle.known_until.is_(None), LoginThrottle.known_until < now),
            or_(LoginThrottle.blocked_until.is_(None), LoginThrottle.blocked_until < now),
        ).execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def purge_refresh_tokens(session: AsyncSession, now: datetime) -> int:
    """Expired refresh tokens (used, revoked or not: none can be presented any more)."""
    result = await session.execute(delete(RefreshToken).where(RefreshToken.expires_at < now)
                                   .execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


async def purge_browser_sessions(session: AsyncSession, now: datetime, revoked_before: datetime) -> int:
    result = await session.execute(
        delete(BrowserSession).where(or_(BrowserSession.expires_at < now, BrowserSession.revoked_at < revoked_before))
        .execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)
