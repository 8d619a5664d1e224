from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from omnify.credentials.platforms import Platform

Scope = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")]


class CredentialIn(BaseModel):
    """The secrets are write-only: they are encrypted on arrival and never returned."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    secrets: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")], SecretStr] = Field(
        min_length=1, max_length=10,
        description="Platform-specific secret fields, e.g. {\"access_token\": \"...\"} for meta_ads; "
                    "google_ads needs refresh_token and developer_token; shopify needs access_token.",
    )
    account_id: str | None = Field(None, max_length=255, description="Ad account / customer / advertiser id or "
                                                                      "shop domain, per platform.")
    scopes: list[Scope] = Field(default_factory=list, max_length=100)
    expires_at: datetime | None = Field(None, description="When the access token expires (timezone required).")

    @field_validator("secrets")
    @classmethod
    def _not_blank(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, secret in value.items():
            raw = secret.get_secret_value()
            if not raw.strip() or len(raw) > 8192 or any(ord(ch) < 32 for ch in raw):
                # The field name only: a validation error must never echo the secret.
                raise ValueError(f"secret {name!r} must be 1-8192 printable characters")
        return value

    @field_validator("expires_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a timezone, e.g. 2030-01-01T00:00:00Z")
        return value

    @field_validator("scopes")
    @classmethod
    def _dedupe(cls, value: list[str]) -> list[str]:
        return sorted(set(value))


class CredentialOut(BaseModel):
    id: uuid.UUID
    client_id: uuid.UUID
    platform: Platform
    account_id: str | None
    hints: dict[str, str] = Field(description="Masked secrets, enough to recognise them, e.g. EAAB…9xQ.")
    scopes: list[str]
    expires_at: datetime | None
    status: Literal["active", "expired", "invalid"]
    last_verified_at: datetime | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
