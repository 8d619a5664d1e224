from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from omnify.clients.validators import CurrencyCode, HexColor, MultiLine, OneLine, Phone, TimeZoneName, WebUrl

MAX_METADATA_BYTES = 20_000
Tag = Annotated[str, Field(min_length=1, max_length=50)]


class Brand(BaseModel):
    """The client's brand as the agency describes it; every part is optional."""

    model_config = ConfigDict(extra="forbid")

    colors: list[HexColor] = Field(default_factory=list, max_length=20, description="Hex colours, e.g. #1A2B3C.")
    tone_of_voice: Annotated[MultiLine, Field(max_length=2000)] | None = None
    target_audience: Annotated[MultiLine, Field(max_length=2000)] | None = None
    competitors: list[Annotated[OneLine, Field(max_length=200)]] = Field(default_factory=list, max_length=50)

    @field_validator("colors", "competitors")
    @classmethod
    def _dedupe(cls, value: list[str]) -> list[str]:
        seen: dict[str, None] = {}
        for item in value:
            seen.setdefault(item, None)
        return list(seen)


def _tags(value: list[str]) -> list[str]:
    out: dict[str, None] = {}
    for tag in value:
        cleaned = " ".join(tag.split()).lower()
        if not cleaned:
            raise ValueError("tags must not be blank")
        out.setdefault(cleaned, None)
    return list(out)


def _metadata(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if any(len(k) > 64 for k in value):
        raise ValueError("metadata keys are limited to 64 characters")
    if len(json.dumps(value, default=str)) > MAX_METADATA_BYTES:
        raise ValueError(f"metadata is limited to {MAX_METADATA_BYTES} bytes of JSON")
    return value


class _ClientFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    industry: Annotated[OneLine, Field(max_length=100)] | None = None
    website: Annotated[WebUrl, Field(max_length=2048)] | None = None
    description: Annotated[MultiLine, Field(max_length=5000)] | None = None
    contact_name: Annotated[OneLine, Field(max_length=200)] | None = None
    contact_email: EmailStr | None = None
    contact_phone: Annotated[Phone, Field(max_length=32)] | None = Field(
        None, description="International number; stored as E.164, e.g. +14155552671.")
    timezone: Annotated[TimeZoneName, Field(max_length=64)] | None = Field(
        None, description="IANA time zone, e.g. Europe/Paris.")
    currency: Annotated[CurrencyCode, Field(max_length=3)] | None = Field(
        None, description="ISO 4217 code, e.g. EUR.")
    status: Literal["active", "paused"] | None = None
    brand: Brand | None = None
    tags: list[Tag] | None = Field(None, max_length=50)
    metadata: dict[str, Any] | None = Field(None, description="Free-form JSON (at most 20 KB).")

    @field_validator("tags")
    @classmethod
    def _clean_tags(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _tags(value)

    @field_validator("metadata")
    @classmethod
    def _small_metadata(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return _metadata(value)


class ClientCreateIn(_ClientFields):
    company_name: Annotated[OneLine, Field(min_length=1, max_length=200)]


class ClientUpdateIn(_ClientFields):
    """PATCH: only the fields sent change; ``null`` clears an optional field."""

    company_name: Annotated[OneLine, Field(min_length=1, max_length=200)] | None = None

    @field_validator("company_name")
    @classmethod
    def _required(cls, value: str | None) -> str | None:
        if value is None:
            raise ValueError("company_name cannot be cleared")
        return value


class ClientOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    company_name: str
    industry: str | None
    website: str | None
    description: str | None
    contact_name: str | None
    contact_email: str | None
    contact_phone: str | None
    timezone: str | None
    currency: str | None
    status: Literal["active", "paused", "archived"]
    brand: Brand
    tags: list[str]
    metadata: dict[str, Any]
    archived_at: datetime | None
    purge_after: datetime | None = Field(None, description="When an archived client is purged for good.")
    created_at: datetime
    updated_at: datetime
