"""Automation pages: rules (list, templates, editor with preview and 90-day backtest, detail,
evaluation history), alert channels and routes (Slack, Teams), and a client's reports.

Every page calls the same services as the API; the rule editor takes the definition as
JSON (the API's shape, prefilled from a template) and shows each validation error next to
the field path it names. Preview and backtest answer HTMX requests with a fragment.
"""

from __future__ import annotations

import json
import uuid
from datetime import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from omnify.auth.deps import OrgContext, require
from omnify.auth.permissions import Permission
from omnify.chat import service as chat
from omnify.chat.models import ChatKind, EventKind
from omnify.clients import service as clients
from omnify.core.deps import SettingsDep
from omnify.core.errors import AppError, UnprocessableEntity
from omnify.core.pagination import PageParams
from omnify.reports import service as reports
from omnify.reports.models import Cadence
from omnify.rules import service as rules
from omnify.rules.definition import RuleDefinition, error_entries
from omnify.rules.engine import condition_label
from omnify.rules.models import RuleStatus, Trigger
from omnify.rules.templates import TEMPLATES
from omnify.web.deps import ClientsReader, ClientsWriter, RecsReader, WebhooksManager, csrf_guard, org_shell
from omnify.web.forms import form_data
from omnify.web.templating import render

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf_guard)])
# A refused write is refused before anything is written (validation, guards), so the pages
# re-render without a rollback: a rollback would expire the rows the page shell reads.
BASE = "/orgs/{org_id}/rules"
RulesManager = Annotated[OrgContext, Depends(require(Permission.RULES_MANAGE))]
STARTER = {"level": "ad", "conditions": {"all": [
    {"metric": "spend", "window": "last_3_days", "op": ">", "value": 50},
    {"metric": "conversions", "window": "last_3_days", "op": "==", "value": 0}]},
    "min_data": {"min_spend": 10, "min_days_live": 10}, "actions": [{"type": "pause"}],
    "schedule": {"every": "15m"}, "cooldown_hours": 24, "max_actions_per_run": 10}


def describe(definition: dict[str, Any]) -> dict[str, Any]:
    """A readable summary of a stored definition (conditions as sentences)."""
    try:
        parsed = RuleDefinition.model_validate(definition)
    except ValidationError:
        return {"conditions": ["(invalid definition)"], "actions": [], "schedule": ""}
    mode = "all of" if parsed.conditions.mode == "all" else "any of"
    every = {"15m": "every 15 minutes", "1h": "hourly", "after_sync": "after every sync"}.get(
        parsed.schedule.every, f"daily at {(parsed.schedule.at or time(7, 0)):%H:%M} (each client's time)")
    actions = []
    for a in parsed.actions:
        detail = a.type.value.replace("_", " ")
        if a.percent is not None:
            detail += f" {a.percent:+g}%"
        elif a.amount is not None:
            detail += f" {a.amount:g}"
        if a.channels:
            detail += " via " + ", ".join(c.value for c in a.channels)
        if a.propose:
            detail += f" ({a.propose.value})"
        actions.append(detail)
    return {"mode": mode, "conditions": [condition_label(c) for c in parsed.conditions_list()], "actions": actions,
            "schedule": every, "level": parsed.level.value}


async def _clients(ctx: OrgContext) -> list[Any]:
    return list(await clients.list_clients(ctx.session, ctx.org_id, PageParams(limit=200)))


@router.get(BASE)
async def rule_list(request: Request, ctx: RecsReader) -> Response:
    rows = await rules.list_rules(ctx.session, ctx.org_id, PageParams(limit=200))
    return render(request, "rules/list.html", {
        "web": await org_shell(request, ctx, "rules"), "rules": rows[:200],
        "summaries": {r.id: describe(r.definition) for r in rows}, "templates": list(TEMPLATES.values()),
        "clients": await _clients(ctx)})


@router.post(BASE + "/from-template")
async def from_template(request: Request, ctx: RulesManager) -> Response:
    data = await form_data(request)
    client = data.get("client_id") or ""
    try:
        scope = [uuid.UUID(client)] if client else []
    except ValueError:
        raise UnprocessableEntity("Pick the client from the list (client_id is not an id).") from None
    rule = await rules.create_from_template(ctx.session, ctx.org_id, ctx.actor, data.get("template", ""), None,
                                            scope)
    return RedirectResponse(f"/orgs/{ctx.org_id}/rules/{rule.id}?flash=rule-created", status_code=303)


async def _editor(request: Request, ctx: OrgContext, *, values: dict[str, str], errors: list[dict[str, Any]],
                  rule: Any = None, status: int = 200) -> Response:
    return render(request, "rules/edit.html", {
        "web": await org_shell(request, ctx, "rules"), "values": values, "errors": errors, "rule": rule,
        "clients": await _clients(ctx)}, status=status)


@router.get(BASE + "/new")
async def new_rule(request: Request, ctx: RulesManager) -> Response:
    return await _editor(request, ctx, values={"name": "", "definition": json.dumps(STARTER, indent=2),
                                               "dry_run": "true"}, errors=[])


