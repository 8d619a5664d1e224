"""deploy/scripts/smoke-test.sh (the post-deploy gate) against a real `omnify serve` process."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "scripts" / "smoke-test.sh"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if shutil.which("curl") is None:
        pytest.skip("curl not installed")
    port = _free_port()
    data = tmp_path_factory.mktemp("smoke")
    env = {**os.environ, "OMNIFY_DATA_DIR": str(data), "OMNIFY_ENV": "development", "OMNIFY_DATABASE_URL": ""}
    proc = subprocess.Popen(
        [sys.executable, "-m", "omnify.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            pytest.fail("omnify serve did not come up")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _smoke(base: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SMOKE_ROUNDS": "2", "SMOKE_PAUSE_SECONDS": "0", "SMOKE_MAX_SECONDS": "2"}
    return subprocess.run(["bash", str(SCRIPT), base], capture_output=True, text=True, env=env, check=False)


def test_smoke_passes_against_a_healthy_app(server: str) -> None:
    result = _smoke(server)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "smoke test passed" in result.stdout


def test_smoke_fails_when_nothing_answers() -> None:
    result = _smoke(f"http://127.0.0.1:{_free_port()}")
    assert result.returncode != 0
    assert "FAIL /healthz" in result.stdout
