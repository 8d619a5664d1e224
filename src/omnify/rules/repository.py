"""All SQL of the rules domain; every method takes the organization (the sweep excepted)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from omnify.core.db import insert_once, open_sweep
from omnify.core.pagination import PageParams, keyset
from omnify.rules.models import EntityLabel, EvaluationStatus, Rule, RuleEvaluation, RuleFiring, RuleStatus, Trigger


def add(session: AsyncSession, obj: object) -> None:
    session.add(obj)


async def get(session: AsyncSession, org_id: uuid.UUID, rule_id: uuid.UUID) -> Rule | None:
    return await session.scalar(select(Rule).where(Rule.org_id == org_id, Rule.id == rule_id))


async def list_page(session: AsyncSession, org_id: uuid.UUID, params: PageParams, *,
                    status: str | None = None) -> Sequence[Rule]:
    stmt = select(Rule).where(Rule.org_id == org_id)
    if status:
        stmt = stmt.where(Rule.status == status)
    stmt = keyset(stmt, Rule.created_at, Rule.id, params)
    return (await session.scalars(stmt)).all()


async def count(session: AsyncSession, org_id: uuid.UUID) -> int:
    return int(await session.scalar(select(func.count()).select_from(Rule).where(Rule.org_id == org_id)) or 0)


async def delete_rule(session: AsyncSession, rule: Rule) -> None:
    await session.delete(rule)


async def rules_after_sync(session: AsyncSession, org_id: uuid.UUID) -> Sequence[Rule]:
    """Active rules of the organization (the caller keeps the after_sync ones in scope)."""
    return (await session.scalars(select(Rule).where(Rule.org_id == org_id,
                                                     Rule.status == RuleStatus.ACTIVE.value))).all()


async def sweep_due(session: AsyncSession, now: datetime, limit: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(rule id, org id) of active rules due by ``now``, across organizations."""
    await open_sweep(session, "rules")
    rows = await session.execute(
        select(Rule.id, Rule.org_id)
        .where(Rule.status == RuleStatus.ACTIVE.value, Rule.next_run_at.is_not(None), Rule.next_run_at <= now)
        .order_by(Rule.next_run_at).limit(limit))
    return [(r[0], r[1]) for r in rows.all()]