def _parse_form(data: dict[str, str]) -> tuple[RuleDefinition | None, list[dict[str, Any]]]:
    try:
        raw = json.loads(data.get("definition") or "")
    except ValueError as exc:
        return None, [{"field": "definition", "msg": f"not valid JSON: {exc}"}]
    if not isinstance(raw, dict):
        return None, [{"field": "definition", "msg": "must be a JSON object"}]
    try:
        return RuleDefinition.model_validate(raw), []
    except ValidationError as exc:
        return None, error_entries(exc.errors(), ("definition",))


@router.post(BASE + "/new")
async def create_rule(request: Request, ctx: RulesManager) -> Response:
    data = await form_data(request)
    definition, errors = _parse_form(data)
    name = (data.get("name") or "").strip()
    if not name:
        errors.append({"field": "name", "msg": "a rule needs a name"})
    if definition is not None and not errors:
        try:
            rule = await rules.create_rule(ctx.session, ctx.org_id, ctx.actor, name=name[:200],
                                           description=None, definition=definition,
                                           dry_run=data.get("dry_run") == "true", status=RuleStatus.ACTIVE)
        except AppError as exc:
            errors = list(exc.extra.get("errors") or [{"field": "definition", "msg": exc.detail}])
        else:
            return RedirectResponse(f"/orgs/{ctx.org_id}/rules/{rule.id}?flash=rule-created", status_code=303)
    return await _editor(request, ctx, values=data, errors=errors, status=422)


@router.post(BASE + "/check")
async def check_rule(request: Request, ctx: RecsReader) -> Response:
    """HTMX: the editor's Preview or Backtest button (``mode``), as a fragment."""
    data = await form_data(request)
    definition, errors = _parse_form(data)
    context: dict[str, Any] = {"errors": errors, "mode": data.get("mode", "preview")}
    if definition is not None:
        try:
            if context["mode"] == "backtest":
                context["backtest"] = await rules.run_backtest(ctx.session, ctx.org_id, definition, 90)
            else:
                context["preview"] = await rules.preview(ctx.session, ctx.org_id, definition)
        except UnprocessableEntity as exc:
            context["errors"] = exc.extra.get("errors") or [{"field": "definition", "msg": exc.detail}]
    return render(request, "rules/_check.html", context, status=200 if not context["errors"] else 422)


@router.get(BASE + "/{rule_id}")
async def rule_detail(request: Request, rule_id: uuid.UUID, ctx: RecsReader) -> Response:
    rule = await rules.get(ctx.session, ctx.org_id, rule_id)
    evaluations = await rules.list_evaluations(ctx.session, ctx.org_id, rule_id, PageParams(limit=50))
    return render(request, "rules/detail.html", {
        "web": await org_shell(request, ctx, "rules"), "rule": rule, "summary": describe(rule.definition),
        "evaluations": evaluations[:50], "definition": json.dumps(rule.definition, indent=2)})


@router.post(BASE + "/{rule_id}/{verb}")
async def rule_verb(rule_id: uuid.UUID, verb: str, ctx: RulesManager, settings: SettingsDep) -> Response:
    base = f"/orgs/{ctx.org_id}/rules"
    if verb in ("pause", "resume"):
        status = RuleStatus.PAUSED if verb == "pause" else RuleStatus.ACTIVE
        await rules.update_rule(ctx.session, ctx.org_id, ctx.actor, rule_id, {"status": status})
    elif verb == "run":
        evaluation = await rules.run_rule(ctx.session, settings, ctx.org_id, rule_id, trigger=Trigger.MANUAL,
                                          slot=f"manual:{uuid.uuid4()}")
        if evaluation is not None:
            return RedirectResponse(f"{base}/{rule_id}/evaluations/{evaluation.id}", status_code=303)
    elif verb == "delete":
        await rules.delete_rule(ctx.session, ctx.org_id, ctx.actor, rule_id)
        return RedirectResponse(f"{base}?flash=rule-deleted", status_code=303)
    elif verb in ("dry-run", "live"):
        await rules.update_rule(ctx.session, ctx.org_id, ctx.actor, rule_id, {"dry_run": verb == "dry-run"})
    else:
        return Response(status_code=404)
    return RedirectResponse(f"{base}/{rule_id}", status_code=303)


@router.get(BASE + "/{rule_id}/evaluations/{evaluation_id}")
async def evaluation_detail(request: Request, rule_id: uuid.UUID, evaluation_id: uuid.UUID,
                            ctx: RecsReader) -> Response:
    rule = await rules.get(ctx.session, ctx.org_id, rule_id)
    evaluation = await rules.get_evaluation(ctx.session, ctx.org_id, rule_id, evaluation_id)
    return render(request, "rules/evaluation.html", {
        "web": await org_shell(request, ctx, "rules"), "rule": rule, "evaluation": evaluation})


# -------------------------------------------------------------------------------- alerts
ALERTS = "/orgs/{org_id}/settings/alerts"


