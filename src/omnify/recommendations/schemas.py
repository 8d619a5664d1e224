from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from omnify.recommendations.models import Recommendation, RecommendationStatus


class MoneyOut(BaseModel):
    amount_minor: int = Field(description="Integer minor units (cents) of `currency`.")
    currency: str | None


class RecommendationOut(BaseModel):
    id: uuid.UUID
    client_id: uuid.UUID
    module: str = Field(description="fatigue | anomaly | allocation | ltv | ideas")
    kind: str = Field(description="pause_ad | change_budgets | investigate | win_back | idea")
    title: str
    target: dict[str, Any]
    platform: str | None
    confidence: float
    expected_impact: MoneyOut | None
    actionable: bool = Field(description="True when `POST .../apply` can carry it out.")
    action: dict[str, Any] | None
    evidence: dict[str, Any] = Field(description="The numbers behind it (money in minor units) and a short series.")
    status: RecommendationStatus
    status_changed_at: datetime | None
    status_reason: str | None
    status_changed_by: str | None
    dedupe_key: str
    brain_run_id: uuid.UUID | None
    first_seen_at: datetime
    last_seen_at: datetime
    seen_count: int
    created_at: datetime
    updated_at: datetime


def recommendation_out(row: Recommendation) -> dict[str, Any]:
    impact = (MoneyOut(amount_minor=row.impact_minor, currency=row.currency)
              if row.impact_minor is not None else None)
    return RecommendationOut(
        id=row.id, client_id=row.client_id, module=row.module, kind=row.kind, title=row.title,
        target=dict(row.target or {}), platform=row.platform, confidence=row.confidence, expected_impact=impact,
        actionable=row.action is not None, action=row.action, evidence=dict(row.evidence or {}),
        status=RecommendationStatus(row.status), status_changed_at=row.status_changed_at,
        status_reason=row.status_reason, status_changed_by=row.status_changed_by, dedupe_key=row.dedupe_key,
        brain_run_id=row.brain_run_id, first_seen_at=row.first_seen_at, last_seen_at=row.last_seen_at,
        seen_count=row.seen_count, created_at=row.created_at, updated_at=row.updated_at,
    ).model_dump(mode="json")


class DismissIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500, description="Why it does not apply; kept for the record.")

    @field_validator("reason")
    @classmethod
    def _clean(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise ValueError("must not be blank")
        return value
