"""Job-system rules that need no server: backoff, classification, schedule, config,
context propagation, the task base in eager mode, and the lease-based SQLite transport
(on a real SQLite file through kombu)."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from celery import Celery
from celery.beat import ScheduleEntry
from celery.schedules import crontab
from kombu import Connection
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from sqlalchemy import create_engine, text

from omnify.integrations.base import AuthRevoked, RateLimited, TransientError
from omnify.jobs import metrics
from omnify.jobs.base import (
    HEADER_ORG_ID,
    HEADER_TRACE_ID,
    OmnifyRequest,
    OmnifyTask,
    TransientJobError,
    add_context_headers,
    context_headers,
)
from omnify.jobs.celery_app import (
    broker_kind,
    broker_transport_url,
    build_config,
    resolve_broker_url,
    resolve_result_backend,
    transport_options,
)
from omnify.jobs.config import JobsSettings
from omnify.jobs.db import sync_database_url
from omnify.jobs.schedule import DEFAULT_BEAT_SCHEDULE, OmnifyScheduler, ScheduleError, build_beat_schedule
from omnify.jobs.transport import register as register_transport
from omnify.jobs.worker import measure_queue_depths
from omnify.settings import Settings


@pytest.fixture
def app() -> Iterator[Celery]:
    """An app on kombu's in-memory broker, eager: runs tasks in-process through the base."""
    a: Celery = Celery("unit", task_cls=OmnifyTask, broker="memory://", set_as_current=False)
    a.conf.update(task_always_eager=True, task_eager_propagates=False, task_store_eager_result=False)
    yield a
    a.close()


# ------------------------------------------------------------------------- retry policy
def test_backoff_is_full_jitter_and_capped(app: Celery) -> None:
    task = OmnifyTask()
    task.retry_backoff_base, task.retry_backoff_max = 1.0, 10.0
    for retries, cap in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (4, 10.0), (10, 10.0)]:
        delays = [task.backoff(retries) for _ in range(300)]
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > cap * 0.7  # spread over the window, not pinned low
        assert min(delays) < cap * 0.3


def test_backoff_honours_retry_after() -> None:
    task = OmnifyTask()
    task.retry_backoff_base, task.retry_backoff_max = 1.0, 2.0
    assert task.backoff(0, RateLimited("slow down", retry_after=30)) >= 30
    assert task.backoff(0, TransientJobError("later", retry_after=12.5)) >= 12.5
    assert task.backoff(0, TransientJobError("no hint")) <= 1.0


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (TransientJobError("x"), True),
        (TransientError("503"), True),
        (RateLimited("429", retry_after=1), True),
        (AuthRevoked("revoked"), False),
        (ValueError("bad"), False),
        (KeyError("k"), False),
    ],
)
def test_transient_classification(exc: Exception, transient: bool) -> None:
    assert OmnifyTask().is_transient(exc) is transient


# ------------------------------------------------------------------------ task in eager
def test_eager_task_retries_transient_errors_then_succeeds(app: Celery) -> None:
    calls: list[int] = []

    @app.task(bind=True, name="unit.flaky", max_retries=3, idempotency_key=lambda n: f"unit:{n}")
    def flaky(self: OmnifyTask, n: int) -> int:
        calls.append(self.request.retries)
        if self.request.retries < 2:
            raise TransientJobError("not yet")
        return n * 2

    flaky.retry_backoff_base = 0.001
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        result = flaky.apply(args=(21,), headers={HEADER_TRACE_ID: "trace-1", HEADER_ORG_ID: "org-1"})
    assert result.get() == 42
    assert calls == [0, 1, 2]
    retrying = [e for e in logs if e["event"] == "job.retrying"]
    assert [e["attempt"] for e in retrying] == [1, 2]
    done = [e for e in logs if e["event"] == "job.succeeded"]
    assert done and done[0]["idempotency_key"] == "unit:21" and done[0]["task"] == "unit.flaky"


def test_idempotency_key_function_is_not_bound_as_a_method(app: Celery) -> None:
    @app.task(name="unit.keyed", idempotency_key=lambda order_id, **_: f"order:{order_id}")
    def keyed(order_id: str) -> str:
        return order_id

    assert keyed.compute_idempotency_key(("o-1",), {}) == "order:o-1"
    assert keyed("o-2") == "o-2"  # a direct call runs the body without the worker machinery


def test_request_subclasses_count_success() -> None:
    class Generated(OmnifyRequest):
        def on_success(self, failed__retval__runtime: Any, **kwargs: Any) -> None:
            return None

    assert getattr(Generated.on_success, "_omnify_counted", False)


# ------------------------------------------------------------------------ context headers
def test_context_headers_come_from_the_enqueuer() -> None:
    with structlog.contextvars.bound_contextvars(trace_id="t-1", org_id="o-1", request_id="r-1"):
        headers = context_headers()
    assert headers == {"omnify_trace_id": "t-1", "omnify_org_id": "o-1", "omnify_request_id": "r-1"}
    fresh = context_headers()
    assert len(fresh[HEADER_TRACE_ID]) == 32 and HEADER_ORG_ID not in fresh


