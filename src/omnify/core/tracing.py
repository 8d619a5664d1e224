"""OpenTelemetry tracing for inbound HTTP (FastAPI), the database and outbound httpx.

Off by default (``OMNIFY_OTEL_ENABLED=false``): then this module does nothing at all -
no provider, no instrumentation, no monkeypatching - so tests and laptops pay nothing.

When on:

* a :class:`TracerProvider` named after ``OMNIFY_OTEL_SERVICE_NAME`` exports spans in
  batches over OTLP/HTTP to ``OMNIFY_OTEL_EXPORTER_OTLP_ENDPOINT`` (a collector base URL
  such as ``http://otel-collector:4318``; ``/v1/traces`` is appended when missing; unset
  means the standard ``OTEL_EXPORTER_OTLP_*`` variables or ``localhost:4318``);
* the app's server spans come from ``opentelemetry-instrumentation-fastapi``; probes and
  scrapes (``/healthz``, ``/readyz``, ``/metrics``) are not traced;
* SQL statements of *this app's* engine are traced through the instrumentation's
  per-engine :class:`EngineTracer` (no global patching of ``create_engine``);
* httpx clients are traced process-wide (that instrumentation can only patch globally),
  reporting to the global provider, which the first enabled app sets (see
  ``set_global`` of :func:`install_tracing`);
* log lines carry ``trace_id``/``span_id`` via :func:`omnify.core.logging.add_trace_context`.

Spans still buffered at exit are flushed by the provider's atexit hook; call
:func:`shutdown_tracing` from the app's lifespan for a prompt flush on shutdown.
"""

from __future__ import annotations

import weakref
from typing import Any, Final

from fastapi import FastAPI
from sqlalchemy.engine import Engine

from omnify.core.db import Database
from omnify.core.logging import get_logger
from omnify.settings import Settings

log = get_logger(__name__)

#: Full-URL regexes (comma separated) of requests that get no server span.
EXCLUDED_URLS: Final = r"^[a-z]+://[^/]+/(healthz|readyz|metrics)/?(\?.*)?$"

_instrumented_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


def traces_endpoint(base: str | None) -> str | None:
    """The OTLP/HTTP traces URL for a collector base URL (or None to use OTEL_* env vars)."""
    if not base:
        return None
    base = base.rstrip("/")
    return base if base.endswith("/v1/traces") else base + "/v1/traces"


def install_tracing(
    app: FastAPI,
    settings: Settings,
    db: Database,
    *,
    exporter: Any = None,
    batch: bool = False,
    set_global: bool | None = None,
) -> Any:
    """Instrument ``app`` and ``db`` when ``settings.otel_enabled``; returns the provider or None.

    ``exporter`` (any ``SpanExporter``, e.g. ``InMemorySpanExporter`` in tests) replaces
    the OTLP exporter and is flushed synchronously, span by span - unless ``batch``, which
    gives it the :class:`BatchSpanProcessor` production uses (the bench measures that).

    ``set_global`` (default: only for the OTLP exporter) makes this provider the
    process-wide one - if none is set yet - and traces httpx clients process-wide. With
    an injected exporter the provider stays private to this app, so a test that turns
    tracing on leaves nothing behind for the rest of the process.
    """
    if not settings.otel_enabled:
        return None

    from opentelemetry import trace
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    if set_global is None:
        set_global = exporter is None
    resource = Resource.create(
        {
            SERVICE_NAME: settings.otel_service_name,
            SERVICE_VERSION: app.version,
            "deployment.environment.name": settings.env,
        }
    )
    provider = TracerProvider(resource=resource)
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        otlp = OTLPSpanExporter(endpoint=traces_endpoint(settings.otel_exporter_otlp_endpoint))
        provider.add_span_processor(BatchSpanProcessor(otlp))
    elif batch:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))

    # No span per ASGI message ("http send"/"http receive"): two or three more spans per
    # request that say nothing the server span does not, and most of tracing's cost on a
    # cached request (issue 16 budgets tracing at 10 % of throughput; bench/api_load.py).
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, excluded_urls=EXCLUDED_URLS,
                                       exclude_spans=["receive", "send"])
    instrument_engine(db.engine.sync_engine, provider)

    if set_global:
        # The first such app becomes the process's provider: manual spans
        # (trace.get_tracer), Celery and httpx report there.
        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            trace.set_tracer_provider(provider)
        httpx_instrumentor = HTTPXClientInstrumentor()
        if not httpx_instrumentor.is_instrumented_by_opentelemetry:
            httpx_instrumentor.instrument()

    app.state.tracer_provider = provider
    log.info(
        "tracing_enabled",
        service_name=settings.otel_service_name,
        exporter=type(exporter).__name__ if exporter is not None else "otlp-http",
        global_provider=set_global,
    )
    return provider


def instrument_engine(engine: Engine, provider: Any) -> None:
    """Trace one SQLAlchemy engine's statements (idempotent per engine)."""
    if engine in _instrumented_engines:
        return
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.instrumentation.sqlalchemy.version import __version__ as sa_instr_version
    from opentelemetry.metrics import get_meter
    from opentelemetry.trace import get_tracer

    tracer = get_tracer("opentelemetry.instrumentation.sqlalchemy", sa_instr_version, provider)
    connections_usage = get_meter("opentelemetry.instrumentation.sqlalchemy", sa_instr_version).create_up_down_counter(
        name="db.client.connections.usage",
        unit="connections",
        description="The number of connections that are currently in state described by the state attribute.",
    )
    EngineTracer(tracer, engine, connections_usage)  # type: ignore[no-untyped-call]
    _instrumented_engines.add(engine)


def shutdown_tracing(app: FastAPI) -> None:
    """Flush and stop the app's provider (no-op when tracing is off)."""
    provider = getattr(app.state, "tracer_provider", None)
    if provider is not None:
        provider.shutdown()
