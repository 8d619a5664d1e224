"""The Celery application: broker choice, delivery guarantees, signals.

Broker from settings: ``OMNIFY_BROKER_URL`` (``redis://...`` or ``amqp://...``) in
production; unset, an embedded broker on a SQLite file under ``OMNIFY_DATA_DIR`` so
``omnify up`` needs no server (kombu's SQLAlchemy transport, hardened by
:mod:`omnify.jobs.transport` so a killed worker's message comes back).

Settings that make crash recovery work, and why:

* ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged after
  the task finished, so a worker dying mid-task leaves it unacknowledged and the broker
  hands it to another worker (RabbitMQ when the connection drops, Redis after the
  visibility timeout, the embedded broker after its lease expires).
* ``worker_prefetch_multiplier=1``: a worker holds at most one message per process it
  can run, so a crash strands as little as possible and queues stay fair.
* JSON only: no pickle, so a message cannot execute code when deserialized, and dead
  letters (stored as JSON) replay exactly what was sent.
"""

from __future__ import annotations

import pkgutil
from pathlib import Path
from typing import Any

from celery import Celery, signals

from omnify.jobs import broker_recovery as recovery
from omnify.jobs import transport
from omnify.jobs.base import OmnifyTask, add_context_headers
from omnify.jobs.config import JobsSettings, get_jobs_settings
from omnify.jobs.schedule import build_beat_schedule
from omnify.settings import Settings, get_settings

TASK_MODULES = ("omnify.jobs.tasks",)
TEST_TASK_MODULE = "omnify.jobs.testing_tasks"
#: Packages never searched for a ``tasks`` module (importing them has no business here).
_NOT_DOMAINS = frozenset({"jobs", "migrations", "web"})

_SQLA_PREFIXES = ("sqla+", "sqlalchemy+")


def embedded_broker_url(settings: Settings) -> str:
    path = (settings.data_dir / "broker.db").resolve()
    return f"sqla+sqlite:///{path}"


def resolve_broker_url(settings: Settings) -> str:
    """The broker URL as an operator would write it (shown in logs, CLI output)."""
    return settings.broker_url or embedded_broker_url(settings)


def broker_transport_url(url: str) -> str:
    """Route SQLAlchemy broker URLs to the lease-based transport (same tables)."""
    for prefix in _SQLA_PREFIXES:
        if url.startswith(prefix):
            return f"{transport.SCHEME}+{url[len(prefix):]}"
    return url


def broker_kind(url: str) -> str:
    scheme = url.split("://", 1)[0]
    if scheme.startswith(("redis", "rediss", "sentinel")):
        return "redis"
    if scheme.startswith(("amqp", "amqps", "pyamqp")):
        return "amqp"
    if scheme.startswith((*_SQLA_PREFIXES, transport.SCHEME)):
        return "sqla"
    return scheme


def resolve_result_backend(settings: Settings, broker_url: str) -> str:
    """Results are rarely read (effects live in the database), but chords need them."""
    if settings.result_backend_url:
        return settings.result_backend_url
    kind = broker_kind(broker_url)
    if kind == "redis":
        return broker_url
    if kind == "amqp":
        return "rpc://"
    return f"db+sqlite:///{(settings.data_dir / 'celery-results.db').resolve()}"


def transport_options(kind: str, jobs: JobsSettings) -> dict[str, Any]:
    if kind == "redis":
        return {
            "visibility_timeout": jobs.visibility_timeout,
            "unacked_restore_interval": jobs.redis_restore_interval,
            # Scan on every sweep so the interval above is the only knob.
            "unacked_restore_throttle": 1,
        }
    if kind == "sqla":
        return {"visibility_timeout": jobs.embedded_lease_seconds, "polling_interval": jobs.polling_interval,
                "busy_timeout_ms": jobs.embedded_busy_timeout_ms}
    return {}


def _task_modules(jobs: JobsSettings) -> list[str]:
    return [*TASK_MODULES, *((TEST_TASK_MODULE,) if jobs.test_tasks else ())]


