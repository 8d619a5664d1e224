"""Brand files: streamed, sniffed, size- and quota-checked uploads; signed downloads; purge.

The upload pipeline, in the order the bytes meet it::

    request body -> multipart reader -> size/quota guard -> sniffer (type from content,
    category allow-list) -> [raster images and zip documents (Word, Excel): spooled to a
    temp file and decoded, bombs refused; images measured and thumbnailed]
    -> storage.put_stream (hashes as it writes) -> one DB transaction (dedupe, final quota
    check under the organization lock, row, audit, event)

Every refusal raises before or during the storage write (which then removes its partial
object) or, after it, in a ``try`` that deletes what was stored: a failed upload leaves
no object and no row. The database connection is released during the transfer, so a
slow client does not hold a transaction open.
"""

from __future__ import annotations

import errno
import hashlib
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, Any, BinaryIO, Literal, cast

import anyio
import anyio.to_thread
import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from omnify.audit import service as audit
from omnify.clients import service as clients
from omnify.core.context import Actor
from omnify.core.db import Database, bind_tenant, utcnow
from omnify.core.errors import AppError, NotFound, QuotaExceeded, ServiceUnavailable
from omnify.core.pagination import PageParams
from omnify.core.storage import (
    ListedObject,
    LocalStorage,
    S3Storage,
    Storage,
    StoredObject,
    build_object_key,
    storage_from_settings,
)
from omnify.events import service as events
from omnify.files import repository
from omnify.files.archives import acheck_archive
from omnify.files.images import aprocess_image
from omnify.files.models import UploadedFile
from omnify.files.sniffing import FileCategory, FileTooLarge, max_bytes_for, sanitize_filename, sniff_stream
from omnify.orgs import quotas
from omnify.settings import Settings

log = structlog.get_logger(__name__)

#: Raster uploads are spooled before storage (Pillow needs to seek); beyond this they
#: spill from memory to a temporary file on disk.
SPOOL_MEMORY_BYTES = 1024 * 1024
READ_CHUNK = 256 * 1024
THUMBNAIL_CATEGORY = "thumbnails"

quotas.register_usage("storage_bytes", repository.stored_bytes)


# ----------------------------------------------------------------------------- storage
_storages: dict[tuple[Any, ...], LocalStorage | S3Storage] = {}


def storage_for(settings: Settings) -> LocalStorage | S3Storage:
    """One backend client per configuration and process (boto3 clients are costly to build).

    Keyed on the settings that shape the backend, so tests that point two apps at two
    backends each get their own.
    """
    key = (
        settings.storage_backend, str(settings.storage_local_path or settings.data_dir / "storage"),
        settings.s3_bucket, settings.s3_prefix, settings.s3_region, settings.s3_endpoint_url, settings.s3_sse,
        settings.s3_kms_key_id, settings.cdn_base_url, settings.signed_url_ttl_seconds, settings.public_base_url,
        hashlib.sha256(settings.secret_key.get_secret_value().encode()).hexdigest(),
    )
    found = _storages.get(key)
    if found is None:
        found = _storages[key] = storage_from_settings(settings)
    return found


# ------------------------------------------------------------------------------- reads
async def get_file(
    session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, file_id: uuid.UUID
) -> UploadedFile:
    await clients.get_client(session, org_id, client_id)
    row = await repository.get(session, org_id, client_id, file_id)
    if row is None:
        raise NotFound("File not found.")
    return row


async def list_files(
    session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, params: PageParams,
    category: FileCategory | None = None,
) -> list[UploadedFile]:
    await clients.get_client(session, org_id, client_id)
    return list(await repository.list_files(session, org_id, client_id, params,
                                            category.value if category else None))


async def count_live_by_category(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID) -> dict[str, int]:
    return await repository.count_live_by_category(session, org_id, client_id)


