"""Helpers for the jobs integration tests: real brokers, real worker processes, scratch DBs.

Imported by the test modules of this directory (pytest puts the directory on sys.path).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from omnify.core.db import Base
from omnify.jobs.config import JobsSettings
from omnify.jobs.db import create_sync_engine
from omnify.jobs.models import JobFailure, JobRun
from omnify.jobs.testing_tasks import test_metadata
from omnify.settings import Settings
from tests.servers import clean_env

REDIS_URL = os.environ.get("OMNIFY_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
RABBIT_URL = os.environ.get("OMNIFY_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")

T = TypeVar("T")


def unavailable(reason: str) -> None:
    """Skip outside CI; in CI a missing service is a failure, not a skip."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], T], *, timeout: float, what: str, interval: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# ------------------------------------------------------------------------------ brokers
async def until(predicate: Callable[[], Awaitable[T]], *, timeout: float, what: str, interval: float = 0.1) -> T:
    """The async :func:`wait_for`: poll ``predicate`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def pool_child(worker: WorkerProcess) -> int:
    """The pid of a prefork worker's (first) pool child, the process that runs the tasks."""
    assert worker.proc is not None
    pid = worker.proc.pid
    # Every thread's list: the first child is forked by the main thread, a replacement by
    # the pool's supervisor thread, and /proc lists a child under the thread that forked it.
    children: list[int] = []
    for task in sorted(Path(f"/proc/{pid}/task").iterdir()):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a thread that just ended
            children += [int(c) for c in (task / "children").read_text().split()]
    assert children, "the prefork worker has no pool child"
    return children[0]


def broker_url_or_skip(name: str) -> str | None:
    """URL for the broker under test (None = embedded SQLite), or skip if it is down."""
    if name == "sqlite":
        return None
    if name == "redis":
        import redis

        try:
            redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
        except Exception as exc:
            unavailable(f"Redis unreachable at {REDIS_URL}: {exc}")
        return REDIS_URL
    if name == "rabbitmq":
        from kombu import Connection

        try:
            with Connection(RABBIT_URL, connect_timeout=2) as conn:
                conn.ensure_connection(max_retries=1)
        except Exception as exc:
            unavailable(f"RabbitMQ unreachable at {RABBIT_URL}: {exc}")
        return RABBIT_URL
    raise ValueError(name)


# ----------------------------------------------------------------------------- database
@contextlib.contextmanager
def scratch_database(tmp_dir: Path) -> Iterator[str]:
    """A fresh, empty database URL (async driver, as OMNIFY_DATABASE_URL would be).

    PostgreSQL when OMNIFY_DATABASE_URL points at it (a new database created here and
    dropped afterwards), otherwise a new SQLite file.
    """
    configured = os.environ.get("OMNIFY_DATABASE_URL", "")
    if not configured.startswith("postgres"):
        yield f"sqlite+aiosqlite:///{tmp_dir / 'app.db'}"
        return
    url = make_url(configured)
    name = f"omnify_jobs_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(
        url.set(drivername="postgresql+psycopg", database="postgres"), isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        unavailable(f"PostgreSQL unreachable or refused CREATE DATABASE: {exc}")
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def create_job_tables(engine: Engine) -> None:
    Base.metadata.create_all(engine, tables=[JobFailure.__table__, JobRun.__table__])
    test_metadata.create_all(engine)


