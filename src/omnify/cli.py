"""The `omnify` command: run, migrate and operate the platform."""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from omnify.settings import Settings, get_settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

app = typer.Typer(help="Omnify: marketing automation for agencies and brands.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
migrate_app = typer.Typer(help="Database schema migrations (Alembic).", no_args_is_help=True)
audit_app = typer.Typer(help="Audit trail: verify the hash chain, export, purge past retention.",
                        no_args_is_help=True)
app.add_typer(migrate_app, name="migrate")


def _mount_optional() -> None:
    """Sub-apps of other domains, imported lazily so `omnify --help` stays fast."""
    from omnify.ops.backup import backup_app, restore_app

    app.add_typer(backup_app, name="backup")
    app.add_typer(restore_app, name="restore")
    from omnify.credentials.cli import keys_app

    app.add_typer(keys_app, name="keys")
    from omnify.jobs.cli import beat_command, jobs_app, worker_command

    app.add_typer(jobs_app, name="jobs")
    app.command("worker")(worker_command)
    app.command("beat")(beat_command)


_mount_optional()
app.add_typer(audit_app, name="audit")


def _settings(data_dir: Path | None = None) -> Settings:
    settings = get_settings()
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    return settings


def _fail(message: str) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


# ------------------------------------------------------------------------------ serve / up
def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _check_secrets_backend(settings: Settings) -> None:
    """Load the master keys now (the documented ``load_keyring``), not at the first encryption:
    a wrong Vault token or a missing secret must stop the start, with the reason."""
    from omnify.core.secrets import MasterKeyError, load_keyring

    try:
        load_keyring(settings)
    except MasterKeyError as exc:
        _fail(f"cannot load the master keys from the {settings.secrets_backend!r} secrets backend: {exc}")


def _warn_pending_migrations(settings: Settings) -> None:
    """Say at start what /readyz will say (503 "migrations pending") and how to fix it."""
    from omnify.core import health
    from omnify.core.db import Database

    async def pending() -> list[str]:
        db = Database(settings)
        try:
            return await health.pending_migrations(db)
        finally:
            await db.dispose()

    try:
        missing = asyncio.run(pending())
    except Exception as exc:  # the database may be down: /readyz reports it, serve anyway
        typer.secho(f"warning: cannot read the schema revision: {type(exc).__name__}", fg=typer.colors.YELLOW,
                    err=True)
        return
    if missing:
        typer.secho(f"Database migrations pending ({', '.join(missing)} not applied): run "
                    f"`{health.MIGRATE_COMMAND}`; /readyz answers 503 until then.", fg=typer.colors.YELLOW, err=True)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
) -> None:
    """Serve the API (production role `api`); run `omnify migrate up` first."""
    import uvicorn

    from omnify.core.middleware import uvicorn_options
    from omnify.settings import InsecureSettingError

    try:
        get_settings().assert_production_safe()
    except InsecureSettingError as exc:
        _fail(str(exc))
    _check_secrets_backend(get_settings())
    _warn_pending_migrations(get_settings())
    uvicorn.run("omnify.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_config=None, access_log=False,
                **uvicorn_options(get_settings()))


