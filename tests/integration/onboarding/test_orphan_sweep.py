"""The orphan sweep: objects an upload wrote but never recorded are deleted, nothing else is.

An upload writes its object (and thumbnail) to storage, then commits its ``uploaded_files``
row; a process that dies in between leaves objects no row names. Here a child process writes
them exactly as the upload does - through the Storage API, under the keys
:func:`build_object_key` makes - and is SIGKILLed before any row, on the local disk and on S3
(a real ``moto_server`` process), beside real uploads made through the API (with a thumbnail,
and one deleted but not purged yet) and a privacy export (a category the files domain does not
own). On the local disk another child is killed in the middle of a write, leaving its temporary
file. The sweep must delete only the orphans older than its grace period.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import boto3
import httpx
import pytest

from omnify.app import create_app
from omnify.core.db import Database
from omnify.core.storage import LocalStorage, S3Storage, Storage, build_object_key
from omnify.files import service as files_service
from omnify.settings import Settings
from tests.factories import register
from tests.integration.onboarding.onboarding_support import clients_url, new_client, pdf, png, upload
from tests.servers import fake_aws_credentials, moto_server

HOUR = 3600

#: The dying upload: writes what ``upload()`` writes before its row, then the process is killed
#: (``mid-write``: killed while the object's bytes are still arriving).
CRASH = textwrap.dedent("""
    import asyncio, json, os, signal, sys
    from omnify.core.storage import storage_from_settings
    from omnify.settings import Settings

    settings = Settings(_env_file=None, **json.loads(sys.argv[1]))
    keys, mode = sys.argv[2:-1], sys.argv[-1]

    async def chunks(key):
        yield b"bytes of " + key.encode()
        if mode == "mid-write":
            os.kill(os.getpid(), signal.SIGKILL)
        yield b"."

    async def main():
        storage = storage_from_settings(settings)
        for key in keys:
            await storage.put_stream(key, chunks(key))
        os.kill(os.getpid(), signal.SIGKILL)  # the row was next

    asyncio.run(main())