# ------------------------------------------------------------------------------ harness
@dataclass
class JobsEnv:
    broker: str
    broker_url: str | None
    database_url: str
    data_dir: Path
    queue: str
    extra_env: dict[str, str] = field(default_factory=dict)

    def settings(self) -> Settings:
        return Settings(data_dir=self.data_dir, database_url=self.database_url, broker_url=self.broker_url)

    def jobs_settings(self, **overrides: Any) -> JobsSettings:
        values: dict[str, Any] = {
            "default_queue": self.queue,
            "retry_backoff_base": 0.2,
            "retry_backoff_max": 0.5,
            "visibility_timeout": 5,
            "redis_restore_interval": 1,
            "embedded_lease_seconds": 4,
            "polling_interval": 0.1,
            "queue_depth_interval": 0.3,
            "test_tasks": True,
        }
        values.update(overrides)
        return JobsSettings(**values)

    def engine(self) -> Engine:
        return create_sync_engine(self.settings())

    def worker_env(self, *, metrics_port: int = 0) -> dict[str, str]:
        env = clean_env()
        env.update(
            OMNIFY_DATA_DIR=str(self.data_dir),
            OMNIFY_DATABASE_URL=self.database_url,
            OMNIFY_LOG_LEVEL="INFO",
            OMNIFY_JOBS_TEST_TASKS="1",
            OMNIFY_JOBS_DEFAULT_QUEUE=self.queue,
            OMNIFY_JOBS_METRICS_PORT=str(metrics_port),
            OMNIFY_JOBS_RETRY_BACKOFF_BASE="0.2",
            OMNIFY_JOBS_RETRY_BACKOFF_MAX="0.5",
            OMNIFY_JOBS_VISIBILITY_TIMEOUT="5",
            OMNIFY_JOBS_REDIS_RESTORE_INTERVAL="1",
            OMNIFY_JOBS_EMBEDDED_LEASE_SECONDS="4",
            OMNIFY_JOBS_POLLING_INTERVAL="0.1",
            OMNIFY_JOBS_QUEUE_DEPTH_INTERVAL="0.3",
        )
        if self.broker_url:
            env["OMNIFY_BROKER_URL"] = self.broker_url
        env.update(self.extra_env)
        return env


class WorkerProcess:
    """``celery -A omnify.jobs worker`` in its own process group (so SIGKILL takes the
    pool children too, as when a container is OOM-killed)."""

    def __init__(self, env: JobsEnv, *, queue: str, log_path: Path, metrics_port: int = 0) -> None:
        self.env = env
        self.queue = queue
        self.log_path = log_path
        self.metrics_port = metrics_port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 30.0) -> WorkerProcess:
        node = f"{self.queue}-{uuid.uuid4().hex[:6]}@%h"
        cmd = [
            sys.executable, "-m", "celery", "-A", "omnify.jobs", "worker",
            "--pool=prefork", "--concurrency=1", "--without-gossip", "--without-mingle",
            "--without-heartbeat", "-Q", self.queue, "-n", node, "--loglevel=INFO",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd,
            env=self.env.worker_env(metrics_port=self.metrics_port),
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self._ready, timeout=timeout, what=f"worker ready ({self.log_path})")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
        return any(" ready." in str(e.get("event", "")) for e in self.events())

    def events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if not self.log_path.exists():
            return out
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    def kill(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, *, graceful: bool = True) -> None:
        """Warm shutdown (SIGTERM to the main process), as an orchestrator would stop it;
        this also lets a coverage-patched worker write its data. Killed if it hangs, or
        at once when not ``graceful`` (an idle embedded-broker worker takes ~4 s to
        notice SIGTERM: it polls with a 2 s timeout)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        if not graceful:
            self.kill()
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=15)
        self.kill()  # reap a pool child left behind, if any


def metric_value(port: int, name: str, **labels: str) -> float:
    """Current value of one sample on a worker's /metrics endpoint (0 if absent)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


@contextlib.contextmanager
def running_worker(tmp: Path, broker: str = "sqlite", broker_url: str | None = None) -> Iterator[tuple[
        JobsEnv, Any, Engine, WorkerProcess, int]]:
    """A scratch database, a Celery app and a real worker process with its metrics port:
    ``(env, app, engine, worker, metrics port)``; all stopped and cleaned afterwards."""
    from omnify.jobs.celery_app import create_celery_app

    with scratch_database(tmp) as db_url:
        env = JobsEnv(broker, broker_url, db_url, tmp / "data", f"omnify-test-{uuid.uuid4().hex[:8]}")
        engine = env.engine()
        create_job_tables(engine)
        app = create_celery_app(env.settings(), env.jobs_settings())
        port = free_port()
        worker = WorkerProcess(env, queue=env.queue, log_path=tmp / "worker.log", metrics_port=port).start()
        try:
            yield env, app, engine, worker, port
        finally:
            worker.stop()
            app.close()
            engine.dispose()
