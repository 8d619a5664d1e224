"""A worker SIGKILLed mid-delivery: the webhook is sent again once, with the same id.

A real Celery worker process (embedded SQLite broker) makes the first attempt at a real
receiver, which holds that POST unanswered; the test SIGKILLs the worker (the whole
worker, then a new one is started, or only its pool child) while the POST is in flight.
The ``deliver`` message was acknowledged on receipt (``acks_late=False``): nothing but
the delivery row is left. The test then plays beat, sending the
``omnify.webhooks.redeliver_due`` sweep every :data:`SWEEP` s (15 s in production).

Expected (issue 20): once the dead attempt's lease lapses the sweep finds the delivery
due, the next claim logs the dead attempt as lost (the delivery log shows it, and it
counts toward the retry limit), and the second attempt succeeds. The receiver saw the
event twice with the same ``webhook-id`` (its de-duplication key) and answered once;
nothing is sent a third time. The bound (docs/webhooks.md, "A worker dies mid-delivery"):
from the kill, lease + one sweep interval + the task's run.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from omnify.core.context import Actor
from omnify.core.db import Database, bind_tenant, utcnow
from omnify.jobs.celery_app import create_celery_app
from omnify.settings import Settings
from omnify.webhooks import service
from omnify.webhooks.config import WebhookConfig
from omnify.webhooks.models import WebhookAttempt, WebhookDelivery
from tests.factories import Account
from tests.integration.jobs.jobs_testlib import JobsEnv, WorkerProcess, pool_child, until

pytestmark = [pytest.mark.slow]

#: The attempt's lease in the workers (OMNIFY_WEBHOOK_LEASE_SECONDS); 60 s by default.
LEASE = 8.0
#: Per-attempt HTTP timeout in the workers; the lease stays above timeout + 5 s (the
#: transport's hard deadline), as the default does.
TIMEOUT = 3.0
#: The test's beat: redeliver_due every this many seconds (15 s in production).
SWEEP = 2.0
#: The documented bound, compressed: lease + one sweep interval.
BOUND = LEASE + SWEEP
#: Slack for a loaded 2-CPU runner (broker polling, the task's own run), as the other
#: worker-crash tests allow.
MARGIN = 10.0
#: How long the receiver holds the first POST at most (the test kills the worker long before).
HOLD = 30.0
#: Settings the worker process needs to reach the suite's database and unseal secrets.
WORKER_SETTINGS = ("env", "database_url", "db_app_role", "secret_key", "public_base_url")


@dataclass
class Hit:
    headers: dict[str, str]
    body: bytes
    at: float
    answered: bool = False


@dataclass
class HoldingReceiver:
    """Holds the first POST of each webhook-id unanswered until :attr:`release` is set
    (its sender is killed meanwhile); answers every later one 200 at once."""

    url: str = ""
    hits: list[Hit] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> list[Hit]:
        with self.lock:
            return list(self.hits)


@pytest.fixture
def holding_receiver() -> Iterator[HoldingReceiver]:
    state = HoldingReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            hit = Hit(headers, body, time.monotonic())
            with state.lock:
                first = not any(h.headers.get("webhook-id") == headers.get("webhook-id") for h in state.hits)
                state.hits.append(hit)
            if first:
                state.release.wait(HOLD)
            try:
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
                self.wfile.flush()
                hit.answered = not first  # the first one's sender is dead: nobody reads this
            except OSError:
                pass

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/crash"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def _secret(value: Any) -> str:
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)


def jobs_env(settings: Settings, tmp: Path) -> JobsEnv:
    extra = {f"OMNIFY_{name.upper()}": _secret(getattr(settings, name)) for name in WORKER_SETTINGS}
    extra.update(OMNIFY_WEBHOOK_ALLOWED_HOSTS="127.0.0.1", OMNIFY_WEBHOOK_LEASE_SECONDS=str(LEASE),
                 OMNIFY_WEBHOOK_TIMEOUT_SECONDS=str(TIMEOUT))
    if os.environ.get("OMNIFY_TEST_CLOCK_AHEAD_DAYS"):  # the worker lives on the suite's clock
        extra["OMNIFY_TEST_CLOCK_AHEAD_DAYS"] = os.environ["OMNIFY_TEST_CLOCK_AHEAD_DAYS"]
    return JobsEnv(broker="sqlite", broker_url=f"sqla+sqlite:///{(tmp / 'broker.db').resolve()}",
                   database_url=settings.database_url or "", data_dir=settings.data_dir,
                   queue=f"omnify-webhook-crash-{uuid.uuid4().hex[:8]}", extra_env=extra)


async def delivery_row(database: Database, org_id: str, delivery_id: uuid.UUID) -> WebhookDelivery:
    async with database.sessionmaker() as s:
        await bind_tenant(s, uuid.UUID(org_id))
        row = await s.scalar(select(WebhookDelivery).where(WebhookDelivery.id == delivery_id))
        assert row is not None
        return row


async def attempt_rows(database: Database, org_id: str, delivery_id: uuid.UUID) -> list[WebhookAttempt]:
    async with database.sessionmaker() as s:
        await bind_tenant(s, uuid.UUID(org_id))
        return list((await s.scalars(select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery_id)
                                     .order_by(WebhookAttempt.number))).all())


@pytest.fixture
async def quiet_sweep(owner_database: Database) -> AsyncIterator[None]:
    """Park the due deliveries that earlier tests of the session left in the suite's
    database (their receivers are gone) while this test runs, and put them back after:
    the sweep walks every organization, and a backlog of dead receivers queued ahead of
    the test's delivery on a one-process worker would measure the backlog, not the fault."""
    parked: list[tuple[uuid.UUID, datetime | None]] = []
    async with owner_database.sessionmaker() as s:
        rows = await s.execute(select(WebhookDelivery.id, WebhookDelivery.next_attempt_at)
                               .where(WebhookDelivery.status == "pending"))
        parked = [(r[0], r[1]) for r in rows]
        if parked:
            await s.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_([p[0] for p in parked]))
                            .values(next_attempt_at=utcnow() + timedelta(days=1)))
        await s.commit()
    yield
    async with owner_database.sessionmaker() as s:
        for delivery_id, next_attempt_at in parked:
            await s.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
                            .values(next_attempt_at=next_attempt_at))
        await s.commit()


