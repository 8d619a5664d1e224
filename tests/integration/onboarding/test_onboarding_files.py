"""Brand files through the real API and local storage: upload, sniff, dedupe, download, delete, purge,
and every kind of bad upload refused cleanly (clear 4xx, no object, no row)."""

from __future__ import annotations

import hashlib
import io
import tracemalloc
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from PIL import Image
from sqlalchemy import select

from omnify.core.db import Database
from omnify.files import service as files_service
from omnify.files.models import UploadedFile
from omnify.orgs.models import OrgQuota
from omnify.settings import Settings
from tests.factories import Account, register
from tests.integration.onboarding.onboarding_support import (
    Team,
    clients_url,
    elf,
    file_rows,
    local_path,
    new_client,
    pdf,
    png,
    png_bomb,
    stored_files,
    upload,
)
from tests.zipbombs import docx_bomb, docx_ok, docx_overlapping

MiB = 1024 * 1024


async def _storage_used(client: httpx.AsyncClient, acct: Account) -> int:
    quota = (await client.get(f"/api/v1/orgs/{acct.org_id}/quota", headers=acct.headers)).json()
    return int({q["resource"]: q["used"] for q in quota["quotas"]}["storage_bytes"])


async def test_png_upload_measured_thumbnailed_and_downloadable(
    client: httpx.AsyncClient, team: Team, settings: Settings, owner_database: Database
) -> None:
    c = await new_client(client, team.owner)
    data = png(300, 120)
    # the client's name and Content-Type are ignored: the content decides
    resp = await upload(client, team.owner, c["id"], data, name="logo.exe", content_type="application/x-msdownload")
    assert resp.status_code == 201, resp.text
    f = resp.json()
    assert f["kind"] == "png" and f["content_type"] == "image/png" and f["category"] == "logo"
    assert (f["width"], f["height"]) == (300, 120) and f["has_thumbnail"] is True
    assert f["sha256"] == hashlib.sha256(data).hexdigest() and f["size"] == len(data)
    assert f["filename"] == "logo.exe"

    # storage layout: {org}/{client}/{category}/{uuid} and a thumbnail beside it
    paths = stored_files(settings, team.owner.org_id, c["id"])
    rel = {p.relative_to(paths[0].parents[1]).as_posix() for p in paths}
    assert rel == {f"logo/{f['id']}", f"thumbnails/{f['id']}"}

    link = await client.get(clients_url(team.owner, c["id"], "files", f["id"], "download"),
                            headers=team.viewer.headers)
    assert link.status_code == 200, link.text
    body = link.json()
    got = await client.get(local_path(body["url"]))  # no Authorization: the signature is the key
    assert got.status_code == 200 and got.content == data
    assert got.headers["content-type"] == "image/png"
    assert got.headers["content-disposition"].startswith('attachment; filename="logo.exe"')
    assert got.headers["x-content-type-options"] == "nosniff"

    thumb = await client.get(clients_url(team.owner, c["id"], "files", f["id"], "download"),
                             headers=team.owner.headers, params={"variant": "thumbnail"})
    img = Image.open(io.BytesIO((await client.get(local_path(thumb.json()["url"]))).content))
    assert img.format == "WEBP" and max(img.size) == 256

    # a forged or altered link is refused
    tampered = local_path(body["url"]).replace("sig=", "sig=A")
    assert (await client.get(tampered)).status_code == 403
    other_key = local_path(body["url"]).replace(f"/logo/{f['id']}", f"/thumbnails/{f['id']}")
    assert (await client.get(other_key)).status_code == 403

    # list, get, fields
    listed = (await client.get(clients_url(team.owner, c["id"], "files"), headers=team.owner.headers,
                               params={"fields": "filename,size"})).json()
    assert listed["items"] == [{"id": f["id"], "filename": "logo.exe", "size": len(data)}]
    one = await client.get(clients_url(team.owner, c["id"], "files", f["id"]), headers=team.owner.headers)
    assert one.json() == f
    assert await file_rows(owner_database, c["id"]) == 1


