from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from omnify.campaigns.models import IdeaStatus, Objective
from omnify.clients.validators import CurrencyCode, MultiLine, OneLine
from omnify.credentials.platforms import Platform

Money = Annotated[Decimal, Field(ge=0, le=Decimal("999999999999.99"), max_digits=14, decimal_places=2)]


class _IdeaFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: Annotated[MultiLine, Field(max_length=10_000)] | None = None
    objective: Objective | None = None
    target_audience: Annotated[MultiLine, Field(max_length=2000)] | None = None
    platforms: list[Platform] | None = Field(None, max_length=len(Platform))
    budget_amount: Money | None = Field(None, description="Decimal with at most 2 places, e.g. \"2500.00\".")
    budget_currency: Annotated[CurrencyCode, Field(max_length=3)] | None = None
    start_date: date | None = None
    end_date: date | None = None
    attached_file_ids: list[uuid.UUID] | None = Field(None, max_length=50,
                                                      description="Files of the same client.")

    @field_validator("platforms")
    @classmethod
    def _unique_platforms(cls, value: list[Platform] | None) -> list[Platform] | None:
        return None if value is None else list(dict.fromkeys(value))

    @field_validator("attached_file_ids")
    @classmethod
    def _unique_files(cls, value: list[uuid.UUID] | None) -> list[uuid.UUID] | None:
        return None if value is None else list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise ValueError("end_date must not be before start_date")
        return self


class IdeaCreateIn(_IdeaFields):
    title: Annotated[OneLine, Field(min_length=1, max_length=200)]

    @model_validator(mode="after")
    def _budget_pair(self) -> Self:
        if (self.budget_amount is None) != (self.budget_currency is None):
            raise ValueError("give budget_amount and budget_currency together")
        return self


class IdeaUpdateIn(_IdeaFields):
    """PATCH: only the fields sent change; the status changes through /status."""

    title: Annotated[OneLine, Field(min_length=1, max_length=200)] | None = None

    @field_validator("title")
    @classmethod
    def _required(cls, value: str | None) -> str | None:
        if value is None:
            raise ValueError("title cannot be cleared")
        return value


class IdeaStatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: IdeaStatus


class IdeaOut(BaseModel):
    id: uuid.UUID
    client_id: uuid.UUID
    title: str
    description: str | None
    objective: Objective | None
    target_audience: str | None
    platforms: list[Platform]
    budget_amount: Decimal | None = Field(description="Serialised as a string to keep cents exact.")
    budget_currency: str | None
    start_date: date | None
    end_date: date | None
    attached_file_ids: list[uuid.UUID]
    status: IdeaStatus
    allowed_transitions: list[IdeaStatus]
    status_changed_at: datetime | None
    created_at: datetime
    updated_at: datetime