""")


def crash(settings: Settings, keys: list[str], mode: str = "after-objects") -> None:
    """Run the dying upload in a child process; it must have died of SIGKILL."""
    fields = {"storage_backend": settings.storage_backend, "secret_key": settings.secret_key.get_secret_value(),
              "storage_local_path": str(settings.storage_local_path or ""), "s3_bucket": settings.s3_bucket,
              "s3_prefix": settings.s3_prefix, "s3_endpoint_url": settings.s3_endpoint_url, "s3_sse": settings.s3_sse}
    args = [sys.executable, "-c", CRASH, json.dumps({k: v for k, v in fields.items() if v}), *keys, mode]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fake_aws_credentials(), moto_server(tmp_path_factory.mktemp("moto-orphans")) as url:
        yield url


@pytest.fixture(params=["local", "s3"])
def backend_settings(request: pytest.FixtureRequest, settings: Settings, tmp_path_factory: pytest.TempPathFactory
                     ) -> Settings:
    """A storage of the test's own (a sweep with no grace must not reach other tests' objects)."""
    if request.param == "local":
        return settings.model_copy(update={"storage_backend": "local",
                                           "storage_local_path": tmp_path_factory.mktemp("orphan-storage")})
    moto: str = request.getfixturevalue("moto")
    bucket = f"omnify-orphans-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto, region_name="us-east-1").create_bucket(Bucket=bucket)
    return settings.model_copy(update={"storage_backend": "s3", "s3_bucket": bucket, "s3_prefix": "tenants",
                                       "s3_endpoint_url": moto, "s3_sse": "AES256"})


@pytest.fixture
async def http(backend_settings: Settings, database: Database) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(backend_settings, database)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        yield c


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _read(storage: Storage, key: str) -> bytes:
    return b"".join([chunk async for chunk in await storage.get_stream(key)])


async def _listed(storage: Storage, prefix: str) -> set[str]:
    return {obj.key async for obj in storage.list_objects(prefix)}


def _age(storage: Storage, key: str, seconds: float) -> bool:
    """Make an object ``seconds`` older (local files only: S3 sets LastModified itself)."""
    if not isinstance(storage, LocalStorage):
        return False
    path = storage.path_for(key)
    then = time.time() - seconds
    os.utime(path, (then, then))
    return True


# The sweep compares object modification times (the filesystem's and S3's clocks, which a
# clock-ahead run does not move) with Python's clock.
@pytest.mark.server_clock
async def test_sweep_deletes_only_objects_without_a_row_past_the_grace(
    http: httpx.AsyncClient, backend_settings: Settings, database: Database
) -> None:
    storage = files_service.storage_for(backend_settings)
    if isinstance(storage, S3Storage):
        storage.list_page_size = 2  # the listing must follow list_objects_v2's continuation tokens
    acct = await register(http)
    c = await new_client(http, acct)
    org, client_id = acct.org_id, c["id"]

    logo = await upload(http, acct, client_id, png(60, 40, "teal"), name="logo.png")
    doc = await upload(http, acct, client_id, pdf("brand book"), name="guide.pdf", category="brand_guide")
    gone = await upload(http, acct, client_id, png(30, 30, "plum"), name="old.png")
    assert logo.status_code == doc.status_code == gone.status_code == 201, (logo.text, doc.text, gone.text)
    deleted = await http.delete(clients_url(acct, client_id, "files", gone.json()["id"]), headers=acct.headers)
    assert deleted.status_code == 204  # marked deleted: its objects are the purge's, not the sweep's
    prefix = f"{org}/"
    recorded = await _listed(storage, prefix)
    assert len(recorded) == 5  # two images with their thumbnails, one PDF

    # The crash: what upload() wrote before its process died - an object and its thumbnail, no row.
    object_id = uuid.uuid4()
    orphan = build_object_key(org, client_id, "creative", object_id)
    orphan_thumb = build_object_key(org, client_id, files_service.THUMBNAIL_CATEGORY, object_id)
    fresh = build_object_key(org, client_id, "other")  # an upload still in flight: no row *yet*
    export = build_object_key(org, client_id, "privacy")  # the privacy domain's, with a row of its own
    crash(backend_settings, [orphan, orphan_thumb])
    assert await storage.exists(orphan) and await storage.exists(orphan_thumb)
    for key in (fresh, export):
        await storage.put_stream(key, _once(b"bytes of " + key.encode()))
    partial = None
    if isinstance(storage, LocalStorage):  # a write killed half-way: its temporary file stays
        crash(backend_settings, [build_object_key(org, client_id, "creative")], "mid-write")
        (partial,) = (p for p in storage.path_for(orphan).parent.iterdir() if p.name.endswith(".part"))
    contents = {key: await _read(storage, key) for key in recorded}

    # Within the grace period nothing goes, whatever has a row or not.
    swept = await files_service.sweep_orphan_objects(database, storage, grace_seconds=HOUR)
    assert swept.orphans == 0
    assert await _listed(storage, prefix) == recorded | {orphan, orphan_thumb, fresh, export}

    assert swept.partials == 0 and (partial is None or partial.exists())
    if _age(storage, orphan, 2 * HOUR) and _age(storage, orphan_thumb, 2 * HOUR):
        for key in recorded | {export}:
            _age(storage, key, 2 * HOUR)  # old objects with a row stay, however old
        assert partial is not None
        then = time.time() - 2 * HOUR
        os.utime(partial, (then, then))
        swept = await files_service.sweep_orphan_objects(database, storage, grace_seconds=HOUR)
        assert swept.orphans == 2 and swept.scanned >= 9 and swept.partials == 1
        assert await _listed(storage, prefix) == recorded | {fresh, export}
        assert not partial.exists()

    # No grace left: every object without a row goes, the in-flight one included.
    swept = await files_service.sweep_orphan_objects(database, storage, grace_seconds=0)
    assert await _listed(storage, prefix) == recorded | {export}
    assert not await storage.exists(orphan) and not await storage.exists(orphan_thumb)
    assert not await storage.exists(fresh)
    assert {key: await _read(storage, key) for key in recorded} == contents
    assert swept.orphans == (1 if isinstance(storage, LocalStorage) else 3)

    # The files that have rows are still served, and a second sweep finds nothing.
    link = await http.get(clients_url(acct, client_id, "files", logo.json()["id"], "download"), headers=acct.headers)
    assert link.status_code == 200, link.text
    assert (await files_service.sweep_orphan_objects(database, storage, grace_seconds=0)).orphans == 0