def domain_packages() -> list[str]:
    """Every ``omnify.<domain>`` package; Celery imports ``<domain>.tasks`` where it exists.

    Discovered rather than listed so a new domain's tasks register without touching this
    file, and resolved lazily (when a worker or beat loads its modules) so importing the
    app from the API never imports every domain.
    """
    import omnify

    return sorted(
        f"omnify.{m.name}" for m in pkgutil.iter_modules(omnify.__path__) if m.ispkg and m.name not in _NOT_DOMAINS
    )


def build_config(settings: Settings, jobs: JobsSettings) -> dict[str, Any]:
    broker = resolve_broker_url(settings)
    kind = broker_kind(broker)
    schedule_file = jobs.beat_schedule_file or settings.data_dir / "celerybeat-schedule"
    return {
        "broker_url": broker_transport_url(broker),
        "broker_transport_options": transport_options(kind, jobs),
        "broker_connection_retry_on_startup": True,
        "task_publish_retry_policy": recovery.PUBLISH_RETRY_POLICY,
        "result_backend": resolve_result_backend(settings, broker),
        "result_expires": 24 * 3600,
        "task_ignore_result": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        # With late acks a message cannot be acknowledged on a new connection: stop the
        # task and let the broker redeliver, rather than finish and ack into the void.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_default_queue": jobs.default_queue,
        "task_soft_time_limit": jobs.soft_time_limit,
        "task_time_limit": jobs.time_limit,
        "worker_concurrency": jobs.worker_concurrency,
        "worker_max_tasks_per_child": jobs.worker_max_tasks_per_child,
        # Our structlog JSON goes to stdout as is; Celery must not re-wrap it.
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "timezone": "UTC",
        "enable_utc": True,
        "include": _task_modules(jobs),
        "beat_schedule": build_beat_schedule(jobs.beat_schedule),
        "beat_scheduler": "omnify.jobs.schedule:OmnifyScheduler",
        "beat_schedule_filename": str(Path(schedule_file).resolve()),
    }


def create_celery_app(
    settings: Settings | None = None, jobs: JobsSettings | None = None
) -> Celery[OmnifyTask]:
    transport.register()
    settings = settings or get_settings()
    jobs = jobs or get_jobs_settings()
    app: Celery[OmnifyTask] = Celery("omnify", task_cls=OmnifyTask, set_as_current=True)
    app.conf.update(build_config(settings, jobs))
    app.autodiscover_tasks(domain_packages, related_name="tasks")
    return app


celery_app = create_celery_app()


def configure_celery(settings: Settings, jobs: JobsSettings | None = None) -> None:
    """Point this process's Celery app at ``settings`` (broker, results, beat file).

    The app is built when :mod:`omnify.jobs` is first imported, from the environment as it
    was then. ``omnify up --data-dir X`` learns its data directory only after that (the CLI
    imports the jobs commands to mount them), so the API published to ``./.omnify/broker.db``
    while the worker, started with ``OMNIFY_DATA_DIR=X``, read ``X/broker.db``: a requested
    sync never ran (issue 14). Any connection pool built for the old URL is closed.
    """
    celery_app.conf.update(build_config(settings, jobs or get_jobs_settings()))
    app: Any = celery_app
    pool = app._pool
    app._pool = None
    app.amqp._producer_pool = None
    if pool is not None:
        pool.force_close_all()

signals.before_task_publish.connect(add_context_headers, weak=False)


@signals.setup_logging.connect(weak=False)
def _setup_logging(**_: Any) -> None:
    """Worker and beat log through the project's structlog JSON configuration."""
    from omnify.core.logging import configure_logging

    configure_logging(get_settings())


@signals.worker_init.connect(weak=False)
def _on_worker_init(sender: Any = None, **_: Any) -> None:
    from omnify.jobs.worker import start_worker_observability

    start_worker_observability(sender)


@signals.worker_shutdown.connect(weak=False)
def _on_worker_shutdown(**_: Any) -> None:
    from omnify.jobs.worker import stop_worker_observability

    stop_worker_observability()
