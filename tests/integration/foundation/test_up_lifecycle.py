"""Stopping and starting `omnify up` again (issue 14 item 11).

* a worker that dies is started again by `up`, and ``/readyz`` says so while it is down;
* SIGTERM to `up` stops its worker and beat within their grace period (the worker used to
  survive 20 s and a second SIGTERM);
* a second `up` on the same data directory connects every demo connection again (all 7 failed);
* `up` with ``OMNIFY_DATABASE_URL`` on PostgreSQL starts and serves (it crashed with
  "attached to a different loop").
"""

from __future__ import annotations

import os
import re
import signal
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import is_postgres
from tests.servers import Up, omnify_up, wait_for

pytestmark = [pytest.mark.slow]

GRACE_S = 10.0  # omnify.jobs.supervisor.Supervisor.grace_seconds


def _children(up: Up) -> tuple[int, int]:
    found = re.search(r"Worker: +pid (\d+), beat pid (\d+)", up.output())
    assert found, up.output()[-2000:]
    return int(found.group(1)), int(found.group(2))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _connections(up: Up) -> list[dict[str, object]]:
    auth = up.demo_login()
    org_id = httpx.get(f"{up.api}/me", headers=auth, timeout=30).json()["memberships"][0]["org_id"]
    found: list[dict[str, object]] = []
    for client in httpx.get(f"{up.api}/orgs/{org_id}/clients", headers=auth, timeout=30).json()["items"]:
        found += httpx.get(f"{up.api}/orgs/{org_id}/clients/{client['id']}/connections", headers=auth,
                           timeout=30).json()
    return found


@pytest.mark.skipif(is_postgres(), reason="`omnify up` is the embedded (SQLite) default; run once")
def test_up_restarts_a_dead_worker_stops_on_sigterm_and_starts_again(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"OMNIFY_LOG_LEVEL": "WARNING"}
    with omnify_up(data, env) as up:
        worker, beat = _children(up)
        assert _alive(worker) and _alive(beat)
        first = [c for c in _connections(up) if c["status"] == "connected"]
        assert len(first) >= 7

        os.kill(worker, signal.SIGKILL)
        seen: list[int] = []

        def readiness_dropped() -> bool:
            response = httpx.get(f"{up.origin}/readyz", timeout=5)
            seen.append(response.status_code)
            return response.status_code == 503 and "worker" in response.json()["failing"]

        wait_for(readiness_dropped, 15, "/readyz to report the dead worker", interval=0.1, proc=up.proc, log=up.log)
        wait_for(up.ready, 60, "/readyz 200 once the worker is back", proc=up.proc, log=up.log)
        restarted = [int(p) for p in re.findall(r'"child": "worker", "pid": (\d+)', up.output())]
        assert restarted and restarted[-1] != worker and _alive(restarted[-1]), up.output()[-2000:]

        up.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        up.proc.wait(GRACE_S + 20)
        children = [restarted[-1], beat]
        wait_for(lambda: not any(_alive(p) for p in children), GRACE_S, "worker and beat to stop")
        assert time.monotonic() - started < GRACE_S + 20

    # Same data directory, second start: the demo's connections are connected again.
    with omnify_up(data, env) as again:
        assert "failed" not in again.output().split("Demo data:")[1].splitlines()[0], again.output()[-2000:]
        second = [c for c in _connections(again) if c["status"] == "connected"]
        assert len(second) == len(first)


@pytest.mark.skipif(not is_postgres(), reason="the PostgreSQL `omnify up`; the SQLite one is tested above")
def test_up_on_postgresql_serves_the_demo(tmp_path: Path) -> None:
    import psycopg

    admin = os.environ.get("OMNIFY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    admin = admin.replace("postgresql+asyncpg://", "postgresql://").replace("postgresql+psycopg://", "postgresql://")
    name = f"omnify_up_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # nosec B608 - a generated identifier
    base = admin.rsplit("/", 1)[0]
    try:
        env = {"OMNIFY_LOG_LEVEL": "WARNING", "OMNIFY_DATABASE_URL": f"{base.replace('postgresql://', 'postgresql+asyncpg://')}/{name}"}
        with omnify_up(tmp_path / "data", env) as up:
            connected = [c for c in _connections(up) if c["status"] == "connected"]
            assert len(connected) >= 7, up.output()[-2000:]
            assert "attached to a different loop" not in up.output()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # nosec B608
