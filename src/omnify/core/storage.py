"""Object storage for uploaded files: local disk (default) or S3-compatible.

Both backends stream: an upload is consumed chunk by chunk, hashed (SHA-256) and
counted as it goes, and written out without ever holding the whole file in memory.
When the size limit is crossed, or the chunk source raises (a sniffer refusing the
content half-way, a client disconnect), the partial object is removed before the
error propagates, so a failed upload leaves nothing behind to account for.

Downloads go through short-lived signed URLs so the API never proxies large S3
objects, and a leaked link expires quickly:

* S3: a presigned GET whose ``response-content-disposition`` forces a download with
  the original (sanitised) filename;
* local: an HMAC-signed URL to a route the app mounts at :data:`LOCAL_DOWNLOAD_PATH`,
  checked by :func:`verify_signed_local_url` and served by
  :func:`local_download_response`.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import os
import re
import time
import unicodedata
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import anyio
import anyio.to_thread
from starlette.responses import StreamingResponse

from omnify.core.errors import Forbidden, NotFound, PayloadTooLarge
from omnify.settings import Settings

T = TypeVar("T")

DEFAULT_CHUNK_SIZE = 64 * 1024
#: S3 parts must be >= 5 MiB except the last; 8 MiB bounds the memory an upload holds.
DEFAULT_PART_SIZE = 8 * 1024 * 1024
MAX_SIGNED_URL_TTL = 7 * 24 * 3600  # S3's own ceiling for SigV4 presigned URLs
#: Where the app must mount the local download route (``{key:path}`` follows it).
LOCAL_DOWNLOAD_PATH = "/api/v1/storage/download"

_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_CATEGORY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_MIME = re.compile(r"^[A-Za-z0-9][\w.+-]{0,126}/[A-Za-z0-9][\w.+-]{0,126}$")
_MAX_KEY_LENGTH = 1024
_MAX_KEY_DEPTH = 8


class InvalidObjectKeyError(ValueError):
    """A key that could escape the storage root or is not one :func:`build_object_key` makes."""


class ObjectNotFound(NotFound):
    code, title = "object-not-found", "Stored object not found"


class SignedUrlInvalid(Forbidden):
    code, title = "signed-url-invalid", "Invalid download link"


class SignedUrlExpired(Forbidden):
    code, title = "signed-url-expired", "Download link expired"


@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    size: int
    sha256: str  # lowercase hex


@dataclass(frozen=True, slots=True)
class ListedObject:
    key: str
    size: int
    modified: float  # POSIX seconds: when the object was last written


@runtime_checkable
class Storage(Protocol):
    """What the files domain needs from a storage backend."""

    backend_name: str

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str = "application/octet-stream",
        max_bytes: int | None = None,
    ) -> StoredObject:
        """Store the stream under ``key`` (replacing any object there).

        Raises :class:`~omnify.core.errors.PayloadTooLarge` once more than ``max_bytes``
        arrived; any exception leaves no object (partial or otherwise) behind.
        """
        ...

    async def get_stream(self, key: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncIterator[bytes]:
        """Open the object (raising :class:`ObjectNotFound` now, not mid-stream) and iterate it."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; deleting a missing object is not an error (jobs retry)."""
        ...

    async def exists(self, key: str) -> bool: ...

    def list_objects(self, prefix: str = "") -> AsyncIterator[ListedObject]:
        """Every complete object whose key starts with ``prefix`` (a ``/``-ended key prefix),
        with its size and modification time, in no particular order. Objects still being
        written (a local temporary file, an S3 multipart upload) are not listed."""
        ...

    async def signed_download_url(
        self, key: str, *, filename: str, ttl: int | None = None, content_type: str | None = None
    ) -> str: ...

    async def check(self) -> None:
        """Raise if the backend is unusable (for ``/readyz``)."""
        ...

    async def close(self) -> None: ...


