"""OpenTelemetry: server and SQL spans when enabled, nothing when disabled."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from omnify.core.tracing import traces_endpoint
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

    exporter.clear()
    await client.get("/api/v1/orgs/o1/widgets/3")
    nested = next(s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER)
    # Full template including the include prefix (the instrumentation keeps convertors).
    assert nested.attributes["http.route"].startswith("/api/v1/orgs/{org_id}/widgets/{widget_id")

    exporter.clear()
    await client.get("/db")
    names = [s.name for s in exporter.get_finished_spans()]
    assert any(name.startswith("SELECT") for name in names), names


async def test_incoming_traceparent_is_continued(make_client) -> None:
    exporter = InMemorySpanExporter()
    _, client = await make_client(otel_enabled=True, exporter=exporter)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    await client.get("/small", headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    server = next(s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER)
    assert format(server.context.trace_id, "032x") == trace_id


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
