"""Helpers shared by the onboarding integration tests (real API, real storage, real DB)."""

from __future__ import annotations

import io
import os
import struct
import sys
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from PIL import Image
from sqlalchemy import func, select

from omnify.core.db import Database
from omnify.files.models import UploadedFile
from omnify.settings import Settings
from tests.factories import Account

API = "/api/v1"


@dataclass
class Team:
    owner: Account
    viewer: Account
    outsider: Account


def clients_url(acct: Account, *rest: str) -> str:
    return "/".join([f"{API}/orgs/{acct.org_id}/clients", *rest])


async def new_client(http: httpx.AsyncClient, acct: Account, **fields: Any) -> dict[str, Any]:
    body = {"company_name": f"Client {uuid.uuid4().hex[:8]}", **fields}
    resp = await http.post(clients_url(acct), headers=acct.headers, json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def upload(
    http: httpx.AsyncClient, acct: Account, client_id: str, data: bytes, *, name: str = "file.bin",
    category: str | None = "logo", content_type: str = "application/octet-stream",
) -> httpx.Response:
    form = {"category": category} if category is not None else {}
    return await http.post(clients_url(acct, client_id, "files"), headers=acct.headers, data=form,
                           files={"file": (name, data, content_type)})


def png(width: int = 64, height: int = 32, color: str = "red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def pdf(text: str = "hello") -> bytes:
    return (b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n% " + text.encode() + b"\ntrailer << >>\n%%EOF\n")


def elf() -> bytes:
    """The head of a real executable (this Python interpreter)."""
    return Path(os.path.realpath(sys.executable)).read_bytes()[:128 * 1024]


def png_bomb(width: int = 12_000, height: int = 12_000) -> bytes:
    """A real decompression bomb: a grey PNG of ``width`` x ``height`` zero pixels, which
    compresses ~1000:1 (about 150 KB on the wire, 144 MB once decoded)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + one byte per pixel
    idat = bytearray()
    for _ in range(height):
        idat += compressor.compress(row)
    idat += compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", bytes(idat)) + chunk(b"IEND", b"")


def storage_root(settings: Settings) -> Path:
    return (settings.storage_local_path or settings.data_dir / "storage").resolve()


def stored_files(settings: Settings, org_id: str, client_id: str | None = None) -> list[Path]:
    """Every file (final or partial) under the org's (or client's) storage prefix."""
    base = storage_root(settings) / org_id
    if client_id:
        base = base / client_id
    return sorted(p for p in base.rglob("*") if p.is_file()) if base.exists() else []


async def file_rows(owner_db: Database, client_id: str) -> int:
    async with owner_db.sessionmaker() as s:
        return int(await s.scalar(select(func.count()).select_from(UploadedFile)
                                  .where(UploadedFile.client_id == uuid.UUID(client_id))) or 0)


def local_path(url: str) -> str:
    """A signed link is absolute (public base URL); the test client wants path + query."""
    parts = httpx.URL(url)
    return parts.raw_path.decode()
