"""Request and response models of the reports API."""

from __future__ import annotations

import uuid
from datetime import datetime, time
from typing import Annotated

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from omnify.reports.models import Cadence


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cadence: Cadence
    weekday: int = Field(0, ge=0, le=6, description="Weekly: the local weekday it is sent (0 = Monday).")
    day_of_month: int = Field(1, ge=1, le=28, description="Monthly: the day of the month it is sent.")
    send_time: time = Field(time(8, 0), description="Local time in the client's time zone.")
    recipients: Annotated[list[EmailStr], Field(min_length=1, max_length=20)]
    enabled: bool = True


class ScheduleUpdateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cadence: Cadence | None = None
    weekday: int | None = Field(None, ge=0, le=6)
    day_of_month: int | None = Field(None, ge=1, le=28)
    send_time: time | None = None
    recipients: Annotated[list[EmailStr], Field(min_length=1, max_length=20)] | None = None
    enabled: bool | None = None


class ScheduleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    client_id: uuid.UUID
    cadence: Cadence
    weekday: int
    day_of_month: int
    #: A wall-clock time without offset ("08:00:00"): JSON Schema's "time" format requires an
    #: offset, so responses were nonconformant (found by schemathesis); RFC 3339 calls it partial-time.
    send_time: time = Field(json_schema_extra={"format": "partial-time"})
    recipients: list[str]
    unsubscribed: list[str]
    enabled: bool
    last_period: str | None
    last_sent_at: datetime | None
    created_at: datetime


class ExportTableOut(BaseModel):
    table: str
    columns: list[str]
    dated: bool
