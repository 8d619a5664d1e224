"""OpenTelemetry tracing for inbound HTTP, the database and outbound httpx.

Off by default (``OMNIFY_OTEL_ENABLED=false``): then this module does nothing at all -
no provider, no middleware, no listeners, no monkeypatching - so tests and laptops pay
nothing.

When on:

* a :class:`TracerProvider` named after ``OMNIFY_OTEL_SERVICE_NAME`` exports spans in
  batches over OTLP/HTTP to ``OMNIFY_OTEL_EXPORTER_OTLP_ENDPOINT`` (a collector base URL
  such as ``http://otel-collector:4318``; ``/v1/traces`` is appended when missing; unset
  means the standard ``OTEL_EXPORTER_OTLP_*`` variables or ``localhost:4318``);
* :class:`ServerSpanMiddleware` opens one SERVER span per request, named
  ``"METHOD /route/{template}"``, continuing an incoming W3C ``traceparent`` (through the
  global propagator); probes and scrapes (``/healthz``, ``/readyz``, ``/metrics``) are not
  traced;
* :func:`instrument_engine` adds one CLIENT span per SQL statement of *this app's* engine
  (named after the operation: ``SELECT``, ``INSERT`` ...; no statement text), through
  engine events - no global patching of ``create_engine``;
* httpx clients are traced process-wide (that instrumentation can only patch globally),
  reporting to the global provider, which the first enabled app sets (see
  ``set_global`` of :func:`install_tracing`);
* log lines carry ``trace_id``/``span_id`` via :func:`omnify.core.logging.add_trace_context`.

Why not opentelemetry-instrumentation-fastapi/-sqlalchemy: their per-request work (header
capture, URL reconstruction, a dozen attributes under old and new semantic conventions,
duration histograms) made tracing cost ~20 % of the API's throughput; issue 16 budgets it
at 10 % (``bench/api_load.py --tracing-only``, bench/RESULTS.md; the other half of the fix
is the frozen start-up heap in :mod:`omnify.app`'s lifespan).
The spans here carry the stable semantic-convention attributes a trace backend needs.

Spans still buffered at exit are flushed by the provider's atexit hook; call
:func:`shutdown_tracing` from the app's lifespan for a prompt flush on shutdown.
"""

from __future__ import annotations

import re
import weakref
from typing import Any, Final

from fastapi import FastAPI
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy import event
from sqlalchemy.engine import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from omnify.core.db import Database
from omnify.core.logging import get_logger
from omnify.core.middleware import UNMATCHED_ROUTE, route_template
from omnify.settings import Settings

log = get_logger(__name__)

#: Paths that get no server span (probes and scrapes), with or without a trailing slash.
EXCLUDED_PATHS: Final = frozenset({"/healthz", "/readyz", "/metrics", "/healthz/", "/readyz/", "/metrics/"})

TRACER_NAME: Final = "omnify"

_instrumented_engines: weakref.WeakSet[Engine] = weakref.WeakSet()
_OPERATION_RE: Final = re.compile(r"\s*(\w+)")
_ERROR: Final = Status(StatusCode.ERROR)


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
    """Trace ``app`` and ``db`` when ``settings.otel_enabled``; returns the provider or None.

    ``exporter`` (any ``SpanExporter``, e.g. ``InMemorySpanExporter`` in tests) replaces
    the OTLP exporter and is flushed synchronously, span by span - unless ``batch``, which
    gives it the :class:`BatchSpanProcessor` production uses (the bench measures that).

    ``set_global`` (default: only for the OTLP exporter) makes this provider the
    process-wide one - if none is set yet - and traces httpx clients process-wide. With
    an injected exporter the provider stays private to this app, so a test that turns
    tracing on leaves nothing behind for the rest of the process.

    Call it after :func:`omnify.core.middleware.install_middleware` and
    :func:`omnify.core.metrics.install_metrics`: the server span must wrap their layers so
    the access-log line (written on the way out) carries its trace id.
    """
    if not settings.otel_enabled:
        return None

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

    tracer = provider.get_tracer(TRACER_NAME, app.version)
    app.add_middleware(ServerSpanMiddleware, tracer=tracer)
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


