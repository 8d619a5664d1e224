"""The file store failing during an upload: a full disk (local storage) and the S3 endpoint
killed mid-upload and before one. Clients get a problem+json with ``Retry-After`` (507 for a
full disk, 503 for an unreachable store), never a 500 or a dropped connection; nothing of the
failed upload is left (no row, no object, no temporary file); what was stored before is intact
(SHA-256 of the bytes served back); once the fault clears, uploads succeed again without
restarting the app.

Both drive ``omnify serve`` as a subprocess over real HTTP:

* **disk full**, two ways:

  - ``enospc``: the storage folder is a small tmpfs of the served process's own mount namespace
    (``unshare --user --map-root-user --mount``, so no privilege is needed where user namespaces
    are allowed). The test fills it with a filler file (through ``/proc/<pid>/root``) until less
    than an upload is free: the kernel answers ``ENOSPC``, as a real full volume does. Deleting
    the filler clears the fault.
  - ``rlimit``: the served process's ``RLIMIT_FSIZE`` is lowered with ``prlimit`` while it runs (a
    write past it fails with ``EFBIG``; CPython ignores ``SIGXFSZ``) and raised again to clear the
    fault; it runs everywhere, and also covers the spool file outside the storage folder.

  One upload is streamed to storage (a PDF), one is spooled to a temporary file first (a Word
  document, which is decoded before it is stored).
* **S3 killed**: a moto server holds the bucket; the app reaches it through a TCP relay the test
  kills (every connection reset, the port refusing) once 4 MiB of a 12 MiB multipart upload went
  through, and starts again on the same port. moto keeps its objects in memory, so the relay, not
  moto, is what dies: the objects stored before must survive the outage, as they would on S3.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import resource
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from omnify.settings import Settings
from tests.conftest import DatabaseUrls
from tests.reliability import TcpRelay, register_org, write_figures
from tests.servers import LOOPBACK, clean_env, fake_aws_credentials, free_port, moto_server, running

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
REQUEST_TIMEOUT_SECONDS = 45.0
BUCKET = "omnify-fault-storage"


def pdf(size: int, seed: int) -> bytes:
    """A PDF of ``size`` bytes (a header, then incompressible filler in a comment)."""
    head = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n% "
    tail = b"\ntrailer << >>\n%%EOF\n"
    filler = hashlib.shake_256(seed.to_bytes(8, "big")).digest(size - len(head) - len(tail))
    return head + filler.replace(b"\n", b" ").replace(b"\r", b" ") + tail


def docx(size: int, seed: int) -> bytes:
    """A Word document carrying ``size`` bytes of stored (uncompressed) media."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>', zipfile.ZIP_DEFLATED)
        zf.writestr("word/document.xml", '<?xml version="1.0"?><w:document/>', zipfile.ZIP_DEFLATED)
        zf.writestr("word/media/image1.bin", hashlib.shake_256(seed.to_bytes(8, "big")).digest(size),
                    zipfile.ZIP_STORED)
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _env(urls: DatabaseUrls, data_dir: Path, origin: str, **extra: str) -> dict[str, str]:
    return clean_env(
        OMNIFY_DATA_DIR=str(data_dir), OMNIFY_PUBLIC_BASE_URL=origin, OMNIFY_SECRET_KEY="fault-" + "s" * 42, OMNIFY_LOG_LEVEL="WARNING",
        OMNIFY_DATABASE_URL=urls.app, OMNIFY_MIGRATION_DATABASE_URL=urls.owner,
        OMNIFY_RATE_LIMIT_USER="100000/minute", OMNIFY_RATE_LIMIT_ORG="100000/minute",
        OMNIFY_RATE_LIMIT_AUTH="1000/minute", **extra,
    )


