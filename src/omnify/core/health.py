"""Liveness (``/healthz``) and readiness (``/readyz``) probes.

Liveness answers from the process alone: restarting a pod because the *database* is
down would not help, so ``/healthz`` checks nothing external. Readiness checks what a
request needs - the database and, when configured, Redis (rate limits, cache) - so a
load balancer stops routing to an instance that cannot serve. Each check has a short
timeout: a probe that hangs is worse than one that fails.

The 503 names the failing dependency and the error class, never the exception text
(which may carry host names or credentials). Neither endpoint is rate limited or in the
OpenAPI schema.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

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
NO_STORE: Final = {"Cache-Control": "no-store"}

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


async def _run(name: str, check: Callable[[], Awaitable[None]]) -> tuple[str, str]:
    try:
        await check()
    except Exception as exc:  # any failure means "not ready"
        log.warning("readiness_check_failed", dependency=name, error_type=type(exc).__name__)
        return name, f"error: {type(exc).__name__}"
    return name, "ok"


@router.get("/readyz", include_in_schema=False)
async def readyz(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.settings
    db: Database = request.app.state.db
    checks: dict[str, Callable[[], Awaitable[None]]] = {"database": lambda: check_database(db)}
    if settings.redis_url:
        redis_url = settings.redis_url
        checks["redis"] = lambda: check_redis(redis_url)

    results = dict(await asyncio.gather(*(_run(name, fn) for name, fn in checks.items())))
    failing = [name for name, outcome in results.items() if outcome != "ok"]
    if failing:
        return problem(
            request,
            ServiceUnavailable.status,
            "Not ready",
            f"Dependency unavailable: {', '.join(failing)}.",
            "not-ready",
            headers=NO_STORE,
            checks=results,
            failing=failing,
        )
    return JSONResponse({"status": "ok", "checks": results}, headers=NO_STORE)
