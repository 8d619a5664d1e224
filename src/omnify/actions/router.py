"""Apply a recommendation, approve/reject pending actions, undo, and list what was done.

``POST .../apply``, ``.../approve`` and ``.../undo`` honour ``Idempotency-Key``: a retry
with the same key returns the first answer (``Idempotent-Replayed: true``) and the
platform is called once.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse

from omnify.actions import idempotency, service
from omnify.actions.models import ActionStatus, IdempotencyRecord
from omnify.actions.schemas import ActionOut, ApplyIn, RejectIn, action_out
from omnify.auth.deps import OrgContext, require
from omnify.auth.permissions import Permission
from omnify.core.deps import SettingsDep
from omnify.core.errors import AppError
from omnify.core.openapi import problems
from omnify.core.pagination import Page, PageParams, fields_param, page_params, page_response

router = APIRouter(tags=["actions"])

Reader = Annotated[OrgContext, Depends(require(Permission.RECOMMENDATIONS_READ))]
Applier = Annotated[OrgContext, Depends(require(Permission.ACTIONS_APPLY))]
Approver = Annotated[OrgContext, Depends(require(Permission.ACTIONS_APPROVE))]
IdemHeader = Annotated[
    str | None,
    Header(alias="Idempotency-Key", max_length=300,
           description="Unique per intended effect; a retry with the same key is answered from the first call."),
]
#: How a platform's answer reaches the caller (see omnify.actions.platforms.platform_error);
#: nothing is left half-done in any of them.
PLATFORM_PROBLEMS: dict[int | str, dict[str, Any]] = {
    409: {"description": "Conflict with the object's current state, or `platform-refused`: the ad platform "
                         "refused the change (an entity not reachable with this connection, a revoked token)."},
    502: {"description": "`platform-error`: the ad platform failed the change with an answer that was neither "
                         "a refusal nor a request to retry."},
    503: {"description": "Temporarily unavailable: the database, or `platform-unavailable` (the ad platform "
                         "is rate limiting or failing transiently); retry after `Retry-After`."},
}
ACTION_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"model": ActionOut, "description": "Over the approval threshold: waiting for an admin."},
    **problems(409, 502, 503),
    **PLATFORM_PROBLEMS,
}


async def _idempotent(
    request: Request, ctx: OrgContext, key: str | None, body: Any,
    run: Callable[[IdempotencyRecord | None], Awaitable[tuple[int, dict[str, Any]]]],
) -> JSONResponse:
    key = idempotency.validate_key(key)
    record: IdempotencyRecord | None = None
    if key is not None:
        route = getattr(request.scope.get("route"), "path", request.url.path)
        fp = idempotency.fingerprint(request.method, route, dict(request.path_params), body)
        claimed = await idempotency.begin(ctx.session, ctx.org_id, ctx.principal.id, key, fp)
        if isinstance(claimed, idempotency.Replay):
            return JSONResponse(claimed.body, status_code=claimed.status, headers={"Idempotent-Replayed": "true"})
        record = claimed
    try:
        status_code, out = await run(record)
    except AppError:
        if record is not None:
            await idempotency.release(ctx.session, record)
        raise
    return JSONResponse(out, status_code=status_code)


@router.post("/orgs/{org_id}/recommendations/{recommendation_id}/apply", response_model=ActionOut,
             responses=ACTION_RESPONSES)
async def apply_recommendation(
    recommendation_id: uuid.UUID, request: Request, ctx: Applier, settings: SettingsDep,
    idempotency_key: IdemHeader = None, body: ApplyIn | None = None,
) -> Any:
    """Carry the recommendation out on the ad platform (200), or queue it for approval (202)."""
    payload = body.model_dump() if body else {}

    async def run(record: IdempotencyRecord | None) -> tuple[int, dict[str, Any]]:
        outcome = await service.apply(ctx.session, settings, ctx.org_id, service.Caller(ctx.role, ctx.actor),
                                      recommendation_id, note=payload.get("note"), idem=record)
        return outcome.status_code, action_out(outcome.action)

    return await _idempotent(request, ctx, idempotency_key, payload, run)


@router.get("/orgs/{org_id}/actions", response_model=Page[ActionOut])
async def list_actions(
    ctx: Reader,
    paging: Annotated[PageParams, Depends(page_params)],
    fields: Annotated[set[str] | None, Depends(fields_param)],
    client_id: Annotated[uuid.UUID | None, Query()] = None,
    status: Annotated[ActionStatus | None, Query()] = None,
    recommendation_id: Annotated[uuid.UUID | None, Query()] = None,
) -> Any:
    rows = await service.list_actions(ctx.session, ctx.org_id, paging, client_id=client_id,
                                      status=status.value if status else None, recommendation_id=recommendation_id)
    return page_response(ActionOut, rows, paging, fields, dump=action_out)


@router.get("/orgs/{org_id}/actions/{action_id}", response_model=ActionOut)
async def get_action(action_id: uuid.UUID, ctx: Reader) -> Any:
    return action_out(await service.get(ctx.session, ctx.org_id, action_id))


@router.post("/orgs/{org_id}/actions/{action_id}/approve", response_model=ActionOut)
async def approve_action(
    action_id: uuid.UUID, request: Request, ctx: Approver, settings: SettingsDep, idempotency_key: IdemHeader = None,
) -> Any:
    """An admin's approval of a pending action: it is applied at once."""

    async def run(record: IdempotencyRecord | None) -> tuple[int, dict[str, Any]]:
        action = await service.approve(ctx.session, settings, ctx.org_id, service.Caller(ctx.role, ctx.actor),
                                       action_id, idem=record)
        return 200, action_out(action)

    return await _idempotent(request, ctx, idempotency_key, {}, run)


@router.post("/orgs/{org_id}/actions/{action_id}/reject", response_model=ActionOut)
async def reject_action(action_id: uuid.UUID, body: RejectIn, ctx: Approver) -> Any:
    action = await service.reject(ctx.session, ctx.org_id, service.Caller(ctx.role, ctx.actor), action_id,
                                  body.reason)
    return action_out(action)


@router.post("/orgs/{org_id}/actions/{action_id}/undo", response_model=ActionOut,
             responses={**problems(400, 409, 502, 503), **PLATFORM_PROBLEMS})
async def undo_action(
    action_id: uuid.UUID, request: Request, ctx: Applier, settings: SettingsDep, idempotency_key: IdemHeader = None,
) -> Any:
    """Restore every changed entity's previous state on the platform (newest change first)."""

    async def run(record: IdempotencyRecord | None) -> tuple[int, dict[str, Any]]:
        action = await service.undo(ctx.session, settings, ctx.org_id, service.Caller(ctx.role, ctx.actor),
                                    action_id, idem=record)
        return 200, action_out(action)

    return await _idempotent(request, ctx, idempotency_key, {}, run)
