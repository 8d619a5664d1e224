"""A real HTTP server speaking the OpenAI chat-completions shape, for the idea provider.

Answers are queued per test (status, body); every request is recorded (path,
Authorization header, JSON body) so tests check what Omnify really sent.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class ChatServer:
    url: str = ""
    answers: list[tuple[int, bytes]] = field(default_factory=list)
    seen: list[dict[str, Any]] = field(default_factory=list)


def chat_answer(content: str) -> bytes:
    """A chat-completions response whose assistant message is ``content``."""
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()


def serve_chat() -> Iterator[ChatServer]:
    state = ChatServer()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.seen.append({"path": self.path, "auth": self.headers.get("Authorization"),
                               "body": json.loads(body)})
            status, payload = state.answers.pop(0) if state.answers else (500, b'{"error": "no answer queued"}')
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
