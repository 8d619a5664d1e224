"""One-click actions: plan, guard, (approve,) apply through the connector, record, undo.

The order of operations is chosen so an effect happens at most once and is always
accounted for:

1. Read and check (recommendation open and actionable, role allowed, budget change
   within the day's cap) without writing anything.
2. Over the approval threshold and the caller cannot approve: store a
   ``pending_approval`` action and stop (202). An admin's approve resumes at step 3.
3. **Claim**: in one transaction, move the recommendation open -> applied with a
   compare-and-set (two concurrent clicks: one wins, the other gets 409) and insert the
   action as ``applying``. Commit before any platform call.
4. Call the platform entity by entity. If a call fails, the changes already made are
   reverted in reverse order (compensation), the action is recorded ``failed`` with
   what happened, the recommendation reopens, and the caller gets a 409 ``platform-refused``
   when the platform refused (an unknown or unreachable entity, a revoked token), a 503 with
   ``Retry-After`` when it was busy or failing transiently, a 502 for any other failure.
5. Record ``applied`` with each entity's before/after, audit, emit ``action.applied``,
   count ``omnify_actions_applied_total{module}`` - in one transaction with the
   Idempotency-Key's stored answer.

Undo replays each change's ``before`` state through the same connector, newest first.

A worker that dies between the claim (step 3, or undo's claim of ``undoing``) and the
record leaves the action in flight. Each claim stores ``applying_started_at``; a beat
sweep (:func:`reconcile_interrupted`) takes over any action in flight for longer than
``action_reconcile_after_seconds``, reads each planned entity on the platform, and
settles it as the normal path would have: all changes visible -> ``applied``; none ->
``failed`` (recommendation reopened); some -> those reverted, then ``failed``. An
interrupted undo settles to ``undone`` or back to ``applied`` the same way.
"""

from __future__ import annotations

import uuid
from collections import Counter as Tally
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

import structlog
from prometheus_client import REGISTRY, Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from omnify.actions import guardrails as guards
from omnify.actions import idempotency, repository
from omnify.actions.models import Action, ActionStatus, IdempotencyRecord
from omnify.actions.platforms import PlatformError, PlatformNotSupported, open_connector, platform_error
from omnify.actions.schemas import action_out, undoable
from omnify.audit import service as audit
from omnify.auth.permissions import Permission, role_allows
from omnify.core.context import Actor
from omnify.core.db import bind_tenant, utcnow
from omnify.core.errors import Conflict, Forbidden, NotFound
from omnify.core.pagination import PageParams
from omnify.events import service as events
from omnify.integrations.base import AdConnector, ConnectorError, EntityStatus, Level
from omnify.integrations.money import MoneyError, minor_to_decimal
from omnify.orgs import service as orgs
from omnify.orgs.models import Role
from omnify.recommendations import service as recommendations
from omnify.recommendations.models import Recommendation, RecommendationStatus
from omnify.settings import Settings

log = structlog.get_logger(__name__)


def _applied_counter() -> Counter:
    existing = getattr(REGISTRY, "_names_to_collectors", {}).get("omnify_actions_applied_total")
    if isinstance(existing, Counter):
        return existing
    return Counter("omnify_actions_applied_total", "Actions applied to ad platforms, by brain module.", ["module"])


ACTIONS_APPLIED = _applied_counter()


class NotActionable(Conflict):
    code, title = "recommendation-not-actionable", "Recommendation has nothing to apply"


class ActionNotInState(Conflict):
    code, title = "action-state-conflict", "Action is not in the required state"


class BudgetChangeTooLarge(Conflict):
    code, title = "guardrail-budget-change", "Budget change exceeds the daily limit"


class UndoNotSupported(Conflict):
    code, title = "undo-not-supported", "This action cannot be undone on the platform"


class PlatformNotConnected(Conflict):
    code, title = "platform-not-connected", "Platform not connected"


@dataclass(frozen=True, slots=True)
class Caller:
    role: Role
    actor: Actor


@dataclass(frozen=True, slots=True)
class ApplyOutcome:
    action: Action
    status_code: int  # 200 applied, 202 waiting for approval


