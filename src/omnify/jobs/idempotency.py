"""Exactly-once effects on top of at-least-once delivery.

Brokers redeliver: a worker killed after committing its effect but before acknowledging
the message gets the message handed to another worker. Making the *effect* idempotent
is the only sound answer, and the cheapest general way is a claim row with a unique key,
inserted in the same database transaction as the effect:

    with sync_session() as session, once(session, f"invoice:{invoice_id}") as first:
        if first:
            session.add(Invoice(...))

Either the transaction commits both the claim and the effect, or neither; a second
delivery's insert hits the unique key and ``first`` is false. On PostgreSQL a concurrent
duplicate blocks on the unique index until the first commits, then sees the conflict.

Tasks declare their key once (``@celery_app.task(idempotency_key=lambda order_id: ...)``);
:class:`omnify.jobs.base.OmnifyTask` computes it per run and :func:`once` picks it up
when called without an explicit key.
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import Insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from omnify.core.db import utcnow
from omnify.jobs.models import JobRun

log = structlog.get_logger(__name__)

MAX_KEY_LENGTH = 255


@dataclass(frozen=True, slots=True)
class RunIdentity:
    """The idempotency key of the task run in progress, with what produced it."""

    key: str
    task_name: str | None = None
    task_id: str | None = None


current_run: contextvars.ContextVar[RunIdentity | None] = contextvars.ContextVar(
    "omnify_job_current_run", default=None
)


class MissingIdempotencyKey(RuntimeError):
    """``once()`` was called without a key outside a task that declares one."""


def _identity(key: str | None) -> RunIdentity:
    running = current_run.get()
    if key is None:
        if running is None:
            raise MissingIdempotencyKey(
                "once() needs a key: pass one, or declare idempotency_key= on the task"
            )
        return running
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"idempotency key must be 1..{MAX_KEY_LENGTH} characters")
    if running is not None:
        return RunIdentity(key, running.task_name, running.task_id)
    return RunIdentity(key)


def _claim_statement(dialect: str, ident: RunIdentity) -> Insert:
    values: dict[str, Any] = {
        "key": ident.key,
        "task_name": ident.task_name,
        "task_id": ident.task_id,
    }
    # Defaults normally applied by the ORM must be explicit in a Core insert.
    now = utcnow()
    values.update(id=uuid.uuid4(), created_at=now, updated_at=now)
    if dialect == "postgresql":
        return (
            postgresql.insert(JobRun)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(JobRun.id)
        )
    if dialect == "sqlite":
        return (
            sqlite.insert(JobRun)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(JobRun.id)
        )
    raise NotImplementedError(f"idempotency claims are not implemented for {dialect}")


def claim(session: Session, key: str | None = None) -> bool:
    """Insert the claim in the session's transaction; false if it already exists."""
    ident = _identity(key)
    # RETURNING rather than rowcount: drivers disagree on rowcount for ON CONFLICT.
    result = session.execute(_claim_statement(session.get_bind().dialect.name, ident))
    first = result.first() is not None
    if not first:
        log.info("job.duplicate_effect_skipped", idempotency_key=ident.key)
    return first


async def aclaim(session: AsyncSession, key: str | None = None) -> bool:
    """:func:`claim` for services that run on an ``AsyncSession``."""
    ident = _identity(key)
    result = await session.execute(_claim_statement(session.get_bind().dialect.name, ident))
    first = result.first() is not None
    if not first:
        log.info("job.duplicate_effect_skipped", idempotency_key=ident.key)
    return first


@contextmanager
def once(session: Session, key: str | None = None) -> Iterator[bool]:
    """Claim ``key`` inside the caller's transaction; yields whether to do the effect.

    The claim only counts once the caller commits. If the block raises, the caller's
    transaction must roll back (``sync_session`` does), taking the claim with it, so a
    retry can claim again.
    """
    yield claim(session, key)


@asynccontextmanager
async def aonce(session: AsyncSession, key: str | None = None) -> AsyncIterator[bool]:
    """:func:`once` for an ``AsyncSession``."""
    yield await aclaim(session, key)
