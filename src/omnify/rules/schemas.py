"""Request and response models of the rules API."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from omnify.rules.definition import RuleDefinition
from omnify.rules.models import Rule, RuleEvaluation, RuleStatus


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(None, max_length=2000)
    definition: RuleDefinition
    dry_run: bool = Field(False, description="Record what the rule would do without doing it.")
    status: RuleStatus = RuleStatus.ACTIVE
    template: str | None = Field(None, max_length=64)


class RuleFromTemplateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template: str = Field(min_length=1, max_length=64)
    name: str | None = Field(None, min_length=1, max_length=200)
    client_ids: list[uuid.UUID] = Field(default_factory=list, max_length=500)


class RuleUpdateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=2000)
    definition: RuleDefinition | None = None
    dry_run: bool | None = None
    status: RuleStatus | None = None


class RuleOut(BaseModel):
    id: uuid.UUID
    name: str
    description: str | None
    status: RuleStatus
    dry_run: bool
    definition: dict[str, Any]
    template: str | None
    version: int
    created_by: str | None
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_status: str | None
    created_at: datetime
    updated_at: datetime


def rule_out(row: Rule) -> dict[str, Any]:
    return RuleOut(
        id=row.id, name=row.name, description=row.description, status=RuleStatus(row.status), dry_run=row.dry_run,
        definition=dict(row.definition), template=row.template, version=row.version,
        created_by=row.created_by_label, next_run_at=row.next_run_at, last_run_at=row.last_run_at,
        last_status=row.last_status, created_at=row.created_at, updated_at=row.updated_at,
    ).model_dump(mode="json")


class EvaluationOut(BaseModel):
    id: uuid.UUID
    rule_id: uuid.UUID
    rule_version: int
    trigger: str
    slot: str
    dry_run: bool
    status: str
    started_at: datetime
    finished_at: datetime | None
    as_of: dict[str, Any]
    matched: int
    acted: int
    skipped: int
    failed: int
    entities: list[dict[str, Any]] = Field(description="Each matched entity: the values that decided, the "
                                           "decision, what happened (or why it was skipped).")
    error: str | None


def evaluation_out(row: RuleEvaluation, *, with_entities: bool = True) -> dict[str, Any]:
    return EvaluationOut(
        id=row.id, rule_id=row.rule_id, rule_version=row.rule_version, trigger=row.trigger, slot=row.slot,
        dry_run=row.dry_run, status=row.status, started_at=row.started_at, finished_at=row.finished_at,
        as_of=dict(row.as_of or {}), matched=row.matched, acted=row.acted, skipped=row.skipped, failed=row.failed,
        entities=list(row.entities or []) if with_entities else [], error=row.error,
    ).model_dump(mode="json")


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    definition: RuleDefinition


class BacktestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    definition: RuleDefinition
    days: int = Field(90, ge=1, le=365, description="How many past days to replay (ending yesterday).")


class ClientPreview(BaseModel):
    client_id: uuid.UUID
    as_of: date
    matched: list[dict[str, Any]]


class PreviewOut(BaseModel):
    clients: list[ClientPreview]
    matched: int
    would_act: int


class ClientBacktest(BaseModel):
    client_id: uuid.UUID
    first_day: date
    last_day: date
    summary: dict[str, Any]
    days: list[dict[str, Any]]
    actions: list[dict[str, Any]]


class BacktestOut(BaseModel):
    clients: list[ClientBacktest]
    summary: dict[str, Any]


class TemplateOut(BaseModel):
    key: str
    name: str
    description: str
    dry_run: bool
    definition: dict[str, Any]


class LabelsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    labels: list[str] = Field(max_length=50)


class LabelsOut(BaseModel):
    level: str
    entity_id: str
    labels: list[str]
