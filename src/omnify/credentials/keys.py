"""The process' view of the master key ring, and rotation of every data key under it.

Rotation without downtime, for a writable secrets backend (file, Vault, AWS):

1. ``omnify keys rotate`` adds a new master key and makes it active (older keys stay in
   the ring, so everything stored keeps decrypting), then re-wraps every data key under
   it. Other processes notice the new key the first time they meet a record wrapped by
   it (:meth:`KeyRingCache.for_key`) and start encrypting with it when their cached ring
   expires (:data:`RING_TTL_SECONDS`).
2. ``omnify keys retire OLD_ID`` once that TTL has passed: re-wraps the stragglers a
   stale process wrapped under the old key meanwhile, checks none is left, and only
   then removes the key from the backend.

With the env backend the process cannot change its own environment: ``rotate`` prints
the new ``OMNIFY_MASTER_KEYS`` value to deploy, and ``omnify keys rewrap`` does step 1's
second half once every process runs with it.

Payloads are never decrypted by rotation: only the 32-byte data keys are unwrapped and
wrapped again (:func:`omnify.core.crypto.rewrap`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import anyio.to_thread
import structlog
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession

from omnify.core.crypto import CryptoError, EncryptedBlob, needs_rewrap
from omnify.core.crypto import rewrap as rewrap_blob
from omnify.core.db import Database, bind_tenant
from omnify.core.secrets import (
    KEY_RING_TTL_SECONDS,
    KeyRing,
    KeyRingCache,
    MasterKeyBackend,
    backend_from_settings,
    keyring_cache,
)
from omnify.credentials import repository
from omnify.settings import Settings

log = structlog.get_logger(__name__)

#: How long a process trusts its cached ring; also the wait before retiring a key.
RING_TTL_SECONDS = KEY_RING_TTL_SECONDS
_KEY_ID_TIME = re.compile(r"^mk-(\d{8}T\d{6}Z)-")


def keyrings_for(settings: Settings) -> KeyRingCache:
    """The process-wide cached key ring for this configuration (shared with webhook secrets)."""
    return keyring_cache(settings)


# ------------------------------------------------------------------------------ re-wrap
@dataclass
class RewrapReport:
    active_key_id: str
    rewrapped: int = 0
    #: Rows changed by someone else between read and write: already under a fresh key.
    changed_meanwhile: int = 0
    failed: list[str] = field(default_factory=list)


#: (org_id, active_key_id, after_id, limit) -> [(row id, blob bytes)]
RowSource = Callable[[AsyncSession, uuid.UUID, str, uuid.UUID | None, int],
                     Awaitable[Sequence[tuple[uuid.UUID, bytes]]]]
#: (org_id, row id, old blob, new blob, key id) -> swapped?
RowSwap = Callable[[AsyncSession, uuid.UUID, uuid.UUID, bytes, bytes, str], Awaitable[bool]]

#: Every column holding envelope-encrypted blobs. Another domain that stores encrypted
#: data registers its pair here so ``omnify keys rotate`` covers it too.
ENCRYPTED_COLUMNS: dict[str, tuple[RowSource, RowSwap]] = {
    "platform_credentials": (repository.not_under_key, repository.swap_blob),
}


async def _org_ids(db: Database) -> list[uuid.UUID]:
    from omnify.clients import service as clients

    async with db.sessionmaker() as session:
        return await clients.all_org_ids(session)


async def rewrap_all(db: Database, ring: KeyRing, *, batch: int = 200) -> RewrapReport:
    """Re-wrap every stored data key under ``ring``'s active key; safe to run again.

    One transaction per batch per organization, so the API keeps running (rows are
    updated with compare-and-swap, never locked for long). A row that cannot be
    unwrapped (its key is missing from the ring, or it was tampered with) is reported
    by id and skipped.
    """
    report = RewrapReport(active_key_id=ring.active_key_id)
    for org_id in await _org_ids(db):
        for table, (source, swap) in ENCRYPTED_COLUMNS.items():
            after: uuid.UUID | None = None
            while True:
                async with db.sessionmaker() as session:
                    await bind_tenant(session, org_id)
                    rows = await source(session, org_id, ring.active_key_id, after, batch)
                    for row_id, raw in rows:
                        after = row_id
                        try:
                            blob = EncryptedBlob.from_bytes(raw)
                            if not needs_rewrap(blob, ring):
                                continue
                            fresh = rewrap_blob(blob, ring)
                        except CryptoError as exc:
                            report.failed.append(f"{table}/{row_id}: {type(exc).__name__}")
                            log.error("rewrap_failed", table=table, row_id=str(row_id), org_id=str(org_id),
                                      error_type=type(exc).__name__)
                            continue
                        if await swap(session, org_id, row_id, raw, fresh.to_bytes(), fresh.master_key_id):
                            report.rewrapped += 1
                        else:
                            report.changed_meanwhile += 1
                    await session.commit()
                if len(rows) < batch:
                    break
    # Webhook signing secrets are wrapped by the same master keys. One organization at a time,
    # like the credentials: on PostgreSQL the app's role sees a tenant's rows only once the
    # tenant is bound (an unbound session saw none, so a retired key stranded every secret).
    from omnify.webhooks.keys import rewrap_all as rewrap_webhook_secrets

    for org_id in await _org_ids(db):
        async with db.sessionmaker() as session:
            await bind_tenant(session, org_id)
            report.rewrapped += await rewrap_webhook_secrets(session, ring)
            await session.commit()
    return report


async def key_usage(db: Database) -> dict[str, int]:
    """How many stored credentials each master key wraps (all organizations)."""
    totals: dict[str, int] = {}
    for org_id in await _org_ids(db):
        async with db.sessionmaker() as session:
            await bind_tenant(session, org_id)
            for key_id, count in (await repository.count_by_key(session, org_id)).items():
                totals[key_id] = totals.get(key_id, 0) + count
    return totals


# ----------------------------------------------------------------------------- rotation
@dataclass
class RotationResult:
    new_key_id: str
    backend: str
    #: Env backend only: the value to deploy as OMNIFY_MASTER_KEYS before ``keys rewrap``.
    env_value: SecretStr | None = None
    report: RewrapReport | None = None


async def rotate(settings: Settings, db: Database, *, backend: MasterKeyBackend | None = None) -> RotationResult:
    """Add a new active master key and re-wrap every data key under it (see module doc)."""
    backend = backend or backend_from_settings(settings)
    added = await anyio.to_thread.run_sync(backend.add_key)
    if added.env_value is not None:  # env backend: nothing can be re-wrapped before deployment
        return RotationResult(added.key_id, added.backend, env_value=added.env_value)
    ring = await anyio.to_thread.run_sync(backend.load)
    keyrings_for(settings).invalidate()
    report = await rewrap_all(db, ring)
    log.info("master_key_rotated", key_id=added.key_id, backend=added.backend, rewrapped=report.rewrapped,
             failed=len(report.failed))
    return RotationResult(added.key_id, added.backend, report=report)


async def rewrap(settings: Settings, db: Database, *, backend: MasterKeyBackend | None = None) -> RewrapReport:
    backend = backend or backend_from_settings(settings)
    ring = await anyio.to_thread.run_sync(backend.load)
    return await rewrap_all(db, ring)


def key_created_at(key_id: str) -> datetime | None:
    """Creation time encoded in ids made by :func:`omnify.core.secrets.new_key_id`."""
    match = _KEY_ID_TIME.match(key_id)
    if not match:
        return None
    return datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


class RetireRefused(RuntimeError):
    """Retiring the key now could strand data; the message says why and what to do."""


@dataclass
class RetireResult:
    key_id: str
    report: RewrapReport
    env_value: SecretStr | None = None


async def retire(
    settings: Settings, db: Database, key_id: str, *, force: bool = False, backend: MasterKeyBackend | None = None,
    now: datetime | None = None,
) -> RetireResult:
    """Remove an old master key once no stored data key depends on it."""
    backend = backend or backend_from_settings(settings)
    ring = await anyio.to_thread.run_sync(backend.load)
    if key_id == ring.active_key_id:
        raise RetireRefused("that key is the active one; run `omnify keys rotate` first")
    if key_id not in ring:
        raise RetireRefused(f"master key {key_id!r} is not in the key ring")
    created = key_created_at(ring.active_key_id)
    wait = timedelta(seconds=RING_TTL_SECONDS)
    if not force and created is not None and (now or datetime.now(UTC)) - created < wait:
        raise RetireRefused(
            f"the active key is younger than the key-ring cache TTL ({int(RING_TTL_SECONDS)} s): other processes "
            "may still be encrypting with the old key; wait, or pass --force once every process restarted"
        )
    report = await rewrap_all(db, ring)
    usage = await key_usage(db)
    if usage.get(key_id, 0) or report.failed:
        raise RetireRefused(
            f"{usage.get(key_id, 0)} credential(s) still depend on {key_id!r} and {len(report.failed)} "
            "could not be re-wrapped; fix those first"
        )
    removed = await anyio.to_thread.run_sync(backend.remove_key, key_id)
    keyrings_for(settings).invalidate()
    return RetireResult(key_id, report, env_value=removed.env_value if removed else None)
