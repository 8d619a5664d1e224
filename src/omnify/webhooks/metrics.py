"""Webhook metrics (names fixed in notes/METRICS.md), on the default registry that both
the API's ``/metrics`` and the worker's endpoint expose."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

DELIVERIES = Counter(
    "omnify_webhook_deliveries_total",
    "Outbound webhook delivery attempts by result.",
    ["result"],
)
DEAD_LETTERS = Gauge(
    "omnify_webhook_dead_letters",
    "Outbound webhook deliveries dead-lettered and not yet replayed.",
    multiprocess_mode="max",
)
SUCCESS, FAILURE = "success", "failure"
