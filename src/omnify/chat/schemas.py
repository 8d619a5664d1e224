"""Request and response models of the chat (Slack / Teams alerts) API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from omnify.chat.models import EventKind


class WebhookConnectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["slack_webhook", "teams_webhook"]
    name: str = Field(min_length=1, max_length=200, description="e.g. #acme-alerts")
    url: str = Field(min_length=8, max_length=2048, description="The incoming webhook or Teams workflow URL "
                     "(kept encrypted; shown redacted).")


class ConnectionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: str
    name: str
    secret_hint: str
    slack_team_id: str | None
    slack_team_name: str | None
    created_at: datetime


class SlackChannelOut(BaseModel):
    id: str
    name: str
    is_private: bool


class ChannelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Z0-9]+$")


class ChannelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    connection_id: uuid.UUID
    kind: str
    name: str
    channel_ref: str
    created_at: datetime


class RouteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel_id: uuid.UUID
    event_kind: EventKind
    client_id: uuid.UUID | None = Field(None, description="One client; omit for every client.")


class RouteOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    channel_id: uuid.UUID
    event_kind: EventKind
    client_id: uuid.UUID | None
    created_at: datetime


class AuthorizeOut(BaseModel):
    authorize_url: str
