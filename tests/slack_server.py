"""A local HTTP server that stands in for Slack and Teams in tests (never the real services).

* ``/api/<method>``: the Slack Web API methods Omnify calls (``oauth.v2.access``,
  ``conversations.list``, ``chat.postMessage``), answering in Slack's shapes; every call is
  recorded with its headers and decoded body.
* ``/hooks/<name>``: an incoming-webhook receiver (Slack's or a Teams workflow's).

Answers can be scripted per path (status, body, headers) to play 429 with Retry-After,
``{"ok": false}`` or a 500; unscripted calls get Slack's normal success.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

TEAM = {"id": "T0OMNIFY", "name": "Omnify Test Workspace"}
BOT_TOKEN = "xoxb-test-bot-token-0123456789"
INSTALLER = "U0INSTALLER"
CHANNELS = [{"id": "C0ALERTS", "name": "acme-alerts", "is_private": False},
            {"id": "C0OPS", "name": "ops", "is_private": True}]


@dataclass
class Call:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class SlackServer:
    url: str = ""
    calls: list[Call] = field(default_factory=list)
    script: dict[str, list[tuple[int, bytes, dict[str, str]]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def queue(self, path: str, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        with self.lock:
            self.script.setdefault(path, []).append((status, raw, headers or {}))

    def posted(self, path: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.path == path]


def _answer(path: str, form: dict[str, Any]) -> Any:
    if path == "/api/oauth.v2.access":
        if form.get("code") != "good-code":
            return {"ok": False, "error": "invalid_code"}
        return {"ok": True, "access_token": BOT_TOKEN, "token_type": "bot", "scope": "chat:write,channels:read",
                "bot_user_id": "U0BOT", "app_id": "A0APP", "team": TEAM, "authed_user": {"id": INSTALLER}}
    if path == "/api/conversations.list":
        return {"ok": True, "channels": CHANNELS, "response_metadata": {"next_cursor": ""}}
    if path == "/api/chat.postMessage":
        return {"ok": True, "channel": form.get("channel"), "ts": "1700000000.000100"}
    if path.startswith("/hooks/"):
        return b"ok"
    return {"ok": False, "error": "unknown_method"}


def serve_slack() -> Iterator[SlackServer]:
    state = SlackServer()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            kind = self.headers.get("Content-Type", "")
            if "json" in kind:
                body: Any = json.loads(raw or b"{}")
            else:
                body = {k: v[-1] for k, v in parse_qs(raw.decode()).items()}
            with state.lock:
                state.calls.append(Call(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                scripted = state.script.get(self.path)
                answer = scripted.pop(0) if scripted else None
            if answer is None:
                out = _answer(self.path, body if isinstance(body, dict) else {})
                answer = (200, out if isinstance(out, bytes) else json.dumps(out).encode(), {})
            status, payload, headers = answer
            self.send_response(status)
            self.send_header("Content-Type", "text/plain" if self.path.startswith("/hooks/") else "application/json")
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
