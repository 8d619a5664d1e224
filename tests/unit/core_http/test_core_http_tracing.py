"""OpenTelemetry: server and SQL spans when enabled, nothing when disabled."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from omnify.core.tracing import ServerSpanMiddleware, traces_endpoint
from tests.conftest import METRICS_AUTH


async def test_server_span_and_sql_span_when_enabled(make_client, parse_lines, capsys) -> None:
    exporter = InMemorySpanExporter()
    app, client = await make_client(otel_enabled=True, otel_service_name="omnify-test", exporter=exporter)
    assert app.state.tracer_provider is not None
    capsys.readouterr()

    resp = await client.get("/api/v1/things/t1")
    assert resp.status_code == 200
    spans = exporter.get_finished_spans()
    server = [s for s in spans if s.kind == SpanKind.SERVER]
    assert len(server) == 1
    span = server[0]
    assert span.attributes["http.route"] == "/api/v1/things/{thing_id}"
    assert span.resource.attributes["service.name"] == "omnify-test"

    # Log lines inside the request carry the span's trace id.
    trace_id = format(span.context.trace_id, "032x")
    access = next(e for e in parse_lines(capsys.readouterr().out) if e.get("event") == "http_request")
    assert access["trace_id"] == trace_id

    # Named after the method and the route template; stable semantic-convention attributes.
    assert span.name == "GET /api/v1/things/{thing_id}"
    assert span.attributes["http.request.method"] == "GET"
    assert span.attributes["url.path"] == "/api/v1/things/t1"
    assert span.attributes["http.response.status_code"] == 200
    assert span.status.status_code == StatusCode.UNSET
    assert access["span_id"] == format(span.context.span_id, "016x")

    exporter.clear()
    await client.get("/api/v1/orgs/o1/widgets/3")
    nested = next(s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER)
    # Full template including the include prefix.
    assert nested.attributes["http.route"] == "/api/v1/orgs/{org_id}/widgets/{widget_id}"

    exporter.clear()
    await client.get("/db")
    spans = exporter.get_finished_spans()
    server = next(s for s in spans if s.kind == SpanKind.SERVER)
    sql = [s for s in spans if s.kind == SpanKind.CLIENT]
    assert any(s.name == "SELECT" for s in sql), [s.name for s in spans]
    for s in sql:
        # Children of the request's span (the context crosses SQLAlchemy's async greenlet).
        assert s.parent is not None and s.parent.span_id == server.context.span_id
        assert s.context.trace_id == server.context.trace_id
        assert s.attributes["db.system"] in {"sqlite", "postgresql"}
        assert s.attributes["db.operation.name"] == s.name


async def test_one_server_span_per_request_and_5xx_is_an_error(make_client) -> None:
    exporter = InMemorySpanExporter()
    _, client = await make_client(otel_enabled=True, exporter=exporter)
    assert (await client.get("/small")).status_code == 200
    assert [s.name for s in exporter.get_finished_spans()] == ["GET /small"]

    exporter.clear()
    assert (await client.get("/boom")).status_code == 500
    (span,) = exporter.get_finished_spans()
    assert span.name == "GET /boom"
    assert span.attributes["http.response.status_code"] == 500
    assert span.status.status_code == StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]

    exporter.clear()
    assert (await client.get("/no/such/route")).status_code == 404
    (span,) = exporter.get_finished_spans()
    assert span.name == "GET"  # no route template: no raw path in the name
    assert "http.route" not in span.attributes
    assert span.status.status_code == StatusCode.UNSET


async def test_incoming_traceparent_is_continued(make_client) -> None:
    exporter = InMemorySpanExporter()
    _, client = await make_client(otel_enabled=True, exporter=exporter)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    await client.get("/small", headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    server = next(s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER)
    assert format(server.context.trace_id, "032x") == trace_id
    assert server.parent is not None and format(server.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert server.parent.is_remote


async def test_probes_are_not_traced(make_client) -> None:
    exporter = InMemorySpanExporter()
    _, client = await make_client(otel_enabled=True, exporter=exporter)
    await client.get("/healthz")
    await client.get("/metrics", headers=METRICS_AUTH)
    assert [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER] == []


async def test_disabled_tracing_installs_nothing(make_client, parse_lines, capsys) -> None:
    app, client = await make_client()
    assert getattr(app.state, "tracer_provider", None) is None
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
    assert not any(m.cls is ServerSpanMiddleware for m in app.user_middleware)
    capsys.readouterr()
    # Without tracing, a valid incoming traceparent still correlates the logs.
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    await client.get("/small", headers={"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"})
    access = next(e for e in parse_lines(capsys.readouterr().out) if e.get("event") == "http_request")
    assert access["trace_id"] == trace_id


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        (None, None),
        ("http://collector:4318", "http://collector:4318/v1/traces"),
        ("http://collector:4318/", "http://collector:4318/v1/traces"),
        ("https://otlp.example.com/v1/traces", "https://otlp.example.com/v1/traces"),
    ],
)
def test_traces_endpoint(base: str | None, expected: str | None) -> None:
    assert traces_endpoint(base) == expected
