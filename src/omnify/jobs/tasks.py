"""Housekeeping tasks of the job system itself (thin: the rules are in service.py)."""

from __future__ import annotations

from omnify.jobs.celery_app import celery_app
from omnify.jobs.config import get_jobs_settings
from omnify.jobs.db import sync_session
from omnify.jobs.service import purge as purge_store


@celery_app.task(name="omnify.jobs.purge")
def purge() -> dict[str, int]:
    """Drop replayed/resolved dead letters and idempotency claims past retention."""
    jobs = get_jobs_settings()
    with sync_session() as session:
        result = purge_store(
            session,
            failures_older_than_days=jobs.failure_retention_days,
            job_runs_older_than_days=jobs.job_run_retention_days,
        )
    return {"failures": result.failures, "job_runs": result.job_runs}
