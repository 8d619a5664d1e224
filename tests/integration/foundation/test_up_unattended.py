"""`omnify up` does its job on its own (issue 14, done-when line 2).

Started as the README says (`omnify up`, on a fresh default data directory, and once with
`--data-dir`), with nothing called by hand but the API a user would call, within 120 s:

* a webhook endpoint created through the API at an allowed 127.0.0.1 receiver that answers
  503 once gets the event again after the forced 503, with a valid Standard Webhooks signature;
* the beat's scheduled brain sweep has run for the demo organization and its recommendations
  are listed by the API;
* a sync requested with ``POST .../connections/{platform}/sync`` has run to the end;
* with the embedded broker file locked by another process for longer than the broker's busy
  timeout (so publishing and consuming really fail), publishing resumes by itself: an event
  raised during the lock and one raised after it both reach the receiver.

With `--data-dir`, the API and the worker must use the same broker file (the API used to
publish to ./.omnify/broker.db, so the requested sync never ran).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.conftest import is_postgres
from tests.servers import LOOPBACK, Up, omnify_up, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(is_postgres(), reason="`omnify up` is the embedded (SQLite) default; run once"),
]

BUDGET_S = 120.0
BUSY_TIMEOUT_MS = 2000


@dataclass
class Hit:
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class FlakyReceiver:
    """A webhook consumer that answers 503 to the first try of every message, then 200."""

    url: str = ""
    hits: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def delivered(self) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.status == 200]

    def created(self, company_name: str) -> list[Hit]:
        """Delivered ``client.created`` events of the client named so."""
        return [h for h in self.delivered() if json.loads(h.body)["type"] == "client.created"
                and json.loads(h.body)["data"]["company_name"] == company_name]


@pytest.fixture
def receiver() -> Iterator[FlakyReceiver]:
    state = FlakyReceiver()
    tries: dict[str, int] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            with state.lock:
                msg = headers.get("webhook-id", "?")
                tries[msg] = tries.get(msg, 0) + 1
                status = 503 if tries[msg] == 1 else 200
                state.hits.append(Hit(headers, body, status))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    httpd = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://{LOOPBACK}:{httpd.server_address[1]}/hooks"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


def _get(up: Up, path: str, auth: dict[str, str], **params: Any) -> Any:
    response = httpx.get(f"{up.api}{path}", headers=auth, params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def _hold_broker_lock(broker: Path, seconds: float) -> None:
    """Another process's write lock on the broker file: ``BEGIN EXCLUSIVE`` held ``seconds``."""
    conn = sqlite3.connect(broker, timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        time.sleep(seconds)
        conn.execute("ROLLBACK")
    finally:
        conn.close()


@pytest.mark.parametrize("via", ["default", "flag"])
def test_omnify_up_delivers_webhooks_runs_the_brain_and_syncs_unattended(
        tmp_path: Path, receiver: FlakyReceiver, via: str) -> None:
    data_dir = tmp_path / ".omnify" if via == "default" else tmp_path / "data"
    env = {"OMNIFY_LOG_LEVEL": "WARNING", "OMNIFY_WEBHOOK_ALLOWED_HOSTS": LOOPBACK,
           "OMNIFY_JOBS_EMBEDDED_BUSY_TIMEOUT_MS": str(BUSY_TIMEOUT_MS)}
    with omnify_up(data_dir, env, via=via) as up:
        started = time.monotonic()
        deadline = started + BUDGET_S

        def within_budget(predicate: Any, what: str) -> None:
            wait_for(predicate, max(deadline - time.monotonic(), 1.0), f"{what} (within {BUDGET_S:.0f} s)",
                     interval=1.0, proc=up.proc, log=up.log)

        auth = up.demo_login()
        org_id = _get(up, "/me", auth)["memberships"][0]["org_id"]
        org = f"/orgs/{org_id}"

        endpoint = httpx.post(f"{up.api}{org}/webhook-endpoints", headers=auth, timeout=30,
                              json={"url": receiver.url, "event_types": ["client.created"]})
        assert endpoint.status_code == 201, endpoint.text
        secret = endpoint.json()["secret"]

        created = httpx.post(f"{up.api}{org}/clients", headers=auth, timeout=30,
                             json={"company_name": "Unattended Co"})
        assert created.status_code == 201, created.text

        clients = _get(up, f"{org}/clients", auth)["items"]
        conn = None
        for client in clients:
            for c in _get(up, f"{org}/clients/{client['id']}/connections", auth):
                if c["status"] == "connected" and c.get("selected_account_ids"):
                    conn = (client["id"], c["platform"])
                    break
            if conn:
                break
        assert conn is not None, "the demo has no connected sandbox connection"
        sync_base = f"{org}/clients/{conn[0]}/connections/{conn[1]}"
        requested = httpx.post(f"{up.api}{sync_base}/sync", headers=auth, timeout=30)
        assert requested.status_code == 202, requested.text

        # 1. The webhook, after one forced 503, with a valid signature.
        within_budget(lambda: receiver.created("Unattended Co"), "the client.created webhook")
        figures = {"webhook_s": time.monotonic() - started}
        [hit] = receiver.created("Unattended Co")
        Webhook(secret).verify(hit.body, hit.headers)
        tries = [h.status for h in receiver.hits if h.headers["webhook-id"] == hit.headers["webhook-id"]]
        assert tries == [503, 200]

        # 2. The sync requested through the API has run to the end.
        def manual_run_finished() -> bool:
            runs = _get(up, f"{sync_base}/runs", auth)["items"]
            return any(r["trigger"] == "manual" and r["finished_at"] and r["status"] == "succeeded" for r in runs)

        within_budget(manual_run_finished, "the requested sync to finish")
        figures["sync_s"] = time.monotonic() - started

        # 3. A scheduled brain run, and its recommendations through the API.
        def scheduled_brain_run() -> list[dict[str, Any]]:
            runs = []
            for client in clients:
                items = _get(up, f"{org}/clients/{client['id']}/brain-runs", auth)["items"]
                runs += [r for r in items if r["trigger"] == "schedule" and r["finished_at"]]
            return runs

        within_budget(scheduled_brain_run, "a scheduled brain run")
        run_ids = {r["id"] for r in scheduled_brain_run()}
        recommendations = _get(up, f"{org}/recommendations", auth, limit=200)["items"]
        assert recommendations, "the demo organization has no recommendations"
        assert {r["brain_run_id"] for r in recommendations} & run_ids or any(
            r["last_seen_at"] >= min(x["started_at"] for x in scheduled_brain_run()) for r in recommendations)
        figures["brain_s"] = time.monotonic() - started
        assert figures["brain_s"] < BUDGET_S

        # 4. Lock the broker file past the busy timeout; events raised during and after the lock
        #    still arrive, with nobody restarting anything.
        broker = data_dir / "broker.db"
        locker = threading.Thread(target=_hold_broker_lock, args=(broker, 4 * BUSY_TIMEOUT_MS / 1000))
        locker.start()
        time.sleep(0.5)
        during = httpx.post(f"{up.api}{org}/clients", headers=auth, timeout=60, json={"company_name": "During Lock"})
        assert during.status_code == 201, during.text
        locker.join()
        released = time.monotonic()
        after = httpx.post(f"{up.api}{org}/clients", headers=auth, timeout=30, json={"company_name": "After Lock"})
        assert after.status_code == 201, after.text
        wait_for(lambda: receiver.created("During Lock") and receiver.created("After Lock"), 90,
                 "the webhooks of events raised during and after the broker lock", interval=1.0, proc=up.proc,
                 log=up.log)
        assert "jobs.broker_error" in up.output(), "the lock caused no broker error: the test proved nothing"
        figures["after_lock_s"] = time.monotonic() - released
        print(f"omnify up ({via}): " + ", ".join(f"{k}={v:.1f}" for k, v in figures.items()))

    # API and worker used one broker file: the data directory's.
    assert broker.exists()
    stray = list(tmp_path.rglob("broker.db"))
    assert stray == [broker], stray
