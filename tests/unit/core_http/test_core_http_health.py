"""/healthz and /readyz."""

from __future__ import annotations

import socket


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_healthz(make_client) -> None:
    _, client = await make_client()
    resp = await client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}
    assert resp.headers["Cache-Control"] == "no-store"


async def test_readyz_ok_with_database_only(make_client) -> None:
    _, client = await make_client()
    resp = await client.get("/readyz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok", "checks": {"database": "ok"}}


async def test_readyz_503_names_unreachable_redis(make_client) -> None:
    _, client = await make_client(redis_url=f"redis://127.0.0.1:{_closed_port()}/0")
    resp = await client.get("/readyz")
    assert resp.status_code == 503
    assert resp.headers["content-type"] == "application/problem+json"
    body = resp.json()
    assert body["status"] == 503
    assert body["failing"] == ["redis"]
    assert "redis" in body["detail"]
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith("error: ")
    assert "127.0.0.1" not in resp.text  # no connection details leak


async def test_readyz_503_names_unreachable_database(make_client, tmp_path) -> None:
    # A SQLite file inside a directory that does not exist cannot be opened.
    url = f"sqlite+aiosqlite:///{tmp_path}/missing-dir/omnify.db"
    _, client = await make_client(database_url=url)
    resp = await client.get("/readyz")
    assert resp.status_code == 503
    assert resp.json()["failing"] == ["database"]
