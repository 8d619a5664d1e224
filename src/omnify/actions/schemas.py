from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from omnify.actions.models import Action, ActionStatus


class ApplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(None, max_length=500, description="Why, for the audit log.")


class RejectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500)


class ActionOut(BaseModel):
    id: uuid.UUID
    client_id: uuid.UUID
    recommendation_id: uuid.UUID | None
    module: str
    kind: str
    platform: str | None
    status: ActionStatus
    summary: str
    plan: list[dict[str, Any]] = Field(description="What is (or was) to be changed, entity by entity.")
    changes: list[dict[str, Any]] = Field(description="What the platform changed: before and after per entity.")
    money_per_day_minor: int | None
    currency: str | None
    requires_approval: bool
    undoable: bool
    requested_by: str | None
    approved_by: str | None
    approved_at: datetime | None
    applied_at: datetime | None
    undone_at: datetime | None
    undone_by: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime


def undoable(row: Action) -> bool:
    if row.status != ActionStatus.APPLIED or not row.changes:
        return False
    for change in row.changes:
        before = change.get("before")
        if not before:  # settled from the platform after an interrupted apply: previous state unknown
            return False
        if "status" in before and before["status"] not in ("active", "paused"):
            return False
        if "daily_budget_minor" in before and not before["daily_budget_minor"]:
            return False
        if change.get("reverted"):
            return False
    return True


def action_out(row: Action) -> dict[str, Any]:
    return ActionOut(
        id=row.id, client_id=row.client_id, recommendation_id=row.recommendation_id, module=row.module,
        kind=row.kind, platform=row.platform, status=ActionStatus(row.status), summary=row.summary,
        plan=list(row.plan or []), changes=list(row.changes or []), money_per_day_minor=row.money_per_day_minor,
        currency=row.currency, requires_approval=row.approved_by_label is not None
        or row.status == ActionStatus.PENDING_APPROVAL,
        undoable=undoable(row), requested_by=row.requested_by_label, approved_by=row.approved_by_label,
        approved_at=row.approved_at, applied_at=row.applied_at, undone_at=row.undone_at,
        undone_by=row.undone_by_label, error=row.error, created_at=row.created_at, updated_at=row.updated_at,
    ).model_dump(mode="json")
