"""All SQL of the connections domain; every function takes the organization."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import CursorResult, and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from omnify.connections.models import Connection, ConnectionStatus, OAuthState


def add(session: AsyncSession, obj: object) -> None:
    session.add(obj)


# ------------------------------------------------------------------------------ connections
async def get(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, platform: str) -> Connection | None:
    stmt = select(Connection).where(Connection.org_id == org_id, Connection.client_id == client_id,
                                    Connection.platform == platform)
    return (await session.scalars(stmt)).one_or_none()


async def get_by_id(session: AsyncSession, org_id: uuid.UUID, connection_id: uuid.UUID) -> Connection | None:
    stmt = select(Connection).where(Connection.org_id == org_id, Connection.id == connection_id)
    return (await session.scalars(stmt)).one_or_none()


async def list_for_client(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID) -> Sequence[Connection]:
    stmt = (select(Connection).where(Connection.org_id == org_id, Connection.client_id == client_id)
            .order_by(Connection.platform))
    return (await session.scalars(stmt)).all()


async def due_for_sync(session: AsyncSession, org_id: uuid.UUID, now: datetime, limit: int) -> Sequence[Connection]:
    stmt = (select(Connection)
            .where(Connection.org_id == org_id, Connection.status == ConnectionStatus.CONNECTED.value,
                   or_(Connection.next_sync_at.is_(None), Connection.next_sync_at <= now))
            .order_by(Connection.next_sync_at.asc().nulls_first(), Connection.id)
            .limit(limit))
    return (await session.scalars(stmt)).all()


async def expiring(session: AsyncSession, org_id: uuid.UUID, before: datetime, platform: str,
                   limit: int) -> Sequence[Connection]:
    stmt = (select(Connection)
            .where(Connection.org_id == org_id, Connection.platform == platform,
                   Connection.status == ConnectionStatus.CONNECTED.value,
                   Connection.token_expires_at.is_not(None), Connection.token_expires_at <= before)
            .order_by(Connection.token_expires_at, Connection.id)
            .limit(limit))
    return (await session.scalars(stmt)).all()


async def active(session: AsyncSession, org_id: uuid.UUID) -> Sequence[Connection]:
    stmt = select(Connection).where(Connection.org_id == org_id,
                                    Connection.status == ConnectionStatus.CONNECTED.value)
    return (await session.scalars(stmt)).all()


# ------------------------------------------------------------------------------ sync lease
async def try_lock(session: AsyncSession, org_id: uuid.UUID, connection_id: uuid.UUID, token: str,
                   now: datetime, until: datetime) -> bool:
    """Take the sync lease if it is free or expired: one atomic conditional UPDATE, so two
    workers racing for it cannot both win (row lock on PostgreSQL, one writer on SQLite)."""
    stmt = (update(Connection)
            .where(Connection.org_id == org_id, Connection.id == connection_id,
                   or_(Connection.sync_lock_expires_at.is_(None), Connection.sync_lock_expires_at < now))
            .values(sync_lock_token=token, sync_lock_expires_at=until)
            .execution_options(synchronize_session=False))
    result: CursorResult[tuple[()]] = await session.execute(stmt)  # type: ignore[assignment]
    return result.rowcount == 1


async def renew_lock(session: AsyncSession, org_id: uuid.UUID, connection_id: uuid.UUID, token: str,
                     until: datetime) -> bool:
    stmt = (update(Connection)
            .where(Connection.org_id == org_id, Connection.id == connection_id, Connection.sync_lock_token == token)
            .values(sync_lock_expires_at=until)
            .execution_options(synchronize_session=False))
    result: CursorResult[tuple[()]] = await session.execute(stmt)  # type: ignore[assignment]
    return result.rowcount == 1


async def lock_expiry(session: AsyncSession, org_id: uuid.UUID, connection_id: uuid.UUID) -> datetime | None:
    """The lease's end as stored now (a column read, not the session's cached object)."""
    stmt = select(Connection.sync_lock_expires_at).where(Connection.org_id == org_id, Connection.id == connection_id)
    value: datetime | None = await session.scalar(stmt)
    return value


async def unlock(session: AsyncSession, org_id: uuid.UUID, connection_id: uuid.UUID, token: str) -> None:
    await session.execute(
        update(Connection)
        .where(Connection.org_id == org_id, Connection.id == connection_id, Connection.sync_lock_token == token)
        .values(sync_lock_token=None, sync_lock_expires_at=None)
        .execution_options(synchronize_session=False))


# ------------------------------------------------------------------------------ OAuth states
async def state_by_nonce(session: AsyncSession, org_id: uuid.UUID, nonce_hash: str) -> OAuthState | None:
    stmt = select(OAuthState).where(OAuthState.org_id == org_id, OAuthState.nonce_hash == nonce_hash)
    return (await session.scalars(stmt)).one_or_none()


async def consume_state(session: AsyncSession, org_id: uuid.UUID, state_id: uuid.UUID, now: datetime) -> bool:
    """Mark a state used, once: a replayed callback loses this race even when concurrent."""
    stmt = (update(OAuthState)
            .where(OAuthState.org_id == org_id, OAuthState.id == state_id, OAuthState.consumed_at.is_(None))
            .values(consumed_at=now, verifier_blob=None)
            .execution_options(synchronize_session=False))
    result: CursorResult[tuple[()]] = await session.execute(stmt)  # type: ignore[assignment]
    return result.rowcount == 1


async def purge_states(session: AsyncSession, org_id: uuid.UUID, before: datetime) -> None:
    await session.execute(
        delete(OAuthState).where(OAuthState.org_id == org_id,
                                 or_(OAuthState.expires_at < before,
                                     and_(OAuthState.consumed_at.is_not(None), OAuthState.consumed_at < before)))
        .execution_options(synchronize_session=False))
