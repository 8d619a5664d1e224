"""/orgs/{org_id}/rules: rules, templates, preview, backtest, runs, history; entity labels.

Rule definitions are validated field by field; a bad one is a 422 problem whose
``errors`` name each field by its full path (``definition.conditions.all.1.window``),
without the union-branch tags pydantic would put in between.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from omnify.auth.deps import OrgContext, require
from omnify.auth.permissions import Permission
from omnify.core.deps import SettingsDep
from omnify.core.errors import UnprocessableEntity
from omnify.core.pagination import Page, PageParams, fields_param, page_params, page_response
from omnify.rules import service
from omnify.rules.definition import error_entries
from omnify.rules.models import RuleStatus, Trigger
from omnify.rules.schemas import (
    BacktestIn,
    BacktestOut,
    EvaluationOut,
    LabelsIn,
    LabelsOut,
    PreviewIn,
    PreviewOut,
    RuleFromTemplateIn,
    RuleIn,
    RuleOut,
    RuleUpdateIn,
    TemplateOut,
    evaluation_out,
    rule_out,
)
from omnify.rules.templates import TEMPLATES


class RuleRoute(APIRoute):
    """Request validation errors as the rules' 422, with clean field paths."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                raise UnprocessableEntity("The request has invalid fields.",
                                          errors=error_entries(list(exc.errors()), ())) from None

        return route


router = APIRouter(tags=["rules"], route_class=RuleRoute)
BASE = "/orgs/{org_id}/rules"
Reader = Annotated[OrgContext, Depends(require(Permission.RECOMMENDATIONS_READ))]
Manager = Annotated[OrgContext, Depends(require(Permission.RULES_MANAGE))]


@router.get(BASE + "/templates", response_model=list[TemplateOut])
async def list_templates(ctx: Reader) -> Any:
    """Stop-loss, revive winners, surf-scale, sunset fatigued creatives, budget cap."""
    return [TemplateOut(key=t.key, name=t.name, description=t.description, dry_run=t.dry_run,
                        definition=t.parsed().model_dump(mode="json")).model_dump(mode="json")
            for t in TEMPLATES.values()]


@router.get(BASE, response_model=Page[RuleOut])
async def list_rules(
    ctx: Reader, paging: Annotated[PageParams, Depends(page_params)],
    fields: Annotated[set[str] | None, Depends(fields_param)],
    status: Annotated[RuleStatus | None, Query()] = None,
) -> Any:
    rows = await service.list_rules(ctx.session, ctx.org_id, paging, status.value if status else None)
    return page_response(RuleOut, rows, paging, fields, dump=rule_out)


@router.post(BASE, response_model=RuleOut, status_code=201)
async def create_rule(body: RuleIn, ctx: Manager) -> Any:
    """A rule acts with its author's role; ``dry_run`` records what it would do instead."""
    row = await service.create_rule(ctx.session, ctx.org_id, ctx.actor, name=body.name, description=body.description,
                                    definition=body.definition, dry_run=body.dry_run, status=body.status,
                                    template=body.template)
    return rule_out(row)


@router.post(BASE + "/from-template", response_model=RuleOut, status_code=201)
async def create_from_template(body: RuleFromTemplateIn, ctx: Manager) -> Any:
    row = await service.create_from_template(ctx.session, ctx.org_id, ctx.actor, body.template, body.name,
                                             body.client_ids)
    return rule_out(row)


@router.post(BASE + "/preview", response_model=PreviewOut)
async def preview(body: PreviewIn, ctx: Reader) -> Any:
    """The entities a draft rule matches now, with the deciding values and what it would do."""
    return await service.preview(ctx.session, ctx.org_id, body.definition)


@router.post(BASE + "/backtest", response_model=BacktestOut)
async def backtest(body: BacktestIn, ctx: Reader) -> Any:
    """Replay a draft rule day by day over the last ``days`` days of synced data."""
    return await service.run_backtest(ctx.session, ctx.org_id, body.definition, body.days)


@router.get(BASE + "/{rule_id}", response_model=RuleOut)
async def get_rule(rule_id: uuid.UUID, ctx: Reader) -> Any:
    return rule_out(await service.get(ctx.session, ctx.org_id, rule_id))


@router.patch(BASE + "/{rule_id}", response_model=RuleOut)
async def update_rule(rule_id: uuid.UUID, body: RuleUpdateIn, ctx: Manager) -> Any:
    changes: dict[str, Any] = {k: getattr(body, k) for k in body.model_fields_set}
    return rule_out(await service.update_rule(ctx.session, ctx.org_id, ctx.actor, rule_id, changes))


