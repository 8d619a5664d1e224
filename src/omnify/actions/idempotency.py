"""``Idempotency-Key`` for the action endpoints: same key, same answer, one effect.

Protocol (after the IETF httpapi Idempotency-Key draft and Stripe's behaviour):

1. :func:`begin` inserts ``(org, principal, key)`` with the request's fingerprint in its
   own committed transaction. The unique constraint makes exactly one concurrent
   request the owner.
2. The owner runs the action and :func:`complete` stores the response *in the same
   transaction as the action's effect*: either both commit or neither does.
3. Any later request with that key gets the stored status and body back
   (``Idempotent-Replayed: true``) without touching the platform; the same key with a
   different request is a 422; while the owner is still running it is a 409.
4. If the owner fails with an error, :func:`release` deletes the claim so the client can
   retry with the same key (nothing was applied: the action service compensates
   partial platform changes before raising).

Records expire after :data:`KEY_TTL`; an expired key is treated as new.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from omnify.actions.models import IdempotencyRecord, IdempotencyStatus
from omnify.core.db import utcnow
from omnify.core.errors import BadRequest, Conflict, UnprocessableEntity

KEY_TTL = timedelta(hours=24)
#: A stuck in-progress claim (a crashed process) may be taken over after this long.
IN_PROGRESS_TIMEOUT = timedelta(minutes=10)
_KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")  # visible ASCII, as the draft's sf-string allows
HEADER = "Idempotency-Key"


class IdempotencyKeyReused(UnprocessableEntity):
    code, title = "idempotency-key-reused", "Idempotency-Key reused with another request"


class IdempotencyInProgress(Conflict):
    code, title = "idempotency-in-progress", "A request with this Idempotency-Key is in progress"


@dataclass(frozen=True, slots=True)
class Replay:
    status: int
    body: dict[str, Any]


def validate_key(key: str | None) -> str | None:
    if key is None:
        return None
    key = key.strip().strip('"')  # the draft sends it as a structured-field string
    if not _KEY_RE.fullmatch(key):
        raise BadRequest("Idempotency-Key must be 1-255 visible ASCII characters.", code="invalid-idempotency-key")
    return key


def fingerprint(method: str, route: str, path_params: dict[str, Any], body: Any) -> str:
    raw = json.dumps({"m": method, "r": route, "p": path_params, "b": body}, sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


async def _load(session: AsyncSession, org_id: uuid.UUID, principal_id: str, key: str) -> IdempotencyRecord | None:
    return await session.scalar(select(IdempotencyRecord).where(
        IdempotencyRecord.org_id == org_id, IdempotencyRecord.principal_id == principal_id,
        IdempotencyRecord.key == key))


async def begin(
    session: AsyncSession, org_id: uuid.UUID, principal_id: str, key: str, fp: str
) -> IdempotencyRecord | Replay:
    """Claim the key (committed) or return the stored answer of the first request."""
    now = utcnow()
    for _ in range(2):
        existing = await _load(session, org_id, principal_id, key)
        if existing is not None:
            stale = existing.expires_at <= now or (
                existing.status == IdempotencyStatus.IN_PROGRESS
                and existing.created_at <= now - IN_PROGRESS_TIMEOUT
            )
            if not stale:
                if existing.fingerprint != fp:
                    raise IdempotencyKeyReused(
                        "This Idempotency-Key was used for a different request; use a new key.")
                if existing.status == IdempotencyStatus.COMPLETED and existing.response_status is not None:
                    return Replay(existing.response_status, dict(existing.response_body or {}))
                raise IdempotencyInProgress("The first request with this key is still running; retry shortly.",
                                            headers={"Retry-After": "2"})
            await session.delete(existing)
            await session.flush()
        record = IdempotencyRecord(id=uuid.uuid4(), org_id=org_id, principal_id=principal_id, key=key,
                                   fingerprint=fp, status=IdempotencyStatus.IN_PROGRESS.value,
                                   expires_at=now + KEY_TTL, created_at=now, updated_at=now)
        session.add(record)
        try:
            await session.commit()
        except IntegrityError:  # a concurrent request claimed it first: read its state
            await session.rollback()
            continue
        return record
    raise IdempotencyInProgress("The first request with this key is still running; retry shortly.",
                                headers={"Retry-After": "2"})


def complete(record: IdempotencyRecord, status: int, body: dict[str, Any]) -> None:
    """Store the answer; commits with the caller's transaction (the action's effect)."""
    record.status = IdempotencyStatus.COMPLETED.value
    record.response_status = status
    record.response_body = body
    record.updated_at = utcnow()


async def release(session: AsyncSession, record: IdempotencyRecord) -> None:
    """Drop a claim whose request failed, so the same key can be retried."""
    org_id, record_id = record.org_id, record.id  # read before the rollback expires the instance
    await session.rollback()
    await session.execute(delete(IdempotencyRecord).where(
        IdempotencyRecord.org_id == org_id, IdempotencyRecord.id == record_id))
    await session.commit()


async def purge_expired(session: AsyncSession, org_id: uuid.UUID) -> int:
    result = await session.execute(delete(IdempotencyRecord).where(
        IdempotencyRecord.org_id == org_id, IdempotencyRecord.expires_at <= utcnow()))
    return int(getattr(result, "rowcount", 0) or 0)
