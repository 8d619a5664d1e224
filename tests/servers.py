"""Real server processes for tests (moto_server, OpenBao): started on a free port, stopped after.

One copy of the start/wait/stop dance, because getting it subtly wrong leaks processes
between test runs: each server runs in its own session (process group) so stopping it also
stops anything it forked, and readiness is polled on an HTTP endpoint rather than guessed
with a sleep. A missing binary skips the test, except in CI where it is a failure (CI must
never go green by skipping what it is meant to prove).

Modules keep their own thin pytest fixtures around these context managers, choosing scope
and any extra setup (buckets, verified identities) themselves.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

LOOPBACK = "127.0.0.1"
_AWS_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def find_binary(name: str) -> str:
    """The venv's copy first (pip-installed servers), then PATH."""
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed (required in CI)")
        pytest.skip(f"{name} is not installed")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the whole process group, SIGKILL it if it does not go within 10 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def start_process(cmd: list[str], ready_url: str, log_path: Path, timeout: float = 30.0) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in a new session, logging to ``log_path``; return once ``ready_url``
    answers below 500. An early exit or a timeout raises with the end of the log."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[0]} exited early:\n{log_path.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(ready_url, timeout=1).status_code < 500:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop_process(proc)
    raise RuntimeError(f"{cmd[0]} did not become ready:\n{log_path.read_text(errors='replace')[-2000:]}")


@contextmanager
def running(cmd: list[str], ready_url: str, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = start_process(cmd, ready_url, log_path)
    try:
        yield proc
    finally:
        stop_process(proc)


@contextmanager
def fake_aws_credentials() -> Iterator[None]:
    """moto accepts any credentials, but boto3 needs some: set dummy ones (and drop a real
    session token that would not match them), restoring the caller's environment after."""
    saved = {key: os.environ.get(key) for key in _AWS_VARS}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    os.environ.pop("AWS_SESSION_TOKEN", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def moto_server(log_dir: Path) -> Iterator[str]:
    """A moto_server (S3, SES, Secrets Manager, ...) on a free port; yields its base URL."""
    binary = find_binary("moto_server")
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    with running([binary, "-H", LOOPBACK, "-p", str(port)], f"{url}/moto-api/", log_dir / "moto.log"):
        yield url


@contextmanager
def openbao_server(log_dir: Path, root_token: str = "root") -> Iterator[str]:
    """An OpenBao dev server (in-memory, unsealed, KV v2 at ``secret/``); yields its URL."""
    binary = find_binary("bao")
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    cmd = [binary, "server", "-dev", f"-dev-root-token-id={root_token}", f"-dev-listen-address={LOOPBACK}:{port}"]
    with running(cmd, f"{url}/v1/sys/health", log_dir / "bao.log"):
        yield url
