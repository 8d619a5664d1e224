"""Admin endpoints over the dead-letter store (mounted under ``/api/v1``).

Platform administrators only (``omnify.auth.deps.require_platform_admin``): dead letters
span every organization. :func:`build_router` takes the guard and the publisher as
parameters so tests can give a Celery app on their own broker; production wiring is
``api_router.include_router(build_router())`` (the guard defaults to the platform-admin one).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, status
from fastapi.responses import JSONResponse

from omnify.core.deps import SessionDep
from omnify.core.pagination import PageParams, fields_param, page_params, page_response
from omnify.jobs import service
from omnify.jobs.models import FailureStatus
from omnify.jobs.repository import FailureFilter
from omnify.jobs.schemas import JobFailureList, JobFailureOut, ReplayOut


def default_sender() -> service.TaskSender:
    from omnify.jobs.celery_app import celery_app

    return celery_app


def build_router(
    require_admin: Callable[..., Any] | None = None,
    sender: Callable[[], service.TaskSender] = default_sender,
) -> APIRouter:
    """Routes guarded by ``require_admin``; ``sender`` gives the Celery app to publish with."""
    if require_admin is None:
        from omnify.auth.deps import require_platform_admin

        require_admin = require_platform_admin
    router = APIRouter(prefix="/admin/jobs", tags=["admin: jobs"], dependencies=[Depends(require_admin)])

    @router.get(
        "/failures",
        response_model=JobFailureList,
        summary="List dead-lettered jobs, newest first",
    )
    async def list_failures(
        session: SessionDep,
        params: Annotated[PageParams, Depends(page_params)],
        fields: Annotated[set[str] | None, Depends(fields_param)],
        status_: Annotated[FailureStatus | None, Query(alias="status")] = None,
        task_name: Annotated[str | None, Query(max_length=255)] = None,
        org_id: uuid.UUID | None = None,
    ) -> JSONResponse:
        flt = FailureFilter(status=status_, task_name=task_name, org_id=org_id)
        rows = await session.run_sync(lambda s: service.list_failures(s, flt, params))
        return page_response(JobFailureOut, rows, params, fields)

    @router.get("/failures/{failure_id}", response_model=JobFailureOut, summary="One dead-lettered job")
    async def get_failure(failure_id: uuid.UUID, session: SessionDep) -> JobFailureOut:
        failure = await session.run_sync(lambda s: service.get_failure(s, failure_id))
        return JobFailureOut.model_validate(failure)

    @router.post(
        "/failures/{failure_id}/replay",
        response_model=ReplayOut,
        status_code=status.HTTP_202_ACCEPTED,
        summary="Re-enqueue a dead-lettered job with its original arguments",
    )
    async def replay_failure(failure_id: uuid.UUID, session: SessionDep) -> ReplayOut:
        plan = await service.replay_now(session, failure_id, sender())
        return ReplayOut(
            failure_id=plan.failure_id,
            task_name=plan.task_name,
            task_id=plan.task_id,
            status=FailureStatus.REPLAYED,
        )

    @router.post(
        "/failures/{failure_id}/resolve",
        response_model=JobFailureOut,
        summary="Close a dead-lettered job without replaying it",
    )
    async def resolve_failure(failure_id: uuid.UUID, session: SessionDep) -> JobFailureOut:
        failure = await session.run_sync(lambda s: service.resolve(s, failure_id))
        out = JobFailureOut.model_validate(failure)
        await session.commit()
        return out

    return router
