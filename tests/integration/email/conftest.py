"""Real mail servers for the e-mail tests: aiosmtpd (SMTP), moto_server (SES), a Resend-shaped API."""

from __future__ import annotations

import ipaddress
import json
import ssl
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509

from omnify.notifications import dispatch
from tests import servers
from tests.certs import self_signed
from tests.servers import free_port


@pytest.fixture(autouse=True)
def no_broker() -> Iterator[list[tuple[str, dict[str, Any], float | None]]]:
    calls: list[tuple[str, dict[str, Any], float | None]] = []
    previous = dispatch.set_enqueuer(lambda name, kwargs, countdown: calls.append((name, kwargs, countdown)))
    yield calls
    dispatch.set_enqueuer(previous)


# --------------------------------------------------------------------------------- SMTP
@dataclass
class Mailbox:
    """What the SMTP server accepted, and how it should answer the next messages."""

    messages: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    temporary_failures: int = 0  # answer 451 to this many DATA commands first
    logins: list[str] = field(default_factory=list)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.startswith("bounce"):
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.temporary_failures > 0:
            self.temporary_failures -= 1
            return "451 4.3.0 Mailbox temporarily unavailable"
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 OK queued"


@dataclass
class SmtpServer:
    host: str
    port: int
    mailbox: Mailbox
    cert_pem: bytes | None = None


def _self_signed(directory: Path) -> tuple[Path, Path, bytes]:
    return self_signed(directory, "127.0.0.1", x509.IPAddress(ipaddress.ip_address("127.0.0.1")))


def _start(handler: Mailbox, **smtp_kwargs: Any) -> tuple[Controller, int]:
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **smtp_kwargs)
    controller.start()
    return controller, port


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    mailbox = Mailbox()
    controller, port = _start(mailbox)
    try:
        yield SmtpServer("127.0.0.1", port, mailbox)
    finally:
        controller.stop()


@pytest.fixture
def smtp_tls_server(tmp_path: Path) -> Iterator[SmtpServer]:
    """STARTTLS required, then AUTH (user ``omnify`` / password ``s3cret``)."""
    cert, key, pem = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    mailbox = Mailbox()

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login == b"omnify" and data.password == b"s3cret"
        if ok:
            mailbox.logins.append(data.login.decode())
        # handled=False: let the server answer 535 itself on failure.
        return AuthResult(success=ok, handled=False)

    controller, port = _start(mailbox, tls_context=context, require_starttls=True, authenticator=authenticate,
                              auth_required=True)
    try:
        yield SmtpServer("127.0.0.1", port, mailbox, pem)
    finally:
        controller.stop()


# ---------------------------------------------------------------------------------- SES
@dataclass
class Moto:
    url: str

    def raw_messages(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/moto-api/data.json", timeout=5) as resp:
            data = json.load(resp)
        messages: list[dict[str, Any]] = data.get("ses", {}).get("RawMessage", [])
        return messages


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    with servers.moto_server(tmp_path_factory.mktemp("moto-email")) as url:
        yield Moto(url)


# ------------------------------------------------------------------------------- Resend
@dataclass
class ResendApi:
    """A server speaking Resend's ``POST /emails`` (status scripted per call)."""

    port: int = 0
    statuses: list[int] = field(default_factory=list)
    requests: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def resend_api() -> Iterator[ResendApi]:
    api = ResendApi()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            api.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
            status = api.statuses.pop(0) if api.statuses else 200
            if self.path != "/emails":
                status = 404
            payload = ({"id": f"re_{len(api.requests)}"} if status == 200 else
                       {"statusCode": status, "name": "validation_error" if status == 422 else "rate_limit_exceeded",
                        "message": "scripted"})
            raw = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