class Api:
    """One keep-alive client for the whole test; every upload is timed and its outcome kept."""

    def __init__(self, http: httpx.AsyncClient, files_url: str) -> None:
        self.http, self.files_url = http, files_url
        self.outcomes: list[dict[str, Any]] = []
        self.server_log: Path | None = None  # quoted when a call other than an upload gets no answer

    async def upload(self, label: str, data: bytes, name: str, category: str = "other") -> httpx.Response | None:
        sent = time.monotonic()
        try:
            resp = await self.http.post(self.files_url, data={"category": category},
                                        files={"file": (name, data, "application/octet-stream")},
                                        timeout=REQUEST_TIMEOUT_SECONDS)
        except httpx.HTTPError as exc:  # a timeout or a dropped connection: what must never happen
            self.outcomes.append({"label": label, "status": f"transport:{type(exc).__name__}",
                                  "seconds": round(time.monotonic() - sent, 3)})
            return None
        self.outcomes.append({"label": label, "status": resp.status_code, "seconds": round(time.monotonic() - sent, 3),
                              "type": resp.json().get("type", "") if resp.status_code >= 400 else "",
                              "retry_after": resp.headers.get("retry-after"),
                              "connection": resp.headers.get("connection", "")})
        return resp

    async def listed(self) -> dict[str, str]:
        """id -> sha256 of every live file of the client, through the API."""
        try:
            resp = await self.http.get(self.files_url, params={"limit": 100})
        except httpx.HTTPError as exc:
            log_text = self.server_log.read_text(errors="replace") if self.server_log else ""
            pytest.fail(f"listing got no answer ({type(exc).__name__}: {exc}) after {self.outcomes}\n"
                        f"{log_text[-3000:]}")
        assert resp.status_code == 200, resp.text
        return {f["id"]: f["sha256"] for f in resp.json()["items"]}

    async def served_sha(self, file_id: str) -> str:
        """SHA-256 of the bytes behind the file's signed download link."""
        link = await self.http.get(f"{self.files_url}/{file_id}/download")
        assert link.status_code == 200, link.text
        async with httpx.AsyncClient(timeout=30) as anonymous:
            body = await anonymous.get(link.json()["url"])
        assert body.status_code == 200, body.text[:300]
        return sha(body.content)


def assert_fault_answer(resp: httpx.Response | None, status: int, code: str, log_text: str) -> None:
    assert resp is not None, f"no answer (dropped connection or timeout)\n{log_text[-3000:]}"
    assert resp.status_code == status, f"{resp.status_code} {resp.text[:500]}\n{log_text[-3000:]}"
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers
    assert resp.json()["type"].endswith("/" + code), resp.text
    assert resp.headers.get("retry-after", "").isdigit(), resp.headers


async def _client_with_files(origin: str, label: str) -> tuple[httpx.AsyncClient, Api, str]:
    http = httpx.AsyncClient(base_url=f"{origin}/api/v1", timeout=60)
    org_id, auth = await register_org(http, label)
    http.headers.update(auth)
    resp = await http.post(f"/orgs/{org_id}/clients", json={"company_name": f"{label.title()} Files Co"})
    assert resp.status_code == 201, resp.text
    return http, Api(http, f"/orgs/{org_id}/clients/{resp.json()['id']}/files"), org_id