async def test_same_content_is_stored_once_per_client(
    client: httpx.AsyncClient, team: Team, settings: Settings
) -> None:
    c = await new_client(client, team.owner)
    data = pdf("brand book")
    first = await upload(client, team.owner, c["id"], data, name="guide.pdf", category="brand_guide")
    assert first.status_code == 201, first.text
    used = await _storage_used(client, team.owner)
    again = await upload(client, team.owner, c["id"], data, name="copy.pdf", category="brand_guide")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert len(stored_files(settings, team.owner.org_id, c["id"])) == 1
    assert await _storage_used(client, team.owner) == used
    # images are checked before storing, too
    pic = png(10, 10, "green")
    assert (await upload(client, team.owner, c["id"], pic, category="creative")).status_code == 201
    assert (await upload(client, team.owner, c["id"], pic, category="creative")).status_code == 200
    assert len(stored_files(settings, team.owner.org_id, c["id"])) == 3  # pdf + png + thumbnail
    # another client of the same org gets its own copy
    other = await new_client(client, team.owner)
    assert (await upload(client, team.owner, other["id"], data, category="brand_guide")).status_code == 201


async def test_category_allow_lists_and_query_category(client: httpx.AsyncClient, team: Team) -> None:
    c = await new_client(client, team.owner)
    csv_data = b"name,spend\nA,10\nB,20\n"
    doc = await upload(client, team.owner, c["id"], csv_data, name="report.csv", category="analysis_document")
    assert doc.status_code == 201 and doc.json()["kind"] == "csv" and doc.json()["width"] is None
    word = await upload(client, team.owner, c["id"], docx_ok(), name="brief.docx", category="brand_guide")
    assert word.status_code == 201 and word.json()["kind"] == "docx", word.text
    refused = await upload(client, team.owner, c["id"], pdf(), name="logo.pdf", category="logo")
    assert refused.status_code == 415 and refused.json()["allowed"] == ["jpeg", "png", "svg", "webp"]
    svg_ok = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'
    ok = await upload(client, team.owner, c["id"], svg_ok, name="logo.svg", category="logo")
    assert ok.status_code == 201 and ok.json()["kind"] == "svg"
    svg_bad = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    bad = await upload(client, team.owner, c["id"], svg_bad, name="x.svg", category="logo")
    assert bad.status_code == 415 and bad.json()["type"].endswith("unsafe-svg")
    # category as a query parameter (no form field)
    url = clients_url(team.owner, c["id"], "files")
    q = await client.post(url, headers=team.owner.headers, params={"category": "other"},
                          files={"file": ("notes.txt", b"plain words\n", "text/plain")})
    assert q.status_code == 201 and q.json()["category"] == "other"


async def _assert_nothing_stored(client: httpx.AsyncClient, team: Team, settings: Settings, owner_db: Database,
                                 client_id: str, used_before: int) -> None:
    assert stored_files(settings, team.owner.org_id, client_id) == []
    assert await file_rows(owner_db, client_id) == 0
    assert await _storage_used(client, team.owner) == used_before


@pytest.mark.parametrize(("name", "data", "category", "status", "code"), [
    ("empty.png", b"", "logo", 422, "empty-file"),
    ("logo.png", elf(), "logo", 415, "unsupported-file-type"),
    ("creative.png", elf(), "other", 415, "unsupported-file-type"),
    ("bomb.png", png_bomb(), "creative", 422, "image-too-large"),
    ("broken.png", png()[:60], "logo", 422, "invalid-image"),
    ("fake.docx", b"PK\x03\x04" + b"\x00" * 200, "brand_guide", 415, "unsupported-file-type"),
    ("nul.txt", b"text with \x00 inside", "other", 415, "unsupported-file-type"),
    ("bomb.docx", docx_bomb(1024), "brand_guide", 422, "archive-bomb"),
    ("overlap.docx", docx_overlapping(400), "analysis_document", 422, "archive-bomb"),
    ("liar.docx", docx_bomb(1, lie_about_size=True), "other", 422, "archive-bomb"),
    ("cut.docx", docx_ok()[:-30], "brand_guide", 422, "invalid-archive"),
], ids=["empty", "elf-as-logo", "elf-as-other", "decompression-bomb", "truncated-png", "fake-docx", "nul-in-text",
        "zip-bomb-1MB-to-1GiB", "zip-overlapping-entries", "zip-lying-header", "zip-truncated"])