# ------------------------------------------------------------------------------ reads
async def get(session: AsyncSession, org_id: uuid.UUID, action_id: uuid.UUID) -> Action:
    row = await repository.get(session, org_id, action_id)
    if row is None:
        raise NotFound("Action not found.")
    return row


async def latest_for_recommendation(session: AsyncSession, org_id: uuid.UUID, rec_id: uuid.UUID) -> Action | None:
    """The newest action taken on a recommendation (an automation redoing its work looks here first)."""
    return await repository.latest_for_recommendation(session, org_id, rec_id)


async def list_actions(
    session: AsyncSession, org_id: uuid.UUID, params: PageParams, *, client_id: uuid.UUID | None = None,
    status: str | None = None, recommendation_id: uuid.UUID | None = None,
) -> Sequence[Action]:
    return await repository.list_page(session, org_id, params, client_id=client_id, status=status,
                                      recommendation_id=recommendation_id)


# ---------------------------------------------------------------------------- planning
def _money(amount: int, currency: str | None) -> str:
    if not currency:
        return str(amount)
    try:
        return f"{minor_to_decimal(amount, currency)} {currency}"
    except MoneyError:
        return f"{amount} {currency}"


def build_plan(rec: Recommendation) -> tuple[list[dict[str, Any]], int | None, str]:
    """(plan items, money moved per day in minor units, summary) from a stored action spec."""
    spec = rec.action or {}
    kind = spec.get("type")
    if kind == "pause_ad":
        item = {"platform": spec["platform"], "account_id": spec["account_id"], "level": Level.AD.value,
                "entity_id": spec["entity_id"], "name": spec.get("name"), "set": {"status": "paused"}}
        spend = spec.get("daily_spend_minor")
        return [item], int(spend) if spend is not None else None, \
            f"Pause ad {spec.get('name') or spec['entity_id']} on {spec['platform']}"
    if kind == "set_status":  # pause or resume one ad or campaign (automation rules)
        status, level = spec["status"], spec.get("level", Level.AD.value)
        if status not in (EntityStatus.ACTIVE.value, EntityStatus.PAUSED.value) or level not in (
                Level.AD.value, Level.CAMPAIGN.value, Level.AD_GROUP.value):
            raise NotActionable("Only pausing or resuming an ad, ad group or campaign can be applied.")
        item = {"platform": spec["platform"], "account_id": spec["account_id"], "level": level,
                "entity_id": spec["entity_id"], "name": spec.get("name"), "set": {"status": status}}
        spend = spec.get("daily_spend_minor")
        verb = "Pause" if status == EntityStatus.PAUSED.value else "Resume"
        return [item], int(spend) if spend is not None else None, \
            f"{verb} {level.replace('_', ' ')} {spec.get('name') or spec['entity_id']} on {spec['platform']}"
    if kind == "set_budgets":
        items, moved, parts = [], 0, []
        for b in spec.get("budgets") or []:
            target, current = int(b["recommended_minor"]), int(b.get("current_minor") or 0)
            if target <= 0 or target == current:
                continue
            items.append({"platform": b["platform"], "account_id": b["account_id"],
                          "level": b.get("level", Level.CAMPAIGN.value), "entity_id": b["entity_id"],
                          "name": b.get("name"), "set": {"daily_budget_minor": target},
                          "expected_before": {"daily_budget_minor": current or None}})
            moved += abs(target - current)
            parts.append(f"{b.get('name') or b['entity_id']} {_money(current, rec.currency)} -> "
                         f"{_money(target, rec.currency)}")
        if not items:
            raise NotActionable("The recommended budgets equal the current ones; nothing to change.")
        return items, moved, ("Daily budget " if len(parts) == 1 else "Daily budgets: ") + "; ".join(parts)
    raise NotActionable("This recommendation is advice only; there is nothing to apply.")


async def _budget_baselines(
    session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, now: datetime
) -> dict[tuple[str, str], int]:
    """Each entity's budget at the start of today (UTC): the ``before`` of today's first change."""
    start = datetime.combine(now.date(), time.min, tzinfo=now.tzinfo)
    base: dict[tuple[str, str], int] = {}
    for action in await repository.applied_since(session, org_id, client_id, start):
        for change in action.changes or []:
            before = (change.get("before") or {}).get("daily_budget_minor")
            key = (str(change.get("platform")), str(change.get("entity_id")))
            if before and key not in base:
                base[key] = int(before)
    return base