# --------------------------------------------------------------------------- evaluations
async def claim_slot(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert the evaluation row; False when this rule already ran this slot."""
    return await insert_once(session, RuleEvaluation, values, ["rule_id", "slot"])


async def start_pending(session: AsyncSession, rule_id: uuid.UUID, slot: str,
                        values: dict[str, Any]) -> uuid.UUID | None:
    """Turn the slot's ``pending`` evaluation into ``running`` with ``values``; its id, or
    ``None`` if the slot has no pending evaluation (the WHERE on the status decides, so of
    two workers that meet the same pending slot one starts it)."""
    stmt = (update(RuleEvaluation)
            .where(RuleEvaluation.rule_id == rule_id, RuleEvaluation.slot == slot,
                   RuleEvaluation.status == EvaluationStatus.PENDING.value)
            .values(**values).returning(RuleEvaluation.id)
            .execution_options(synchronize_session=False))
    return (await session.execute(stmt)).scalar_one_or_none()


async def sweep_unfinished(session: AsyncSession, lapsed_before: datetime,
                           limit: int) -> list[tuple[uuid.UUID, uuid.UUID, str, str, list[str] | None, str]]:
    """(org id, rule id, slot, trigger, client ids, rule status) of scheduled and sync-triggered
    evaluations never started (``pending``) or ``running`` since before ``lapsed_before``
    (their worker died), oldest first, across organizations."""
    await open_sweep(session, "rules")
    rows = await session.execute(
        select(RuleEvaluation.org_id, RuleEvaluation.rule_id, RuleEvaluation.slot, RuleEvaluation.trigger,
               RuleEvaluation.client_ids, Rule.status)
        .join(Rule, Rule.id == RuleEvaluation.rule_id)
        .where(RuleEvaluation.trigger.in_([Trigger.SCHEDULE.value, Trigger.SYNC.value]),
               or_(RuleEvaluation.status == EvaluationStatus.PENDING.value,
                   (RuleEvaluation.status == EvaluationStatus.RUNNING.value)
                   & (RuleEvaluation.started_at < lapsed_before)))
        .order_by(RuleEvaluation.started_at).limit(limit))
    return [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows.all()]


async def evaluation_of_slot(session: AsyncSession, rule_id: uuid.UUID, slot: str) -> RuleEvaluation | None:
    return await session.scalar(select(RuleEvaluation).where(RuleEvaluation.rule_id == rule_id,
                                                             RuleEvaluation.slot == slot))


async def get_evaluation(session: AsyncSession, org_id: uuid.UUID, evaluation_id: uuid.UUID) -> RuleEvaluation | None:
    return await session.scalar(select(RuleEvaluation).where(RuleEvaluation.org_id == org_id,
                                                             RuleEvaluation.id == evaluation_id))


async def list_evaluations(session: AsyncSession, org_id: uuid.UUID, rule_id: uuid.UUID,
                           params: PageParams) -> Sequence[RuleEvaluation]:
    stmt = select(RuleEvaluation).where(RuleEvaluation.org_id == org_id, RuleEvaluation.rule_id == rule_id)
    stmt = keyset(stmt, RuleEvaluation.started_at, RuleEvaluation.id, params)
    return (await session.scalars(stmt)).all()


async def last_firings(session: AsyncSession, org_id: uuid.UUID, rule_id: uuid.UUID, entity_keys: Sequence[str],
                       *, dry_run: bool, since: datetime) -> dict[str, datetime]:
    """The latest firing per entity since ``since`` (the cooldown window)."""
    if not entity_keys:
        return {}
    rows = await session.execute(
        select(RuleFiring.entity_key, func.max(RuleFiring.fired_at))
        .where(RuleFiring.org_id == org_id, RuleFiring.rule_id == rule_id, RuleFiring.dry_run == dry_run,
               RuleFiring.fired_at >= since, RuleFiring.outcome != "failed",
               RuleFiring.entity_key.in_(list(entity_keys)))
        .group_by(RuleFiring.entity_key))
    out: dict[str, datetime] = {}
    for key, at in rows.all():
        if at is not None:
            out[str(key)] = at if at.tzinfo else at.replace(tzinfo=UTC)
    return out


async def firings_of_evaluation(session: AsyncSession, org_id: uuid.UUID,
                                evaluation_id: uuid.UUID) -> Sequence[RuleFiring]:
    return (await session.scalars(select(RuleFiring).where(RuleFiring.org_id == org_id,
                                                           RuleFiring.evaluation_id == evaluation_id))).all()


# -------------------------------------------------------------------------------- labels
async def labels_of_client(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID) -> dict[str, set[str]]:
    rows = await session.execute(select(EntityLabel.entity_id, EntityLabel.label)
                                 .where(EntityLabel.org_id == org_id, EntityLabel.client_id == client_id))
    out: dict[str, set[str]] = {}
    for entity_id, label in rows.all():
        out.setdefault(str(entity_id), set()).add(str(label))
    return out


async def labels_of_entity(session: AsyncSession, org_id: uuid.UUID, level: str, entity_id: str) -> list[str]:
    rows = await session.scalars(select(EntityLabel.label).where(
        EntityLabel.org_id == org_id, EntityLabel.level == level, EntityLabel.entity_id == entity_id)
        .order_by(EntityLabel.label))
    return list(rows.all())


async def replace_labels(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, level: str,
                         entity_id: str, labels: Sequence[str]) -> None:
    await session.execute(delete(EntityLabel).where(EntityLabel.org_id == org_id, EntityLabel.level == level,
                                                    EntityLabel.entity_id == entity_id))
    for label in sorted(set(labels)):
        session.add(EntityLabel(org_id=org_id, client_id=client_id, level=level, entity_id=entity_id, label=label))
    await session.flush()
