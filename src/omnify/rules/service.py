"""Automation rules: CRUD, live runs, preview, backtest and history.

A live run of one rule for one slot (:func:`run_rule`):

1. **Claim the slot**: insert the evaluation row (unique per rule and slot) and commit,
   so a slot runs once however many workers or triggers reach it.
2. **Evaluate** each client in scope on its own calendar day (its time zone): load the
   frame, evaluate the conditions and the minimum-data guard, and decide entity by
   entity with the cooldowns read from earlier firings and the cap per run
   (:mod:`omnify.rules.engine`, the same code the backtest replays).
3. **Act through the one-click path**: every entity change becomes a recommendation
   (module ``rules``) applied by :func:`omnify.actions.service.apply` as the rule's
   author, so the organization's guardrails (roles, daily budget cap), the approval
   threshold, the audit log, the ``action.applied`` event and undo are exactly those of
   a human click. A ``recommend`` action stops after creating the recommendation; a dry
   run stops before anything is created.
4. **Record** every matched entity with the values that decided, the decision and the
   outcome (applied, pending approval, recommended, skipped with the reason, failed with
   the platform's or guardrail's answer), then emit ``rule.fired`` for the alert routes
   and webhooks, and queue the e-mails a notify action asks for.

The run acts as the user who wrote the rule: a rule never does what its author could
not do by hand, and a rule whose author left the organization stops acting.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from omnify.actions import service as actions
from omnify.actions.models import ActionStatus
from omnify.analytics import synced
from omnify.audit import service as audit
from omnify.clients import service as clients
from omnify.clients.models import ClientProfile
from omnify.core.context import Actor
from omnify.core.db import bind_tenant, utcnow
from omnify.core.errors import AppError, Conflict, NotFound, UnprocessableEntity
from omnify.core.logging import get_logger
from omnify.core.pagination import PageParams
from omnify.events import service as events
from omnify.integrations.money import MoneyError, format_minor
from omnify.notifications import alerts
from omnify.notifications.service import queue_email
from omnify.orgs import service as orgs
from omnify.recommendations import service as recommendations
from omnify.rules import loader, repository
from omnify.rules import schedule as sched
from omnify.rules.definition import ActionType, NotifyChannel, RuleDefinition, error_entries, window_days
from omnify.rules.engine import Decision, Evaluator, Frame, RuleRun, State, backtest
from omnify.rules.models import (
    EvaluationStatus,
    FiringOutcome,
    Rule,
    RuleEvaluation,
    RuleFiring,
    RuleStatus,
    Trigger,
)
from omnify.rules.templates import TEMPLATES
from omnify.settings import Settings

log = get_logger(__name__)

MAX_RULES_PER_ORG = 500
MAX_RECORDED_ENTITIES = 500
#: Lifetime windows read at most this much history (the analytics range limit).
LIFETIME_DAYS = 730
RUN_TASK = "omnify.rules.run_rule"
#: The error of an evaluation closed because its worker died mid-run.
ABANDONED_ERROR = "abandoned: the worker running it stopped before it finished; the slot was evaluated again"
FIRED_EVENT = "rule.fired"
GUARDRAIL_EVENT = "guardrail.hit"


class RuleLimit(Conflict):
    code, title = "rule-limit", "Too many rules"


# ------------------------------------------------------------------------------- helpers
def parse_definition(raw: dict[str, Any], prefix: tuple[str, ...] = ("body", "definition")) -> RuleDefinition:
    try:
        return RuleDefinition.model_validate(raw)
    except ValidationError as exc:
        raise UnprocessableEntity("The rule definition has invalid fields.",
                                  errors=error_entries(exc.errors(), prefix)) from None


async def _check_clients(session: AsyncSession, org_id: uuid.UUID, definition: RuleDefinition) -> None:
    """Scoped clients must be this organization's (another tenant's id is a 422 on the field)."""
    errors = []
    for i, client_id in enumerate(definition.scope.client_ids):
        try:
            await clients.get_live_client(session, org_id, client_id)
        except NotFound:
            errors.append({"loc": ["body", "definition", "scope", "client_ids", str(i)],
                           "field": f"definition.scope.client_ids.{i}", "msg": "no such client in this organization",
                           "type": "not_found"})
    if errors:
        raise UnprocessableEntity("The rule definition has invalid fields.", errors=errors)


async def _clients_in_scope(session: AsyncSession, org_id: uuid.UUID, definition: RuleDefinition,
                            only: Sequence[str] | None = None) -> list[ClientProfile]:
    wanted = [str(c) for c in definition.scope.client_ids] or [str(c) for c in
                                                                await synced.clients_with_data(session, org_id)]
    if only is not None:
        wanted = [c for c in wanted if c in set(only)]
    out = []
    for client_id in sorted(set(wanted)):
        try:
            out.append(await clients.get_live_client(session, org_id, uuid.UUID(client_id)))
        except NotFound:
            continue  # archived or gone since the rule was written
    return out


def _history_days(definition: RuleDefinition) -> int:
    """Days of data one evaluation needs: the longest window (twice for previous-window
    comparisons), plus one for ``yesterday``."""
    longest = 1
    windows = [(c.window, c.compare_to == "previous_window") for c in definition.conditions_list()]
    windows += [(c.compare_to.window, False) for c in definition.conditions_list()
                if not isinstance(c.compare_to, str)]
    windows.append((definition.min_data.window, False))
    for window, doubled in windows:
        days = window_days(window)
        if days is None:
            return LIFETIME_DAYS
        longest = max(longest, days * (2 if doubled else 1))
    return longest + 1


def _next_run(rule: Rule, definition: RuleDefinition, tzs: dict[str, str | None], now: datetime) -> datetime | None:
    if rule.status != RuleStatus.ACTIVE.value:
        return None
    return sched.next_run(definition.schedule, now, tzs)


async def _client_tzs(session: AsyncSession, org_id: uuid.UUID, definition: RuleDefinition) -> dict[str, str | None]:
    return {str(c.id): c.timezone for c in await _clients_in_scope(session, org_id, definition)}


# ---------------------------------------------------------------------------------- CRUD
async def get(session: AsyncSession, org_id: uuid.UUID, rule_id: uuid.UUID) -> Rule:
    row = await repository.get(session, org_id, rule_id)
    if row is None:
        raise NotFound("Rule not found.")
    return row


async def list_rules(session: AsyncSession, org_id: uuid.UUID, params: PageParams,
                     status: str | None = None) -> Sequence[Rule]:
    return await repository.list_page(session, org_id, params, status=status)


def _creator(actor: Actor) -> uuid.UUID | None:
    if actor.actor_type != "user" or not actor.actor_id:
        return None
    try:
        return uuid.UUID(actor.actor_id)
    except ValueError:
        return None


async def create_rule(
    session: AsyncSession, org_id: uuid.UUID, actor: Actor, *, name: str, description: str | None,
    definition: RuleDefinition, dry_run: bool, status: RuleStatus, template: str | None = None,
) -> Rule:
    if actor.actor_type != "user":
        raise Conflict("Rules act with their author's permissions; create them as a user, not an API key.",
                       code="rule-needs-user")
    await _check_clients(session, org_id, definition)
    if await repository.count(session, org_id) >= MAX_RULES_PER_ORG:
        raise RuleLimit(f"An organization can have at most {MAX_RULES_PER_ORG} rules.")
    now = utcnow()
    rule = Rule(id=uuid.uuid4(), org_id=org_id, name=name, description=description, status=status.value,
                dry_run=dry_run, definition=definition.model_dump(mode="json", exclude_none=False),
                template=template, version=1, created_by_id=_creator(actor), created_by_label=actor.label,
                created_at=now, updated_at=now)
    # A new periodic rule runs at the next sweep; daily ones at their first local time.
    rule.next_run_at = (now if definition.schedule.every in sched.PERIODS else
                        _next_run(rule, definition, await _client_tzs(session, org_id, definition), now))
    if rule.status != RuleStatus.ACTIVE.value:
        rule.next_run_at = None
    repository.add(session, rule)
    await session.flush()
    await audit.record(session, org_id, actor, "rule.created", target_type="rule", target_id=rule.id,
                       changes={"name": name, "dry_run": dry_run, "status": rule.status,
                                "definition": rule.definition, "template": template})
    await session.commit()
    return rule


async def create_from_template(session: AsyncSession, org_id: uuid.UUID, actor: Actor, template: str,
                               name: str | None, client_ids: list[uuid.UUID]) -> Rule:
    tpl = TEMPLATES.get(template)
    if tpl is None:
        raise UnprocessableEntity("Unknown template.", errors=[{
            "loc": ["body", "template"], "field": "template", "msg": f"one of {', '.join(sorted(TEMPLATES))}",
            "type": "enum"}])
    raw = dict(tpl.definition)
    raw["scope"] = {**raw.get("scope", {}), "client_ids": [str(c) for c in client_ids]}
    return await create_rule(session, org_id, actor, name=name or tpl.name, description=tpl.description,
                             definition=parse_definition(raw), dry_run=tpl.dry_run, status=RuleStatus.ACTIVE,
                             template=tpl.key)


async def update_rule(session: AsyncSession, org_id: uuid.UUID, actor: Actor, rule_id: uuid.UUID,
                      changes: dict[str, Any]) -> Rule:
    rule = await get(session, org_id, rule_id)
    diff: dict[str, Any] = {}
    now = utcnow()
    for key in ("name", "description", "dry_run"):
        if key in changes and changes[key] is not None and changes[key] != getattr(rule, key):
            diff[key] = {"from": getattr(rule, key), "to": changes[key]}
            setattr(rule, key, changes[key])
    definition = RuleDefinition.model_validate(rule.definition)
    if changes.get("definition") is not None:
        new_def: RuleDefinition = changes["definition"]
        await _check_clients(session, org_id, new_def)
        dumped = new_def.model_dump(mode="json", exclude_none=False)
        if dumped != rule.definition:
            diff["definition"] = {"from": rule.definition, "to": dumped}
            rule.definition, rule.version, definition = dumped, rule.version + 1, new_def
    status = changes.get("status")
    if status is not None and str(status) != rule.status:
        diff["status"] = {"from": rule.status, "to": str(status)}
        rule.status = str(status)
    if diff:
        rule.updated_at = now
        if "status" in diff or "definition" in diff:
            tzs = await _client_tzs(session, org_id, definition)
            rule.next_run_at = (now if rule.status == RuleStatus.ACTIVE.value
                                and definition.schedule.every in sched.PERIODS else _next_run(rule, definition, tzs,
                                                                                              now))
        action = "rule.updated"
        if set(diff) == {"status"}:
            action = "rule.paused" if rule.status == RuleStatus.PAUSED.value else "rule.resumed"
        await audit.record(session, org_id, actor, action, target_type="rule", target_id=rule.id, changes=diff)
    await session.commit()
    return rule


async def delete_rule(session: AsyncSession, org_id: uuid.UUID, actor: Actor, rule_id: uuid.UUID) -> None:
    rule = await get(session, org_id, rule_id)
    await repository.delete_rule(session, rule)
    await audit.record(session, org_id, actor, "rule.deleted", target_type="rule", target_id=rule_id,
                       changes={"name": rule.name})
    await session.commit()


# ----------------------------------------------------------------------------- evaluation
@dataclass
class ClientRun:
    client: ClientProfile
    client_id: uuid.UUID  # plain copies: a rollback after a refused action expires the ORM row
    client_name: str
    as_of: date
    frame: Frame
    run: RuleRun
    decisions: list[Decision]


@dataclass
class FrameCache:
    """Frames shared by the rules of one sweep (same client, level and days)."""

    frames: dict[tuple[str, str, date, date], Frame] = field(default_factory=dict)

    async def get(self, session: AsyncSession, org_id: uuid.UUID, client: ClientProfile, level: str, start: date,
                  end: date) -> Frame:
        key = (str(client.id), level, start, end)
        frame = self.frames.get(key)
        if frame is None:
            frame = await loader.load_frame(session, org_id, client.id, level, start, end,
                                            default_currency=client.currency)
            self.frames[key] = frame
        return frame


async def _evaluate_client(
    session: AsyncSession, org_id: uuid.UUID, definition: RuleDefinition, client: ClientProfile, now: datetime,
    *, rule: Rule | None, dry_run: bool, cache: FrameCache | None = None,
) -> ClientRun:
    as_of = sched.local_today(now, client.timezone)
    start = as_of - timedelta(days=_history_days(definition) - 1)
    frame = await (cache or FrameCache()).get(session, org_id, client, definition.level.value, start, as_of)
    ready: dict[str, float] = {}
    if rule is not None and definition.cooldown_hours > 0:
        since = now - timedelta(hours=definition.cooldown_hours)
        last = await repository.last_firings(session, org_id, rule.id, [e.key for e in frame.entities],
                                             dry_run=dry_run, since=since)
        ready = {k: (at + timedelta(hours=definition.cooldown_hours)).timestamp() for k, at in last.items()}
    ev = Evaluator(frame, [frame.n_days - 1])
    run = RuleRun(definition, ev)
    outcome = run.decide(0, State.initial(frame, ready), now.timestamp())
    run.explain(outcome.decisions, 0)
    return ClientRun(client, client.id, client.company_name, as_of, frame, run, outcome.decisions)


def _decision_view(cr: ClientRun, d: Decision) -> dict[str, Any]:
    entity = cr.frame.entities[d.entity]
    out: dict[str, Any] = {"entity": entity.ref(), "status": entity.status, "values": d.values,
                           "decision": d.outcome, "effect": d.effect, "reason": d.reason}
    if d.budget_to_minor is not None:
        out.update(budget_from_minor=d.budget_from_minor, budget_to_minor=d.budget_to_minor)
    return out


async def preview(session: AsyncSession, org_id: uuid.UUID, definition: RuleDefinition,
                  rule: Rule | None = None, now: datetime | None = None) -> dict[str, Any]:
    """The entities a (draft) rule matches now, and what it would do with each."""
    await _check_clients(session, org_id, definition)
    now = now or utcnow()
    out, matched, would = [], 0, 0
    for client in await _clients_in_scope(session, org_id, definition):
        cr = await _evaluate_client(session, org_id, definition, client, now, rule=rule,
                                    dry_run=rule.dry_run if rule else True)
        views = [_decision_view(cr, d) for d in cr.decisions]
        matched += len(views)
        would += sum(1 for d in cr.decisions if d.outcome == "act")
        out.append({"client_id": client.id, "as_of": cr.as_of, "matched": views})
    await session.rollback()
    return {"clients": out, "matched": matched, "would_act": would}


async def run_backtest(session: AsyncSession, org_id: uuid.UUID, definition: RuleDefinition, days: int,
                       now: datetime | None = None) -> dict[str, Any]:
    """Replay the rule over each client's last ``days`` complete days."""
    await _check_clients(session, org_id, definition)
    now = now or utcnow()
    out = []
    totals: dict[str, Any] = {"actions": 0, "entities": 0, "spend_saved_minor": {}, "spend_shifted_minor": {}}
    for client in await _clients_in_scope(session, org_id, definition):
        today = sched.local_today(now, client.timezone)
        last, first = today - timedelta(days=1), today - timedelta(days=days)
        start = first - timedelta(days=_history_days(definition) - 1)
        frame = await loader.load_frame(session, org_id, client.id, definition.level.value, start, last,
                                        default_currency=client.currency)
        result = backtest(definition, frame, first, last)
        summary = result.summary()
        totals["actions"] += summary["actions"]
        totals["entities"] += summary["entities"]
        for key in ("spend_saved_minor", "spend_shifted_minor"):
            for cur, amount in summary[key].items():
                totals[key][cur] = totals[key].get(cur, 0) + amount
        out.append({"client_id": client.id, "first_day": first, "last_day": last, "summary": summary,
                    "days": result.days, "actions": result.actions[:2000]})
    await session.rollback()
    return {"clients": out, "summary": totals}


