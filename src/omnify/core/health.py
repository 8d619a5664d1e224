"""Liveness (``/healthz``) and readiness (``/readyz``) probes.

Liveness answers from the process alone: restarting a pod because the *database* is
down would not help, so ``/healthz`` checks nothing external. Readiness checks what a
request needs - the database and its migrations - so a load balancer stops routing to an
instance that cannot serve. Redis and the broker are checked and reported but do not make
an instance unready: no request needs them (the cache is bypassed and rate limits fail open;
a job is written to the outbox in the request's transaction and published by the sweep once
the broker answers again - both measured in docs/reliability.md), and a shared outage that
failed every pod's readiness would take the whole API out of rotation while it could serve.
Such an instance answers 200 with ``"status": "degraded"``. Each check has a
short timeout: a probe that hangs is worse than one that fails.

The 503 names the failing dependency and the error class, never the exception text
(which may carry host names or credentials). Neither endpoint is rate limited or in the
OpenAPI schema.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, Final

import anyio
import redis.asyncio as aioredis
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from omnify.core.db import Database
from omnify.core.errors import ServiceUnavailable, problem
from omnify.core.logging import get_logger
from omnify.settings import Settings

log = get_logger(__name__)

DB_TIMEOUT_SECONDS: Final = 3.0
REDIS_TIMEOUT_SECONDS: Final = 1.0
BROKER_TIMEOUT_SECONDS: Final = 3
#: What an operator runs when the schema is behind the code.
MIGRATE_COMMAND: Final = "omnify migrate up"
NO_STORE: Final = {"Cache-Control": "no-store"}
#: Checked and reported, but an instance serves without them (see the module docstring).
SOFT_DEPENDENCIES: Final = frozenset({"redis", "broker"})

router = APIRouter(tags=["health"])


@router.get("/healthz", include_in_schema=False)
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"}, headers=NO_STORE)


async def check_database(db: Database) -> None:
    async with asyncio.timeout(DB_TIMEOUT_SECONDS):
        await db.ping()


async def check_redis(url: str) -> None:
    client = aioredis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS)
    try:
        async with asyncio.timeout(REDIS_TIMEOUT_SECONDS * 2):
            await client.ping()
    finally:
        # types-redis (4.x stubs) predates aclose(); redis>=5 ships it and its own types.
        await client.aclose()  # type: ignore[attr-defined]


class MigrationsPending(RuntimeError):
    """The database schema is not at the revision(s) this code needs."""


@functools.lru_cache(maxsize=1)
def _scripts() -> Any:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", "omnify:migrations")
    return ScriptDirectory.from_config(cfg)


def _current_heads(conn: Any) -> tuple[str, ...]:
    from alembic.runtime.migration import MigrationContext

    return tuple(MigrationContext.configure(conn).get_current_heads())


async def pending_migrations(db: Database) -> list[str]:
    """Head revisions of this code's migrations that the database has not reached."""
    async with asyncio.timeout(DB_TIMEOUT_SECONDS), db.engine.connect() as conn:
        current = await conn.run_sync(_current_heads)
    scripts = _scripts()
    # Not a comparison of head lists: alembic_version stores only the newest revision of
    # merged branches, so walk down from what is applied instead.
    applied = {rev.revision for rev in scripts.iterate_revisions(current, "base")} if current else set()
    return [head for head in scripts.get_heads() if head not in applied]


async def check_migrations(db: Database) -> None:
    """An un-migrated database answered /readyz 200 and every login 500 (issue 14)."""
    if getattr(db, "_omnify_schema_at_head", False):
        return  # a schema does not go back by itself: checked once per process
    pending = await pending_migrations(db)
    if pending:
        raise MigrationsPending(f"not applied: {', '.join(pending)}")
    db._omnify_schema_at_head = True  # type: ignore[attr-defined]


def _broker_ping(settings: Settings) -> None:
    from kombu import Connection

    from omnify.jobs.celery_app import broker_transport_url, resolve_broker_url
    from omnify.jobs.transport import register

    register()
    with Connection(broker_transport_url(resolve_broker_url(settings)), connect_timeout=BROKER_TIMEOUT_SECONDS) as conn:
        conn.ensure_connection(max_retries=0, timeout=BROKER_TIMEOUT_SECONDS)


async def check_broker(settings: Settings) -> None:
    """The broker of ``settings`` answers (a short connect, in a thread: kombu blocks)."""
    async with asyncio.timeout(BROKER_TIMEOUT_SECONDS + 1):
        await anyio.to_thread.run_sync(_broker_ping, settings, abandon_on_cancel=True)


class ProcessDown(RuntimeError):
    """A background process this instance runs (``omnify up``'s worker or beat) is not running."""


def _process_check(processes: object, name: str) -> Callable[[], Awaitable[None]]:
    async def check() -> None:
        if not processes.healthy().get(name, False):  # type: ignore[attr-defined]
            raise ProcessDown(name)

    return check


async def _run(name: str, check: Callable[[], Awaitable[None]]) -> tuple[str, str]:
    try:
        await check()
    except Exception as exc:  # any failure means "not ready"
        log.warning("readiness_check_failed", dependency=name, error_type=type(exc).__name__)
        if isinstance(exc, MigrationsPending):
            return name, "error: migrations pending"
        return name, f"error: {type(exc).__name__}"
    return name, "ok"


@router.get("/readyz", include_in_schema=False)
async def readyz(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.settings
    db: Database = request.app.state.db
    checks: dict[str, Callable[[], Awaitable[None]]] = {"database": lambda: check_database(db),
                                                         "migrations": lambda: check_migrations(db)}
    if settings.redis_url:
        redis_url = settings.redis_url
        checks["redis"] = lambda: check_redis(redis_url)
    # `omnify up` runs its worker and beat as children: while one is down (and being
    # restarted) this instance cannot do background work, so it says so.
    processes = getattr(request.app.state, "job_processes", None)
    if processes is not None:
        for name in processes.healthy():
            checks[name] = _process_check(processes, name)
    # The broker carries every background job (webhooks, e-mails, syncs): a configured one,
    # or the embedded one when this process runs the workers (`omnify up`).
    if settings.broker_url or processes is not None:
        checks["broker"] = lambda: check_broker(settings)

    results = dict(await asyncio.gather(*(_run(name, fn) for name, fn in checks.items())))
    failing = [name for name, outcome in results.items() if outcome != "ok" and name not in SOFT_DEPENDENCIES]
    degraded = [name for name, outcome in results.items() if outcome != "ok" and name in SOFT_DEPENDENCIES]
    if failing:
        detail = f"Dependency unavailable: {', '.join(failing)}."
        if failing == ["migrations"]:
            detail = f"Database migrations pending: run `{MIGRATE_COMMAND}`."
        return problem(
            request,
            ServiceUnavailable.status,
            "Not ready",
            detail,
            "not-ready",
            headers=NO_STORE,
            checks=results,
            failing=failing + degraded,
        )
    if degraded:
        return JSONResponse({"status": "degraded", "checks": results, "degraded": degraded}, headers=NO_STORE)
    return JSONResponse({"status": "ok", "checks": results}, headers=NO_STORE)
