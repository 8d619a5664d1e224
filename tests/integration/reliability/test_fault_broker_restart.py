"""The job broker stopped and started under load (RabbitMQ, and Redis as the broker): the API
keeps accepting writes, nothing they queued is lost, the worker and beat reconnect by
themselves, and every job runs exactly once.

What goes through the broker here is webhook delivery, the product's outbox path end to end:

- ``POST /clients`` writes the client and a ``client.created`` domain event in one
  transaction (the outbox); beat's ``omnify.webhooks.dispatch_events`` turns pending events
  into delivery rows, whose ``deliver`` tasks the worker publishes after its commit;
- ``POST /webhook-endpoints/{id}/test`` writes a delivery row and the API itself publishes its
  ``deliver`` task after the commit (best effort: kombu's retry policy, off the event loop);
- a lost publish is found again by beat's ``omnify.webhooks.redeliver_due`` sweep (every due
  delivery row), and a delivery is claimed with a lease before its HTTP call, so a task
  published twice sends once.

The effect of a job is a POST to a local receiver (tests/webhook_receiver.py), so "ran once"
is counted where it matters: one hit per acknowledged write, no hit twice (``webhook-id``).

Every server is the test's own: a scratch broker (``redis-server`` without persistence, so it
comes back empty and every message it held is gone; or a RabbitMQ node with durable queues,
stopped with SIGTERM), a fresh PostgreSQL database, and ``omnify serve``, ``omnify worker``
and ``omnify beat`` as separate processes, as deployed. Beat's two webhook sweeps run every
2 and 5 s instead of 10 and 15 s, so the test's bounds stay short.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx
import pytest
from sqlalchemy import create_engine, text

from omnify.core import migrate
from omnify.core.migrate import sync_url
from tests.conftest import (
    APP_ROLE,
    DatabaseUrls,
    _server_url,
    create_pg_database,
    drop_pg_database,
    is_postgres,
    make_settings,
)
from tests.reliability import Outcome, Tally, register_org, write_figures
from tests.scratch_services import ScratchRabbitMQ, ScratchRedis
from tests.servers import LOOPBACK, clean_env, free_port, omnify_command, running, stop_process
from tests.webhook_receiver import HookReceiver, Received, hook_receiver

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not is_postgres(), reason="runs in the PostgreSQL pass only: an external broker is "
                                                 "deployed with PostgreSQL, and the broker fault does not "
                                                 "depend on the database (the embedded default has no "
                                                 "broker server to stop)"),
]

CLIENT_WRITERS = 1
TEST_EVENT_WRITERS = 1
#: Seconds the worker and beat may take to start and run the first jobs.
WARM_UP_BOUND_SECONDS = 90.0
FAULT_AFTER_SECONDS = 3.0
#: From the broker stopped to its start command (its boot adds to the outage: RabbitMQ's
#: takes 5-13 s on a loaded 2-CPU runner, Redis' a few milliseconds).
OUTAGE_SECONDS = 4.0
#: The load goes on this long after the broker answers again.
AFTER_SECONDS = 3.0
#: The load stops by this many seconds at the latest, whatever happened.
LOAD_CAP_SECONDS = 45.0
#: Each writer pauses this long between writes: a steady load that a 2-process worker on a
#: busy 2-CPU runner keeps up with (a delivery task takes 0.2-0.8 s there), so what the test
#: measures is the fault, not a backlog.
WRITE_PAUSE_SECONDS = 1.0
REQUEST_TIMEOUT_SECONDS = 10.0
#: Seconds from the broker answering again to the first job run.
RECOVERY_BOUND_SECONDS = 15.0
#: Seconds after the load ended by which every acknowledged write's job must have run.
DRAIN_BOUND_SECONDS = 30.0
#: Watched after the last expected job ran, for a late second run.
QUIET_SECONDS = 2.0
BEAT_SCHEDULE = {"omnify.webhooks.dispatch_events": {"every": 2}, "omnify.webhooks.redeliver_due": {"every": 5}}


class Broker(Protocol):
    url: str

    def start(self, timeout: float = ...) -> None: ...

    def stop(self) -> None: ...


@contextlib.contextmanager
def scratch_broker(kind: str, root: Path) -> Iterator[tuple[Broker, concurrent.futures.Future[None]]]:
    """The broker, and its start running in a thread: the API, worker and beat boot meanwhile
    (RabbitMQ's boot takes 5-13 s on a busy runner; the worker retries its connection)."""
    broker: ScratchRedis | ScratchRabbitMQ
    if kind == "redis":
        broker = ScratchRedis(root)
    else:
        (root / "rabbitmq").mkdir()
        broker = ScratchRabbitMQ(root / "rabbitmq")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        started = pool.submit(broker.start)
        try:
            yield broker, started
        finally:
            with contextlib.suppress(Exception):
                started.result()
            broker.stop()


@pytest.fixture(scope="module")
def fresh_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseUrls]:
    """A database of this module's own, migrated: the beat's sweeps walk every organization,
    and the suite's database holds every earlier test's undispatched events."""
    server = _server_url()
    assert server is not None
    owner, app = create_pg_database(server, prefix="omnify_broker_fault")
    urls = DatabaseUrls(owner=owner, app=app, dialect="postgresql")
    try:
        migrate.upgrade(make_settings(tmp_path_factory.mktemp("broker-fault-migrate"), urls))
        yield urls
    finally:
        drop_pg_database(server, owner)