# ------------------------------------------------------------------------------- helpers
def build_object_key(
    org_id: uuid.UUID | str, client_id: uuid.UUID | str, category: str, object_id: uuid.UUID | None = None
) -> str:
    """``{org}/{client}/{category}/{uuid}``; the original filename is never part of a key."""
    org, client = str(uuid.UUID(str(org_id))), str(uuid.UUID(str(client_id)))
    if not _CATEGORY.fullmatch(category):
        raise InvalidObjectKeyError("category must be lowercase letters, digits, '_' or '-'")
    return f"{org}/{client}/{category}/{object_id or uuid.uuid4()}"


def validate_key(key: str) -> str:
    """Accept only keys made of plain segments: no ``..``, no absolute path, no hidden file."""
    if not key or len(key) > _MAX_KEY_LENGTH or "\\" in key:
        raise InvalidObjectKeyError("invalid object key")
    segments = key.split("/")
    if len(segments) > _MAX_KEY_DEPTH or not all(_SEGMENT.fullmatch(s) for s in segments):
        raise InvalidObjectKeyError("invalid object key")
    return key


def _ascii_fallback(filename: str) -> str:
    """Best ASCII rendering for clients that ignore ``filename*`` (accents folded, extension kept)."""
    folded = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode("ascii")
    stem, dot, ext = folded.rpartition(".")
    if not dot:
        stem, ext = folded, ""

    def clean(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9._ ()+-]", "_", text).strip(" .")

    stem, ext = clean(stem)[:150] or "download", clean(ext)[:16]
    return f"{stem}.{ext}" if ext else stem


def content_disposition(filename: str, disposition: str = "attachment") -> str:
    """RFC 6266 header with an ASCII ``filename`` for old clients and UTF-8 ``filename*``."""
    if disposition not in {"attachment", "inline"}:
        raise ValueError("disposition must be 'attachment' or 'inline'")
    cleaned = "".join(ch for ch in filename if unicodedata.category(ch)[0] != "C") or "download"
    return (f'{disposition}; filename="{_ascii_fallback(cleaned)}"; '
            f"filename*=UTF-8''{quote(cleaned, safe='')}")


def _safe_content_type(content_type: str | None) -> str:
    if content_type and _MIME.fullmatch(content_type):
        return content_type
    return "application/octet-stream"


def _clamp_ttl(ttl: int | None, default: int) -> int:
    value = default if ttl is None else ttl
    if value < 1:
        raise ValueError("ttl must be at least one second")
    return min(value, MAX_SIGNED_URL_TTL)


def _rebase(url: str, base: str | None) -> str:
    """Swap a URL's origin for the CDN's (path prefix kept), leaving the signed query intact."""
    if not base:
        return url
    target, cdn = urlsplit(url), urlsplit(base.rstrip("/"))
    return urlunsplit((cdn.scheme, cdn.netloc, cdn.path + target.path, target.query, ""))


