"""Counting what clients see during a fault, and keeping the figures.

Fault tests (tests/integration/reliability/test_fault_*.py) drive a real server with a few
concurrent clients while a dependency goes down and comes back; every response is recorded here
with when it was sent and answered, so the assertions and the figures come from one tally.
Each test writes its figures as JSON under ``.artifacts/reliability/`` (or
``OMNIFY_RELIABILITY_DIR``); ``scripts/reliability-report.py`` turns those files into
docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]


async def register_org(setup: httpx.AsyncClient, label: str) -> tuple[str, dict[str, str]]:
    """Sign up through the served API (``setup`` has its ``/api/v1`` base URL): the new
    organization's id and the owner's bearer header."""
    from tests.factories import STRONG_PASSWORD, unique_email

    resp = await setup.post("/auth/register", json={
        "email": unique_email(label), "password": STRONG_PASSWORD, "name": f"{label.title()} Fault",
        "organization_name": f"{label.title()} fault org"})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    return str(body["organization"]["org_id"]), {"Authorization": f"Bearer {body['tokens']['access_token']}"}


def figures_dir() -> Path:
    return Path(os.environ.get("OMNIFY_RELIABILITY_DIR") or ROOT / ".artifacts" / "reliability")


def write_figures(name: str, figures: dict[str, Any]) -> Path:
    """Write ``figures`` (plus when and on which database) to ``<figures_dir>/<name>.json``."""
    out = figures_dir()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    body = {"name": name, "measured_at": datetime.now(UTC).isoformat(timespec="seconds"), **figures}
    path.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


@dataclass(frozen=True, slots=True)
class Outcome:
    """One request: ``status`` is the HTTP status, or ``timeout`` / ``transport`` when none came."""

    kind: str  # "write", "update", "read", ...
    status: int | str
    sent: float  # monotonic
    done: float
    problem_type: str = ""
    retry_after: str | None = None
    problem_json: bool = False
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return isinstance(self.status, int) and 200 <= self.status < 300


class Tally:
    """Every outcome of a load run, with the fault's moments (monotonic seconds)."""

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self.started = time.monotonic()
        self.fault_at: float | None = None  # the dependency went away
        self.restarting_at: float | None = None  # its start command was issued
        self.restored_at: float | None = None  # it answered again

    def add(self, kind: str, resp: httpx.Response | None, sent: float, error: str = "",
            keep_headers: tuple[str, ...] = ()) -> Outcome:
        done = time.monotonic()
        if resp is None:
            outcome = Outcome(kind, error, sent, done)
        else:
            is_problem = resp.headers.get("content-type", "").startswith("application/problem+json")
            problem_type = ""
            if is_problem:
                try:
                    problem_type = str(resp.json().get("type", ""))
                except ValueError:
                    problem_type = "<unparsable>"
            outcome = Outcome(kind, resp.status_code, sent, done, problem_type, resp.headers.get("retry-after"),
                              is_problem, {h: resp.headers[h] for h in keep_headers if h in resp.headers})
        self.outcomes.append(outcome)
        return outcome

    def statuses(self, outcomes: list[Outcome] | None = None) -> dict[str, int]:
        counts = Counter(str(o.status) for o in (self.outcomes if outcomes is None else outcomes))
        return dict(sorted(counts.items()))

    def phase(self, name: str) -> list[Outcome]:
        """``before`` the fault, ``during`` it (sent before the dependency's start command),
        ``restarting`` (sent while it started), ``after`` (sent once it answered)."""
        assert self.fault_at is not None and self.restarting_at is not None and self.restored_at is not None
        if name == "before":
            return [o for o in self.outcomes if o.sent < self.fault_at]
        if name == "during":
            return [o for o in self.outcomes if self.fault_at <= o.sent < self.restarting_at]
        if name == "restarting":
            return [o for o in self.outcomes if self.restarting_at <= o.sent < self.restored_at]
        if name == "after":
            return [o for o in self.outcomes if o.sent >= self.restored_at]
        raise ValueError(name)

    def recovery_seconds(self, predicate: Any = None) -> float | None:
        """Seconds from the dependency being back to the first answer (sent after that) that
        satisfies ``predicate`` (default: any 2xx)."""
        assert self.restored_at is not None
        check = predicate or (lambda o: o.ok)
        firsts = [o.done for o in self.outcomes if o.sent >= self.restored_at and check(o)]
        return round(min(firsts) - self.restored_at, 3) if firsts else None

    def latency_max(self) -> float:
        return round(max((o.done - o.sent for o in self.outcomes), default=0.0), 3)


class TcpRelay:
    """A TCP relay on a fixed loopback port in front of ``upstream`` (host, port), run on the
    test's event loop: the endpoint a service is configured with, which the test can kill
    (every open connection reset, the port refusing) and start again on the same port while
    the server behind it keeps its state. ``cut_after(n)`` kills it once ``n`` more bytes
    were relayed towards the upstream, i.e. in the middle of a request body."""

    def __init__(self, upstream: tuple[str, int], port: int, host: str = "127.0.0.1") -> None:
        self.upstream, self.host, self.port = upstream, host, port
        self._server: Any = None
        self._transports: set[Any] = set()
        self._cut_after: int | None = None
        self.relayed_up = 0
        self._drops = 0
        self.dropped = 0
        self.kills = 0
        self.killed = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self.killed = asyncio.Event()
        self._server = await asyncio.start_server(self._serve, self.host, self.port, reuse_address=True)

    def cut_after(self, nbytes: int) -> None:
        self._cut_after = self.relayed_up + nbytes

    def drop_responses(self, count: int) -> None:
        """Reset the connection instead of relaying each of the next ``count`` responses (the
        request reached the upstream; the client sees the connection drop without an answer)."""
        self._drops += count

    async def kill(self) -> None:
        """Stop listening and reset every open connection (RST, as a crashed process would)."""
        if self._server is None:
            return
        self._server.close()
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()
        await self._server.wait_closed()
        self._server = None
        self.kills += 1
        self.killed.set()

    async def _serve(self, reader: Any, writer: Any) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._transports |= {writer.transport, up_writer.transport}

        async def pipe(src: Any, dst: Any, upward: bool) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(64 * 1024):
                    if not upward and self._drops > 0:
                        self._drops -= 1
                        self.dropped += 1
                        writer.transport.abort()
                        up_writer.transport.abort()
                        return
                    dst.write(data)
                    await dst.drain()
                    if upward:
                        self.relayed_up += len(data)
                        if self._cut_after is not None and self.relayed_up >= self._cut_after:
                            self._cut_after = None
                            await self.kill()
                            return
            with contextlib.suppress(OSError):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))
        self._transports -= {writer.transport, up_writer.transport}
