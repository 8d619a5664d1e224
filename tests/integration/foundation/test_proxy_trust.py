"""Proxy trust (issue 14 item 10, issue 14 item 6): the client address comes from
X-Forwarded-For only when the peer is one of OMNIFY_TRUSTED_PROXIES, in the app and in
``omnify serve``'s uvicorn alike, so users behind the ingress get their own rate-limit
buckets and nobody else can choose an address.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse

from omnify.core.middleware import uvicorn_options
from omnify.settings import Settings
from tests.conftest import is_postgres, make_settings
from tests.factories import unique_email
from tests.servers import clean_env

LOGIN = "/api/v1/auth/login"
PROXY = "10.20.0.5"  # the ingress controller's pod


def _client(app: Any, peer: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(peer, 41000)), base_url="http://t")


@pytest.fixture
def proxied_app(db_urls, tmp_path, database) -> Any:  # type: ignore[no-untyped-def]
    from omnify.app import create_app

    settings = make_settings(tmp_path, db_urls, rate_limit_auth="10/minute", trusted_proxies=["10.20.0.0/16"])
    app = create_app(settings, database)

    async def whoami(request: Request) -> JSONResponse:
        return JSONResponse({"client": request.client.host if request.client else None,
                             "scheme": request.url.scheme})

    app.add_route("/__whoami__", whoami)
    return app


async def test_users_behind_the_proxy_get_their_own_buckets(proxied_app: Any) -> None:
    """12 users from 12 addresses through the ingress: nobody is refused (was 401 x10, 429 x2)."""
    async with _client(proxied_app, PROXY) as ingress:
        codes = [(await ingress.post(LOGIN, json={"email": unique_email(), "password": "not-their-password"},
                                     headers={"X-Forwarded-For": f"198.51.100.{i}"})).status_code for i in range(12)]
    assert codes == [401] * 12


async def test_a_client_cannot_pick_its_address(proxied_app: Any) -> None:
    """14 failed logins from 14 claimed addresses by a peer that is not a proxy: limited at 10."""
    async with _client(proxied_app, "192.0.2.44") as direct:
        codes = [(await direct.post(LOGIN, json={"email": unique_email(), "password": "not-their-password"},
                                    headers={"X-Forwarded-For": f"203.0.113.{i}"})).status_code for i in range(14)]
    assert codes == [401] * 10 + [429] * 4


async def test_right_most_untrusted_hop_is_the_client(proxied_app: Any) -> None:
    async with _client(proxied_app, PROXY) as ingress:
        seen = (await ingress.get("/__whoami__", headers={"X-Forwarded-For": "6.6.6.6, 198.51.100.9, 10.20.3.4",
                                                          "X-Forwarded-Proto": "https"})).json()
    assert seen == {"client": "198.51.100.9", "scheme": "https"}  # 6.6.6.6 was written by the client
    async with _client(proxied_app, "192.0.2.44") as direct:
        seen = (await direct.get("/__whoami__", headers={"X-Forwarded-For": "198.51.100.9",
                                                         "X-Forwarded-Proto": "https"})).json()
    assert seen == {"client": "192.0.2.44", "scheme": "http"}


def test_trusted_proxies_setting_is_validated() -> None:
    assert Settings(trusted_proxies="10.0.0.0/8, 192.0.2.1").trusted_proxies == ["10.0.0.0/8", "192.0.2.1"]
    for bad in ("ingress.local", "0.0.0.0/0"):
        with pytest.raises(ValueError, match="OMNIFY_TRUSTED_PROXIES"):
            Settings(trusted_proxies=bad)


def test_uvicorn_gets_exactly_the_configured_proxies() -> None:
    assert uvicorn_options(Settings(trusted_proxies=[])) == {
        "proxy_headers": False, "forwarded_allow_ips": None, "timeout_keep_alive": 75}
    assert uvicorn_options(Settings(trusted_proxies="10.0.0.0/8,192.0.2.1", http_keep_alive_seconds=120)) == {
        "proxy_headers": True, "forwarded_allow_ips": "10.0.0.0/8,192.0.2.1", "timeout_keep_alive": 120}


def _get_on(sock: socket.socket, path: str) -> bytes:
    """One HTTP/1.1 GET on an open connection; the status line of the answer (b"" if closed)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: omnify\r\n\r\n".encode())
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        if not chunk:
            return b""
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    return head.split(b"\r\n")[0]


def _idle_connection_survives(port: int, idle_seconds: float) -> list[bytes]:
    """Two requests on one connection, ``idle_seconds`` apart."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        first = _get_on(sock, "/healthz")
        time.sleep(idle_seconds)
        try:
            second = _get_on(sock, "/healthz")
        except OSError as exc:
            second = f"error: {exc}".encode()
    return [first, second]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(is_postgres(), reason="the server's proxy handling does not depend on the database; run once")
def test_omnify_serve_does_not_trust_local_forwarded_for(tmp_path: Path) -> None:
    """uvicorn's default trusts X-Forwarded-For from 127.0.0.1: `omnify serve` must not."""
    env = clean_env()
    env.update(OMNIFY_DATA_DIR=str(tmp_path), OMNIFY_SECRET_KEY="s" * 48, OMNIFY_LOG_LEVEL="WARNING",
               OMNIFY_RATE_LIMIT_AUTH="5/minute")
    subprocess.run([sys.executable, "-m", "omnify.cli", "migrate", "up"], env=env, check=True, capture_output=True,
                   timeout=120)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "omnify.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, "omnify serve exited"
            assert time.monotonic() < deadline, "omnify serve did not start within 60 s"
            time.sleep(0.2)
        with httpx.Client(base_url=base, timeout=30) as c:
            codes = [c.post(LOGIN, json={"email": unique_email(), "password": "not-their-password"},
                            headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code for i in range(7)]
        # Idle past uvicorn's default keep-alive (5 s), the connection is still served: the
        # ingress (60 s upstream idle timeout), not the app, closes idle connections.
        kept_alive = _idle_connection_survives(port, 6.5)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert codes == [401] * 5 + [429] * 2
    assert kept_alive == [b"HTTP/1.1 200 OK"] * 2, kept_alive