def test_context_headers_use_the_open_telemetry_trace() -> None:
    tracer = TracerProvider().get_tracer("unit")
    with tracer.start_as_current_span("enqueue") as span:
        headers = context_headers()
    assert headers[HEADER_TRACE_ID] == format(span.get_span_context().trace_id, "032x")


def test_explicit_headers_win_over_context() -> None:
    headers: dict[str, Any] = {HEADER_TRACE_ID: "kept"}
    with structlog.contextvars.bound_contextvars(trace_id="ambient", org_id="o"):
        add_context_headers(headers=headers)
    assert headers[HEADER_TRACE_ID] == "kept" and headers[HEADER_ORG_ID] == "o"


# ------------------------------------------------------------------------------ config
def test_sync_database_url() -> None:
    assert sync_database_url("sqlite+aiosqlite:////x/o.db") == "sqlite+pysqlite:////x/o.db"
    assert (
        sync_database_url("postgresql+asyncpg://u:p%40ss@h:5432/db") == "postgresql+psycopg://u:p%40ss@h:5432/db"
    )
    assert sync_database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"


def test_broker_selection(tmp_path: Path) -> None:
    embedded = Settings(data_dir=tmp_path)
    url = resolve_broker_url(embedded)
    assert url == f"sqla+sqlite:///{tmp_path.resolve()}/broker.db"
    assert broker_transport_url(url) == f"omnify-sqla+sqlite:///{tmp_path.resolve()}/broker.db"
    assert broker_kind(url) == "sqla"
    assert resolve_result_backend(embedded, url).startswith("db+sqlite:///")
    redis = Settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:6379/3")
    assert resolve_result_backend(redis, "redis://127.0.0.1:6379/3") == "redis://127.0.0.1:6379/3"
    assert resolve_result_backend(redis, "amqp://g:g@h//") == "rpc://"
    explicit = Settings(data_dir=tmp_path, result_backend_url="redis://h/9")
    assert resolve_result_backend(explicit, url) == "redis://h/9"
    assert broker_transport_url("amqp://g:g@h//") == "amqp://g:g@h//"


def test_transport_options_per_broker() -> None:
    jobs = JobsSettings(visibility_timeout=600, redis_restore_interval=5, embedded_lease_seconds=30)
    assert transport_options("redis", jobs) == {
        "visibility_timeout": 600,
        "unacked_restore_interval": 5,
        "unacked_restore_throttle": 1,
    }
    assert transport_options("sqla", jobs)["visibility_timeout"] == 30
    assert transport_options("amqp", jobs) == {}


def test_config_guarantees_crash_recovery(tmp_path: Path) -> None:
    conf = build_config(Settings(data_dir=tmp_path), JobsSettings(default_queue="q"))
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["accept_content"] == ["json"] and conf["task_serializer"] == "json"
    assert conf["task_default_queue"] == "q"
    assert "omnify.jobs.tasks" in conf["include"] and "omnify.jobs.testing_tasks" not in conf["include"]
    with_tests = build_config(Settings(data_dir=tmp_path), JobsSettings(test_tasks=True))
    assert "omnify.jobs.testing_tasks" in with_tests["include"]
    assert not (tmp_path / "broker.db").exists()  # building the config touches nothing


# ---------------------------------------------------------------------------- schedule
def test_default_schedule_covers_the_periodic_work() -> None:
    schedule = build_beat_schedule()
    assert set(schedule) == set(DEFAULT_BEAT_SCHEDULE)
    for name in ("omnify.sync.run_due", "omnify.connections.refresh_expiring", "omnify.brain.run_due",
                 "omnify.webhooks.redeliver_due", "omnify.jobs.purge", "omnify.audit.export"):
        assert schedule[name]["task"] == name
    assert isinstance(schedule["omnify.jobs.purge"]["schedule"], crontab)


def test_schedule_overrides() -> None:
    schedule = build_beat_schedule(
        {
            "omnify.sync.run_due": {"cron": "*/5 * * * *", "queue": "sync"},
            "omnify.brain.run_due": {"enabled": False},
            "omnify.audit.export": None,
            "omnify.custom.task": {"every": 30, "kwargs": {"a": 1}},
        }
    )
    assert isinstance(schedule["omnify.sync.run_due"]["schedule"], crontab)
    assert schedule["omnify.sync.run_due"]["options"] == {"queue": "sync"}
    assert "omnify.brain.run_due" not in schedule and "omnify.audit.export" not in schedule
    assert schedule["omnify.custom.task"]["schedule"].total_seconds() == 30
    assert schedule["omnify.custom.task"]["kwargs"] == {"a": 1}


@pytest.mark.parametrize(
    "override",
    [
        {"x": {"cron": "* * *"}},
        {"x": {"cron": "99 * * * *"}},
        {"x": {"every": 0}},
        {"x": {"every": "often"}},
        {"x": {"every": 5, "cron": "* * * * *"}},
        {"x": {"every": 5, "colour": "blue"}},
        {"x": {}},
        {"x": "hourly"},
    ],
)
def test_schedule_errors_are_clear(override: dict[str, Any]) -> None:
    with pytest.raises(ScheduleError, match=r"^x:"):
        build_beat_schedule(override)


