"""Prometheus metrics for the API process, and where Prometheus reads them.

Never publicly on the API port (issue 20: anyone could read ~250 KB of route, tenant
volume and job figures). Two ways, both off until configured:

* ``OMNIFY_METRICS_PORT``: a separate listener in the API process (prometheus_client's
  HTTP server, started by the app's lifespan) on ``OMNIFY_METRICS_HOST``. The ingress
  routes only the API port, and in Kubernetes a NetworkPolicy admits only the
  monitoring namespace to this one. With ``uvicorn --workers N`` the first process binds
  it and, in multi-process mode (below), reports every worker.
* ``OMNIFY_METRICS_TOKEN``: ``GET /metrics`` on the API port answers a scraper that
  presents ``Authorization: Bearer <token>`` (401 otherwise; 404 while no token is set).

Registry design: every app gets its **own** :class:`~prometheus_client.CollectorRegistry`
for the HTTP and DB-pool metrics (``app.state.metrics_registry``), so tests and tools
can build many apps in one process without "Duplicated timeseries" errors and without
one app's traffic showing up in another's numbers. ``/metrics`` also exposes the
process-global default registry, where module-level metrics of other packages live
(``omnify_rate_limited_total``, cache and job counters, process/GC collectors).

Multi-process deployments (``uvicorn --workers N``, gunicorn): each worker process
would otherwise report only its own numbers to whichever scrape reached it. Set
``PROMETHEUS_MULTIPROC_DIR`` to an empty, writable directory (wiped at every deploy /
container start, e.g. an ``emptyDir`` volume) *before* the processes start; the client
then writes samples to memory-mapped files there and ``/metrics`` aggregates all
workers with :class:`~prometheus_client.multiprocess.MultiProcessCollector`. Gauges use
``livesum`` so dead workers drop out. Call
``prometheus_client.multiprocess.mark_process_dead(pid)`` from the process manager's
child-exit hook (gunicorn ``child_exit``) to clean their files.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

from fastapi import FastAPI
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import event
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from omnify.core.db import Database
from omnify.core.errors import Unauthorized
from omnify.core.logging import get_logger
from omnify.core.middleware import route_template
from omnify.settings import Settings

log = get_logger(__name__)

METRICS_PATH: Final = "/metrics"
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
KNOWN_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class HttpMetrics:
    """The API's RED metrics and pool gauges, registered in one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "omnify_http_requests_total",
            "HTTP requests answered, by route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "omnify_http_request_duration_seconds",
            "Time from request start to the last response byte, by route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "omnify_http_requests_in_flight",
            "Requests being processed right now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.pool_size = Gauge(
            "omnify_db_pool_size",
            "Configured size of the DB connection pool.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.pool_checked_out = Gauge(
            "omnify_db_pool_checked_out",
            "DB connections currently in use.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.pool_overflow = Gauge(
            "omnify_db_pool_overflow",
            "DB connections open beyond the pool size.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.up = Gauge("omnify_up", "1 while the API process is serving.", registry=registry, multiprocess_mode="max")
        self.up.set(1)


def _pool_number(pool: Any, method: str) -> int:
    # SQLite's StaticPool/NullPool have no size/overflow accounting: report 0.
    fn = getattr(pool, method, None)
    if not callable(fn):
        return 0
    try:
        value = fn()
    except Exception:  # a metrics read must never break a scrape
        return 0
    return value if isinstance(value, int) else 0


def refresh_pool_gauges(metrics: HttpMetrics, db: Database) -> None:
    """Copy the pool's numbers into the gauges (at scrape time and on checkout/checkin)."""
    pool = db.engine.pool
    metrics.pool_size.set(_pool_number(pool, "size"))
    metrics.pool_checked_out.set(max(0, _pool_number(pool, "checkedout")))
    # QueuePool counts overflow from -pool_size upwards; only positive values are real.
    metrics.pool_overflow.set(max(0, _pool_number(pool, "overflow")))


