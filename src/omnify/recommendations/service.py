"""Recommendation rules: listing, dismissing, and merging a brain run's findings.

Merging (:func:`merge_findings`) is what keeps the list useful across hourly runs:

* a finding whose natural key (client, ``dedupe_key``) is new becomes an **open**
  recommendation and emits ``recommendation.created``;
* the same finding again refreshes the open row (evidence, confidence, impact, last
  seen) - no duplicate, no second event;
* an open recommendation the run no longer finds is **expired** (the condition is gone);
  if it comes back later it is reopened and announced again;
* **applied** and **dismissed** rows keep their status whatever later runs say: a user's
  decision is not overridden by the next run (only ``last_seen_at`` moves).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from omnify.audit import service as audit
from omnify.core.context import Actor
from omnify.core.db import utcnow
from omnify.core.errors import Conflict, NotFound
from omnify.core.pagination import PageParams
from omnify.events import service as events
from omnify.recommendations import repository
from omnify.recommendations.models import Recommendation, RecommendationStatus
from omnify.recommendations.repository import Filters

EXPIRED_REASON = "No longer found by the latest brain run."


class RecommendationNotOpen(Conflict):
    code, title = "recommendation-not-open", "Recommendation is not open"


@dataclass(frozen=True, slots=True)
class Finding:
    """A brain recommendation translated to storage terms (money as minor units)."""

    module: str
    kind: str
    dedupe_key: str
    title: str
    target: dict[str, Any]
    platform: str | None
    confidence: float
    impact_minor: int | None
    currency: str | None
    action: dict[str, Any] | None
    evidence: dict[str, Any]


@dataclass(frozen=True, slots=True)
class MergeOutcome:
    created: int
    updated: int
    reopened: int
    expired: int
    untouched: int

    def to_dict(self) -> dict[str, int]:
        return {"created": self.created, "updated": self.updated, "reopened": self.reopened,
                "expired": self.expired, "untouched": self.untouched}


# ------------------------------------------------------------------------------- reads
async def get(session: AsyncSession, org_id: uuid.UUID, rec_id: uuid.UUID) -> Recommendation:
    row = await repository.get(session, org_id, rec_id)
    if row is None:
        raise NotFound("Recommendation not found.")
    return row


async def by_dedupe_key(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID,
                        key: str) -> Recommendation | None:
    """One client's recommendation by its natural key (automation rules find what they created)."""
    return (await repository.by_keys(session, org_id, client_id, [key])).get(key)


async def list_recommendations(
    session: AsyncSession, org_id: uuid.UUID, params: PageParams, filters: Filters
) -> Sequence[Recommendation]:
    return await repository.list_page(session, org_id, params, filters)


async def open_counts(session: AsyncSession, org_id: uuid.UUID) -> dict[uuid.UUID, int]:
    """Open recommendations per client (the inbox badge and the overview)."""
    return await repository.open_counts(session, org_id)


# ------------------------------------------------------------------------------ writes
async def dismiss(
    session: AsyncSession, org_id: uuid.UUID, actor: Actor, rec_id: uuid.UUID, reason: str
) -> Recommendation:
    row = await get(session, org_id, rec_id)
    if row.status != RecommendationStatus.OPEN:
        raise RecommendationNotOpen(f"Only an open recommendation can be dismissed; this one is {row.status}.")
    now = utcnow()
    if not await repository.claim_status(session, org_id, rec_id, expected=RecommendationStatus.OPEN.value,
                                         new=RecommendationStatus.DISMISSED.value, at=now, by=actor.label):
        raise RecommendationNotOpen("The recommendation changed meanwhile; reload it.")
    await session.refresh(row)
    row.status_reason = reason
    await audit.record(session, org_id, actor, "recommendation.dismissed", target_type="recommendation",
                       target_id=rec_id, changes={"client_id": str(row.client_id), "module": row.module,
                                                  "title": row.title, "reason": reason})
    await session.commit()
    return row


