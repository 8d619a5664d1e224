"""FastAPI application factory.

One app serves the JSON API (``/api/v1``), health and metrics endpoints and, later, the
server-rendered web app. Process-wide resources (database, rate limiter, cache) live on
``app.state`` so tests can build isolated apps with their own settings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from omnify.core.db import Database
from omnify.core.errors import install_error_handlers
from omnify.core.health import router as health_router
from omnify.core.logging import configure_logging
from omnify.core.metrics import install_metrics
from omnify.core.middleware import install_middleware
from omnify.core.ratelimit import RateLimiter
from omnify.core.tracing import install_tracing, shutdown_tracing
from omnify.settings import Settings, get_settings

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None, database: Database | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.assert_production_safe()
    configure_logging(settings)
    db = database or Database(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from omnify.notifications import dispatch

        if settings.env != "test":
            dispatch.enable_celery()  # publish deliveries and e-mails as soon as they are queued
        yield
        await dispatch.drain()
        shutdown_tracing(app)
        await app.state.rate_limiter.close()
        if database is None:
            await db.dispose()

    app = FastAPI(
        title="Omnify API",
        version="1.0.0",
        description="Multi-tenant marketing automation: organizations, clients, ad-platform "
        "connections, analytics and one-click actions.",
        lifespan=lifespan,
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
        debug=False,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.rate_limiter = RateLimiter(settings)

    install_error_handlers(app)
    install_middleware(app, settings)
    install_metrics(app, settings, db)
    install_tracing(app, settings, db)

    app.include_router(health_router)
    from omnify.api import api_router  # late import: domains import core, not the reverse

    app.include_router(api_router, prefix=API_PREFIX)
    return app
