"""`omnify sandbox` switches faults on from the command line, and refuses flags it cannot read."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from omnify.integrations.base import Platform
from omnify.integrations.sandbox_common import FaultConfig
from omnify.integrations.sandboxes import parse_fault_flags

OMNIFY = [sys.executable, "-m", "omnify.cli"]


def test_fault_flags_parse_to_typed_configs() -> None:
    parsed = parse_fault_flags(["meta.rate_limit_next=2", "meta.throttle=613", "meta.retry_after=1.5",
                                "shopify.match=/graphql.json", "google_ads.errors_5xx_next=1"])
    assert parsed[Platform.META_ADS] == FaultConfig(rate_limit_next=2, throttle="613", retry_after=1.5)
    assert parsed[Platform.SHOPIFY].match == "/graphql.json"
    assert parsed[Platform.GOOGLE_ADS].errors_5xx_next == 1
    for bad, reason in (("meta.rate_limit_next", "PLATFORM.SETTING=VALUE"), ("myspace.x=1", "PLATFORM one of"),
                        ("meta.bogus=1", "unknown setting"), ("meta.rate_limit_next=lots", "not a valid int"),
                        ("tiktok.expire_tokens=perhaps", "not a valid bool")):
        with pytest.raises(ValueError, match=reason):
            parse_fault_flags([bad])


def _wait_for_env(proc: subprocess.Popen[str], deadline: float) -> dict[str, str]:
    env: dict[str, str] = {}
    assert proc.stdout is not None
    while time.monotonic() < deadline and "OMNIFY_SHOPIFY_SHOP_URL_TEMPLATE" not in env:
        line = proc.stdout.readline()
        if not line:
            break
        if line.strip().startswith("export "):
            key, _, value = line.strip().removeprefix("export ").partition("=")
            env[key] = value
    return env


def test_omnify_sandbox_starts_with_the_faults_asked_for(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [*OMNIFY, "sandbox", "--base-port", "0", "--fault", "meta.rate_limit_next=1", "--fault", "meta.throttle=613",
         "--fault", "google.errors_5xx_next=1", "--fault", "google.error_status=503"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        env = _wait_for_env(proc, time.monotonic() + 60)
        assert env, "omnify sandbox printed no settings"
        meta = httpx.get(f"{env['OMNIFY_META_GRAPH_URL']}/v26.0/me", timeout=10)
        assert meta.json()["error"]["code"] == 613 and "x-business-use-case-usage" in meta.headers
        assert httpx.get(f"{env['OMNIFY_META_GRAPH_URL']}/v26.0/me", timeout=10).json()["error"]["code"] == 2500
        google = httpx.get(f"{env['OMNIFY_GOOGLE_ADS_URL']}/v26/customers:listAccessibleCustomers", timeout=10)
        assert google.status_code == 503 and google.json()["error"]["status"] == "UNAVAILABLE"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_omnify_sandbox_refuses_a_bad_flag(tmp_path: Path) -> None:
    done = subprocess.run([*OMNIFY, "sandbox", "--base-port", "0", "--fault", "meta.nonsense=1"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 1 and "unknown setting 'nonsense'" in done.stderr
