"""The API's /metrics output must carry what the SLO rules and dashboards in deploy/monitoring read.

The latency SLO ("95 % of requests within 200 ms") is computed from the histogram bucket with
le="0.2"; without that exact boundary the recording rule yields no data and the latency burn-rate
alert can never fire, silently. This test scrapes the real app.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[2]


async def _scrape(client: httpx.AsyncClient) -> str:
    await client.get("/healthz")
    await client.get("/api/v1/__metrics_contract_probe__")
    response = await client.get("/metrics")
    assert response.status_code == 200
    return response.text


async def test_latency_histogram_has_the_slo_bucket(client: httpx.AsyncClient) -> None:
    text = await _scrape(client)
    buckets = set(re.findall(r'omnify_http_request_duration_seconds_bucket\{[^}]*le="([^"]+)"', text))
    assert buckets, "omnify_http_request_duration_seconds is not exported"
    assert "0.2" in buckets, f"latency SLO needs a le=0.2 bucket; buckets are {sorted(buckets)}"


async def test_rule_selectors_match_exported_labels(client: httpx.AsyncClient) -> None:
    text = await _scrape(client)
    sample = re.search(r"omnify_http_requests_total\{([^}]*)\}", text)
    assert sample, "omnify_http_requests_total is not exported"
    labels = set(re.findall(r"(\w+)=", sample.group(1)))
    assert {"method", "route", "status"} <= labels
    # Health probes carry their route template, so the SLIs' route!~"/healthz|..." exclusion works.
    assert 'route="/healthz"' in text
    rules = (ROOT / "deploy/monitoring/rules/omnify-slo.rules.yml").read_text()
    assert yaml.safe_load(rules)["groups"]
    assert 'le="0.2"' in rules
