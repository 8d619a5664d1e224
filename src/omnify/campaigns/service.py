"""Campaign ideas: validation against the client's files and the review workflow.

Workflow (anything else answers 409)::

    draft -> in_review -> approved -> launched
      ^         |
      +---------+  (changes requested)
    any state except archived -> archived (shelved; final)

Ideas are editable while ``draft`` or ``in_review``; approved and later ones are frozen
so what was approved is what launches. Only drafts can be deleted outright; anything
that was reviewed is archived instead, which keeps the history.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from omnify.audit import service as audit
from omnify.campaigns import repository
from omnify.campaigns.models import CampaignIdea, IdeaStatus
from omnify.campaigns.schemas import IdeaCreateIn, IdeaUpdateIn
from omnify.clients import service as clients
from omnify.core.context import Actor
from omnify.core.db import utcnow
from omnify.core.errors import Conflict, NotFound, UnprocessableEntity
from omnify.core.pagination import PageParams
from omnify.events import service as events
from omnify.files import service as files

TRANSITIONS: dict[IdeaStatus, frozenset[IdeaStatus]] = {
    IdeaStatus.DRAFT: frozenset({IdeaStatus.IN_REVIEW, IdeaStatus.ARCHIVED}),
    IdeaStatus.IN_REVIEW: frozenset({IdeaStatus.APPROVED, IdeaStatus.DRAFT, IdeaStatus.ARCHIVED}),
    IdeaStatus.APPROVED: frozenset({IdeaStatus.LAUNCHED, IdeaStatus.ARCHIVED}),
    IdeaStatus.LAUNCHED: frozenset({IdeaStatus.ARCHIVED}),
    IdeaStatus.ARCHIVED: frozenset(),
}
EDITABLE = frozenset({IdeaStatus.DRAFT, IdeaStatus.IN_REVIEW})
_ORDER = list(IdeaStatus)


class InvalidTransition(Conflict):
    code, title = "invalid-status-transition", "Invalid status transition"


class IdeaFrozen(Conflict):
    code, title = "idea-frozen", "Campaign idea can no longer be changed"


def allowed_transitions(status: str) -> list[IdeaStatus]:
    return sorted(TRANSITIONS[IdeaStatus(status)], key=_ORDER.index)


async def _check_files(
    session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, ids: Sequence[uuid.UUID]
) -> None:
    found = await files.live_file_ids(session, org_id, client_id, list(ids))
    missing = [str(i) for i in ids if i not in found]
    if missing:
        raise UnprocessableEntity(
            "Attached files must be existing files of this client.",
            errors=[{"loc": ["body", "attached_file_ids"], "field": "attached_file_ids",
                     "msg": f"not a file of this client: {', '.join(missing)}", "type": "value_error"}],
        )


def _check_budget(idea: CampaignIdea) -> None:
    if (idea.budget_amount is None) != (idea.budget_currency is None):
        raise UnprocessableEntity("Give budget_amount and budget_currency together.", code="budget-incomplete")
    if idea.start_date and idea.end_date and idea.end_date < idea.start_date:
        raise UnprocessableEntity("end_date must not be before start_date.", code="invalid-dates")


async def attachments_of(
    session: AsyncSession, org_id: uuid.UUID, ideas: Sequence[CampaignIdea]
) -> dict[uuid.UUID, list[uuid.UUID]]:
    return await repository.attachments(session, org_id, [i.id for i in ideas])


# ------------------------------------------------------------------------------- reads
async def get_idea(
    session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, idea_id: uuid.UUID
) -> CampaignIdea:
    await clients.get_client(session, org_id, client_id)
    idea = await repository.get(session, org_id, client_id, idea_id)
    if idea is None:
        raise NotFound("Campaign idea not found.")
    return idea


async def list_ideas(
    session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, params: PageParams, status: IdeaStatus | None
) -> list[CampaignIdea]:
    await clients.get_client(session, org_id, client_id)
    return list(await repository.list_ideas(session, org_id, client_id, params, status))


async def count_active_ideas(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID) -> int:
    return await repository.count_not_archived(session, org_id, client_id)


# ------------------------------------------------------------------------------ writes
def _assign(idea: CampaignIdea, values: dict[str, Any]) -> list[str]:
    changed = []
    for name, value in values.items():
        if name == "attached_file_ids":
            continue
        if name == "platforms":
            value = [str(p) for p in (value or [])]
        elif name == "objective" and value is not None:
            value = str(value)
        if getattr(idea, name) != value:
            setattr(idea, name, value)
            changed.append(name)
    return changed


async def create_idea(
    session: AsyncSession, org_id: uuid.UUID, actor: Actor, client_id: uuid.UUID, body: IdeaCreateIn
) -> CampaignIdea:
    await clients.get_live_client(session, org_id, client_id)
    attached = body.attached_file_ids or []
    await _check_files(session, org_id, client_id, attached)
    idea = CampaignIdea(id=uuid.uuid4(), org_id=org_id, client_id=client_id, title=body.title, platforms=[],
                        status=IdeaStatus.DRAFT.value, status_changed_at=utcnow(),
                        created_by_id=clients.user_id_of(actor))
    _assign(idea, {k: getattr(body, k) for k in body.model_fields_set | {"title"}})
    repository.add(session, idea)
    await session.flush()
    await repository.replace_attachments(session, org_id, idea.id, attached)
    await audit.record(session, org_id, actor, "campaign_idea.created", target_type="campaign_idea",
                       target_id=idea.id, changes={"client_id": str(client_id), "title": idea.title})
    await events.emit(session, org_id, "campaign_idea.created",
                      {"client_id": client_id, "idea_id": idea.id, "title": idea.title})
    await _progress_changed(session, org_id, client_id, actor)
    await session.commit()
    return idea


async def update_idea(
    session: AsyncSession, org_id: uuid.UUID, actor: Actor, client_id: uuid.UUID, idea_id: uuid.UUID,
    body: IdeaUpdateIn,
) -> CampaignIdea:
    await clients.get_live_client(session, org_id, client_id)
    idea = await repository.get(session, org_id, client_id, idea_id)
    if idea is None:
        raise NotFound("Campaign idea not found.")
    if IdeaStatus(idea.status) not in EDITABLE:
        raise IdeaFrozen(f"A {idea.status} idea cannot be edited; only draft and in_review ideas can.")
    values = {k: getattr(body, k) for k in body.model_fields_set}
    changed = _assign(idea, values)
    _check_budget(idea)
    if "attached_file_ids" in values:
        attached = values["attached_file_ids"] or []
        await _check_files(session, org_id, client_id, attached)
        current = (await repository.attachments(session, org_id, [idea.id]))[idea.id]
        if current != attached:
            await repository.replace_attachments(session, org_id, idea.id, attached)
            changed.append("attached_file_ids")
    if changed:
        idea.updated_at = utcnow()
        await session.flush()
        await audit.record(session, org_id, actor, "campaign_idea.updated", target_type="campaign_idea",
                           target_id=idea.id, changes={"fields": sorted(changed)})
    await session.commit()
    return idea


async def change_status(
    session: AsyncSession, org_id: uuid.UUID, actor: Actor, client_id: uuid.UUID, idea_id: uuid.UUID,
    to: IdeaStatus,
) -> CampaignIdea:
    await clients.get_live_client(session, org_id, client_id)
    idea = await repository.get(session, org_id, client_id, idea_id)
    if idea is None:
        raise NotFound("Campaign idea not found.")
    current = IdeaStatus(idea.status)
    if to not in TRANSITIONS[current]:
        allowed = [s.value for s in allowed_transitions(current)]
        raise InvalidTransition(
            f"A {current.value} idea cannot move to {to.value}."
            + (f" Allowed: {', '.join(allowed)}." if allowed else " It is final."),
            current=current.value, requested=to.value, allowed=allowed,
        )
    idea.status = to.value
    idea.status_changed_at = utcnow()
    await audit.record(session, org_id, actor, "campaign_idea.status_changed", target_type="campaign_idea",
                       target_id=idea.id, changes={"from": current.value, "to": to.value})
    await events.emit(session, org_id, "campaign_idea.status_changed",
                      {"client_id": client_id, "idea_id": idea.id, "from": current.value, "to": to.value})
    await _progress_changed(session, org_id, client_id, actor)
    await session.commit()
    return idea


async def delete_idea(
    session: AsyncSession, org_id: uuid.UUID, actor: Actor, client_id: uuid.UUID, idea_id: uuid.UUID
) -> None:
    await clients.get_live_client(session, org_id, client_id)
    idea = await repository.get(session, org_id, client_id, idea_id)
    if idea is None:
        raise NotFound("Campaign idea not found.")
    if idea.status != IdeaStatus.DRAFT.value:
        raise IdeaFrozen("Only draft ideas can be deleted; archive this one instead.")
    await repository.delete_idea(session, org_id, idea.id)
    await audit.record(session, org_id, actor, "campaign_idea.deleted", target_type="campaign_idea",
                       target_id=idea.id, changes={"title": idea.title})
    await _progress_changed(session, org_id, client_id, actor)
    await session.commit()


async def detach_file(session: AsyncSession, org_id: uuid.UUID, file_id: uuid.UUID) -> None:
    """A deleted file leaves every idea it was attached to (in the caller's transaction)."""
    await repository.detach_file(session, org_id, file_id)


async def _progress_changed(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, actor: Actor) -> None:
    from omnify.onboarding import service as onboarding  # late import: onboarding reads campaigns

    await onboarding.refresh(session, org_id, client_id, actor)