async def live_file_ids(
    session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, ids: list[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of ``ids`` are live files of this client (for attachments elsewhere)."""
    return await repository.live_ids(session, org_id, client_id, ids)


async def storage_used(session: AsyncSession, org_id: uuid.UUID) -> int:
    return await repository.stored_bytes(session, org_id)


@dataclass(frozen=True, slots=True)
class SignedLink:
    url: str
    expires_at: datetime
    filename: str
    content_type: str


async def download_link(
    session: AsyncSession, settings: Settings, storage: Storage, org_id: uuid.UUID, client_id: uuid.UUID,
    file_id: uuid.UUID, variant: Literal["original", "thumbnail"] = "original",
) -> SignedLink:
    row = await get_file(session, org_id, client_id, file_id)
    if variant == "thumbnail":
        if not row.thumbnail_key:
            raise NotFound("This file has no thumbnail (only raster images get one).", code="no-thumbnail")
        stem = row.filename.rsplit(".", 1)[0] if "." in row.filename else row.filename
        key, filename, ctype = row.thumbnail_key, f"{stem}-thumbnail.webp", "image/webp"
    else:
        key, filename, ctype = row.storage_key, row.filename, row.content_type
    return await signed_link(settings, storage, key, filename=filename, content_type=ctype)


async def signed_link(settings: Settings, storage: Storage, key: str, *, filename: str,
                      content_type: str) -> SignedLink:
    """A download URL for one stored object, valid for ``signed_url_ttl_seconds``."""
    ttl = settings.signed_url_ttl_seconds
    url = await storage.signed_download_url(key, filename=filename, ttl=ttl, content_type=content_type)
    return SignedLink(url=url, expires_at=utcnow() + timedelta(seconds=ttl), filename=filename,
                      content_type=content_type)


# ------------------------------------------------------------------------------ upload
@dataclass(frozen=True, slots=True)
class UploadResult:
    file: UploadedFile
    #: False when the same content was already stored for this client (dedupe).
    created: bool


async def _guard(
    chunks: AsyncIterator[bytes], *, category: FileCategory, max_bytes: int, remaining: int, quota_limit: int,
) -> AsyncIterator[bytes]:
    """Count bytes as they arrive: the category limit (413) first, then the plan's storage (402)."""
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > max_bytes:
            raise FileTooLarge(
                f"The file is larger than the limit of {max_bytes} bytes for '{category.value}'.",
                max_bytes=max_bytes,
            )
        if total > remaining:
            raise QuotaExceeded(
                f"This organization's plan allows {quota_limit} bytes of storage and the file does not fit "
                f"in the {max(remaining, 0)} bytes left.",
                resource="storage_bytes", limit=quota_limit, used=quota_limit - max(remaining, 0),
            )
        yield chunk


async def _spool(chunks: AsyncIterator[bytes], fh: IO[bytes]) -> str:
    """Write the stream to ``fh`` and return its SHA-256 (the file stays open, rewound)."""
    hasher = hashlib.sha256()
    async for chunk in chunks:
        hasher.update(chunk)
        try:  # past SPOOL_MEMORY_BYTES this writes a temporary file, which can hit a full disk
            await anyio.to_thread.run_sync(fh.write, chunk)
        except OSError as exc:
            raise _storage_fault(exc, "spool", "spool") from None
    await anyio.to_thread.run_sync(fh.seek, 0)
    return hasher.hexdigest()


async def _read_file(fh: IO[bytes]) -> AsyncIterator[bytes]:
    while chunk := await anyio.to_thread.run_sync(fh.read, READ_CHUNK):
        yield chunk


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


#: What a storage fault tells clients to wait: an S3 endpoint coming back takes seconds to a
#: minute; a full disk needs an operator (or the purge job) to free space.
STORAGE_RETRY_AFTER_SECONDS = 30
DISK_FULL_RETRY_AFTER_SECONDS = 300
#: Write errors that mean "no room", not "broken": no space left, file too large for the
#: filesystem or the process's RLIMIT_FSIZE, disk quota exceeded.
_NO_ROOM = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


class StorageFault(AppError):
    """The file store failed while an upload was written: nothing was kept, retry later."""


class StorageUnavailable(StorageFault, ServiceUnavailable):
    """503: the backend could not be reached or answered an error (S3 endpoint down, refused,
    timed out, 5xx), as an upstream outage is answered elsewhere in the API."""

    status, code, title = 503, "storage-unavailable", "File storage unavailable"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail, headers={"Retry-After": str(STORAGE_RETRY_AFTER_SECONDS)}, **extra)


class StorageFull(StorageFault):
    """507 Insufficient Storage (RFC 4918 section 11.5; what WebDAV servers, Nextcloud and
    ownCloud answer): the server has no room for this representation right now. Not 413 (the
    file is within its limit) nor 402 (the organization's plan has room): the deployment's
    disk is full, so retrying after space is freed succeeds."""

    status, code, title = 507, "storage-full", "Insufficient storage"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail, headers={"Retry-After": str(DISK_FULL_RETRY_AFTER_SECONDS)}, **extra)