# ------------------------------------------------------------------------------ live run
@dataclass(frozen=True, slots=True)
class _RunContext:
    """Plain copies of what a run needs: a rollback after a refused action expires ORM rows."""

    rule_id: uuid.UUID
    rule_name: str
    actor: Actor
    evaluation_id: uuid.UUID
    slot: str
    dry_run: bool


def _actor(rule: Rule) -> Actor:
    return Actor(actor_type="rule", actor_id=str(rule.id), label=f"rule {rule.name[:120]} (by {rule.created_by_label})")


def _action_spec(definition: RuleDefinition, cr: ClientRun, d: Decision) -> dict[str, Any] | None:
    entity = cr.frame.entities[d.entity]
    action = definition.entity_action
    effect = action.effect if action is not None else None
    # What pausing it stops spending (or resuming restarts): its recent daily average.
    t = cr.frame.n_days - 1
    lo = max(0, t - 6)
    daily = round(float(np.mean(cr.frame.raw["spend"][d.entity, lo:t + 1]))) if cr.frame.n_days else 0
    if effect in (ActionType.PAUSE, ActionType.RESUME):
        return {"type": "set_status", "status": "paused" if effect == ActionType.PAUSE else "active",
                "platform": entity.platform, "account_id": entity.account_id, "level": entity.level,
                "entity_id": entity.external_id, "name": entity.name, "daily_spend_minor": daily}
    if effect in (ActionType.SET_BUDGET, ActionType.CHANGE_BUDGET) and d.budget_to_minor is not None:
        return {"type": "set_budgets", "currency": entity.currency, "budgets": [{
            "platform": entity.platform, "account_id": entity.account_id, "level": "campaign",
            "entity_id": entity.external_id, "name": entity.name, "campaign_id": entity.key,
            "current_minor": d.budget_from_minor, "recommended_minor": d.budget_to_minor}]}
    return None


