"""Local-disk storage: streaming writes, limits, traversal safety and signed downloads."""

from __future__ import annotations

import hashlib
import os
import stat
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import anyio
import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.responses import StreamingResponse

from omnify.core.errors import PayloadTooLarge, install_error_handlers
from omnify.core.storage import (
    LOCAL_DOWNLOAD_PATH,
    InvalidObjectKeyError,
    LocalStorage,
    ObjectNotFound,
    SignedUrlExpired,
    SignedUrlInvalid,
    Storage,
    build_object_key,
    content_disposition,
    local_download_response,
    storage_from_settings,
    verify_signed_local_url,
)
from omnify.settings import Settings
from tests.servers import edge_proxy, serve_asgi

SECRET = "test-secret-key-with-enough-entropy-0123456789"
ORG, CLIENT = uuid.UUID(int=1), uuid.UUID(int=2)


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def make_storage(root: Path, **kw: object) -> LocalStorage:
    return LocalStorage(root, secret_key=SECRET, public_base_url="http://testserver", **kw)  # type: ignore[arg-type]


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def split_url(url: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    assert parts.path.startswith(LOCAL_DOWNLOAD_PATH + "/")
    return unquote(parts.path[len(LOCAL_DOWNLOAD_PATH) + 1 :]), dict(parse_qsl(parts.query))


def test_build_object_key() -> None:
    key = build_object_key(ORG, str(CLIENT), "brand_guide")
    org, client, category, object_id = key.split("/")
    assert (org, client, category) == (str(ORG), str(CLIENT), "brand_guide")
    assert uuid.UUID(object_id)
    fixed = uuid.uuid4()
    assert build_object_key(ORG, CLIENT, "logo", fixed).endswith(f"/logo/{fixed}")
    for bad in ("../x", "Logo", "a/b", ""):
        with pytest.raises(InvalidObjectKeyError):
            build_object_key(ORG, CLIENT, bad)
    with pytest.raises(ValueError):
        build_object_key("../../etc", CLIENT, "logo")


def test_factory_and_protocol(tmp_path: Path) -> None:
    storage = storage_from_settings(Settings(_env_file=None, data_dir=tmp_path))  # type: ignore[call-arg]
    assert isinstance(storage, LocalStorage) and isinstance(storage, Storage)
    assert storage.root == (tmp_path / "storage").resolve()


async def test_put_get_delete_round_trip(tmp_path: Path) -> None:
    storage = make_storage(tmp_path)
    key = build_object_key(ORG, CLIENT, "creative")
    parts = [os.urandom(70_000), b"", os.urandom(1), os.urandom(200_000)]
    stored = await storage.put_stream(key, chunks(*parts), content_type="image/png", max_bytes=10**6)
    data = b"".join(parts)
    assert (stored.key, stored.size, stored.sha256) == (key, len(data), hashlib.sha256(data).hexdigest())
    assert stat.S_IMODE(storage.path_for(key).stat().st_mode) == 0o600
    assert await storage.exists(key) and await storage.size(key) == len(data)

    received = b"".join([c async for c in await storage.get_stream(key, chunk_size=4096)])
    assert received == data

    await storage.delete(key)
    await storage.delete(key)  # idempotent: delete jobs may retry
    assert not await storage.exists(key)
    with pytest.raises(ObjectNotFound):
        await storage.get_stream(key)
    assert leftovers(tmp_path) == []


async def test_size_limit_aborts_and_leaves_nothing(tmp_path: Path) -> None:
    storage = make_storage(tmp_path)
    key = build_object_key(ORG, CLIENT, "logo")
    consumed: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        for i in range(1000):
            consumed.append(i)
            yield b"x" * 1000

    with pytest.raises(PayloadTooLarge) as err:
        await storage.put_stream(key, endless(), max_bytes=5000)
    assert err.value.status == 413 and err.value.extra["max_bytes"] == 5000
    assert len(consumed) == 6  # stopped reading as soon as the limit was crossed
    assert not await storage.exists(key)
    assert leftovers(tmp_path) == []


async def test_failed_put_keeps_previous_version(tmp_path: Path) -> None:
    storage = make_storage(tmp_path)
    key = build_object_key(ORG, CLIENT, "other")
    await storage.put_stream(key, chunks(b"original"))

    async def broken() -> AsyncIterator[bytes]:
        yield b"partial"
        raise RuntimeError("client went away")

    with pytest.raises(RuntimeError):
        await storage.put_stream(key, broken())
    assert b"".join([c async for c in await storage.get_stream(key)]) == b"original"
    assert len(leftovers(tmp_path)) == 1


async def test_cancelled_put_leaves_nothing(tmp_path: Path) -> None:
    storage = make_storage(tmp_path)
    key = build_object_key(ORG, CLIENT, "other")

    async def slow() -> AsyncIterator[bytes]:
        while True:
            yield b"y" * 100
            await anyio.sleep(0.01)

    with anyio.move_on_after(0.1):
        await storage.put_stream(key, slow())
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "key",
    ["../escape", "/etc/passwd", "a/../../b", "a//b", ".hidden/x", "a/.", "a\\..\\b", "", "a/%2e%2e/b",
     "a/b\x00c", "/".join(["a"] * 20), "é/x"],
)
async def test_traversal_and_odd_keys_are_refused(tmp_path: Path, key: str) -> None:
    storage = make_storage(tmp_path / "root")
    with pytest.raises(InvalidObjectKeyError):
        await storage.put_stream(key, chunks(b"x"))
    with pytest.raises(InvalidObjectKeyError):
        await storage.exists(key)
    assert not (tmp_path / "escape").exists()