@app.command()
def up(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    data_dir: Annotated[Path | None, typer.Option(help="Where the embedded database and files live.")] = None,
    worker: Annotated[bool, typer.Option(help="Also run a job worker with the scheduler.")] = True,
    sandboxes: Annotated[bool, typer.Option(help="Run the platform sandboxes and connect the demo to them.")] = True,
) -> None:
    """Migrate, seed a demo organization and serve: everything on the embedded default.

    The platform sandboxes start first and the settings point at them, so the demo
    organization's clients connect through the real OAuth flow and a short backfill runs
    before the API opens (the worker continues the rest). The API runs in this process; a
    Celery worker with the embedded scheduler runs as a child process on the same data
    directory (embedded SQLite broker unless OMNIFY_BROKER_URL says otherwise) and inherits
    the sandbox settings. Everything stops with the API.
    """
    import os

    import uvicorn

    from omnify.app import create_app
    from omnify.core import migrate
    from omnify.core.db import Database
    from omnify.core.middleware import uvicorn_options
    from omnify.demo import ensure_demo
    from omnify.jobs.celery_app import configure_celery

    if data_dir is not None:
        # One data directory for every part of `up`: this process's settings and Celery app
        # (built at import, before this option was known), the worker and the beat.
        os.environ["OMNIFY_DATA_DIR"] = str(data_dir.resolve())
    running = None
    if sandboxes:
        from omnify.demo_sync import sandbox_env
        from omnify.integrations.base import Platform
        from omnify.integrations.sandboxes import start_all

        running = start_all(host="127.0.0.1", ports=dict.fromkeys(Platform, 0))
        os.environ.update(sandbox_env(running))  # read by the settings below and by the worker child
    get_settings.cache_clear()
    settings = get_settings()
    configure_celery(settings)
    from omnify.core.logging import configure_logging

    configure_logging(settings)
    migrate.upgrade(settings)
    from omnify.demo import DemoLogin
    from omnify.demo_sync import DemoSyncReport

    async def prepare() -> tuple[DemoLogin, DemoSyncReport | None]:
        # One event loop for every use of this engine: on PostgreSQL, asyncpg connections
        # pooled by a first asyncio.run() failed in a second one ("attached to a different
        # loop"), so `up` crashed on PostgreSQL (issue 14).
        db = Database(settings)
        try:
            login = await ensure_demo(settings, db)
            if running is None:
                return login, None
            from omnify.demo_sync import ensure_demo_connections

            return login, await ensure_demo_connections(settings, db, backfill_days=settings.demo_backfill_days)
        finally:
            await db.dispose()

    login, report = asyncio.run(prepare())
    demo_line = "sandboxes off"
    if report is not None:
        demo_line = (f"{len(report.connected)} sandbox connections, {sum(report.synced.values())} rows synced"
                     + (f", {len(report.errors)} failed: {'; '.join(report.errors)}" if report.errors else ""))
    typer.secho(f"Omnify is starting on http://{host}:{port}", fg=typer.colors.GREEN)
    typer.secho(f"  Open:      http://{host}:{port}/login", fg=typer.colors.GREEN)
    typer.echo(f"  Log in:    email={login.email}  password={login.password}")
    typer.echo(f"  API docs:  http://{host}:{port}/api/docs  (API: POST /api/v1/auth/login with the same login)")
    typer.echo(f"  Data dir:  {settings.data_dir.resolve()}")
    typer.echo(f"  Demo data: {demo_line}")
    if running is not None:  # where to inject faults (POST /__sandbox/faults) or look at what a write did
        typer.echo("  Sandboxes: " + " ".join(f"{p.value}={running.url(p)}" for p in running.servers))
    supervisor = None
    if worker:
        from omnify.jobs.supervisor import Supervisor

        env = {**os.environ, "OMNIFY_DATA_DIR": str(settings.data_dir.resolve())}
        # The demo shows the brain's work within a minute, not after the first hourly sweep.
        env.setdefault("OMNIFY_JOBS_BEAT_RUN_AT_START", '["omnify.brain.run_due"]')
        # Worker and beat are separate fresh processes (never a beat forked from the worker:
        # see omnify.jobs.supervisor); a dead one is restarted, both stop with `up`.
        supervisor = Supervisor({"worker": ["worker", "--pool=solo", "--metrics-port=0"], "beat": ["beat"]}, env)
        supervisor.start()
        pids = supervisor.pids()
        typer.echo(f"  Worker:    pid {pids['worker']}, beat pid {pids['beat']} (jobs and schedule on the "
                   "embedded broker)")
    api = create_app(settings)
    api.state.job_processes = supervisor
    # uvicorn re-raises the SIGTERM it handled once it has shut down; with the default
    # action that killed this process before the `finally` below, leaving the worker and
    # the beat running (issue 14). Raised as an exception instead, the clean-up runs.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        uvicorn.run(api, host=host, port=port, log_config=None, access_log=False,
                    **uvicorn_options(settings))
    finally:
        if supervisor is not None:
            supervisor.stop()
        if running is not None:
            running.stop()


@app.command()
def sandbox(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    base_port: Annotated[int, typer.Option(
        help="Meta on this port, Google +1, TikTok +2, Shopify +3, LinkedIn +4 (0: any free ports).")] = 8101,
    fault: Annotated[list[str] | None, typer.Option(
        help="Inject a fault from the start: PLATFORM.SETTING=VALUE, repeatable. Settings: rate_limit_next, "
             "retry_after, errors_5xx_next, error_status, latency_ms, match, throttle (Meta: 80004, 17, 613). "
             "E.g. --fault meta.rate_limit_next=3 --fault meta.throttle=613 --fault shopify.match=graphql")] = None,
    today: Annotated[str | None, typer.Option(
        help="Serve the API versions live on this day (YYYY-MM-DD); default: when the tables were checked.")] = None,
) -> None:
    """Run the Meta, Google Ads, TikTok, Shopify and LinkedIn sandboxes (local servers, seeded data).

    Faults can also be changed while they run: POST /__sandbox/faults on each sandbox."""
    import threading
    from datetime import date

    from omnify.integrations.base import Platform
    from omnify.integrations.sandboxes import parse_fault_flags, start_all

    try:
        faults = parse_fault_flags(fault or [])
        day = date.fromisoformat(today) if today else None
    except ValueError as exc:
        _fail(str(exc))
    order = [Platform.META_ADS, Platform.GOOGLE_ADS, Platform.TIKTOK_ADS, Platform.SHOPIFY, Platform.LINKEDIN_ADS]
    ports = {p: base_port + i if base_port else 0 for i, p in enumerate(order)}
    running = start_all(host, ports, faults=faults, today=day)
    for platform, config in faults.items():
        typer.echo(f"  {platform.value} faults: {config}")
    typer.echo("Sandboxes running; point Omnify at them with:")
    for key, value in running.env_for().items():
        typer.echo(f"  export {key}={value}")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()