def _storage_fault(exc: BaseException, backend: str, stage: str) -> StorageFault:
    """The problem to answer for a backend or spool-file failure (logged, never shown)."""
    if isinstance(exc, OSError) and exc.errno in _NO_ROOM:
        log.error("storage_full", backend=backend, stage=stage, errno=errno.errorcode.get(exc.errno or 0))
        return StorageFull("The file store has no room for this upload right now; nothing was kept. "
                           "Retry after the indicated delay.")
    log.error("storage_write_failed", backend=backend, stage=stage, error_type=type(exc).__name__)
    return StorageUnavailable("The file store is unavailable; nothing was kept. Retry after the indicated delay.")


async def _put(storage: Storage, key: str, chunks: AsyncIterator[bytes], *, content_type: str,
               max_bytes: int | None = None) -> StoredObject:
    """Store, turning a backend failure into a problem: a full disk (ENOSPC, EFBIG, EDQUOT) into
    507, anything else (S3 unreachable or misconfigured, an I/O error) into 503, both with
    ``Retry-After``. Refusals raised by the stream itself (size, type, malformed body, a client
    that went away) pass through unchanged; either way the backend has already removed the
    partial object (local: the temporary file; S3: the multipart upload is aborted)."""
    try:
        return await storage.put_stream(key, chunks, content_type=content_type, max_bytes=max_bytes)
    except (AppError, HTTPException, ClientDisconnect):
        raise
    except Exception as exc:
        raise _storage_fault(exc, storage.backend_name, "write") from None


async def _delete_objects(storage: Storage, keys: list[str]) -> None:
    """Best-effort removal after a refusal; shielded so a cancelled request still cleans up."""
    with anyio.CancelScope(shield=True):
        for key in keys:
            try:
                await storage.delete(key)
            except Exception as exc:  # the original error matters more; the orphan is logged
                log.error("orphan_object", key=key, error_type=type(exc).__name__)


async def upload(
    session: AsyncSession,
    settings: Settings,
    storage: Storage,
    org_id: uuid.UUID,
    actor: Actor,
    client_id: uuid.UUID,
    category: FileCategory,
    filename: str | None,
    chunks: AsyncIterator[bytes],
) -> UploadResult:
    """Store one uploaded file for a client; see the module docstring for the pipeline."""
    await clients.get_live_client(session, org_id, client_id)
    max_bytes = max_bytes_for(category, settings)
    quota_limit = (await quotas.limits_for(session, org_id))["storage_bytes"]
    remaining = quota_limit - await repository.stored_bytes(session, org_id)
    await session.commit()  # release the connection for the transfer

    safe_name = sanitize_filename(filename or "", fallback=category.value)
    guarded = _guard(chunks, category=category, max_bytes=max_bytes, remaining=remaining, quota_limit=quota_limit)
    sniffed = await sniff_stream(guarded, category)
    detected = sniffed.detected
    object_id = uuid.uuid4()
    key = build_object_key(org_id, client_id, category.value, object_id)
    stored_keys: list[str] = []
    try:
        width = height = None
        thumb_key: str | None = None
        thumb_size = 0
        if detected.is_raster_image or detected.is_archive:
            # Decoded before it is stored: image and zip bombs, corrupt or truncated files.
            processed = None
            with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES) as fh:
                digest = await _spool(sniffed.stream, fh)
                existing = await repository.live_by_hash(session, org_id, client_id, digest)
                await session.commit()
                if existing is not None:
                    return UploadResult(existing, created=False)
                if detected.is_archive:
                    await acheck_archive(cast(BinaryIO, fh))
                else:
                    processed = await aprocess_image(cast(BinaryIO, fh))
                stored = await _put(storage, key, _read_file(fh), content_type=detected.mime, max_bytes=max_bytes)
                stored_keys.append(key)
            if processed is not None:
                width, height = processed.info.width, processed.info.height
                thumb_key = build_object_key(org_id, client_id, THUMBNAIL_CATEGORY, object_id)
                thumb = await _put(storage, thumb_key, _once(processed.thumbnail.data),
                                   content_type=processed.thumbnail.content_type)
                stored_keys.append(thumb_key)
                thumb_size = thumb.size
        else:
            stored = await _put(storage, key, sniffed.stream, content_type=detected.mime, max_bytes=max_bytes)
            stored_keys.append(key)

        row = UploadedFile(
            id=object_id, org_id=org_id, client_id=client_id, category=category.value, kind=detected.kind.value,
            content_type=detected.mime, filename=safe_name, size=stored.size, sha256=stored.sha256,
            storage_backend=storage.backend_name, storage_key=key, width=width, height=height,
            thumbnail_key=thumb_key, thumbnail_size=thumb_size, uploaded_by_id=clients.user_id_of(actor),
        )
        result = await _record(session, org_id, actor, row)
        if not result.created:
            await _delete_objects(storage, stored_keys)
        return result
    except BaseException:
        await _delete_objects(storage, stored_keys)
        raise


