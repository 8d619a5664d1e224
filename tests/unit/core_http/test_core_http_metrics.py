"""/metrics: per-route RED metrics, pool gauges, isolation between apps."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from omnify.core.metrics import LATENCY_BUCKETS
from tests.conftest import METRICS_AUTH


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_metrics_expose_route_template_histogram(make_client) -> None:
    _, client = await make_client()
    for thing in ("a", "b", "c"):
        assert (await client.get(f"/api/v1/things/{thing}")).status_code == 200
    resp = await client.get("/metrics", headers=METRICS_AUTH)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    bucket_lines = [
        line
        for line in text.splitlines()
        if line.startswith("omnify_http_request_duration_seconds_bucket{")
        and 'route="/api/v1/things/{thing_id}"' in line
        and 'method="GET"' in line
    ]
    assert len(bucket_lines) == len(LATENCY_BUCKETS) + 1  # every bucket + +Inf
    samples = _samples(text)
    inf_key = (
        "omnify_http_request_duration_seconds_bucket",
        (("le", "+Inf"), ("method", "GET"), ("route", "/api/v1/things/{thing_id}")),
    )
    assert samples[inf_key] == 3.0
    key = ("omnify_http_requests_total", (("method", "GET"), ("route", "/api/v1/things/{thing_id}"), ("status", "200")))
    assert samples[key] == 3.0
    count_key = (
        "omnify_http_request_duration_seconds_count",
        (("method", "GET"), ("route", "/api/v1/things/{thing_id}")),
    )
    assert samples[count_key] == 3.0
    assert "/api/v1/things/a" not in text  # raw paths never become labels


async def test_prefixed_nested_routers_get_their_full_template(make_client) -> None:
    _, client = await make_client()
    assert (await client.get("/api/v1/orgs/o-1/widgets/7")).status_code == 200
    assert (await client.get("/api/v1/orgs/o-2/widgets/8")).status_code == 200
    assert (await client.get("/api/v1/orgs/o-2/widgets/not-int")).status_code == 404
    samples = _samples((await client.get("/metrics", headers=METRICS_AUTH)).text)
    key = (
        "omnify_http_requests_total",
        (("method", "GET"), ("route", "/api/v1/orgs/{org_id}/widgets/{widget_id}"), ("status", "200")),
    )
    assert samples[key] == 2.0
    unmatched = ("omnify_http_requests_total", (("method", "GET"), ("route", "<unmatched>"), ("status", "404")))
    assert samples[unmatched] == 1.0


async def test_unmatched_routes_share_one_label(make_client) -> None:
    _, client = await make_client()
    await client.get("/nope/1")
    await client.get("/nope/2")
    samples = _samples((await client.get("/metrics", headers=METRICS_AUTH)).text)
    key = ("omnify_http_requests_total", (("method", "GET"), ("route", "<unmatched>"), ("status", "404")))
    assert samples[key] == 2.0


async def test_status_and_odd_methods_are_labelled(make_client) -> None:
    _, client = await make_client()
    await client.post("/echo", json={"a": 1})
    await client.post("/echo", content=b"{bad json", headers={"Content-Type": "application/json"})
    await client.request("PROPFIND", "/small")
    samples = _samples((await client.get("/metrics", headers=METRICS_AUTH)).text)
    assert samples[("omnify_http_requests_total", (("method", "POST"), ("route", "/echo"), ("status", "200")))] == 1
    assert samples[("omnify_http_requests_total", (("method", "POST"), ("route", "/echo"), ("status", "400")))] == 1
    assert samples[("omnify_http_requests_total", (("method", "OTHER"), ("route", "/small"), ("status", "405")))] == 1


async def test_gauges_pool_and_up(make_client) -> None:
    app, client = await make_client()
    await client.get("/db")
    samples = _samples((await client.get("/metrics", headers=METRICS_AUTH)).text)
    assert samples[("omnify_up", ())] == 1.0
    pool = app.state.db.engine.pool
    expected_size = pool.size() if hasattr(pool, "size") else 0
    assert samples[("omnify_db_pool_size", ())] == expected_size
    assert samples[("omnify_db_pool_checked_out", ())] == 0.0  # /db returned its connection
    assert samples[("omnify_db_pool_overflow", ())] >= 0.0
    # The scrape itself is in flight while it renders.
    assert samples[("omnify_http_requests_in_flight", ())] == 1.0


async def test_rate_limited_counter_from_global_registry_is_exposed(make_client) -> None:
    _, client = await make_client()
    text = (await client.get("/metrics", headers=METRICS_AUTH)).text
    assert "# TYPE omnify_rate_limited_total counter" in text


async def test_metrics_excluded_from_openapi_and_apps_isolated(make_client) -> None:
    _, first = await make_client()
    _, second = await make_client()
    await first.get("/small")
    await first.get("/small")
    await second.get("/small")
    s1 = _samples((await first.get("/metrics", headers=METRICS_AUTH)).text)
    s2 = _samples((await second.get("/metrics", headers=METRICS_AUTH)).text)
    key = ("omnify_http_requests_total", (("method", "GET"), ("route", "/small"), ("status", "200")))
    assert s1[key] == 2.0
    assert s2[key] == 1.0
    schema = (await first.get("/api/v1/openapi.json")).json()
    assert "/metrics" not in schema["paths"]
    assert "/healthz" not in schema["paths"]


async def test_metrics_can_be_disabled(make_client) -> None:
    app, client = await make_client(metrics_enabled=False)
    assert (await client.get("/metrics", headers=METRICS_AUTH)).status_code == 404
    assert not hasattr(app.state, "metrics_registry")


async def test_plain_starlette_routes_and_mounts_are_labelled(make_client) -> None:
    from starlette.responses import PlainTextResponse

    app, client = await make_client()
    app.mount("/legacy", PlainTextResponse("legacy app"))
    assert (await client.get("/api/v1/openapi.json")).status_code == 200
    assert (await client.get("/legacy/some/page")).status_code == 200
    samples = _samples((await client.get("/metrics", headers=METRICS_AUTH)).text)
    openapi = ("omnify_http_requests_total", (("method", "GET"), ("route", "/api/v1/openapi.json"), ("status", "200")))
    mounted = ("omnify_http_requests_total", (("method", "GET"), ("route", "/legacy/{path}"), ("status", "200")))
    assert samples[openapi] == 1.0
    assert samples[mounted] == 1.0


async def test_metrics_are_not_public_on_the_api_port(make_client) -> None:
    _, client = await make_client()
    for headers in ({}, {"Authorization": "Bearer guess"}, {"Authorization": METRICS_AUTH["Authorization"] + "x"}):
        resp = await client.get("/metrics", headers=headers)
        assert resp.status_code == 401
        assert resp.headers["content-type"] == "application/problem+json"
        assert "omnify_" not in resp.text
    _, no_token = await make_client(metrics_token=None)
    assert (await no_token.get("/metrics")).status_code == 404


async def test_separate_metrics_port_serves_the_scrape(make_client) -> None:
    import socket

    import httpx

    from omnify.core.metrics import start_metrics_listener

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app, client = await make_client(metrics_port=port, metrics_token=None)
    await client.get("/small")
    stop = start_metrics_listener(app, app.state.settings)
    assert stop is not None
    try:
        async with httpx.AsyncClient() as scraper:
            text = (await scraper.get(f"http://127.0.0.1:{port}/metrics")).text
        assert 'omnify_http_requests_total{method="GET",route="/small",status="200"} 1.0' in text
        assert "omnify_db_pool_size" in text
        assert start_metrics_listener(app, app.state.settings) is None  # port taken: a warning, no crash
    finally:
        stop()
    with socket.socket() as again:  # released on stop (REUSEADDR: only a listener would still refuse)
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
        again.listen()
