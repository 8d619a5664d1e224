"""A database that cannot be reached answers 503 problem+json with Retry-After, never 500."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from omnify.app import create_app
from tests.conftest import DatabaseUrls, make_settings


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends: nothing listens there


async def test_unreachable_postgres_answers_503_with_retry_after(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{_closed_port()}/postgres"
    settings = make_settings(tmp_path, DatabaseUrls(owner=url, app=url, dialect="postgresql"))
    app = create_app(settings)
    # raise_app_exceptions stays on: the 503 must be answered inside the app, not by the catch-all
    # that re-raises after responding (uvicorn then closed the keep-alive connection and the
    # access log and metrics counted a 500).
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        resp = await client.post("/api/v1/auth/login", json={"email": "a@example.com", "password": "x" * 12})
    assert resp.status_code == 503, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert int(resp.headers["retry-after"]) > 0
    assert resp.json()["type"].endswith("database-unavailable")
