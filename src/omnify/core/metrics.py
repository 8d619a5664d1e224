"""Prometheus metrics for the API process and the ``GET /metrics`` endpoint.

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

import os
import time
from collections.abc import Iterable
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
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import event
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from omnify.core.db import Database
from omnify.core.middleware import route_template
from omnify.settings import Settings

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
    """What ``/metrics`` renders: the app's registry, or all workers in multi-process mode."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    registry_: CollectorRegistry = app.state.metrics_registry
    return registry_


def install_metrics(app: FastAPI, settings: Settings, db: Database) -> None:
    """Create the app's registry and metrics, the timing middleware and ``GET /metrics``.

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

    refresh_pool_gauges(metrics, db)

    def _on_pool_change(*_args: Any) -> None:
        refresh_pool_gauges(metrics, db)

    for name in ("checkout", "checkin", "connect", "close"):
        event.listen(db.engine.sync_engine, name, _on_pool_change)

    app.add_middleware(MetricsMiddleware, metrics=metrics)

    async def metrics_endpoint(request: Request) -> Response:
        refresh_pool_gauges(metrics, db)
        payload = generate_latest(exposition_registry(request.app))
        return Response(payload, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})

    app.add_api_route(METRICS_PATH, metrics_endpoint, methods=["GET"], include_in_schema=False, name="metrics")