def _money(amount: int | None, currency: str) -> str:
    if amount is None:
        return "?"
    try:
        return format_minor(int(amount), currency)
    except MoneyError:
        return f"{amount} {currency}"


def _title(rule_name: str, cr: ClientRun, d: Decision) -> str:
    entity = cr.frame.entities[d.entity]
    what = {"pause": "Pause", "resume": "Resume"}.get(d.effect or "", "Change the budget of")
    tail = ""
    if d.budget_to_minor is not None:
        tail = (f" from {_money(d.budget_from_minor, entity.currency)} to "
                f"{_money(d.budget_to_minor, entity.currency)}")
    return f"Rule “{rule_name}”: {what} {entity.level} {entity.name}{tail}"[:300]


async def _author_role(session: AsyncSession, org_id: uuid.UUID, rule: Rule) -> Any:
    if rule.created_by_id is None:
        return None
    return await orgs.role_of(session, org_id, rule.created_by_id)


async def _act(
    session: AsyncSession, settings: Settings, org_id: uuid.UUID, run: _RunContext, definition: RuleDefinition,
    cr: ClientRun, d: Decision, role: Any,
) -> dict[str, Any]:
    """Carry one decision out; the outcome recorded for it."""
    entity = cr.frame.entities[d.entity]
    action = definition.entity_action
    if action is None:
        return {"outcome": FiringOutcome.NOTIFIED.value}
    if run.dry_run:
        return {"outcome": FiringOutcome.DRY_RUN.value}
    if role is None:
        return {"outcome": FiringOutcome.FAILED.value,
                "reason": "the rule's author is no longer a member of the organization"}
    spec = _action_spec(definition, cr, d)
    if spec is None:
        return {"outcome": FiringOutcome.FAILED.value, "reason": "nothing to apply"}
    recommend = action.type == ActionType.RECOMMEND
    finding = recommendations.Finding(
        module="rules", kind=("rule_recommend_" if recommend else "rule_") + (d.effect or "act"),
        dedupe_key=f"rule:{run.rule_id}:{run.slot}:{entity.key}"[:255], title=_title(run.rule_name, cr, d),
        target=entity.ref(), platform=entity.platform, confidence=1.0,
        impact_minor=int(spec.get("daily_spend_minor") or 0) or None, currency=entity.currency, action=spec,
        evidence={"rule_id": str(run.rule_id), "rule_name": run.rule_name, "evaluation_id": str(run.evaluation_id),
                  "as_of": cr.as_of.isoformat(), "values": d.values})
    await recommendations.merge_findings(session, org_id, cr.client_id, [finding], None, expire_missing=False)
    await session.commit()
    rec = await recommendations.by_dedupe_key(session, org_id, cr.client_id, finding.dedupe_key)
    assert rec is not None
    rec_id = rec.id
    previous = None if recommend else await actions.latest_for_recommendation(session, org_id, rec_id)
    if previous is not None and previous.status == ActionStatus.APPLYING.value:
        # Its worker died in the middle of the platform calls: what the platform did is
        # unknown, so it is not applied again here; the actions reconciliation sweep
        # (actions.service.reconcile_interrupted) settles it from what the platform shows.
        return {"outcome": FiringOutcome.FAILED.value, "action_id": str(previous.id), "recommendation_id": str(rec_id),
                "reason": "interrupted: the worker applying it stopped mid-apply; not applied again"}
    if previous is not None and previous.status in (ActionStatus.APPLIED.value, ActionStatus.PENDING_APPROVAL.value):
        # Applied (or sent for approval) by an earlier evaluation of this slot whose worker
        # died: the recommendation is keyed on the slot, so the redo finds it: not twice.
        outcome = (FiringOutcome.APPLIED if previous.status == ActionStatus.APPLIED.value
                   else FiringOutcome.PENDING_APPROVAL)
        return {"outcome": outcome.value, "action_id": str(previous.id), "recommendation_id": str(rec_id)}
    if recommend:
        return {"outcome": FiringOutcome.RECOMMENDED.value, "recommendation_id": str(rec_id)}
    try:
        applied = await actions.apply(session, settings, org_id, actions.Caller(role, run.actor), rec_id,
                                      note=f"automation rule {run.rule_name}")
    except AppError as exc:
        await session.rollback()
        reason = f"{exc.code}: {exc.detail}"[:300]
        if exc.code.startswith("guardrail"):
            await events.emit(session, org_id, GUARDRAIL_EVENT, {
                "client_id": cr.client_id, "rule_id": run.rule_id, "rule_name": run.rule_name, "code": exc.code,
                "detail": exc.detail, "entity": entity.ref()})
        await recommendations.dismiss(session, org_id, run.actor, rec_id, f"Not applied by the rule: {reason}")
        return {"outcome": FiringOutcome.FAILED.value, "reason": reason, "recommendation_id": str(rec_id)}
    outcome = FiringOutcome.APPLIED if applied.status_code == 200 else FiringOutcome.PENDING_APPROVAL
    return {"outcome": outcome.value, "action_id": str(applied.action.id), "recommendation_id": str(rec_id)}