async def _record(session: AsyncSession, org_id: uuid.UUID, actor: Actor, row: UploadedFile) -> UploadResult:
    """The one transaction of an upload: dedupe, exact quota check, row, audit, event."""
    await clients.serialize_org_writes(session, org_id)
    # The client may have been archived (or purged) while the bytes were flowing.
    await clients.get_live_client(session, org_id, row.client_id)
    existing = await repository.live_by_hash(session, org_id, row.client_id, row.sha256)
    if existing is not None:
        await session.commit()
        return UploadResult(existing, created=False)
    # The guard checked against usage at the start; concurrent uploads may have landed since.
    await quotas.check_quota(session, org_id, "storage_bytes", adding=row.stored_bytes)
    repository.add(session, row)
    try:
        await session.flush()
    except IntegrityError:  # a concurrent upload of the same content won the unique index
        await session.rollback()
        existing = await repository.live_by_hash(session, org_id, row.client_id, row.sha256)
        await session.commit()
        if existing is None:
            raise
        return UploadResult(existing, created=False)
    await audit.record(session, org_id, actor, "file.uploaded", target_type="file", target_id=row.id,
                       changes={"client_id": str(row.client_id), "category": row.category, "kind": row.kind,
                                "size": row.size, "sha256": row.sha256, "filename": row.filename})
    await events.emit(session, org_id, "file.uploaded",
                      {"client_id": row.client_id, "file_id": row.id, "category": row.category,
                       "kind": row.kind, "size": row.size})
    await _progress_changed(session, org_id, row.client_id, actor)
    await session.commit()
    return UploadResult(row, created=True)


async def _progress_changed(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, actor: Actor) -> None:
    from omnify.onboarding import service as onboarding  # late import: onboarding reads files

    await onboarding.refresh(session, org_id, client_id, actor)


# ------------------------------------------------------------------------------ delete
async def delete_file(
    session: AsyncSession, org_id: uuid.UUID, actor: Actor, client_id: uuid.UUID, file_id: uuid.UUID
) -> None:
    """Mark the file deleted (it disappears from the API at once); the purge job removes
    the object and then the row, which is when its bytes leave the storage accounting."""
    from omnify.campaigns import service as campaigns  # late import: campaigns validates via files

    await clients.get_live_client(session, org_id, client_id)
    row = await repository.get(session, org_id, client_id, file_id)
    if row is None:
        raise NotFound("File not found.")
    row.deleted_at = utcnow()
    await campaigns.detach_file(session, org_id, file_id)
    await audit.record(session, org_id, actor, "file.deleted", target_type="file", target_id=row.id,
                       changes={"client_id": str(client_id), "category": row.category, "filename": row.filename})
    await events.emit(session, org_id, "file.deleted", {"client_id": client_id, "file_id": row.id})
    await _progress_changed(session, org_id, client_id, actor)
    await session.commit()


