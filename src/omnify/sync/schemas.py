from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from omnify.sync.models import RunMode, RunStatus


class StreamCountOut(BaseModel):
    read: int
    written: int


class SyncRunOut(BaseModel):
    id: uuid.UUID
    connection_id: uuid.UUID
    platform: str
    mode: RunMode
    trigger: str = Field(description="schedule | manual | connect | accounts")
    status: RunStatus
    accounts: list[str]
    started_at: datetime
    finished_at: datetime | None
    rows_read: int
    rows_written: int = Field(description="Rows inserted or changed; 0 when nothing changed on the platform.")
    streams: dict[str, StreamCountOut]
    error_code: str | None
    error: str | None
    created_at: datetime


def run_out(run: Any) -> dict[str, Any]:
    return SyncRunOut(
        id=run.id, connection_id=run.connection_id, platform=run.platform, mode=RunMode(run.mode),
        trigger=run.trigger, status=RunStatus(run.status), accounts=[str(a) for a in run.accounts],
        started_at=run.started_at, finished_at=run.finished_at, rows_read=run.rows_read or 0,
        rows_written=run.rows_written or 0,
        streams={str(k): StreamCountOut(read=int(v.get("read", 0)), written=int(v.get("written", 0)))
                 for k, v in (run.streams or {}).items() if isinstance(v, dict)},
        error_code=run.error_code, error=run.error, created_at=run.created_at,
    ).model_dump(mode="json")