@router.post(BASE + "/{rule_id}/pause", response_model=RuleOut)
async def pause_rule(rule_id: uuid.UUID, ctx: Manager) -> Any:
    return rule_out(await service.update_rule(ctx.session, ctx.org_id, ctx.actor, rule_id,
                                              {"status": RuleStatus.PAUSED}))


@router.post(BASE + "/{rule_id}/resume", response_model=RuleOut)
async def resume_rule(rule_id: uuid.UUID, ctx: Manager) -> Any:
    return rule_out(await service.update_rule(ctx.session, ctx.org_id, ctx.actor, rule_id,
                                              {"status": RuleStatus.ACTIVE}))


@router.delete(BASE + "/{rule_id}", status_code=204)
async def delete_rule(rule_id: uuid.UUID, ctx: Manager) -> Response:
    await service.delete_rule(ctx.session, ctx.org_id, ctx.actor, rule_id)
    return Response(status_code=204)


@router.post(BASE + "/{rule_id}/preview", response_model=PreviewOut)
async def preview_rule(rule_id: uuid.UUID, ctx: Reader) -> Any:
    """What the saved rule matches now (with its cooldowns)."""
    rule = await service.get(ctx.session, ctx.org_id, rule_id)
    return await service.preview(ctx.session, ctx.org_id, service.parse_definition(rule.definition), rule=rule)


@router.post(BASE + "/{rule_id}/backtest", response_model=BacktestOut)
async def backtest_rule(rule_id: uuid.UUID, ctx: Reader,
                        days: Annotated[int, Query(ge=1, le=365)] = 90) -> Any:
    rule = await service.get(ctx.session, ctx.org_id, rule_id)
    return await service.run_backtest(ctx.session, ctx.org_id, service.parse_definition(rule.definition), days)


@router.post(BASE + "/{rule_id}/run", response_model=EvaluationOut)
async def run_now(rule_id: uuid.UUID, ctx: Manager, settings: SettingsDep) -> Any:
    """Evaluate now (live, or dry run if the rule is in dry-run mode); the evaluation is returned."""
    await service.get(ctx.session, ctx.org_id, rule_id)
    evaluation = await service.run_rule(ctx.session, settings, ctx.org_id, rule_id, trigger=Trigger.MANUAL,
                                        slot=f"manual:{uuid.uuid4()}")
    assert evaluation is not None
    return evaluation_out(evaluation)


@router.get(BASE + "/{rule_id}/evaluations", response_model=Page[EvaluationOut])
async def list_evaluations(
    rule_id: uuid.UUID, ctx: Reader, paging: Annotated[PageParams, Depends(page_params)],
    fields: Annotated[set[str] | None, Depends(fields_param)],
) -> Any:
    """Newest first: what matched, the values that decided, what was done or skipped and why."""
    rows = await service.list_evaluations(ctx.session, ctx.org_id, rule_id, paging)
    return page_response(EvaluationOut, rows, paging, fields, dump=evaluation_out,
                         key=lambda r: (r.started_at, r.id))


@router.get(BASE + "/{rule_id}/evaluations/{evaluation_id}", response_model=EvaluationOut)
async def get_evaluation(rule_id: uuid.UUID, evaluation_id: uuid.UUID, ctx: Reader) -> Any:
    return evaluation_out(await service.get_evaluation(ctx.session, ctx.org_id, rule_id, evaluation_id))


LABELS = "/orgs/{org_id}/clients/{client_id}/labels/{level}/{entity_id}"


@router.get(LABELS, response_model=LabelsOut, tags=["rules"])
async def get_labels(client_id: uuid.UUID, level: Literal["ad", "campaign"], entity_id: uuid.UUID,
                     ctx: Reader) -> Any:
    labels = await service.get_labels(ctx.session, ctx.org_id, client_id, level, entity_id)
    return {"level": level, "entity_id": str(entity_id), "labels": labels}


@router.put(LABELS, response_model=LabelsOut, tags=["rules"])
async def put_labels(client_id: uuid.UUID, level: Literal["ad", "campaign"], entity_id: uuid.UUID, body: LabelsIn,
                     ctx: Manager) -> Any:
    """Labels for rule scopes (``scope.labels``); replaces the entity's labels."""
    labels = await service.set_labels(ctx.session, ctx.org_id, ctx.actor, client_id, level, entity_id, body.labels)
    return {"level": level, "entity_id": str(entity_id), "labels": labels}
