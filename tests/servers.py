"""Real server processes for tests (moto_server, OpenBao, `omnify up`): started on a free port, stopped after.

One copy of the start/wait/stop dance, because getting it subtly wrong leaks processes
between test runs: each server runs in its own session (process group) so stopping it also
stops anything it forked, and readiness is polled on an HTTP endpoint rather than guessed
with a sleep. A missing binary skips the test, except in CI where it is a failure (CI must
never go green by skipping what it is meant to prove).

Modules keep their own thin pytest fixtures around these context managers, choosing scope
and any extra setup (buckets, verified identities) themselves.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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


def start_process(cmd: list[str], ready_url: str, log_path: Path, timeout: float = 30.0,
                  env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in a new session (with ``env``, default this one's), logging to ``log_path``;
    return once ``ready_url`` answers below 500. An early exit or a timeout raises with the end
    of the log."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
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
def running(cmd: list[str], ready_url: str, log_path: Path, timeout: float = 30.0,
            env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    proc = start_process(cmd, ready_url, log_path, timeout, env)
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


@contextmanager
def serve_asgi(app: object) -> Iterator[str]:
    """An ASGI app behind a real uvicorn server in a thread; yields its base URL."""
    import threading

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=LOOPBACK, port=port, log_level="warning",  # type: ignore[arg-type]
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
               "proxy-authorization", "proxy-authenticate", "content-length"}


@contextmanager
def edge_proxy(origin: str, path_prefix: str = "/edge") -> Iterator[str]:
    """A CDN edge in miniature: a real HTTP server that forwards ``GET <prefix><path>?<query>``
    to ``origin<path>?<query>`` with the origin's Host header (as a CDN configured to forward
    the origin host does), and relays the origin's status, headers and body. Yields the base URL
    to configure as ``cdn_base_url`` (it ends with the prefix)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Edge(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if not self.path.startswith(path_prefix + "/"):
                self.send_error(404, "not behind this edge")
                return
            upstream = httpx.get(origin + self.path[len(path_prefix):], timeout=30)
            self.send_response(upstream.status_code)
            for name, value in upstream.headers.multi_items():
                if name.lower() not in _HOP_BY_HOP:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(upstream.content)))
            self.send_header("X-Cache", "MISS from omnify-test-edge")
            self.end_headers()
            self.wfile.write(upstream.content)

        def log_message(self, format: str, *args: object) -> None:
            return

    httpd = ThreadingHTTPServer((LOOPBACK, 0), Edge)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{httpd.server_address[1]}{path_prefix}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


# ------------------------------------------------------------------------------ omnify up
def wait_for(predicate: Callable[[], object], timeout: float, what: str, *, interval: float = 0.5,
             proc: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> None:
    """Poll ``predicate`` until it is truthy; fail after ``timeout`` s (or when ``proc`` exits),
    with the end of ``log`` in the message so a CI failure says why."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(interval)
    tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
    exited = f" (the process exited with {proc.returncode})" if proc is not None and proc.poll() is not None else ""
    raise AssertionError(f"timed out waiting for {what}{exited}\n{tail}")


def omnify_command() -> list[str]:
    """`omnify`, as the README runs it: the console script of this environment."""
    script = Path(sys.executable).parent / "omnify"
    return [str(script)] if script.exists() else [sys.executable, "-m", "omnify.cli"]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any OMNIFY_* setting of the caller's shell, plus ``extra``.
    The test harness's own knobs (OMNIFY_TEST_*, e.g. the clock moved ahead) are kept: a
    process the tests start must live in the same calendar as the tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIFY_") or k.startswith("OMNIFY_TEST_")}
    env.update(extra)
    return env


@dataclass
class Up:
    """A running `omnify up`: where it answers, its process (group leader) and its log."""

    origin: str
    proc: subprocess.Popen[bytes]
    log: Path
    data_dir: Path

    @property
    def api(self) -> str:
        return f"{self.origin}/api/v1"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.origin}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def demo_login(self) -> dict[str, str]:
        """Bearer headers of the demo user (credentials from the data directory)."""
        import json

        creds = json.loads((self.data_dir / "demo-credentials.json").read_text())
        login = httpx.post(f"{self.api}/auth/login", json=creds, timeout=30)
        assert login.status_code == 200, login.text
        return {"Authorization": f"Bearer {login.json()['access_token']}"}


def stop_up(proc: subprocess.Popen[bytes], sig: int = signal.SIGINT, grace: float = 30.0) -> None:
    """Ctrl-C (or ``sig``) to the whole group, SIGKILL whatever is left after ``grace`` s."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # children the leader left behind, if any
    if proc.poll() is None:
        proc.wait(10)


@contextmanager
def omnify_up(data_dir: Path, env: dict[str, str] | None = None, port: int | None = None, *,
              via: str = "env", args: tuple[str, ...] = (), ready_timeout: float = 300.0,
              log: Path | None = None) -> Iterator[Up]:
    """`omnify up` on a free port (its own process group), ready (``/readyz`` 200) when yielded.

    ``via`` says how the data directory is given: ``"env"`` (OMNIFY_DATA_DIR), ``"flag"``
    (``--data-dir``, run from another folder) or ``"default"`` (no setting at all: run in
    ``data_dir``'s parent, whose name must be the default ``.omnify``). ``env`` is added to
    the caller's environment stripped of OMNIFY_* settings. Stopped with Ctrl-C, then SIGKILL.
    """
    port = port or free_port()
    env = clean_env(OMNIFY_PUBLIC_BASE_URL=f"http://{LOOPBACK}:{port}", **(env or {}))
    cmd = [*omnify_command(), "up", "--port", str(port), *args]
    cwd = data_dir.parent
    if via == "env":
        env["OMNIFY_DATA_DIR"] = str(data_dir)
    elif via == "flag":
        cmd += ["--data-dir", str(data_dir)]
        cwd = data_dir.parent / "elsewhere"
        cwd.mkdir(exist_ok=True)
    elif via == "default":
        assert data_dir.name == ".omnify", "the default data directory is ./.omnify"
    else:
        raise ValueError(via)
    log = log or data_dir.parent / f"up-{data_dir.name.strip('.') or 'omnify'}-{port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    up = Up(f"http://{LOOPBACK}:{port}", proc, log, data_dir)
    try:
        wait_for(up.ready, ready_timeout, "`omnify up` to be ready (/readyz 200)", proc=proc, log=log)
        yield up
    finally:
        stop_up(proc)
        _kill_children_left(log)


def _kill_children_left(log: Path) -> None:
    """`up` runs its worker and beat in their own process groups: should `up` die without
    stopping them (the bug this guards against in the tests), they must not outlive the test."""
    import re

    text = log.read_text(errors="replace") if log.exists() else ""
    pids = {int(p) for p in re.findall(r"Worker: +pid (\d+), beat pid (\d+)", text) for p in p}
    pids |= {int(p) for p in re.findall(r'"event": "up\.child_restarted"|"pid": (\d+), "restarts"', text) if p}
    for pid in pids:
        with contextlib.suppress(OSError):
            # Only a process of ours (the pid may have been reused since).
            if b"omnify.cli" in Path(f"/proc/{pid}/cmdline").read_bytes() and os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
