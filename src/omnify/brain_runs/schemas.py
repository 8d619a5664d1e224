from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from omnify.brain.calendar import supported_countries
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


class CalendarEventIn(BaseModel):
    """A market event of the client's own (a sale, a launch): at most 31 days."""

    model_config = ConfigDict(extra="forbid")

    start: date
    end: date
    name: str = Field(min_length=1, max_length=100)

    @model_validator(mode="after")
    def _span(self) -> CalendarEventIn:
        if self.end < self.start:
            raise ValueError("end is before start")
        if (self.end - self.start).days > 30:
            raise ValueError("an event lasts at most 31 days")
        return self


class CalendarIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    country: str | None = Field(default=None, description="ISO 3166-1 alpha-2 code; null for no country calendar")
    added: list[CalendarEventIn] = Field(default_factory=list, max_length=200)
    removed: list[date] = Field(default_factory=list, max_length=400)

    @field_validator("country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        if value is None:
            return None
        code = value.strip().upper()
        if code not in supported_countries():
            raise ValueError(f"{value!r} is not a country with a holiday calendar (ISO 3166-1 alpha-2, e.g. US)")
        return code


class CalendarDayOut(BaseModel):
    date: date
    name: str
    kind: str


class CalendarOut(BaseModel):
    client_id: uuid.UUID
    country: str | None
    added: list[CalendarEventIn]
    removed: list[date]
    year: int
    days: list[CalendarDayOut] = Field(description="The year's market days the brain uses, after the client's edits")
