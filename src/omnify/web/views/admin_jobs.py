"""Platform administrators' dead-letter queue: jobs that exhausted their retries, with their
error, and Replay (original arguments, once the broker has it) or Close.

The same service calls as ``/api/v1/admin/jobs/failures`` and the same guard
(``require_platform_admin``): dead letters span every organization, so no organization
role is enough. The broker comes from a dependency (``default_sender``) that tests override
with a Celery app on their own broker.
"""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from omnify.auth.deps import require_platform_admin
from omnify.auth.models import User
from omnify.core.deps import SessionDep
from omnify.jobs import service as jobs
from omnify.jobs.models import FailureStatus
from omnify.jobs.repository import FailureFilter
from omnify.jobs.router import default_sender
from omnify.web.deps import csrf_guard, user_shell
from omnify.web.paging import page_or_newest
from omnify.web.templating import render

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf_guard)])
BASE = "/admin/jobs"
PAGE = 50
PlatformAdmin = Annotated[User, Depends(require_platform_admin)]
Sender = Annotated[jobs.TaskSender, Depends(default_sender)]


@router.get(BASE)
async def failures(request: Request, admin: PlatformAdmin, session: SessionDep) -> Response:
    raw = (request.query_params.get("status") or "dead").strip()
    errors: list[str] = []
    try:
        status = FailureStatus(raw) if raw != "all" else None
    except ValueError:
        errors.append(f"Unknown status {raw[:40]!r}: showing the jobs waiting for an operator.")
        raw, status = "dead", FailureStatus.DEAD
    task = (request.query_params.get("task_name") or "").strip()[:255]
    flt = FailureFilter(status=status, task_name=task or None, org_id=None)
    items, next_cursor, _ = await page_or_newest(
        request, PAGE, lambda p: session.run_sync(lambda s: jobs.list_failures(s, flt, p)), errors, "jobs")
    query = {k: v for k, v in (("status", raw), ("task_name", task)) if v}
    return render(request, "admin/jobs.html", {
        "web": await user_shell(session, admin, "admin"), "failures": items, "errors": errors,
        "status": raw, "task_name": task, "statuses": ["all", *(s.value for s in FailureStatus)],
        "older_href": f"{BASE}?{urlencode({**query, 'cursor': next_cursor})}" if next_cursor else None})


@router.post(BASE + "/{failure_id}/replay")
async def replay(failure_id: uuid.UUID, admin: PlatformAdmin, session: SessionDep, sender: Sender) -> Response:
    await jobs.replay_now(session, failure_id, sender)
    return RedirectResponse(f"{BASE}?flash=job-replayed", status_code=303)


@router.post(BASE + "/{failure_id}/resolve")
async def resolve(failure_id: uuid.UUID, admin: PlatformAdmin, session: SessionDep) -> Response:
    await session.run_sync(lambda s: jobs.resolve(s, failure_id))
    await session.commit()
    return RedirectResponse(f"{BASE}?flash=job-resolved", status_code=303)
