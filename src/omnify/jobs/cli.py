"""``omnify jobs ...`` and the ``omnify worker`` / ``omnify beat`` entry points.

The CLI talks to the database with the synchronous engine (no event loop needed for an
operator's one-off command) and publishes replays through the same Celery app the API
uses, so a replay from either place is the same message.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import typer

from omnify.core.errors import AppError
from omnify.core.pagination import PageParams, paginate_rows
from omnify.jobs.config import get_jobs_settings
from omnify.jobs.models import FailureStatus, JobFailure
from omnify.jobs.repository import FailureFilter

jobs_app = typer.Typer(help="Background jobs: dead letters and their replay.", no_args_is_help=True)
failures_app = typer.Typer(help="Jobs that exhausted their retries (dead letters).", no_args_is_help=True)
jobs_app.add_typer(failures_app, name="failures")


def _fail(exc: AppError) -> NoReturn:
    typer.secho(f"error: {exc.detail}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=1)


@contextmanager
def _operator_errors() -> Iterator[None]:
    """One readable line instead of a traceback when the database or broker is the problem."""
    from kombu.exceptions import OperationalError as BrokerError
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except AppError as exc:
        _fail(exc)
    except SQLAlchemyError as exc:
        detail = str(exc.__cause__ or exc).splitlines()[0]
        typer.secho(f"error: database: {detail} (is it migrated? `omnify migrate up`)", fg=typer.colors.RED,
                    err=True)
        raise typer.Exit(code=2) from exc
    except BrokerError as exc:
        typer.secho(f"error: broker unreachable: {exc}; nothing was replayed", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from exc


def _as_dict(failure: JobFailure, *, with_traceback: bool) -> dict[str, Any]:
    from omnify.jobs.schemas import JobFailureOut

    data = JobFailureOut.model_validate(failure).model_dump(mode="json")
    if not with_traceback:
        data.pop("traceback", None)
    return data


@failures_app.command("list")
def list_failures(
    status: Annotated[FailureStatus | None, typer.Option(help="dead, replayed or resolved")] = FailureStatus.DEAD,
    all_statuses: Annotated[bool, typer.Option("--all", help="Every status.")] = False,
    task: Annotated[str | None, typer.Option(help="Only this task name.")] = None,
    org: Annotated[uuid.UUID | None, typer.Option(help="Only this organization id.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    cursor: Annotated[str | None, typer.Option(help="Continue after a previous page.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Newest first."""
    from omnify.jobs import service
    from omnify.jobs.db import sync_session

    flt = FailureFilter(status=None if all_statuses else status, task_name=task, org_id=org)
    with _operator_errors(), sync_session() as session:
        params = PageParams(limit=limit, cursor=cursor)
        items, next_cursor = paginate_rows(service.list_failures(session, flt, params), params)
        rows = [_as_dict(f, with_traceback=False) for f in items]
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
    else:
        if not rows:
            typer.echo("no job failures")
        for row in rows:
            error = str(row["error"]).replace("\n", " ")[:80]
            typer.echo(
                f"{row['id']}  {row['status']:<8}  {row['last_failed_at']}  "
                f"attempts={row['attempts']}  {row['task_name']}  {row['error_type']}: {error}"
            )
    if next_cursor:
        typer.echo(f"next page: --cursor {next_cursor}", err=True)


@failures_app.command("show")
def show_failure(failure_id: uuid.UUID) -> None:
    """Everything recorded about one failure, traceback included (JSON)."""
    from omnify.jobs import service
    from omnify.jobs.db import sync_session

    with _operator_errors(), sync_session() as session:
        data = _as_dict(service.get_failure(session, failure_id), with_traceback=True)
    typer.echo(json.dumps(data, indent=2))


@failures_app.command("replay")
def replay_failure(failure_id: uuid.UUID) -> None:
    """Re-enqueue the task with its original arguments; marks the failure replayed."""
    from omnify.jobs import service
    from omnify.jobs.celery_app import celery_app
    from omnify.jobs.db import sync_session

    with _operator_errors(), sync_session() as session:
        plan = service.replay(session, failure_id, celery_app)
    typer.echo(f"replayed {plan.failure_id} as task {plan.task_id} ({plan.task_name})")


@failures_app.command("resolve")
def resolve_failure(failure_id: uuid.UUID) -> None:
    """Close a failure without replaying it (the purge removes it later)."""
    from omnify.jobs import service
    from omnify.jobs.db import sync_session

    with _operator_errors(), sync_session() as session:
        service.resolve(session, failure_id)
    typer.echo(f"resolved {failure_id}")


@failures_app.command("purge")
def purge_failures(
    older_than_days: Annotated[
        int | None, typer.Option(min=0, help="Default: OMNIFY_JOBS_FAILURE_RETENTION_DAYS.")
    ] = None,
    include_dead: Annotated[
        bool, typer.Option("--include-dead", help="Also delete failures nobody replayed or resolved.")
    ] = False,
) -> None:
    """Delete replayed and resolved failures older than the retention."""
    from omnify.jobs import service
    from omnify.jobs.db import sync_session

    days = get_jobs_settings().failure_retention_days if older_than_days is None else older_than_days
    with _operator_errors(), sync_session() as session:
        result = service.purge(session, failures_older_than_days=days, include_dead=include_dead)
    typer.echo(f"purged {result.failures} job failure(s) older than {days} day(s)")


# ---------------------------------------------------------------------------- processes
def worker_command(
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", "-c", min=1, help="Pool processes (default: CPUs).")
    ] = None,
    pool: Annotated[str | None, typer.Option(help="prefork (default), solo or threads.")] = None,
    queues: Annotated[str | None, typer.Option("--queues", "-Q", help="Comma-separated queues.")] = None,
    loglevel: Annotated[str, typer.Option("--loglevel", "-l")] = "INFO",
    metrics_port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Prometheus port (default 9808, 0 = off).")
    ] = None,
    with_beat: Annotated[
        bool, typer.Option("--beat", help="Embed the scheduler (single-process development only).")
    ] = False,
) -> None:
    """Run a Celery worker (metrics on their own port; see omnify.jobs.worker)."""
    from omnify.jobs.celery_app import celery_app

    jobs = get_jobs_settings()
    if metrics_port is not None:
        jobs.metrics_port = metrics_port
    argv = [
        "worker",
        f"--pool={pool or jobs.worker_pool}",
        f"--loglevel={loglevel}",
        # Gossip and mingle cost start-up time and broker chatter for features we do not use.
        "--without-gossip",
        "--without-mingle",
    ]
    if concurrency or jobs.worker_concurrency:
        argv.append(f"--concurrency={concurrency or jobs.worker_concurrency}")
    if queues:
        argv.append(f"--queues={queues}")
    if with_beat:
        argv.append("--beat")
    celery_app.worker_main(argv)


def beat_command(
    loglevel: Annotated[str, typer.Option("--loglevel", "-l")] = "INFO",
) -> None:
    """Run the periodic scheduler (exactly one per deployment)."""
    from omnify.jobs.celery_app import celery_app

    celery_app.start(["beat", f"--loglevel={loglevel}"])
