from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from omnify.webhooks.events import SUBSCRIBABLE


def _clean_description(value: str | None) -> str | None:
    if value is None:
        return None
    value = " ".join(value.split())
    return value or None


def _check_event_types(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    unknown = sorted(set(value) - SUBSCRIBABLE)
    if unknown:
        raise ValueError(f"unknown event type(s): {', '.join(unknown)}; known: {', '.join(sorted(SUBSCRIBABLE))}")
    return sorted(set(value))


class EndpointCreateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=8, max_length=2048, description="https:// URL that receives the POSTs.")
    description: str | None = Field(None, max_length=500)
    event_types: list[str] = Field(default_factory=list, max_length=50,
                                   description="Event types to receive; empty means all.")
    enabled: bool = True

    _description = field_validator("description")(_clean_description)
    _types = field_validator("event_types")(_check_event_types)


class EndpointUpdateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, min_length=8, max_length=2048)
    description: str | None = Field(None, max_length=500)
    event_types: list[str] | None = Field(None, max_length=50)
    enabled: bool | None = None

    _description = field_validator("description")(_clean_description)
    _types = field_validator("event_types")(_check_event_types)


class EndpointOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    url: str
    description: str | None
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    secret_hint: str
    secret_rotated_at: datetime | None
    previous_secret_expires_at: datetime | None
    failing_since: datetime | None
    last_success_at: datetime | None
    last_failure_at: datetime | None
    created_at: datetime
    updated_at: datetime


class EndpointSecretOut(EndpointOut):
    secret: str = Field(description="The signing secret (whsec_...). Shown once; store it now.")


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    number: int
    created_at: datetime
    url: str
    ip: str | None
    success: bool
    status_code: int | None
    duration_ms: int
    response_excerpt: str | None
    error: str | None


class DeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    status: Literal["pending", "succeeded", "failed"]
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    succeeded_at: datetime | None
    failed_at: datetime | None
    replay_count: int
    created_at: datetime


class DeliveryDetailOut(DeliveryOut):
    payload: dict[str, Any]
    attempt_log: list[AttemptOut]


class BulkReplayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: datetime | None = Field(None, description="Only deliveries dead-lettered at or after this time.")

    @field_validator("since")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a timezone, e.g. 2026-01-01T00:00:00Z")
        return value


class BulkReplayOut(BaseModel):
    replayed: int


class EventTypeOut(BaseModel):
    id: str = Field(description="The event type, e.g. sync.failed.")
    version: int
    description: str
    example: dict[str, Any]


class InboundAck(BaseModel):
    status: Literal["accepted", "duplicate"]
    id: uuid.UUID


class AppInboundAck(BaseModel):
    """The app-wide receiver's answer: one event per organization connected to the account."""

    status: Literal["accepted", "duplicate", "ignored"] = Field(
        description="`ignored`: no organization holds this account (nothing to do).")
    ids: list[uuid.UUID]
