"""Worker-process side services: the Prometheus endpoint and the queue-depth poller.

Started from Celery's ``worker_init`` signal, i.e. in the worker's main process before
the pool forks, whichever way the worker was launched (``omnify worker`` or
``celery -A omnify.jobs worker``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import structlog
from celery import Celery

from omnify.jobs.config import get_jobs_settings
from omnify.jobs.metrics import QueueDepthPoller, start_metrics_server

log = structlog.get_logger(__name__)

_poller: QueueDepthPoller | None = None


def measure_queue_depths(app: Celery, queues: Iterable[str]) -> dict[str, int]:
    """Ready messages per queue, via a passive declare (works on every transport)."""
    depths: dict[str, int] = {}
    with app.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1)
        for queue in queues:
            channel: Any = conn.channel()
            try:
                _, count, _ = channel.queue_declare(queue=queue, passive=True)
                depths[queue] = int(count)
            except conn.channel_errors:
                # Redis deletes an empty list; RabbitMQ answers 404 for an undeclared queue.
                depths[queue] = 0
            finally:
                try:
                    channel.close()
                except Exception:  # channel already closed by the broker after a 404
                    log.debug("jobs.queue_depth_channel_close_failed", queue=queue)
    return depths


def _consumed_queues(worker: Any, app: Celery) -> list[str]:
    consume_from = getattr(app.amqp.queues, "consume_from", None) or {}
    names = list(consume_from) or [str(app.conf.task_default_queue)]
    return names


def start_worker_observability(worker: Any) -> None:
    global _poller
    from omnify.core.logging import configure_logging
    from omnify.settings import get_settings

    # worker_init fires before Celery's setup_logging: configure now so even the first
    # lines (metrics port) are JSON.
    configure_logging(get_settings())
    jobs = get_jobs_settings()
    start_metrics_server(jobs.metrics_port, jobs.metrics_addr)
    app: Celery = worker.app
    if _poller is None:
        _poller = QueueDepthPoller(
            measure=lambda queues: measure_queue_depths(app, queues),
            queues=lambda: _consumed_queues(worker, app),
            interval=jobs.queue_depth_interval,
        )
        _poller.start()


def stop_worker_observability() -> None:
    global _poller
    if _poller is not None:
        _poller.stop()
        _poller = None
