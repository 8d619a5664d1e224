"""Tasks that exercise the job guarantees end to end; registered only when
``OMNIFY_JOBS_TEST_TASKS=1`` (the integration tests start real workers with it).

Their tables use a private ``MetaData`` so they never reach ``Base.metadata`` and the
migrations. The effect table has *no* unique constraint on ``key`` on purpose: the
exactly-once property under redelivery must come from :func:`omnify.jobs.idempotency.once`,
not from the table refusing a duplicate.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select

from omnify.core.db import UTCDateTime, utcnow
from omnify.jobs.base import OmnifyTask, TransientJobError
from omnify.jobs.celery_app import celery_app
from omnify.jobs.db import sync_session
from omnify.jobs.idempotency import once

test_metadata = MetaData()

effects = Table(
    "jobs_test_effects",
    test_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(255), nullable=False),
    Column("task_id", String(64)),
    Column("created_at", UTCDateTime(), nullable=False),
)

switches = Table(
    "jobs_test_switches",
    test_metadata,
    Column("name", String(255), primary_key=True),
)


def _write_effect(key: str, task_id: str | None) -> bool:
    with sync_session() as session, once(session) as first:
        if first:
            session.execute(insert(effects).values(key=key, task_id=task_id, created_at=utcnow()))
    return first


def _effect_key(key: str, *_: Any, **__: Any) -> str:
    return f"test-effect:{key}"


@celery_app.task(bind=True, name="omnify.jobs.testing.record_effect", idempotency_key=_effect_key)
def record_effect(self: OmnifyTask, key: str) -> bool:
    return _write_effect(key, self.request.id)


@celery_app.task(bind=True, name="omnify.jobs.testing.flaky", idempotency_key=_effect_key)
def flaky(self: OmnifyTask, key: str, failures: int) -> bool:
    if self.request.retries < failures:
        raise TransientJobError(f"flaky dependency, attempt {self.request.retries + 1}")
    return _write_effect(key, self.request.id)


@celery_app.task(bind=True, name="omnify.jobs.testing.always_transient", max_retries=2)
def always_transient(self: OmnifyTask, key: str) -> None:
    raise TransientJobError(f"dependency for {key} never recovers")


@celery_app.task(bind=True, name="omnify.jobs.testing.fails_until_switched", idempotency_key=_effect_key)
def fails_until_switched(self: OmnifyTask, key: str, switch: str, org_id: str | None = None) -> bool:
    with sync_session() as session:
        on = session.execute(select(switches.c.name).where(switches.c.name == switch)).first()
    if on is None:
        raise ValueError(f"switch {switch} is off")
    return _write_effect(key, self.request.id)


@celery_app.task(bind=True, name="omnify.jobs.testing.slow_effect", idempotency_key=_effect_key)
def slow_effect(self: OmnifyTask, key: str, marker_dir: str, sleep_s: float) -> bool:
    """Commit the effect, then linger: a kill now leaves it committed but unacknowledged."""
    markers = Path(marker_dir)
    with (markers / f"{key}.deliveries").open("a") as fh:
        fh.write(f"{os.getpid()} {self.request.id} {datetime.now().isoformat()}\n")
    first = _write_effect(key, self.request.id)
    (markers / f"{key}.committed").write_text(str(first))
    if first:  # the redelivered run finds the claim and returns at once
        time.sleep(sleep_s)
    return first


@celery_app.task(name="omnify.jobs.testing.sleeps")
def sleeps(seconds: float, ignore_soft_limit: bool = False) -> None:
    """Outlive a time limit; with ignore_soft_limit only the hard limit can stop it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            time.sleep(max(deadline - time.monotonic(), 0))
        except SoftTimeLimitExceeded:
            if not ignore_soft_limit:
                raise