async def _claim(session: AsyncSession, org_id: uuid.UUID, rule_id: uuid.UUID, values: dict[str, Any]) -> bool:
    """Claim the slot; a rule deleted since it was read (a run-now racing its deletion: the
    evaluation's foreign key fails) is the rule's 404, not a 500. Found by the web scan."""
    try:
        return await repository.claim_slot(session, values)
    except IntegrityError:
        await session.rollback()
        await get(session, org_id, rule_id)  # NotFound when the rule is gone
        raise


async def run_rule(
    session: AsyncSession, settings: Settings, org_id: uuid.UUID, rule_id: uuid.UUID, *, trigger: Trigger,
    slot: str, now: datetime | None = None, client_ids: Sequence[str] | None = None,
    cache: FrameCache | None = None,
) -> RuleEvaluation | None:
    """Run one slot of one rule; ``None`` when the slot already ran. ``session`` is bound here."""
    await bind_tenant(session, org_id)
    now = now or utcnow()
    rule = await get(session, org_id, rule_id)
    definition = RuleDefinition.model_validate(rule.definition)
    evaluation_id = uuid.uuid4()
    values = {
        "id": evaluation_id, "org_id": org_id, "rule_id": rule.id, "rule_version": rule.version,
        "trigger": trigger.value, "slot": slot[:120], "dry_run": rule.dry_run,
        "status": EvaluationStatus.RUNNING.value, "started_at": now, "as_of": {}, "matched": 0, "acted": 0,
        "skipped": 0, "failed": 0, "entities": [],
        "client_ids": [str(c) for c in client_ids] if client_ids else None}
    claimed = await _claim(session, org_id, rule_id, values)
    if not claimed:
        await session.rollback()
        started = await repository.start_pending(session, rule_id, slot[:120], {
            "rule_version": values["rule_version"], "dry_run": values["dry_run"],
            "status": EvaluationStatus.RUNNING.value,
            "started_at": utcnow()})  # the lease counts from the start, not from when it was due
        if started is not None:  # the beat job recorded this slot: evaluate that row
            evaluation_id = started
            rule = await get(session, org_id, rule_id)  # expired by the rollback
        elif not await _close_abandoned(session, rule_id, slot[:120], settings.rule_evaluation_lease_seconds):
            return None
        else:
            rule = await get(session, org_id, rule_id)  # expired by the rollback
            claimed = await _claim(session, org_id, rule_id, values)
            if not claimed:  # another delivery took the slot over first
                await session.rollback()
                return None
    await session.commit()
    evaluation = await repository.get_evaluation(session, org_id, evaluation_id)
    assert evaluation is not None
    try:
        await _run(session, settings, org_id, rule, definition, evaluation, now, client_ids, cache)
    except Exception as exc:  # recorded on the evaluation; the next slot runs normally
        await session.rollback()
        log.error("rules.run_failed", rule_id=str(rule_id), error=f"{type(exc).__name__}: {exc}"[:300])
        evaluation = await repository.get_evaluation(session, org_id, evaluation_id)
        rule = await get(session, org_id, rule_id)
        assert evaluation is not None
        evaluation.status, evaluation.finished_at = EvaluationStatus.FAILED.value, utcnow()
        evaluation.error = f"{type(exc).__name__}: {exc}"[:1000]
        rule.last_run_at, rule.last_status = now, EvaluationStatus.FAILED.value
        await session.commit()
    return evaluation