async def check_budget_cap(
    session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, plan: list[dict[str, Any]],
    rails: guards.Guardrails,
) -> None:
    """Refuse a plan that moves any budget more than the daily cap from where it started today."""
    budget_items = [p for p in plan if "daily_budget_minor" in p["set"]]
    if not budget_items:
        return
    base = await _budget_baselines(session, org_id, client_id, utcnow())
    offending = []
    for item in budget_items:
        start = base.get((item["platform"], item["entity_id"])) or (item.get("expected_before") or {}).get(
            "daily_budget_minor")
        target = int(item["set"]["daily_budget_minor"])
        if not start:
            offending.append({"entity_id": item["entity_id"], "name": item.get("name"),
                              "reason": "current budget unknown"})
            continue
        change = abs(target - int(start)) / int(start)
        if change > rails.max_budget_change_per_day + 1e-9:
            offending.append({"entity_id": item["entity_id"], "name": item.get("name"), "from_minor": int(start),
                              "to_minor": target, "change": round(change, 4)})
    if offending:
        raise BudgetChangeTooLarge(
            f"A budget may change by at most {rails.max_budget_change_per_day:.0%} per day "
            "(from its level at the start of the day).",
            limit=rails.max_budget_change_per_day, offending=offending)


# ---------------------------------------------------------------------------- execution
async def _call(conn: AdConnector, item: dict[str, Any], value: dict[str, Any]) -> tuple[dict[str, Any],
                                                                                          dict[str, Any]]:
    level = Level(item["level"])
    if "status" in value:
        result = await conn.set_status(item["account_id"], level, item["entity_id"], EntityStatus(value["status"]))
    else:
        result = await conn.set_daily_budget(item["account_id"], level, item["entity_id"],
                                             int(value["daily_budget_minor"]))
    return dict(result.before), dict(result.after)


class _Connectors:
    """One connector per platform for the duration of an action, closed at the end."""

    def __init__(self, session: AsyncSession, settings: Settings, org_id: uuid.UUID, client_id: uuid.UUID,
                 actor: Actor, purpose: str) -> None:
        self.session, self.settings, self.org_id, self.client_id = session, settings, org_id, client_id
        self.actor, self.purpose = actor, purpose
        self._open: dict[str, AdConnector] = {}

    async def get(self, platform: str) -> AdConnector:
        conn = self._open.get(platform)
        if conn is None:
            try:
                conn = await open_connector(self.session, self.settings, self.org_id, self.client_id, platform,
                                            self.actor, purpose=self.purpose)
            except NotFound:
                raise PlatformNotConnected(
                    f"The client has no {platform} credential; connect the platform first.") from None
            # The reveal's audit entry is committed before any platform call, so it stands
            # whatever the call does (a worker killed mid-call included), and no transaction
            # stays open for the length of a platform call.
            await self.session.commit()
            self._open[platform] = conn
        return conn

    async def aclose(self) -> None:
        for conn in self._open.values():
            try:
                await conn.aclose()
            except Exception:  # closing must not mask the outcome
                log.warning("actions.connector_close_failed", exc_info=True)


class _ExecutionFailed(Exception):
    def __init__(self, error: ConnectorError | PlatformNotConnected | PlatformNotSupported, platform: str,
                 changes: list[dict[str, Any]]) -> None:
        super().__init__(str(error))
        self.error, self.platform, self.changes = error, platform, changes


def _entity(item: dict[str, Any]) -> dict[str, Any]:
    """A plan item or a change without its states: which entity, on which platform."""
    return {k: v for k, v in item.items() if k not in ("set", "before", "after", "expected_before")}


async def _revert(conns: _Connectors, changes: list[dict[str, Any]]) -> None:
    """Put each change's entity back to its ``before``, newest first (a failed apply's
    compensation); each change says whether it was reverted, or why not."""
    for change in reversed(changes):
        target = change.get("before")
        if not target:
            change["revert_error"] = "previous state unknown; not reverted"
            continue
        try:
            conn = await conns.get(change["platform"])
            await _call(conn, change, target)
            change["reverted"] = True
        except (ConnectorError, PlatformNotConnected, PlatformNotSupported) as exc:
            change["revert_error"] = str(exc)[:300]


