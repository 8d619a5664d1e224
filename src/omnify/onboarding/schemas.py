from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from omnify.credentials.platforms import Platform


class RouteHint(BaseModel):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    path: str


class StepOut(BaseModel):
    key: str = Field(description="company_info, logo, brand_assets, connect_<platform>, first_campaign_idea.")
    title: str
    done: bool
    advice: str | None = Field(description="What is missing, when not done.")
    route: RouteHint = Field(description="The API call that makes progress on this step.")


class OnboardingOut(BaseModel):
    client_id: uuid.UUID
    status: Literal["not_started", "in_progress", "completed"]
    progress: float = Field(ge=0, le=1)
    platforms: list[Platform]
    platforms_chosen: bool
    steps: list[StepOut]
    completed_steps: list[str]
    pending_steps: list[str]
    next_step: StepOut | None
    completed_at: datetime | None


class OnboardingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    platforms: list[Platform] = Field(min_length=1, max_length=len(Platform),
                                      description="The ad platforms this client will connect.")

    @field_validator("platforms")
    @classmethod
    def _unique(cls, value: list[Platform]) -> list[Platform]:
        return list(dict.fromkeys(value))
