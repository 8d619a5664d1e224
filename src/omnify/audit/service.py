"""Recording, reading, verifying and exporting the audit trail.

Each entry stores ``prev_hash`` (its organization's previous entry) and ``hash`` =
SHA-256(prev_hash || canonical JSON of the entry). Verification recomputes the chain and
reports the first link that does not hold, which pinpoints an edit, a deletion or an
insertion. Entries never carry secrets: :func:`scrub` drops secret-looking keys from the
change summary before hashing, so the hash never depends on anything we would later need
to erase.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from omnify.audit import repository
from omnify.audit.models import AuditLog
from omnify.core.context import Actor
from omnify.core.db import Database, utcnow
from omnify.core.pagination import PageParams
from omnify.ops.store import BackupStore
from omnify.orgs.models import Organization

SECRET_MARKERS = ("password", "secret", "token", "api_key", "authorization", "credential", "private_key")


def scrub(value: Any) -> Any:
    """Remove secret-looking keys recursively; values under them become "[redacted]"."""
    if isinstance(value, dict):
        return {
            k: ("[redacted]" if any(m in str(k).lower() for m in SECRET_MARKERS) else scrub(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


def _canonical(entry: AuditLog) -> bytes:
    body = {
        "org_id": str(entry.org_id),
        "seq": entry.seq,
        "created_at": entry.created_at.isoformat(),
        "actor_type": entry.actor_type,
        "actor_id": entry.actor_id,
        "actor_label": entry.actor_label,
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "ip": entry.ip,
        "user_agent": entry.user_agent,
        "request_id": entry.request_id,
        "changes": entry.changes,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def compute_hash(prev_hash: str, entry: AuditLog) -> str:
    return hashlib.sha256(prev_hash.encode() + b"|" + _canonical(entry)).hexdigest()


async def record(
    session: AsyncSession,
    org_id: uuid.UUID,
    actor: Actor,
    action: str,
    *,
    target_type: str | None = None,
    target_id: str | uuid.UUID | None = None,
    changes: dict[str, Any] | None = None,
) -> AuditLog:
    """Append one entry in the caller's transaction (it commits with the change it audits)."""
    seq = await repository.next_seq(session, org_id)
    prev = await repository.hash_at(session, org_id, seq - 1) if seq > 1 else None
    entry = AuditLog(
        id=uuid.uuid4(),
        org_id=org_id,
        seq=seq,
        created_at=utcnow(),
        actor_type=actor.actor_type,
        actor_id=actor.actor_id,
        actor_label=actor.label,
        action=action,
        target_type=target_type,
        target_id=str(target_id) if target_id is not None else None,
        ip=actor.ip,
        user_agent=(actor.user_agent or "")[:400] or None,
        request_id=actor.request_id,
        changes=scrub(changes or {}),
        prev_hash=prev or repository.GENESIS_HASH,
        hash="",
    )
    entry.hash = compute_hash(entry.prev_hash, entry)
    repository.add(session, entry)
    await session.flush()
    return entry


async def list_entries(
    session: AsyncSession, org_id: uuid.UUID, params: PageParams, filters: dict[str, Any]
) -> list[AuditLog]:
    return list(await repository.list_entries(session, org_id, params, filters))


@dataclass(frozen=True, slots=True)
class ChainReport:
    org_id: uuid.UUID
    entries: int
    ok: bool
    broken_seq: int | None = None
    reason: str | None = None


async def verify_org(session: AsyncSession, org_id: uuid.UUID) -> ChainReport:
    """Walk one organization's chain; stop at the first broken link.

    After a retention purge the oldest surviving entry's ``prev_hash`` is the anchor.
    """
    expected_prev: str | None = None
    expected_seq: int | None = None
    count = 0
    async for entry in repository.iter_chain(session, org_id):
        count += 1
        if expected_seq is not None and entry.seq != expected_seq:
            return ChainReport(org_id, count, False, expected_seq, f"entry {expected_seq} is missing")
        if expected_prev is not None and entry.prev_hash != expected_prev:
            return ChainReport(org_id, count, False, entry.seq, "prev_hash does not match the previous entry")
        if expected_prev is None and entry.seq == 1 and entry.prev_hash != repository.GENESIS_HASH:
            return ChainReport(org_id, count, False, entry.seq, "first entry does not start from genesis")
        if compute_hash(entry.prev_hash, entry) != entry.hash:
            return ChainReport(org_id, count, False, entry.seq, "entry content does not match its hash")
        expected_prev, expected_seq = entry.hash, entry.seq + 1
    return ChainReport(org_id, count, True)