def _sqlite_files(urls: DatabaseUrls) -> list[Path]:
    if urls.dialect != "sqlite":
        return []
    path = Path(re.sub(r"^sqlite\+aiosqlite:///", "", urls.app))
    return [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-journal")) if p.exists()]


#: Size of the tmpfs the ``enospc`` mode mounts as the storage folder; the files stored before the
#: fault take about 3.5 MiB of it.
TMPFS_BYTES = 24 * MiB


def _unshare_prefix(storage: Path) -> list[str] | None:
    """argv that runs a command in a private mount namespace with ``storage`` a small tmpfs, or
    None where this kernel or sandbox allows no user namespace (the ``rlimit`` mode still runs)."""
    binary = shutil.which("unshare")
    if binary is None:
        return None
    prefix = [binary, "--user", "--map-root-user", "--mount", "sh", "-c",
              f'mount -t tmpfs -o size={TMPFS_BYTES // 1024}k omnify-full "$0" && exec "$@"', str(storage)]
    probe = subprocess.run([*prefix, "true"], capture_output=True, check=False, timeout=30)
    return prefix if probe.returncode == 0 else None


@dataclass
class DiskFull:
    """How the test fills the server's disk and frees it again."""

    mode: str
    pid: int
    storage: Path  # the storage folder as this process sees it
    limit: int = 0  # rlimit: the RLIMIT_FSIZE set during the fault
    upload_bytes: int = 0  # the size of each upload sent during the fault
    _saved: tuple[int, int] = (0, 0)
    _filler: Path | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    def apply(self) -> None:
        if self.mode == "rlimit":
            self._saved = resource.prlimit(self.pid, resource.RLIMIT_FSIZE)
            resource.prlimit(self.pid, resource.RLIMIT_FSIZE, (self.limit, self._saved[1]))
            return
        # Leave 1 MiB free: less than one fault upload, so the kernel refuses it midway.
        self._filler = self.storage / "filler.bin"
        self._filler.write_bytes(b"\0" * max(0, self._free_bytes() - MiB))
        self.fields["free_bytes_during_fault"] = self._free_bytes()

    def _free_bytes(self) -> int:
        stat = os.statvfs(self.storage)
        return stat.f_bavail * stat.f_frsize

    def clear(self) -> None:
        if self.mode == "rlimit":
            resource.prlimit(self.pid, resource.RLIMIT_FSIZE, self._saved)
        elif self._filler is not None:
            self._filler.unlink()
            self._filler = None

    def stored(self) -> list[Path]:
        """Every file of the storage folder but the test's filler."""
        return sorted(p.relative_to(self.storage) for p in self.storage.rglob("*")
                      if p.is_file() and p != self._filler)


@pytest.fixture(params=["enospc", "rlimit"])
def served_local(request: pytest.FixtureRequest, db_urls: DatabaseUrls, settings: Settings,
                 tmp_path: Path) -> Iterator[tuple[str, DiskFull]]:
    port = free_port()
    origin = f"http://{LOOPBACK}:{port}"
    storage = tmp_path / "storage"
    storage.mkdir()
    env = _env(db_urls, tmp_path / "data", origin, OMNIFY_STORAGE_LOCAL_PATH=str(storage))
    cmd = [sys.executable, "-m", "omnify.cli", "serve", "--port", str(port)]
    if request.param == "enospc":
        prefix = _unshare_prefix(storage)
        if prefix is None:
            pytest.skip("no user and mount namespaces here (unshare refused); the rlimit mode covers the path")
        cmd = [*prefix, *cmd]
    with running(cmd, f"{origin}/healthz", tmp_path / "serve.log", timeout=60, env=env) as proc:
        if request.param == "enospc":  # unshare and sh exec the server: proc.pid is the server
            view = Path(f"/proc/{proc.pid}/root") / storage.relative_to(storage.anchor)
            yield origin, DiskFull("enospc", proc.pid, view, upload_bytes=4 * MiB)
        else:
            # The limit applies to every file the server writes, the SQLite database too: keep it
            # well above the database's size, and the fault's uploads above the limit.
            db_bytes = max((p.stat().st_size for p in _sqlite_files(db_urls)), default=0)
            limit = max(16 * MiB, db_bytes + 16 * MiB)
            assert limit + 4 * MiB < 200 * MiB, f"the database ({db_bytes} bytes) leaves no room under 200 MiB"
            yield origin, DiskFull("rlimit", proc.pid, storage, limit=limit, upload_bytes=limit + 4 * MiB)


async def test_disk_full_during_upload(served_local: tuple[str, DiskFull], db_urls: DatabaseUrls,
                                       tmp_path: Path) -> None:
    origin, disk = served_local
    log_path = tmp_path / "serve.log"
    big = disk.upload_bytes

    http, api, _ = await _client_with_files(origin, "diskfull")
    api.server_log = log_path
    try:
        kept = {}
        for i, (data, name, category) in enumerate([(pdf(200_000, 1), "guide.pdf", "brand_guide"),
                                                     (docx(300_000, 2), "brief.docx", "brand_guide"),
                                                     (pdf(3 * MiB, 3), "deck.pdf", "other")]):
            resp = await api.upload(f"before-{i}", data, name, category)
            assert resp is not None and resp.status_code == 201, resp.text if resp else None
            kept[resp.json()["id"]] = sha(data)
        objects_before = disk.stored()

        fault_at = time.monotonic()
        disk.apply()
        try:
            streamed = await api.upload("fault-streamed-pdf", pdf(big, 4), "huge.pdf")
            spooled = await api.upload("fault-spooled-docx", docx(big, 5), "huge.docx")
            listed_during = await api.listed()
            objects_after = disk.stored()
        finally:
            disk.clear()
        cleared_at = time.monotonic()
        log_text = log_path.read_text(errors="replace")
        assert_fault_answer(streamed, 507, "storage-full", log_text)
        assert_fault_answer(spooled, 507, "storage-full", log_text)

        intact = sum([await api.served_sha(fid) == digest for fid, digest in kept.items()])
        on_disk = {str(p.name): sha((disk.storage / p).read_bytes()) for p in disk.stored()}

        retried = pdf(big, 4)
        after = await api.upload("after-streamed-pdf", retried, "huge.pdf")
        recovered_in = time.monotonic() - cleared_at
        assert after is not None and after.status_code == 201, after.text if after else None
        assert after.json()["sha256"] == sha(retried) and after.json()["size"] == big
        assert await api.served_sha(after.json()["id"]) == sha(retried)
        after_docx = await api.upload("after-spooled-docx", docx(2 * MiB, 5), "brief2.docx")
        assert after_docx is not None and after_docx.status_code == 201, after_docx.text if after_docx else None
    finally:
        await http.aclose()
    log_text = log_path.read_text(errors="replace")

    figures = {
        "fault": ("local disk full during an upload (a tmpfs storage volume filled: ENOSPC)" if disk.mode == "enospc"
                  else "local disk full during an upload (RLIMIT_FSIZE lowered on the running server)"),
        "mode": disk.mode,
        "database": db_urls.dialect,
        "limit_bytes": disk.limit if disk.mode == "rlimit" else TMPFS_BYTES, "upload_bytes": big,
        **disk.fields,
        "uploads": api.outcomes,
        "statuses": sorted({str(o["status"]) for o in api.outcomes}),
        "files_before": len(kept), "files_before_intact": intact,
        "rows_during_fault": len(listed_during), "objects_before": len(objects_before),
        "objects_after_fault": len(objects_after),
        "partial_files_left": sum(".part" in str(p) for p in objects_after),
        "fault_seconds": round(cleared_at - fault_at, 3),
        "recovery_seconds": round(recovered_in, 3),
        "server_errors_logged": log_text.count("Exception in ASGI application"),
    }
    name = "storage-disk-full" + ("-enospc" if disk.mode == "enospc" else "")
    path = write_figures(f"{name}-{db_urls.dialect}", figures)
    print(f"\nDisk-full figures ({path}): {figures}")

    assert listed_during == kept, "a row of the failed uploads (or a lost one) is listed"
    assert objects_after == objects_before, f"objects left by the failed uploads: {objects_after}"
    assert intact == len(kept) and set(on_disk.values()) == set(kept.values())
    assert all(o["connection"] != "close" for o in api.outcomes), api.outcomes
    assert figures["server_errors_logged"] == 0, log_text[-3000:]
    expected_errno = "ENOSPC" if disk.mode == "enospc" else "EFBIG"  # the kernel's own answer, not a stand-in
    assert f'"errno": "{expected_errno}"' in log_text, log_text[-3000:]


@pytest.fixture
def moto_bucket(tmp_path: Path) -> Iterator[str]:
    import boto3

    with fake_aws_credentials(), moto_server(tmp_path) as url:
        boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket=BUCKET)
        yield url