class ServerSpanMiddleware:
    """One SERVER span per HTTP request (pure ASGI), current while the request runs.

    Attributes (stable HTTP semantic conventions): ``http.request.method``, ``url.path``,
    ``url.scheme``, ``http.route`` (the matched template, never the raw path: no ids in
    span names) and ``http.response.status_code``; a 5xx or an exception escaping the app
    sets the ERROR status (the exception is recorded on the span). Request headers and the
    query string are not recorded (tokens, e-mail addresses).
    """

    def __init__(self, app: ASGIApp, *, tracer: Any) -> None:
        self.app = app
        self.tracer = tracer
        self._textmap: object = None
        self._fields: frozenset[bytes] = frozenset()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXCLUDED_PATHS:
            await self.app(scope, receive, send)
            return

        # Only the headers the global propagator reads (traceparent, tracestate, baggage).
        textmap = propagate.get_global_textmap()
        if textmap is not self._textmap:
            self._textmap, self._fields = textmap, frozenset(f.lower().encode("latin-1") for f in textmap.fields)
        fields = self._fields
        carrier = {name.decode("latin-1"): value.decode("latin-1")
                   for name, value in scope["headers"] if name in fields}
        parent = propagate.extract(carrier) if carrier else None

        method = scope["method"]
        span = self.tracer.start_span(
            method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "url.path": scope["path"],
                "url.scheme": scope.get("scheme", "http"),
            },
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        status_code = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            span.record_exception(exc)
            raise
        finally:
            route = route_template(scope)
            if route != UNMATCHED_ROUTE:
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", status_code)
            if status_code >= 500:
                span.set_status(_ERROR)
            span.end()
            otel_context.detach(token)


def instrument_engine(engine: Engine, provider: Any) -> None:
    """Trace one SQLAlchemy engine's statements (idempotent per engine).

    One CLIENT span per statement, child of the current span, named after the operation
    (``SELECT``, ``INSERT``, ``SET`` ...) with ``db.system`` (the dialect), ``db.namespace``
    (the database) and ``db.operation.name``. The statement text is not recorded (the
    collector would only hash it, and it is most of an attribute payload's size).
    """
    if engine in _instrumented_engines:
        return
    tracer = provider.get_tracer(TRACER_NAME)
    client = SpanKind.CLIENT
    base = {"db.system": engine.dialect.name}
    if engine.url.database:
        base["db.namespace"] = engine.url.database
    names: dict[str, str] = {}

    def operation(statement: str) -> str:
        name = names.get(statement)
        if name is None:
            match = _OPERATION_RE.match(statement)
            name = match.group(1).upper() if match else "SQL"
            if len(names) < 4096:  # statements are few and compiled once; keep the map bounded
                names[statement] = name
        return name

    def before(_conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool) -> None:
        name = operation(statement)
        span = tracer.start_span(name, kind=client, attributes={**base, "db.operation.name": name})
        if context is not None:
            context._omnify_span = span
        else:  # no execution context (raw DBAPI use): nothing to close it with
            span.end()

    def after(_conn: Any, _cursor: Any, _statement: str, _params: Any, context: Any, _many: bool) -> None:
        span = getattr(context, "_omnify_span", None)
        if span is not None:
            context._omnify_span = None
            span.end()

    def handle_error(exception_context: Any) -> None:
        span = getattr(exception_context.execution_context, "_omnify_span", None)
        if span is not None:
            exception_context.execution_context._omnify_span = None
            span.set_attribute("error.type", type(exception_context.original_exception).__qualname__)
            span.set_status(_ERROR)
            span.end()

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    event.listen(engine, "handle_error", handle_error)
    _instrumented_engines.add(engine)


def shutdown_tracing(app: FastAPI) -> None:
    """Flush and stop the app's provider (no-op when tracing is off)."""
    provider = getattr(app.state, "tracer_provider", None)
    if provider is not None:
        provider.shutdown()
