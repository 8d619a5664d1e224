"""Where backups live: a local directory or an S3 bucket, behind one small interface.

Backups are written once and never modified (WAL segments especially: PostgreSQL requires that an
archived segment is never overwritten with different content), so the interface is put-if-absent,
get, list and delete. Object keys are POSIX-style relative paths (``base/20260101T021500Z/...``,
``wal/000000010000000000000003``).

URLs: ``file:///var/backups/omnify`` (or a bare path) and ``s3://bucket/prefix``. The S3 store uses
server-side encryption on top of our own client-side encryption, and relies on bucket versioning
plus a lifecycle rule as the second line of defence against deletion (docs/disaster-recovery.md).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from urllib.parse import urlparse


class StoreError(RuntimeError):
    """A backup store operation failed (missing object, conflicting write, bad URL)."""


@dataclass(frozen=True)
class StoredFile:
    key: str
    size: int
    modified: datetime


class BackupStore(Protocol):
    url: str

    def put_file(self, key: str, path: Path) -> bool:
        """Store ``path`` under ``key`` unless it exists; returns False when it already existed."""
        ...

    def get_file(self, key: str, path: Path) -> None: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> list[StoredFile]: ...

    def delete(self, key: str) -> None: ...


def _check_key(key: str) -> str:
    pure = PurePosixPath(key)
    if pure.is_absolute() or ".." in pure.parts or not key or key.endswith("/"):
        raise StoreError(f"invalid backup object key {key!r}")
    return str(pure)


class LocalStore:
    """A directory (local disk, NFS, a mounted volume). Writes are atomic (temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"file://{root}"

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def put_file(self, key: str, path: Path) -> bool:
        target = self._path(key)
        if target.exists():
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out, path.open("rb") as src:
                shutil.copyfileobj(src, out, 1024 * 1024)
                out.flush()
                os.fsync(out.fileno())
            # link() fails if the target appeared meanwhile: never overwrite a concurrent writer.
            try:
                os.link(tmp, target)
            except FileExistsError:
                return False
        finally:
            Path(tmp).unlink(missing_ok=True)
        return True

    def get_file(self, key: str, path: Path) -> None:
        source = self._path(key)
        if not source.is_file():
            raise StoreError(f"{self.url}: no object {key}")
        shutil.copyfile(source, path)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[StoredFile]:
        base = self.root / prefix if prefix else self.root
        if not base.exists():
            return []
        found: list[StoredFile] = []
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.name.startswith(".incoming-"):
                stat = path.stat()
                found.append(
                    StoredFile(
                        path.relative_to(self.root).as_posix(),
                        stat.st_size,
                        datetime.fromtimestamp(stat.st_mtime, UTC),
                    )
                )
        return found

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
        # Remove empty parents up to the root so pruned base backups leave no empty folders.
        parent = self._path(key).parent
        while parent != self.root and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent


class S3Store:
    """An S3 bucket/prefix (AWS, or any S3-compatible endpoint via AWS_ENDPOINT_URL)."""

    def __init__(self, bucket: str, prefix: str, client: Any | None = None) -> None:
        import boto3

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        endpoint = os.environ.get("OMNIFY_BACKUP_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL")
        self.client = client or boto3.client("s3", endpoint_url=endpoint)
        self.sse = os.environ.get("OMNIFY_BACKUP_S3_SSE", "AES256")

    def _key(self, key: str) -> str:
        key = _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_file(self, key: str, path: Path) -> bool:
        if self.exists(key):
            return False
        extra: dict[str, str] = {"ServerSideEncryption": self.sse} if self.sse else {}
        # IfNoneMatch makes the write conditional on the server where supported (S3 since 2024).
        with path.open("rb") as body:
            try:
                self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=body, IfNoneMatch="*", **extra)
            except self.client.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in {"PreconditionFailed", "ConditionalRequestConflict"}:
                    return False
                raise
        return True

    def get_file(self, key: str, path: Path) -> None:
        try:
            self.client.download_file(self.bucket, self._key(key), str(path))
        except self.client.exceptions.ClientError as exc:
            raise StoreError(f"{self.url}: no object {key}: {exc}") from exc

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise
        return True

    def _iter(self, prefix: str) -> Iterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_objects_v2")
        full = "/".join(part for part in (self.prefix, prefix) if part)
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
            yield from page.get("Contents", [])

    def list(self, prefix: str) -> list[StoredFile]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        return sorted(
            (StoredFile(obj["Key"][strip:], int(obj["Size"]), obj["LastModified"]) for obj in self._iter(prefix)),
            key=lambda f: f.key,
        )

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))


def open_store(url: str) -> BackupStore:
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        path = Path(parsed.path if parsed.scheme else url)
        if not path.is_absolute():
            path = path.resolve()
        return LocalStore(path)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StoreError(f"s3 URL needs a bucket: {url!r}")
        return S3Store(parsed.netloc, parsed.path)
    raise StoreError(f"unsupported backup URL scheme {parsed.scheme!r} (use file:// or s3://)")