@pytest.fixture
async def served_s3(moto_bucket: str, db_urls: DatabaseUrls, settings: Settings,
                    tmp_path: Path) -> AsyncIterator[tuple[str, TcpRelay]]:
    """``omnify serve`` on the S3 backend, reaching moto through a relay the test can kill."""
    relay = TcpRelay(("127.0.0.1", int(moto_bucket.rsplit(":", 1)[1])), free_port())
    await relay.start()
    port = free_port()
    origin = f"http://{LOOPBACK}:{port}"
    env = _env(db_urls, tmp_path / "data", origin, OMNIFY_STORAGE_BACKEND="s3", OMNIFY_S3_BUCKET=BUCKET,
               OMNIFY_S3_ENDPOINT_URL=relay.url, OMNIFY_S3_PREFIX="tenants")
    try:
        with running([sys.executable, "-m", "omnify.cli", "serve", "--port", str(port)], f"{origin}/healthz",
                     tmp_path / "serve.log", timeout=60, env=env):
            yield origin, relay
    finally:
        await relay.kill()


async def test_s3_endpoint_killed_during_and_before_an_upload(
    served_s3: tuple[str, TcpRelay], moto_bucket: str, db_urls: DatabaseUrls, tmp_path: Path
) -> None:
    import boto3

    origin, relay = served_s3
    s3 = boto3.client("s3", endpoint_url=moto_bucket, region_name="us-east-1")
    log_path = tmp_path / "serve.log"
    http, api, org_id = await _client_with_files(origin, "s3fault")
    try:
        kept = {}
        for i, (data, name, category) in enumerate([(pdf(200_000, 11), "guide.pdf", "brand_guide"),
                                                     (pdf(9 * MiB, 12), "deck.pdf", "other")]):
            resp = await api.upload(f"before-{i}", data, name, category)
            assert resp is not None and resp.status_code == 201, resp.text if resp else None
            kept[resp.json()["id"]] = sha(data)

        def objects() -> set[str]:
            listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"tenants/{org_id}/")
            return {o["Key"] for o in listed.get("Contents", [])}

        objects_before = objects()
        fault_at = time.monotonic()
        relay.cut_after(4 * MiB)  # inside the first 8 MiB part of the next upload
        during = await api.upload("killed-during", pdf(12 * MiB, 13), "big.pdf")
        assert relay.killed.is_set(), "the relay was not cut during the upload"
        before_upload = await api.upload("down-before", pdf(100_000, 14), "small.pdf", "brand_guide")
        listed_during = await api.listed()
        await relay.start()
        restored_at = time.monotonic()
        log_text = log_path.read_text(errors="replace")
        assert_fault_answer(during, 503, "storage-unavailable", log_text)
        assert_fault_answer(before_upload, 503, "storage-unavailable", log_text)

        def unfinished() -> int:
            listed = s3.list_multipart_uploads(Bucket=BUCKET, Prefix=f"tenants/{org_id}/")
            return len(listed.get("Uploads", []))

        objects_after = objects()
        pending = unfinished()  # the killed upload's parts: its abort could not reach S3
        intact = sum([await api.served_sha(fid) == digest for fid, digest in kept.items()])
        retried = pdf(12 * MiB, 13)
        after = await api.upload("after", retried, "big.pdf")
        recovered_in = time.monotonic() - restored_at
        assert after is not None and after.status_code == 201, after.text if after else None
        assert await api.served_sha(after.json()["id"]) == sha(retried)
        pending_after = unfinished()
    finally:
        await http.aclose()
    log_text = log_path.read_text(errors="replace")

    figures = {
        "fault": "S3 endpoint killed during a multipart upload and down for the next one",
        "database": db_urls.dialect,
        "uploads": api.outcomes,
        "statuses": sorted({str(o["status"]) for o in api.outcomes}),
        "files_before": len(kept), "files_before_intact": intact,
        "rows_during_fault": len(listed_during),
        "objects_before": len(objects_before), "objects_after_fault": len(objects_after),
        "incomplete_multipart_uploads_during_outage": pending,
        "incomplete_multipart_uploads_after_recovery": pending_after,
        "outage_seconds": round(restored_at - fault_at, 3),
        "recovery_seconds": round(recovered_in, 3),
        "server_errors_logged": log_text.count("Exception in ASGI application"),
    }
    path = write_figures(f"storage-s3-killed-{db_urls.dialect}", figures)
    print(f"\nS3-killed figures ({path}): {figures}")

    assert listed_during == kept, "a row of the failed uploads (or a lost one) is listed"
    assert objects_after == objects_before, f"objects left by the failed uploads: {objects_after - objects_before}"
    assert intact == len(kept)
    assert pending_after == 0, "the killed upload's parts were not aborted once S3 answered again"
    assert all(o["connection"] != "close" for o in api.outcomes), api.outcomes
    assert figures["server_errors_logged"] == 0, log_text[-3000:]