async def _execute(conns: _Connectors, plan: list[dict[str, Any]], *, undo: bool = False) -> list[dict[str, Any]]:
    """Run every item; on failure revert what was done (newest first) and raise."""
    done: list[dict[str, Any]] = []
    for item in plan:
        value = item["before"] if undo else item["set"]
        try:
            conn = await conns.get(item["platform"])
            before, after = await _call(conn, item, value)
        except (ConnectorError, PlatformNotConnected, PlatformNotSupported) as exc:
            await _revert(conns, done)
            raise _ExecutionFailed(exc, item["platform"], done) from exc
        done.append({**_entity(item), "before": before, "after": after})
    return done


def _requester(actor: Actor) -> dict[str, Any]:
    return {"requested_by_type": actor.actor_type, "requested_by_id": actor.actor_id,
            "requested_by_label": actor.label}


def _event_payload(action: Action, actor: Actor) -> dict[str, Any]:
    return {"action_id": action.id, "recommendation_id": action.recommendation_id, "client_id": action.client_id,
            "module": action.module, "kind": action.kind, "platform": action.platform, "summary": action.summary,
            "applied_by": actor.actor_type, "changes": [
                {k: c.get(k) for k in ("platform", "level", "entity_id", "before", "after")}
                for c in action.changes or []][:50]}


def _reconciled(reconciled: bool) -> dict[str, Any]:
    return {"reconciled": True} if reconciled else {}


async def _record_applied(session: AsyncSession, org_id: uuid.UUID, action: Action, actor: Actor,
                          changes: list[dict[str, Any]], *, reconciled: bool = False) -> None:
    """Step 5 without the commit: ``applied`` with the changes, audit entry, ``action.applied`` event."""
    action.status = ActionStatus.APPLIED.value
    action.changes = changes
    action.applied_at = utcnow()
    await audit.record(session, org_id, actor, "action.applied", target_type="action", target_id=action.id,
                       changes={"recommendation_id": str(action.recommendation_id), "kind": action.kind,
                                "client_id": str(action.client_id), "summary": action.summary,
                                "changes": changes, "approved_by": action.approved_by_label,
                                **_reconciled(reconciled)})
    await events.emit(session, org_id, "action.applied", _event_payload(action, actor))


async def _record_failed(session: AsyncSession, org_id: uuid.UUID, action: Action, actor: Actor,
                         changes: list[dict[str, Any]], error: str, *, reconciled: bool = False) -> None:
    """``failed`` with what was done (and reverted), the recommendation reopened, audit entry; no commit."""
    action.status = ActionStatus.FAILED.value
    action.changes = changes
    action.error = error[:500]
    if action.recommendation_id:
        await recommendations.reopen_after_undo(session, org_id, action.recommendation_id, "actions")
    await audit.record(session, org_id, actor, "action.failed", target_type="action", target_id=action.id,
                       changes={"kind": action.kind, "error": action.error, "partial": changes,
                                **_reconciled(reconciled)})


async def _record_undone(session: AsyncSession, org_id: uuid.UUID, action: Action, actor: Actor,
                         restored: list[dict[str, Any]], *, reconciled: bool = False) -> None:
    """``undone``, the recommendation reopened, audit entry, ``action.undone`` event; no commit."""
    action.status = ActionStatus.UNDONE.value
    action.undone_at, action.undone_by_label = utcnow(), actor.label
    if action.recommendation_id:
        await recommendations.reopen_after_undo(session, org_id, action.recommendation_id, actor.label)
    await audit.record(session, org_id, actor, "action.undone", target_type="action", target_id=action.id,
                       changes={"summary": action.summary, "restored": restored, **_reconciled(reconciled)})
    await events.emit(session, org_id, "action.undone", {
        "action_id": action.id, "recommendation_id": action.recommendation_id, "client_id": action.client_id,
        "module": action.module, "platform": action.platform, "summary": action.summary,
        "undone_by": actor.actor_type})


