from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from omnify.connections.models import BackfillStatus, ConnectionStatus
from omnify.credentials.platforms import Platform

AccountId = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_.\-]+$")]


class AccountOut(BaseModel):
    id: str
    name: str
    currency: str
    timezone: str
    status: str
    selected: bool


class BackfillOut(BaseModel):
    status: BackfillStatus
    days: int | None = Field(description="History requested by the backfill, in days.")
    percent: float = Field(description="0-100; units are (account, stream, date window) steps.")
    rows: int = Field(description="Rows read so far.")
    units_done: int
    units_total: int
    started_at: datetime | None
    finished_at: datetime | None
    eta_seconds: float | None = Field(description="Estimated seconds left while running, from the pace so far.")


class ConnectionOut(BaseModel):
    id: uuid.UUID
    client_id: uuid.UUID
    platform: Platform
    status: ConnectionStatus
    shop_domain: str | None
    accounts: list[AccountOut] = Field(description="Ad accounts the authorization reaches; pick with PUT .../accounts.")
    selected_account_ids: list[str]
    scopes: list[str]
    token_expires_at: datetime | None
    connected_at: datetime | None
    disconnected_at: datetime | None
    last_verified_at: datetime | None
    last_error: str | None
    last_error_code: str | None
    last_synced_at: datetime | None
    last_sync_status: str | None
    next_sync_at: datetime | None
    backfill: BackfillOut
    created_at: datetime
    updated_at: datetime


class AccountSelectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_ids: list[AccountId] = Field(min_length=1, max_length=100,
                                         description="Ids from `accounts` of the connection.")

    @field_validator("account_ids")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class ConnectionTestOut(BaseModel):
    ok: bool
    status: ConnectionStatus
    last_verified_at: datetime | None
    last_error: str | None
    details: dict[str, object] = Field(default_factory=dict, description="What the platform said (no secrets).")