@pytest.mark.parametrize("kill", ["worker", "child"])
async def test_delivery_redone_once_after_worker_sigkill(
    client: httpx.AsyncClient, owner: Account, database: Database, settings: Settings, tmp_path: Path,
    holding_receiver: HoldingReceiver, workers: list[WorkerProcess], quiet_sweep: None, kill: str,
) -> None:
    org = uuid.UUID(owner.org_id)
    async with database.sessionmaker() as s:
        await bind_tenant(s, org)
        endpoint, _secret_value = await service.create_endpoint(
            s, settings, WebhookConfig(allowed_hosts=frozenset({"127.0.0.1"})), org, Actor.system("test"),
            url=holding_receiver.url, description="crash", event_types=["client.created"], enabled=True)
        endpoint_id = endpoint.id
    async with database.sessionmaker() as s:
        await bind_tenant(s, org)
        ids = await service.fan_out(s, org, "client.created", {"client_id": str(uuid.uuid4())})
        await s.commit()  # its nudge is recorded by the suite's fixture, not published
    assert len(ids) == 1
    delivery_id = ids[0]

    jobs = jobs_env(settings, tmp_path)
    app = create_celery_app(jobs.settings(), jobs.jobs_settings())
    try:
        first = WorkerProcess(jobs, queue=jobs.queue, log_path=tmp_path / "worker-1.log")
        workers.append(first.start(timeout=60))
        app.send_task(service.DELIVER_TASK, queue=jobs.queue,
                      kwargs={"delivery_id": str(delivery_id), "org_id": owner.org_id})

        async def in_flight() -> bool:
            return len(holding_receiver.received()) == 1
        await until(in_flight, timeout=60, what="the first POST at the receiver")
        killed_at = time.monotonic()
        if kill == "child":
            dead_child = pool_child(first)
            os.kill(dead_child, signal.SIGKILL)  # a late-ack message would come back; this one is gone
            worker = first
        else:
            first.kill()
            worker = WorkerProcess(jobs, queue=jobs.queue, log_path=tmp_path / "worker-2.log")
        holding_receiver.release.set()  # its answer goes to a dead socket
        dead = await delivery_row(database, owner.org_id, delivery_id)
        assert (dead.status, dead.attempts) == ("pending", 0)
        assert dead.attempt_started_at is not None  # the claim recorded its attempt
        if kill == "worker":
            workers.append(worker.start(timeout=60))
        else:
            async def replaced() -> bool:
                try:
                    return pool_child(first) != dead_child
                except AssertionError:  # between the old child's death and the new one's fork
                    return False
            await until(replaced, timeout=60, what="the pool child replaced")
        # The bound runs from when a worker can take work again: restarting it is the
        # supervisor's part (measured by the up lifecycle tests), not the lease's.
        back_at = time.monotonic()
        bound = max(BOUND, back_at - killed_at + SWEEP)

        # The beat, compressed: the sweep queues every due delivery.
        async def redone() -> bool:
            app.send_task("omnify.webhooks.redeliver_due", queue=jobs.queue)
            deadline = time.monotonic() + SWEEP
            while time.monotonic() < deadline:
                if (await delivery_row(database, owner.org_id, delivery_id)).status != "pending":
                    return True
                await asyncio.sleep(0.1)
            return False
        await until(redone, timeout=bound + MARGIN, what="the delivery redone", interval=0)
        done_at = time.monotonic()
        # One more sweep and a pause: nothing is sent a third time.
        app.send_task("omnify.webhooks.redeliver_due", queue=jobs.queue)
        await asyncio.sleep(SWEEP)
    finally:
        app.close()

    delivery = await delivery_row(database, owner.org_id, delivery_id)
    assert (delivery.status, delivery.attempts, delivery.cycle_attempts) == ("succeeded", 2, 2)
    assert delivery.attempt_started_at is None
    log = await attempt_rows(database, owner.org_id, delivery_id)
    assert [(a.number, a.success) for a in log] == [(1, False), (2, True)]
    assert log[0].error is not None and log[0].error.startswith("attempt lost"), log[0].error
    assert log[0].duration_ms >= LEASE * 1000 * 0.9  # it ended when the lease lapsed, not before
    # The delivery log of the API shows the lost attempt.
    resp = await client.get(f"/api/v1/orgs/{owner.org_id}/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}",
                            headers=owner.headers)
    assert resp.status_code == 200, resp.text
    shown = {a["number"]: a for a in resp.json()["attempt_log"]}
    assert shown[1]["success"] is False and shown[1]["error"].startswith("attempt lost")
    assert shown[2]["success"] is True and shown[2]["status_code"] == 200

    hits = holding_receiver.received()
    assert len(hits) == 2, [h.headers.get("webhook-id") for h in hits]
    assert hits[0].headers["webhook-id"] == hits[1].headers["webhook-id"] == str(delivery.event_id)
    assert hits[0].body == hits[1].body
    assert [h.answered for h in hits] == [False, True]  # exactly one receipt acknowledged

    logged = worker.events()
    events = [e.get("event") for e in logged]
    assert "webhook.attempt_lost" in events, events
    # Other organizations' due deliveries the one-process worker attempted meanwhile (made
    # by tests running beside this one): a backlog ahead of ours shows here, not as a mystery.
    others = sum(1 for e in logged if e.get("event") == "webhook.attempt" and e.get("delivery_id") != str(delivery_id))
    figures = {"kill": kill, "lease_s": LEASE, "sweep_s": SWEEP, "bound_s": round(bound, 2),
               "worker_back_after_kill_s": round(back_at - killed_at, 2),
               "resent_after_kill_s": round(hits[1].at - killed_at, 2),
               "succeeded_after_kill_s": round(done_at - killed_at, 2), "other_attempts_meanwhile": others}
    print("webhook-crash-recovery", json.dumps(figures))
    assert hits[1].at - killed_at <= bound + MARGIN, figures
