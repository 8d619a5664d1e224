"""Emit internal events into the outbox (see :mod:`omnify.events.models`)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from omnify.core.db import utcnow
from omnify.events.models import DomainEvent

_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
#: Payloads are summaries for webhooks and e-mails, not documents: keep them small.
MAX_PAYLOAD_BYTES = 16 * 1024


async def emit(session: AsyncSession, org_id: uuid.UUID, type: str, payload: dict[str, Any]) -> DomainEvent:
    """Queue one event in the caller's transaction; it commits (or not) with the change.

    Payload values must be JSON-serialisable once converted by ``str`` (ids, datetimes);
    they are normalised here so consumers never see Python-only types. Never put a
    secret in a payload: events leave the system as webhooks.
    """
    if not _TYPE.fullmatch(type):
        raise ValueError(f"event type {type!r} must look like 'resource.action'")
    normalised: dict[str, Any] = json.loads(json.dumps(payload, default=str))
    if len(json.dumps(normalised)) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"event {type} payload exceeds {MAX_PAYLOAD_BYTES} bytes")
    event = DomainEvent(id=uuid.uuid4(), org_id=org_id, type=type, payload=normalised, created_at=utcnow())
    session.add(event)
    await session.flush()
    return event


async def list_for_org(
    session: AsyncSession, org_id: uuid.UUID, type: str | None = None, limit: int = 100
) -> Sequence[DomainEvent]:
    """Newest first; for consumers and tests (the dispatcher has its own queue query)."""
    stmt = select(DomainEvent).where(DomainEvent.org_id == org_id)
    if type:
        stmt = stmt.where(DomainEvent.type == type)
    stmt = stmt.order_by(DomainEvent.created_at.desc(), DomainEvent.id.desc()).limit(limit)
    return (await session.scalars(stmt)).all()