class EvaluationBusy(Conflict):
    """This slot's evaluation is still within its lease: it may be alive."""

    def __init__(self, lease_remaining: float) -> None:
        super().__init__("This rule slot is being evaluated.")
        #: Seconds until that evaluation counts as abandoned.
        self.lease_remaining = lease_remaining


async def _close_abandoned(session: AsyncSession, rule_id: uuid.UUID, slot: str, lease: float) -> bool:
    """The slot's evaluation is taken: ``True`` if it was left ``running`` by a worker that
    died (older than the lease) and is now closed as failed, ``abandoned: ...``, under a
    renamed slot so the slot can be evaluated again; ``False`` if it finished.

    Raises :class:`EvaluationBusy` while a running evaluation is within its lease: the
    redelivered task of a killed worker meets its own dead evaluation here and retries
    once the lease lapsed. What the dead evaluation committed is met again by the redo:
    its recommendations by their dedupe key (rule, slot, entity), its applied actions
    through their recommendation (see :func:`_act`); ``rule.fired`` and its e-mails were
    not sent, they commit with the evaluation's result."""
    dead = await repository.evaluation_of_slot(session, rule_id, slot)
    if dead is None or dead.status != EvaluationStatus.RUNNING.value:
        await session.rollback()
        return False
    now = utcnow()
    started = dead.started_at if dead.started_at.tzinfo else dead.started_at.replace(tzinfo=UTC)
    remaining = lease - (now - started).total_seconds()
    if remaining > 0:
        await session.rollback()
        raise EvaluationBusy(remaining)
    dead.slot = f"{slot[:80]}~abandoned~{dead.id.hex[:12]}"
    dead.status, dead.finished_at = EvaluationStatus.FAILED.value, now
    dead.error = ABANDONED_ERROR
    await session.commit()
    log.warning("rules.evaluation_abandoned", rule_id=str(rule_id), evaluation_id=str(dead.id))
    return True