async def test_symlink_out_of_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    outside.mkdir()
    root.mkdir()
    (root / "org").symlink_to(outside, target_is_directory=True)
    storage = make_storage(root)
    with pytest.raises(InvalidObjectKeyError):
        await storage.put_stream("org/file", chunks(b"x"))
    assert list(outside.iterdir()) == []


# -------------------------------------------------------------------------------- signing
async def test_signed_url_round_trip_and_refusals(tmp_path: Path) -> None:
    storage = make_storage(tmp_path, default_ttl=60)
    key = build_object_key(ORG, CLIENT, "brand_guide")
    url = await storage.signed_download_url(key, filename="Brand guide 2025.pdf", content_type="application/pdf")
    url_key, params = split_url(url)
    signed = storage.verify(url_key, params)
    assert (signed.key, signed.filename, signed.content_type) == (key, "Brand guide 2025.pdf", "application/pdf")

    with pytest.raises(SignedUrlExpired):
        verify_signed_local_url(SECRET, url_key, params, now=int(params["exp"]) + 1)
    tampered = [
        (url_key, {**params, "fn": "evil.html"}),
        (url_key, {**params, "ct": "text/html"}),
        (url_key, {**params, "exp": str(int(params["exp"]) + 3600)}),
        (url_key, {**params, "sig": params["sig"][:-2] + "AA"}),
        (build_object_key(ORG, CLIENT, "brand_guide"), params),
        (url_key, {k: v for k, v in params.items() if k != "sig"}),
        (url_key, {**params, "exp": "soon"}),
    ]
    for other_key, other_params in tampered:
        with pytest.raises(SignedUrlInvalid):
            verify_signed_local_url(SECRET, other_key, other_params)
    with pytest.raises(SignedUrlInvalid):
        verify_signed_local_url("another-secret", url_key, params)
    # A forged link is "invalid" even when also expired: no oracle for forgers.
    with pytest.raises(SignedUrlInvalid):
        verify_signed_local_url(SECRET, url_key, {**params, "fn": "x"}, now=10**12)


async def test_cdn_base_serves_the_object_through_an_edge(tmp_path: Path) -> None:
    """The rebased link is fetched through a real forwarding edge in front of a served app: the
    object arrives, and a link tampered with on its way through the CDN is still refused."""
    app = FastAPI()
    install_error_handlers(app)
    with serve_asgi(app) as origin, edge_proxy(origin) as edge:
        storage = make_storage(tmp_path, cdn_base_url=edge + "/")

        @app.get(LOCAL_DOWNLOAD_PATH + "/{key:path}")
        async def download(key: str, request: Request) -> StreamingResponse:
            return await local_download_response(storage, key, request.query_params)

        key = build_object_key(ORG, CLIENT, "creative")
        body = os.urandom(100_000)
        await storage.put_stream(key, chunks(body))
        url = await storage.signed_download_url(key, filename="x.png", ttl=30)
        assert url.startswith(f"{edge}{LOCAL_DOWNLOAD_PATH}/{key}?")
        async with httpx.AsyncClient(timeout=30) as client:
            resp = await client.get(url)
            assert resp.status_code == 200, resp.text[:300]
            assert resp.content == body and resp.headers["x-cache"].startswith("MISS")
            forged = await client.get(url.replace(key, build_object_key(ORG, CLIENT, "creative"), 1))
            assert forged.status_code == 403


def test_content_disposition_rfc6266() -> None:
    header = content_disposition('Résumé "final"\r\n.pdf')
    assert header.startswith('attachment; filename="Resume _final_.pdf"; ')
    assert "filename*=UTF-8''R%C3%A9sum%C3%A9%20%22final%22.pdf" in header
    assert "\r" not in header and "\n" not in header
    assert content_disposition("日本.txt").startswith('attachment; filename="download.txt"; ')
    assert content_disposition("report").startswith('attachment; filename="report"; ')
    header.encode("latin-1")  # must be a valid header value


async def test_download_route_streams_with_headers(tmp_path: Path) -> None:
    storage = make_storage(tmp_path)
    app = FastAPI()
    install_error_handlers(app)

    @app.get(LOCAL_DOWNLOAD_PATH + "/{key:path}")
    async def download(key: str, request: Request) -> StreamingResponse:
        return await local_download_response(storage, key, request.query_params)

    key = build_object_key(ORG, CLIENT, "creative")
    body = os.urandom(300_000)
    await storage.put_stream(key, chunks(body))
    url = await storage.signed_download_url(key, filename="Ünïcode idea.png", content_type="image/png")

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        resp = await client.get(url)
        assert resp.status_code == 200
        assert resp.content == body
        assert resp.headers["content-type"] == "image/png"
        assert resp.headers["content-length"] == str(len(body))
        assert resp.headers["content-disposition"] == content_disposition("Ünïcode idea.png")
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in resp.headers["content-security-policy"]

        forged = url.replace("png&", "html&", 1) if "png&" in url else url + "x"
        resp = await client.get(forged)
        assert resp.status_code == 403
        assert resp.headers["content-type"] == "application/problem+json"
        assert resp.json()["type"].endswith("signed-url-invalid")

        await storage.delete(key)
        resp = await client.get(url)
        assert resp.status_code == 404
        assert resp.json()["type"].endswith("object-not-found")
