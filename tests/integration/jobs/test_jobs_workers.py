"""Real worker processes against Redis, RabbitMQ and the embedded SQLite broker.

Per broker: one long-lived worker serves the ordinary scenarios (fresh database and
queue for that broker; tests use unique keys so they stay independent), and the crash
test starts and SIGKILLs its own workers on a queue of its own.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from celery import Celery
from sqlalchemy import Engine, func, insert, select

from omnify.jobs.models import JobFailure, JobRun
from omnify.jobs.testing_tasks import effects, switches
from tests.integration.jobs.jobs_testlib import (
    JobsEnv,
    WorkerProcess,
    broker_url_or_skip,
    metric_value,
    running_worker,
    wait_for,
)

pytestmark = [pytest.mark.slow]

BROKERS = ["sqlite", "redis", "rabbitmq"]


class Harness:
    def __init__(self, env: JobsEnv, app: Celery, engine: Engine, worker: WorkerProcess, port: int) -> None:
        self.env, self.app, self.engine, self.worker, self.metrics_port = env, app, engine, worker, port

    def send(self, name: str, *args: Any, queue: str | None = None, **kwargs: Any) -> str:
        result = self.app.send_task(
            f"omnify.jobs.testing.{name}", args=list(args), kwargs=kwargs, queue=queue or self.env.queue
        )
        return str(result.id)

    def effect_count(self, key: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(effects).where(effects.c.key == key)) or 0)

    def failure_for(self, task_id: str) -> JobFailure | None:
        from sqlalchemy.orm import Session

        with Session(self.engine) as session:
            return session.scalars(select(JobFailure).where(JobFailure.task_id == task_id)).first()

    def events(self, task_id: str, event: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.worker.events()
            if e.get("task_id") == task_id and (event is None or e.get("event") == event)
        ]


@pytest.fixture(scope="module", params=BROKERS)
def harness(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    broker = str(request.param)
    url = broker_url_or_skip(broker)
    tmp = tmp_path_factory.mktemp(f"jobs-{broker}")
    with running_worker(tmp, broker, url) as (env, app, engine, worker, port):
        try:
            yield Harness(env, app, engine, worker, port)
        finally:
            worker.stop()
            _delete_queues(app, [env.queue, f"{env.queue}-kill"])


def _delete_queues(app: Celery, queues: list[str]) -> None:
    """RabbitMQ keeps durable queues; Redis and SQLite ones are empty rows/keys."""
    try:
        with app.connection_for_write() as conn:
            for queue in queues:
                channel: Any = conn.channel()
                with contextlib.suppress(Exception):
                    channel.queue_delete(queue)
    except Exception:  # best effort: an unreachable broker has nothing to clean
        return


# ------------------------------------------------------------------------------- tests
def test_task_succeeds_with_trace_and_org_from_enqueuer(harness: Harness) -> None:
    key = uuid.uuid4().hex
    org_id = str(uuid.uuid4())
    trace_id = f"trace-{key}"
    with structlog.contextvars.bound_contextvars(trace_id=trace_id, org_id=org_id):
        task_id = harness.send("record_effect", key)
    wait_for(lambda: harness.effect_count(key) == 1, timeout=60, what="effect row")
    with harness.engine.connect() as conn:
        assert conn.scalar(select(JobRun.task_id).where(JobRun.key == f"test-effect:{key}")) == task_id
    done = wait_for(lambda: harness.events(task_id, "job.succeeded"), timeout=10, what="succeeded log")
    assert done[0]["trace_id"] == trace_id
    assert done[0]["org_id"] == org_id
    assert done[0]["idempotency_key"] == f"test-effect:{key}"
    wait_for(
        lambda: metric_value(
            harness.metrics_port,
            "omnify_celery_tasks_total",
            task="omnify.jobs.testing.record_effect",
            state="succeeded",
        )
        >= 1,
        timeout=5,
        what="succeeded counter",
    )
    assert metric_value(
        harness.metrics_port, "omnify_celery_task_duration_seconds_count", task="omnify.jobs.testing.record_effect"
    ) >= 1


def test_duplicate_delivery_does_the_effect_once(harness: Harness) -> None:
    key = uuid.uuid4().hex
    first = harness.send("record_effect", key)
    second = harness.send("record_effect", key)
    wait_for(lambda: harness.events(second, "job.succeeded"), timeout=60, what="second run")
    assert harness.events(first, "job.succeeded")
    assert harness.effect_count(key) == 1
    assert any(e["event"] == "job.duplicate_effect_skipped" for e in harness.events(second))


def test_flaky_task_retries_then_succeeds(harness: Harness) -> None:
    key = uuid.uuid4().hex
    task_id = harness.send("flaky", key, 2)
    wait_for(lambda: harness.effect_count(key) == 1, timeout=90, what="effect after retries")
    retries = harness.events(task_id, "job.retrying")
    assert [e["attempt"] for e in retries] == [1, 2]
    assert all(0 <= e["countdown_s"] <= 0.5 for e in retries)
    assert {e["trace_id"] for e in harness.events(task_id)} == {retries[0]["trace_id"]}  # one trace
    assert harness.failure_for(task_id) is None
    assert (
        metric_value(
            harness.metrics_port, "omnify_celery_tasks_total", task="omnify.jobs.testing.flaky", state="retried"
        )
        >= 2
    )


def test_exhausted_retries_are_dead_lettered(harness: Harness) -> None:
    key = uuid.uuid4().hex
    task_id = harness.send("always_transient", key)
    failure = wait_for(lambda: harness.failure_for(task_id), timeout=90, what="dead letter")
    assert failure.task_name == "omnify.jobs.testing.always_transient"
    assert failure.attempts == 3  # first try + max_retries=2
    assert failure.error_type == "TransientJobError"
    assert failure.task_args == [key]
    assert failure.status == "dead"
    assert failure.first_failed_at < failure.last_failed_at
    assert failure.queue == harness.env.queue


def _cli(harness: Harness, *args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from omnify.jobs.cli import jobs_app; jobs_app(sys.argv[1:])"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=harness.env.worker_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_failure_lands_in_job_failures_and_replays_from_the_cli(harness: Harness) -> None:
    key, switch = uuid.uuid4().hex, uuid.uuid4().hex
    org_id = str(uuid.uuid4())
    task_id = harness.send("fails_until_switched", key, switch=switch, org_id=org_id)
    failure = wait_for(lambda: harness.failure_for(task_id), timeout=60, what="dead letter")
    assert failure.attempts == 1  # ValueError is not retryable
    assert failure.error_type == "ValueError"
    assert f"switch {switch} is off" in failure.error
    assert failure.traceback and "ValueError" in failure.traceback
    assert failure.task_kwargs == {"switch": switch, "org_id": org_id}
    assert str(failure.org_id) == org_id
    assert harness.effect_count(key) == 0
    wait_for(
        lambda: metric_value(
            harness.metrics_port, "omnify_job_failures_total", task="omnify.jobs.testing.fails_until_switched"
        )
        >= 1,
        timeout=5,
        what="job failures counter",
    )

    listed = _cli(harness, "failures", "list", "--json", "--task", "omnify.jobs.testing.fails_until_switched")
    assert listed.returncode == 0, listed.stderr
    assert str(failure.id) in {json.loads(line)["id"] for line in listed.stdout.splitlines()}

    with harness.engine.begin() as conn:  # the operator fixes the cause...
        conn.execute(insert(switches).values(name=switch))
    replayed = _cli(harness, "failures", "replay", str(failure.id))  # ...and replays
    assert replayed.returncode == 0, replayed.stderr
    wait_for(lambda: harness.effect_count(key) == 1, timeout=60, what="effect after replay")

    after = harness.failure_for(task_id)
    assert after is not None and after.status == "replayed" and after.replay_count == 1
    assert after.replay_task_id and after.replay_task_id != task_id
    assert harness.events(after.replay_task_id, "job.succeeded")

    again = _cli(harness, "failures", "replay", str(failure.id))
    assert again.returncode == 1 and "only dead ones" in again.stderr


def test_queue_depth_gauge_reports_waiting_messages(harness: Harness) -> None:
    blocker = harness.send("sleeps", 1.5)
    keys = [uuid.uuid4().hex for _ in range(3)]
    for key in keys:
        harness.send("record_effect", key)
    wait_for(
        lambda: metric_value(harness.metrics_port, "omnify_celery_queue_depth", queue=harness.env.queue) >= 2,
        timeout=5,
        what="queue depth >= 2 while the worker is busy",
        interval=0.05,
    )
    wait_for(lambda: all(harness.effect_count(k) == 1 for k in keys), timeout=60, what="queued effects")
    assert harness.events(blocker, "job.succeeded")


def test_time_limits_dead_letter_soft_and_hard(harness: Harness) -> None:
    if harness.env.broker != "sqlite":
        pytest.skip("time limits are pool behaviour, not broker behaviour: covered on the embedded broker")
    soft = harness.app.send_task(
        "omnify.jobs.testing.sleeps", args=[5], soft_time_limit=0.5, time_limit=3, queue=harness.env.queue
    )
    hard = harness.app.send_task(
        "omnify.jobs.testing.sleeps",
        args=[5],
        kwargs={"ignore_soft_limit": True},
        soft_time_limit=0.5,
        time_limit=1,
        queue=harness.env.queue,
    )
    soft_failure = wait_for(lambda: harness.failure_for(str(soft.id)), timeout=15, what="soft limit failure")
    assert soft_failure.error_type == "SoftTimeLimitExceeded"
    # The hard limit kills the pool child: the record is written by the main process.
    hard_failure = wait_for(lambda: harness.failure_for(str(hard.id)), timeout=15, what="hard limit failure")
    assert hard_failure.error_type == "TimeLimitExceeded"
    assert hard_failure.task_kwargs == {"ignore_soft_limit": True}
    assert hard_failure.trace_id  # context survived the trip through the main process


def test_sigkill_mid_task_redelivers_and_effect_happens_once(harness: Harness, tmp_path: Path) -> None:
    """Kill the worker after the effect committed but before the ack: the broker must
    hand the message to the next worker, which must find the effect already done."""
    queue = f"{harness.env.queue}-kill"
    key = uuid.uuid4().hex
    first = WorkerProcess(harness.env, queue=queue, log_path=tmp_path / "first.log").start()
    try:
        harness.send("slow_effect", key, str(tmp_path), 60, queue=queue)
        # Generous waits (they return as soon as the condition holds): on a loaded 2-CPU
        # runner a fresh prefork worker can take well over 20 s to pick up its first task.
        wait_for(lambda: (tmp_path / f"{key}.committed").exists(), timeout=60, what="effect committed")
        assert harness.effect_count(key) == 1
    finally:
        first.kill()
    second = WorkerProcess(harness.env, queue=queue, log_path=tmp_path / "second.log").start()
    try:
        deliveries = tmp_path / f"{key}.deliveries"
        wait_for(
            lambda: len(deliveries.read_text().splitlines()) >= 2,
            timeout=60,
            what="redelivery to the second worker",
            interval=0.2,
        )
        task_id = deliveries.read_text().splitlines()[0].split()[1]
        wait_for(
            lambda: [e for e in second.events() if e.get("event") == "job.succeeded" and e.get("task_id") == task_id],
            timeout=90,
            what="redelivered run finished",
        )

        def skipped() -> list[dict[str, Any]]:
            return [e for e in second.events() if e.get("event") == "job.duplicate_effect_skipped"]
        # Every delivery after the first finds the effect done. There can be more than one: the
        # redis transport is at-least-once, and a message the second worker has fetched but not yet
        # acknowledged when its visibility timeout (5 s here) runs out is restored and fetched
        # again. On a loaded runner a fresh prefork pool can take that long to start the task, and
        # CI once saw the second worker run it twice, 0.24 s apart.
        wait_for(lambda: len(skipped()) >= len(deliveries.read_text().splitlines()) - 1,
                 timeout=60, what="every redelivery skipped")
        assert all(e["idempotency_key"] == f"test-effect:{key}" for e in skipped())
    finally:
        second.stop(graceful=False)
    assert harness.effect_count(key) == 1
    lines = [line.split() for line in deliveries.read_text().splitlines()]
    assert len(lines) >= 2 and {line[1] for line in lines} == {task_id}  # the same message, redelivered
    assert lines[0][0] not in {line[0] for line in lines[1:]}  # the killed worker's child ran it once


def test_beat_dispatches_the_schedule_and_refuses_unwritten_tasks(harness: Harness, tmp_path: Path) -> None:
    if harness.env.broker != "sqlite":
        pytest.skip("the scheduler is broker-agnostic: covered on the embedded broker")
    env = harness.env.worker_env()
    env["OMNIFY_JOBS_BEAT_SCHEDULE_FILE"] = str(tmp_path / "beat-schedule")
    beat_cmd = [sys.executable, "-c", "from omnify.jobs.cli import beat_command; beat_command()"]

    # A schedule naming a task no module defines: beat does not start, and says which.
    env["OMNIFY_JOBS_BEAT_SCHEDULE"] = json.dumps({"omnify.not_written_yet.task": {"every": 1}})
    refused = subprocess.run(beat_cmd, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0
    assert "omnify.not_written_yet.task" in refused.stdout + refused.stderr

    env["OMNIFY_JOBS_BEAT_SCHEDULE"] = json.dumps({"omnify.jobs.purge": {"every": 1}})
    log = tmp_path / "beat.log"
    beat = subprocess.Popen(beat_cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        # Generous: under coverage on a loaded CI runner, beat's start-up (importing every task
        # module to check the schedule) alone has taken most of a minute.
        wait_for(
            lambda: [
                e for e in harness.worker.events()
                if e.get("event") == "job.succeeded" and e.get("task") == "omnify.jobs.purge"
            ] or (beat.poll() is not None and pytest.fail("beat exited:\n" + log.read_text(errors="replace")[-3000:])),
            timeout=180,
            what="scheduled purge run by the worker",
        )
    except AssertionError:
        raise AssertionError("no scheduled purge; beat log:\n" + log.read_text(errors="replace")[-3000:]
                             + "\nworker log:\n" + harness.worker.log_path.read_text(errors="replace")[-3000:]) from None
    finally:
        beat.kill()
        beat.wait(10)
