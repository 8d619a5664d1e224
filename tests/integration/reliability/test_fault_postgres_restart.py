"""PostgreSQL restarted under load: clients get 503 problem+json with Retry-After, never a 500
and never a hang, the app recovers by itself, and every write it acknowledged is in the database.

The database is a scratch cluster this test owns (the suite's shared server is never touched):
migrated with ``omnify migrate up`` as the owner, served by ``omnify serve`` as the app role
(no BYPASSRLS), as in production. A few concurrent clients create and update clients and read
them for ~20 s; in the middle the cluster is stopped (``pg_ctl stop -m fast``: open sessions
are terminated) for ~5 s and started again.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from omnify.ops.backup import ScratchCluster
from tests.conftest import APP_ROLE, is_postgres
from tests.reliability import Outcome, Tally, register_org, write_figures
from tests.scratch_services import postgres_run_as, scratch_postgres, server_workdir
from tests.servers import LOOPBACK, clean_env, free_port, running

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not is_postgres(), reason="runs in the PostgreSQL pass only: it starts and restarts a "
                                                 "PostgreSQL cluster of its own (SQLite has no server to restart)"),
]

WRITERS = 4
READERS = 2
LOAD_SECONDS = 20.0
FAULT_AFTER_SECONDS = 6.0
OUTAGE_SECONDS = 5.0
#: No request may take longer than this; the client gives up there (counted as a hang).
REQUEST_TIMEOUT_SECONDS = 10.0
#: Seconds from PostgreSQL being back to the first 2xx that the app may take.
RECOVERY_BOUND_SECONDS = 5.0
#: A client that got an error waits this long (shorter than Retry-After, to probe the outage).
ERROR_PAUSE_SECONDS = 0.1


@pytest.fixture(scope="module")
def cluster() -> Iterator[ScratchCluster]:
    run_as = postgres_run_as()
    with server_workdir("omnify-fault-pg-", run_as) as root, scratch_postgres(root, run_as) as pg:
        import psycopg

        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute("CREATE DATABASE omnify")
            conn.execute(f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{APP_ROLE}' NOSUPERUSER NOBYPASSRLS")
        yield pg


def _app_env(pg: ScratchCluster, data_dir: Path) -> dict[str, str]:
    owner = f"postgresql+asyncpg://postgres@{LOOPBACK}:{pg.port}/omnify"
    app = f"postgresql+asyncpg://{APP_ROLE}:{APP_ROLE}@{LOOPBACK}:{pg.port}/omnify"
    return clean_env(
        OMNIFY_DATA_DIR=str(data_dir), OMNIFY_SECRET_KEY="fault-" + "k" * 42, OMNIFY_LOG_LEVEL="WARNING",
        OMNIFY_DATABASE_URL=app, OMNIFY_MIGRATION_DATABASE_URL=owner, OMNIFY_DB_APP_ROLE=APP_ROLE,
        OMNIFY_RATE_LIMIT_USER="100000/minute", OMNIFY_RATE_LIMIT_ORG="100000/minute",
        OMNIFY_RATE_LIMIT_AUTH="1000/minute",
    )


def _owner_conn(pg: ScratchCluster) -> object:
    import psycopg

    return psycopg.connect(f"postgresql://postgres@{LOOPBACK}:{pg.port}/omnify", autocommit=True)


class Load:
    """Writers create a client per request and now and then update one of theirs; readers list
    and fetch. Acknowledged (2xx) creations and updates are remembered for the final check."""

    def __init__(self, api: str, headers: dict[str, str], org_id: str, tally: Tally, until: float) -> None:
        self.api, self.headers, self.org_id, self.tally, self.until = api, headers, org_id, tally, until
        self.created: list[str] = []  # ids of acknowledged creations
        self.updated: dict[str, int] = {}  # client id -> last acknowledged revision
        self.revision = 0

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.api, headers=self.headers, timeout=REQUEST_TIMEOUT_SECONDS)

    async def _call(self, client: httpx.AsyncClient, kind: str, method: str, url: str,
                    body: dict[str, object] | None = None) -> tuple[Outcome, httpx.Response | None]:
        sent = time.monotonic()
        try:
            resp = await client.request(method, url, json=body)
        except httpx.TimeoutException:
            outcome = self.tally.add(kind, None, sent, "timeout")
            return outcome, None
        except httpx.TransportError as exc:
            outcome = self.tally.add(kind, None, sent, f"transport:{type(exc).__name__}")
            return outcome, None
        outcome = self.tally.add(kind, resp, sent)
        if not outcome.ok:
            await asyncio.sleep(ERROR_PAUSE_SECONDS)
        return outcome, resp

    async def writer(self, n: int) -> None:
        mine: list[str] = []
        base = f"/orgs/{self.org_id}/clients"
        async with self._client() as client:
            i = 0
            while time.monotonic() < self.until:
                i += 1
                if mine and i % 3 == 0:
                    self.revision += 1
                    rev, target = self.revision, mine[i % len(mine)]
                    outcome, resp = await self._call(client, "update", "PATCH", f"{base}/{target}",
                                                     {"description": f"rev {rev}"})
                    if outcome.ok:
                        self.updated[target] = max(self.updated.get(target, 0), rev)
                    continue
                outcome, resp = await self._call(client, "write", "POST", base,
                                                 {"company_name": f"Fault {n}-{i} {uuid.uuid4().hex[:6]}"})
                if outcome.ok and resp is not None:
                    mine.append(resp.json()["id"])
                    self.created.append(mine[-1])

    async def reader(self) -> None:
        base = f"/orgs/{self.org_id}/clients"
        async with self._client() as client:
            i = 0
            while time.monotonic() < self.until:
                i += 1
                if self.created and i % 2 == 0:
                    await self._call(client, "read", "GET", f"{base}/{self.created[i % len(self.created)]}")
                else:
                    await self._call(client, "read", "GET", f"{base}?limit=20")


async def _fault(pg: ScratchCluster, tally: Tally) -> None:
    await asyncio.sleep(FAULT_AFTER_SECONDS)
    tally.fault_at = time.monotonic()
    await asyncio.to_thread(pg.stop)  # pg_ctl stop -m fast -w
    await asyncio.sleep(OUTAGE_SECONDS)
    tally.restarting_at = time.monotonic()
    await asyncio.to_thread(pg.start, None, 60)  # pg_ctl start -w: accepting connections
    tally.restored_at = time.monotonic()


async def test_postgres_restart_under_load(cluster: ScratchCluster, tmp_path: Path) -> None:
    import subprocess

    env = _app_env(cluster, tmp_path / "data")
    migrated = subprocess.run([sys.executable, "-m", "omnify.cli", "migrate", "up"], env=env, capture_output=True,
                              text=True, timeout=180, check=False)
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    port = free_port()
    origin = f"http://{LOOPBACK}:{port}"
    with running([sys.executable, "-m", "omnify.cli", "serve", "--port", str(port)], f"{origin}/healthz",
                 tmp_path / "serve.log", timeout=60, env=env):
        async with httpx.AsyncClient(base_url=f"{origin}/api/v1", timeout=60) as setup:
            org_id, headers = await register_org(setup, "postgres")
        with _owner_conn(cluster) as conn:  # type: ignore[attr-defined]
            # Room for every client the load creates (the free plan allows 10).
            conn.execute("UPDATE organizations SET plan = 'enterprise' WHERE id = %s", (org_id,))

        tally = Tally()
        load = Load(f"{origin}/api/v1", headers, org_id, tally, time.monotonic() + LOAD_SECONDS)
        await asyncio.gather(*(load.writer(n) for n in range(WRITERS)), *(load.reader() for _ in range(READERS)),
                             _fault(cluster, tally))
        # The server's log without the expected lines (one warning and one access line per 503).
        log_text = "\n".join(line for line in (tmp_path / "serve.log").read_text(errors="replace").splitlines()
                              if '"database_unavailable"' not in line and '"status": 503' not in line)

    with _owner_conn(cluster) as conn:  # type: ignore[attr-defined]
        rows = conn.execute("SELECT id::text, description FROM client_profiles WHERE org_id = %s",
                            (org_id,)).fetchall()
    stored = {str(r[0]): r[1] for r in rows}
    found = [cid for cid in load.created if cid in stored]
    updates_kept = [cid for cid, rev in load.updated.items()
                    if stored.get(cid) and int(str(stored[cid]).split()[1]) >= rev]

    during = tally.phase("during")
    server_errors = [o for o in tally.outcomes if isinstance(o.status, int) and o.status >= 500]
    good_503 = [o for o in server_errors if o.status == 503 and o.problem_json and o.retry_after
                and o.problem_type.endswith("database-unavailable")]
    hangs = [o for o in tally.outcomes if o.status == "timeout"]
    dropped = [o for o in tally.outcomes if isinstance(o.status, str) and o.status.startswith("transport")]
    recovery = tally.recovery_seconds()
    figures = {
        "fault": "PostgreSQL stopped (pg_ctl stop -m fast) and started under load",
        "database": "postgresql",
        "clients": f"{WRITERS} writers + {READERS} readers (httpx, {REQUEST_TIMEOUT_SECONDS:.0f} s timeout)",
        "load_seconds": LOAD_SECONDS,
        "outage_seconds": round(tally.restored_at - tally.fault_at, 2),  # type: ignore[operator]
        "restart_seconds": round(tally.restored_at - tally.restarting_at, 2),  # type: ignore[operator]
        "requests": len(tally.outcomes),
        "statuses": tally.statuses(),
        "statuses_during_outage": tally.statuses(during),
        "statuses_after_restart": tally.statuses(tally.phase("after")),
        "server_errors_other_than_503_retry_after": len(server_errors) - len(good_503),
        "hangs": len(hangs),
        "dropped_connections": len(dropped),
        "max_latency_seconds": tally.latency_max(),
        "recovery_seconds": recovery,
        "writes_acknowledged": len(load.created),
        "writes_found": len(found),
        "updates_acknowledged": len(load.updated),
        "updates_found": len(updates_kept),
    }
    path = write_figures("postgres-restart", figures)
    print(f"\nPostgreSQL restart figures ({path}): {figures}")

    assert during and any(o.status == 503 for o in during), f"the outage was not seen by any client: {figures}"
    assert len(server_errors) == len(good_503), (
        f"5xx other than 503 problem+json database-unavailable with Retry-After: "
        f"{[(o.kind, o.status, o.problem_type) for o in server_errors if o not in good_503][:10]}\n{log_text[-3000:]}")
    assert not hangs, f"{len(hangs)} requests got no answer within {REQUEST_TIMEOUT_SECONDS} s"
    assert not dropped, f"{len(dropped)} requests lost their connection: {[o.status for o in dropped][:5]}\n{log_text[-6000:]}"
    assert recovery is not None and recovery <= RECOVERY_BOUND_SECONDS, f"no recovery in time: {figures}"
    assert load.created and len(found) == len(load.created), (
        f"acknowledged writes missing: {sorted(set(load.created) - set(found))[:10]}")
    assert len(updates_kept) == len(load.updated), "acknowledged updates missing"
    assert all(o.ok for o in tally.phase("after") if o.sent > tally.restored_at + RECOVERY_BOUND_SECONDS), (
        f"errors long after PostgreSQL was back: {tally.statuses(tally.phase('after'))}")