def openapi_document() -> str:
    """The API contract as committed to docs/openapi.json (stable key order, trailing newline)."""
    import json

    from omnify.app import create_app
    from omnify.settings import Settings

    spec = create_app(Settings(env="test")).openapi()
    return json.dumps(spec, indent=2, sort_keys=True) + "\n"


@app.command()
def openapi(
    out: Annotated[Path, typer.Option(help="Where to write the spec.")] = Path("docs/openapi.json"),
    check: Annotated[bool, typer.Option(help="Exit 1 if the file differs from the code (CI).")] = False,
) -> None:
    """Export the OpenAPI spec, or check that the committed one is up to date."""
    current = openapi_document()
    if check:
        if not out.exists() or out.read_text() != current:
            _fail(f"{out} is stale: run `omnify openapi` and commit it")
        typer.echo(f"{out} is up to date")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(current)
    typer.echo(f"wrote {out} ({len(current)} bytes)")


@app.command("seed-demo")
def seed_demo(data_dir: Annotated[Path | None, typer.Option()] = None) -> None:
    """Create the demo organization and user if missing; print how to log in."""
    from omnify.core.db import Database
    from omnify.demo import ensure_demo

    settings = _settings(data_dir)
    db = Database(settings)
    login = asyncio.run(ensure_demo(settings, db))
    asyncio.run(db.dispose())
    typer.echo(f"email={login.email} password={login.password} created={login.created}")


# ------------------------------------------------------------------------------ migrate
@migrate_app.command("up")
def migrate_up(revision: Annotated[str, typer.Argument()] = "heads") -> None:
    """Upgrade the schema (default: to the newest revision)."""
    from omnify.core import migrate

    migrate.upgrade(get_settings(), revision)
    typer.echo(f"database at {migrate.current(get_settings())}")


@migrate_app.command("down")
def migrate_down(revision: Annotated[str, typer.Argument(help="Target, e.g. -1 or base.")] = "-1") -> None:
    """Downgrade the schema."""
    from omnify.core import migrate

    migrate.downgrade(get_settings(), revision)
    typer.echo(f"database at {migrate.current(get_settings())}")


@migrate_app.command("current")
def migrate_current() -> None:
    """Print the schema revision of the database."""
    from omnify.core import migrate

    typer.echo(migrate.current(get_settings()) or "empty (no revision)")


# ------------------------------------------------------------------------------ audit
T = TypeVar("T")


async def _with_admin_session(fn: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Maintenance commands connect as the owner role: they span organizations."""
    from omnify.core.db import Database

    settings = get_settings()
    db = Database(settings, settings.resolved_migration_database_url)
    try:
        async with db.sessionmaker() as session:
            return await fn(session)
    finally:
        await db.dispose()


@audit_app.command("verify")
def audit_verify(org: Annotated[uuid.UUID | None, typer.Option(help="Only this organization.")] = None) -> None:
    """Recompute every organization's hash chain; report the first broken link. Exit 1 if any."""
    from omnify.audit import service

    async def run(session: AsyncSession) -> list[service.ChainReport]:
        ids = [org] if org else await service.org_ids(session)
        return [await service.verify_org(session, i) for i in ids]

    reports = asyncio.run(_with_admin_session(run))
    broken = [r for r in reports if not r.ok]
    for r in reports:
        status = "ok" if r.ok else f"BROKEN at seq {r.broken_seq}: {r.reason}"
        typer.echo(f"{r.org_id} entries={r.entries} {status}")
    typer.echo(f"{len(reports)} organization(s) checked, {len(broken)} broken")
    if broken:
        raise typer.Exit(1)


@audit_app.command("export")
def audit_export(
    out_dir: Annotated[Path, typer.Option(help="Directory for <org>.jsonl.gz files.")] = Path("audit-export"),
    since: Annotated[datetime | None, typer.Option()] = None,
    until: Annotated[datetime | None, typer.Option()] = None,
) -> None:
    """Export audit entries as gzipped JSON lines, one file per organization (cold storage)."""
    from omnify.audit import service

    async def run(session: AsyncSession) -> int:
        total = 0
        for org_id in await service.org_ids(session):
            total += await service.export_org(session, org_id, out_dir / f"{org_id}.jsonl.gz", since, until)
        return total

    total = asyncio.run(_with_admin_session(run))
    typer.echo(f"exported {total} entries to {out_dir}")


@audit_app.command("purge")
def audit_purge(
    retention_days: Annotated[int | None, typer.Option(help="Override OMNIFY_AUDIT_RETENTION_DAYS.")] = None,
) -> None:
    """Delete audit entries older than the retention period (export them first)."""
    from omnify.audit import service

    days = retention_days or get_settings().audit_retention_days
    total = asyncio.run(_with_admin_session(lambda s: service.purge_expired(s, days)))
    typer.echo(f"purged {total} entries older than {days} days")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