async def _run_claimed(
    session: AsyncSession, settings: Settings, org_id: uuid.UUID, action: Action, actor: Actor,
    idem: IdempotencyRecord | None,
) -> Action:
    """Steps 4-5 for an action already claimed (``applying``) and committed."""
    conns = _Connectors(session, settings, org_id, action.client_id, actor,
                        purpose=f"action {action.id}: {action.kind}")
    try:
        changes = await _execute(conns, list(action.plan))
    except _ExecutionFailed as failed:
        if await _settle(session, org_id, action, ActionStatus.APPLYING, ActionStatus.FAILED):
            await _record_failed(session, org_id, action, actor, failed.changes, str(failed.error))
            await session.commit()
        if isinstance(failed.error, ConnectorError):
            raise platform_error(failed.error, failed.platform) from None
        raise failed.error from None
    finally:
        await conns.aclose()
    if await _settle(session, org_id, action, ActionStatus.APPLYING, ActionStatus.APPLIED):
        await _record_applied(session, org_id, action, actor, changes)
        ACTIONS_APPLIED.labels(module=action.module).inc()
    if idem is not None:
        idempotency.complete(idem, 200, action_out(action))
    await session.commit()
    return action


async def _settle(session: AsyncSession, org_id: uuid.UUID, action: Action, expected: ActionStatus,
                  new: ActionStatus) -> bool:
    """Record the outcome of an apply, an undo or a reconciliation only if the action is still
    in flight: a compare-and-set of its status, so an apply whose platform calls outlived
    ``action_reconcile_after_seconds`` and the sweep that took it over do not both record
    (audit, event) the same action. False: the other one settled it meanwhile; ``action`` is
    reloaded as it was settled."""
    won = await repository.claim_status(session, org_id, action.id, expected=expected.value, new=new.value,
                                        at=utcnow())
    await session.refresh(action)
    if not won:
        log.warning("actions.settled_elsewhere", action_id=str(action.id), org_id=str(org_id),
                    outcome=new.value, status=action.status)
    return won


async def apply(
    session: AsyncSession, settings: Settings, org_id: uuid.UUID, caller: Caller, rec_id: uuid.UUID,
    *, note: str | None = None, idem: IdempotencyRecord | None = None,
) -> ApplyOutcome:
    rec = await recommendations.get(session, org_id, rec_id)
    org = await orgs.get_org(session, org_id)
    rails = guards.from_org_settings(org.settings)
    if not rails.may_apply(caller.role):
        raise Forbidden(f"This organization's guardrails do not let the {caller.role.value} role apply actions.",
                        code="guardrail-role")
    if rec.status != RecommendationStatus.OPEN:
        raise recommendations.RecommendationNotOpen(
            f"Only an open recommendation can be applied; this one is {rec.status}.")
    plan, money, summary = build_plan(rec)
    pending = await repository.pending_for_recommendation(session, org_id, rec_id)
    if pending is not None:
        raise ActionNotInState("An action for this recommendation is waiting for approval.",
                               action_id=str(pending.id))
    await check_budget_cap(session, org_id, rec.client_id, plan, rails)
    platforms = sorted({p["platform"] for p in plan})
    now = utcnow()
    action = Action(
        id=uuid.uuid4(), org_id=org_id, client_id=rec.client_id, recommendation_id=rec.id, module=rec.module,
        kind=rec.kind, platform=platforms[0] if len(platforms) == 1 else None, plan=plan, changes=[],
        money_per_day_minor=money, currency=rec.currency, summary=summary[:500], created_at=now, updated_at=now,
        **_requester(caller.actor),
    )
    can_approve = role_allows(caller.role, Permission.ACTIONS_APPROVE)
    if rails.needs_approval(money, rec.currency) and not can_approve:
        action.status = ActionStatus.PENDING_APPROVAL.value
        repository.add(session, action)
        await session.flush()
        await audit.record(session, org_id, caller.actor, "action.requested", target_type="action",
                           target_id=action.id, changes={"recommendation_id": str(rec.id), "summary": action.summary,
                                                         "money_per_day_minor": money, "currency": rec.currency,
                                                         "threshold_minor": rails.threshold_for(rec.currency),
                                                         "note": note})
        if idem is not None:
            idempotency.complete(idem, 202, action_out(action))
        await session.commit()
        return ApplyOutcome(action, 202)
    if rails.needs_approval(money, rec.currency):
        action.approved_by_label, action.approved_at = caller.actor.label, now
    action.status, action.applying_started_at = ActionStatus.APPLYING.value, now
    if not await recommendations.claim_for_apply(session, org_id, rec.id, caller.actor.label):
        await session.rollback()
        raise recommendations.RecommendationNotOpen("The recommendation was applied or dismissed meanwhile.")
    repository.add(session, action)
    await session.commit()
    log.info("actions.applying", action_id=str(action.id), kind=action.kind, note=bool(note))
    return ApplyOutcome(await _run_claimed(session, settings, org_id, action, caller.actor, idem), 200)