async def _run(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await anyio.to_thread.run_sync(lambda: func(*args, **kwargs))


def _too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The file is larger than the limit of {max_bytes} bytes.", max_bytes=max_bytes)


# ---------------------------------------------------------------------------- signed URLs
@dataclass(frozen=True, slots=True)
class SignedDownload:
    key: str
    filename: str
    content_type: str
    expires_at: int


def _url_signing_key(secret_key: str | bytes) -> bytes:
    # Derived (domain-separated) so a signature made here can never be replayed as,
    # say, a JWT or CSRF token signed with the same application secret.
    raw = secret_key.encode("utf-8") if isinstance(secret_key, str) else secret_key
    return hmac.new(raw, b"omnify:local-storage-url:v1", hashlib.sha256).digest()


def _signature(signing_key: bytes, key: str, expires: int, filename: str, content_type: str) -> str:
    message = "\n".join(("v1", key, str(expires), filename, content_type)).encode("utf-8")
    digest = hmac.new(signing_key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def sign_local_url(
    secret_key: str | bytes,
    base_url: str,
    key: str,
    *,
    filename: str,
    content_type: str | None,
    ttl: int,
    now: float | None = None,
) -> str:
    validate_key(key)
    expires = int(now if now is not None else time.time()) + ttl
    ctype = _safe_content_type(content_type)
    sig = _signature(_url_signing_key(secret_key), key, expires, filename, ctype)
    query = urlencode({"exp": expires, "fn": filename, "ct": ctype, "sig": sig})
    return f"{base_url.rstrip('/')}{LOCAL_DOWNLOAD_PATH}/{quote(key, safe='/')}?{query}"


def verify_signed_local_url(
    secret_key: str | bytes, key: str, params: Mapping[str, str], *, now: float | None = None
) -> SignedDownload:
    """Check a local download link; raises :class:`SignedUrlInvalid` / :class:`SignedUrlExpired`.

    The signature is checked before the expiry so that an attacker cannot learn anything
    (not even "expired") about a link they forged.
    """
    try:
        expires = int(params["exp"])
        filename, ctype, sig = params["fn"], params["ct"], params["sig"]
    except (KeyError, ValueError):
        raise SignedUrlInvalid("The download link is incomplete or malformed.") from None
    expected = _signature(_url_signing_key(secret_key), key, expires, filename, ctype)
    if not hmac.compare_digest(expected.encode("ascii"), sig.encode("ascii", "replace")):
        raise SignedUrlInvalid("The download link signature does not match.")
    if expires < int(now if now is not None else time.time()):
        raise SignedUrlExpired("The download link has expired; request a new one.")
    try:
        validate_key(key)
    except InvalidObjectKeyError:
        raise SignedUrlInvalid("The download link is malformed.") from None
    return SignedDownload(key=key, filename=filename, content_type=_safe_content_type(ctype),
                          expires_at=expires)


def _list_prefix(prefix: str) -> str:
    """The directory part of a listing prefix, checked like a key (no ``..``, no root)."""
    directory = prefix.rsplit("/", 1)[0]
    return validate_key(directory) if directory else ""


def _scan(directory: Path) -> list[tuple[Path, bool, int, float]]:
    """The visible entries of one directory (hidden names are temporary ``.part`` files)."""
    found: list[tuple[Path, bool, int, float]] = []
    try:
        with os.scandir(directory) as it:
            for entry in it:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    found.append((Path(entry.path), True, 0, 0.0))
                elif entry.is_file(follow_symlinks=False):
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:  # deleted meanwhile
                        continue
                    found.append((Path(entry.path), False, st.st_size, st.st_mtime))
    except (FileNotFoundError, NotADirectoryError):
        pass
    return found


def _remove_partials(start: Path, older_than: float) -> int:
    removed = 0
    for directory, _dirs, names in os.walk(start):
        for name in names:
            if not (name.startswith(".") and name.endswith(".part")):
                continue
            path = Path(directory) / name
            try:
                if path.stat().st_mtime < older_than:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:  # finished (renamed) or removed meanwhile
                continue
    return removed


# ---------------------------------------------------------------------------------- local
class LocalStorage:
    """Files under one root directory; writes are atomic (temp file + rename)."""

    backend_name = "local"

    def __init__(self, root: Path, *, secret_key: str | bytes, public_base_url: str,
                 cdn_base_url: str | None = None, default_ttl: int = 300) -> None:
        self.root = root.resolve()
        self._secret_key = secret_key
        self.public_base_url = public_base_url
        self.cdn_base_url = cdn_base_url
        self.default_ttl = default_ttl

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalStorage:
        return cls(
            settings.storage_local_path or settings.data_dir / "storage",
            secret_key=settings.secret_key.get_secret_value(),
            public_base_url=settings.public_base_url,
            cdn_base_url=settings.cdn_base_url,
            default_ttl=settings.signed_url_ttl_seconds,
        )

    def path_for(self, key: str) -> Path:
        """Resolve ``key`` inside the root, refusing anything that would land outside it."""
        path = (self.root / validate_key(key)).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise InvalidObjectKeyError("invalid object key")
        return path

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str = "application/octet-stream",
        max_bytes: int | None = None,
    ) -> StoredObject:
        target = self.path_for(key)
        await _run(target.parent.mkdir, parents=True, exist_ok=True, mode=0o700)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        fd = await _run(os.open, tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        hasher, size = hashlib.sha256(), 0
        try:
            async with anyio.wrap_file(os.fdopen(fd, "wb")) as fh:
                async for chunk in chunks:
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise _too_large(max_bytes)
                    hasher.update(chunk)
                    await fh.write(chunk)
                await fh.flush()
                await _run(os.fsync, fh.wrapped.fileno())
            await _run(os.replace, tmp, target)
        except BaseException:
            # Synchronous on purpose: this also runs on cancellation, where awaiting is unsafe.
            tmp.unlink(missing_ok=True)
            raise
        return StoredObject(key=key, size=size, sha256=hasher.hexdigest())

    async def get_stream(self, key: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncIterator[bytes]:
        path = self.path_for(key)
        try:
            fh = await anyio.open_file(path, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound() from None
        return self._iterate(fh, chunk_size)

    @staticmethod
    async def _iterate(fh: anyio.AsyncFile[bytes], chunk_size: int) -> AsyncIterator[bytes]:
        async with fh:
            while chunk := await fh.read(chunk_size):
                yield chunk

    async def size(self, key: str) -> int:
        try:
            result = await _run(self.path_for(key).stat)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound() from None
        return result.st_size

    async def delete(self, key: str) -> None:
        await _run(self.path_for(key).unlink, missing_ok=True)

    async def exists(self, key: str) -> bool:
        return await _run(self.path_for(key).is_file)

    async def list_objects(self, prefix: str = "") -> AsyncIterator[ListedObject]:
        # One directory per thread hop: a large tree never sits in memory at once.
        start = self.root / _list_prefix(prefix) if prefix else self.root
        pending = [start]
        while pending:
            directory = pending.pop()
            entries = await _run(_scan, directory)
            for path, is_dir, size, modified in entries:
                if is_dir:
                    pending.append(path)
                    continue
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    yield ListedObject(key=key, size=size, modified=modified)

    async def remove_stale_partials(self, prefix: str, older_than: float) -> int:
        """Delete the temporary files of writes that never finished (their process died mid-write:
        the cleanup in :meth:`put_stream` never ran) last touched before ``older_than``; returns
        how many. S3's counterpart, an incomplete multipart upload, is the bucket lifecycle's."""
        start = self.root / _list_prefix(prefix) if prefix else self.root
        return await _run(_remove_partials, start, older_than)

    async def signed_download_url(
        self, key: str, *, filename: str, ttl: int | None = None, content_type: str | None = None
    ) -> str:
        url = sign_local_url(self._secret_key, self.public_base_url, key, filename=filename,
                             content_type=content_type, ttl=_clamp_ttl(ttl, self.default_ttl))
        return _rebase(url, self.cdn_base_url)

    def verify(self, key: str, params: Mapping[str, str], *, now: float | None = None) -> SignedDownload:
        return verify_signed_local_url(self._secret_key, key, params, now=now)

    async def check(self) -> None:
        await _run(self.root.mkdir, parents=True, exist_ok=True, mode=0o700)
        if not await _run(os.access, self.root, os.W_OK):
            raise OSError(f"storage root {self.root} is not writable")

    async def close(self) -> None:
        return None


async def local_download_response(
    storage: LocalStorage, key: str, params: Mapping[str, str]
) -> StreamingResponse:
    """Serve a signed local download; mount as ``GET {LOCAL_DOWNLOAD_PATH}/{key:path}``.

    The response is hardened for user-supplied content served from the API's origin:
    always an attachment, no MIME sniffing, and a sandboxing CSP in case a browser
    renders it anyway.
    """
    signed = storage.verify(key, params)
    size = await storage.size(signed.key)
    body = await storage.get_stream(signed.key)
    remaining = max(0, signed.expires_at - int(time.time()))
    headers = {
        "Content-Disposition": content_disposition(signed.filename),
        "Content-Length": str(size),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Cache-Control": f"private, max-age={remaining}",
        "Referrer-Policy": "no-referrer",
    }
    return StreamingResponse(body, media_type=signed.content_type, headers=headers)


# ------------------------------------------------------------------------------------ S3
class S3Storage:
    """S3 or an S3-compatible service; boto3 is blocking, so every call runs in a thread."""

    backend_name = "s3"
    #: Keys per ``list_objects_v2`` page (S3's own maximum; tests lower it to page).
    list_page_size = 1000

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        region: str = "us-east-1",
        endpoint_url: str | None = None,
        sse: str = "",
        kms_key_id: str | None = None,
        cdn_base_url: str | None = None,
        default_ttl: int = 300,
        part_size: int = DEFAULT_PART_SIZE,
        addressing_style: str | None = None,
    ) -> None:
        import boto3
        from botocore.config import Config

        if part_size < 5 * 1024 * 1024:
            raise ValueError("S3 multipart parts must be at least 5 MiB")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.cdn_base_url = cdn_base_url
        self.default_ttl = default_ttl
        self.part_size = part_size
        #: Multipart uploads whose abort failed (see :meth:`_abort`); bounded, oldest dropped.
        self._unaborted: collections.deque[tuple[str, str]] = collections.deque(maxlen=1000)
        self._extra: dict[str, str] = {}
        if sse:
            self._extra["ServerSideEncryption"] = sse
            if sse == "aws:kms" and kms_key_id:
                self._extra["SSEKMSKeyId"] = kms_key_id
        # S3-compatible services (MinIO, moto, Ceph) rarely do virtual-hosted buckets.
        style = addressing_style or ("path" if endpoint_url else "virtual")
        self._client: Any = boto3.session.Session().client(
            "s3",
            region_name=region,
            endpoint_url=endpoint_url,
            config=Config(signature_version="s3v4", s3={"addressing_style": style},
                          retries={"mode": "standard", "max_attempts": 5}),
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Storage:
        if not settings.s3_bucket:
            raise ValueError("OMNIFY_S3_BUCKET is required for the s3 storage backend")
        return cls(
            settings.s3_bucket,
            prefix=settings.s3_prefix,
            region=settings.s3_region,
            endpoint_url=settings.s3_endpoint_url,
            sse=settings.s3_sse,
            kms_key_id=settings.s3_kms_key_id,
            cdn_base_url=settings.cdn_base_url,
            default_ttl=settings.signed_url_ttl_seconds,
        )

    def _full_key(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    @staticmethod
    def _is_not_found(exc: Exception) -> bool:
        from botocore.exceptions import ClientError

        if not isinstance(exc, ClientError):
            return False
        return exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound", "NoSuchUpload"}

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str = "application/octet-stream",
        max_bytes: int | None = None,
    ) -> StoredObject:
        full = self._full_key(key)
        extra = {**self._extra, "ContentType": _safe_content_type(content_type)}
        hasher, size = hashlib.sha256(), 0
        buffer = bytearray()
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []

        async def send_part(data: bytes) -> None:
            nonlocal upload_id
            if upload_id is None:
                created = await _run(self._client.create_multipart_upload,
                                     Bucket=self.bucket, Key=full, **extra)
                upload_id = created["UploadId"]
            number = len(parts) + 1
            resp = await _run(self._client.upload_part, Bucket=self.bucket, Key=full, UploadId=upload_id,
                              PartNumber=number, Body=data)
            parts.append({"PartNumber": number, "ETag": resp["ETag"]})

        try:
            async for chunk in chunks:
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise _too_large(max_bytes)
                hasher.update(chunk)
                buffer += chunk
                while len(buffer) >= self.part_size:
                    part = bytes(buffer[: self.part_size])
                    del buffer[: self.part_size]
                    await send_part(part)
            if upload_id is None:  # small object: one PUT, no multipart bookkeeping
                await _run(self._client.put_object, Bucket=self.bucket, Key=full, Body=bytes(buffer), **extra)
            else:
                if buffer:
                    await send_part(bytes(buffer))
                await _run(self._client.complete_multipart_upload, Bucket=self.bucket, Key=full,
                           UploadId=upload_id, MultipartUpload={"Parts": parts})
        except BaseException:
            if upload_id is not None:
                with anyio.CancelScope(shield=True):
                    await _run(self._abort, full, upload_id)
            raise
        if self._unaborted:  # the endpoint answers again: drop what an outage left behind
            await _run(self._retry_aborts)
        return StoredObject(key=key, size=size, sha256=hasher.hexdigest())

    def _abort(self, full: str, upload_id: str) -> None:
        """Abort a failed multipart upload. When that fails too (the endpoint is down, which is
        often why the upload failed), remember it and abort again after the next successful
        write, so the parts already sent (invisible, but billed) do not wait for the bucket's
        lifecycle rule, which stays the backstop for a process that dies meanwhile."""
        try:
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
        except Exception as exc:  # the original error matters more
            if not self._is_not_found(exc):
                self._unaborted.append((full, upload_id))

    def _retry_aborts(self) -> None:
        # A few per write, so a backlog (or an upload S3 refuses to abort) never stalls one upload.
        for _ in range(min(len(self._unaborted), 20)):
            full, upload_id = self._unaborted.popleft()
            self._abort(full, upload_id)

    async def get_stream(self, key: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncIterator[bytes]:
        try:
            resp = await _run(self._client.get_object, Bucket=self.bucket, Key=self._full_key(key))
        except Exception as exc:
            if self._is_not_found(exc):
                raise ObjectNotFound() from None
            raise
        return self._iterate(resp["Body"], chunk_size)

    @staticmethod
    async def _iterate(body: Any, chunk_size: int) -> AsyncIterator[bytes]:
        try:
            while chunk := await _run(body.read, chunk_size):
                yield chunk
        finally:
            body.close()

    async def delete(self, key: str) -> None:
        await _run(self._client.delete_object, Bucket=self.bucket, Key=self._full_key(key))

    async def exists(self, key: str) -> bool:
        try:
            await _run(self._client.head_object, Bucket=self.bucket, Key=self._full_key(key))
        except Exception as exc:
            if self._is_not_found(exc):
                return False
            raise
        return True

    async def list_objects(self, prefix: str = "") -> AsyncIterator[ListedObject]:
        if prefix:
            _list_prefix(prefix)
        base = f"{self.prefix}/" if self.prefix else ""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": base + prefix, "MaxKeys": self.list_page_size}
        while True:  # list_objects_v2's pages, one request (in a thread) each
            page = await _run(self._client.list_objects_v2, **kwargs)
            for item in page.get("Contents", ()):
                yield ListedObject(key=item["Key"][len(base):], size=int(item["Size"]),
                                   modified=item["LastModified"].timestamp())
            if not page.get("IsTruncated"):
                return
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    async def signed_download_url(
        self, key: str, *, filename: str, ttl: int | None = None, content_type: str | None = None
    ) -> str:
        params = {
            "Bucket": self.bucket,
            "Key": self._full_key(key),
            "ResponseContentDisposition": content_disposition(filename),
            "ResponseContentType": _safe_content_type(content_type),
        }
        # Presigning is local computation (no request), so no thread is needed.
        url: str = self._client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=_clamp_ttl(ttl, self.default_ttl)
        )
        return _rebase(url, self.cdn_base_url)

    async def check(self) -> None:
        await _run(self._client.head_bucket, Bucket=self.bucket)

    async def close(self) -> None:
        await _run(self._client.close)


def storage_from_settings(settings: Settings) -> LocalStorage | S3Storage:
    if settings.storage_backend == "s3":
        return S3Storage.from_settings(settings)
    return LocalStorage.from_settings(settings)
