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
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import asyncpg
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
    """Time spent writing (entity upserts, metric batches and their windows' clean-up and
    rollups: the database side of the backfill), to tell it apart from waiting on the
    platform; the sync overlaps the two, so they need not add up."""

    def __init__(self) -> None:
        self.seconds = 0.0
        sync_repository.upsert = self._timed(sync_repository.upsert)  # type: ignore[method-assign]
        writer = sync_repository.MetricWriter
        writer.write = self._timed(writer.write)  # type: ignore[method-assign]
        writer.finish = self._timed(writer.finish)  # type: ignore[method-assign]

    def _timed(self, original: Any) -> Any:
        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        return timed

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


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def rollup_state(owner_url: str) -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(_dsn(owner_url))
    try:
        rows = await conn.fetch(
            "SELECT ad_account_id, day, currency, campaign_id, spend_minor, impressions, clicks, conversions_micros, "
            "revenue_minor, updated_at FROM analytics_daily ORDER BY 1, 2, 3, 4")
        return [tuple(r) for r in rows]
    finally:
        await conn.close()


METRIC_COLUMNS = ["id", "org_id", "client_id", "connection_id", "ad_account_id", "platform", "level",
                  "entity_external_id", "day", "campaign_id", "ad_group_id", "ad_id", "currency", "spend_minor",
                  "impressions", "clicks", "conversions", "revenue_minor", "reach", "frequency", "created_at",
                  "updated_at"]


async def ingest_vs_copy(db: Database, owner_url: str, org_id: Any, conn_id: Any, config: SyncConfig,
                         rounds: int) -> dict[str, Any]:
    """The sync's write path against PostgreSQL's COPY, on the rows the backfill wrote.

    Both start from empty tables (``TRUNCATE``) and write the same rows into the same
    ``ad_metrics_daily`` (its indexes, foreign keys and row-level security policy): COPY as
    the owner, in one statement; the sync's way as the app role under RLS, window by window
    (``SyncConfig.metrics_chunk_days``), ``batch_size`` rows per batch, through
    :class:`omnify.sync.repository.MetricWriter` - staging, the set-based upsert, the
    window's clean-up and its rollups, one transaction per window - exactly what
    ``run_connection`` does once the rows are mapped. Alternating, ``rounds`` times each;
    the best of each is reported (noise only ever slows a run down). After every sync-path
    run the rollups must equal the backfill's.
    """
    owner = await asyncpg.connect(_dsn(owner_url))
    try:
        records = [tuple(r) for r in await owner.fetch(
            f"SELECT {', '.join(METRIC_COLUMNS)} FROM ad_metrics_daily WHERE connection_id = $1 "
            "ORDER BY ad_account_id, day, level, entity_external_id", conn_id)]
        expected = [r[:9] for r in await rollup_state(owner_url)]
        meta = {"client_id": records[0][2], "platform": records[0][5]}
        windows: dict[tuple[Any, Any, Any], list[dict[str, Any]]] = {}
        first_day = min(r[8] for r in records)
        chunk = max(config.metrics_chunk_days, 1)
        for r in records:
            start = first_day + timedelta(days=((r[8] - first_day).days // chunk) * chunk)
            row = dict(zip(METRIC_COLUMNS, r, strict=True))
            windows.setdefault((r[4], start, start + timedelta(days=chunk - 1)), []).append(
                {k: row[k] for k in ("level", "entity_external_id", "day", "campaign_id", "ad_group_id", "ad_id",
                                     "currency", "spend_minor", "impressions", "clicks", "conversions",
                                     "revenue_minor", "reach", "frequency")})

        async def empty() -> None:
            await owner.execute("TRUNCATE ad_metrics_daily, analytics_daily")

        copy_s, ingest_s = [], []
        exact = True
        for _ in range(rounds):
            await empty()
            started = time.perf_counter()
            await owner.copy_records_to_table("ad_metrics_daily", records=records, columns=METRIC_COLUMNS)
            copy_s.append(time.perf_counter() - started)
            await empty()
            started = time.perf_counter()
            for (account, since, until), rows in windows.items():
                async with db.sessionmaker() as session:
                    await bind_tenant(session, org_id)
                    writer = sync_repository.MetricWriter(
                        session, org_id=org_id, client_id=meta["client_id"], connection_id=conn_id,
                        account_id=account, platform=meta["platform"], since=since, until=until)
                    for start in range(0, len(rows), config.batch_size):
                        await writer.write(rows[start:start + config.batch_size])
                    await writer.finish()
                    await session.commit()
            ingest_s.append(time.perf_counter() - started)
            exact = exact and [r[:9] for r in await rollup_state(owner_url)] == expected
    finally:
        await owner.close()
    copy_rps, ingest_rps = len(records) / min(copy_s), len(records) / min(ingest_s)
    return {
        "versus_copy_rows": len(records),
        "copy_rows_per_second": round(copy_rps, 1),
        "sync_ingest_rows_per_second": round(ingest_rps, 1),
        "sync_ingest_over_copy": round(ingest_rps / copy_rps, 3),
        "copy_seconds": [round(x, 3) for x in copy_s],
        "sync_ingest_seconds": [round(x, 3) for x in ingest_s],
        "sync_ingest_rollups_exact": exact,
        "windows": len(windows),
    }


async def bench(server_url: str, platform: Platform, days: int, sandbox_mode: str, rounds: int = 2) -> dict[str, Any]:
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
                rollups_before = await rollup_state(owner_url)
                started = time.perf_counter()
                second = await sync.run_connection(db, factory, org_id, conn_id, trigger="bench", config=config)
                incremental_s = time.perf_counter() - started
                rollups_untouched = await rollup_state(owner_url) == rollups_before
                async with db.sessionmaker() as session:
                    await bind_tenant(session, org_id)
                    metric_rows = await session.scalar(select(func.count()).select_from(AdMetricDaily)
                                                       .where(AdMetricDaily.org_id == org_id))
                versus = await ingest_vs_copy(db, owner_url, org_id, conn_id, config, rounds)
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
        "incremental_rollups_untouched": rollups_untouched,
        **versus,
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
    parser.add_argument("--rounds", type=int, default=3, help="COPY / sync-path runs each, alternating")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    if not args.database_url.startswith("postgresql"):
        parser.error("the benchmark measures PostgreSQL: pass a postgresql+asyncpg:// URL")
    result = asyncio.run(bench(args.database_url, Platform(args.platform), args.days, args.sandbox, args.rounds))
    result["targets"] = {
        "sync_ingest_over_copy>=0.5": {"value": result["sync_ingest_over_copy"],
                                       "met": result["sync_ingest_over_copy"] >= 0.5},
        "incremental_writes_nothing": {"value": result["incremental_rows_written"],
                                       "met": result["incremental_rows_written"] == 0
                                       and result["incremental_rollups_untouched"]},
        "rollups_exact": {"value": result["sync_ingest_rollups_exact"], "met": result["sync_ingest_rollups_exact"]},
    }
    text_out = json.dumps(result, indent=2)
    print(text_out)
    if args.out:
        args.out.write_text(text_out + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
