"""Prometheus metrics of the worker process (names fixed in notes/METRICS.md).

They are updated by :class:`omnify.jobs.base.OmnifyRequest`, which Celery runs in the
worker's *main* process for every pool (prefork children included), so the single
HTTP endpoint started by :func:`start_metrics_server` sees every task without
Prometheus' multi-process mode.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = structlog.get_logger(__name__)

TASKS_TOTAL = Counter(
    "omnify_celery_tasks_total",
    "Celery task executions by outcome.",
    ["task", "state"],
)
TASK_DURATION = Histogram(
    "omnify_celery_task_duration_seconds",
    "Wall-clock duration of Celery task executions.",
    ["task"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
QUEUE_DEPTH = Gauge(
    "omnify_celery_queue_depth",
    "Messages waiting in a queue (not counting ones a worker holds).",
    ["queue"],
)
JOB_FAILURES = Counter(
    "omnify_job_failures_total",
    "Tasks dead-lettered into job_failures.",
    ["task"],
)

STARTED, SUCCEEDED, FAILED, RETRIED = "started", "succeeded", "failed", "retried"


def start_metrics_server(port: int, addr: str, registry: CollectorRegistry = REGISTRY) -> bool:
    """Serve ``/metrics`` on ``addr:port``; false (and a warning) if the port is taken.

    A second worker on the same host must not die because the first owns the port.
    """
    if port <= 0:
        return False
    try:
        start_http_server(port, addr=addr, registry=registry)
    except OSError as exc:
        log.warning("jobs.metrics_port_unavailable", port=port, error=str(exc))
        return False
    log.info("jobs.metrics_listening", port=port, addr=addr)
    return True


#: Held by the poller for each poll and by the forking thread across ``fork()``: the
#: prefork pool must never fork while the poller is inside the broker client. Otherwise
#: the child inherits a lock held by a thread that does not exist there (kombu's Redis
#: transport disconnects its connection pools in an after-fork hook, taking redis-py's
#: pool lock), and the child hangs before running its first task.
_FORK_GUARD = threading.Lock()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_FORK_GUARD.acquire, after_in_parent=_FORK_GUARD.release,
                        after_in_child=_FORK_GUARD.release)


class QueueDepthPoller:
    """Refreshes ``omnify_celery_queue_depth`` from the broker on a timer thread."""

    def __init__(
        self,
        measure: Callable[[Iterable[str]], dict[str, int]],
        queues: Callable[[], Iterable[str]],
        interval: float,
    ) -> None:
        self._measure = measure
        self._queues = queues
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="omnify-queue-depth", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def poll_once(self) -> None:
        with _FORK_GUARD:
            depths = self._measure(list(self._queues()))
        for queue, depth in depths.items():
            QUEUE_DEPTH.labels(queue=queue).set(depth)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception as exc:  # the broker may be briefly away; keep polling
                log.warning("jobs.queue_depth_failed", error=str(exc))
            self._stop.wait(self._interval)
