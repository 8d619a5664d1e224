"""The real application (create_app), in process and served by uvicorn in a subprocess."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict

pytest.importorskip("omnify.auth.router", reason="domain routers not written yet")

from omnify.app import create_app
from omnify.core import migrate
from omnify.settings import Settings
from tests.conftest import METRICS_AUTH, METRICS_TOKEN


def _settings(tmp: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"env": "test", "data_dir": tmp, "redis_url": None, "rate_limit_auth": "3/minute",
                              "metrics_token": METRICS_TOKEN}
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
async def app_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    migrate.upgrade(_settings(tmp_path))  # /readyz is 503 "migrations pending" on an empty database
    app = create_app(_settings(tmp_path))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client,
    ):
        yield client


async def test_create_app_wires_observability(app_client: httpx.AsyncClient) -> None:
    health = await app_client.get("/healthz", headers={"X-Request-ID": "wired-1"})
    assert health.status_code == 200
    assert health.headers["X-Request-ID"] == "wired-1"
    assert "frame-ancestors 'none'" in health.headers["Content-Security-Policy"]
    assert (await app_client.get("/readyz")).status_code == 200

    schema = (await app_client.get("/api/v1/openapi.json")).json()
    for internal in ("/metrics", "/healthz", "/readyz"):
        assert internal not in schema["paths"]

    missing = await app_client.get("/api/v1/definitely-not-here")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


async def test_auth_endpoints_rate_limited_per_ip(app_client: httpx.AsyncClient) -> None:
    # Invalid bodies never reach the database; the per-IP limit runs first anyway.
    codes = [(await app_client.post("/api/v1/auth/login", json={})).status_code for _ in range(3)]
    assert 429 not in codes
    blocked = await app_client.post("/api/v1/auth/login", json={})
    assert blocked.status_code == 429
    assert blocked.headers["content-type"] == "application/problem+json"
    assert int(blocked.headers["Retry-After"]) >= 1
    assert blocked.headers["RateLimit-Limit"] == "3"

    metrics = (await app_client.get("/metrics", headers=METRICS_AUTH)).text
    assert 'route="/api/v1/auth/login"' in metrics
    assert "omnify_http_request_duration_seconds_bucket" in metrics


# ------------------------------------------------------------------- real uvicorn process
class Served:
    def __init__(self, base_url: str, log_path: Path, proc: subprocess.Popen[bytes]) -> None:
        self.base_url = base_url
        self.log_path = log_path
        self.proc = proc

    def stop(self) -> list[str]:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        return self.log_path.read_text().splitlines()


def serve(tmp_path: Path, *, workers: int = 1, **extra_env: str) -> Served:
    """Start ``uvicorn omnify.app:create_app --factory`` on an inherited socket.

    uvicorn keeps its default logging config, so the test also proves that
    configure_logging takes its loggers over.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("OMNIFY_") or k.startswith("OMNIFY_TEST_") or k == "OMNIFY_DATABASE_URL"}
    env.update(
        OMNIFY_ENV="test",
        OMNIFY_DATA_DIR=str(tmp_path),
        OMNIFY_MAX_REQUEST_BODY_BYTES="2048",
        OMNIFY_LOG_LEVEL="INFO",
        **extra_env,
    )
    log_path = tmp_path / "stdout.log"
    command = [sys.executable, "-m", "uvicorn", "omnify.app:create_app", "--factory", "--fd", str(sock.fileno())]
    if workers > 1:
        command += ["--workers", str(workers)]
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, pass_fds=(sock.fileno(),), cwd=tmp_path
        )
    sock.close()
    server = Served(f"http://127.0.0.1:{port}", log_path, proc)
    deadline = time.monotonic() + 90  # generous: a loaded 2-CPU machine starts workers slowly
    while True:
        try:
            if httpx.get(server.base_url + "/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            pytest.fail("uvicorn did not start:\n" + log_path.read_text())
        time.sleep(0.1)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    migrate.upgrade(_settings(tmp_path))
    server = serve(tmp_path)
    yield server
    server.stop()


def _chunks(total: int, size: int = 1000) -> Iterator[bytes]:
    for start in range(0, total, size):
        yield b"x" * min(size, total - start)


def test_served_app_logs_json_and_limits_bodies(served: Served) -> None:
    with httpx.Client(base_url=served.base_url, timeout=10) as client:
        assert client.get("/readyz").status_code == 200
        ok = client.get("/api/v1/openapi.json", headers={"X-Request-ID": "served-1"})
        assert ok.status_code == 200
        assert ok.headers["X-Request-ID"] == "served-1"

        declared = client.post(
            "/api/v1/auth/login", content=b"{" + b" " * 3000 + b"}", headers={"Content-Type": "application/json"}
        )
        assert declared.status_code == 413
        assert declared.headers["content-type"] == "application/problem+json"

    with httpx.Client(base_url=served.base_url, timeout=10) as client:
        chunked = client.post(
            "/api/v1/auth/login",
            content=_chunks(3000),
            headers={"Content-Type": "application/json", "X-Request-ID": "served-2"},
        )
        assert chunked.request.headers.get("transfer-encoding") == "chunked"
        assert chunked.status_code == 413
        assert chunked.json()["request_id"] == "served-2"

    lines = served.stop()
    assert lines, "the server wrote nothing to stdout"
    events = [json.loads(line) for line in lines]  # every line, uvicorn's included, is JSON
    assert any(e["event"] == "Application startup complete." and e["logger"] == "uvicorn.error" for e in events)
    access = [e for e in events if e["event"] == "http_request" and e.get("request_id") == "served-1"]
    assert access and access[0]["route"] == "/api/v1/openapi.json"
    # Probes are logged at debug level only, so they do not flood the logs.
    assert not any(e["event"] == "http_request" and e["route"] == "/readyz" for e in events)
    too_big = [e for e in events if e["event"] == "http_request" and e.get("request_id") == "served-2"]
    assert too_big and too_big[0]["status"] == 413


def test_metrics_aggregate_all_workers_in_multiprocess_mode(tmp_path: Path) -> None:
    """The documented PROMETHEUS_MULTIPROC_DIR set-up: one scrape of the metrics port (bound
    by whichever worker came first) sees every worker."""
    multiproc = tmp_path / "prom"
    multiproc.mkdir()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        metrics_port = probe.getsockname()[1]
    server = serve(tmp_path, workers=2, PROMETHEUS_MULTIPROC_DIR=str(multiproc), OMNIFY_METRICS_PORT=str(metrics_port))
    sent = 0
    try:
        # The kernel hands each new connection to whichever worker is waiting in accept(), so
        # sequential requests may all land on one. Concurrent batches (a new connection each)
        # until both workers have counted something: a counter file appears per process.
        with ThreadPoolExecutor(max_workers=8) as pool:
            while True:
                codes = list(pool.map(lambda _: _get(server.base_url + "/api/v1/openapi.json"), range(8)))
                assert codes == [200] * 8
                sent += 8
                if sent >= 400 or sum(1 for n in _served_per_worker(multiproc).values() if n) >= 2:
                    break
        # Not on the API port without the scrape token; on the metrics port, every worker.
        assert httpx.get(server.base_url + "/metrics", timeout=10).status_code == 404
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    finally:
        server.stop()
    line = next(
        line
        for line in text.splitlines()
        if line.startswith("omnify_http_requests_total{") and 'route="/api/v1/openapi.json"' in line
    )
    per_worker = _served_per_worker(multiproc)
    assert len(per_worker) == 2 and all(per_worker.values()), f"not every worker served: {per_worker}"
    assert sum(per_worker.values()) == sent
    assert float(line.rsplit(" ", 1)[1]) == float(sent)  # the scrape sums both workers' files
    assert "omnify_up 1.0" in text


def _get(url: str) -> int:
    return httpx.get(url, timeout=60).status_code


def _served_per_worker(multiproc: Path) -> dict[str, float]:
    """Requests to the OpenAPI route counted in each worker's own counter file (one per pid)."""
    served: dict[str, float] = {}
    for path in multiproc.glob("counter_*.db"):
        served[path.name] = sum(
            value
            for key, value, *_ in MmapedDict.read_all_values_from_file(str(path))
            if "omnify_http_requests_total" in key and "/api/v1/openapi.json" in key
        )
    return served