def test_scheduler_refuses_to_start_with_a_task_this_build_lacks(app: Celery, tmp_path: Path) -> None:
    @app.task(name="unit.known")
    def known() -> None:
        return None

    app.conf.beat_schedule = {"k": {"task": "unit.known", "schedule": crontab()},
                              "m": {"task": "omnify.not.written.yet", "schedule": crontab()}}
    with pytest.raises(ScheduleError, match=r"omnify\.not\.written\.yet"):
        OmnifyScheduler(app=app, schedule_filename=str(tmp_path / "beat"))
    app.conf.beat_schedule = {"k": {"task": "unit.known", "schedule": crontab()}}
    scheduler = OmnifyScheduler(app=app, schedule_filename=str(tmp_path / "beat-ok"))
    present = ScheduleEntry(name="k", task="unit.known", schedule=crontab(), app=app)
    assert scheduler.apply_async(present, advance=False) is not None


def test_every_default_scheduled_task_resolves_to_a_task() -> None:
    """Issue 14 item 3: each name in the beat schedule is a task some module defines."""
    from omnify.jobs.celery_app import celery_app
    from omnify.jobs.schedule import unregistered_tasks

    assert set(celery_app.conf.beat_schedule) == set(DEFAULT_BEAT_SCHEDULE)
    assert unregistered_tasks(celery_app) == []


# --------------------------------------------------------------------------- metrics
def test_metrics_port_in_use_is_not_fatal() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert metrics.start_metrics_server(port, "127.0.0.1", CollectorRegistry()) is False
    assert metrics.start_metrics_server(0, "127.0.0.1") is False


def test_queue_depth_poller_sets_the_gauge() -> None:
    poller = metrics.QueueDepthPoller(lambda qs: dict.fromkeys(qs, 7), lambda: ["unit-depth"], interval=60)
    poller.poll_once()
    assert metrics.QUEUE_DEPTH.labels(queue="unit-depth")._value.get() == 7


# ------------------------------------------------------------------ embedded transport
@pytest.fixture
def broker_url(tmp_path: Path) -> str:
    register_transport()
    return f"omnify-sqla+sqlite:///{tmp_path / 'nested' / 'broker.db'}"


def _conn(url: str, lease: float) -> Connection:
    return Connection(url, transport_options={"visibility_timeout": lease, "polling_interval": 0.05})


def _rows(url: str) -> list[tuple[Any, ...]]:
    engine = create_engine(url.split("+", 1)[1])
    try:
        with engine.connect() as c:
            return list(c.execute(text("SELECT id, visible FROM kombu_message")))
    finally:
        engine.dispose()


def test_lease_expiry_redelivers_and_ack_deletes(broker_url: str) -> None:
    queue = f"unit-{uuid.uuid4().hex[:6]}"
    with _conn(broker_url, 1.0) as producer:
        producer.SimpleQueue(queue).put({"n": 1})
    holder, other = _conn(broker_url, 1.0), _conn(broker_url, 1.0)
    try:
        first = holder.SimpleQueue(queue).get(block=False)
        assert first.payload == {"n": 1}
        holder.default_channel._renewer_stop.set()  # the holder "dies": no more renewals
        q2 = other.SimpleQueue(queue)
        with pytest.raises(q2.Empty):
            q2.get(block=False)  # leased: invisible to others
        time.sleep(1.2)
        again = q2.get(block=False)
        assert again.payload == {"n": 1} and again.delivery_info.get("redelivered")
        again.ack()
        assert _rows(broker_url) == []  # acknowledged messages do not pile up
    finally:
        holder.release()
        other.release()


def test_live_consumer_renews_its_lease_and_requeues_in_place(broker_url: str) -> None:
    queue = f"unit-{uuid.uuid4().hex[:6]}"
    with _conn(broker_url, 0.9) as producer:
        producer.SimpleQueue(queue).put({"n": 2})
    holder, other = _conn(broker_url, 0.9), _conn(broker_url, 0.9)
    try:
        msg = holder.SimpleQueue(queue).get(block=False)
        q2 = other.SimpleQueue(queue)
        time.sleep(1.5)  # past the lease, but the holder's renewer kept it
        with pytest.raises(q2.Empty):
            q2.get(block=False)
        msg.requeue()
        assert len(_rows(broker_url)) == 1  # back in place, not copied
        back = q2.get(block=False)
        assert back.payload == {"n": 2}
        back.reject()  # rejected for good: gone
        assert _rows(broker_url) == []
    finally:
        holder.release()
        other.release()


def test_measure_queue_depths_on_the_embedded_broker(tmp_path: Path) -> None:
    from omnify.jobs.celery_app import create_celery_app

    queue = f"unit-{uuid.uuid4().hex[:6]}"
    app = create_celery_app(Settings(data_dir=tmp_path), JobsSettings(default_queue=queue))
    try:
        for _ in range(2):
            app.send_task("unit.anything", args=[])
        assert measure_queue_depths(app, [queue]) == {queue: 2}
    finally:
        app.close()