def _env(urls: DatabaseUrls, broker_url: str, data_dir: Path) -> dict[str, str]:
    return clean_env(
        OMNIFY_DATA_DIR=str(data_dir), OMNIFY_SECRET_KEY="fault-" + "b" * 42, OMNIFY_LOG_LEVEL="INFO",
        OMNIFY_DATABASE_URL=urls.app, OMNIFY_MIGRATION_DATABASE_URL=urls.owner, OMNIFY_DB_APP_ROLE=APP_ROLE,
        OMNIFY_BROKER_URL=broker_url, OMNIFY_WEBHOOK_ALLOWED_HOSTS=LOOPBACK,
        OMNIFY_RATE_LIMIT_USER="100000/minute", OMNIFY_RATE_LIMIT_ORG="100000/minute",
        OMNIFY_RATE_LIMIT_AUTH="1000/minute",
        OMNIFY_JOBS_BEAT_SCHEDULE=json.dumps(BEAT_SCHEDULE), OMNIFY_JOBS_METRICS_PORT="0",
        OMNIFY_JOBS_QUEUE_DEPTH_INTERVAL="5",
    )


@contextlib.contextmanager
def background(cmd: list[str], log: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """A process in its own session (stopping it stops its pool children too)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        yield proc
    finally:
        stop_process(proc)


@dataclass
class Load:
    """Writers whose every write queues one job; acknowledged writes are remembered with the
    webhook event id (test events) or client id (creations) their job will carry."""

    api: str
    headers: dict[str, str]
    org_id: str
    endpoint_id: str
    tally: Tally
    cap: float
    clients: dict[str, float] = field(default_factory=dict)  # client id -> acknowledged at
    test_events: dict[str, float] = field(default_factory=dict)  # event id -> acknowledged at

    def going(self) -> bool:
        """Until AFTER_SECONDS past the broker's return (or the cap)."""
        now = time.monotonic()
        back = self.tally.restored_at
        return now < self.cap and (back is None or now < back + AFTER_SECONDS)

    async def _call(self, client: httpx.AsyncClient, kind: str, url: str,
                    body: dict[str, object] | None = None) -> tuple[Outcome, httpx.Response | None]:
        sent = time.monotonic()
        try:
            resp = await client.post(url, json=body)
        except httpx.TimeoutException:
            return self.tally.add(kind, None, sent, "timeout"), None
        except httpx.TransportError as exc:
            return self.tally.add(kind, None, sent, f"transport:{type(exc).__name__}"), None
        return self.tally.add(kind, resp, sent), resp

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.api, headers=self.headers, timeout=REQUEST_TIMEOUT_SECONDS)

    async def warm_up(self) -> None:
        async with self._client() as client:
            outcome, resp = await self._call(client, "create", f"/orgs/{self.org_id}/clients",
                                             {"company_name": "Broker warm-up"})
            assert outcome.ok and resp is not None, outcome
            self.clients[resp.json()["id"]] = outcome.done
            outcome, resp = await self._call(client, "test-event",
                                             f"/orgs/{self.org_id}/webhook-endpoints/{self.endpoint_id}/test")
            assert outcome.ok and resp is not None, outcome
            self.test_events[resp.json()["event_id"]] = outcome.done
        self.tally.outcomes.clear()

    async def client_writer(self, n: int) -> None:
        async with self._client() as client:
            i = 0
            while self.going():
                i += 1
                outcome, resp = await self._call(client, "create", f"/orgs/{self.org_id}/clients",
                                                 {"company_name": f"Broker {n}-{i} {uuid.uuid4().hex[:6]}"})
                if outcome.ok and resp is not None:
                    self.clients[resp.json()["id"]] = outcome.done
                await asyncio.sleep(WRITE_PAUSE_SECONDS)

    async def test_event_writer(self) -> None:
        async with self._client() as client:
            while self.going():
                outcome, resp = await self._call(client, "test-event",
                                                 f"/orgs/{self.org_id}/webhook-endpoints/{self.endpoint_id}/test")
                if outcome.ok and resp is not None:
                    self.test_events[resp.json()["event_id"]] = outcome.done
                await asyncio.sleep(WRITE_PAUSE_SECONDS)


