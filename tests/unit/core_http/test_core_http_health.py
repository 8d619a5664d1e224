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


def _migrated(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from omnify.core import migrate
    from tests.unit.core_http.conftest import http_settings

    migrate.upgrade(http_settings(tmp_path))


async def test_readyz_ok_with_database_only(make_client, tmp_path) -> None:
    _migrated(tmp_path)
    _, client = await make_client()
    resp = await client.get("/readyz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok", "checks": {"database": "ok", "migrations": "ok"}}


async def test_readyz_503_on_an_unmigrated_database_names_the_command(make_client, tmp_path) -> None:
    """`omnify serve` on an empty database answered /readyz 200 and every login 500 (issue 14)."""
    _, client = await make_client(database_url=f"sqlite+aiosqlite:///{tmp_path}/empty.db")
    resp = await client.get("/readyz")
    assert resp.status_code == 503
    assert resp.headers["content-type"] == "application/problem+json"
    body = resp.json()
    assert body["failing"] == ["migrations"]
    assert body["checks"] == {"database": "ok", "migrations": "error: migrations pending"}
    assert body["detail"] == "Database migrations pending: run `omnify migrate up`."


async def test_readyz_reports_unreachable_redis_as_degraded_not_unready(make_client, tmp_path) -> None:
    """A shared Redis outage must not take every pod out of rotation: the API serves without it."""
    _migrated(tmp_path)
    _, client = await make_client(redis_url=f"redis://127.0.0.1:{_closed_port()}/0")
    resp = await client.get("/readyz")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "degraded"
    assert body["degraded"] == ["redis"]
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith("error: ")
    assert "127.0.0.1" not in resp.text  # no connection details leak


async def test_readyz_503_lists_redis_beside_a_hard_failure(make_client, tmp_path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/missing-dir/omnify.db"
    _, client = await make_client(database_url=url, redis_url=f"redis://127.0.0.1:{_closed_port()}/0")
    resp = await client.get("/readyz")
    assert resp.status_code == 503
    assert resp.json()["failing"] == ["database", "migrations", "redis"]


async def test_readyz_503_names_unreachable_database(make_client, tmp_path) -> None:
    # A SQLite file inside a directory that does not exist cannot be opened.
    url = f"sqlite+aiosqlite:///{tmp_path}/missing-dir/omnify.db"
    _, client = await make_client(database_url=url)
    resp = await client.get("/readyz")
    assert resp.status_code == 503
    assert resp.json()["failing"] == ["database", "migrations"]


async def test_readyz_reports_an_unreachable_broker_as_degraded_not_unready(make_client, tmp_path) -> None:
    """A broker outage must not take every pod out of rotation: writes go to the outbox and
    their jobs are published once it answers (tests/integration/reliability/test_fault_broker_restart.py)."""
    _migrated(tmp_path)
    _, client = await make_client(broker_url=f"redis://127.0.0.1:{_closed_port()}/0")
    resp = await client.get("/readyz")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "degraded" and body["degraded"] == ["broker"]
    assert body["checks"]["broker"].startswith("error: ")
    assert "127.0.0.1" not in resp.text


async def test_readyz_checks_a_reachable_broker(make_client, tmp_path) -> None:
    _migrated(tmp_path)
    _, client = await make_client(broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}")
    resp = await client.get("/readyz")
    assert resp.status_code == 200, resp.text
    assert resp.json()["checks"]["broker"] == "ok"
