"""A real HTTP server that receives Omnify's webhooks, for the page tests (web and browser).

It answers ``status`` (200 unless a test changes it) and records every POST, so a test
checks what really arrived and can verify the signature with the secret the page showed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.servers import LOOPBACK


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    #: When it arrived (``time.monotonic()``), for tests that time recoveries.
    at: float = field(default_factory=time.monotonic)


@dataclass
class HookReceiver:
    url: str = ""
    status: int = 200
    hits: list[Received] = field(default_factory=list)
    #: POSTs whose sender went away before the whole body arrived (a real receiver cannot
    #: verify or use them, so they are not hits).
    aborted: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> list[Received]:
        with self.lock:
            return list(self.hits)


@contextmanager
def hook_receiver(path: str = "/omnify-hooks") -> Iterator[HookReceiver]:
    state = HookReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            received = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            if len(body) < length:
                with state.lock:
                    state.aborted.append(received)
                return  # nobody is left to answer
            with state.lock:
                state.hits.append(received)
                status = state.status
            answer = b"ok" if status < 300 else b"receiver says no"
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    state.url = f"http://{LOOPBACK}:{server.server_address[1]}{path}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