async def approve(
    session: AsyncSession, settings: Settings, org_id: uuid.UUID, caller: Caller, action_id: uuid.UUID,
    *, idem: IdempotencyRecord | None = None,
) -> Action:
    action = await get(session, org_id, action_id)
    if action.status != ActionStatus.PENDING_APPROVAL:
        raise ActionNotInState(f"Only a pending action can be approved; this one is {action.status}.")
    org = await orgs.get_org(session, org_id)
    rails = guards.from_org_settings(org.settings)
    await check_budget_cap(session, org_id, action.client_id, list(action.plan), rails)
    now = utcnow()
    if not await repository.claim_status(session, org_id, action_id, expected=ActionStatus.PENDING_APPROVAL.value,
                                         new=ActionStatus.APPLYING.value, at=now):
        await session.rollback()
        raise ActionNotInState("The action was approved or rejected meanwhile.")
    if action.recommendation_id and not await recommendations.claim_for_apply(
        session, org_id, action.recommendation_id, caller.actor.label
    ):
        await session.rollback()
        raise recommendations.RecommendationNotOpen("The recommendation was applied or dismissed meanwhile.")
    await session.refresh(action)
    action.approved_by_label, action.approved_at = caller.actor.label, now
    await audit.record(session, org_id, caller.actor, "action.approved", target_type="action", target_id=action.id,
                       changes={"summary": action.summary, "requested_by": action.requested_by_label})
    await session.commit()
    return await _run_claimed(session, settings, org_id, action, caller.actor, idem)


async def reject(
    session: AsyncSession, org_id: uuid.UUID, caller: Caller, action_id: uuid.UUID, reason: str
) -> Action:
    action = await get(session, org_id, action_id)
    if not await repository.claim_status(session, org_id, action_id, expected=ActionStatus.PENDING_APPROVAL.value,
                                         new=ActionStatus.REJECTED.value, at=utcnow()):
        raise ActionNotInState(f"Only a pending action can be rejected; this one is {action.status}.")
    await session.refresh(action)
    action.error = f"Rejected: {reason}"[:500]
    await audit.record(session, org_id, caller.actor, "action.rejected", target_type="action", target_id=action.id,
                       changes={"summary": action.summary, "reason": reason})
    await session.commit()
    return action


async def undo(
    session: AsyncSession, settings: Settings, org_id: uuid.UUID, caller: Caller, action_id: uuid.UUID,
    *, idem: IdempotencyRecord | None = None,
) -> Action:
    action = await get(session, org_id, action_id)
    org = await orgs.get_org(session, org_id)
    rails = guards.from_org_settings(org.settings)
    if not rails.may_apply(caller.role):
        raise Forbidden(f"This organization's guardrails do not let the {caller.role.value} role undo actions.",
                        code="guardrail-role")
    if action.status != ActionStatus.APPLIED:
        raise ActionNotInState(f"Only an applied action can be undone; this one is {action.status}.")
    if not undoable(action):
        raise UndoNotSupported("The platform cannot restore the previous state of every changed entity "
                               "(e.g. a deleted entity or an unknown previous budget).")
    now = utcnow()
    if not await repository.claim_status(session, org_id, action_id, expected=ActionStatus.APPLIED.value,
                                         new=ActionStatus.UNDOING.value, at=now):
        raise ActionNotInState("The action was undone meanwhile.")
    await session.commit()
    reverse = [dict(c) for c in reversed(list(action.changes))]
    conns = _Connectors(session, settings, org_id, action.client_id, caller.actor,
                        purpose=f"undo action {action.id}: {action.kind}")
    try:
        restored = await _execute(conns, reverse, undo=True)
    except _ExecutionFailed as failed:
        if await _settle(session, org_id, action, ActionStatus.UNDOING, ActionStatus.APPLIED):
            await audit.record(session, org_id, caller.actor, "action.undo_failed", target_type="action",
                               target_id=action.id, changes={"error": str(failed.error)[:500]})
            await session.commit()
        if isinstance(failed.error, ConnectorError):
            raise platform_error(failed.error, failed.platform) from None
        raise failed.error from None
    finally:
        await conns.aclose()
    if await _settle(session, org_id, action, ActionStatus.UNDOING, ActionStatus.UNDONE):
        await _record_undone(session, org_id, action, caller.actor, restored)
    if idem is not None:
        idempotency.complete(idem, 200, action_out(action))
    await session.commit()
    return action


