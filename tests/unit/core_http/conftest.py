"""Fixtures for the HTTP/observability core: a small app wired exactly like create_app.

The app is built from the real ``install_*`` functions plus a handful of probe routes,
so these tests do not depend on the domain routers being present. The database is
whatever ``OMNIFY_DATABASE_URL`` says (SQLite file under tmp otherwise).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from omnify.core.db import Database
from omnify.core.errors import install_error_handlers
from omnify.core.health import router as health_router
from omnify.core.logging import bind_log_context, configure_logging, get_logger
from omnify.core.metrics import install_metrics
from omnify.core.middleware import install_middleware, set_request_identity
from omnify.core.ratelimit import RateLimiter, client_ip, ip_rate_limit
from omnify.core.tracing import install_tracing
from omnify.settings import Settings
from tests.conftest import METRICS_TOKEN

probe_log = get_logger("omnify.tests.core_http")


def http_settings(tmp: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "test",
        "data_dir": tmp,
        "log_level": "INFO",
        "log_json": True,
        "redis_url": None,
        "otel_enabled": False,
        "max_request_body_bytes": 4096,
        "max_upload_bytes": 64 * 1024,
        "metrics_token": METRICS_TOKEN,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


async def _limited(request: Request) -> None:
    limiter: RateLimiter = request.app.state.rate_limiter
    await limiter.hit(request, "ip", client_ip(request), "3/minute")
    await limiter.hit(request, "user", "user-1", "100/minute")


def probe_router() -> APIRouter:
    router = APIRouter()

    @router.get("/api/v1/things/{thing_id}")
    async def get_thing(thing_id: str, request: Request) -> dict[str, Any]:
        set_request_identity(request, org_id="org-42", user_id="user-7")
        probe_log.info(
            "thing_loaded",
            thing_id=thing_id,
            password="hunter2-secret",
            headers={"Authorization": "Bearer abc.def.ghi"},
            note="client sent Bearer xyz987token in a message",
        )
        return {"id": thing_id, "request_id": request.state.request_id}

    @router.get("/ctx-only")
    async def ctx_only() -> dict[str, str]:
        # The auth layer binds user_id through contextvars only; the access log must see it.
        bind_log_context(user_id="ctx-user")
        return {"ok": "yes"}

    @router.get("/big")
    async def big() -> dict[str, Any]:
        return {"rows": [{"n": i, "text": "lorem ipsum dolor sit amet"} for i in range(300)]}

    @router.get("/small")
    async def small() -> dict[str, str]:
        return {"ok": "yes"}

    @router.post("/echo")
    async def echo(payload: dict[str, Any]) -> dict[str, int]:
        return {"size": len(json.dumps(payload))}

    @router.post("/raw")
    async def raw(request: Request) -> dict[str, int]:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return {"size": size}

    @router.post("/api/v1/orgs/{org_id}/files")
    async def upload(org_id: str, request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    @router.get("/limited", dependencies=[Depends(_limited)])
    async def limited() -> dict[str, str]:
        return {"ok": "yes"}

    @router.post("/login-like", dependencies=[Depends(ip_rate_limit("rate_limit_auth"))])
    async def login_like() -> dict[str, str]:
        return {"ok": "yes"}

    @router.get("/db")
    async def db_route(request: Request) -> dict[str, str]:
        await request.app.state.db.ping()
        return {"db": "ok"}

    @router.get("/boom")
    async def boom() -> JSONResponse:
        raise RuntimeError("kaboom with password=hunter2")

    @router.post("/stale")
    async def stale() -> JSONResponse:
        from sqlalchemy.orm.exc import StaleDataError

        raise StaleDataError("UPDATE statement on table 'rules' expected to update 1 row(s); 0 were matched.")

    @router.post("/fk-race")
    async def fk_race() -> JSONResponse:
        import sqlite3

        from sqlalchemy.exc import IntegrityError

        raise IntegrityError("INSERT INTO rule_evaluations ...", {}, sqlite3.IntegrityError("FOREIGN KEY constraint failed"))

    return router


def nested_router() -> APIRouter:
    """Routers included with prefixes, as omnify.api does under /api/v1."""
    orgs = APIRouter(prefix="/orgs")

    @orgs.get("/{org_id}/widgets/{widget_id:int}")
    async def get_widget(org_id: str, widget_id: int) -> dict[str, Any]:
        return {"org_id": org_id, "widget_id": widget_id}

    api = APIRouter()
    api.include_router(orgs)
    return api


def build_app(settings: Settings, *, exporter: Any = None) -> FastAPI:
    """Mirror of omnify.app.create_app without the domain routers."""
    configure_logging(settings)
    db = Database(settings)
    app = FastAPI(
        title="core-http-test",
        version="1.0.0",
        docs_url="/api/docs",
        openapi_url="/api/v1/openapi.json",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.rate_limiter = RateLimiter(settings)
    install_error_handlers(app)
    install_middleware(app, settings)
    install_metrics(app, settings, db)
    install_tracing(app, settings, db, exporter=exporter)
    app.include_router(health_router)
    app.include_router(probe_router())
    app.include_router(nested_router(), prefix="/api/v1")
    return app


AppFactory = Callable[..., Awaitable[tuple[FastAPI, httpx.AsyncClient]]]


@pytest.fixture
async def make_client(tmp_path: Path) -> AsyncIterator[AppFactory]:
    """Build an app with settings overrides and an httpx client speaking ASGI to it."""
    opened: list[tuple[FastAPI, httpx.AsyncClient]] = []

    async def factory(
        base_url: str = "http://testserver", exporter: Any = None, **overrides: Any
    ) -> tuple[FastAPI, httpx.AsyncClient]:
        app = build_app(http_settings(tmp_path, **overrides), exporter=exporter)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url=base_url
        )
        opened.append((app, client))
        return app, client

    yield factory
    for app, client in opened:
        await client.aclose()
        await app.state.rate_limiter.close()
        await app.state.db.dispose()


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every stdout line must be one JSON object; return them parsed."""
    out = []
    for line in text.splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


@pytest.fixture
def parse_lines() -> Callable[[str], list[dict[str, Any]]]:
    return json_lines


@pytest.fixture
def settings_for(tmp_path: Path) -> Callable[..., Settings]:
    def factory(**overrides: Any) -> Settings:
        return http_settings(tmp_path, **overrides)

    return factory
