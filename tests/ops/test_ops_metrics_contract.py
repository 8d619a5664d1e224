"""The API's /metrics output must carry what the SLO rules and dashboards in deploy/monitoring read.

The latency SLO ("95 % of requests within 200 ms") is computed from the histogram bucket with
le="0.2"; without that exact boundary the recording rule yields no data and the latency burn-rate
alert can never fire, silently. This test scrapes the real app.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.conftest import METRICS_AUTH

ROOT = Path(__file__).resolve().parents[2]


async def _scrape(client: httpx.AsyncClient) -> str:
    await client.get("/healthz")
    await client.get("/api/v1/__metrics_contract_probe__")
    response = await client.get("/metrics", headers=METRICS_AUTH)
    assert response.status_code == 200
    return response.text


async def test_latency_histogram_has_the_slo_bucket(client: httpx.AsyncClient) -> None:
    text = await _scrape(client)
    buckets = set(re.findall(r'omnify_http_request_duration_seconds_bucket\{[^}]*le="([^"]+)"', text))
    assert buckets, "omnify_http_request_duration_seconds is not exported"
    assert "0.2" in buckets, f"latency SLO needs a le=0.2 bucket; buckets are {sorted(buckets)}"


async def test_health_probes_carry_their_route_template(client: httpx.AsyncClient) -> None:
    """The SLIs exclude probes with route!~"/healthz|..."; that needs the template as the label.
    (Every dashboard and rule selector against a real scrape: tests/integration/sync/test_sync_metrics_contract.py.)"""
    assert 'route="/healthz"' in await _scrape(client)