async def _alerts(request: Request, ctx: OrgContext, settings: Any, *, errors: dict[str, str] | None = None,
                  status: int = 200) -> Response:
    channels = await chat.list_channels(ctx.session, ctx.org_id)
    return render(request, "rules/alerts.html", {
        "web": await org_shell(request, ctx, "settings"), "connections": await chat.list_connections(
            ctx.session, ctx.org_id), "channels": channels, "channel_names": {c.id: c.name for c in channels},
        "routes": await chat.list_routes(ctx.session, ctx.org_id), "clients": await _clients(ctx),
        "client_names": {c.id: c.company_name for c in await _clients(ctx)}, "event_kinds": list(EventKind),
        "slack_app": bool(settings.slack_client_id), "errors": errors or {}}, status=status)


@router.get(ALERTS)
async def alerts_page(request: Request, ctx: WebhooksManager, settings: SettingsDep) -> Response:
    return await _alerts(request, ctx, settings)


@router.get(ALERTS + "/slack")
async def connect_slack(ctx: WebhooksManager, settings: SettingsDep) -> Response:
    assert ctx.principal.user_id is not None
    return RedirectResponse(chat.slack_authorize_url(settings, ctx.org_id, ctx.principal.user_id), status_code=303)


@router.post(ALERTS + "/{what}")
async def alerts_post(request: Request, what: str, ctx: WebhooksManager, settings: SettingsDep) -> Response:
    data = await form_data(request)
    try:
        if what == "webhook":
            await chat.connect_webhook(ctx.session, settings, ctx.org_id, ctx.actor,
                                       kind=ChatKind(data.get("kind") or ""),
                                       name=(data.get("name") or "").strip() or "Alerts", url=data.get("url") or "")
        elif what == "route":
            client = data.get("client_id") or ""
            await chat.add_route(ctx.session, ctx.org_id, ctx.actor, channel_id=uuid.UUID(data["channel_id"]),
                                 event_kind=EventKind(data["event_kind"]),
                                 client_id=uuid.UUID(client) if client else None)
        elif what == "slack-channel":
            await chat.add_slack_channel(ctx.session, settings, ctx.org_id, ctx.actor,
                                         uuid.UUID(data["connection_id"]), data.get("channel_id", ""))
        elif what == "remove-route":
            await chat.remove_route(ctx.session, ctx.org_id, ctx.actor, uuid.UUID(data["route_id"]))
        elif what == "remove-channel":
            await chat.remove_channel(ctx.session, ctx.org_id, ctx.actor, uuid.UUID(data["channel_id"]))
        elif what == "test":
            await chat.send_test(ctx.session, ctx.org_id, ctx.actor, uuid.UUID(data["channel_id"]), None)
        else:
            return Response(status_code=404)
    except (AppError, KeyError, ValueError) as exc:
        detail = exc.detail if isinstance(exc, AppError) else "Fill in every field."
        return await _alerts(request, ctx, settings, errors={what: detail}, status=422)
    return RedirectResponse(f"/orgs/{ctx.org_id}/settings/alerts?flash=saved", status_code=303)


# ------------------------------------------------------------------------------- reports
REPORTS = "/orgs/{org_id}/clients/{client_id}/reports"


@router.get(REPORTS)
async def client_reports(request: Request, client_id: uuid.UUID, ctx: ClientsReader) -> Response:
    client = await clients.get_client(ctx.session, ctx.org_id, client_id)
    return render(request, "rules/reports.html", {
        "web": await org_shell(request, ctx, "clients"), "client": client, "tables": list(reports.EXPORT_TABLES),
        "schedules": await reports.list_schedules(ctx.session, ctx.org_id, client_id), "errors": {}})


@router.post(REPORTS)
async def add_schedule(request: Request, client_id: uuid.UUID, ctx: ClientsWriter) -> Response:
    data = await form_data(request)
    recipients = [r.strip() for r in (data.get("recipients") or "").replace(";", ",").split(",") if r.strip()]
    try:
        hour, minute = (int(x) for x in (data.get("send_time") or "08:00").split(":", 1))
        await reports.create_schedule(
            ctx.session, ctx.org_id, ctx.actor, client_id, cadence=Cadence(data.get("cadence", "weekly")),
            weekday=int(data.get("weekday") or 0), day_of_month=min(max(int(data.get("day_of_month") or 1), 1), 28),
            send_time=time(hour, minute), recipients=recipients[:20], enabled=True)
    except (ValueError, AppError) as exc:
        client = await clients.get_client(ctx.session, ctx.org_id, client_id)
        return render(request, "rules/reports.html", {
            "web": await org_shell(request, ctx, "clients"), "client": client, "tables": list(reports.EXPORT_TABLES),
            "schedules": await reports.list_schedules(ctx.session, ctx.org_id, client_id),
            "errors": {"schedule": str(getattr(exc, "detail", exc))}}, status=422)
    return RedirectResponse(f"/orgs/{ctx.org_id}/clients/{client_id}/reports?flash=saved", status_code=303)
