"""Knobs of the background-job system, read from the environment (prefix ``OMNIFY_JOBS_``).

They live here rather than in :mod:`omnify.settings` while the jobs package is young;
the broker and database URLs themselves stay in the main settings (``OMNIFY_BROKER_URL``,
``OMNIFY_RESULT_BACKEND_URL``, ``OMNIFY_DATABASE_URL``) because the API process needs them
too. The lead may fold this class into :class:`omnify.settings.Settings` later; every
caller goes through :func:`get_jobs_settings`, so that move touches one function.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class JobsSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="OMNIFY_JOBS_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    #: Queue every task goes to unless it names another one. Tests set a random name so
    #: concurrent runs against one shared Redis/RabbitMQ cannot steal each other's work.
    default_queue: str = "default"

    # Retries: exponential backoff with full jitter, capped; see OmnifyTask.backoff().
    max_retries: int = Field(8, ge=0)
    retry_backoff_base: float = Field(2.0, gt=0)
    # Kept below RabbitMQ's consumer_timeout (30 min) and the Redis visibility timeout:
    # a retry is an ETA message held unacknowledged by the worker until it is due.
    retry_backoff_max: float = Field(600.0, gt=0)

    # Time limits (seconds). The soft one raises inside the task so it can clean up; the
    # hard one kills the pool process. Both need the prefork pool (solo has no timers).
    soft_time_limit: int = Field(300, gt=0)
    time_limit: int = Field(330, gt=0)

    # Redelivery of work held by a worker that died.
    #: Redis: seconds before an unacknowledged message is handed to another worker. Must
    #: exceed the longest task *and* the longest retry countdown, or work runs twice.
    visibility_timeout: int = Field(3600, ge=1)
    #: Redis: seconds between sweeps that restore messages past their visibility timeout.
    redis_restore_interval: int = Field(10, ge=1)
    #: Embedded (SQLAlchemy) broker: a delivered message is leased for this long; a live
    #: worker renews the lease every third of it, so a dead worker's message comes back
    #: after at most this many seconds while a long task is never handed out twice.
    embedded_lease_seconds: int = Field(60, ge=2)
    #: Embedded broker: how long (ms) a statement waits for another process's write lock on
    #: the broker file before it fails as a broker error (and is retried with backoff).
    embedded_busy_timeout_ms: int = Field(30000, ge=100)
    #: Seconds between polls of virtual transports (embedded broker).
    polling_interval: float = Field(1.0, gt=0)

    # Worker process
    worker_concurrency: int | None = Field(None, ge=1)
    worker_pool: str = "prefork"
    worker_max_tasks_per_child: int = Field(1000, ge=1)
    #: Port of the worker's Prometheus endpoint; 0 disables it.
    metrics_port: int = Field(9808, ge=0, le=65535)
    #: Loopback by default (a laptop's `omnify up` exposes nothing); the container image sets
    #: 0.0.0.0 so Prometheus can scrape the worker from outside the pod.
    metrics_addr: str = "127.0.0.1"
    queue_depth_interval: float = Field(15.0, gt=0)

    # Beat
    #: Overrides of :data:`omnify.jobs.schedule.DEFAULT_BEAT_SCHEDULE`, as JSON, keyed by
    #: task name: ``{"omnify.sync.run_due": {"every": 300}}``, ``{"cron": "0 3 * * *"}``,
    #: ``{"enabled": false}`` or ``null`` to drop an entry.
    beat_schedule: dict[str, Any] = Field(default_factory=dict)
    beat_schedule_file: Path | None = None
    #: Task names the beat sends once as soon as it starts, then on their schedule. Empty in
    #: production; ``omnify up`` sets the brain's sweep so a fresh demo has recommendations
    #: within a minute instead of after the first hour (JSON list in the environment).
    beat_run_at_start: list[str] = Field(default_factory=list)

    # Retention
    failure_retention_days: int = Field(30, ge=1)
    job_run_retention_days: int = Field(30, ge=1)

    #: Registers :mod:`omnify.jobs.testing_tasks` (never in production).
    test_tasks: bool = False


@lru_cache
def get_jobs_settings() -> JobsSettings:
    return JobsSettings()
