"""Enqueue background tasks *after* the transaction that made them necessary commits.

Why after commit: a task enqueued inside the transaction can start before the commit
and find nothing (or run for a change that then rolls back). Rows written in the
transaction (e-mail outbox, webhook deliveries) are the source of truth; the task is
only a nudge so they go out at once. If the nudge is lost (broker down, process killed
between commit and publish), the beat sweeps find the rows anyway, so publishing is
best-effort and never fails the request.

Nothing is published until a process opts in with :func:`enable_celery` (the API at
start-up, workers when they load their task modules): the sweeps alone are correct, the
nudges only cut latency, and a process that never opted in (a test, a one-off script)
must not start talking to a broker as a side effect. Publishing is Celery's
``send_task`` by name, so the API process never imports worker code.
:func:`set_enqueuer` installs another publisher (tests record the calls). The lead may
move this module to ``omnify.jobs``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from omnify.core.logging import get_logger

log = get_logger(__name__)

Enqueuer = Callable[[str, dict[str, Any], float | None], None]
_PENDING_KEY = "omnify_enqueue_after_commit"
_background: set[asyncio.Future[None]] = set()


def _celery_enqueue(name: str, kwargs: dict[str, Any], countdown: float | None) -> None:
    from omnify.jobs.celery_app import celery_app

    celery_app.send_task(name, kwargs=kwargs, countdown=countdown)


_enqueuer: Enqueuer | None = None


def set_enqueuer(fn: Enqueuer | None) -> Enqueuer | None:
    """Install ``fn`` (``None``: publish nothing); returns the previous one."""
    global _enqueuer
    previous = _enqueuer
    _enqueuer = fn
    return previous


def enable_celery() -> None:
    """Publish nudges with Celery from now on (idempotent)."""
    set_enqueuer(_celery_enqueue)


def enqueue_now(name: str, kwargs: dict[str, Any], countdown: float | None = None) -> bool:
    """Publish one task; false if publishing is off or the broker refused (logged)."""
    if _enqueuer is None:
        return False
    try:
        _enqueuer(name, kwargs, countdown)
    except Exception as exc:  # a lost nudge is recovered by the sweeps
        from omnify.jobs.broker_recovery import note_broker_error

        note_broker_error("producer", exc)  # one line and omnify_jobs_broker_errors_total
        log.warning("jobs.enqueue_failed", task=name)
        return False
    return True


def _publish_all(calls: list[tuple[str, dict[str, Any], float | None]]) -> None:
    for name, kwargs, countdown in calls:
        enqueue_now(name, kwargs, countdown)


def _after_commit(session: Session) -> None:
    calls: list[tuple[str, dict[str, Any], float | None]] = session.info.pop(_PENDING_KEY, [])
    if not calls or _enqueuer is None:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        _publish_all(calls)
        return
    # Publishing is blocking network I/O: keep it off the event loop.
    future = loop.run_in_executor(None, _publish_all, calls)
    _background.add(future)
    future.add_done_callback(_background.discard)


def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)


def enqueue_after_commit(
    session: AsyncSession, name: str, kwargs: dict[str, Any], countdown: float | None = None
) -> None:
    sync = session.sync_session
    if not sync.info.get("omnify_enqueue_hooked"):
        event.listen(sync, "after_commit", _after_commit)
        event.listen(sync, "after_rollback", _after_rollback)
        sync.info["omnify_enqueue_hooked"] = True
    sync.info.setdefault(_PENDING_KEY, []).append((name, kwargs, countdown))


async def drain() -> None:
    """Wait for publishes still running in threads (graceful shutdown, tests)."""
    pending = list(_background)
    if pending:
        with contextlib.suppress(Exception):
            await asyncio.gather(*pending)