class _DefaultRegistryProxy(Collector):
    """Exposes the process-global registry through an app's registry."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()

    def describe(self) -> Iterable[Metric]:
        return []


class MetricsMiddleware:
    """Counts and times every HTTP request by route template (pure ASGI)."""

    def __init__(self, app: ASGIApp, *, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "OTHER"
            route = route_template(scope)
            self.metrics.requests.labels(method=method, route=route, status=str(status)).inc()
            self.metrics.duration.labels(method=method, route=route).observe(time.perf_counter() - started)


def exposition_registry(app: FastAPI) -> CollectorRegistry:
    """What a scrape renders: the app's registry, or all workers in multi-process mode."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    registry_: CollectorRegistry = app.state.metrics_registry
    return registry_


class _Scrape(Collector):
    """One scrape, whichever door it came through: fresh pool numbers, then everything,
    then the collectors domains add (``app.state.metrics_extra``: business gauges)."""

    def __init__(self, app: FastAPI, metrics: HttpMetrics, db: Database) -> None:
        self.app, self.metrics, self.db = app, metrics, db

    def collect(self) -> Iterable[Metric]:
        refresh_pool_gauges(self.metrics, self.db)
        yield from exposition_registry(self.app).collect()
        for extra in getattr(self.app.state, "metrics_extra", []):
            yield from extra.collect()

    def describe(self) -> Iterable[Metric]:
        return []


def install_metrics(app: FastAPI, settings: Settings, db: Database) -> None:
    """Create the app's registry and metrics, the timing middleware and, with a token,
    the authenticated ``GET /metrics`` (the separate port: :func:`start_metrics_listener`).

    Call after :func:`omnify.core.middleware.install_middleware` so the timing layer is
    outermost and also sees requests refused by the inner middleware (413, CORS).
    """
    if not settings.metrics_enabled:
        return
    registry = CollectorRegistry(auto_describe=True)
    metrics = HttpMetrics(registry)
    if not multiprocess_dir():
        registry.register(_DefaultRegistryProxy())
    app.state.metrics_registry = registry
    app.state.http_metrics = metrics
    app.state.metrics_scrape = _Scrape(app, metrics, db)

    refresh_pool_gauges(metrics, db)

    def _on_pool_change(*_args: Any) -> None:
        refresh_pool_gauges(metrics, db)

    for name in ("checkout", "checkin", "connect", "close"):
        event.listen(db.engine.sync_engine, name, _on_pool_change)

    app.add_middleware(MetricsMiddleware, metrics=metrics)
    if settings.metrics_token is None:
        return
    expected = f"Bearer {settings.metrics_token.get_secret_value()}".encode()

    async def metrics_endpoint(request: Request) -> Response:
        presented = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(presented, expected):
            raise Unauthorized("Metrics need the scrape token (Authorization: Bearer ...).",
                               code="metrics-token-required")
        for refresh in getattr(request.app.state, "metrics_refreshers", []):
            try:
                await refresh()
            except Exception as exc:  # stale gauges beat a failed scrape (the DB may be the outage)
                log.warning("metrics.refresh_failed", error=f"{type(exc).__name__}: {exc}"[:300])
        payload = generate_latest(request.app.state.metrics_scrape)
        return Response(payload, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})

    app.add_api_route(METRICS_PATH, metrics_endpoint, methods=["GET"], include_in_schema=False, name="metrics")


def start_metrics_listener(app: FastAPI, settings: Settings) -> Callable[[], None] | None:
    """Serve the scrape on ``OMNIFY_METRICS_HOST:OMNIFY_METRICS_PORT``; returns its stop.

    A port already bound is a warning, not a failure: with ``--workers N`` one process
    owns it (and reports all of them in multi-process mode).
    """
    scrape = getattr(app.state, "metrics_scrape", None)
    if scrape is None or settings.metrics_port <= 0:
        return None
    try:
        server, thread = start_http_server(settings.metrics_port, addr=settings.metrics_host, registry=scrape)
    except OSError as exc:
        log.warning("metrics.port_unavailable", port=settings.metrics_port, host=settings.metrics_host,
                    error=str(exc))
        return None
    log.info("metrics.listening", port=settings.metrics_port, host=settings.metrics_host)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop
