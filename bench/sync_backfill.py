"""Throughput of a platform backfill: one sandbox ad account, 200 ads x 365 days, on PostgreSQL.

Run:  .venv/bin/python bench/sync_backfill.py
      .venv/bin/python bench/sync_backfill.py --platform google_ads --days 180
      OMNIFY_BENCH_DATABASE_URL=postgresql+asyncpg://user@host:5432/postgres .venv/bin/python bench/sync_backfill.py

What it does, end to end and for real: creates a scratch PostgreSQL database, migrates it
as the owner and runs the app as a role without BYPASSRLS (as in production), starts the
platform's sandbox on a loopback port, connects the demo organization's client through
the OAuth flow (signed state, code exchange, encrypted token storage), picks the 200-ad
account and times ``omnify.sync.service.run_connection`` doing the backfill: HTTP paging
through the sandbox, mapping, batched ``INSERT .. ON CONFLICT .. DO UPDATE .. WHERE`` and
per-window commits with cursors and progress. Then it times a second, incremental run
(the look-back window re-read, nothing written) and drops the database.

Prints one JSON object; ``rows_per_second`` is all rows read (entities + daily metrics)
over the backfill's wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from omnify.connections.config import SyncConfig
from omnify.connections.connectors import ConnectorFactory
from omnify.core import migrate
from omnify.core.db import Database, bind_tenant
from omnify.core.logging import configure_logging
from omnify.core.secrets import encode_key, generate_master_key, new_key_id
from omnify.demo import ensure_demo
from omnify.demo_sync import ensure_demo_connections
from omnify.integrations.base import Platform
from omnify.integrations.sandboxes import start_all
from omnify.settings import Settings
from omnify.sync import repository as sync_repository
from omnify.sync import service as sync
from omnify.sync.models import AdMetricDaily

APP_ROLE = "omnify_bench_app"
#: The 200-ad account of each ad platform's sandbox (5 campaigns x 4 ad groups x 10 ads).
BIG_ACCOUNT = {Platform.META_ADS: "1000001", Platform.GOOGLE_ADS: "1234567890", Platform.TIKTOK_ADS: "1000001"}


class WriteTimer:
    """Time spent in the upserts (the database side of the backfill), to tell it apart from
    waiting on the platform; the sync overlaps the two, so they need not add up."""

    def __init__(self) -> None:
        self.seconds = 0.0
        original = sync_repository.upsert

        async def timed(*args: Any, **kwargs: Any) -> int:
            started = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        sync_repository.upsert = timed  # type: ignore[assignment]

    def reset(self) -> None:
        self.seconds = 0.0


write_timer = WriteTimer()


def scratch_database(server_url: str) -> tuple[str, str, Any]:
    name = f"omnify_bench_{os.getpid()}_{secrets.token_hex(3)}"
    base = make_url(server_url)
    admin = create_engine(migrate.sync_url(base.set(database="postgres").render_as_string(False)),
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
        if not conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": APP_ROLE}).scalar():
            conn.execute(text(f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{APP_ROLE}' NOSUPERUSER NOBYPASSRLS"))
    owner = base.set(database=name).render_as_string(False)
    app = base.set(database=name, username=APP_ROLE, password=APP_ROLE).render_as_string(False)

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return owner, app, drop


#: Runs the sandboxes in their own process, as the platform is in reality: in-process, its
#: request handling would compete with the sync for the same interpreter lock.
SANDBOX_CHILD = """
import json, sys, threading
from omnify.demo_sync import sandbox_env
from omnify.integrations.base import Platform
from omnify.integrations.sandboxes import start_all
running = start_all(ports=dict.fromkeys(Platform, 0))
print(json.dumps(sandbox_env(running)), flush=True)
sys.stdin.read()  # until the parent closes our stdin
running.stop()
"""


class Sandboxes:
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.child: subprocess.Popen[str] | None = None
        self.running: Any = None

    def start(self) -> dict[str, str]:
        if self.mode == "in-process":
            from omnify.demo_sync import sandbox_env

            self.running = start_all(ports=dict.fromkeys(Platform, 0))
            return sandbox_env(self.running)
        src = str(Path(__file__).resolve().parents[1] / "src")
        self.child = subprocess.Popen([sys.executable, "-c", SANDBOX_CHILD], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": src})
        assert self.child.stdout is not None
        line = self.child.stdout.readline()
        if not line:
            raise RuntimeError("the sandbox process did not start")
        env: dict[str, str] = json.loads(line)
        return env

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop()
        if self.child is not None:
            assert self.child.stdin is not None
            self.child.stdin.close()
            try:
                self.child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.child.kill()


async def bench(server_url: str, platform: Platform, days: int, sandbox_mode: str) -> dict[str, Any]:
    owner_url, app_url, drop = scratch_database(server_url)
    sandboxes = Sandboxes(sandbox_mode)
    try:
        env = {k.removeprefix("OMNIFY_").lower(): v for k, v in sandboxes.start().items()}
        with tempfile.TemporaryDirectory(prefix="omnify-bench-") as tmp:
            settings = Settings.model_validate({
                "env": "test", "data_dir": Path(tmp), "database_url": app_url, "migration_database_url": owner_url,
                "db_app_role": APP_ROLE, "secret_key": "bench-secret-key-0123456789abcdef-0123456789",
                "log_level": "WARNING", "secrets_backend": "env",
                "master_keys": f"{new_key_id()}:{encode_key(generate_master_key())}", **env})
            configure_logging(settings)  # WARNING: the per-request debug lines would cost time
            migrate.upgrade(settings)
            db = Database(settings)
            try:
                await ensure_demo(settings, db)
                account = BIG_ACCOUNT[platform]
                report = await ensure_demo_connections(
                    settings, db, backfill="none",
                    clients_spec={"Bench Client": [(platform, [account], None)]})
                if report.errors or report.org_id is None:
                    raise RuntimeError(f"connecting failed: {report.errors}")
                org_id = report.org_id
                async with db.sessionmaker() as session:
                    from omnify.connections import service as connections

                    await bind_tenant(session, org_id)
                    conns = await connections.list_connections(session, org_id, report.clients["Bench Client"])
                    conn_id = conns[0].id
                factory = ConnectorFactory(settings)
                config = dataclasses.replace(SyncConfig.from_settings(settings), backfill_days=days)

                write_timer.reset()
                started = time.perf_counter()
                first = await sync.run_connection(db, factory, org_id, conn_id, trigger="bench", config=config)
                backfill_s = time.perf_counter() - started
                db_write_s = write_timer.seconds
                if first.status != "succeeded":
                    raise RuntimeError(f"backfill failed: {first}")
                started = time.perf_counter()
                second = await sync.run_connection(db, factory, org_id, conn_id, trigger="bench", config=config)
                incremental_s = time.perf_counter() - started
                async with db.sessionmaker() as session:
                    await bind_tenant(session, org_id)
                    metric_rows = await session.scalar(select(func.count()).select_from(AdMetricDaily)
                                                       .where(AdMetricDaily.org_id == org_id))
            finally:
                await db.dispose()
    finally:
        sandboxes.stop()
        drop()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "benchmark": "sync_backfill",
        "database": "postgresql",
        "platform": platform.value,
        "account": BIG_ACCOUNT[platform],
        "ads": 200,
        "days": days,
        "metric_rows": metric_rows,
        "rows_read": first.rows_read,
        "rows_written": first.rows_written,
        "backfill_seconds": round(backfill_s, 3),
        "rows_per_second": round(first.rows_read / backfill_s, 1),
        "metric_rows_per_second": round((metric_rows or 0) / backfill_s, 1),
        "db_write_seconds": round(db_write_s, 3),
        "incremental_seconds": round(incremental_s, 3),
        "incremental_rows_read": second.rows_read,
        "incremental_rows_written": second.rows_written,
        "batch_size": config.batch_size,
        "window_days": config.metrics_chunk_days,
        "sandbox": sandbox_mode,
        "load_average_1m": round(load, 2) if load is not None else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platform", choices=[p.value for p in BIG_ACCOUNT], default=Platform.META_ADS.value)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--database-url", default=os.environ.get(
        "OMNIFY_BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--sandbox", choices=["process", "in-process"], default="process",
                        help="where the platform sandbox runs (default: its own process, like a real platform)")
    args = parser.parse_args()
    if not args.database_url.startswith("postgresql"):
        parser.error("the benchmark measures PostgreSQL: pass a postgresql+asyncpg:// URL")
    result = asyncio.run(bench(args.database_url, Platform(args.platform), args.days, args.sandbox))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
