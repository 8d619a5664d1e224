"""Response models of the admin jobs API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from omnify.jobs.models import FailureStatus


class JobFailureOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    task_name: str
    task_id: str
    queue: str | None
    task_args: list[Any]
    task_kwargs: dict[str, Any]
    error_type: str
    error: str
    traceback: str | None = Field(description="Python traceback of the last attempt (operators only).")
    attempts: int
    org_id: uuid.UUID | None
    trace_id: str | None
    status: FailureStatus
    first_failed_at: datetime
    last_failed_at: datetime
    replay_count: int
    replayed_at: datetime | None
    replay_task_id: str | None
    replay_of_id: uuid.UUID | None
    resolved_at: datetime | None
    created_at: datetime


class JobFailureList(BaseModel):
    items: list[JobFailureOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last one.")


class ReplayOut(BaseModel):
    failure_id: uuid.UUID
    task_name: str
    task_id: str = Field(description="Celery id of the new run.")
    status: FailureStatus
