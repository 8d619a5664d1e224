"""Automation rules, their evaluations, the per-entity firings, and entity labels.

* ``rules``: the definition (validated JSON, see :mod:`omnify.rules.definition`), its
  status (active / paused), dry-run flag and when it is next due. The beat sweep reads
  due rules across organizations, so the read policy also admits a transaction that
  opened ``app.sweep`` for this table (as the webhook sweeps do).
* ``rule_evaluations``: one row per run (scheduled, after a sync, manual, dry run), with
  every matched entity, the values that decided, and what was done or skipped and why.
  A scheduled slot's row is written ``pending`` in the transaction that advances the
  rule's ``next_run_at``, so a worker that dies before evaluating it loses nothing.
  ``(rule_id, slot)`` is unique: two workers (or a beat tick racing a sync trigger) that
  pick the same scheduled slot run it once.
* ``rule_firings``: one row per entity acted on; the cooldown reads the latest per
  entity, and each links to the action (undo) or recommendation it created.
* ``entity_labels``: labels users put on ads and campaigns, for rule scopes.
"""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from omnify.actions import models as _actions  # noqa: F401  - actions.id is referenced below
from omnify.core.db import Base, IdMixin, JSONType, TenantMixin, TimestampMixin
from omnify.webhooks.models import sweep_clause


class RuleStatus(enum.StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"


class EvaluationStatus(enum.StrEnum):
    #: A scheduled slot recorded by the beat job when it advanced the rule's next run,
    #: not started yet: a sweep starts it if the job's worker died first.
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Trigger(enum.StrEnum):
    SCHEDULE = "schedule"
    SYNC = "sync"
    MANUAL = "manual"


class FiringOutcome(enum.StrEnum):
    APPLIED = "applied"
    PENDING_APPROVAL = "pending_approval"
    RECOMMENDED = "recommended"
    NOTIFIED = "notified"
    DRY_RUN = "dry_run"
    FAILED = "failed"


class Rule(IdMixin, TimestampMixin, TenantMixin, Base):
    __tablename__ = "rules"
    __table_args__ = (
        Index("ix_rules_org_id_created_at", "org_id", "created_at"),
        Index("ix_rules_status_next_run_at", "status", "next_run_at"),
    )
    __rls_extra__ = sweep_clause("rules")

    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=RuleStatus.ACTIVE.value)
    dry_run: Mapped[bool] = mapped_column(default=False)
    definition: Mapped[dict[str, Any]] = mapped_column(JSONType)
    #: The template it was made from (stop_loss, ...), for the UI.
    template: Mapped[str | None] = mapped_column(String(64))
    #: Incremented on every change of the definition; evaluations record the version they ran.
    version: Mapped[int] = mapped_column(default=1)
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    created_by_label: Mapped[str | None] = mapped_column(String(320))
    next_run_at: Mapped[datetime | None]
    last_run_at: Mapped[datetime | None]
    last_status: Mapped[str | None] = mapped_column(String(16))


class RuleEvaluation(IdMixin, TenantMixin, Base):
    __tablename__ = "rule_evaluations"
    __table_args__ = (
        UniqueConstraint("rule_id", "slot"),
        Index("ix_rule_evaluations_org_id_rule_id_started_at", "org_id", "rule_id", "started_at"),
        Index("ix_rule_evaluations_status_started_at", "status", "started_at"),
    )
    #: The beat sweep starts pending slots and redoes lapsed ones across organizations.
    __rls_extra__ = sweep_clause("rules")

    rule_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("rules.id", ondelete="CASCADE"))
    rule_version: Mapped[int]
    trigger: Mapped[str] = mapped_column(String(16))
    #: The scheduled slot (or a unique key for manual and sync-triggered runs).
    slot: Mapped[str] = mapped_column(String(120))
    dry_run: Mapped[bool]
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    #: The evaluation day per client (its time zone): {client_id: "YYYY-MM-DD"}.
    as_of: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    matched: Mapped[int] = mapped_column(default=0)
    acted: Mapped[int] = mapped_column(default=0)
    skipped: Mapped[int] = mapped_column(default=0)
    failed: Mapped[int] = mapped_column(default=0)
    #: [{entity, values, decision, outcome, reason, action_id, recommendation_id}], at most 500.
    entities: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    error: Mapped[str | None] = mapped_column(String(1000))
    #: The clients a scheduled daily slot is for (their local day matched it); ``None``:
    #: every client in the rule's scope. Kept so a sweep evaluates exactly that slot.
    client_ids: Mapped[list[str] | None] = mapped_column(JSONType)


class RuleFiring(IdMixin, TenantMixin, Base):
    __tablename__ = "rule_firings"
    __table_args__ = (
        Index("ix_rule_firings_rule_id_entity_key_fired_at", "rule_id", "entity_key", "fired_at"),
        Index("ix_rule_firings_org_id_fired_at", "org_id", "fired_at"),
    )

    rule_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("rules.id", ondelete="CASCADE"))
    evaluation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("rule_evaluations.id", ondelete="CASCADE"),
                                                     index=True)
    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_profiles.id", ondelete="CASCADE"), index=True)
    entity_key: Mapped[str] = mapped_column(String(64))
    level: Mapped[str] = mapped_column(String(16))
    effect: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(20))
    dry_run: Mapped[bool]
    action_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("actions.id", ondelete="SET NULL"), index=True)
    recommendation_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("recommendations.id", ondelete="SET NULL"), index=True)
    fired_at: Mapped[datetime]
    as_of: Mapped[date] = mapped_column(Date)


class EntityLabel(IdMixin, TimestampMixin, TenantMixin, Base):
    __tablename__ = "entity_labels"
    __table_args__ = (
        UniqueConstraint("org_id", "level", "entity_id", "label"),
        Index("ix_entity_labels_org_id_client_id", "org_id", "client_id"),
    )

    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_profiles.id", ondelete="CASCADE"), index=True)
    level: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(64))