async def _run(
    session: AsyncSession, settings: Settings, org_id: uuid.UUID, rule: Rule, definition: RuleDefinition,
    evaluation: RuleEvaluation, now: datetime, client_ids: Sequence[str] | None, cache: FrameCache | None,
) -> None:
    role = await _author_role(session, org_id, rule)
    ctx = _RunContext(rule.id, rule.name, _actor(rule), evaluation.id, evaluation.slot, evaluation.dry_run)
    runs = [await _evaluate_client(session, org_id, definition, client, now, rule=rule, dry_run=evaluation.dry_run,
                                   cache=cache)
            for client in await _clients_in_scope(session, org_id, definition, client_ids)]
    records: list[dict[str, Any]] = []
    firings: list[RuleFiring] = []
    fired_by_client: dict[uuid.UUID, list[dict[str, Any]]] = {}
    acted = skipped = failed = 0
    for cr in runs:
        for d in cr.decisions:
            view = _decision_view(cr, d)
            if d.outcome != "act":
                view["outcome"] = "skipped"
                skipped += 1
            else:
                result = await _act(session, settings, org_id, ctx, definition, cr, d, role)
                view.update(result)
                entity = cr.frame.entities[d.entity]
                firings.append(RuleFiring(
                    org_id=org_id, rule_id=ctx.rule_id, evaluation_id=ctx.evaluation_id, client_id=cr.client_id,
                    entity_key=entity.key, level=entity.level, effect=d.effect or "notify",
                    outcome=result["outcome"], dry_run=ctx.dry_run,
                    action_id=uuid.UUID(result["action_id"]) if result.get("action_id") else None,
                    recommendation_id=uuid.UUID(result["recommendation_id"]) if result.get("recommendation_id")
                    else None, fired_at=now, as_of=cr.as_of))
                if result["outcome"] == FiringOutcome.FAILED.value:
                    failed += 1
                else:
                    acted += 1
                    fired_by_client.setdefault(cr.client_id, []).append(view)
            records.append(view)
    if settings.rule_evaluation_test_pause_seconds:  # test only: a kill lands after the actions
        await asyncio.sleep(settings.rule_evaluation_test_pause_seconds)
    await session.refresh(evaluation)
    await session.refresh(rule)
    for firing in firings:
        repository.add(session, firing)
    evaluation.as_of = {str(cr.client_id): cr.as_of.isoformat() for cr in runs}
    evaluation.matched = len(records)
    evaluation.acted, evaluation.skipped, evaluation.failed = acted, skipped, failed
    evaluation.entities = records[:MAX_RECORDED_ENTITIES]
    evaluation.status, evaluation.finished_at = EvaluationStatus.SUCCEEDED.value, utcnow()
    rule.last_run_at, rule.last_status = now, EvaluationStatus.SUCCEEDED.value
    if not evaluation.dry_run:
        for client_id, fired in fired_by_client.items():
            await _announce(session, settings, org_id, rule, definition, evaluation, client_id, fired, runs)
    await session.commit()


def _spend_series(runs: list[ClientRun], client_id: uuid.UUID, fired: list[dict[str, Any]],
                  days: int = 14) -> dict[str, Any]:
    """Daily spend of the items the rule acted on, for the alert's chart (major units)."""
    for cr in runs:
        if cr.client_id != client_id or not cr.frame.n_days:
            continue
        idx = [cr.frame.index[f["entity"]["id"]] for f in fired if f["entity"]["id"] in cr.frame.index]
        if not idx:
            return {}
        lo = max(0, cr.frame.n_days - days)
        spend = (cr.frame.raw["spend"][idx, lo:] * cr.frame.scale[idx][:, None]).sum(axis=0)
        currencies = {cr.frame.entities[i].currency for i in idx}
        return {"dates": [cr.frame.day_of(t).isoformat() for t in range(lo, cr.frame.n_days)],
                "spend": [round(float(v), 2) for v in spend],
                "currency": currencies.pop() if len(currencies) == 1 else "mixed"}
    return {}