async def test_bad_uploads_are_refused_and_leave_nothing(
    client: httpx.AsyncClient, shared: Team, shared_client_id: str, settings: Settings, owner_database: Database,
    name: str, data: bytes, category: str, status: int, code: str,
) -> None:
    used = await _storage_used(client, shared.owner)
    resp = await upload(client, shared.owner, shared_client_id, data, name=name, category=category)
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["type"].endswith(code), resp.json()
    await _assert_nothing_stored(client, shared, settings, owner_database, shared_client_id, used)


async def test_over_the_category_limit_is_413(
    client: httpx.AsyncClient, team: Team, settings: Settings, owner_database: Database
) -> None:
    c = await new_client(client, team.owner)
    used = await _storage_used(client, team.owner)
    big = png(8, 8) + b"\x00" * (5 * MiB)  # a logo may be 5 MiB
    resp = await upload(client, team.owner, c["id"], big, name="huge.png", category="logo")
    assert resp.status_code == 413 and resp.json()["max_bytes"] == 5 * MiB
    await _assert_nothing_stored(client, team, settings, owner_database, c["id"], used)

    # streamed without Content-Length: refused while flowing (the image is being spooled)
    boundary = "omnifyboundary"

    async def body() -> AsyncIterator[bytes]:
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"category\"\r\n\r\nlogo\r\n"
               f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
               "Content-Type: image/png\r\n\r\n").encode()
        yield png(8, 8)
        for _ in range(6):
            yield b"\x00" * MiB
        yield f"\r\n--{boundary}--\r\n".encode()

    resp = await client.post(clients_url(team.owner, c["id"], "files"), content=body(),
                             headers={**team.owner.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert resp.status_code == 413, resp.text
    assert resp.json()["type"].endswith("file-too-large")
    await _assert_nothing_stored(client, team, settings, owner_database, c["id"], used)


async def test_streamed_upload_does_not_buffer_the_file(
    client: httpx.AsyncClient, team: Team, settings: Settings
) -> None:
    """A 40 MiB upload arrives in 256 KiB chunks; peak Python memory stays far below its size."""
    c = await new_client(client, team.owner)
    boundary = "streamboundary"
    chunk = b"10,20\n" * (256 * 1024 // 6)
    parts = 160
    hasher = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"category\"\r\n\r\nother\r\n"
               f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.csv\"\r\n\r\n").encode()
        for _ in range(parts):
            hasher.update(chunk)
            yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    tracemalloc.start()
    try:
        resp = await client.post(clients_url(team.owner, c["id"], "files"), content=body(),
                                 headers={**team.owner.headers,
                                          "Content-Type": f"multipart/form-data; boundary={boundary}"})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert resp.status_code == 201, resp.text
    assert resp.json()["size"] == len(chunk) * parts and resp.json()["sha256"] == hasher.hexdigest()
    assert peak < 12 * MiB, f"peak traced memory {peak} for a {len(chunk) * parts} byte upload"


async def test_hostile_filenames_are_sanitised_and_never_reach_the_key(
    client: httpx.AsyncClient, team: Team, settings: Settings
) -> None:
    c = await new_client(client, team.owner)
    name = "../../etc/pass\x00wd\r\n\x1b[31m\u202egpj.exe"
    resp = await upload(client, team.owner, c["id"], b"harmless text\n", name=name, category="other")
    assert resp.status_code == 201, resp.text
    stored_name = resp.json()["filename"]
    assert "/" not in stored_name and ".." not in stored_name.split(".")[0]
    assert not any(ord(ch) < 32 or ch == "\u202e" for ch in stored_name)
    (path,) = stored_files(settings, team.owner.org_id, c["id"])
    assert path.name == resp.json()["id"]  # the key is ours, never the name
    link = (await client.get(clients_url(team.owner, c["id"], "files", resp.json()["id"], "download"),
                             headers=team.owner.headers)).json()
    got = await client.get(local_path(link["url"]))
    assert got.status_code == 200 and "\r" not in got.headers["content-disposition"]


async def test_storage_quota_overrun_is_402_and_nothing_stored(
    client: httpx.AsyncClient, settings: Settings, owner_database: Database
) -> None:
    acct = await register(client)
    async with owner_database.sessionmaker() as s:
        s.add(OrgQuota(org_id=uuid.UUID(acct.org_id), storage_bytes=20_000))
        await s.commit()
    c = await new_client(client, acct)
    small = await upload(client, acct, c["id"], pdf("x" * 5000), category="brand_guide")
    assert small.status_code == 201
    used = await _storage_used(client, acct)
    assert used == small.json()["size"]
    too_big = await upload(client, acct, c["id"], pdf("y" * 30_000), category="brand_guide")
    assert too_big.status_code == 402 and too_big.json()["resource"] == "storage_bytes"
    paths = stored_files(settings, acct.org_id, c["id"])
    assert [p.name for p in paths] == [small.json()["id"]]
    assert await file_rows(owner_database, c["id"]) == 1
    assert await _storage_used(client, acct) == used


async def test_malformed_requests(client: httpx.AsyncClient, shared: Team, shared_client_id: str) -> None:
    team, c = shared, {"id": shared_client_id}
    url = clients_url(team.owner, c["id"], "files")
    h = team.owner.headers
    not_multipart = await client.post(url, headers=h, json={"category": "logo"})
    assert not_multipart.status_code == 415
    no_file = await client.post(url, headers=h, data={"category": "logo"},
                                files={"other": ("x", b"y", "text/plain")})
    assert no_file.status_code == 422
    no_category = await client.post(url, headers=h, files={"file": ("a.png", png(), "image/png")})
    assert no_category.status_code == 422 and no_category.json()["errors"][0]["field"] == "category"
    bad_category = await upload(client, team.owner, c["id"], png(), category="selfies")
    assert bad_category.status_code == 422
    truncated = await client.post(url, headers={**h, "Content-Type": "multipart/form-data; boundary=zz"},
                                  content=b"--zz\r\nContent-Disposition: form-data; name=\"category\"\r\n\r\nlogo")
    assert truncated.status_code == 400
    two_files = await client.post(url, headers=h, data={"category": "other"},
                                  files=[("file", ("a.txt", b"one\n", "text/plain")),
                                         ("file", ("b.txt", b"two\n", "text/plain"))])
    assert two_files.status_code == 422
    assert (await client.get(clients_url(team.owner, c["id"], "files"), headers=h)).json()["items"] == []


async def test_delete_then_purge_keeps_accounting_exact(
    client: httpx.AsyncClient, team: Team, settings: Settings, database: Database, owner_database: Database
) -> None:
    c = await new_client(client, team.owner)
    before = await _storage_used(client, team.owner)
    made = (await upload(client, team.owner, c["id"], png(50, 50, "navy"))).json()
    async with owner_database.sessionmaker() as s:
        row = await s.scalar(select(UploadedFile).where(UploadedFile.id == uuid.UUID(made["id"])))
        assert row is not None
        stored = row.size + row.thumbnail_size
    assert await _storage_used(client, team.owner) == before + stored

    url = clients_url(team.owner, c["id"], "files", made["id"])
    assert (await client.delete(url, headers=team.viewer.headers)).status_code == 403
    assert (await client.delete(url, headers=team.owner.headers)).status_code == 204
    assert (await client.get(url, headers=team.owner.headers)).status_code == 404
    assert (await client.delete(url, headers=team.owner.headers)).status_code == 404
    # marked only: the object and its bytes stay until the purge job
    assert len(stored_files(settings, team.owner.org_id, c["id"])) == 2
    assert await _storage_used(client, team.owner) == before + stored
    # re-uploading the same content is a new file (the deleted one no longer counts for dedupe)
    again = await upload(client, team.owner, c["id"], png(50, 50, "navy"))
    assert again.status_code == 201 and again.json()["id"] != made["id"]

    purged = await files_service.purge_deleted_files(database, files_service.storage_for(settings))
    assert purged >= 1
    names = {p.name for p in stored_files(settings, team.owner.org_id, c["id"])}
    assert names == {again.json()["id"]}
    assert await file_rows(owner_database, c["id"]) == 1
    assert await _storage_used(client, team.owner) == before + stored
