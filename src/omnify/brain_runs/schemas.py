from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from omnify.brain_runs.models import RunStatus


class BrainRunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    client_id: uuid.UUID
    trigger: str
    status: RunStatus
    started_at: datetime
    finished_at: datetime | None
    duration_ms: float | None
    timings: dict[str, Any]
    inputs: dict[str, Any]
    outcome: dict[str, Any]
    warnings: list[Any]
    error: str | None
    created_at: datetime