def _client_name(runs: list[ClientRun], client_id: uuid.UUID) -> str:
    for cr in runs:
        if cr.client_id == client_id:
            return cr.client_name
    return "client"


async def _announce(
    session: AsyncSession, settings: Settings, org_id: uuid.UUID, rule: Rule, definition: RuleDefinition,
    evaluation: RuleEvaluation, client_id: uuid.UUID, fired: list[dict[str, Any]], runs: list[ClientRun],
) -> None:
    """``rule.fired`` for alert routes and webhooks, and the e-mails a notify action asks for."""
    channels = sorted({c.value for a in definition.notify_actions for c in a.channels})
    client_name = _client_name(runs, client_id)
    url = f"{settings.public_base_url}/orgs/{org_id}/rules/{rule.id}/evaluations/{evaluation.id}"
    payload = {
        "rule_id": rule.id, "rule_name": rule.name, "evaluation_id": evaluation.id, "client_id": client_id,
        "client_name": client_name, "dry_run": evaluation.dry_run, "notify": channels,
        "effect": fired[0].get("effect") if fired else None, "count": len(fired), "url": url,
        "entities": [{"name": f["entity"]["name"], "id": f["entity"]["id"], "level": f["entity"]["level"],
                      "platform": f["entity"]["platform"], "currency": f["entity"]["currency"],
                      "outcome": f.get("outcome"), "action_id": f.get("action_id"),
                      "recommendation_id": f.get("recommendation_id"),
                      "values": dict(list(f["values"].items())[:6])} for f in fired[:20]],
        "series": _spend_series(runs, client_id, fired),
    }
    await events.emit(session, org_id, FIRED_EVENT, payload)
    if NotifyChannel.EMAIL.value not in channels:
        return
    explicit = [e for a in definition.notify_actions for e in a.emails]
    recipients = explicit or [u.email for u in await alerts.admins(session, org_id)]
    lines = [f"{f['entity']['name']} ({f['entity']['platform']}): {f.get('outcome')}" for f in fired[:50]]
    for email in sorted(set(recipients)):
        await queue_email(session, to=email, template="rule_fired", org_id=org_id,
                          dedupe_key=f"rule-fired:{evaluation.id}:{client_id}:{email}"[:200],
                          context={"rule_name": rule.name, "client_name": client_name, "count": len(fired),
                                   "lines": lines, "details_url": url})


# ------------------------------------------------------------------------ history, labels
async def list_evaluations(session: AsyncSession, org_id: uuid.UUID, rule_id: uuid.UUID,
                           params: PageParams) -> Sequence[RuleEvaluation]:
    await get(session, org_id, rule_id)
    return await repository.list_evaluations(session, org_id, rule_id, params)


async def get_evaluation(session: AsyncSession, org_id: uuid.UUID, rule_id: uuid.UUID,
                         evaluation_id: uuid.UUID) -> RuleEvaluation:
    row = await repository.get_evaluation(session, org_id, evaluation_id)
    if row is None or row.rule_id != rule_id:
        raise NotFound("Evaluation not found.")
    return row


async def set_labels(session: AsyncSession, org_id: uuid.UUID, actor: Actor, client_id: uuid.UUID, level: str,
                     entity_id: uuid.UUID, labels: list[str]) -> list[str]:
    await clients.get_live_client(session, org_id, client_id)
    ads, campaigns = await synced.entities(session, org_id, client_id)
    known = {str(r["id"]) for r in (ads if level == "ad" else campaigns)}
    if str(entity_id) not in known:
        raise NotFound(f"No such {level} for this client.")
    clean = sorted({label.strip().lower() for label in labels if label.strip()})
    if any(len(label) > 64 for label in clean):
        raise UnprocessableEntity("Labels are at most 64 characters.", errors=[{
            "loc": ["body", "labels"], "field": "labels", "msg": "at most 64 characters each", "type": "too_long"}])
    await repository.replace_labels(session, org_id, client_id, level, str(entity_id), clean)
    await audit.record(session, org_id, actor, "entity.labels_set", target_type=level, target_id=entity_id,
                       changes={"labels": clean})
    await session.commit()
    return clean


async def get_labels(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, level: str,
                     entity_id: uuid.UUID) -> list[str]:
    await clients.get_live_client(session, org_id, client_id)
    return await repository.labels_of_entity(session, org_id, level, str(entity_id))


# -------------------------------------------------------------------------------- sweeps
async def run_due(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, *,
                  now: datetime | None = None, limit: int = 200) -> int:
    """The beat job: record every due slot of every active rule, then evaluate every slot
    not evaluated yet; the number of evaluations run.

    A due slot is written as a ``pending`` evaluation in the transaction that advances the
    rule's ``next_run_at`` (:func:`_schedule_due_rule`), so advancing the schedule and
    remembering the slot commit together. The slots are then evaluated from those rows
    (:func:`sweep_unfinished`), which also picks up the pending slots and the lapsed
    ``running`` evaluations a worker killed in an earlier tick left: a slot is lost by no
    crash, and its row's unique ``(rule_id, slot)`` key lets one evaluation start it."""
    now = now or utcnow()
    async with sessionmaker() as session:
        due = await repository.sweep_due(session, now, limit)
        await session.rollback()
    for rule_id, org_id in due:
        async with sessionmaker() as session:
            try:
                await _schedule_due_rule(session, org_id, rule_id, now)
            except Exception as exc:  # one rule's failure must not stop the others
                await session.rollback()
                log.error("rules.due_failed", rule_id=str(rule_id), error=f"{type(exc).__name__}: {exc}"[:300])
    if settings.rule_schedule_test_pause_seconds:  # test only: a kill lands between schedule and evaluation
        await asyncio.sleep(settings.rule_schedule_test_pause_seconds)
    return await sweep_unfinished(sessionmaker, settings, now=now, limit=limit)