# ------------------------------------------------------------------------- reconciliation
#: Who settles an interrupted action, in the audit log and the events.
RECONCILE_ACTOR = Actor.system("action reconciliation")
NO_CHANGE_ERROR = "interrupted; the platform shows no change"
#: The fields a plan sets and a connector's read_entity reports.
_STATE_KEYS = ("status", "daily_budget_minor")


class _Unreachable(Exception):
    """The platform (or the client's credential) could not be read: settle on a later sweep."""


def _shows(state: dict[str, Any], value: dict[str, Any] | None) -> bool:
    """Whether the platform's state has every field ``value`` sets (to that value)."""
    wanted = {k: v for k, v in (value or {}).items() if k in _STATE_KEYS}
    return bool(wanted) and all(state.get(k) == v for k, v in wanted.items())


def _known(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """A previous state only when something of it is known (``{"daily_budget_minor": None}`` is not)."""
    return dict(value) if value and any(v is not None for v in value.values()) else None


async def _read_all(conns: _Connectors, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each item's entity as the platform shows it now, or :class:`_Unreachable`."""
    states = []
    for item in items:
        try:
            conn = await conns.get(item["platform"])
            states.append(await conn.read_entity(item["account_id"], Level(item["level"]), item["entity_id"]))
        except (ConnectorError, PlatformNotConnected, PlatformNotSupported) as exc:
            raise _Unreachable(f"{item['platform']}: {type(exc).__name__}: {exc}"[:300]) from exc
    return states


async def _settle_apply(session: AsyncSession, org_id: uuid.UUID, action: Action, conns: _Connectors) -> str:
    plan = list(action.plan)
    states = await _read_all(conns, plan)
    done = []
    for item, state in zip(plan, states, strict=True):
        if not _shows(state, item["set"]):
            continue
        done.append({**_entity(item), "before": _known(item.get("expected_before")),
                     "after": {k: state.get(k) for k in item["set"]}})
    if len(done) == len(plan):
        if not await _settle(session, org_id, action, ActionStatus.APPLYING, ActionStatus.APPLIED):
            return "settled_elsewhere"
        action.error = None
        await _record_applied(session, org_id, action, RECONCILE_ACTOR, done, reconciled=True)
        await session.commit()
        ACTIONS_APPLIED.labels(module=action.module).inc()
        return ActionStatus.APPLIED.value
    if done:
        await _revert(conns, done)
        error = (f"interrupted; the platform showed {len(done)} of {len(plan)} changes, "
                 "which were reverted" if all(c.get("reverted") for c in done)
                 else f"interrupted; the platform showed {len(done)} of {len(plan)} changes; reverting failed")
    else:
        error = NO_CHANGE_ERROR
    if not await _settle(session, org_id, action, ActionStatus.APPLYING, ActionStatus.FAILED):
        return "settled_elsewhere"
    await _record_failed(session, org_id, action, RECONCILE_ACTOR, done, error, reconciled=True)
    await session.commit()
    return ActionStatus.FAILED.value


async def _settle_undo(session: AsyncSession, org_id: uuid.UUID, action: Action, conns: _Connectors) -> str:
    reverse = [dict(c) for c in reversed(list(action.changes))]
    states = await _read_all(conns, reverse)
    restored = [{**_entity(c), "before": c.get("after"), "after": c.get("before")}
                for c, state in zip(reverse, states, strict=True) if _shows(state, c.get("before"))]
    if reverse and len(restored) == len(reverse):
        if not await _settle(session, org_id, action, ActionStatus.UNDOING, ActionStatus.UNDONE):
            return "settled_elsewhere"
        await _record_undone(session, org_id, action, RECONCILE_ACTOR, restored, reconciled=True)
        await session.commit()
        return ActionStatus.UNDONE.value
    if restored:  # an undo that failed half-way is put back: the action stands applied
        await _revert(conns, restored)
    error = (NO_CHANGE_ERROR if not restored
             else f"interrupted; the platform showed {len(restored)} of {len(reverse)} entities restored, "
                  "which were changed back")
    if not await _settle(session, org_id, action, ActionStatus.UNDOING, ActionStatus.APPLIED):
        return "settled_elsewhere"
    await audit.record(session, org_id, RECONCILE_ACTOR, "action.undo_failed", target_type="action",
                       target_id=action.id, changes={"error": error, "partial": restored, "reconciled": True})
    await session.commit()
    return ActionStatus.APPLIED.value


async def reconcile_one(session: AsyncSession, settings: Settings, org_id: uuid.UUID, action_id: uuid.UUID, *,
                        status: str, claimed_at: datetime | None) -> str:
    """Settle one action found in flight since ``claimed_at``; the outcome (the new status,
    ``busy`` when another sweep took it first, ``unreachable`` when the platform could not
    be read: it is handed back for the next sweep).

    The take-over is a compare-and-set of the claim time, committed before any platform
    call: of two sweeps meeting the action, one moves it and settles it, the other finds
    it moved and leaves it. The settlement itself is a compare-and-set of the status."""
    await bind_tenant(session, org_id)
    lease = utcnow()
    if not await repository.take_over(session, org_id, action_id, status=status, claimed_at=claimed_at,
                                      new_claimed_at=lease):
        await session.rollback()
        return "busy"
    await session.commit()
    action = await get(session, org_id, action_id)
    conns = _Connectors(session, settings, org_id, action.client_id, RECONCILE_ACTOR,
                        purpose=f"reconcile action {action.id}: {action.kind}")
    try:
        if status == ActionStatus.APPLYING.value:
            outcome = await _settle_apply(session, org_id, action, conns)
        else:
            outcome = await _settle_undo(session, org_id, action, conns)
    except _Unreachable as exc:
        await session.rollback()
        await repository.take_over(session, org_id, action_id, status=status, claimed_at=lease,
                                   new_claimed_at=claimed_at)
        await session.commit()
        log.warning("actions.reconcile_unreachable", action_id=str(action_id), org_id=str(org_id), error=str(exc))
        return "unreachable"
    finally:
        await conns.aclose()
    if outcome == "settled_elsewhere":
        await session.rollback()
    log.info("actions.reconciled", action_id=str(action_id), org_id=str(org_id), was=status, outcome=outcome)
    return outcome


async def reconcile_interrupted(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, *,
                                now: datetime | None = None, limit: int = 100) -> dict[str, int]:
    """The beat job: settle every action left ``applying``/``undoing`` for longer than
    ``action_reconcile_after_seconds`` (its worker died mid-apply) from what the platform
    shows; the count of each outcome. One action's failure does not stop the others."""
    now = now or utcnow()
    claimed_before = now - timedelta(seconds=settings.action_reconcile_after_seconds)
    async with sessionmaker() as session:
        rows = await repository.interrupted(session, claimed_before, limit)
        await session.rollback()
    tally: Tally[str] = Tally()
    for org_id, action_id, status, claimed_at in rows:
        async with sessionmaker() as session:
            try:
                tally[await reconcile_one(session, settings, org_id, action_id, status=status,
                                          claimed_at=claimed_at)] += 1
            except Exception as exc:  # one action's failure must not stop the others
                await session.rollback()
                tally["error"] += 1
                log.error("actions.reconcile_failed", action_id=str(action_id), org_id=str(org_id),
                          error=f"{type(exc).__name__}: {exc}"[:300])
    return dict(tally)


__all__ = ["ApplyOutcome", "Caller", "PlatformError", "apply", "approve", "get", "list_actions",
           "reconcile_interrupted", "reconcile_one", "reject", "undo"]
