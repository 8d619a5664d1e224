"""/orgs/{org_id}/clients/{client_id}/onboarding: progress, and the platforms to connect."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends

from omnify.auth.deps import OrgContext, require
from omnify.auth.permissions import Permission
from omnify.onboarding import service
from omnify.onboarding.schemas import OnboardingIn, OnboardingOut, RouteHint, StepOut

router = APIRouter(tags=["onboarding"])

BASE = "/orgs/{org_id}/clients/{client_id}/onboarding"


def _step(step: service.Step) -> StepOut:
    return StepOut(key=step.key, title=step.title, done=step.done, advice=step.advice,
                   route=RouteHint(method=step.method, path=step.path))


def progress_out(progress: service.Progress) -> OnboardingOut:
    steps = [_step(s) for s in progress.steps]
    nxt = progress.next_step
    return OnboardingOut(
        client_id=progress.client_id, status=progress.status, progress=progress.progress,
        platforms=progress.platforms, platforms_chosen=progress.platforms_chosen, steps=steps,
        completed_steps=[s.key for s in progress.steps if s.done],
        pending_steps=[s.key for s in progress.steps if not s.done],
        next_step=_step(nxt) if nxt else None, completed_at=progress.completed_at,
    )


@router.get(BASE, response_model=OnboardingOut)
async def get_onboarding(
    client_id: uuid.UUID, ctx: Annotated[OrgContext, Depends(require(Permission.CLIENTS_READ))]
) -> Any:
    """Steps computed from the client's real state, with advice and the route for the next one."""
    return progress_out(await service.get_progress(ctx.session, ctx.org_id, client_id))


@router.put(BASE, response_model=OnboardingOut)
async def choose_platforms(
    client_id: uuid.UUID, body: OnboardingIn, ctx: Annotated[OrgContext, Depends(require(Permission.CLIENTS_WRITE))]
) -> Any:
    """Choose the ad platforms to connect: one onboarding step each."""
    progress = await service.choose_platforms(ctx.session, ctx.org_id, ctx.actor, client_id, body.platforms)
    return progress_out(progress)
