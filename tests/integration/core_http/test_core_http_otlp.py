"""The production trace path: OTLP/HTTP protobuf to a collector endpoint.

A small HTTP server stands in for the OpenTelemetry collector and decodes what the
exporter really sends.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from omnify.core.db import Database
from omnify.core.tracing import install_tracing, shutdown_tracing
from omnify.settings import Settings


class Collector:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                collector.requests.append((self.path, self.headers["Content-Type"], body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    c.thread.start()
    yield c
    c.server.shutdown()
    c.server.server_close()


async def test_spans_exported_over_otlp_http(collector: Collector, tmp_path: Path) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        env="test",
        data_dir=tmp_path,
        otel_enabled=True,
        otel_service_name="omnify-otlp-test",
        otel_exporter_otlp_endpoint=collector.url,
    )
    db = Database(settings)
    app = FastAPI(version="9.9.9")
    app.state.settings = settings
    app.state.db = db

    @app.get("/orgs/{org_id}/ping")
    async def ping(org_id: str) -> dict[str, str]:
        await db.ping()
        return {"org_id": org_id}

    provider = install_tracing(app, settings, db, set_global=False)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            assert (await client.get("/orgs/o-1/ping")).status_code == 200
        assert provider.force_flush(timeout_millis=10_000)
    finally:
        shutdown_tracing(app)
        await db.dispose()

    assert collector.requests, "nothing reached the collector"
    exports = []
    for path, content_type, body in collector.requests:
        assert path == "/v1/traces"
        assert content_type == "application/x-protobuf"
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        exports.append(export)
    resource_spans = [rs for export in exports for rs in export.resource_spans]
    resource = {a.key: a.value.string_value for a in resource_spans[0].resource.attributes}
    assert resource["service.name"] == "omnify-otlp-test"
    assert resource["service.version"] == "9.9.9"
    spans = [span for rs in resource_spans for ss in rs.scope_spans for span in ss.spans]
    routes = {a.value.string_value for span in spans for a in span.attributes if a.key == "http.route"}
    assert "/orgs/{org_id}/ping" in routes
    assert "GET /orgs/{org_id}/ping" in {span.name for span in spans}
    assert any(span.name.startswith("SELECT") for span in spans)
