"""Actions carried out on ad platforms, and the Idempotency-Key records of the apply endpoint.

An action row is the durable account of a one-click change: the plan (what was asked),
the per-entity ``changes`` with the platform's before/after state (what happened, and
what undo restores), who asked, who approved, and when it was applied or undone.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from omnify.core.db import Base, IdMixin, JSONType, TenantMixin, TimestampMixin
from omnify.recommendations import models as _recommendations  # noqa: F401  - referenced below


class ActionStatus(enum.StrEnum):
    PENDING_APPROVAL = "pending_approval"  # over the approval threshold: waits for an admin
    APPLYING = "applying"  # claimed; platform calls in flight (stays here only if the process died)
    APPLIED = "applied"
    FAILED = "failed"  # the platform refused; partial changes were reverted
    REJECTED = "rejected"  # an admin declined the pending action
    UNDOING = "undoing"
    UNDONE = "undone"


class Action(IdMixin, TimestampMixin, TenantMixin, Base):
    __tablename__ = "actions"
    __table_args__ = (
        Index("ix_actions_org_id_created_at", "org_id", "created_at"),
        Index("ix_actions_org_id_status", "org_id", "status"),
        Index("ix_actions_org_id_client_id_created_at", "org_id", "client_id", "created_at"),
        Index("ix_actions_status_applying_started_at", "status", "applying_started_at"),
    )

    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_profiles.id", ondelete="CASCADE"), index=True)
    recommendation_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("recommendations.id", ondelete="SET NULL"), index=True
    )
    module: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(40))
    platform: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(20))
    #: [{"platform", "account_id", "level", "entity_id", "name", "set": {...}}]: what will be done.
    plan: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    #: [{..., "before": {...}, "after": {...}}]: what the platform reported it changed.
    changes: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    #: Money moved per day (budget deltas, or the paused ad's daily spend), minor units.
    money_per_day_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    summary: Mapped[str] = mapped_column(String(500))
    requested_by_type: Mapped[str] = mapped_column(String(16))
    requested_by_id: Mapped[str | None] = mapped_column(String(64))
    requested_by_label: Mapped[str | None] = mapped_column(String(320))
    approved_by_label: Mapped[str | None] = mapped_column(String(320))
    approved_at: Mapped[datetime | None]
    applied_at: Mapped[datetime | None]
    undone_at: Mapped[datetime | None]
    undone_by_label: Mapped[str | None] = mapped_column(String(320))
    error: Mapped[str | None] = mapped_column(String(500))
    #: When the action was last claimed ``applying`` or ``undoing`` (before any platform call):
    #: still in that state long after it, its worker died, and the reconciliation sweep
    #: (:func:`omnify.actions.service.reconcile_interrupted`) settles it from the platform.
    applying_started_at: Mapped[datetime | None]


class IdempotencyStatus(enum.StrEnum):
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"


class IdempotencyRecord(IdMixin, TimestampMixin, TenantMixin, Base):
    """One ``Idempotency-Key`` of one caller: the request's fingerprint and the stored answer.

    Unique per (organization, principal, key): two users picking the same key do not
    collide, and a replay by the same caller gets the first answer back verbatim.
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("org_id", "principal_id", "key"),
        Index("ix_idempotency_keys_org_id_created_at", "org_id", "created_at"),
    )

    principal_id: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    #: SHA-256 of method, route and body: the same key with another request is refused.
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=IdempotencyStatus.IN_PROGRESS.value)
    response_status: Mapped[int | None]
    response_body: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    expires_at: Mapped[datetime]
