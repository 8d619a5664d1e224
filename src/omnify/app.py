"""FastAPI application factory.

One app serves the JSON API (``/api/v1``), health and metrics endpoints and, later, the
server-rendered web app. Process-wide resources (database, rate limiter, cache) live on
``app.state`` so tests can build isolated apps with their own settings.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from omnify.core import invalidation
from omnify.core.db import Database
from omnify.core.errors import install_error_handlers
from omnify.core.health import router as health_router
from omnify.core.logging import configure_logging
from omnify.core.metrics import install_metrics, start_metrics_listener
from omnify.core.middleware import install_middleware, install_proxy_headers
from omnify.core.openapi import install_openapi
from omnify.core.ratelimit import RateLimiter
from omnify.core.tracing import install_tracing, shutdown_tracing
from omnify.settings import Settings, get_settings

API_PREFIX = "/api/v1"


async def _refresh_metrics(app: FastAPI) -> None:
    """Keep the gauges the metrics port serves fresh (its server thread cannot query)."""
    from omnify.analytics.business import REFRESH_SECONDS
    from omnify.core.logging import get_logger

    while True:
        for refresh in getattr(app.state, "metrics_refreshers", []):
            try:
                await refresh()
            except Exception as exc:  # a metrics refresh must never take the API down
                get_logger(__name__).warning("metrics.refresh_failed", error=f"{type(exc).__name__}: {exc}"[:300])
        await asyncio.sleep(REFRESH_SECONDS)


def create_app(settings: Settings | None = None, database: Database | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.assert_production_safe()
    configure_logging(settings)
    invalidation.configure(settings.redis_url, settings.auth_cache_ttl_seconds)
    db = database or Database(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from omnify.notifications import dispatch

        if settings.env != "test":
            from omnify.core.secrets import keyring_cache

            # The master keys from the secrets backend now, not at the first encryption: a
            # bad Vault token or a missing secret fails the start-up with its reason.
            await keyring_cache(settings).refresh()
            dispatch.enable_celery()  # publish deliveries and e-mails as soon as they are queued
        stop_metrics = start_metrics_listener(app, settings)
        refresher = asyncio.create_task(_refresh_metrics(app)) if stop_metrics is not None else None
        listener = await invalidation.start_listener(settings.redis_url)  # cached principals, plan limits
        if settings.env != "test":
            # Everything built so far (modules, routes, models, pools) lives as long as the
            # process: move it out of the collector's reach, so the full collections that
            # short-lived request objects (trace spans above all) trigger scan only what can
            # die - not the whole heap each time (~0.3 ms per request with tracing on; issue
            # 16). Not in tests: apps come and go there, and frozen objects are never collected.
            gc.collect()
            gc.freeze()
        yield
        await invalidation.stop_listener(listener)
        if refresher is not None:
            refresher.cancel()
        if stop_metrics is not None:
            stop_metrics()
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
        docs_url=None,  # /api/docs is served by the web app from our own static files
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
        debug=False,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.rate_limiter = RateLimiter(settings)

    install_error_handlers(app)
    install_openapi(app)  # every operation's problem responses, documented in one place
    install_middleware(app, settings)
    install_metrics(app, settings, db)
    install_tracing(app, settings, db)
    install_proxy_headers(app, settings)
    if settings.metrics_enabled:
        from omnify.analytics.business import BusinessGauges

        business = BusinessGauges(db)
        app.state.metrics_extra = [business]
        app.state.metrics_refreshers = [business.refresh]

    app.include_router(health_router)
    from omnify.api import api_router  # late import: domains import core, not the reverse

    app.include_router(api_router, prefix=API_PREFIX)
    from omnify import web

    web.install(app)  # pages, static files, HTML problem pages (after the API's handlers)
    return app