def _job_key(hit: Received) -> str:
    """What an acknowledged write is matched on: the client id of a ``client.created``
    event, the event id (``webhook-id``) of a test event."""
    body = json.loads(hit.body)
    if body["type"] == "client.created":
        return f"client:{body['data']['client_id']}"
    return f"event:{hit.headers['webhook-id']}"


async def _fault(broker: Broker, tally: Tally, origin: str, readiness: list[int]) -> None:
    await asyncio.sleep(FAULT_AFTER_SECONDS)
    await asyncio.to_thread(broker.stop)
    tally.fault_at = time.monotonic()  # from here nothing can reach the broker
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_SECONDS) as probe:
        readiness.append((await probe.get(f"{origin}/readyz")).status_code)
    await asyncio.sleep(OUTAGE_SECONDS)
    tally.restarting_at = time.monotonic()
    await asyncio.to_thread(broker.start)  # accepts clients when it returns
    tally.restored_at = time.monotonic()


def _deliveries(urls: DatabaseUrls, org_id: str) -> list[tuple[str, int]]:
    engine = create_engine(sync_url(urls.owner))
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT status, attempts FROM webhook_deliveries WHERE org_id = :o"),
                                {"o": org_id}).all()
    finally:
        engine.dispose()
    return [(str(r[0]), int(r[1])) for r in rows]


def _set_plan(urls: DatabaseUrls, org_id: str) -> None:
    engine = create_engine(sync_url(urls.owner))
    try:
        with engine.begin() as conn:  # room for every client the load creates (the free plan allows 10)
            conn.execute(text("UPDATE organizations SET plan = 'enterprise' WHERE id = :o"), {"o": org_id})
    finally:
        engine.dispose()