async def delete_client_objects(
    session: AsyncSession, storage: Storage, org_id: uuid.UUID, client_id: uuid.UUID
) -> int:
    """Remove every stored object of a client (rows are the caller's: the client purge
    deletes the client row and the foreign key cascades). Idempotent."""
    count = 0
    for row in await repository.all_of_client(session, org_id, client_id):
        for key in (row.storage_key, row.thumbnail_key):
            if key:
                await storage.delete(key)
                count += 1
    return count


async def purge_deleted_files(db: Database, storage: Storage, *, batch: int = 100) -> int:
    """Remove the objects of files marked deleted, then their rows; returns files purged.

    Object first, row second: if the process dies in between, the row (and its bytes in
    the accounting) survives and the next run deletes the already-missing object again,
    which every backend treats as success.
    """
    purged = 0
    async with db.sessionmaker() as session:
        orgs = await clients.all_org_ids(session)
    for org_id in orgs:
        while True:
            async with db.sessionmaker() as session:
                await bind_tenant(session, org_id)
                rows = await repository.deleted_batch(session, org_id, batch)
                for row in rows:
                    for key in (row.storage_key, row.thumbnail_key):
                        if key:
                            await storage.delete(key)
                    await repository.delete_row(session, org_id, row.id)
                    purged += 1
                await session.commit()
            if len(rows) < batch:
                break
    return purged


#: What the files domain writes under ``{org}/{client}/``: the sweep leaves other categories
#: (the privacy exports, with rows of their own) alone.
SWEPT_CATEGORIES = frozenset({*(c.value for c in FileCategory), THUMBNAIL_CATEGORY})


@dataclass(frozen=True, slots=True)
class OrphanSweep:
    scanned: int = 0
    orphans: int = 0
    deleted_bytes: int = 0
    #: Local storage only: temporary files of writes whose process died mid-write.
    partials: int = 0


async def sweep_orphan_objects(
    db: Database, storage: Storage, *, grace_seconds: int, now: float | None = None, batch: int = 500
) -> OrphanSweep:
    """Delete the stored objects of the files domain that no row names, older than the grace.

    An upload writes its object, then commits its row: a process that dies in between
    (SIGKILL, OOM, a node lost) leaves an object nothing accounts for and nothing would ever
    delete. The grace period keeps uploads in flight (object written, row not committed yet)
    out of reach; a deleted row still names its objects, which are the purge's to remove.
    """
    cutoff = (time.time() if now is None else now) - grace_seconds
    scanned = orphans = freed = partials = 0
    async with db.sessionmaker() as session:
        orgs = await clients.all_org_ids(session)
    for org_id in orgs:
        if isinstance(storage, LocalStorage):
            partials += await storage.remove_stale_partials(f"{org_id}/", cutoff)
        candidates: list[ListedObject] = []
        async for obj in storage.list_objects(f"{org_id}/"):
            scanned += 1
            parts = obj.key.split("/")
            if len(parts) == 4 and parts[2] in SWEPT_CATEGORIES and obj.modified <= cutoff:
                candidates.append(obj)
        for start in range(0, len(candidates), batch):
            chunk = candidates[start:start + batch]
            async with db.sessionmaker() as session:
                await bind_tenant(session, org_id)
                named = await repository.keys_with_rows(session, org_id, [o.key for o in chunk])
                await session.commit()
            for obj in chunk:
                if obj.key not in named:
                    await storage.delete(obj.key)
                    orphans += 1
                    freed += obj.size
                    log.warning("files.orphan_object_deleted", org_id=str(org_id), key=obj.key, size=obj.size,
                                age_seconds=round(time.time() - obj.modified))
    log.info("files.orphan_sweep", scanned=scanned, orphans=orphans, deleted_bytes=freed, partials=partials,
             orgs=len(orgs))
    return OrphanSweep(scanned=scanned, orphans=orphans, deleted_bytes=freed, partials=partials)
