"""Omnify with OpenTelemetry tracing on, exporting in process, for bench/api_load.py.

The same app as ``omnify.app:create_app`` (same settings from the environment), plus
:func:`omnify.core.tracing.install_tracing` with an exporter that keeps no spans (it
counts them): every span is still created, timed, attributed and handed to the
:class:`BatchSpanProcessor` production uses (queued, exported in batches by its thread),
so the figure is the cost of tracing in the process, without a collector's network hop
or the OTLP encoding.

Run by the bench:  uvicorn traced_app:create --factory --workers 2
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from omnify.app import create_app
from omnify.core.tracing import install_tracing
from omnify.settings import get_settings


class CountingExporter(SpanExporter):
    """An in-process exporter that drops spans after counting them (no memory growth)."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def create() -> FastAPI:
    settings = get_settings()
    app = create_app(settings)
    traced: Any = settings.model_copy(update={"otel_enabled": True})
    install_tracing(app, traced, app.state.db, exporter=CountingExporter(), batch=True)
    return app