async def org_ids(session: AsyncSession) -> list[uuid.UUID]:
    return list((await session.scalars(select(Organization.id).order_by(Organization.created_at))).all())


async def purge_expired(session: AsyncSession, retention_days: int, now: datetime | None = None) -> int:
    """Delete entries past retention, per organization, in one transaction each.

    The oldest surviving entry keeps its ``prev_hash``, which :func:`verify_org` takes as
    the chain's anchor; export before purging to keep the full chain in cold storage.
    """
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    total = 0
    for org_id in await org_ids(session):
        total += await repository.delete_before(session, org_id, cutoff)
        await session.commit()
    return total


def entry_to_json(entry: AuditLog) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_canonical(entry))
    data.update(id=str(entry.id), prev_hash=entry.prev_hash, hash=entry.hash)
    return data


async def export_org(
    session: AsyncSession,
    org_id: uuid.UUID,
    path: Path,
    since: datetime | None = None,
    until: datetime | None = None,
) -> int:
    """Write entries as gzipped JSON lines (with their hashes, so the copy stays verifiable)."""
    return (await _write_jsonl_gz(path, repository.iter_range(session, org_id, since, until)))[0]


async def _write_jsonl_gz(path: Path, entries: AsyncIterator[AuditLog]) -> tuple[int, int | None, int | None]:
    """``(count, first seq, last seq)`` of the entries written to ``path``."""
    count, first, last = 0, None, None
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        async for entry in entries:
            fh.write(json.dumps(entry_to_json(entry), sort_keys=True) + "\n")
            count, first, last = count + 1, first or entry.seq, entry.seq
    return count, first, last


# ------------------------------------------------------------------- cold storage export
#: ``audit/<org>/<first seq>-<last seq>.jsonl.gz``: contiguous segments of each org's chain.
SEGMENT = re.compile(r"^audit/(?P<org>[0-9a-f-]{36})/(?P<first>\d{12})-(?P<last>\d{12})\.jsonl\.gz$")


@dataclass(frozen=True, slots=True)
class ExportReport:
    organizations: int
    segments: int
    entries: int
    purged: int


def exported_through(store: BackupStore, org_id: uuid.UUID) -> int:
    """The last seq of ``org_id`` that cold storage holds (0 when nothing is exported)."""
    last = 0
    for item in store.list(f"audit/{org_id}/"):
        match = SEGMENT.match(item.key)
        if match:
            last = max(last, int(match["last"]))
    return last


async def export_to_cold_storage(db: Database, store: BackupStore, *, retention_days: int,
                                 now: datetime | None = None) -> ExportReport:
    """The nightly ``omnify.audit.export``: append each organization's new entries to cold
    storage, then apply the database retention to what is safely there.

    Segments are written put-if-absent (``ops.store``): a run that died after the upload
    finds the segment and moves on, and nothing in the store is ever overwritten. The
    store keeps them for the documented 7 years (S3: bucket default retention under Object
    Lock, lifecycle to Glacier Deep Archive; docs/disaster-recovery.md). Entries leave the
    database after ``retention_days`` only if an exported segment holds them, so a broken
    export can never make the purge lose history. ``db`` connects as the owner role (the
    app role may not delete audit rows).
    """
    import anyio.to_thread

    now = now or utcnow()
    cutoff = now - timedelta(days=retention_days)
    segments = entries = purged = 0
    async with db.sessionmaker() as session:
        orgs = await org_ids(session)
    for org_id in orgs:
        done = await anyio.to_thread.run_sync(exported_through, store, org_id)
        with tempfile.TemporaryDirectory(prefix="omnify-audit-") as tmp:
            local = Path(tmp) / "segment.jsonl.gz"
            async with db.sessionmaker() as session:
                count, first, last = await _write_jsonl_gz(local, repository.iter_chain(session, org_id,
                                                                                        after_seq=done))
            if count and first is not None and last is not None:
                key = f"audit/{org_id}/{first:012d}-{last:012d}.jsonl.gz"
                await anyio.to_thread.run_sync(store.put_file, key, local)
                segments, entries, done = segments + 1, entries + count, last
        async with db.sessionmaker() as session:
            purged += await repository.delete_before(session, org_id, cutoff, max_seq=done)
            await session.commit()
    return ExportReport(len(orgs), segments, entries, purged)