def created_payload(row: Recommendation) -> dict[str, Any]:
    return {
        "recommendation_id": row.id, "client_id": row.client_id, "module": row.module, "kind": row.kind,
        "title": row.title, "confidence": row.confidence, "platform": row.platform,
        "expected_impact": ({"amount_minor": row.impact_minor, "currency": row.currency}
                            if row.impact_minor is not None else None),
        "actionable": row.action is not None,
    }


def _refresh(row: Recommendation, f: Finding, run_id: uuid.UUID | None, now: datetime) -> None:
    row.module, row.kind, row.title = f.module, f.kind, f.title[:300]
    row.target, row.platform, row.confidence = f.target, f.platform, f.confidence
    row.impact_minor, row.currency, row.action, row.evidence = f.impact_minor, f.currency, f.action, f.evidence
    row.brain_run_id = run_id
    row.last_seen_at = now
    row.seen_count = (row.seen_count or 0) + 1


async def merge_findings(
    session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, findings: Sequence[Finding],
    run_id: uuid.UUID | None, *, expire_missing: bool = True,
) -> MergeOutcome:
    """Upsert a run's findings by natural key; the caller commits (with its run record)."""
    now = utcnow()
    unique: dict[str, Finding] = {}
    for f in findings:
        unique.setdefault(f.dedupe_key, f)  # the brain's first (strongest) wins on a key clash
    existing = await repository.by_keys(session, org_id, client_id, list(unique))
    created = updated = reopened = untouched = 0
    announce: list[Recommendation] = []
    for key, f in unique.items():
        row = existing.get(key)
        if row is None:
            row = Recommendation(id=uuid.uuid4(), org_id=org_id, client_id=client_id, dedupe_key=key,
                                 status=RecommendationStatus.OPEN.value, first_seen_at=now, seen_count=0,
                                 created_at=now, updated_at=now)
            _refresh(row, f, run_id, now)
            repository.add(session, row)
            announce.append(row)
            created += 1
        elif row.status == RecommendationStatus.OPEN:
            _refresh(row, f, run_id, now)
            updated += 1
        elif row.status == RecommendationStatus.EXPIRED:
            _refresh(row, f, run_id, now)
            row.status, row.status_changed_at, row.status_reason, row.status_changed_by = (
                RecommendationStatus.OPEN.value, now, None, None)
            announce.append(row)
            reopened += 1
        else:  # applied / dismissed: the user's decision stands
            row.last_seen_at = now
            row.seen_count = (row.seen_count or 0) + 1
            untouched += 1
    expired = 0
    if expire_missing:
        for row in await repository.open_for_client(session, org_id, client_id):
            if row.dedupe_key not in unique:
                row.status, row.status_changed_at = RecommendationStatus.EXPIRED.value, now
                row.status_reason, row.status_changed_by = EXPIRED_REASON, "brain"
                expired += 1
    await session.flush()
    for row in announce:
        await events.emit(session, org_id, "recommendation.created", created_payload(row))
    return MergeOutcome(created, updated, reopened, expired, untouched)


# ----------------------------------------------------------- used by the actions domain
async def claim_for_apply(session: AsyncSession, org_id: uuid.UUID, rec_id: uuid.UUID, by: str | None) -> bool:
    """Open -> applied, atomically; False when someone else moved it first."""
    return await repository.claim_status(session, org_id, rec_id, expected=RecommendationStatus.OPEN.value,
                                         new=RecommendationStatus.APPLIED.value, at=utcnow(), by=by)


async def reopen_after_undo(session: AsyncSession, org_id: uuid.UUID, rec_id: uuid.UUID, by: str | None) -> bool:
    """Applied -> open, when its action was undone or failed (the finding still stands)."""
    return await repository.claim_status(session, org_id, rec_id, expected=RecommendationStatus.APPLIED.value,
                                         new=RecommendationStatus.OPEN.value, at=utcnow(), by=by)