@pytest.mark.parametrize("broker_kind", ["redis", "rabbitmq"])
async def test_broker_restart_under_load(broker_kind: str, fresh_db: DatabaseUrls, tmp_path: Path) -> None:
    omnify = omnify_command()
    began = time.monotonic()
    with scratch_broker(broker_kind, tmp_path) as (broker, broker_started), hook_receiver() as receiver:
        env = _env(fresh_db, broker.url, tmp_path / "data")
        port = free_port()
        origin = f"http://{LOOPBACK}:{port}"
        # Worker and beat boot while the API does (each takes seconds on a busy runner).
        with background([*omnify, "worker", "--concurrency", "2"], tmp_path / "worker.log", env) as worker, \
                background([*omnify, "beat"], tmp_path / "beat.log", env) as beat, \
                running([*omnify, "serve", "--port", str(port)], f"{origin}/healthz", tmp_path / "serve.log",
                        timeout=90, env=env):
            broker_started.result(timeout=90)
            async with httpx.AsyncClient(base_url=f"{origin}/api/v1", timeout=60) as setup:
                org_id, headers = await register_org(setup, f"broker-{broker_kind}")
                _set_plan(fresh_db, org_id)
                setup.headers.update(headers)
                resp = await setup.post(f"/orgs/{org_id}/webhook-endpoints", json={
                    "url": receiver.url, "event_types": ["client.created"]})
                assert resp.status_code == 201, resp.text
                endpoint_id = resp.json()["id"]

            tally = Tally()
            load = Load(f"{origin}/api/v1", headers, org_id, endpoint_id, tally,
                        time.monotonic() + LOAD_CAP_SECONDS)
            # Warm-up: one job of each path has run, so the worker and beat are consuming and
            # publishing before the fault (their start is not counted as recovery).
            await load.warm_up()
            warm = {f"client:{c}" for c in load.clients} | {f"event:{e}" for e in load.test_events}
            assert await _drain(receiver, warm, time.monotonic() + WARM_UP_BOUND_SECONDS) is not None, (
                f"no job ran within {WARM_UP_BOUND_SECONDS} s of the start:\n{_tails(tmp_path)}")
            tally.started = time.monotonic()
            warm_up_seconds = tally.started - began
            load.cap = tally.started + LOAD_CAP_SECONDS
            readiness: list[int] = []
            await asyncio.gather(*(load.client_writer(n) for n in range(CLIENT_WRITERS)),
                                 *(load.test_event_writer() for _ in range(TEST_EVENT_WRITERS)),
                                 _fault(broker, tally, origin, readiness))
            load_ended = time.monotonic()
            expected = {f"client:{c}" for c in load.clients} | {f"event:{e}" for e in load.test_events}
            drained_at = await _drain(receiver, expected, load_ended + DRAIN_BOUND_SECONDS)
            await asyncio.sleep(QUIET_SECONDS)
            worker_alive, beat_alive = worker.poll() is None, beat.poll() is None
            deliveries = _deliveries(fresh_db, org_id)
        logs = {name: (tmp_path / f"{name}.log").read_text(errors="replace") for name in LOGS}

    hits = receiver.received()
    runs = Counter(_job_key(h) for h in hits)
    duplicates = sum(n - 1 for n in runs.values() if n > 1)
    lost = sorted(expected - set(runs))
    unexpected = sorted(set(runs) - expected)
    assert tally.fault_at and tally.restarting_at and tally.restored_at
    first_after = min((h.at for h in hits if h.at >= tally.restarting_at), default=None)
    during = tally.phase("during")
    failures = [o for o in tally.outcomes if not o.ok]
    acknowledged_during = [o for o in during if o.ok]
    statuses = Counter(status for status, _ in deliveries)
    figures = {
        "fault": f"{'RabbitMQ' if broker_kind == 'rabbitmq' else 'Redis'} broker stopped and started under load",
        "broker": broker_kind,
        "database": "postgresql",
        "clients": (f"{CLIENT_WRITERS} client creator + {TEST_EVENT_WRITERS} test-event sender, "
                    f"{WRITE_PAUSE_SECONDS} s between writes "
                    f"(httpx, {REQUEST_TIMEOUT_SECONDS:.0f} s timeout)"),
        "start_seconds": round(warm_up_seconds, 2),  # broker, API, worker and beat up, one job of each run
        "load_seconds": round(load_ended - tally.started, 2),
        "outage_seconds": round(tally.restored_at - tally.fault_at, 2),
        "stop_to_start_command_seconds": round(tally.restarting_at - tally.fault_at, 2),
        "restart_seconds": round(tally.restored_at - tally.restarting_at, 2),
        "requests": len(tally.outcomes),
        "statuses": tally.statuses(),
        "statuses_during_outage": tally.statuses(during),
        "hangs": sum(o.status == "timeout" for o in tally.outcomes),
        "max_latency_seconds": tally.latency_max(),
        "readyz_during_outage": readiness[0] if readiness else None,
        "writes_acknowledged": len(expected),
        "writes_acknowledged_during_outage": len(acknowledged_during),
        "jobs_enqueued": len(deliveries),
        "jobs_run": len(hits),
        "jobs_run_distinct": len(runs),
        "posts_cut_off": len(receiver.aborted),
        "duplicates": duplicates,
        "lost": len(lost),
        "deliveries_by_status": dict(sorted(statuses.items())),
        "delivery_attempts": sum(a for _, a in deliveries),
        "jobs_run_during_outage": sum(tally.fault_at <= h.at < tally.restarting_at for h in hits),
        "first_job_after_restart_seconds": (round(max(first_after - tally.restored_at, 0.0), 3)
                                            if first_after is not None else None),
        "all_jobs_run_after_restart_seconds": (round(drained_at - tally.restored_at, 2)
                                               if drained_at is not None else None),
        "worker_restarts": 0 if worker_alive else 1,
        "beat_restarts": 0 if beat_alive else 1,
        "broker_errors_logged": {name: text_.count('"jobs.broker_error"') for name, text_ in logs.items()},
    }
    path = write_figures(f"broker-restart-{broker_kind}", figures)
    print(f"\nBroker restart figures ({path}): {figures}")

    assert worker_alive and beat_alive, f"the worker or beat exited: {figures}\n{_tails(tmp_path)}"
    # The API serves through the outage, so it stays in rotation (degraded, not unready).
    assert figures["readyz_during_outage"] == 200, figures
    assert acknowledged_during, f"no write was acknowledged while the broker was down: {figures}"
    assert not failures, (f"non-2xx or no answer: {tally.statuses()} "
                          f"{[(o.kind, o.status, o.problem_type) for o in failures][:10]}\n{_tails(tmp_path)}")
    assert not lost, f"{len(lost)} acknowledged writes never ran their job, e.g. {lost[:5]}: {figures}\n{_tails(tmp_path)}"
    assert not unexpected, f"jobs ran for writes that were not acknowledged: {unexpected[:5]}"
    assert duplicates == 0, f"{duplicates} jobs ran more than once: {figures}"
    assert not receiver.aborted, f"{len(receiver.aborted)} deliveries were cut off mid-request: {figures}"
    assert statuses == {"succeeded": len(expected)} and figures["delivery_attempts"] == len(expected), (
        f"deliveries not each succeeded at their first attempt: {figures}")
    assert first_after is not None and first_after - tally.restored_at <= RECOVERY_BOUND_SECONDS, (
        f"no job ran within {RECOVERY_BOUND_SECONDS} s of the broker being back: {figures}\n{_tails(tmp_path)}")


LOGS = ("serve", "worker", "beat")


def _tails(tmp_path: Path) -> str:
    """The end of each process's log (without the per-request and per-task lines)."""
    noise = ('"http_request"', '"job.started"', '"job.succeeded"', "HTTP Request:", 'received", "level"',
             "succeeded in", '"webhook.attempt"', '"jobs.beat_sending"')
    out = []
    for name in LOGS:
        lines = (tmp_path / f"{name}.log").read_text(errors="replace").splitlines()
        kept = [line[:400] for line in lines if not any(n in line for n in noise)]
        out.append(f"--- {name}.log\n" + "\n".join(kept[-25:]))
    return "\n".join(out)


async def _drain(receiver: HookReceiver, expected: set[str], deadline: float) -> float | None:
    """Wait until a job has run for every key in ``expected``; when that happened, or None."""
    while True:
        seen = {_job_key(h) for h in receiver.received()}
        if expected <= seen:
            return max(h.at for h in receiver.received() if _job_key(h) in expected)
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(0.2)
