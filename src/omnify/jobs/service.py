"""Rules of the dead-letter store: recording, listing, replay, resolution, purge.

Replay is split in two steps (:func:`prepare_replay`, then :func:`enqueue_replay`)
because the first is a database write and the second a broker publish: the API runs the
publish in a thread while its transaction stays open, and commits only if the publish
succeeded. A replay therefore never marks a failure "replayed" without a message in the
queue; the reverse (published, then the commit fails) can repeat a replay, which the
tasks' idempotency keys absorb.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from omnify.core.db import utcnow
from omnify.core.errors import Conflict, NotFound, ServiceUnavailable
from omnify.core.pagination import PageParams
from omnify.jobs import repository as repo
from omnify.jobs.base import HEADER_ORG_ID, HEADER_REPLAY_OF, HEADER_TRACE_ID
from omnify.jobs.db import sync_session
from omnify.jobs.models import FailureStatus, JobFailure
from omnify.settings import Settings

log = structlog.get_logger(__name__)

MAX_ERROR_CHARS = 4_000
MAX_TRACEBACK_CHARS = 64_000


@dataclass(slots=True)
class FailureRecord:
    """What the worker knows about a run it is giving up on."""

    task_name: str
    task_id: str
    args: list[Any]
    kwargs: dict[str, Any]
    error_type: str
    error: str
    traceback: str | None
    attempts: int
    org_id: str | None = None
    trace_id: str | None = None
    queue: str | None = None
    first_failed_at: datetime = field(default_factory=utcnow)
    replay_of_id: str | None = None


def _uuid_or_none(value: str | None) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def record_failure(session: Session, rec: FailureRecord) -> JobFailure:
    """Insert the dead letter, or update it when the same run is recorded again.

    The same task id can fail twice when the worker died after recording but before
    acknowledging: the broker redelivers, and the row must not double.
    """
    now = utcnow()
    error = rec.error[:MAX_ERROR_CHARS]
    tb = rec.traceback[-MAX_TRACEBACK_CHARS:] if rec.traceback else None
    existing = repo.get_failure_by_task_id(session, rec.task_id)
    if existing is not None:
        existing.error, existing.error_type, existing.traceback = error, rec.error_type, tb
        existing.attempts = max(existing.attempts, rec.attempts)
        existing.last_failed_at = now
        existing.updated_at = now
        session.flush()
        return existing
    return repo.add_failure(
        session,
        JobFailure(
            task_name=rec.task_name,
            task_id=rec.task_id,
            queue=rec.queue,
            task_args=rec.args,
            task_kwargs=rec.kwargs,
            error_type=rec.error_type,
            error=error,
            traceback=tb,
            attempts=rec.attempts,
            org_id=_uuid_or_none(rec.org_id),
            trace_id=rec.trace_id,
            first_failed_at=min(rec.first_failed_at, now),
            last_failed_at=now,
            status=FailureStatus.DEAD.value,
            replay_of_id=_uuid_or_none(rec.replay_of_id),
        ),
    )


def record_failure_safely(rec: FailureRecord, settings: Settings | None = None) -> uuid.UUID | None:
    """Record from a worker; never raises (the worker must keep consuming).

    If the database is unreachable the full record goes to the error log, the only
    place left to find it.
    """
    for attempt in (1, 2):
        try:
            with sync_session(settings) as session:
                failure = record_failure(session, rec)
                failure_id = failure.id
            log.error(
                "job.dead_lettered",
                failure_id=str(failure_id),
                task=rec.task_name,
                task_id=rec.task_id,
                attempts=rec.attempts,
                error_type=rec.error_type,
            )
            return failure_id
        except IntegrityError:
            if attempt == 2:
                break
            # Raced with another recording of the same task id: the retry updates it.
            continue
        except Exception:
            break
    log.exception("job.dead_letter_record_failed", record=_loggable(rec))
    return None


def _loggable(rec: FailureRecord) -> dict[str, Any]:
    data = asdict(rec)
    data["first_failed_at"] = rec.first_failed_at.isoformat()
    return data


# ----------------------------------------------------------------------------- reads
def list_failures(session: Session, flt: repo.FailureFilter, params: PageParams) -> Sequence[JobFailure]:
    """One page plus a look-ahead row; shape it with core.pagination (page_response)."""
    return repo.list_failures(session, flt, params)


def get_failure(session: Session, failure_id: uuid.UUID) -> JobFailure:
    failure = repo.get_failure(session, failure_id)
    if failure is None:
        raise NotFound(f"No job failure {failure_id}.")
    return failure


# ---------------------------------------------------------------------------- replay
@dataclass(frozen=True, slots=True)
class ReplayPlan:
    failure_id: uuid.UUID
    task_name: str
    task_id: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str | None
    headers: dict[str, str]


class TaskSender(Protocol):
    def send_task(self, name: str, *args: Any, **kwargs: Any) -> Any: ...


def prepare_replay(session: Session, failure_id: uuid.UUID) -> ReplayPlan:
    """Mark the failure replayed (in the caller's transaction) and say what to send."""
    failure = get_failure(session, failure_id)
    if failure.status != FailureStatus.DEAD.value:
        raise Conflict(
            f"Job failure {failure_id} is {failure.status}; only dead ones can be replayed.",
            code="job-failure-not-dead",
        )
    new_task_id = str(uuid.uuid4())
    if not repo.mark_replayed(session, failure_id, new_task_id):
        raise Conflict(
            f"Job failure {failure_id} was replayed or resolved concurrently.", code="job-failure-not-dead"
        )
    headers = {HEADER_REPLAY_OF: str(failure.id)}
    if failure.trace_id:
        headers[HEADER_TRACE_ID] = failure.trace_id
    if failure.org_id:
        headers[HEADER_ORG_ID] = str(failure.org_id)
    return ReplayPlan(
        failure_id=failure.id,
        task_name=failure.task_name,
        task_id=new_task_id,
        args=list(failure.task_args or []),
        kwargs=dict(failure.task_kwargs or {}),
        queue=failure.queue,
        headers=headers,
    )


def enqueue_replay(plan: ReplayPlan, sender: TaskSender) -> None:
    """Publish the replay with the original arguments (blocking broker I/O)."""
    options: dict[str, Any] = {"task_id": plan.task_id, "headers": plan.headers}
    if plan.queue:
        options["queue"] = plan.queue
    sender.send_task(plan.task_name, args=plan.args, kwargs=plan.kwargs, **options)
    log.info("job.replayed", failure_id=str(plan.failure_id), task=plan.task_name, task_id=plan.task_id)


def replay(session: Session, failure_id: uuid.UUID, sender: TaskSender) -> ReplayPlan:
    """Synchronous replay (CLI): commit only after the publish succeeded."""
    plan = prepare_replay(session, failure_id)
    enqueue_replay(plan, sender)
    return plan


async def replay_now(session: AsyncSession, failure_id: uuid.UUID, sender: TaskSender) -> ReplayPlan:
    """Replay from a request (the admin API and the admin page): the failure is marked
    replayed only once the message is in the queue, so a broker outage replays nothing."""
    plan = await session.run_sync(lambda s: prepare_replay(s, failure_id))
    try:
        # Publishing is blocking broker I/O; the transaction stays open meanwhile.
        await asyncio.to_thread(enqueue_replay, plan, sender)
    except Exception as exc:
        await session.rollback()
        log.error("job.replay_enqueue_failed", failure_id=str(failure_id), error=str(exc))
        raise ServiceUnavailable("The job broker is unreachable; nothing was replayed.",
                                 code="broker-unavailable") from exc
    await session.commit()
    return plan


def resolve(session: Session, failure_id: uuid.UUID) -> JobFailure:
    failure = get_failure(session, failure_id)
    if not repo.mark_resolved(session, failure_id):
        raise Conflict(
            f"Job failure {failure_id} is {failure.status}; only dead ones can be resolved.",
            code="job-failure-not-dead",
        )
    session.refresh(failure)
    return failure


# ----------------------------------------------------------------------------- purge
@dataclass(frozen=True, slots=True)
class PurgeResult:
    failures: int
    job_runs: int


def purge(
    session: Session,
    *,
    failures_older_than_days: int,
    job_runs_older_than_days: int | None = None,
    include_dead: bool = False,
) -> PurgeResult:
    """Delete replayed/resolved failures (and dead ones if asked) past retention.

    Idempotency claims are purged too when ``job_runs_older_than_days`` is given: a
    message redelivered after that long is not a realistic case, and the table would
    otherwise grow with every keyed task forever.
    """
    now = utcnow()
    statuses = [FailureStatus.REPLAYED, FailureStatus.RESOLVED]
    if include_dead:
        statuses.append(FailureStatus.DEAD)
    failures = repo.delete_failures(
        session, before=now - timedelta(days=failures_older_than_days), statuses=statuses
    )
    runs = 0
    if job_runs_older_than_days is not None:
        runs = repo.delete_job_runs(session, before=now - timedelta(days=job_runs_older_than_days))
    log.info("jobs.purged", failures=failures, job_runs=runs)
    return PurgeResult(failures, runs)