async def _schedule_due_rule(session: AsyncSession, org_id: uuid.UUID, rule_id: uuid.UUID, now: datetime) -> None:
    """Advance the rule's next run and record its due slots as ``pending``, in one commit."""
    await bind_tenant(session, org_id)
    rule = await get(session, org_id, rule_id)
    definition = RuleDefinition.model_validate(rule.definition)
    tzs = await _client_tzs(session, org_id, definition)
    slots = sched.due_slots(definition.schedule, now, tzs)
    rule.next_run_at = _next_run(rule, definition, tzs, now)
    daily = definition.schedule.every == "1d"
    for slot in slots:
        await repository.claim_slot(session, {
            "id": uuid.uuid4(), "org_id": org_id, "rule_id": rule.id, "rule_version": rule.version,
            "trigger": Trigger.SCHEDULE.value, "slot": slot.key[:120], "dry_run": rule.dry_run,
            "status": EvaluationStatus.PENDING.value, "started_at": now, "as_of": {}, "matched": 0, "acted": 0,
            "skipped": 0, "failed": 0, "entities": [],
            "client_ids": [str(c) for c in slot.client_ids] if daily else None})
    await session.commit()


#: The error of a recorded slot not evaluated because its rule was paused first.
PAUSED_ERROR = "skipped: the rule was paused before this slot was evaluated"
#: ... and of one whose worker died mid-run: not evaluated again while the rule is paused.
PAUSED_ABANDONED_ERROR = "abandoned: the worker running it stopped; the rule was paused, so it was not evaluated again"


async def sweep_unfinished(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, *,
                           now: datetime | None = None, limit: int = 200) -> int:
    """Evaluate every scheduled or sync-triggered slot whose evaluation never started
    (``pending``) or whose worker died (``running`` past ``rule_evaluation_lease_seconds``);
    the number evaluated. A slot another worker is on (or just started) is left to it; a
    slot of a rule paused meanwhile is closed as skipped, not evaluated."""
    now = now or utcnow()
    lapsed_before = utcnow() - timedelta(seconds=settings.rule_evaluation_lease_seconds)
    async with sessionmaker() as session:
        slots = await repository.sweep_unfinished(session, lapsed_before, limit)
        await session.rollback()
    ran = 0
    caches: dict[uuid.UUID, FrameCache] = {}
    for org_id, rule_id, slot, trigger, client_ids, status in slots:
        async with sessionmaker() as session:
            try:
                if status != RuleStatus.ACTIVE.value:
                    await _skip_paused(session, org_id, rule_id, slot)
                    continue
                done = await run_rule(session, settings, org_id, rule_id, trigger=Trigger(trigger), slot=slot, now=now,
                                      client_ids=client_ids, cache=caches.setdefault(org_id, FrameCache()))
                ran += done is not None
            except EvaluationBusy:  # another worker is on this slot
                continue
            except Exception as exc:  # one slot's failure must not stop the others
                await session.rollback()
                log.error("rules.due_failed", rule_id=str(rule_id), error=f"{type(exc).__name__}: {exc}"[:300])
    return ran


async def _skip_paused(session: AsyncSession, org_id: uuid.UUID, rule_id: uuid.UUID, slot: str) -> None:
    """Close the slot's unfinished evaluation of a paused rule without evaluating it."""
    await bind_tenant(session, org_id)
    row = await repository.evaluation_of_slot(session, rule_id, slot)
    if row is None or row.status not in (EvaluationStatus.PENDING.value, EvaluationStatus.RUNNING.value):
        await session.rollback()
        return
    row.error = PAUSED_ERROR if row.status == EvaluationStatus.PENDING.value else PAUSED_ABANDONED_ERROR
    row.status, row.finished_at = EvaluationStatus.FAILED.value, utcnow()
    await session.commit()
    log.info("rules.slot_skipped_paused", rule_id=str(rule_id), evaluation_id=str(row.id))


async def on_sync_completed(session: AsyncSession, org_id: uuid.UUID, event_id: uuid.UUID,
                            payload: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Rules that run after each sync, for the synced client: (task, kwargs) to enqueue."""
    client_id = str(payload.get("client_id") or "")
    if not client_id:
        return []
    out = []
    for rule in await repository.rules_after_sync(session, org_id):
        try:
            definition = RuleDefinition.model_validate(rule.definition)
        except ValidationError:
            continue
        if definition.schedule.every != "after_sync":
            continue
        scoped = [str(c) for c in definition.scope.client_ids]
        if scoped and client_id not in scoped:
            continue
        out.append((RUN_TASK, {"org_id": str(org_id), "rule_id": str(rule.id), "client_id": client_id,
                               "slot": f"sync:{event_id}"}))
    return out
