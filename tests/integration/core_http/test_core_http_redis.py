"""Rate limits and readiness against a real Redis."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import Depends, FastAPI, Request

from omnify.core.db import Database
from omnify.core.errors import RateLimited, install_error_handlers
from omnify.core.health import router as health_router
from omnify.core.logging import configure_logging
from omnify.core.metrics import install_metrics
from omnify.core.middleware import install_middleware
from omnify.core.ratelimit import KEY_PREFIX, RateLimiter
from omnify.settings import Settings


def _settings(tmp: Path, redis_url: str | None) -> Settings:
    return Settings(_env_file=None, env="test", data_dir=tmp, redis_url=redis_url, log_level="INFO")  # type: ignore[call-arg]


def _app(settings: Settings, identity: str) -> FastAPI:
    configure_logging(settings)
    db = Database(settings)
    app = FastAPI()
    app.state.settings = settings
    app.state.db = db
    app.state.rate_limiter = RateLimiter(settings)
    install_error_handlers(app)
    install_middleware(app, settings)
    install_metrics(app, settings, db)
    app.include_router(health_router)

    async def per_org(request: Request) -> None:
        await request.app.state.rate_limiter.hit(request, "org", identity, "4/minute")

    @app.get("/orgs/report", dependencies=[Depends(per_org)])
    async def report() -> dict[str, str]:
        return {"ok": "yes"}

    return app


async def _close(app: FastAPI) -> None:
    await app.state.rate_limiter.close()
    await app.state.db.dispose()


async def test_limit_shared_by_two_workers_through_redis(redis_url: str, tmp_path: Path) -> None:
    identity = f"org-{uuid.uuid4().hex}"
    # Two apps = two API workers sharing one Redis: the budget is global, not per worker.
    first = _app(_settings(tmp_path, redis_url), identity)
    second = _app(_settings(tmp_path, redis_url), identity)
    assert first.state.rate_limiter.backend == "redis"
    try:
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=first), base_url="http://a") as a,
            httpx.AsyncClient(transport=httpx.ASGITransport(app=second), base_url="http://b") as b,
        ):
            statuses = [(await client.get("/orgs/report")).status_code for client in (a, b, a, b)]
            assert statuses == [200, 200, 200, 200]
            blocked = await a.get("/orgs/report")
            assert blocked.status_code == 429
            assert blocked.headers["content-type"] == "application/problem+json"
            assert 1 <= int(blocked.headers["Retry-After"]) <= 60
            assert "org" in blocked.json()["detail"]
            assert (await b.get("/orgs/report")).status_code == 429
    finally:
        await _close(first)
        await _close(second)

    # The counters live in Redis (hashed identity, our prefix), not in process memory.
    client = aioredis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{KEY_PREFIX}*")]
        assert keys, "no rate-limit keys written to Redis"
        assert not any(identity.encode() in k for k in keys)  # identities are hashed
    finally:
        await client.aclose()


async def test_readyz_checks_real_redis(redis_url: str, tmp_path: Path) -> None:
    from omnify.core import migrate

    migrate.upgrade(_settings(tmp_path, redis_url))
    app = _app(_settings(tmp_path, redis_url), "x")
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            resp = await client.get("/readyz")
        assert resp.status_code == 200
        assert resp.json() == {"status": "ok", "checks": {"database": "ok", "migrations": "ok", "redis": "ok"}}
    finally:
        await _close(app)


async def test_redis_outage_fails_open_and_recovers(redis_process, tmp_path: Path, capsys) -> None:
    limiter = RateLimiter(_settings(tmp_path, redis_process.url))
    identity = uuid.uuid4().hex
    try:
        await limiter.hit(None, "user", identity, "2/minute")
        await limiter.hit(None, "user", identity, "2/minute")
        with pytest.raises(RateLimited):
            await limiter.hit(None, "user", identity, "2/minute")

        redis_process.stop()
        capsys.readouterr()
        for _ in range(3):  # outage: allowed (fail open), one warning
            await limiter.hit(None, "user", identity, "2/minute")
        out = capsys.readouterr().out
        assert out.count("rate_limit_storage_unavailable") == 1

        redis_process.start()  # fresh, empty server on the same port
        await limiter.hit(None, "user", identity, "2/minute")
        await limiter.hit(None, "user", identity, "2/minute")
        with pytest.raises(RateLimited):
            await limiter.hit(None, "user", identity, "2/minute")
        assert "rate_limit_storage_recovered" in capsys.readouterr().out
    finally:
        await limiter.close()
