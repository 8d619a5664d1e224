"""Fixtures for the webhook tests: a real receiving HTTP(S) server and recorded nudges."""

from __future__ import annotations

import ipaddress
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from omnify.notifications import dispatch
from tests.certs import self_signed


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    host: str


@dataclass
class Receiver:
    """A webhook consumer that fails the first ``fail_first`` tries of each message."""

    port: int = 0
    scheme: str = "http"
    fail_first: int = 0
    always_fail: bool = False
    fail_status: int = 500
    hits: list[Hit] = field(default_factory=list)
    tries: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/hooks", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def decide(self, msg_id: str) -> int:
        with self.lock:
            self.tries[msg_id] = self.tries.get(msg_id, 0) + 1
            if self.always_fail or self.tries[msg_id] <= self.fail_first:
                return self.fail_status
            return 200

    def successes(self) -> dict[str, Hit]:
        """The last successful hit per webhook-id."""
        out: dict[str, Hit] = {}
        for hit in self.hits:
            if hit.headers.get("x-outcome") == "200":
                out[hit.headers["webhook-id"]] = hit
        return out


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            status = receiver.decide(headers.get("webhook-id", "?"))
            headers["x-outcome"] = str(status)
            with receiver.lock:
                receiver.hits.append(Hit(self.path, headers, body, headers.get("host", "")))
            payload = b"ok" if status == 200 else b"receiver error " + b"x" * 4000
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


def _serve(receiver: Receiver, context: ssl.SSLContext | None = None) -> Iterator[Receiver]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
        receiver.scheme = "https"
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from _serve(Receiver())


TLS_HOST = "hooks.example.test"


@dataclass
class TlsMaterial:
    cert_pem: bytes
    key_path: Path
    cert_path: Path

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.cert_pem.decode())


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    """A self-signed certificate for TLS_HOST only (not for 127.0.0.1)."""
    cert_path, key_path, cert_pem = self_signed(tmp_path_factory.mktemp("tls"), TLS_HOST, x509.DNSName(TLS_HOST))
    assert ipaddress.ip_address("127.0.0.1")
    return TlsMaterial(cert_pem, key_path, cert_path)


@pytest.fixture
def tls_receiver(tls_material: TlsMaterial) -> Iterator[Receiver]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_material.cert_path, tls_material.key_path)
    yield from _serve(Receiver(), context)


@pytest.fixture(autouse=True)
def nudges() -> Iterator[list[tuple[str, dict[str, Any], float | None]]]:
    """Record the after-commit task nudges instead of publishing them to a broker."""
    calls: list[tuple[str, dict[str, Any], float | None]] = []
    previous = dispatch.set_enqueuer(lambda name, kwargs, countdown: calls.append((name, kwargs, countdown)))
    yield calls
    dispatch.set_enqueuer(previous)
